//! DEBUG through a real client: refused unless `enable-debug-command` allows it (Redis's default refuses),
//! OBJECT, DIGEST and DIGEST-VALUE, POPULATE, ERROR, and an ACL rule allowing one DEBUG subcommand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Server, err, run};
use strata_kv::KvConfig;

fn string(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c).unwrap()
}

fn debug_server() -> Server {
    Server::start(KvConfig {
        enable_debug_command: "yes".to_owned(),
        ..KvConfig::default()
    })
}

#[test]
fn debug_is_refused_by_default() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    assert_eq!(
        err(&mut c, &["DEBUG", "DIGEST"]),
        "ERR DEBUG command not allowed. If the enable-debug-command option is set to \"local\", you \
         can run it from a local connection, otherwise you need to set this option in the \
         configuration file, and then restart the server."
    );
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("enable-debug-command")
        .query(&mut c)
        .unwrap();
    assert_eq!(shown, ["enable-debug-command", "no"]);
}

#[test]
fn digests_follow_the_data() {
    let server = debug_server();
    let mut c = server.client();
    let zero = "0".repeat(40);
    assert_eq!(string(&mut c, &["DEBUG", "DIGEST"]), zero);
    run(&mut c, &["RPUSH", "list", "a", "b"]).unwrap();
    run(&mut c, &["SET", "s", "v"]).unwrap();
    let first = string(&mut c, &["DEBUG", "DIGEST"]);
    assert_ne!(first, zero);
    assert_eq!(first.len(), 40);
    // Same data written again in another order: same digest.
    run(&mut c, &["FLUSHALL"]).unwrap();
    run(&mut c, &["SET", "s", "v"]).unwrap();
    run(&mut c, &["RPUSH", "list", "a", "b"]).unwrap();
    assert_eq!(string(&mut c, &["DEBUG", "DIGEST"]), first);
    run(&mut c, &["SET", "s", "w"]).unwrap();
    assert_ne!(string(&mut c, &["DEBUG", "DIGEST"]), first);

    let values: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg("s")
        .arg("missing")
        .query(&mut c)
        .unwrap();
    assert_eq!(values.len(), 2);
    assert_ne!(values[0], zero);
    assert_eq!(values[1], zero);
}

#[test]
fn object_populate_error_and_unknown_subcommands() {
    let server = debug_server();
    let mut c = server.client();
    run(&mut c, &["RPUSH", "list", "a"]).unwrap();
    let object = string(&mut c, &["DEBUG", "OBJECT", "list"]);
    assert!(object.contains("encoding:listpack"), "{object}");
    assert!(object.contains("serializedlength:"), "{object}");
    assert_eq!(
        err(&mut c, &["DEBUG", "OBJECT", "missing"]),
        "ERR no such key"
    );

    run(&mut c, &["SET", "key:1", "mine"]).unwrap();
    assert_eq!(string(&mut c, &["DEBUG", "POPULATE", "3"]), "OK");
    assert_eq!(string(&mut c, &["GET", "key:0"]), "value:0");
    assert_eq!(string(&mut c, &["GET", "key:1"]), "mine");
    assert_eq!(string(&mut c, &["DEBUG", "POPULATE", "2", "p", "10"]), "OK");
    assert_eq!(string(&mut c, &["GET", "p:1"]), "value:1\0\0\0");

    assert_eq!(err(&mut c, &["DEBUG", "ERROR", "boom"]), "boom ");
    assert_eq!(string(&mut c, &["DEBUG", "SLEEP", "0"]), "OK");
    assert_eq!(string(&mut c, &["DEBUG", "RELOAD"]), "OK");
    assert_eq!(
        err(&mut c, &["DEBUG", "NOPE"]),
        "ERR unknown subcommand 'NOPE'. Try DEBUG HELP."
    );
}

#[test]
fn an_acl_rule_can_allow_one_debug_subcommand() {
    let server = debug_server();
    let mut c = server.client();
    run(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "newuser",
            "on",
            "nopass",
            "~*",
            "-@all",
            "+incr",
            "+debug|object",
        ],
    )
    .unwrap();
    let mut user = server.client();
    run(&mut user, &["AUTH", "newuser", "x"]).unwrap();
    run(&mut user, &["INCR", "key"]).unwrap();
    run(&mut user, &["DEBUG", "OBJECT", "key"]).unwrap();
    assert!(err(&mut user, &["DEBUG", "SEGFAULT"]).contains("NOPERM"));
}
