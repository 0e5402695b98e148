//! DUMP / RESTORE and MEMORY through a real Redis client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use strata_kv::KvConfig;

fn dump(c: &mut redis::Connection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query(c).unwrap()
}

fn restore(
    c: &mut redis::Connection,
    key: &str,
    ttl: i64,
    payload: &[u8],
    opts: &[&str],
) -> String {
    let mut cmd = redis::cmd("RESTORE");
    cmd.arg(key).arg(ttl).arg(payload);
    for o in opts {
        cmd.arg(*o);
    }
    match cmd.query::<String>(c) {
        Ok(s) => s,
        Err(e) => format!("ERR {}", e),
    }
}

#[test]
fn every_type_round_trips_through_dump_and_restore() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    redis::cmd("SET")
        .arg("s")
        .arg("hello")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("RPUSH")
        .arg("l")
        .arg("a")
        .arg("b")
        .arg("a")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("SADD")
        .arg("set")
        .arg("x")
        .arg("y")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .arg("g")
        .arg("w")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("ZADD")
        .arg("z")
        .arg(1.5)
        .arg("m")
        .arg("-inf")
        .arg("n")
        .query::<()>(&mut c)
        .unwrap();
    for key in ["s", "l", "set", "h", "z"] {
        let payload = dump(&mut c, key).unwrap();
        assert_eq!(restore(&mut c, &format!("{key}2"), 0, &payload, &[]), "OK");
    }
    let s: String = redis::cmd("GET").arg("s2").query(&mut c).unwrap();
    assert_eq!(s, "hello");
    let l: Vec<String> = redis::cmd("LRANGE")
        .arg("l2")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(l, ["a", "b", "a"]);
    let n: i64 = redis::cmd("LPUSH")
        .arg("l2")
        .arg("c")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 4, "a restored list accepts pushes");
    let mut set: Vec<String> = redis::cmd("SMEMBERS").arg("set2").query(&mut c).unwrap();
    set.sort();
    assert_eq!(set, ["x", "y"]);
    let h: Vec<String> = redis::cmd("HGETALL").arg("h2").query(&mut c).unwrap();
    assert_eq!(h, ["f", "v", "g", "w"]);
    let z: Vec<String> = redis::cmd("ZRANGE")
        .arg("z2")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert_eq!(z, ["n", "-inf", "m", "1.5"]);
    let rank: i64 = redis::cmd("ZRANK")
        .arg("z2")
        .arg("m")
        .query(&mut c)
        .unwrap();
    assert_eq!(rank, 1);
    assert_eq!(dump(&mut c, "missing"), None);
}

#[test]
fn restore_checks_its_arguments_and_payload() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query::<()>(&mut c)
        .unwrap();
    let payload = dump(&mut c, "k").unwrap();
    assert!(restore(&mut c, "k", 0, &payload, &[]).contains("BUSYKEY"));
    assert_eq!(restore(&mut c, "k", 0, &payload, &["REPLACE"]), "OK");
    assert!(restore(&mut c, "n", -1, &payload, &[]).contains("Invalid TTL value"));
    assert!(restore(&mut c, "n", 0, &payload, &["IDLETIME", "-1"]).contains("Invalid IDLETIME"));
    assert!(restore(&mut c, "n", 0, &payload, &["FREQ", "256"]).contains("Invalid FREQ"));
    assert!(restore(&mut c, "n", 0, &payload, &["BOGUS"]).contains("syntax error"));
    let mut bad = payload.clone();
    bad[1] ^= 0x55;
    assert!(
        restore(&mut c, "n", 0, &bad, &[]).contains("DUMP payload version or checksum are wrong")
    );
    // A TTL goes along; an absolute TTL in the past leaves no key.
    assert_eq!(restore(&mut c, "t", 100_000, &payload, &[]), "OK");
    let ttl: i64 = redis::cmd("PTTL").arg("t").query(&mut c).unwrap();
    assert!(ttl > 90_000 && ttl <= 100_000, "{ttl}");
    assert_eq!(restore(&mut c, "gone", 1, &payload, &["ABSTTL"]), "OK");
    let n: i64 = redis::cmd("EXISTS").arg("gone").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn memory_usage_grows_with_the_value() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let none: Option<i64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("missing")
        .query(&mut c)
        .unwrap();
    assert_eq!(none, None);
    redis::cmd("SET")
        .arg("small")
        .arg("x")
        .query::<()>(&mut c)
        .unwrap();
    redis::cmd("SET")
        .arg("big")
        .arg("x".repeat(10_000))
        .query::<()>(&mut c)
        .unwrap();
    let small: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("small")
        .query(&mut c)
        .unwrap();
    let big: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("big")
        .query(&mut c)
        .unwrap();
    assert!(small > 0 && big > 10_000 && big > small);
    for i in 0..100 {
        redis::cmd("HSET")
            .arg("h")
            .arg(format!("field{i}"))
            .arg("value")
            .query::<()>(&mut c)
            .unwrap();
    }
    let all: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("h")
        .arg("SAMPLES")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert!(all > 100 * 12, "{all}");
    let err = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("h")
        .arg("SAMPLES")
        .arg(-1)
        .query::<i64>(&mut c);
    assert!(err.is_err());
    let ok: String = redis::cmd("MEMORY").arg("PURGE").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let err = redis::cmd("MEMORY")
        .arg("NOPE")
        .query::<String>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("unknown subcommand"));
}

#[test]
fn the_dirty_counter_counts_changed_keys_but_not_expiry() {
    use std::sync::Arc;
    use strata_kv::{Clock as _, Keyspace, ManualClock};
    let dir = tempfile::tempdir().unwrap();
    let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let ks = Keyspace::open(db, 16, clock.clone()).unwrap();
    assert_eq!(ks.dirty(), 0);
    let mut e = strata_kv::keyspace::Entry::string(bytes::Bytes::from_static(b"v"));
    ks.put(0, b"a", &e).unwrap();
    e.expire_at_ms = 2_000;
    ks.put(0, b"b", &e).unwrap();
    assert_eq!(ks.dirty(), 2);
    assert!(!ks.delete(0, b"missing").unwrap());
    assert_eq!(ks.dirty(), 2, "deleting nothing changes nothing");
    ks.add_dirty(3);
    assert_eq!(ks.dirty(), 5);
    clock.advance_ms(5_000);
    assert_eq!(ks.expire_cycle(clock.now_ms(), 100).unwrap(), 1);
    assert_eq!(ks.dirty(), 5, "active expiry is not a change");
}
