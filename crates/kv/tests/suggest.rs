//! FT.SUGADD / FT.SUGGET / FT.SUGDEL / FT.SUGLEN through a real client: RediSearch's replies, scoring
//! (exact match INT_MAX, prefix length penalty, fuzzy distance penalty) and ordering, payloads, errors, and
//! dictionaries surviving a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::Server;
use redis::Value;
use strata_kv::{KvConfig, SystemClock};

fn sugadd(c: &mut redis::Connection, key: &str, s: &str, score: f64, extra: &[&str]) -> i64 {
    redis::cmd("FT.SUGADD")
        .arg(key)
        .arg(s)
        .arg(score)
        .arg(extra)
        .query(c)
        .unwrap()
}

fn sugget(c: &mut redis::Connection, key: &str, prefix: &str, opts: &[&str]) -> Vec<String> {
    redis::cmd("FT.SUGGET")
        .arg(key)
        .arg(prefix)
        .arg(opts)
        .query(c)
        .unwrap()
}

fn error(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    match cmd.query::<Value>(c) {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn add_len_del_and_the_documented_example() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    assert_eq!(sugadd(&mut c, "sug", "hello", 1.0, &[]), 1);
    assert_eq!(sugadd(&mut c, "sug", "hell", 1.0, &[]), 2);
    assert_eq!(sugadd(&mut c, "sug", "hell", 3.0, &[]), 2);
    // RediSearch's example: the exact match scores INT_MAX, "hello" 1 / sqrt(1 + 1).
    let got = sugget(&mut c, "sug", "hell", &["FUZZY", "MAX", "3", "WITHSCORES"]);
    assert_eq!(got, ["hell", "2147483648", "hello", "0.7071067690849304"]);
    let len: i64 = redis::cmd("FT.SUGLEN").arg("sug").query(&mut c).unwrap();
    assert_eq!(len, 2);
    let kind: String = redis::cmd("TYPE").arg("sug").query(&mut c).unwrap();
    assert_eq!(kind, "trietype0");
    let del: i64 = redis::cmd("FT.SUGDEL")
        .arg("sug")
        .arg("hell")
        .query(&mut c)
        .unwrap();
    assert_eq!(del, 1);
    let del: i64 = redis::cmd("FT.SUGDEL")
        .arg("sug")
        .arg("hell")
        .query(&mut c)
        .unwrap();
    assert_eq!(del, 0);
    assert_eq!(sugget(&mut c, "sug", "hell", &[]), ["hello"]);
    let del: i64 = redis::cmd("FT.SUGDEL")
        .arg("sug")
        .arg("hello")
        .query(&mut c)
        .unwrap();
    assert_eq!(del, 1);
    // Missing dictionaries: length 0, no suggestions (nil), nothing to delete.
    let len: i64 = redis::cmd("FT.SUGLEN").arg("sug").query(&mut c).unwrap();
    assert_eq!(len, 0);
    let none: Value = redis::cmd("FT.SUGGET")
        .arg("sug")
        .arg("h")
        .query(&mut c)
        .unwrap();
    assert_eq!(none, Value::Nil);
}

#[test]
fn ranking_payloads_incr_and_case() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    sugadd(&mut c, "d", "hello world", 10.0, &[]);
    sugadd(&mut c, "d", "help", 5.0, &["PAYLOAD", "p-help"]);
    sugadd(&mut c, "d", "helicopter", 2.0, &[]);
    sugadd(&mut c, "d", "Helsinki", 1.0, &[]);
    sugadd(&mut c, "d", "world", 100.0, &[]);
    // Scores divided by sqrt(1 + suffix length): help 5/√2 = 3.54, hello world 10/√9 = 3.33,
    // helicopter 2/√8 = 0.71, Helsinki 1/√6 = 0.41 (matched case-insensitively).
    assert_eq!(
        sugget(&mut c, "d", "hel", &[]),
        ["help", "hello world", "helicopter", "Helsinki"]
    );
    assert_eq!(
        sugget(&mut c, "d", "HEL", &["MAX", "2"]),
        ["help", "hello world"]
    );
    let with: Vec<Value> = redis::cmd("FT.SUGGET")
        .arg("d")
        .arg("hel")
        .arg("WITHPAYLOADS")
        .arg("MAX")
        .arg(2)
        .query(&mut c)
        .unwrap();
    assert_eq!(
        with,
        [
            Value::BulkString(b"help".to_vec()),
            Value::BulkString(b"p-help".to_vec()),
            Value::BulkString(b"hello world".to_vec()),
            Value::Nil,
        ]
    );
    // INCR adds to the score and keeps the payload.
    sugadd(&mut c, "d", "helicopter", 100.0, &["INCR"]);
    assert_eq!(sugget(&mut c, "d", "hel", &["MAX", "1"]), ["helicopter"]);
    sugadd(&mut c, "d", "help", 1.0, &["INCR"]);
    let with: Vec<Value> = redis::cmd("FT.SUGGET")
        .arg("d")
        .arg("help")
        .arg("WITHPAYLOADS")
        .query(&mut c)
        .unwrap();
    assert_eq!(with[1], Value::BulkString(b"p-help".to_vec()));
}

