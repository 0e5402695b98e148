//! String and generic key commands through a real Redis client, with Redis's replies and error strings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::Server;
use redis::Value;
use strata_kv::{KvConfig, ManualClock};

fn err(c: &mut redis::Connection, cmd: &mut redis::Cmd) -> String {
    cmd.query::<Value>(c).unwrap_err().to_string()
}

#[test]
fn set_get_and_options() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: () = redis::cmd("SET").arg("k").arg("v1").query(&mut c).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, "v1");
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut c).unwrap();
    assert_eq!(missing, None);

    let r: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("v2")
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, None);
    let r: Option<String> = redis::cmd("SET")
        .arg("k")
        .arg("v2")
        .arg("XX")
        .arg("GET")
        .query(&mut c)
        .unwrap();
    assert_eq!(r.as_deref(), Some("v1"));
    let r: Option<String> = redis::cmd("SET")
        .arg("new")
        .arg("x")
        .arg("XX")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, None);
    assert!(
        err(
            &mut c,
            redis::cmd("SET").arg("k").arg("v").arg("NX").arg("XX")
        )
        .contains("syntax error")
    );
    assert!(
        err(
            &mut c,
            redis::cmd("SET").arg("k").arg("v").arg("EX").arg("0")
        )
        .contains("invalid expire time in 'set' command")
    );
    assert!(
        err(
            &mut c,
            redis::cmd("SET").arg("k").arg("v").arg("EX").arg("x")
        )
        .contains("not an integer")
    );
    assert!(
        err(
            &mut c,
            redis::cmd("SET")
                .arg("k")
                .arg("v")
                .arg("EX")
                .arg("1")
                .arg("PX")
                .arg("1")
        )
        .contains("syntax error")
    );

    let n: i64 = redis::cmd("SETNX").arg("k").arg("z").query(&mut c).unwrap();
    assert_eq!(n, 0);
    let old: String = redis::cmd("GETSET")
        .arg("k")
        .arg("v3")
        .query(&mut c)
        .unwrap();
    assert_eq!(old, "v2");
    let old: String = redis::cmd("GETDEL").arg("k").query(&mut c).unwrap();
    assert_eq!(old, "v3");
    let n: i64 = redis::cmd("EXISTS")
        .arg("k")
        .arg("k")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn counters_and_their_errors() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let n: i64 = redis::cmd("INCR").arg("n").query(&mut c).unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("INCRBY").arg("n").arg(41).query(&mut c).unwrap();
    assert_eq!(n, 42);
    let n: i64 = redis::cmd("DECRBY").arg("n").arg(2).query(&mut c).unwrap();
    assert_eq!(n, 40);
    let n: i64 = redis::cmd("DECR").arg("n").query(&mut c).unwrap();
    assert_eq!(n, 39);
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(i64::MAX)
        .query(&mut c)
        .unwrap();
    assert!(
        err(&mut c, redis::cmd("INCR").arg("big"))
            .contains("increment or decrement would overflow")
    );
    let _: () = redis::cmd("SET").arg("s").arg("abc").query(&mut c).unwrap();
    assert!(
        err(&mut c, redis::cmd("INCR").arg("s"))
            .contains("value is not an integer or out of range")
    );
    let _: () = redis::cmd("SET")
        .arg("f")
        .arg("10.5")
        .query(&mut c)
        .unwrap();
    let f: String = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("0.1")
        .query(&mut c)
        .unwrap();
    assert_eq!(f, "10.6");
    let f: String = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("-5")
        .query(&mut c)
        .unwrap();
    assert_eq!(f, "5.6");
    assert!(
        err(&mut c, redis::cmd("INCRBYFLOAT").arg("f").arg("abc")).contains("not a valid float")
    );
}

