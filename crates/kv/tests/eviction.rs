//! Cache mode: maxmemory with every maxmemory-policy, evicted_keys, the `evicted` keyspace event, -OOM
//! under noeviction, OBJECT FREQ / IDLETIME, and invalidations of evicted keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::sync::Arc;

use common::Server;
use strata_kv::{KvConfig, ManualClock};
use strata_resp::Frame;
use support::{Raw, bulk, info_field, wait_until};

const VALUE_BYTES: usize = 1000;
const LIMIT: i64 = 200_000;

fn config_set(con: &mut redis::Connection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(con)
        .unwrap();
}

fn used(con: &mut redis::Connection) -> i64 {
    info_field(con, "memory", "used_memory")
}

fn dbsize(con: &mut redis::Connection) -> i64 {
    redis::cmd("DBSIZE").query(con).unwrap()
}

fn exists(con: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query::<i64>(con).unwrap() == 1
}

/// A cache-mode server without fsync, as `--fsync no` with a policy would run.
fn cache(policy: &str) -> (Server, redis::Connection) {
    let server = Server::start_without_fsync(KvConfig {
        maxmemory: LIMIT as u64,
        maxmemory_policy: policy.to_owned(),
        ..KvConfig::default()
    });
    let con = server.client();
    (server, con)
}

#[test]
fn every_policy_keeps_used_memory_under_maxmemory() {
    for policy in [
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let (_server, mut con) = cache(policy);
        let value = "x".repeat(VALUE_BYTES);
        // Five times what fits, every key with a TTL so volatile policies have candidates.
        for i in 0..1000 {
            let _: () = redis::cmd("SET")
                .arg(format!("key:{i}"))
                .arg(&value)
                .arg("EX")
                .arg(10_000 + i)
                .query(&mut con)
                .unwrap();
        }
        // Eviction runs before each command, so one key's worth may be over after the last write.
        let slack = (VALUE_BYTES + 200) as i64;
        assert!(
            used(&mut con) <= LIMIT + slack,
            "{policy}: {}",
            used(&mut con)
        );
        // The background task finishes what the last write left over; then the counts are stable.
        wait_until("background eviction", || used(&mut con) <= LIMIT);
        let evicted = info_field(&mut con, "stats", "evicted_keys");
        let size = dbsize(&mut con);
        assert!(evicted > 0, "{policy}");
        assert_eq!(size + evicted, 1000, "{policy}");
        assert!(size > 100, "{policy}: only {size} keys kept");
    }
}

#[test]
fn volatile_policies_evict_only_keys_with_a_ttl() {
    for policy in [
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let (_server, mut con) = cache(policy);
        let value = "x".repeat(VALUE_BYTES);
        for i in 0..100 {
            let _: () = redis::cmd("SET")
                .arg(format!("plain:{i}"))
                .arg(&value)
                .query(&mut con)
                .unwrap();
        }
        for i in 0..400 {
            let _: () = redis::cmd("SET")
                .arg(format!("volatile:{i}"))
                .arg(&value)
                .arg("EX")
                .arg(10_000)
                .query(&mut con)
                .unwrap();
        }
        assert!(
            info_field(&mut con, "stats", "evicted_keys") > 0,
            "{policy}"
        );
        for i in 0..100 {
            assert!(
                exists(&mut con, &format!("plain:{i}")),
                "{policy}: plain:{i}"
            );
        }
        // With only keys without TTL left to make room, writes are refused.
        let mut refused = false;
        for i in 0..400 {
            if let Err(e) = redis::cmd("SET")
                .arg(format!("more:{i}"))
                .arg(&value)
                .query::<()>(&mut con)
            {
                assert_eq!(e.code(), Some("OOM"), "{policy}");
                refused = true;
                break;
            }
        }
        assert!(refused, "{policy}");
    }
}

