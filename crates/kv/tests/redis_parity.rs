//! Behaviours found missing or different from Redis 7 by Redis's own test suite and by review: SHUTDOWN,
//! SORT's key extraction, single-batch SMOVE and *STORE, lazy expiry's `expired` event and counter,
//! RANDOMKEY's spread.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::Server;
use strata_kv::{KvConfig, ManualClock};
use tokio_util::sync::CancellationToken;

fn q<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let e = cmd
        .query::<redis::Value>(c)
        .expect_err(&format!("{args:?} should fail"));
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    }
}

#[test]
fn shutdown_is_refused_inside_multi_and_checks_its_options() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: () = q(&mut c, &["MULTI"]);
    assert_eq!(
        err(&mut c, &["SHUTDOWN"]),
        "ERR Command not allowed inside a transaction"
    );
    assert!(err(&mut c, &["EXEC"]).starts_with("EXECABORT"));
    assert_eq!(
        err(&mut c, &["SHUTDOWN", "SAVE", "NOSAVE"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["SHUTDOWN", "ABORT", "NOW"]),
        "ERR syntax error"
    );
    assert_eq!(err(&mut c, &["SHUTDOWN", "LATER"]), "ERR syntax error");
    assert_eq!(
        err(&mut c, &["SHUTDOWN", "ABORT"]),
        "ERR No shutdown in progress."
    );
    let pong: String = q(&mut c, &["PING"]);
    assert_eq!(pong, "PONG");
}

#[test]
fn shutdown_closes_the_connection_without_a_reply_and_asks_the_node_to_stop() {
    let request = CancellationToken::new();
    let server = Server::start(KvConfig {
        shutdown_request: request.clone(),
        ..KvConfig::default()
    });
    let mut raw = support::Raw::connect(server.addr());
    // The reply of a command pipelined before SHUTDOWN still arrives; SHUTDOWN's own never does.
    raw.send(&["SET", "k", "v"]);
    raw.send(&["SHUTDOWN", "NOSAVE", "NOW"]);
    assert_eq!(raw.read(), strata_resp::Frame::ok());
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut raw.stream, &mut rest).unwrap();
    assert!(rest.is_empty(), "no reply to SHUTDOWN: {rest:?}");
    assert!(request.is_cancelled());
}

#[test]
fn sort_keys_skip_option_arguments_and_take_the_last_store() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "sort", "abc", "store", "invalid", "store", "stillbad", "store", "def",
            ],
            &["abc", "def"],
        ),
        (&["sort", "abc", "get", "store", "by", "store"], &["abc"]),
        (
            &["sort", "abc", "limit", "store", "1", "store", "dst"],
            &["abc", "dst"],
        ),
        (&["sort", "abc", "store"], &["abc"]),
    ];
    for (args, keys) in cases {
        let mut cmd = redis::cmd("COMMAND");
        cmd.arg("GETKEYS").arg(*args);
        let got: Vec<String> = cmd.query(&mut c).unwrap();
        assert_eq!(got, *keys, "{args:?}");
    }
}

/// WAL fsyncs so far: under fsync=always (the harness's default) every committed batch costs one, so
/// a command committing in one batch moves this by exactly one.
fn wal_syncs(c: &mut redis::Connection) -> i64 {
    support::info_field(c, "persistence", "strata_wal_syncs")
}

