//! ACL users at work through a real client: AUTH as a user made with ACL SETUSER, the `NOPERM` refusals
//! of commands, keys and channels (at the top level, in MULTI/EXEC and in scripts) with their ACL LOG
//! entries, `requirepass` as the default user's password, RESET, CLIENT LIST / KILL by user, and DELUSER
//! closing the deleted user's connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Server, err, run};
use redis::Value;
use strata_kv::KvConfig;

fn ok(c: &mut redis::Connection, args: &[&str]) {
    run(c, args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// ACL LOG's newest entry as field → value.
fn newest_log_entry(c: &mut redis::Connection) -> std::collections::HashMap<String, String> {
    let Value::Array(entries) = run(c, &["ACL", "LOG", "1"]).unwrap() else {
        panic!("ACL LOG is not an array");
    };
    let entry = match entries.first() {
        Some(Value::Array(fields)) => fields.clone(),
        Some(Value::Map(pairs)) => pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect(),
        other => panic!("no ACL LOG entry: {other:?}"),
    };
    entry
        .chunks(2)
        .map(|kv| (text(&kv[0]), text(&kv[1])))
        .collect()
}

#[test]
fn a_user_runs_only_the_commands_keys_and_channels_its_rules_allow() {
    let server = Server::start(KvConfig::default());
    let mut admin = server.client();
    ok(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "alice",
            "on",
            ">pw",
            "~cache:*",
            "%R~shared:*",
            "&news",
            "+@read",
            "+set",
            "+publish",
            "+multi",
            "+exec",
        ],
    );
    let mut alice = server.client();
    ok(&mut alice, &["AUTH", "alice", "pw"]);
    let whoami = run(&mut alice, &["ACL", "WHOAMI"]);
    assert!(whoami.is_err(), "ACL WHOAMI is not among alice's commands");

    ok(&mut alice, &["SET", "cache:1", "v"]);
    assert_eq!(text(&run(&mut alice, &["GET", "cache:1"]).unwrap()), "v");
    run(&mut alice, &["GET", "shared:x"]).unwrap();
    assert_eq!(
        err(&mut alice, &["SET", "shared:x", "v"]),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    assert_eq!(
        err(&mut alice, &["DEL", "cache:1"]),
        "NOPERM this user has no permissions to run the 'del' command"
    );
    assert_eq!(
        err(&mut alice, &["GET", "other"]),
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    );
    assert_eq!(
        text(&run(&mut alice, &["PUBLISH", "news", "m"]).unwrap()),
        "0"
    );
    assert_eq!(
        err(&mut alice, &["PUBLISH", "sports", "m"]),
        "NOPERM this user has no permissions to access one of the channels used as arguments"
    );

    let entry = newest_log_entry(&mut admin);
    assert_eq!(entry["reason"], "channel");
    assert_eq!(entry["object"], "sports");
    assert_eq!(entry["username"], "alice");
    assert_eq!(entry["context"], "toplevel");

    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    assert!(list.contains("user=alice"), "{list}");
    assert!(list.contains("user=default"), "{list}");
}

#[test]
fn auth_failures_and_requirepass_follow_the_default_user() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    assert_eq!(
        err(&mut c, &["AUTH", "anything"]),
        "ERR AUTH <password> called without any password configured for the default user. Are you \
         sure your configuration is correct?"
    );
    assert_eq!(
        err(&mut c, &["AUTH", "nobody", "pw"]),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    let entry = newest_log_entry(&mut c);
    assert_eq!(entry["reason"], "auth");
    assert_eq!(entry["object"], "AUTH");
    assert_eq!(entry["username"], "nobody");

    ok(&mut c, &["CONFIG", "SET", "requirepass", "s3cret"]);
    let mut fresh = server.client();
    assert_eq!(
        err(&mut fresh, &["GET", "k"]),
        "NOAUTH Authentication required."
    );
    assert_eq!(
        err(&mut fresh, &["AUTH", "wrong"]),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    ok(&mut fresh, &["AUTH", "s3cret"]);
    ok(&mut fresh, &["GET", "k"]);
    // The password is the default user's: ACL sees it, and taking it away lets everyone in again.
    let getuser = format!(
        "{:?}",
        run(&mut fresh, &["ACL", "GETUSER", "default"]).unwrap()
    );
    assert!(!getuser.contains("nopass"), "{getuser}");
    ok(&mut fresh, &["ACL", "SETUSER", "default", "nopass"]);
    let mut open = server.client();
    ok(&mut open, &["GET", "k"]);
}

#[test]
fn transactions_and_scripts_are_checked_as_their_user() {
    let server = Server::start(KvConfig::default());
    let mut admin = server.client();
    ok(
        &mut admin,
        &[
            "ACL", "SETUSER", "bob", "on", ">pw", "~*", "+get", "+set", "+incr", "+multi", "+exec",
            "+eval",
        ],
    );
    let mut bob = server.client();
    ok(&mut bob, &["AUTH", "bob", "pw"]);

    // Refused while queueing: EXEC aborts.
    ok(&mut bob, &["MULTI"]);
    assert_eq!(
        err(&mut bob, &["DEL", "k"]),
        "NOPERM this user has no permissions to run the 'del' command"
    );
    assert!(err(&mut bob, &["EXEC"]).starts_with("EXECABORT"));

    // Allowed when queued, refused by EXEC after the rules changed.
    ok(&mut bob, &["MULTI"]);
    ok(&mut bob, &["INCR", "n"]);
    ok(&mut bob, &["GET", "n"]);
    ok(&mut admin, &["ACL", "SETUSER", "bob", "-incr"]);
    // The client reports the first error of EXEC's replies: INCR's.
    let refused = err(&mut bob, &["EXEC"]);
    assert!(
        refused.starts_with(
            "NOPERM ACLs rules changed between the moment the transaction was accumulated"
        ),
        "{refused}"
    );
    let entry = newest_log_entry(&mut admin);
    assert_eq!(entry["context"], "multi");

    // A script's calls run as its caller.
    assert_eq!(
        run(&mut bob, &["EVAL", "return redis.call('get', 'n')", "0"]).unwrap(),
        Value::Nil
    );
    let refused = err(&mut bob, &["EVAL", "return redis.call('del', 'n')", "0"]);
    assert!(
        refused.contains("The user executing the script can't run this command or subcommand"),
        "{refused}"
    );
    let entry = newest_log_entry(&mut admin);
    assert_eq!(entry["context"], "lua");
    assert_eq!(entry["object"], "del");
}

#[test]
fn reset_deluser_and_client_kill_user() {
    let server = Server::start(KvConfig::default());
    let mut admin = server.client();
    ok(
        &mut admin,
        &["ACL", "SETUSER", "carol", "on", ">pw", "~*", "+@all"],
    );
    let mut carol = server.client();
    ok(&mut carol, &["AUTH", "carol", "pw"]);
    ok(&mut carol, &["RESET"]);
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    assert!(!list.contains("user=carol"), "RESET keeps the user: {list}");

    ok(&mut carol, &["AUTH", "carol", "pw"]);
    assert_eq!(
        err(&mut admin, &["CLIENT", "KILL", "USER", "nobody"]),
        "ERR No such user 'nobody'"
    );
    assert_eq!(
        text(&run(&mut admin, &["CLIENT", "KILL", "USER", "carol"]).unwrap()),
        "1"
    );
    assert!(
        run(&mut carol, &["PING"]).is_err(),
        "killed connection still answers"
    );

    let mut carol = server.client();
    ok(&mut carol, &["AUTH", "carol", "pw"]);
    assert_eq!(
        text(&run(&mut admin, &["ACL", "DELUSER", "carol"]).unwrap()),
        "1"
    );
    assert!(
        run(&mut carol, &["PING"]).is_err(),
        "a deleted user's connection stays open"
    );
}

#[test]
fn sort_patterns_need_read_access_to_every_key() {
    let server = Server::start(KvConfig::default());
    let mut admin = server.client();
    ok(&mut admin, &["SET", "v1", "1"]);
    ok(&mut admin, &["LPUSH", "mylist", "1"]);
    ok(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "sorter",
            "on",
            "nopass",
            "(+sort ~mylist ~v*)",
        ],
    );
    let mut sorter = server.client();
    ok(&mut sorter, &["AUTH", "sorter", "x"]);
    ok(&mut sorter, &["SORT", "mylist"]);
    assert_eq!(
        err(&mut sorter, &["SORT", "mylist", "BY", "v*"]),
        "ERR BY option of SORT denied due to insufficient ACL permissions."
    );
    assert_eq!(
        err(&mut sorter, &["SORT", "mylist", "GET", "v*"]),
        "ERR GET option of SORT denied due to insufficient ACL permissions."
    );
    ok(&mut sorter, &["SORT", "mylist", "BY", "constant"]);
    ok(&mut admin, &["ACL", "SETUSER", "sorter", "(+sort %R~*)"]);
    ok(&mut sorter, &["SORT", "mylist", "BY", "v*", "GET", "#"]);
    assert_eq!(
        err(&mut admin, &["READONLY"]),
        "ERR This instance has cluster support disabled"
    );
}
