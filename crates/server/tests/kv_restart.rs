//! Restart tests of the key-value service on the real `strata` binary: data of every type, expiry deadlines,
//! SWAPDB's mapping and a sorted set's rank order are all there after a clean stop (SIGTERM or the SHUTDOWN
//! command, the latter under fsync=no) and after
//! `kill -9` with fsync=always, and after `kill -9` of pipelined writes with fsync=everysec.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

mod support;

use support::{DEADLINE, Node};

/// A Redis connection to `node`.
fn client(node: &Node) -> redis::Connection {
    let url = format!("redis://127.0.0.1:{}", node.port("resp"));
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

fn q<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

const ZSET_LEN: usize = 2000;
/// An expiry deadline far in the future, in Unix ms.
const DEADLINE_MS: i64 = 4_000_000_000_000;

/// Writes one key of every type (each acknowledged before the next), in databases 0, 1 and 2.
fn write_everything(c: &mut redis::Connection) {
    let _: () = q(c, &["SET", "str", "hello"]);
    let _: i64 = q(c, &["INCRBY", "counter", "41"]);
    let _: i64 = q(c, &["INCR", "counter"]);
    let _: i64 = q(c, &["SETBIT", "bits", "100", "1"]);
    let _: i64 = q(c, &["HSET", "hash", "f1", "v1", "f2", "v2"]);
    let _: i64 = q(c, &["RPUSH", "list", "a", "b", "c", "d"]);
    let _: i64 = q(c, &["LPUSH", "list", "z"]);
    let _: () = q(c, &["LSET", "list", "2", "B"]);
    let _: i64 = q(c, &["SADD", "set", "x", "y", "z"]);
    let _: i64 = q(c, &["SREM", "set", "y"]);
    // A sorted set large enough for its rank index to matter, with ties broken by member.
    let mut zadd = redis::cmd("ZADD");
    zadd.arg("zset");
    for i in 0..ZSET_LEN {
        zadd.arg((i / 2) as f64 * 1.5).arg(format!("m{i:05}"));
    }
    let _: i64 = zadd.query(c).unwrap();
    let _: i64 = q(c, &["ZREM", "zset", "m00000"]);
    let _: String = q(c, &["ZINCRBY", "zset", "10000", "m00001"]);
    // Expiry: one deadline far away, one already past after the restart would be wrong to keep.
    let _: () = q(c, &["SET", "ttl", "v"]);
    let _: i64 = q(c, &["PEXPIREAT", "ttl", &DEADLINE_MS.to_string()]);
    let _: i64 = q(c, &["HSET", "ttl-hash", "f", "v"]);
    let _: i64 = q(
        c,
        &[
            "EXPIREAT",
            "ttl-hash",
            &(DEADLINE_MS / 1000 + 7).to_string(),
        ],
    );
    let _: () = q(c, &["SET", "gone", "v", "PX", "1"]);
    // A deleted big collection stays deleted; a renamed key moved.
    let _: i64 = q(c, &["SADD", "deleted", "1", "2", "3"]);
    let _: i64 = q(c, &["DEL", "deleted"]);
    let _: () = q(c, &["SET", "old-name", "moved"]);
    let _: () = q(c, &["RENAME", "old-name", "new-name"]);
    // SWAPDB: what was written to 1 is in 0 afterwards and the other way round; 2 is untouched.
    let _: () = q(c, &["SELECT", "1"]);
    let _: () = q(c, &["SET", "where", "written-in-1"]);
    let _: i64 = q(c, &["RPUSH", "only-in-1", "v"]);
    let _: () = q(c, &["SELECT", "2"]);
    let _: () = q(c, &["SET", "where", "written-in-2"]);
    let _: () = q(c, &["SELECT", "0"]);
    let _: () = q(c, &["SET", "where", "written-in-0"]);
    let _: () = q(c, &["SWAPDB", "0", "1"]);
}

fn check_everything(c: &mut redis::Connection) {
    // Database 0 now holds what was written to 1.
    assert_eq!(q::<String>(c, &["GET", "where"]), "written-in-1");
    assert_eq!(
        q::<Vec<String>>(c, &["LRANGE", "only-in-1", "0", "-1"]),
        ["v"]
    );
    assert_eq!(q::<i64>(c, &["EXISTS", "str"]), 0);
    let _: () = q(c, &["SELECT", "2"]);
    assert_eq!(q::<String>(c, &["GET", "where"]), "written-in-2");
    let _: () = q(c, &["SELECT", "1"]);
    assert_eq!(q::<String>(c, &["GET", "where"]), "written-in-0");

    assert_eq!(q::<String>(c, &["GET", "str"]), "hello");
    assert_eq!(q::<i64>(c, &["GET", "counter"]), 42);
    assert_eq!(q::<i64>(c, &["GETBIT", "bits", "100"]), 1);
    assert_eq!(q::<i64>(c, &["BITCOUNT", "bits"]), 1);
    let mut hash: Vec<(String, String)> = q(c, &["HGETALL", "hash"]);
    hash.sort();
    assert_eq!(
        hash,
        [("f1".into(), "v1".into()), ("f2".into(), "v2".into())]
    );
    assert_eq!(
        q::<Vec<String>>(c, &["LRANGE", "list", "0", "-1"]),
        ["z", "a", "B", "c", "d"]
    );
    let mut set: Vec<String> = q(c, &["SMEMBERS", "set"]);
    set.sort();
    assert_eq!(set, ["x", "z"]);

    // The sorted set: cardinality, ranks from both ends, ranges by rank and by score.
    assert_eq!(q::<usize>(c, &["ZCARD", "zset"]), ZSET_LEN - 1);
    assert_eq!(q::<Option<i64>>(c, &["ZRANK", "zset", "m00000"]), None);
    assert_eq!(
        q::<i64>(c, &["ZRANK", "zset", "m00001"]),
        (ZSET_LEN - 2) as i64
    );
    assert_eq!(q::<i64>(c, &["ZRANK", "zset", "m00002"]), 0);
    assert_eq!(q::<i64>(c, &["ZRANK", "zset", "m01000"]), 998);
    assert_eq!(q::<i64>(c, &["ZREVRANK", "zset", "m00001"]), 0);
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGE", "zset", "998", "999"]),
        ["m01000", "m01001"]
    );
    assert_eq!(
        q::<Vec<(String, f64)>>(c, &["ZRANGE", "zset", "-2", "-1", "WITHSCORES"]),
        [("m01999".into(), 1498.5), ("m00001".into(), 10000.0)]
    );
    assert_eq!(
        q::<Vec<String>>(c, &["ZRANGEBYSCORE", "zset", "3", "4.5"]),
        ["m00004", "m00005", "m00006", "m00007"]
    );
    assert_eq!(q::<i64>(c, &["ZCOUNT", "zset", "(0", "+inf"]), 1999);
    assert_eq!(q::<i64>(c, &["ZCOUNT", "zset", "-inf", "(3"]), 2);

    // Deadlines are kept to the millisecond; a key past its deadline stays gone.
    assert_eq!(q::<i64>(c, &["PEXPIRETIME", "ttl"]), DEADLINE_MS);
    assert_eq!(
        q::<i64>(c, &["EXPIRETIME", "ttl-hash"]),
        DEADLINE_MS / 1000 + 7
    );
    assert_eq!(q::<i64>(c, &["TTL", "str"]), -1);
    assert_eq!(q::<i64>(c, &["EXISTS", "gone", "deleted", "old-name"]), 0);
    assert_eq!(q::<String>(c, &["GET", "new-name"]), "moved");
    assert_eq!(q::<i64>(c, &["SADD", "deleted", "9"]), 1);
    assert_eq!(q::<Vec<String>>(c, &["SMEMBERS", "deleted"]), ["9"]);
    // Leave the data as written, for the next restart.
    assert_eq!(q::<i64>(c, &["DEL", "deleted"]), 1);
}

