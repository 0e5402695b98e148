//! The `ACL` command through a real client: every subcommand's replies and errors as Redis 7.0 gives
//! them (the cases of Redis's `acl.tcl` and `acl-v2.tcl` that need no other user logged in), DRYRUN's
//! key and channel checks, and subscribers closed when the default user loses their channels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::io::Read;

use common::Server;
use redis::Value;
use strata_kv::KvConfig;
use strata_resp::Frame;
use support::{Raw, bulk, wait_until};

fn query(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c)
}

fn ok(c: &mut redis::Connection, args: &[&str]) {
    assert_eq!(query(c, args).unwrap(), Value::Okay, "{args:?}");
}

fn text(c: &mut redis::Connection, args: &[&str]) -> String {
    match query(c, args).unwrap() {
        Value::BulkString(b) => String::from_utf8(b).unwrap(),
        Value::SimpleString(s) => s,
        Value::Okay => "OK".to_owned(),
        other => panic!("expected a string from {args:?}, got {other:?}"),
    }
}

fn strings(c: &mut redis::Connection, args: &[&str]) -> Vec<String> {
    redis::from_redis_value(query(c, args).unwrap()).unwrap()
}

fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    match query(c, args) {
        Err(e) => {
            let line = format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""));
            line.trim_end().to_owned()
        }
        Ok(v) => panic!("expected an error from {args:?}, got {v:?}"),
    }
}

/// ACL GETUSER's reply (RESP2: field, value, ...) as pairs.
fn getuser(c: &mut redis::Connection, name: &str) -> Vec<(String, Value)> {
    let Value::Array(items) = query(c, &["ACL", "GETUSER", name]).unwrap() else {
        panic!("GETUSER {name}: not an array");
    };
    items
        .chunks(2)
        .map(|pair| {
            let Value::BulkString(field) = &pair[0] else {
                panic!("field name {:?}", pair[0]);
            };
            (String::from_utf8(field.clone()).unwrap(), pair[1].clone())
        })
        .collect()
}

fn b(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn whoami_users_list_and_the_default_user() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    assert_eq!(text(&mut c, &["ACL", "WHOAMI"]), "default");
    assert_eq!(strings(&mut c, &["ACL", "USERS"]), ["default"]);
    assert_eq!(
        strings(&mut c, &["acl", "list"]),
        ["user default on nopass ~* &* +@all"]
    );
    assert_eq!(
        err(&mut c, &["ACL", "WHOAMI", "x"]),
        "ERR wrong number of arguments for 'acl|whoami' command"
    );
    assert_eq!(
        err(&mut c, &["ACL", "USERS", "x"]),
        "ERR wrong number of arguments for 'acl|users' command"
    );
    assert_eq!(
        err(&mut c, &["ACL", "LIST", "x"]),
        "ERR wrong number of arguments for 'acl|list' command"
    );
    assert_eq!(
        err(&mut c, &["ACL"]),
        "ERR wrong number of arguments for 'acl' command"
    );
    assert_eq!(
        err(&mut c, &["ACL", "NOSUCH"]),
        "ERR unknown subcommand 'NOSUCH'. Try ACL HELP."
    );
    // CLIENT LIST names the user.
    let list = text(&mut c, &["CLIENT", "LIST"]);
    assert!(list.contains(" user=default "), "{list}");
}