#[test]
fn smove_and_set_stores_commit_one_batch() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: i64 = q(&mut c, &["SADD", "src", "a", "b", "c"]);
    let _: i64 = q(&mut c, &["SADD", "dst", "x"]);
    let _: i64 = q(&mut c, &["SADD", "other", "b", "c", "y"]);
    let _: i64 = q(&mut c, &["SADD", "dest", "old1", "old2"]);

    let before = wal_syncs(&mut c);
    let moved: i64 = q(&mut c, &["SMOVE", "src", "dst", "a"]);
    assert_eq!(moved, 1);
    assert_eq!(wal_syncs(&mut c) - before, 1, "SMOVE commits once");
    let mut dst: Vec<String> = q(&mut c, &["SMEMBERS", "dst"]);
    dst.sort();
    assert_eq!(dst, ["a", "x"]);
    assert_eq!(q::<i64>(&mut c, &["SISMEMBER", "src", "a"]), 0);

    // Moving the last member deletes the source, in the same batch.
    let _: i64 = q(&mut c, &["SADD", "single", "m"]);
    let before = wal_syncs(&mut c);
    assert_eq!(q::<i64>(&mut c, &["SMOVE", "single", "dst", "m"]), 1);
    assert_eq!(wal_syncs(&mut c) - before, 1);
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "single"]), 0);
    assert_eq!(q::<i64>(&mut c, &["SCARD", "dst"]), 3);

    // A destination already holding the member is not written: its WATCHers' transactions still run.
    let _: i64 = q(&mut c, &["SADD", "w-src", "a", "b"]);
    let _: i64 = q(&mut c, &["SADD", "w-dst", "a"]);
    let mut watcher = server.client();
    let _: () = q(&mut watcher, &["WATCH", "w-dst"]);
    let _: () = q(&mut watcher, &["MULTI"]);
    let _: String = q(&mut watcher, &["SADD", "w-dst", "c"]);
    assert_eq!(q::<i64>(&mut c, &["SMOVE", "w-src", "w-dst", "a"]), 1);
    let done: Option<Vec<i64>> = q(&mut watcher, &["EXEC"]);
    assert_eq!(done, Some(vec![1]));
    assert_eq!(q::<i64>(&mut c, &["SCARD", "w-dst"]), 2);
    assert_eq!(q::<i64>(&mut c, &["SCARD", "w-src"]), 1);

    for (op, want) in [
        ("SINTERSTORE", vec!["b", "c"]),
        ("SUNIONSTORE", vec!["b", "c", "y"]),
        ("SDIFFSTORE", vec!["y"]),
    ] {
        let before = wal_syncs(&mut c);
        let n: i64 = q(&mut c, &[op, "dest", "other", "src"][..]);
        assert_eq!(wal_syncs(&mut c) - before, 1, "{op} commits once");
        assert_eq!(n, want.len() as i64, "{op}");
        let mut got: Vec<String> = q(&mut c, &["SMEMBERS", "dest"]);
        got.sort();
        assert_eq!(got, want, "{op}");
    }
    // An empty result deletes the destination, whatever it held.
    let _: () = q(&mut c, &["SET", "dest", "string"]);
    assert_eq!(
        q::<i64>(&mut c, &["SINTERSTORE", "dest", "src", "nosuch"]),
        0
    );
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "dest"]), 0);
}

#[test]
fn lazy_expiry_counts_and_announces_the_key_before_the_commands_own_events() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let server = Server::start_with_clock(KvConfig::default(), clock.clone());
    let mut c = server.client();
    let _: () = q(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    let mut sub = server.client();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe("__keyspace@0__:k").unwrap();
    let _: () = q(&mut c, &["SET", "k", "v", "PX", "100"]);
    assert_eq!(
        pubsub
            .get_message()
            .unwrap()
            .get_payload::<String>()
            .unwrap(),
        "set"
    );
    assert_eq!(
        pubsub
            .get_message()
            .unwrap()
            .get_payload::<String>()
            .unwrap(),
        "expire"
    );
    clock.advance_ms(1_000);
    // Whoever removes the expired key first (this write's lookup, or the active cycle), `expired`
    // comes before the write's own event, and is counted once.
    let _: () = q(&mut c, &["SET", "k", "v2"]);
    assert_eq!(
        pubsub
            .get_message()
            .unwrap()
            .get_payload::<String>()
            .unwrap(),
        "expired"
    );
    assert_eq!(
        pubsub
            .get_message()
            .unwrap()
            .get_payload::<String>()
            .unwrap(),
        "set"
    );
    assert_eq!(support::info_field(&mut c, "stats", "expired_keys"), 1);
}

#[test]
fn a_read_expires_the_key_it_finds_expired() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let dir = tempfile::tempdir().unwrap();
    let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
    let ks = strata_kv::Keyspace::open(db, 16, clock.clone()).unwrap();
    let entry = strata_kv::keyspace::Entry {
        expire_at_ms: 1_700_000_000_100,
        indexed_at_ms: 0,
        ..strata_kv::keyspace::Entry::string(bytes::Bytes::from_static(b"v"))
    };
    assert!(!ks.may_expire(), "no TTL was ever set");
    ks.put(0, b"k", &entry).unwrap();
    assert!(ks.may_expire());
    ks.put(
        0,
        b"plain",
        &strata_kv::keyspace::Entry::string(bytes::Bytes::from_static(b"v")),
    )
    .unwrap();
    assert!(!ks.expire_if_needed(0, b"k").unwrap(), "not yet due");
    clock.advance_ms(1_000);
    assert!(!ks.expire_if_needed(0, b"plain").unwrap());
    assert!(!ks.expire_if_needed(0, b"missing").unwrap());
    assert!(ks.expire_if_needed(0, b"k").unwrap());
    assert!(!ks.expire_if_needed(0, b"k").unwrap(), "already gone");
    assert_eq!(ks.expired_keys(), 1);
    // Nothing is left for the active cycle: neither the record nor its expiry index entry.
    assert_eq!(
        ks.expire_cycle(clock.as_ref().now_ms_for_test(), 100)
            .unwrap(),
        0
    );
    let tree = ks.storage().tree("kv0").unwrap();
    assert_eq!(tree.prefix(b"x").count(), 0);
    assert_eq!(tree.prefix(b"m").count(), 1);
    // After a restart, a stored TTL is noticed at open.
    ks.put(1, b"later", &entry).unwrap();
    drop(tree);
    drop(ks);
    let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
    let ks = strata_kv::Keyspace::open(db, 16, clock.clone()).unwrap();
    assert!(ks.may_expire());
}