/// Starts a node on `dir` and checks everything `write_everything` wrote.
fn check_after(dir: &Path, extra: &[&str]) {
    let node = Node::start(dir, extra);
    let mut c = client(&node);
    check_everything(&mut c);
    drop(c);
    drop(node);
}

#[test]
fn every_type_survives_a_clean_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = Node::start(&dir, &[]);
    let mut c = client(&node);
    write_everything(&mut c);
    drop(c);
    assert!(node.stop(rustix::process::Signal::TERM).success());
    check_after(&dir, &[]);
    // And once more: a second restart reads what the first one left.
    check_after(&dir, &[]);
}

#[test]
fn shutdown_command_stops_the_node_cleanly_and_keeps_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = Node::start(&dir, &["--fsync", "no"]);
    let mut c = client(&node);
    write_everything(&mut c);
    let port = node.port("resp");
    // Redis's SHUTDOWN never replies: the connection closes as the process exits.
    let e = redis::cmd("SHUTDOWN")
        .query::<redis::Value>(&mut c)
        .expect_err("SHUTDOWN gets no reply");
    assert!(e.is_io_error() || e.is_connection_dropped(), "{e}");
    // As with Redis, whose process is gone when the connection closes: nobody gets in after that.
    assert_eq!(
        std::net::TcpStream::connect(("127.0.0.1", u16::try_from(port).unwrap()))
            .map(drop)
            .map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "the listener closed before the SHUTDOWN connection did"
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "strata did not exit after SHUTDOWN"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    assert!(
        !dir.join("ports.json").exists(),
        "a clean stop removes ports.json"
    );
    drop(c);
    check_after(&dir, &[]);
}

#[test]
fn every_acknowledged_write_survives_kill_9_with_fsync_always() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = Node::start(&dir, &["--fsync", "always"]);
    let mut c = client(&node);
    write_everything(&mut c);
    // Kill with the connection still open: nothing gets a chance to flush on the way out.
    assert!(!node.stop(rustix::process::Signal::KILL).success());
    drop(c);
    check_after(&dir, &["--fsync", "always"]);
}

/// Under fsync=everysec a reply is sent only after the WAL bytes of its write reached the OS (one write(2)
/// for a whole pipeline, as Redis writes its AOF buffer before replying), so killing the process — not the
/// machine — loses nothing that was acknowledged, pipelined or not.
#[test]
fn acknowledged_pipelined_writes_survive_kill_9_with_fsync_everysec() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = Node::start(&dir, &["--fsync", "everysec"]);
    let mut c = client(&node);
    write_everything(&mut c);
    let _: () = q(&mut c, &["SELECT", "3"]);
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i).ignore();
        pipe.cmd("RPUSH").arg("plist").arg(i).ignore();
    }
    let () = pipe.query(&mut c).unwrap();
    assert!(!node.stop(rustix::process::Signal::KILL).success());
    drop(c);
    let node = Node::start(&dir, &["--fsync", "everysec"]);
    let mut c = client(&node);
    check_everything(&mut c);
    let _: () = q(&mut c, &["SELECT", "3"]);
    for i in (0..2000).step_by(97) {
        assert_eq!(
            q::<Option<i64>>(&mut c, &["GET", &format!("p{i}")]),
            Some(i)
        );
    }
    assert_eq!(q::<i64>(&mut c, &["LLEN", "plist"]), 2000);
    assert_eq!(q::<i64>(&mut c, &["LINDEX", "plist", "-1"]), 1999);
}