#[test]
fn append_ranges_and_multi_key() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let n: i64 = redis::cmd("APPEND")
        .arg("a")
        .arg("Hello")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 5);
    let n: i64 = redis::cmd("APPEND")
        .arg("a")
        .arg(" World")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 11);
    let s: String = redis::cmd("GETRANGE")
        .arg("a")
        .arg(0)
        .arg(4)
        .query(&mut c)
        .unwrap();
    assert_eq!(s, "Hello");
    let s: String = redis::cmd("GETRANGE")
        .arg("a")
        .arg(-5)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(s, "World");
    let s: String = redis::cmd("GETRANGE")
        .arg("a")
        .arg(5)
        .arg(2)
        .query(&mut c)
        .unwrap();
    assert_eq!(s, "");
    let n: i64 = redis::cmd("SETRANGE")
        .arg("a")
        .arg(6)
        .arg("Redis")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 11);
    let n: i64 = redis::cmd("SETRANGE")
        .arg("pad")
        .arg(3)
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 4);
    let v: Vec<u8> = redis::cmd("GET").arg("pad").query(&mut c).unwrap();
    assert_eq!(v, b"\0\0\0x");
    let n: i64 = redis::cmd("STRLEN").arg("a").query(&mut c).unwrap();
    assert_eq!(n, 11);

    let _: () = redis::cmd("MSET")
        .arg("x")
        .arg(1)
        .arg("y")
        .arg(2)
        .query(&mut c)
        .unwrap();
    let v: Vec<Option<String>> = redis::cmd("MGET")
        .arg("x")
        .arg("nope")
        .arg("y")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec![Some("1".into()), None, Some("2".into())]);
    assert!(
        err(&mut c, redis::cmd("MSET").arg("x").arg(1).arg("y"))
            .contains("wrong number of arguments for 'mset' command")
    );
    let n: i64 = redis::cmd("MSETNX")
        .arg("x")
        .arg(9)
        .arg("z")
        .arg(9)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
    let n: i64 = redis::cmd("DEL")
        .arg("x")
        .arg("y")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);
    let t: String = redis::cmd("TYPE").arg("a").query(&mut c).unwrap();
    assert_eq!(t, "string");
    let t: String = redis::cmd("TYPE").arg("nope").query(&mut c).unwrap();
    assert_eq!(t, "none");
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    keys.sort();
    assert_eq!(keys, vec!["a", "pad"]);
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 2);
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn expiry_follows_the_injected_clock() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let server = Server::start_with_clock(KvConfig::default(), clock.clone());
    let mut c = server.client();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("EX")
        .arg(10)
        .query(&mut c)
        .unwrap();
    let ttl: i64 = redis::cmd("TTL").arg("k").query(&mut c).unwrap();
    assert_eq!(ttl, 10);
    let pttl: i64 = redis::cmd("PTTL").arg("k").query(&mut c).unwrap();
    assert_eq!(pttl, 10_000);
    let at: i64 = redis::cmd("EXPIRETIME").arg("k").query(&mut c).unwrap();
    assert_eq!(at, 1_700_000_010);
    // GT only lengthens, LT only shortens, NX only sets when there is none.
    let r: i64 = redis::cmd("EXPIRE")
        .arg("k")
        .arg(5)
        .arg("GT")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, 0);
    let r: i64 = redis::cmd("EXPIRE")
        .arg("k")
        .arg(5)
        .arg("LT")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, 1);
    let r: i64 = redis::cmd("EXPIRE")
        .arg("k")
        .arg(50)
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, 0);
    assert!(
        err(
            &mut c,
            redis::cmd("EXPIRE").arg("k").arg(5).arg("NX").arg("XX")
        )
        .contains("not compatible")
    );
    clock.advance_ms(4_999);
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    // At the deadline itself the key is still alive (Redis expires once now > deadline)...
    clock.advance_ms(1);
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    // ...and gone a millisecond later.
    clock.advance_ms(1);
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, None);
    let ttl: i64 = redis::cmd("TTL").arg("k").query(&mut c).unwrap();
    assert_eq!(ttl, -2);

    let _: () = redis::cmd("SET")
        .arg("p")
        .arg("v")
        .arg("PX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let r: i64 = redis::cmd("PERSIST").arg("p").query(&mut c).unwrap();
    assert_eq!(r, 1);
    let ttl: i64 = redis::cmd("TTL").arg("p").query(&mut c).unwrap();
    assert_eq!(ttl, -1);
    let _: () = redis::cmd("SET")
        .arg("p")
        .arg("w")
        .arg("KEEPTTL")
        .query(&mut c)
        .unwrap();
    let r: i64 = redis::cmd("EXPIRE").arg("p").arg(-1).query(&mut c).unwrap();
    assert_eq!(r, 1);
    let n: i64 = redis::cmd("EXISTS").arg("p").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn scan_rename_randomkey() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    for i in 0..250 {
        let _: () = redis::cmd("SET")
            .arg(format!("user:{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET").arg("other").arg(1).query(&mut c).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = 0u64;
    let mut rounds = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("user:*")
            .arg("COUNT")
            .arg(20)
            .query(&mut c)
            .unwrap();
        seen.extend(keys);
        rounds += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
        assert!(rounds < 100, "SCAN did not terminate");
    }
    assert_eq!(seen.len(), 250);
    assert!(seen.iter().all(|k| k.starts_with("user:")));
    let (_, none): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("hash")
        .arg("COUNT")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    assert!(none.is_empty());

    let _: () = redis::cmd("EXPIRE")
        .arg("other")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RENAME")
        .arg("other")
        .arg("moved")
        .query(&mut c)
        .unwrap();
    let ttl: i64 = redis::cmd("TTL").arg("moved").query(&mut c).unwrap();
    assert!(ttl > 90);
    assert!(err(&mut c, redis::cmd("RENAME").arg("nope").arg("x")).contains("no such key"));
    let n: i64 = redis::cmd("RENAMENX")
        .arg("moved")
        .arg("user:1")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
    let k: String = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
    assert!(k.starts_with("user:") || k == "moved");
    let n: i64 = redis::cmd("TOUCH")
        .arg("moved")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
}

/// Strings up to Redis's 512 MB: one past the engine's former 32 MiB limit is stored, grown in place,
/// and read back after a restart (Redis's suite builds a 33.5 MB HyperLogLog string this way).
#[test]
fn strings_larger_than_32_mib_are_stored() {
    use strata_kv::SystemClock;
    let dir = tempfile::tempdir().unwrap();
    let len = (33 << 20) + 1000;
    {
        let server = Server::start_in(dir.path(), KvConfig::default(), Arc::new(SystemClock));
        let mut c = server.client();
        let n: i64 = redis::cmd("SETRANGE")
            .arg("big")
            .arg(len - 1)
            .arg("z")
            .query(&mut c)
            .unwrap();
        assert_eq!(n as usize, len);
        let n: i64 = redis::cmd("APPEND")
            .arg("big")
            .arg("!")
            .query(&mut c)
            .unwrap();
        assert_eq!(n as usize, len + 1);
    }
    let server = Server::start_in(dir.path(), KvConfig::default(), Arc::new(SystemClock));
    let mut c = server.client();
    let v: Vec<u8> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
    assert_eq!(v.len(), len + 1);
    assert_eq!(&v[len - 2..], b"\0z!");
}