#[test]
fn setuser_getuser_and_deluser() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    ok(&mut c, &["ACL", "SETUSER", "newuser"]);
    assert_eq!(strings(&mut c, &["ACL", "USERS"]), ["default", "newuser"]);
    assert_eq!(
        strings(&mut c, &["ACL", "LIST"]),
        [
            "user default on nopass ~* &* +@all",
            "user newuser off resetchannels -@all"
        ]
    );
    assert_eq!(
        getuser(&mut c, "newuser"),
        [
            ("flags".to_owned(), Value::Array(vec![b("off")])),
            ("passwords".to_owned(), Value::Array(vec![])),
            ("commands".to_owned(), b("-@all")),
            ("keys".to_owned(), b("")),
            ("channels".to_owned(), b("")),
            ("selectors".to_owned(), Value::Array(vec![])),
        ]
    );
    // Rules apply in order; a selector may be split across arguments.
    ok(
        &mut c,
        &[
            "ACL", "SETUSER", "newuser", "on", ">passwd1", "+get", "~obj:*", "&chan", "(+set",
            "%W~w*)",
        ],
    );
    let info = getuser(&mut c, "newuser");
    assert_eq!(info[0].1, Value::Array(vec![b("on")]));
    // The password is shown as its SHA-256.
    assert_eq!(
        info[1].1,
        Value::Array(vec![b(
            "3b1d7e9a7c37141350fb473fa099b8b18030cde1909f363e3758e52d4ea1a7b4"
        )])
    );
    assert_eq!(info[2].1, b("-@all +get"));
    assert_eq!(info[3].1, b("~obj:*"));
    assert_eq!(info[4].1, b("&chan"));
    assert_eq!(
        info[5].1,
        Value::Array(vec![Value::Array(vec![
            b("commands"),
            b("-@all +set"),
            b("keys"),
            b("%W~w*"),
            b("channels"),
            b(""),
        ])])
    );
    assert_eq!(
        query(&mut c, &["ACL", "GETUSER", "nosuch"]).unwrap(),
        Value::Nil
    );
    assert_eq!(
        err(&mut c, &["ACL", "GETUSER"]),
        "ERR wrong number of arguments for 'acl|getuser' command"
    );

    // A refused SETUSER changes nothing.
    assert_eq!(
        err(&mut c, &["ACL", "SETUSER", "newuser", "-get", "+nosuch"]),
        "ERR Error in ACL SETUSER modifier '+nosuch': Unknown command or category name in ACL"
    );
    assert_eq!(getuser(&mut c, "newuser")[2].1, b("-@all +get"));
    assert_eq!(
        err(&mut c, &["ACL", "SETUSER", "a b", "on"]),
        "ERR Usernames can't contain spaces or null characters"
    );
    assert_eq!(
        err(&mut c, &["ACL", "SETUSER", "newuser", "(+get", "~a"]),
        "ERR Unmatched parenthesis in acl selector starting at '(+get'."
    );
    assert_eq!(
        err(&mut c, &["ACL", "SETUSER"]),
        "ERR wrong number of arguments for 'acl|setuser' command"
    );
    assert_eq!(strings(&mut c, &["ACL", "USERS"]), ["default", "newuser"]);

    // DELUSER: the default user cannot go (and then nothing goes); missing users count for nothing.
    assert_eq!(
        err(&mut c, &["ACL", "DELUSER", "newuser", "default"]),
        "ERR The 'default' user cannot be removed"
    );
    assert_eq!(strings(&mut c, &["ACL", "USERS"]), ["default", "newuser"]);
    ok(&mut c, &["ACL", "SETUSER", "other"]);
    assert_eq!(
        query(
            &mut c,
            &["ACL", "DELUSER", "newuser", "nosuch", "other", "newuser"]
        )
        .unwrap(),
        Value::Int(2)
    );
    assert_eq!(
        query(&mut c, &["ACL", "DELUSER", "newuser"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(strings(&mut c, &["ACL", "USERS"]), ["default"]);
    assert_eq!(
        err(&mut c, &["ACL", "DELUSER"]),
        "ERR wrong number of arguments for 'acl|deluser' command"
    );
    // Deleting users closes only their clients: this one runs as the default user.
    assert_eq!(text(&mut c, &["ACL", "WHOAMI"]), "default");
}

#[test]
fn cat_lists_categories_and_their_commands() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let categories = strings(&mut c, &["ACL", "CAT"]);
    assert_eq!(categories.len(), 21);
    assert_eq!(categories[0], "keyspace");
    for name in [
        "read",
        "write",
        "admin",
        "dangerous",
        "pubsub",
        "slow",
        "scripting",
    ] {
        assert!(categories.iter().any(|c| c == name), "{name}");
    }
    let slow = strings(&mut c, &["ACL", "CAT", "SLOW"]);
    for name in [
        "acl|whoami",
        "acl|cat",
        "acl|setuser",
        "acl|log",
        "acl|dryrun",
    ] {
        assert!(slow.iter().any(|c| c == name), "{name} in @slow");
    }
    let admin = strings(&mut c, &["ACL", "CAT", "admin"]);
    for name in [
        "acl|setuser",
        "acl|deluser",
        "acl|getuser",
        "acl|list",
        "acl|log",
    ] {
        assert!(admin.iter().any(|c| c == name), "{name} in @admin");
    }
    for name in ["acl|whoami", "acl|cat", "acl|genpass", "acl|help"] {
        assert!(!admin.iter().any(|c| c == name), "{name} not in @admin");
    }
    let transaction = strings(&mut c, &["ACL", "CAT", "transaction"]);
    assert!(transaction.iter().any(|c| c == "multi"));
    assert_eq!(
        err(&mut c, &["ACL", "CAT", "NON_EXISTS"]),
        "ERR Unknown category 'NON_EXISTS'"
    );
    assert_eq!(
        err(&mut c, &["ACL", "CAT", "NON_EXISTS", "NON_EXISTS2"]),
        "ERR unknown subcommand or wrong number of arguments for 'CAT'. Try ACL HELP."
    );
}

#[test]
fn genpass_sizes_and_errors() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let a = text(&mut c, &["ACL", "GENPASS"]);
    let z = text(&mut c, &["ACL", "GENPASS"]);
    assert_eq!(a.len(), 64);
    assert_ne!(a, z);
    assert!(
        a.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(text(&mut c, &["ACL", "GENPASS", "5"]).len(), 2);
    assert_eq!(text(&mut c, &["ACL", "GENPASS", "4096"]).len(), 1024);
    for bits in ["0", "-236", "5000"] {
        assert_eq!(
            err(&mut c, &["ACL", "GENPASS", bits]),
            "ERR ACL GENPASS argument must be the number of bits for the output password, a \
             positive number up to 4096"
        );
    }
    assert_eq!(
        err(&mut c, &["ACL", "GENPASS", "abc"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut c, &["ACL", "GENPASS", "1", "2"]),
        "ERR unknown subcommand or wrong number of arguments for 'GENPASS'. Try ACL HELP."
    );
}

#[test]
fn log_count_reset_and_errors() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    ok(&mut c, &["ACL", "LOG", "RESET"]);
    ok(&mut c, &["acl", "log", "reset"]);
    assert_eq!(
        query(&mut c, &["ACL", "LOG"]).unwrap(),
        Value::Array(vec![])
    );
    assert_eq!(
        query(&mut c, &["ACL", "LOG", "5"]).unwrap(),
        Value::Array(vec![])
    );
    assert_eq!(
        query(&mut c, &["ACL", "LOG", "-1"]).unwrap(),
        Value::Array(vec![])
    );
    // DRYRUN refusals are not logged.
    ok(
        &mut c,
        &["ACL", "SETUSER", "limited", "on", "nopass", "+get", "~k*"],
    );
    assert_eq!(
        text(&mut c, &["ACL", "DRYRUN", "limited", "set", "k", "v"]),
        "This user has no permissions to run the 'set' command"
    );
    assert_eq!(
        text(&mut c, &["ACL", "DRYRUN", "limited", "get", "other"]),
        "This user has no permissions to access the 'other' key"
    );
    assert_eq!(
        query(&mut c, &["ACL", "LOG"]).unwrap(),
        Value::Array(vec![])
    );
    assert_eq!(
        err(&mut c, &["ACL", "LOG", "abc"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        err(&mut c, &["ACL", "LOG", "1", "2"]),
        "ERR unknown subcommand or wrong number of arguments for 'LOG'. Try ACL HELP."
    );
}

#[test]
fn dryrun_checks_commands_keys_and_channels() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    // acl-v2.tcl's "Test basic dry run functionality" and "Test various commands for command
    // permissions".
    ok(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "command-test",
            "+@all",
            "%R~read*",
            "%W~write*",
            "%RW~rw*",
        ],
    );
    assert_eq!(
        text(&mut c, &["ACL", "DRYRUN", "command-test", "GET", "read"]),
        "OK"
    );
    assert_eq!(
        err(&mut c, &["ACL", "DRYRUN", "not-a-user", "GET", "read"]),
        "ERR User 'not-a-user' not found"
    );
    assert_eq!(
        err(
            &mut c,
            &["ACL", "DRYRUN", "command-test", "not-a-command", "read"]
        ),
        "ERR Command 'not-a-command' not found"
    );
    ok(&mut c, &["ACL", "SETUSER", "command-test", "-set", "-get"]);
    assert_eq!(
        text(
            &mut c,
            &[
                "ACL",
                "DRYRUN",
                "command-test",
                "set",
                "somekey",
                "somevalue"
            ]
        ),
        "This user has no permissions to run the 'set' command"
    );
    assert_eq!(
        text(&mut c, &["ACL", "DRYRUN", "command-test", "get", "somekey"]),
        "This user has no permissions to run the 'get' command"
    );
    ok(&mut c, &["ACL", "SETUSER", "command-test", "+set", "+get"]);

    // Key access by key spec: a read needs %R, a write %W, both ~ or %RW.
    let dry = |c: &mut redis::Connection, call: &[&str]| -> String {
        let mut args = vec!["ACL", "DRYRUN", "command-test"];
        args.extend_from_slice(call);
        text(c, &args)
    };
    let no_key = |k: &str| format!("This user has no permissions to access the '{k}' key");
    assert_eq!(dry(&mut c, &["GET", "write"]), no_key("write"));
    assert_eq!(dry(&mut c, &["SET", "write", "v"]), "OK");
    assert_eq!(dry(&mut c, &["SET", "read", "v"]), no_key("read"));
    // SET ... GET reads the old value too.
    assert_eq!(dry(&mut c, &["SET", "write", "v", "GET"]), no_key("write"));
    assert_eq!(dry(&mut c, &["SET", "rw", "v", "GET"]), "OK");
    assert_eq!(dry(&mut c, &["INCR", "write"]), no_key("write"));
    assert_eq!(dry(&mut c, &["INCR", "rw"]), "OK");
    // Metadata only: any matching pattern will do.
    assert_eq!(dry(&mut c, &["EXISTS", "read", "write"]), "OK");
    assert_eq!(dry(&mut c, &["STRLEN", "write"]), "OK");
    assert_eq!(dry(&mut c, &["OBJECT", "ENCODING", "write"]), "OK");
    assert_eq!(dry(&mut c, &["EXISTS", "other"]), no_key("other"));
    assert_eq!(dry(&mut c, &["SORT", "read", "STORE", "write"]), "OK");
    assert_eq!(
        dry(&mut c, &["SORT", "read", "STORE", "read"]),
        no_key("read")
    );
    assert_eq!(
        dry(&mut c, &["SORT", "write", "STORE", "write"]),
        no_key("write")
    );
    assert_eq!(dry(&mut c, &["EVAL", "", "1", "rw1"]), "OK");
    assert_eq!(dry(&mut c, &["EVAL", "", "1", "read"]), no_key("read"));
    assert_eq!(dry(&mut c, &["EVAL_RO", "", "1", "read"]), "OK");
    assert_eq!(dry(&mut c, &["EVAL", "", "0", "read"]), "OK");
    assert_eq!(dry(&mut c, &["EVAL", "", "3", "rw", "rw"]), "OK");
    assert_eq!(
        dry(
            &mut c,
            &[
                "GEORADIUS",
                "read",
                "0",
                "0",
                "1",
                "M",
                "STOREDIST",
                "write"
            ]
        ),
        "OK"
    );
    assert_eq!(
        dry(
            &mut c,
            &[
                "GEORADIUS",
                "read1",
                "0",
                "0",
                "1",
                "M",
                "STOREDIST",
                "read2"
            ]
        ),
        no_key("read2")
    );
    assert_eq!(
        dry(&mut c, &["BITOP", "AND", "write", "read1", "read2"]),
        "OK"
    );
    assert_eq!(
        dry(&mut c, &["BITOP", "AND", "read", "read1"]),
        no_key("read")
    );
    assert_eq!(
        dry(&mut c, &["LMOVE", "rw", "write", "LEFT", "RIGHT"]),
        "OK"
    );
    assert_eq!(
        dry(&mut c, &["LMOVE", "read", "write", "LEFT", "RIGHT"]),
        no_key("read")
    );
    assert_eq!(
        dry(&mut c, &["ZUNIONSTORE", "write", "2", "read1", "read2"]),
        "OK"
    );
    // Of several denied keys, the first is named.
    assert_eq!(
        dry(&mut c, &["MSET", "write1", "1", "x", "2", "y", "3"]),
        no_key("x")
    );

    // Channels: published, subscribed, and patterns (which must match a permitted pattern exactly).
    ok(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "command-test",
            "resetchannels",
            "&ch:*",
            "&exact",
        ],
    );
    let no_channel =
        |ch: &str| format!("This user has no permissions to access the '{ch}' channel");
    assert_eq!(dry(&mut c, &["PUBLISH", "ch:1", "m"]), "OK");
    assert_eq!(dry(&mut c, &["PUBLISH", "other", "m"]), no_channel("other"));
    assert_eq!(
        dry(&mut c, &["SPUBLISH", "other", "m"]),
        no_channel("other")
    );
    assert_eq!(dry(&mut c, &["SUBSCRIBE", "ch:1", "exact"]), "OK");
    assert_eq!(
        dry(&mut c, &["SSUBSCRIBE", "ch:1", "nope"]),
        no_channel("nope")
    );
    assert_eq!(dry(&mut c, &["PSUBSCRIBE", "ch:*"]), "OK");
    assert_eq!(dry(&mut c, &["PSUBSCRIBE", "ch:1*"]), no_channel("ch:1*"));
    assert_eq!(dry(&mut c, &["UNSUBSCRIBE", "other"]), "OK");

    // Subcommands are checked as themselves.
    ok(
        &mut c,
        &["ACL", "SETUSER", "sub-test", "+client|id", "+config|get"],
    );
    assert_eq!(
        text(&mut c, &["ACL", "DRYRUN", "sub-test", "CLIENT", "ID"]),
        "OK"
    );
    assert_eq!(
        text(&mut c, &["ACL", "DRYRUN", "sub-test", "client", "list"]),
        "This user has no permissions to run the 'client|list' command"
    );
    assert_eq!(
        err(&mut c, &["ACL", "DRYRUN", "sub-test", "client", "nosuch"]),
        "ERR Command 'client' not found"
    );

    // The call's arity, as the command (or subcommand) has it.
    assert_eq!(
        err(&mut c, &["ACL", "DRYRUN", "sub-test", "get"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&mut c, &["ACL", "DRYRUN", "sub-test", "client"]),
        "ERR wrong number of arguments for 'client' command"
    );
    assert_eq!(
        err(&mut c, &["ACL", "DRYRUN", "sub-test", "config", "get"]),
        "ERR wrong number of arguments for 'config|get' command"
    );
    assert_eq!(
        err(&mut c, &["ACL", "DRYRUN", "sub-test", "get", "a", "b"]),
        "ERR wrong number of arguments for 'get' command"
    );
    assert_eq!(
        err(&mut c, &["ACL", "DRYRUN", "sub-test"]),
        "ERR wrong number of arguments for 'acl|dryrun' command"
    );
}

#[test]
fn load_save_and_help() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let no_file = "ERR This Redis instance is not configured to use an ACL file. You may want to \
                   specify users via the ACL SETUSER command and then issue a CONFIG REWRITE \
                   (assuming you have a Redis configuration file set) in order to store users in \
                   the Redis configuration.";
    assert_eq!(err(&mut c, &["ACL", "LOAD"]), no_file);
    assert_eq!(err(&mut c, &["ACL", "save"]), no_file);
    assert_eq!(
        err(&mut c, &["ACL", "LOAD", "x"]),
        "ERR wrong number of arguments for 'acl|load' command"
    );
    let help = strings(&mut c, &["ACL", "HELP"]);
    assert_eq!(
        help[0],
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    );
    assert_eq!(help.len(), 29);
    assert_eq!(help[help.len() - 2], "HELP");
    for sub in [
        "CAT", "DELUSER", "DRYRUN", "GETUSER", "GENPASS", "LIST", "LOAD", "LOG", "SAVE", "SETUSER",
        "USERS", "WHOAMI",
    ] {
        assert!(help.iter().any(|l| l.starts_with(sub)), "{sub}");
    }
    // acl.tcl's "ACL HELP should not have unexpected options".
    assert_eq!(
        err(&mut c, &["ACL", "HELP", "xxx"]),
        "ERR wrong number of arguments for 'acl|help' command"
    );
}

