//! MULTI / EXEC / DISCARD / WATCH through a real Redis client and raw bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use strata_kv::KvConfig;

#[test]
fn multi_exec_queues_and_runs_atomically() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("n")
        .cmd("INCRBY")
        .arg("n")
        .arg(10)
        .query(&mut c)
        .unwrap();
    assert_eq!((a, b), (1, 11));
    let out = server.raw(
        b"MULTI\r\nSET k v\r\nGET k\r\nHSET k f v\r\nEXEC\r\nEXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nDISCARD\r\nQUIT\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        text,
        "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n$1\r\nv\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n\
         -ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n-ERR MULTI calls can not be nested\r\n+OK\r\n+OK\r\n"
    );
}

#[test]
fn errors_while_queueing_abort_exec() {
    let server = Server::start(KvConfig::default());
    let out = server.raw(b"MULTI\r\nSET k v\r\nNOSUCH\r\nGET\r\nEXEC\r\nGET k\r\nQUIT\r\n");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH'"),
        "{text}"
    );
    assert!(
        text.contains("-ERR wrong number of arguments for 'get' command\r\n"),
        "{text}"
    );
    assert!(
        text.contains("-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n"),
        "{text}"
    );
}

#[test]
fn watch_aborts_exec_when_the_key_changed() {
    let server = Server::start(KvConfig::default());
    let mut c1 = server.client();
    let mut c2 = server.client();
    let _: () = redis::cmd("SET").arg("w").arg(1).query(&mut c1).unwrap();
    let _: () = redis::cmd("WATCH").arg("w").query(&mut c1).unwrap();
    let _: () = redis::cmd("SET").arg("w").arg(2).query(&mut c2).unwrap();
    let _: () = redis::cmd("MULTI").query(&mut c1).unwrap();
    let _: () = redis::cmd("SET").arg("w").arg(3).query(&mut c1).unwrap();
    let r: redis::Value = redis::cmd("EXEC").query(&mut c1).unwrap();
    assert_eq!(
        r,
        redis::Value::Nil,
        "EXEC must fail after a watched key changed"
    );
    let v: i64 = redis::cmd("GET").arg("w").query(&mut c1).unwrap();
    assert_eq!(v, 2);

    // Unchanged watched key: EXEC runs. A write to another key does not matter.
    let _: () = redis::cmd("WATCH").arg("w").query(&mut c1).unwrap();
    let _: () = redis::cmd("SET")
        .arg("other")
        .arg(1)
        .query(&mut c2)
        .unwrap();
    let _: () = redis::cmd("MULTI").query(&mut c1).unwrap();
    let _: () = redis::cmd("SET").arg("w").arg(4).query(&mut c1).unwrap();
    let r: Vec<String> = redis::cmd("EXEC").query(&mut c1).unwrap();
    assert_eq!(r, vec!["OK"]);

    // UNWATCH forgets.
    let _: () = redis::cmd("WATCH").arg("w").query(&mut c1).unwrap();
    let _: () = redis::cmd("UNWATCH").query(&mut c1).unwrap();
    let _: () = redis::cmd("SET").arg("w").arg(5).query(&mut c2).unwrap();
    let _: () = redis::cmd("MULTI").query(&mut c1).unwrap();
    let _: () = redis::cmd("GET").arg("w").query(&mut c1).unwrap();
    let r: Vec<i64> = redis::cmd("EXEC").query(&mut c1).unwrap();
    assert_eq!(r, vec![5]);
}