#[test]
fn volatile_ttl_evicts_the_nearest_deadlines_first() {
    let (_server, mut con) = cache("volatile-ttl");
    let value = "x".repeat(VALUE_BYTES);
    // The later a key is written, the sooner it expires.
    for i in 0..400 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(&value)
            .arg("EX")
            .arg(100_000 - i)
            .query(&mut con)
            .unwrap();
    }
    assert!(info_field(&mut con, "stats", "evicted_keys") > 0);
    // The first keys written have the farthest deadlines: they stay.
    for i in 0..20 {
        assert!(exists(&mut con, &format!("k:{i}")), "k:{i}");
    }
}

#[test]
fn noeviction_refuses_writes_but_serves_reads() {
    let (_server, mut con) = cache("noeviction");
    let value = "x".repeat(VALUE_BYTES);
    let mut written = 0;
    let err = loop {
        match redis::cmd("SET")
            .arg(format!("k:{written}"))
            .arg(&value)
            .query::<()>(&mut con)
        {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 1000, "never refused");
    };
    assert_eq!(err.code(), Some("OOM"));
    assert!(
        err.to_string()
            .contains("command not allowed when used memory > 'maxmemory'"),
        "{err}"
    );
    assert_eq!(info_field(&mut con, "stats", "evicted_keys"), 0);
    let got: String = redis::cmd("GET").arg("k:0").query(&mut con).unwrap();
    assert_eq!(got.len(), VALUE_BYTES);
    // Deleting makes room again.
    let _: () = redis::cmd("DEL")
        .arg("k:0")
        .arg("k:1")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("again")
        .arg("1")
        .query(&mut con)
        .unwrap();
}

/// A server with a hand-moved clock, for access times.
fn with_clock(
    policy: &str,
) -> (
    Server,
    redis::Connection,
    Arc<ManualClock>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let server = Server::start_in_with(
        dir.path(),
        KvConfig {
            maxmemory: LIMIT as u64,
            maxmemory_policy: policy.to_owned(),
            ..KvConfig::default()
        },
        clock.clone(),
        strata_storage::Options {
            fsync: strata_storage::FsyncPolicy::No,
            ..strata_storage::Options::default()
        },
    );
    let con = server.client();
    (server, con, clock, dir)
}

#[test]
fn lru_keeps_recently_read_keys() {
    let (_server, mut con, clock, _dir) = with_clock("allkeys-lru");
    config_set(&mut con, "maxmemory-samples", "10");
    let value = "x".repeat(VALUE_BYTES);
    for i in 0..150 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    clock.advance_ms(10_000);
    // The first 20 keys are read now: ten seconds fresher than the rest.
    for i in 0..20 {
        let _: String = redis::cmd("GET")
            .arg(format!("k:{i}"))
            .query(&mut con)
            .unwrap();
    }
    let idle: i64 = redis::cmd("OBJECT")
        .arg("IDLETIME")
        .arg("k:100")
        .query(&mut con)
        .unwrap();
    assert_eq!(idle, 10);
    for i in 150..250 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    assert!(info_field(&mut con, "stats", "evicted_keys") > 50);
    for i in 0..20 {
        assert!(exists(&mut con, &format!("k:{i}")), "hot key k:{i} evicted");
    }
}

#[test]
fn lfu_keeps_frequently_read_keys() {
    let (_server, mut con, _clock, _dir) = with_clock("allkeys-lfu");
    config_set(&mut con, "maxmemory-samples", "10");
    let value = "x".repeat(VALUE_BYTES);
    for i in 0..150 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    for _ in 0..30 {
        for i in 0..20 {
            let _: String = redis::cmd("GET")
                .arg(format!("k:{i}"))
                .query(&mut con)
                .unwrap();
        }
    }
    let hot: i64 = redis::cmd("OBJECT")
        .arg("FREQ")
        .arg("k:0")
        .query(&mut con)
        .unwrap();
    let cold: i64 = redis::cmd("OBJECT")
        .arg("FREQ")
        .arg("k:100")
        .query(&mut con)
        .unwrap();
    assert!(hot > cold, "hot {hot}, cold {cold}");
    for i in 150..250 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    assert!(info_field(&mut con, "stats", "evicted_keys") > 50);
    for i in 0..20 {
        assert!(
            exists(&mut con, &format!("k:{i}")),
            "frequent key k:{i} evicted"
        );
    }
}

