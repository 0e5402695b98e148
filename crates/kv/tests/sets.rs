//! Set commands through a real Redis client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::Server;
use strata_kv::KvConfig;

fn set(c: &mut redis::Connection, key: &str) -> BTreeSet<String> {
    redis::cmd("SMEMBERS").arg(key).query(c).unwrap()
}

#[test]
fn set_commands_behave_like_redis() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let n: i64 = redis::cmd("SADD")
        .arg("a")
        .arg("x")
        .arg("y")
        .arg("z")
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 3);
    let n: i64 = redis::cmd("SADD")
        .arg("b")
        .arg("y")
        .arg("z")
        .arg("w")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 3);
    let n: i64 = redis::cmd("SCARD").arg("a").query(&mut c).unwrap();
    assert_eq!(n, 3);
    let n: i64 = redis::cmd("SISMEMBER")
        .arg("a")
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let v: Vec<i64> = redis::cmd("SMISMEMBER")
        .arg("a")
        .arg("x")
        .arg("w")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec![1, 0]);
    let inter: BTreeSet<String> = redis::cmd("SINTER")
        .arg("a")
        .arg("b")
        .query(&mut c)
        .unwrap();
    assert_eq!(inter, BTreeSet::from(["y".into(), "z".into()]));
    let union: BTreeSet<String> = redis::cmd("SUNION")
        .arg("a")
        .arg("b")
        .query(&mut c)
        .unwrap();
    assert_eq!(union.len(), 4);
    let diff: BTreeSet<String> = redis::cmd("SDIFF").arg("a").arg("b").query(&mut c).unwrap();
    assert_eq!(diff, BTreeSet::from(["x".into()]));
    let n: i64 = redis::cmd("SINTERSTORE")
        .arg("dst")
        .arg("a")
        .arg("b")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(set(&mut c, "dst"), BTreeSet::from(["y".into(), "z".into()]));
    let n: i64 = redis::cmd("SINTERCARD")
        .arg(2)
        .arg("a")
        .arg("b")
        .arg("LIMIT")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("SMOVE")
        .arg("a")
        .arg("b")
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    assert!(set(&mut c, "b").contains("x"));
    assert!(!set(&mut c, "a").contains("x"));
    let n: i64 = redis::cmd("SREM")
        .arg("a")
        .arg("y")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let m: String = redis::cmd("SRANDMEMBER").arg("b").query(&mut c).unwrap();
    assert!(set(&mut c, "b").contains(&m));
    let v: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("b")
        .arg(10)
        .query(&mut c)
        .unwrap();
    assert_eq!(v.len(), 4);
    let v: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("b")
        .arg(-10)
        .query(&mut c)
        .unwrap();
    assert_eq!(v.len(), 10);
    let popped: Vec<String> = redis::cmd("SPOP").arg("b").arg(3).query(&mut c).unwrap();
    assert_eq!(popped.len(), 3);
    let n: i64 = redis::cmd("SCARD").arg("b").query(&mut c).unwrap();
    assert_eq!(n, 1);
    let _: String = redis::cmd("SPOP").arg("b").query(&mut c).unwrap();
    let n: i64 = redis::cmd("EXISTS").arg("b").query(&mut c).unwrap();
    assert_eq!(n, 0, "a set emptied by SPOP is deleted");
    let t: String = redis::cmd("TYPE").arg("a").query(&mut c).unwrap();
    assert_eq!(t, "set");
    let e = redis::cmd("SADD").arg("a").query::<()>(&mut c).unwrap_err();
    assert!(
        e.to_string()
            .contains("wrong number of arguments for 'sadd' command"),
        "{e}"
    );
    let _: () = redis::cmd("SET").arg("str").arg(1).query(&mut c).unwrap();
    let e = redis::cmd("SADD")
        .arg("str")
        .arg("m")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
}
