//! Blocking list commands: wake-up order, timeouts, MULTI, CLIENT UNBLOCK, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::thread;
use std::time::{Duration, Instant};

use common::Server;
use strata_kv::KvConfig;
use support::wait_blocked;

type Popped = Option<(String, String)>;

fn blpop_in_thread(server: &Server, key: &str, timeout: &str) -> thread::JoinHandle<Popped> {
    let mut con = server.client();
    let (key, timeout) = (key.to_owned(), timeout.to_owned());
    thread::spawn(move || {
        redis::cmd("BLPOP")
            .arg(&key)
            .arg(&timeout)
            .query(&mut con)
            .unwrap()
    })
}

#[test]
fn waiters_are_served_in_the_order_they_blocked() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let mut waiters = Vec::new();
    for i in 1..=3 {
        waiters.push(blpop_in_thread(&server, "q", "0"));
        wait_blocked(&mut con, i);
    }
    let n: i64 = redis::cmd("RPUSH")
        .arg("q")
        .arg(&["a", "b", "c"])
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 3);
    let got: Vec<Popped> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(
        got,
        vec![
            Some(("q".into(), "a".into())),
            Some(("q".into(), "b".into())),
            Some(("q".into(), "c".into())),
        ]
    );
    wait_blocked(&mut con, 0);
    let len: i64 = redis::cmd("LLEN").arg("q").query(&mut con).unwrap();
    assert_eq!(len, 0);
}

#[test]
fn waiters_are_served_inside_the_push_that_fed_them() {
    // Redis serves blocked clients before the command after the push runs: the pusher's own
    // pipelined LLEN already sees the list emptied, and a chain of BLMOVEs has moved the element
    // all the way before the push is answered.
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    for round in 0..20 {
        let waiter = blpop_in_thread(&server, "q", "0");
        wait_blocked(&mut con, 1);
        let (pushed, len): (i64, i64) = redis::pipe()
            .cmd("RPUSH")
            .arg("q")
            .arg(round)
            .cmd("LLEN")
            .arg("q")
            .query(&mut con)
            .unwrap();
        assert_eq!((pushed, len), (1, 0), "round {round}");
        assert_eq!(
            waiter.join().unwrap(),
            Some(("q".into(), round.to_string()))
        );
    }

    let mut movers = Vec::new();
    for (from, to) in [("l1", "l2"), ("l2", "l3")] {
        let mut c = server.client();
        movers.push(thread::spawn(move || {
            let moved: Option<String> = redis::cmd("BLMOVE")
                .arg(from)
                .arg(to)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(0)
                .query(&mut c)
                .unwrap();
            moved
        }));
        wait_blocked(&mut con, movers.len() as i64);
    }
    let _: i64 = redis::cmd("RPUSH")
        .arg("l1")
        .arg("foo")
        .query(&mut con)
        .unwrap();
    let lists: (Vec<String>, Vec<String>, Vec<String>) = redis::pipe()
        .cmd("LRANGE")
        .arg("l1")
        .arg(0)
        .arg(-1)
        .cmd("LRANGE")
        .arg("l2")
        .arg(0)
        .arg(-1)
        .cmd("LRANGE")
        .arg("l3")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(lists, (vec![], vec![], vec!["foo".to_owned()]));
    for m in movers {
        assert_eq!(m.join().unwrap().as_deref(), Some("foo"));
    }
}

#[test]
fn one_push_serves_one_waiter_and_the_rest_keep_waiting() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let first = blpop_in_thread(&server, "q", "0");
    wait_blocked(&mut con, 1);
    let second = blpop_in_thread(&server, "q", "0");
    wait_blocked(&mut con, 2);
    let _: i64 = redis::cmd("LPUSH")
        .arg("q")
        .arg("x")
        .query(&mut con)
        .unwrap();
    assert_eq!(first.join().unwrap(), Some(("q".into(), "x".into())));
    wait_blocked(&mut con, 1);
    let _: i64 = redis::cmd("LPUSH")
        .arg("q")
        .arg("y")
        .query(&mut con)
        .unwrap();
    assert_eq!(second.join().unwrap(), Some(("q".into(), "y".into())));
}

#[test]
fn timeouts_and_their_errors() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let start = Instant::now();
    let r: Popped = redis::cmd("BLPOP")
        .arg("none")
        .arg("0.1")
        .query(&mut con)
        .unwrap();
    assert_eq!(r, None);
    assert!(start.elapsed() >= Duration::from_millis(100));
    for (timeout, message) in [
        ("-1", "timeout is negative"),
        ("abc", "timeout is not a float or out of range"),
        ("nan", "timeout is not a float or out of range"),
    ] {
        let e = redis::cmd("BRPOP")
            .arg("k")
            .arg(timeout)
            .query::<Popped>(&mut con)
            .unwrap_err();
        assert_eq!(e.detail(), Some(message), "{timeout}");
    }
    let r: Option<String> = redis::cmd("BLMOVE")
        .arg("none")
        .arg("dst")
        .arg("LEFT")
        .arg("RIGHT")
        .arg("0.05")
        .query(&mut con)
        .unwrap();
    assert_eq!(r, None);
    // WRONGTYPE at once, not after the timeout.
    let _: () = redis::cmd("SET").arg("s").arg("v").query(&mut con).unwrap();
    let e = redis::cmd("BLPOP")
        .arg("s")
        .arg("0")
        .query::<Popped>(&mut con)
        .unwrap_err();
    assert_eq!(e.code(), Some("WRONGTYPE"));
}