#[test]
fn lfu_counters_decay_with_time() {
    let (_server, mut con, clock, _dir) = with_clock("allkeys-lfu");
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    for _ in 0..100 {
        let _: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    }
    let before: i64 = redis::cmd("OBJECT")
        .arg("FREQ")
        .arg("k")
        .query(&mut con)
        .unwrap();
    assert!(before > 5);
    // lfu-decay-time 1: one point per idle minute.
    clock.advance_ms(3 * 60_000);
    let after: i64 = redis::cmd("OBJECT")
        .arg("FREQ")
        .arg("k")
        .query(&mut con)
        .unwrap();
    assert_eq!(after, before - 3);
}

#[test]
fn lowering_maxmemory_evicts_in_the_background_with_evicted_events() {
    let server = Server::start_without_fsync(KvConfig::default());
    let mut con = server.client();
    config_set(&mut con, "notify-keyspace-events", "Ee");
    config_set(&mut con, "maxmemory-policy", "allkeys-lru");
    let _: () = redis::cmd("SET")
        .arg("foo")
        .arg("bar")
        .query(&mut con)
        .unwrap();
    let mut sub = Raw::connect(server.addr());
    sub.call(&["PSUBSCRIBE", "*"]);
    config_set(&mut con, "maxmemory", "1");
    // Nobody sends a command: the background task evicts.
    assert_eq!(
        sub.read(),
        Frame::Array(vec![
            bulk("pmessage"),
            bulk("*"),
            bulk("__keyevent@0__:evicted"),
            bulk("foo")
        ])
    );
    config_set(&mut con, "maxmemory", "0");
    assert_eq!(info_field(&mut con, "stats", "evicted_keys"), 1);
}

