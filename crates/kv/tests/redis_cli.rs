//! What redis-cli's non-interactive modes do, emulated without needing redis-cli: `--pipe` (mass insertion
//! of raw RESP in one write, ended by an ECHO of random bytes that tells when every reply is in) and
//! `--scan --pattern` (a SCAN cursor loop with MATCH and COUNT).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::Server;
use strata_kv::KvConfig;

/// A fixed-seed xorshift: the bytes look random, the test stays deterministic.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Counts replies the way `redis-cli --pipe` does: every reply is one line here except the final ECHO.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    replies: usize,
    errors: usize,
}

#[test]
fn pipe_mass_insertion() {
    const N: usize = 50_000;
    let server = Server::start_without_fsync(KvConfig::default());
    let mut input = Vec::new();
    for i in 0..N {
        let key = format!("key:{i}");
        let value = format!("value-{i}");
        input.extend(resp(&[b"SET", key.as_bytes(), value.as_bytes()]));
    }
    // One bad command in the middle: --pipe reports it and carries on.
    input.extend(resp(&[b"INCR", b"key:7"]));
    let marker = random_bytes(20);
    input.extend(resp(&[b"ECHO", &marker]));
    let mut expected_tail = format!("${}\r\n", marker.len()).into_bytes();
    expected_tail.extend_from_slice(&marker);
    expected_tail.extend_from_slice(b"\r\n");

    let stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // The whole input in one write, from another thread while this one reads, as redis-cli does.
    let mut writer = stream.try_clone().unwrap();
    let writing = std::thread::spawn(move || writer.write_all(&input).unwrap());
    let mut reader = stream;
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !got.ends_with(&expected_tail) {
        let n = reader.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed after {} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
    }
    writing.join().unwrap();

    let body = &got[..got.len() - expected_tail.len()];
    let mut tally = Tally::default();
    let mut errors = BTreeMap::new();
    for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").expect("CRLF line endings");
        tally.replies += 1;
        if line.first() == Some(&b'-') {
            tally.errors += 1;
            *errors
                .entry(String::from_utf8_lossy(line).into_owned())
                .or_insert(0) += 1;
        } else {
            assert_eq!(line, b"+OK");
        }
    }
    assert_eq!(
        tally,
        Tally {
            replies: N + 1,
            errors: 1
        }
    );
    assert_eq!(
        errors.into_keys().collect::<Vec<_>>(),
        ["-ERR value is not an integer or out of range"]
    );

    let mut c = server.client();
    let size: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(size, N);
    for i in [0, 1, N / 2, N - 1] {
        let v: String = redis::cmd("GET")
            .arg(format!("key:{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, format!("value-{i}"));
    }
}

/// `redis-cli --scan --pattern P --count C`: SCAN until the cursor is 0 again.
fn scan_all(
    c: &mut redis::Connection,
    pattern: &str,
    count: usize,
    mut between: impl FnMut(),
) -> Vec<String> {
    let mut cursor = 0u64;
    let mut out = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count)
            .query(c)
            .unwrap();
        out.extend(keys);
        between();
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

#[test]
fn scan_with_pattern_returns_every_key_once_while_keys_are_added() {
    let server = Server::start_without_fsync(KvConfig::default());
    let mut c = server.client();
    let mut writer = server.client();
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        // Two thirds match k*, the rest do not; keys of several types.
        let key = match i % 3 {
            0 => format!("k:{i}"),
            1 => format!("kk{i}"),
            _ => format!("other:{i}"),
        };
        match i % 4 {
            0 => pipe.set(&key, i).ignore(),
            1 => pipe.rpush(&key, i).ignore(),
            2 => pipe.sadd(&key, i).ignore(),
            _ => pipe.hset(&key, "f", i).ignore(),
        };
    }
    let () = pipe.query(&mut c).unwrap();
    let before: BTreeSet<String> = (0..3000)
        .filter(|i| i % 3 != 2)
        .map(|i| {
            if i % 3 == 0 {
                format!("k:{i}")
            } else {
                format!("kk{i}")
            }
        })
        .collect();

    for count in [1, 10, 100, 1000] {
        // Between SCAN calls another client adds keys, matching and not, before and after the cursor.
        let mut added = 0;
        let got = scan_all(&mut c, "k*", count, || {
            if added < 200 {
                let _: () = redis::cmd("MSET")
                    .arg(format!("k-new-{count}-{added}"))
                    .arg(1)
                    .arg(format!("a-new-{count}-{added}"))
                    .arg(1)
                    .arg(format!("z-new-{count}-{added}"))
                    .arg(1)
                    .query(&mut writer)
                    .unwrap();
                added += 1;
            }
        });
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "a key came back twice (COUNT {count})"
        );
        assert!(
            got.iter().all(|k| k.starts_with('k')),
            "a key not matching k* (COUNT {count})"
        );
        let missing: Vec<&String> = before.difference(&unique).take(5).collect();
        assert!(
            missing.is_empty(),
            "COUNT {count}: never returned {missing:?}"
        );
    }
}