#[test]
fn command_introspection_knows_the_subcommands() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let names = strings(&mut c, &["COMMAND", "LIST", "FILTERBY", "PATTERN", "acl*"]);
    assert!(names.iter().any(|n| n == "acl|whoami"), "{names:?}");
    assert!(names.iter().any(|n| n == "acl|dryrun"), "{names:?}");
    let Value::Array(info) = query(&mut c, &["COMMAND", "INFO", "acl|whoami"]).unwrap() else {
        panic!("COMMAND INFO");
    };
    let Value::Array(entry) = &info[0] else {
        panic!("COMMAND INFO entry {info:?}");
    };
    assert_eq!(entry[0], b("acl|whoami"));
    assert_eq!(entry[1], Value::Int(2));
    let flags: Vec<String> = redis::from_redis_value(entry[2].clone()).unwrap();
    assert_eq!(flags, ["noscript", "loading", "stale"]);
    let Value::Array(info) = query(&mut c, &["COMMAND", "INFO", "acl|setuser"]).unwrap() else {
        panic!("COMMAND INFO");
    };
    let Value::Array(entry) = &info[0] else {
        panic!("COMMAND INFO entry {info:?}");
    };
    assert_eq!(entry[1], Value::Int(-3));
    let flags: Vec<String> = redis::from_redis_value(entry[2].clone()).unwrap();
    assert!(flags.iter().any(|f| f == "admin"), "{flags:?}");
}