#[test]
fn keys_stored_before_cache_mode_are_found_by_the_scan() {
    let server = Server::start_without_fsync(KvConfig::default());
    let mut con = server.client();
    let value = "x".repeat(VALUE_BYTES);
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("old:{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    assert_eq!(info_field(&mut con, "memory", "used_memory_dataset"), 0);
    config_set(&mut con, "maxmemory-policy", "allkeys-random");
    wait_until("the scan to count the old keys", || {
        info_field(&mut con, "memory", "used_memory_dataset") >= 300 * VALUE_BYTES as i64
    });
    config_set(&mut con, "maxmemory", &LIMIT.to_string());
    wait_until("background eviction", || used(&mut con) <= LIMIT);
    assert!(dbsize(&mut con) < 300);
}

#[test]
fn an_evicted_key_is_invalidated_before_the_reply() {
    let (server, mut con) = cache("volatile-random");
    let mut r = Raw::connect(server.addr());
    r.call(&["HELLO", "3"]);
    r.call(&["CLIENT", "TRACKING", "on"]);
    r.call(&["SETEX", "volatile-key", "10000", "x"]);
    r.call(&["GET", "volatile-key"]);
    // A big key without TTL takes the memory over the limit; the next command evicts the volatile key.
    r.call(&["SETBIT", "big", &(LIMIT * 8 + 8000).to_string(), "0"]);
    assert_eq!(
        r.call(&["GETBIT", "big", "0"]),
        Frame::Push(vec![
            bulk("invalidate"),
            Frame::Array(vec![bulk("volatile-key")])
        ])
    );
    assert_eq!(r.read(), Frame::Integer(0));
    assert!(!exists(&mut con, "volatile-key"));
}

#[test]
fn collections_are_counted_and_evicted_too() {
    let (_server, mut con) = cache("allkeys-lru");
    let member = "m".repeat(100);
    for k in 0..40 {
        for chunk in 0..10 {
            let mut cmd = redis::cmd("SADD");
            cmd.arg(format!("set:{k}"));
            for i in 0..10 {
                cmd.arg(format!("{member}{chunk}-{i}"));
            }
            let _: i64 = cmd.query(&mut con).unwrap();
        }
    }
    // 40 sets of 100 members of ~105 bytes: about twice the limit.
    assert!(info_field(&mut con, "stats", "evicted_keys") > 0);
    assert!(used(&mut con) <= LIMIT + 20_000);
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    assert_eq!(info_field(&mut con, "memory", "used_memory_dataset"), 0);
}

#[test]
fn keys_of_every_database_are_candidates_and_follow_move_and_swapdb() {
    let (_server, mut con) = cache("allkeys-random");
    let value = "x".repeat(VALUE_BYTES);
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    for i in 0..50 {
        let _: i64 = redis::cmd("MOVE")
            .arg(format!("k:{i}"))
            .arg(1)
            .query(&mut con)
            .unwrap();
    }
    let _: () = redis::cmd("SWAPDB").arg(0).arg(2).query(&mut con).unwrap();
    let dataset = info_field(&mut con, "memory", "used_memory_dataset");
    assert!(dataset >= 100 * VALUE_BYTES as i64, "{dataset}");
    // Fill database 0 (empty after the swap): keys of databases 1 and 2 are evicted too.
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("new:{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    wait_until("background eviction", || used(&mut con) <= LIMIT);
    let mut left = 0;
    for db in [1, 2] {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut con).unwrap();
        left += dbsize(&mut con);
    }
    assert!(left < 100, "no key of databases 1 and 2 was evicted");
}

#[test]
fn small_integers_are_not_shared_under_an_lru_or_lfu_maxmemory_policy() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let refcount = |con: &mut redis::Connection| -> i64 {
        redis::cmd("OBJECT")
            .arg("REFCOUNT")
            .arg("a")
            .query(con)
            .unwrap()
    };
    let _: () = redis::cmd("SET").arg("a").arg("1").query(&mut con).unwrap();
    assert_eq!(refcount(&mut con), 2_147_483_647);
    config_set(&mut con, "maxmemory", "1gb");
    config_set(&mut con, "maxmemory-policy", "allkeys-random");
    assert_eq!(refcount(&mut con), 2_147_483_647);
    for policy in ["allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu"] {
        config_set(&mut con, "maxmemory-policy", policy);
        assert_eq!(refcount(&mut con), 1, "{policy}");
    }
    config_set(&mut con, "maxmemory", "0");
    assert_eq!(refcount(&mut con), 2_147_483_647);
}

/// Writes the start of a request that never completes: `args` arguments announced, `sent` of
/// `VALUE_BYTES` each sent. Its bytes sit in the client's query buffer.
fn partial_request(addr: std::net::SocketAddr, args: usize, sent: usize) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut bytes = format!("*{args}\r\n").into_bytes();
    for _ in 0..sent {
        bytes.extend_from_slice(format!("${VALUE_BYTES}\r\n").as_bytes());
        bytes.extend_from_slice(&[b'x'; VALUE_BYTES]);
        bytes.extend_from_slice(b"\r\n");
    }
    stream.write_all(&bytes).unwrap();
    stream
}

/// Clients' buffers count in the memory maxmemory bounds, as in Redis: half-sent requests held in
/// query buffers push the data set out (mem_clients_normal shows them), and CONFIG RESETSTAT zeroes
/// evicted_keys.
#[test]
fn client_buffers_count_toward_maxmemory() {
    let (server, mut con) = cache("allkeys-lru");
    let value = "v".repeat(VALUE_BYTES);
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query(&mut con)
            .unwrap();
    }
    assert_eq!(info_field(&mut con, "stats", "evicted_keys"), 0);
    // 3 x 60 KB of unfinished requests: with ~110 KB of data, over the 200 KB limit.
    let _held: Vec<_> = (0..3)
        .map(|_| partial_request(server.addr(), 100, 60))
        .collect();
    wait_until("client buffers to be counted", || {
        info_field(&mut con, "memory", "mem_clients_normal") >= 3 * 60 * VALUE_BYTES as i64
    });
    wait_until("keys to be evicted for the client buffers", || {
        info_field(&mut con, "stats", "evicted_keys") > 0
    });
    assert!(used(&mut con) <= LIMIT + 4 * VALUE_BYTES as i64);
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    assert_eq!(info_field(&mut con, "stats", "evicted_keys"), 0);
}

