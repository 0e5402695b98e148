//! MIGRATE between two strata servers through a real client: a key moves (or with COPY is copied) with
//! its TTL, REPLACE against the target's BUSYKEY error, the KEYS form, NOKEY, AUTH / AUTH2 to a target
//! with a password, a refused connection, the collection types, and the key positions COMMAND GETKEYS
//! reports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;
use strata_kv::KvConfig;

fn cmd(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c)
}

fn ok(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c).unwrap()
}

fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    match cmd(c, args) {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

fn exists(c: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query::<i64>(c).unwrap() == 1
}

fn get(c: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(c).unwrap()
}

/// Two servers, a client on each, and the target's port as a string.
fn pair() -> (Server, Server, redis::Connection, redis::Connection, String) {
    let source = Server::start(KvConfig::default());
    let target = Server::start(KvConfig::default());
    let (src, dst) = (source.client(), target.client());
    let port = target.addr().port().to_string();
    (source, target, src, dst, port)
}

#[test]
fn one_key_moves_with_its_ttl() {
    let (_s, _t, mut src, mut dst, port) = pair();
    ok(&mut src, &["SET", "k", "value", "PX", "100000"]);
    let reply = ok(&mut src, &["MIGRATE", "127.0.0.1", &port, "k", "0", "5000"]);
    assert_eq!(reply, "OK");
    assert!(!exists(&mut src, "k"));
    assert_eq!(get(&mut dst, "k").as_deref(), Some("value"));
    let ttl: i64 = redis::cmd("PTTL").arg("k").query(&mut dst).unwrap();
    assert!(ttl > 0 && ttl <= 100_000, "ttl {ttl}");

    // No TTL stays no TTL; the destination db is selected.
    ok(&mut src, &["SET", "p", "forever"]);
    let reply = ok(&mut src, &["MIGRATE", "127.0.0.1", &port, "p", "3", "5000"]);
    assert_eq!(reply, "OK");
    assert!(!exists(&mut dst, "p"));
    ok(&mut dst, &["SELECT", "3"]);
    assert_eq!(get(&mut dst, "p").as_deref(), Some("forever"));
    let ttl: i64 = redis::cmd("PTTL").arg("p").query(&mut dst).unwrap();
    assert_eq!(ttl, -1);
}

#[test]
fn copy_keeps_the_local_key() {
    let (_s, _t, mut src, mut dst, port) = pair();
    ok(&mut src, &["SET", "k", "v"]);
    let reply = ok(
        &mut src,
        &["MIGRATE", "127.0.0.1", &port, "k", "0", "5000", "COPY"],
    );
    assert_eq!(reply, "OK");
    assert_eq!(get(&mut src, "k").as_deref(), Some("v"));
    assert_eq!(get(&mut dst, "k").as_deref(), Some("v"));
}

#[test]
fn busykey_is_relayed_and_replace_overwrites() {
    let (_s, _t, mut src, mut dst, port) = pair();
    ok(&mut src, &["SET", "k", "new"]);
    ok(&mut dst, &["SET", "k", "old"]);
    assert_eq!(
        err(&mut src, &["MIGRATE", "127.0.0.1", &port, "k", "0", "5000"]),
        "ERR Target instance replied with error: BUSYKEY Target key name already exists."
    );
    assert_eq!(get(&mut src, "k").as_deref(), Some("new"));
    assert_eq!(get(&mut dst, "k").as_deref(), Some("old"));
    let reply = ok(
        &mut src,
        &["MIGRATE", "127.0.0.1", &port, "k", "0", "5000", "REPLACE"],
    );
    assert_eq!(reply, "OK");
    assert!(!exists(&mut src, "k"));
    assert_eq!(get(&mut dst, "k").as_deref(), Some("new"));
}

#[test]
fn keys_form_moves_the_keys_that_exist() {
    let (_s, _t, mut src, mut dst, port) = pair();
    ok(&mut src, &["MSET", "a", "1", "b", "2", "c", "3"]);
    let reply = ok(
        &mut src,
        &[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "",
            "0",
            "5000",
            "KEYS",
            "a",
            "missing",
            "b",
        ],
    );
    assert_eq!(reply, "OK");
    assert!(!exists(&mut src, "a") && !exists(&mut src, "b"));
    assert_eq!(get(&mut src, "c").as_deref(), Some("3"));
    assert_eq!(get(&mut dst, "a").as_deref(), Some("1"));
    assert_eq!(get(&mut dst, "b").as_deref(), Some("2"));
    assert!(!exists(&mut dst, "missing"));

    // One of several keys already on the target: the others still move, the error is relayed.
    ok(&mut src, &["MSET", "x", "1", "y", "2"]);
    ok(&mut dst, &["SET", "x", "taken"]);
    assert_eq!(
        err(
            &mut src,
            &[
                "MIGRATE",
                "127.0.0.1",
                &port,
                "",
                "0",
                "5000",
                "KEYS",
                "x",
                "y"
            ]
        ),
        "ERR Target instance replied with error: BUSYKEY Target key name already exists."
    );
    assert_eq!(get(&mut src, "x").as_deref(), Some("1"));
    assert!(!exists(&mut src, "y"));
    assert_eq!(get(&mut dst, "y").as_deref(), Some("2"));

    // KEYS needs the empty key.
    assert_eq!(
        err(
            &mut src,
            &["MIGRATE", "127.0.0.1", &port, "c", "0", "5000", "KEYS", "c"]
        ),
        "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string"
    );
}

#[test]
fn nokey_when_nothing_exists() {
    let (_s, _t, mut src, _dst, port) = pair();
    let reply = ok(
        &mut src,
        &["MIGRATE", "127.0.0.1", &port, "nope", "0", "5000"],
    );
    assert_eq!(reply, "NOKEY");
    let reply = ok(
        &mut src,
        &[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "",
            "0",
            "5000",
            "KEYS",
            "x",
            "y",
        ],
    );
    assert_eq!(reply, "NOKEY");
}

#[test]
fn syntax_and_argument_errors() {
    let (_s, _t, mut src, _dst, port) = pair();
    ok(&mut src, &["SET", "k", "v"]);
    let migrate = |extra: &[&str]| {
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "k", "0", "5000"];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    for extra in [&["BOGUS"][..], &["AUTH"], &["AUTH2", "user"]] {
        let args = migrate(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(err(&mut src, &args), "ERR syntax error");
    }
    assert_eq!(
        err(&mut src, &["MIGRATE", "127.0.0.1", &port, "k", "0", "soon"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut src, &["MIGRATE", "127.0.0.1", &port, "k", "db", "10"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut src, &["MIGRATE", "127.0.0.1", &port, "k", "0"]),
        "ERR wrong number of arguments for 'migrate' command"
    );
    // A database the target does not have: SELECT's error is relayed and the key stays.
    let relayed = err(
        &mut src,
        &["MIGRATE", "127.0.0.1", &port, "k", "99999", "5000"],
    );
    assert!(
        relayed.starts_with("ERR Target instance replied with error: ERR"),
        "{relayed}"
    );
    assert!(exists(&mut src, "k"));
}

#[test]
fn auth_to_a_target_with_a_password() {
    let (_s, target, mut src, mut dst, port) = pair();
    ok(&mut dst, &["CONFIG", "SET", "requirepass", "secret"]);
    ok(&mut src, &["MSET", "a", "1", "b", "2"]);
    let refused = err(&mut src, &["MIGRATE", "127.0.0.1", &port, "a", "0", "5000"]);
    assert!(
        refused.starts_with("ERR Target instance replied with error: NOAUTH"),
        "{refused}"
    );
    let wrong = err(
        &mut src,
        &[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "a",
            "0",
            "5000",
            "AUTH",
            "nope",
        ],
    );
    assert!(
        wrong.starts_with("ERR Target instance replied with error: WRONGPASS"),
        "{wrong}"
    );
    assert!(exists(&mut src, "a"));
    let reply = ok(
        &mut src,
        &[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "a",
            "0",
            "5000",
            "AUTH",
            "secret",
        ],
    );
    assert_eq!(reply, "OK");
    let reply = ok(
        &mut src,
        &[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "b",
            "0",
            "5000",
            "AUTH2",
            "default",
            "secret",
        ],
    );
    assert_eq!(reply, "OK");
    let mut check = target.client();
    ok(&mut check, &["AUTH", "secret"]);
    assert_eq!(get(&mut check, "a").as_deref(), Some("1"));
    assert_eq!(get(&mut check, "b").as_deref(), Some("2"));
    assert!(!exists(&mut src, "a") && !exists(&mut src, "b"));
}

#[test]
fn refused_connection_is_an_ioerr() {
    let source = Server::start(KvConfig::default());
    let mut src = source.client();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    drop(listener);
    ok(&mut src, &["SET", "k", "v"]);
    assert_eq!(
        err(&mut src, &["MIGRATE", "127.0.0.1", &port, "k", "0", "1000"]),
        "IOERR error or timeout connecting to the client"
    );
    assert!(exists(&mut src, "k"));
}

#[test]
fn collections_move_intact() {
    let (_s, _t, mut src, mut dst, port) = pair();
    cmd(&mut src, &["HSET", "h", "f1", "v1", "f2", "v2"]).unwrap();
    cmd(&mut src, &["RPUSH", "l", "x", "y", "z"]).unwrap();
    cmd(&mut src, &["ZADD", "z", "1.5", "a", "2", "b"]).unwrap();
    cmd(&mut src, &["XADD", "s", "1-1", "f", "v"]).unwrap();
    cmd(&mut src, &["XADD", "s", "2-1", "g", "w"]).unwrap();
    cmd(&mut src, &["XGROUP", "CREATE", "s", "grp", "0"]).unwrap();
    let reads = [
        vec!["HGETALL", "h"],
        vec!["LRANGE", "l", "0", "-1"],
        vec!["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        vec!["XRANGE", "s", "-", "+"],
        vec!["XINFO", "GROUPS", "s"],
    ];
    let before: Vec<redis::Value> = reads.iter().map(|r| cmd(&mut src, r).unwrap()).collect();
    let reply = ok(
        &mut src,
        &[
            "MIGRATE",
            "127.0.0.1",
            &port,
            "",
            "0",
            "5000",
            "KEYS",
            "h",
            "l",
            "z",
            "s",
        ],
    );
    assert_eq!(reply, "OK");
    for key in ["h", "l", "z", "s"] {
        assert!(!exists(&mut src, key), "{key}");
    }
    let after: Vec<redis::Value> = reads.iter().map(|r| cmd(&mut dst, r).unwrap()).collect();
    assert_eq!(before, after);
    for (key, kind) in [("h", "hash"), ("l", "list"), ("z", "zset"), ("s", "stream")] {
        let t: String = redis::cmd("TYPE").arg(key).query(&mut dst).unwrap();
        assert_eq!(t, kind);
    }
}

#[test]
fn command_getkeys_finds_the_keys() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let keys = |c: &mut redis::Connection, args: &[&str]| -> Vec<String> {
        let mut command = redis::cmd("COMMAND");
        command.arg("GETKEYS");
        for a in args {
            command.arg(*a);
        }
        command.query(c).unwrap()
    };
    assert_eq!(
        keys(&mut c, &["MIGRATE", "h", "1", "k", "0", "10"]),
        vec!["k"]
    );
    assert_eq!(
        keys(
            &mut c,
            &[
                "MIGRATE", "h", "1", "", "0", "10", "AUTH", "keys", "KEYS", "a", "b"
            ]
        ),
        vec!["a", "b"]
    );
    assert_eq!(
        keys(
            &mut c,
            &["MIGRATE", "h", "1", "k", "0", "10", "COPY", "REPLACE"]
        ),
        vec!["k"]
    );
}

#[test]
fn acl_dryrun_checks_every_migrated_key() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    ok(
        &mut c,
        &["ACL", "SETUSER", "u", "on", "nopass", "~a*", "+migrate"],
    );
    let allowed = ok(
        &mut c,
        &[
            "ACL", "DRYRUN", "u", "MIGRATE", "h", "1", "", "0", "10", "KEYS", "a1", "a2",
        ],
    );
    assert_eq!(allowed, "OK");
    let denied: String = redis::cmd("ACL")
        .arg(&[
            "DRYRUN", "u", "MIGRATE", "h", "1", "", "0", "10", "KEYS", "a1", "b",
        ])
        .query(&mut c)
        .unwrap();
    assert!(denied.contains("'b'"), "{denied}");
    let docs = cmd(&mut c, &["COMMAND", "DOCS", "migrate"]).unwrap();
    assert_ne!(docs, redis::Value::Array(Vec::new()));
}
