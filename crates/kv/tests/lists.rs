//! List commands through a real Redis client.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use strata_kv::KvConfig;

fn range(c: &mut redis::Connection, key: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(c)
        .unwrap()
}

#[test]
fn list_commands_behave_like_redis() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let n: i64 = redis::cmd("RPUSH")
        .arg("l")
        .arg("a")
        .arg("b")
        .arg("c")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 3);
    let n: i64 = redis::cmd("LPUSH")
        .arg("l")
        .arg("z")
        .arg("y")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 5);
    assert_eq!(range(&mut c, "l"), vec!["y", "z", "a", "b", "c"]);
    let v: Vec<String> = redis::cmd("LRANGE")
        .arg("l")
        .arg(-2)
        .arg(100)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, vec!["b", "c"]);
    let v: Vec<String> = redis::cmd("LRANGE")
        .arg("l")
        .arg(3)
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert!(v.is_empty());
    let v: String = redis::cmd("LINDEX").arg("l").arg(-1).query(&mut c).unwrap();
    assert_eq!(v, "c");
    let v: Option<String> = redis::cmd("LINDEX").arg("l").arg(10).query(&mut c).unwrap();
    assert_eq!(v, None);
    let _: () = redis::cmd("LSET")
        .arg("l")
        .arg(1)
        .arg("Z")
        .query(&mut c)
        .unwrap();
    let e = redis::cmd("LSET")
        .arg("l")
        .arg(9)
        .arg("x")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("index out of range"), "{e}");
    let v: String = redis::cmd("LPOP").arg("l").query(&mut c).unwrap();
    assert_eq!(v, "y");
    let v: Vec<String> = redis::cmd("RPOP").arg("l").arg(2).query(&mut c).unwrap();
    assert_eq!(v, vec!["c", "b"]);
    assert_eq!(range(&mut c, "l"), vec!["Z", "a"]);
    let n: i64 = redis::cmd("LINSERT")
        .arg("l")
        .arg("BEFORE")
        .arg("a")
        .arg("m")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 3);
    let n: i64 = redis::cmd("LINSERT")
        .arg("l")
        .arg("AFTER")
        .arg("nope")
        .arg("m")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, -1);
    let _: i64 = redis::cmd("RPUSH")
        .arg("l")
        .arg("m")
        .arg("m")
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("LREM")
        .arg("l")
        .arg(-2)
        .arg("m")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(range(&mut c, "l"), vec!["Z", "m", "a"]);
    let p: i64 = redis::cmd("LPOS").arg("l").arg("a").query(&mut c).unwrap();
    assert_eq!(p, 2);
    let _: () = redis::cmd("LTRIM")
        .arg("l")
        .arg(1)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(range(&mut c, "l"), vec!["m", "a"]);
    let v: String = redis::cmd("LMOVE")
        .arg("l")
        .arg("other")
        .arg("RIGHT")
        .arg("LEFT")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "a");
    let v: String = redis::cmd("RPOPLPUSH")
        .arg("l")
        .arg("other")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "m");
    assert_eq!(range(&mut c, "other"), vec!["m", "a"]);
    let n: i64 = redis::cmd("EXISTS").arg("l").query(&mut c).unwrap();
    assert_eq!(n, 0, "an emptied list is deleted");
    let n: i64 = redis::cmd("LPUSHX")
        .arg("l")
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 0);
    let v: Option<String> = redis::cmd("LPOP").arg("l").query(&mut c).unwrap();
    assert_eq!(v, None);
    let n: i64 = redis::cmd("LLEN").arg("other").query(&mut c).unwrap();
    assert_eq!(n, 2);
    let _: () = redis::cmd("RENAME")
        .arg("other")
        .arg("moved")
        .query(&mut c)
        .unwrap();
    assert_eq!(range(&mut c, "moved"), vec!["m", "a"]);
    let t: String = redis::cmd("TYPE").arg("moved").query(&mut c).unwrap();
    assert_eq!(t, "list");
    let e = redis::cmd("LPUSH")
        .arg("moved")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("wrong number of arguments for 'lpush' command"),
        "{e}"
    );
}

#[test]
fn a_queue_pushed_and_popped_many_times_stays_correct() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    for round in 0..20 {
        for i in 0..50 {
            let _: i64 = redis::cmd("RPUSH")
                .arg("q")
                .arg(format!("{round}-{i}"))
                .query(&mut c)
                .unwrap();
        }
        for i in 0..50 {
            let v: String = redis::cmd("LPOP").arg("q").query(&mut c).unwrap();
            assert_eq!(v, format!("{round}-{i}"));
        }
    }
    let n: i64 = redis::cmd("LLEN").arg("q").query(&mut c).unwrap();
    assert_eq!(n, 0);
}