/// `server` and a connection to it that client eviction never closes.
fn with_unevictable_client(server: Server) -> (Server, redis::Connection) {
    let mut con = server.client();
    let _: () = redis::cmd("CLIENT")
        .arg("NO-EVICT")
        .arg("on")
        .query(&mut con)
        .unwrap();
    (server, con)
}

/// A cache-mode server with `maxmemory-clients` 100kb, and a connection to it that is never evicted.
fn client_eviction_cache() -> (Server, redis::Connection) {
    let (server, mut con) = with_unevictable_client(cache("allkeys-lru").0);
    config_set(&mut con, "maxmemory-clients", "100kb");
    (server, con)
}

/// maxmemory-clients: past it, the clients holding the most are closed (evicted_clients) before any key
/// is evicted; a client with CLIENT NO-EVICT on never is.
#[test]
fn client_eviction_closes_the_largest_clients_first() {
    use std::io::Read;
    let (server, mut con) = client_eviction_cache();
    let _: () = redis::cmd("SET")
        .arg("kept")
        .arg("1")
        .query(&mut con)
        .unwrap();
    let small = partial_request(server.addr(), 100, 10);
    let mut big = partial_request(server.addr(), 200, 150);
    wait_until("the big client to be evicted", || {
        info_field(&mut con, "stats", "evicted_clients") > 0
    });
    // The evicted connection is closed: a read sees its end.
    big.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = big.read_to_end(&mut sink);
    assert_eq!(info_field(&mut con, "stats", "evicted_clients"), 1);
    assert_eq!(info_field(&mut con, "stats", "evicted_keys"), 0);
    assert!(exists(&mut con, "kept"));
    drop(small);
}

/// maxmemory-clients counts a request's arguments before it runs: a client whose one command carries
/// more than the limit is evicted without running it or getting a reply, as Redis's processCommand does
/// (Redis's suite: "client evicted due to large argv").
#[test]
fn a_client_whose_command_is_over_maxmemory_clients_is_evicted_before_it_runs() {
    use std::io::{Read, Write};
    let (server, mut con) = client_eviction_cache();
    let mut big = std::net::TcpStream::connect(server.addr()).unwrap();
    // Under the limit, a command runs as usual.
    let value = "v".repeat(50_000);
    let small = format!(
        "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{value}\r\n",
        value.len()
    );
    big.write_all(small.as_bytes()).unwrap();
    let mut reply = [0u8; 5];
    big.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
    let value = "w".repeat(200_000);
    let request = format!(
        "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{value}\r\n",
        value.len()
    );
    big.write_all(request.as_bytes()).unwrap();
    big.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let _ = big.read_to_end(&mut sink);
    assert!(
        sink.is_empty(),
        "no reply: {:?}",
        String::from_utf8_lossy(&sink)
    );
    assert_eq!(info_field(&mut con, "stats", "evicted_clients"), 1);
    let kept: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(kept.len(), 50_000, "the evicted client's SET did not run");
}

/// A client growing its query buffer past maxmemory-clients with one unfinished argument is evicted while
/// no command runs anywhere (by the periodic check, as Redis's cron also does).
#[test]
fn a_client_whose_unfinished_request_is_over_maxmemory_clients_is_evicted_without_a_command() {
    use std::io::{Read, Write};
    let (server, mut con) = client_eviction_cache();
    let mut big = std::net::TcpStream::connect(server.addr()).unwrap();
    big.write_all(b"*1\r\n$300000\r\n").unwrap();
    // Written in pieces, so the server reads it in several reads; a write fails once it has closed.
    for _ in 0..20 {
        if big.write_all(&[b'v'; 10_000]).is_err() {
            break;
        }
    }
    big.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let read = big.read_to_end(&mut sink);
    assert!(
        read.is_ok()
            || read
                .as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
        "the connection was not closed: {read:?}"
    );
    assert_eq!(info_field(&mut con, "stats", "evicted_clients"), 1);
}

