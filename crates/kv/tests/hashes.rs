//! Hash commands through a real Redis client; deleting, overwriting and renaming hashes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::Server;
use strata_kv::KvConfig;

#[test]
fn hash_commands_behave_like_redis() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let n: i64 = redis::cmd("HSET")
        .arg("h")
        .arg("a")
        .arg(1)
        .arg("b")
        .arg(2)
        .arg("a")
        .arg(3)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);
    let n: i64 = redis::cmd("HSET")
        .arg("h")
        .arg("b")
        .arg(20)
        .arg("c")
        .arg(30)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let v: String = redis::cmd("HGET").arg("h").arg("a").query(&mut c).unwrap();
    assert_eq!(v, "3");
    let n: i64 = redis::cmd("HLEN").arg("h").query(&mut c).unwrap();
    assert_eq!(n, 3);
    let all: HashMap<String, String> = redis::cmd("HGETALL").arg("h").query(&mut c).unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all["b"], "20");
    let keys: Vec<String> = redis::cmd("HKEYS").arg("h").query(&mut c).unwrap();
    assert_eq!(keys, vec!["a", "b", "c"]);
    let vals: Vec<String> = redis::cmd("HVALS").arg("h").query(&mut c).unwrap();
    assert_eq!(vals, vec!["3", "20", "30"]);
    let m: Vec<Option<String>> = redis::cmd("HMGET")
        .arg("h")
        .arg("a")
        .arg("zz")
        .query(&mut c)
        .unwrap();
    assert_eq!(m, vec![Some("3".into()), None]);
    let n: i64 = redis::cmd("HSETNX")
        .arg("h")
        .arg("a")
        .arg(9)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
    let n: i64 = redis::cmd("HINCRBY")
        .arg("h")
        .arg("a")
        .arg(10)
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 13);
    let f: String = redis::cmd("HINCRBYFLOAT")
        .arg("h")
        .arg("f")
        .arg("1.5")
        .query(&mut c)
        .unwrap();
    assert_eq!(f, "1.5");
    let n: i64 = redis::cmd("HSTRLEN")
        .arg("h")
        .arg("c")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);
    let n: i64 = redis::cmd("HEXISTS")
        .arg("h")
        .arg("zz")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
    let t: String = redis::cmd("TYPE").arg("h").query(&mut c).unwrap();
    assert_eq!(t, "hash");
    let e = redis::cmd("GET").arg("h").query::<()>(&mut c).unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    let _: () = redis::cmd("SET").arg("s").arg("x").query(&mut c).unwrap();
    let e = redis::cmd("HGET")
        .arg("s")
        .arg("a")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    let e = redis::cmd("HINCRBY")
        .arg("h")
        .arg("c")
        .arg("x")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("not an integer"), "{e}");
    let e = redis::cmd("HSET")
        .arg("h")
        .arg("a")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("wrong number of arguments for 'hset' command"),
        "{e}"
    );

    // Deleting the last field deletes the key.
    let n: i64 = redis::cmd("HDEL")
        .arg("h")
        .arg("a")
        .arg("b")
        .arg("c")
        .arg("f")
        .arg("nope")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 4);
    let n: i64 = redis::cmd("EXISTS").arg("h").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn deleted_overwritten_and_renamed_hashes_leave_nothing_behind() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("old")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("DEL").arg("h").query(&mut c).unwrap();
    assert_eq!(n, 1);
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("new")
        .arg(2)
        .query(&mut c)
        .unwrap();
    let keys: Vec<String> = redis::cmd("HKEYS").arg("h").query(&mut c).unwrap();
    assert_eq!(
        keys,
        vec!["new"],
        "a re-created hash must not see the old fields"
    );

    let _: () = redis::cmd("SET")
        .arg("h")
        .arg("now a string")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("DEL").arg("h").query(&mut c).unwrap();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("x")
        .arg(1)
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("HLEN").arg("h").query(&mut c).unwrap();
    assert_eq!(n, 1);

    let _: () = redis::cmd("EXPIRE")
        .arg("h")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RENAME")
        .arg("h")
        .arg("h2")
        .query(&mut c)
        .unwrap();
    let all: HashMap<String, String> = redis::cmd("HGETALL").arg("h2").query(&mut c).unwrap();
    assert_eq!(all, HashMap::from([("x".to_owned(), "1".to_owned())]));
    let ttl: i64 = redis::cmd("TTL").arg("h2").query(&mut c).unwrap();
    assert!(ttl > 90);
    let n: i64 = redis::cmd("EXISTS").arg("h").query(&mut c).unwrap();
    assert_eq!(n, 0);
}