/// Whether the server closed `raw`'s connection (it reads end of stream or a reset).
fn closed(raw: &mut Raw) -> bool {
    raw.stream
        .set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    let mut byte = [0u8; 1];
    let gone = match raw.stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    raw.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    gone
}

#[test]
fn subscribers_losing_their_channels_are_closed() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let subscribe = |kind: &str, name: &str| -> Raw {
        let mut raw = Raw::connect(server.addr());
        assert_eq!(
            raw.call(&[kind, name]),
            Frame::Array(vec![
                bulk(&kind.to_ascii_lowercase()),
                bulk(name),
                Frame::Integer(1)
            ])
        );
        raw
    };
    let mut foo = subscribe("SUBSCRIBE", "foo");
    let mut bar = subscribe("SUBSCRIBE", "bar");
    let mut pattern = subscribe("PSUBSCRIBE", "bar*");
    let mut shard = subscribe("SSUBSCRIBE", "foo");
    // Widening changes nothing.
    ok(&mut c, &["ACL", "SETUSER", "default", "allchannels"]);
    assert!(!closed(&mut foo));
    // The default user keeps `bar` and `bar*` only: the subscribers of `foo` go.
    ok(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "default",
            "resetchannels",
            "&bar",
            "&bar*",
        ],
    );
    wait_until("the foo subscribers to be closed", || {
        closed(&mut foo) && closed(&mut shard)
    });
    assert!(!closed(&mut bar));
    assert!(!closed(&mut pattern));
    // A pattern is kept only by the very same pattern.
    ok(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "default",
            "resetchannels",
            "&bar",
            "&bar:*",
        ],
    );
    wait_until("the pattern subscriber to be closed", || {
        closed(&mut pattern)
    });
    assert!(!closed(&mut bar));
    ok(&mut c, &["ACL", "SETUSER", "default", "allchannels"]);
    // The connection that ran SETUSER was not subscribed and stays.
    assert_eq!(text(&mut c, &["ACL", "WHOAMI"]), "default");
}