/// The `tot-mem` CLIENT LIST shows for the client named `name`, or None once it is gone.
fn client_tot_mem(con: &mut redis::Connection, name: &str) -> Option<i64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(con).unwrap();
    let line = list
        .lines()
        .find(|l| l.contains(&format!(" name={name} ")))?;
    let field = line.split(' ').find_map(|f| f.strip_prefix("tot-mem="))?;
    Some(field.parse().unwrap())
}

/// A raw connection that names itself `name`.
fn named(addr: std::net::SocketAddr, name: &str) -> Raw {
    let mut raw = Raw::connect(addr);
    assert_eq!(
        raw.call(&["CLIENT", "SETNAME", name]),
        Frame::Simple(bytes::Bytes::from_static(b"OK"))
    );
    raw
}

/// A client that sends commands without reading the replies keeps being served, as in Redis: its
/// replies wait in its output buffer, which counts in its memory, until `maxmemory-clients` evicts it.
#[test]
fn a_client_that_does_not_read_its_replies_grows_its_output_buffer_until_evicted() {
    use std::io::Write;
    let (server, mut con) = with_unevictable_client(Server::start(KvConfig::default()));
    let _: () = redis::cmd("SETRANGE")
        .arg("k")
        .arg(200_000)
        .arg("v")
        .query(&mut con)
        .unwrap();
    let mut slow = named(server.addr(), "slow");
    let get = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    // Past what the socket buffers take, the replies pile up in the server.
    wait_until("the unread replies to pile up", || {
        slow.stream.write_all(&get.repeat(5)).unwrap();
        client_tot_mem(&mut con, "slow").unwrap() > 4_000_000
    });
    assert!(info_field(&mut con, "memory", "mem_clients_normal") > 4_000_000);
    config_set(&mut con, "maxmemory-clients", "1mb");
    wait_until("the slow client to be evicted", || {
        client_tot_mem(&mut con, "slow").is_none()
    });
    assert_eq!(info_field(&mut con, "stats", "evicted_clients"), 1);
    assert!(info_field(&mut con, "memory", "mem_clients_normal") < 1_000_000);
}

/// `maxmemory-clients` as a percentage of `maxmemory` (CONFIG GET shows it as set), and an argument
/// still arriving counts at its announced size, as Redis allocates it once it has read the length.
#[test]
fn maxmemory_clients_as_a_percentage_counts_an_awaited_argument_in_full() {
    use std::io::Write;
    let (server, mut con) = with_unevictable_client(Server::start(KvConfig::default()));
    config_set(&mut con, "maxmemory", "6mb");
    config_set(&mut con, "maxmemory-clients", "7%");
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-clients")
        .query(&mut con)
        .unwrap();
    assert_eq!(shown, ["maxmemory-clients", "7%"]);
    let limit = 6 * 1024 * 1024 * 7 / 100;
    // Half the limit announced, 1000 bytes of it sent: counted whole, not evicted.
    let mut half = named(server.addr(), "half");
    half.stream
        .write_all(format!("*1\r\n${}\r\n", limit / 2).as_bytes())
        .unwrap();
    half.stream.write_all(&[b'v'; 1000]).unwrap();
    wait_until("the announced argument to be counted", || {
        client_tot_mem(&mut con, "half").unwrap() >= limit / 2
    });
    // The whole limit announced: evicted at once, with a few bytes of it sent.
    let mut whole = named(server.addr(), "whole");
    whole
        .stream
        .write_all(format!("*1\r\n${limit}\r\n").as_bytes())
        .unwrap();
    whole.stream.write_all(&[b'v'; 1000]).unwrap();
    wait_until("the client announcing the limit to be evicted", || {
        client_tot_mem(&mut con, "whole").is_none()
    });
    assert_eq!(info_field(&mut con, "stats", "evicted_clients"), 1);
    assert!(client_tot_mem(&mut con, "half").is_some());
}