trait NowForTest {
    fn now_ms_for_test(&self) -> u64;
}

impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> u64 {
        strata_kv::Clock::now_ms(self)
    }
}

#[test]
fn randomkey_draws_keys_evenly() {
    let server = Server::start_without_fsync(KvConfig::default());
    let mut c = server.client();
    // Keys whose gaps in key order differ a lot: `key:0` .. `key:49`.
    const KEYS: usize = 50;
    const DRAWS: usize = 5_000;
    for i in 0..KEYS {
        let _: () = q(&mut c, &["SET", &format!("key:{i}"), "v"]);
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut pipe = redis::pipe();
    for _ in 0..DRAWS {
        pipe.cmd("RANDOMKEY");
    }
    let keys: Vec<String> = pipe.query(&mut c).unwrap();
    for k in keys {
        *seen.entry(k).or_default() += 1;
    }
    assert_eq!(seen.len(), KEYS, "every key is drawn");
    // 100 expected per key; a standard deviation is about 10.
    let (min, max) = (seen.values().min().unwrap(), seen.values().max().unwrap());
    assert!(*min >= 50 && *max <= 160, "uneven draws: {min}..{max}");
}

#[test]
fn info_reports_cpu_time_and_a_replication_section() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let info: String = q(&mut c, &["INFO", "cpu"]);
    for field in [
        "used_cpu_sys:",
        "used_cpu_user:",
        "used_cpu_sys_children:",
        "used_cpu_user_children:",
    ] {
        assert!(info.contains(field), "{field} in {info}");
    }
    let info: String = q(&mut c, &["INFO", "replication"]);
    assert!(info.contains("role:master\r\n"), "{info}");
    assert!(info.contains("master_repl_offset:0\r\n"), "{info}");
    let replid = info
        .lines()
        .find_map(|l| l.strip_prefix("master_replid:"))
        .expect("master_replid");
    assert_eq!(replid.len(), 40);
    assert!(replid.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn paused_clients_count_as_blocked_and_nothing_expires_during_a_write_pause() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let server = Server::start_with_clock(KvConfig::default(), clock.clone());
    let mut c = server.client();
    let _: () = q(&mut c, &["SET", "k", "v", "PX", "10"]);
    let mut tx = support::Raw::connect(server.addr());
    assert_eq!(tx.call(&["MULTI"]), strata_resp::Frame::ok());
    assert_eq!(
        tx.call(&["INCR", "n"]),
        strata_resp::Frame::simple("QUEUED")
    );
    let _: () = q(&mut c, &["CLIENT", "PAUSE", "60000", "WRITE"]);
    // A command failing its checks is answered at once; a write waits and counts as blocked.
    let mut raw = support::Raw::connect(server.addr());
    raw.send(&["SET", "only-key"]);
    assert!(matches!(raw.read(), strata_resp::Frame::Error(_)));
    raw.send(&["SET", "other", "v"]);
    support::wait_blocked(&mut c, 1);
    // A transaction with a write is held back at EXEC.
    tx.send(&["EXEC"]);
    support::wait_blocked(&mut c, 2);
    // The key reads as gone but is not removed while writes are paused.
    clock.advance_ms(1_000);
    let v: Option<String> = q(&mut c, &["GET", "k"]);
    assert_eq!(v, None);
    assert_eq!(support::info_field(&mut c, "stats", "expired_keys"), 0);
    let _: () = q(&mut c, &["CLIENT", "UNPAUSE"]);
    assert_eq!(raw.read(), strata_resp::Frame::ok());
    assert_eq!(
        tx.read(),
        strata_resp::Frame::Array(vec![strata_resp::Frame::Integer(1)])
    );
    support::wait_blocked(&mut c, 0);
    let _: Option<String> = q(&mut c, &["GET", "k"]);
    assert_eq!(support::info_field(&mut c, "stats", "expired_keys"), 1);
}

#[test]
fn reads_of_missing_keys_announce_keymiss_when_class_m_is_on() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: () = q(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "Em"]);
    let mut sub = server.client();
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe("__keyevent@0__:keymiss").unwrap();
    let _: () = q(&mut c, &["SET", "present", "v"]);
    // EXISTS asks without announcing; GET of a present key is no miss; GET and HGET of absent keys are.
    let _: i64 = q(&mut c, &["EXISTS", "nope0"]);
    let _: Option<String> = q(&mut c, &["GET", "present"]);
    let _: Option<String> = q(&mut c, &["GET", "nope1"]);
    let _: Option<String> = q(&mut c, &["HGET", "nope2", "f"]);
    for expected in ["nope1", "nope2"] {
        let key: String = pubsub.get_message().unwrap().get_payload().unwrap();
        assert_eq!(key, expected);
    }
}