#[test]
fn fuzzy_matches_at_distance_one_and_penalizes_it() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    for (s, score) in [
        ("hello", 1.0),
        ("yellow", 1.0),
        ("jello", 1.0),
        ("help", 1.0),
        ("world", 1.0),
    ] {
        sugadd(&mut c, "f", s, score, &[]);
    }
    // Without FUZZY only the exact prefix.
    assert_eq!(sugget(&mut c, "f", "helo", &[]), Vec::<String>::new());
    // "hel" → "helo" is one insertion (help, hello); "jello" has "jelo"... "jell" at distance 2, but
    // "jel" vs "helo": substitution + insertion = 2; "hello"'s prefix "helo"? no: "hell" vs "helo" is 1.
    let got = sugget(&mut c, "f", "helo", &["FUZZY", "WITHSCORES"]);
    let names: Vec<&str> = got.iter().step_by(2).map(String::as_str).collect();
    assert_eq!(names, ["help", "hello"]);
    // Distance 1 costs e^-2; help has no suffix beyond the query length: 1 * e^-2 / sqrt(1).
    let help: f64 = got[1].parse().unwrap();
    assert!((help - (-2.0f64).exp()).abs() < 1e-6, "{help}");
    // A substitution in the first letter.
    let got = sugget(&mut c, "f", "wprld", &["FUZZY"]);
    assert_eq!(got, ["world"]);
}

#[test]
fn errors_are_redisearch_s() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    assert_eq!(
        error(&mut c, &["FT.SUGADD", "k", "s", "notanumber"]),
        "ERR invalid score"
    );
    assert_eq!(
        error(&mut c, &["FT.SUGADD", "k", "s", "1", "BOGUS"]),
        "ERR Unknown argument `BOGUS`"
    );
    assert_eq!(
        error(&mut c, &["FT.SUGGET", "k", "s", "MAX", "0"]),
        "ERR MAX: Value is outside acceptable bounds"
    );
    assert_eq!(
        error(&mut c, &["FT.SUGGET", "k", "s", "NOPE"]),
        "ERR Unrecognized argument: NOPE"
    );
    redis::cmd("SET")
        .arg("str")
        .arg("x")
        .query::<()>(&mut c)
        .unwrap();
    assert!(error(&mut c, &["FT.SUGADD", "str", "s", "1"]).starts_with("WRONGTYPE"));
    assert!(error(&mut c, &["FT.SUGGET", "str", "s"]).starts_with("WRONGTYPE"));
    assert!(error(&mut c, &["FT.SUGLEN", "str"]).starts_with("WRONGTYPE"));
    assert!(error(&mut c, &["FT.SUGADD", "k"]).contains("wrong number of arguments"));
}

#[test]
fn dictionaries_survive_restart_and_rename() {
    let dir = tempfile::tempdir().unwrap();
    {
        let server = Server::start_in(dir.path(), KvConfig::default(), Arc::new(SystemClock));
        let mut c = server.client();
        for i in 0..200 {
            sugadd(&mut c, "dict", &format!("term{i:03}"), f64::from(i), &[]);
        }
        sugadd(&mut c, "dict", "bin\u{e9}", 1.0, &["PAYLOAD", "\u{1f600}"]);
        let del: i64 = redis::cmd("FT.SUGDEL")
            .arg("dict")
            .arg("term199")
            .query(&mut c)
            .unwrap();
        assert_eq!(del, 1);
    }
    let server = Server::start_in(dir.path(), KvConfig::default(), Arc::new(SystemClock));
    let mut c = server.client();
    let len: i64 = redis::cmd("FT.SUGLEN").arg("dict").query(&mut c).unwrap();
    assert_eq!(len, 200);
    assert_eq!(
        sugget(&mut c, "dict", "term", &["MAX", "3"]),
        ["term198", "term197", "term196"]
    );
    let with: Vec<String> = redis::cmd("FT.SUGGET")
        .arg("dict")
        .arg("BIN")
        .arg("WITHPAYLOADS")
        .query(&mut c)
        .unwrap();
    assert_eq!(with, ["bin\u{e9}", "\u{1f600}"]);
    redis::cmd("RENAME")
        .arg("dict")
        .arg("moved")
        .query::<()>(&mut c)
        .unwrap();
    assert_eq!(
        sugget(&mut c, "moved", "term19", &["MAX", "1"]),
        ["term198"]
    );
    let none: Value = redis::cmd("FT.SUGGET")
        .arg("dict")
        .arg("t")
        .query(&mut c)
        .unwrap();
    assert_eq!(none, Value::Nil);
}