/// The `i`th request of a sequence.
type Request = dyn Fn(usize) -> Vec<String>;

/// Sends the request `request(i)` for i = 0, 1, ... on a fresh connection, reading each reply, until
/// the server closes the connection; returns how many requests were answered.
fn answered_until_closed(
    addr: std::net::SocketAddr,
    request: impl Fn(usize) -> Vec<String>,
) -> usize {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = bytes::BytesMut::new();
    for i in 0..100_000 {
        let args = request(i);
        let mut out = format!("*{}\r\n", args.len());
        for a in &args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        if stream.write_all(out.as_bytes()).is_err() {
            return i;
        }
        loop {
            if Frame::decode(&mut buf).unwrap().is_some() {
                break;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return i,
            }
        }
    }
    panic!("never closed");
}

/// What a connection's state takes counts in its memory, as in Redis: WATCHed keys, channel, pattern
/// and shard-channel subscriptions, the MULTI queue and tracking prefixes each take a client past
/// `maxmemory-clients` in time (Redis's suite: "client evicted due to watched key list", ...).
#[test]
fn watches_subscriptions_queued_commands_and_prefixes_count_toward_maxmemory_clients() {
    let (server, mut con) = client_eviction_cache();
    let value = "v".repeat(10_000);
    let cases: Vec<(&str, Box<Request>)> = vec![
        (
            "WATCH",
            Box::new(|i| vec!["WATCH".into(), format!("key:{i}")]),
        ),
        (
            "SUBSCRIBE",
            Box::new(|i| vec!["SUBSCRIBE".into(), i.to_string()]),
        ),
        (
            "PSUBSCRIBE",
            Box::new(|i| vec!["PSUBSCRIBE".into(), i.to_string()]),
        ),
        (
            "SSUBSCRIBE",
            Box::new(|i| vec!["SSUBSCRIBE".into(), i.to_string()]),
        ),
        (
            "MULTI",
            Box::new(move |i| match i {
                0 => vec!["MULTI".into()],
                _ => vec!["SET".into(), "k".into(), value.clone()],
            }),
        ),
        (
            "CLIENT TRACKING",
            Box::new(|i| {
                [
                    "CLIENT",
                    "TRACKING",
                    "on",
                    "PREFIX",
                    &format!("{i:012}"),
                    "BCAST",
                ]
                .map(str::to_owned)
                .to_vec()
            }),
        ),
    ];
    for (n, (what, request)) in cases.into_iter().enumerate() {
        let answered = answered_until_closed(server.addr(), request);
        assert!(answered > 1, "{what}: closed after {answered}");
        assert_eq!(
            info_field(&mut con, "stats", "evicted_clients"),
            n as i64 + 1,
            "{what}"
        );
    }
}

/// CLIENT LIST's `multi-mem` shows what a MULTI queue holds, and counts in `tot-mem`, until EXEC.
#[test]
fn a_multi_queue_shows_in_multi_mem_and_tot_mem() {
    let (server, mut con) = with_unevictable_client(Server::start(KvConfig::default()));
    let field = |con: &mut redis::Connection, name: &str| -> i64 {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(con).unwrap();
        let line = list.lines().find(|l| l.contains(" name=queuer ")).unwrap();
        let prefix = format!("{name}=");
        line.split(' ')
            .find_map(|f| f.strip_prefix(prefix.as_str()))
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut queuer = named(server.addr(), "queuer");
    assert_eq!(field(&mut con, "multi-mem"), 0);
    let idle = field(&mut con, "tot-mem");
    queuer.call(&["MULTI"]);
    let value = "v".repeat(10_000);
    queuer.call(&["SET", "k", &value]);
    let queued = field(&mut con, "multi-mem");
    assert!(queued >= 10_000, "multi-mem={queued}");
    assert!(field(&mut con, "tot-mem") >= idle + queued);
    queuer.call(&["EXEC"]);
    assert_eq!(field(&mut con, "multi-mem"), 0);
    assert_eq!(field(&mut con, "tot-mem"), idle);
}