#[test]
fn blmove_and_brpoplpush_wake_up_and_move() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let mut other = server.client();
    let mover = thread::spawn(move || {
        redis::cmd("BLMOVE")
            .arg("src")
            .arg("dst")
            .arg("RIGHT")
            .arg("LEFT")
            .arg("0")
            .query::<Option<String>>(&mut other)
            .unwrap()
    });
    wait_blocked(&mut con, 1);
    let _: i64 = redis::cmd("RPUSH")
        .arg("src")
        .arg(&["1", "2"])
        .query(&mut con)
        .unwrap();
    assert_eq!(mover.join().unwrap().as_deref(), Some("2"));
    let dst: Vec<String> = redis::cmd("LRANGE")
        .arg("dst")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(dst, vec!["2"]);
    // BRPOPLPUSH chained onto the destination of another blocked move.
    let mut other = server.client();
    let chained = thread::spawn(move || {
        redis::cmd("BRPOPLPUSH")
            .arg("empty")
            .arg("dst")
            .arg("0")
            .query::<Option<String>>(&mut other)
            .unwrap()
    });
    wait_blocked(&mut con, 1);
    let _: i64 = redis::cmd("LPUSH")
        .arg("empty")
        .arg("z")
        .query(&mut con)
        .unwrap();
    assert_eq!(chained.join().unwrap().as_deref(), Some("z"));
    let dst: Vec<String> = redis::cmd("LRANGE")
        .arg("dst")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(dst, vec!["z", "2"]);
}

#[test]
fn multi_does_not_block_and_exec_wakes_waiters() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let (r,): (Popped,) = redis::pipe()
        .atomic()
        .cmd("BLPOP")
        .arg("none")
        .arg("0")
        .query(&mut con)
        .unwrap();
    assert_eq!(r, None);
    let waiter = blpop_in_thread(&server, "q", "0");
    wait_blocked(&mut con, 1);
    let _: (i64, i64) = redis::pipe()
        .atomic()
        .cmd("RPUSH")
        .arg("q")
        .arg("in-multi")
        .cmd("RPUSH")
        .arg("other")
        .arg("x")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        Some(("q".into(), "in-multi".into()))
    );
}

#[test]
fn lmpop_and_blmpop() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let _: i64 = redis::cmd("RPUSH")
        .arg("b")
        .arg(&["1", "2", "3"])
        .query(&mut con)
        .unwrap();
    let r: Option<(String, Vec<String>)> = redis::cmd("LMPOP")
        .arg(2)
        .arg("a")
        .arg("b")
        .arg("RIGHT")
        .arg("COUNT")
        .arg(2)
        .query(&mut con)
        .unwrap();
    assert_eq!(r, Some(("b".into(), vec!["3".into(), "2".into()])));
    let r: Option<(String, Vec<String>)> = redis::cmd("LMPOP")
        .arg(1)
        .arg("a")
        .arg("LEFT")
        .query(&mut con)
        .unwrap();
    assert_eq!(r, None);
    for (args, message) in [
        (vec!["0", "a", "LEFT"], "numkeys should be greater than 0"),
        (vec!["3", "a", "LEFT"], "syntax error"),
        (vec!["1", "a", "UP"], "syntax error"),
        (
            vec!["1", "a", "LEFT", "COUNT", "0"],
            "count should be greater than 0",
        ),
        (
            vec!["1", "a", "LEFT", "COUNT", "1", "COUNT", "1"],
            "syntax error",
        ),
    ] {
        let e = redis::cmd("LMPOP")
            .arg(&args)
            .query::<redis::Value>(&mut con)
            .unwrap_err();
        assert_eq!(e.detail(), Some(message), "{args:?}");
    }
    let mut other = server.client();
    let waiter = thread::spawn(move || {
        redis::cmd("BLMPOP")
            .arg(0)
            .arg(2)
            .arg("x")
            .arg("y")
            .arg("LEFT")
            .arg("COUNT")
            .arg(5)
            .query::<Option<(String, Vec<String>)>>(&mut other)
            .unwrap()
    });
    wait_blocked(&mut con, 1);
    let _: i64 = redis::cmd("RPUSH")
        .arg("y")
        .arg(&["p", "q"])
        .query(&mut con)
        .unwrap();
    assert_eq!(
        waiter.join().unwrap(),
        Some(("y".into(), vec!["p".into(), "q".into()]))
    );
}

#[test]
fn client_unblock_with_timeout_or_error() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let mut blocked = server.client();
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut blocked).unwrap();
    let waiter = thread::spawn(move || {
        let first = redis::cmd("BLPOP")
            .arg("q")
            .arg(0)
            .query::<Popped>(&mut blocked);
        let second = redis::cmd("BLPOP")
            .arg("q")
            .arg(0)
            .query::<Popped>(&mut blocked);
        (first.unwrap(), second.unwrap_err())
    });
    wait_blocked(&mut con, 1);
    let n: i64 = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(id)
        .arg("TIMEOUT")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    wait_blocked(&mut con, 1);
    let n: i64 = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(id)
        .arg("ERROR")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    let (first, second) = waiter.join().unwrap();
    assert_eq!(first, None);
    assert_eq!(second.code(), Some("UNBLOCKED"));
    assert_eq!(second.detail(), Some("client unblocked via CLIENT UNBLOCK"));
    // Not blocked: 0.
    let n: i64 = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(id)
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 0);
    let e = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(id)
        .arg("NOW")
        .query::<i64>(&mut con)
        .unwrap_err();
    assert_eq!(
        e.detail(),
        Some("CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    );
}

#[test]
fn shutdown_releases_blocked_clients() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let mut blocked = server.client();
    let waiter = thread::spawn(move || {
        redis::cmd("BLPOP")
            .arg("q")
            .arg(0)
            .query::<Popped>(&mut blocked)
            .is_err()
    });
    wait_blocked(&mut con, 1);
    drop(server);
    assert!(
        waiter.join().unwrap(),
        "the blocked client sees its connection closed"
    );
}
