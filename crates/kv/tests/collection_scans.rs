//! HRANDFIELD, HSCAN, SSCAN, SINTERCARD, SMISMEMBER, SPOP / SRANDMEMBER counts, table-driven.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod table;

use std::collections::BTreeSet;

use common::Server;
use strata_kv::KvConfig;
use table::{run, table};

/// Runs a full HSCAN / SSCAN and returns every element seen (fields only).
fn scan_all(c: &mut redis::Connection, cmd: &str, key: &str, extra: &[&str]) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut seen = Vec::new();
    loop {
        let mut q = redis::cmd(cmd);
        q.arg(key).arg(&cursor);
        for e in extra {
            q.arg(*e);
        }
        let (next, items): (String, Vec<String>) = q.query(c).unwrap();
        seen.extend(items);
        if next == "0" {
            return seen;
        }
        cursor = next;
    }
}

#[test]
fn hrandfield() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["HSET", "h", "a", "1", "b", "2", "c", "3"], ":3"),
            (&["HRANDFIELD", "nope"], "nil"),
            (&["HRANDFIELD", "nope", "3"], "[]"),
            (&["HRANDFIELD", "h", "0"], "[]"),
            (&["HRANDFIELD", "h", "1", "BOGUS"], "!ERR syntax error"),
            (
                &["HRANDFIELD", "h", "1", "WITHVALUES", "x"],
                "!ERR syntax error",
            ),
            (
                &["HRANDFIELD", "h", "x"],
                "!ERR value is not an integer or out of range",
            ),
            (
                &["HRANDFIELD", "h", "-9223372036854775808"],
                "!ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            ),
            (
                &["HRANDFIELD", "h", "-9223372036854775807", "WITHVALUES"],
                "!ERR value is out of range",
            ),
            (&["SET", "s", "x"], "+OK"),
            (
                &["HRANDFIELD", "s"],
                "!WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
        ],
    );
    let all: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(10)
        .query(&mut c)
        .unwrap();
    assert_eq!(all.iter().collect::<BTreeSet<_>>().len(), 3);
    let two: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(2)
        .query(&mut c)
        .unwrap();
    assert_eq!(two.iter().collect::<BTreeSet<_>>().len(), 2);
    let many: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(-20)
        .query(&mut c)
        .unwrap();
    assert_eq!(many.len(), 20);
    assert!(many.iter().all(|f| ["a", "b", "c"].contains(&f.as_str())));
    let pairs: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(-4)
        .arg("WITHVALUES")
        .query(&mut c)
        .unwrap();
    assert_eq!(pairs.len(), 8);
    for p in pairs.chunks(2) {
        let want = match p[0].as_str() {
            "a" => "1",
            "b" => "2",
            _ => "3",
        };
        assert_eq!(p[1], want);
    }
    let one = run(&mut c, &["HRANDFIELD", "h"]);
    assert!(["$a", "$b", "$c"].contains(&one.as_str()), "{one}");
}

#[test]
fn hscan_and_sscan() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["HSET", "small", "f1", "v1", "f2", "v2", "g", "v3"], ":3"),
            (&["HSCAN", "small", "0"], "[$0,[$f1,$v1,$f2,$v2,$g,$v3]]"),
            (
                &["HSCAN", "small", "0", "MATCH", "f*"],
                "[$0,[$f1,$v1,$f2,$v2]]",
            ),
            (&["HSCAN", "small", "0", "NOVALUES"], "[$0,[$f1,$f2,$g]]"),
            (&["HSCAN", "nope", "0"], "[$0,[]]"),
            (&["HSCAN", "small", "x"], "!ERR invalid cursor"),
            (&["HSCAN", "small", "0", "COUNT", "0"], "!ERR syntax error"),
            (
                &["HSCAN", "small", "0", "COUNT", "x"],
                "!ERR value is not an integer or out of range",
            ),
            (&["HSCAN", "small", "0", "BOGUS"], "!ERR syntax error"),
            (&["SADD", "s", "a", "b"], ":2"),
            (&["SSCAN", "s", "0"], "[$0,[$a,$b]]"),
            (&["SSCAN", "s", "0", "NOVALUES"], "!ERR syntax error"),
            (
                &["HSCAN", "s", "0"],
                "!WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
        ],
    );
    // Big collections are scanned in steps and every element is seen exactly once.
    let mut hset = redis::cmd("HSET");
    hset.arg("big");
    let mut sadd = redis::cmd("SADD");
    sadd.arg("bigset");
    for i in 0..1000 {
        hset.arg(format!("field:{i}")).arg(i);
        sadd.arg(format!("m{i}"));
    }
    let _: i64 = hset.query(&mut c).unwrap();
    let _: i64 = sadd.query(&mut c).unwrap();
    let seen = scan_all(&mut c, "HSCAN", "big", &["COUNT", "100", "NOVALUES"]);
    assert_eq!(seen.len(), 1000);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 1000);
    let pairs = scan_all(&mut c, "HSCAN", "big", &["COUNT", "300"]);
    assert_eq!(pairs.len(), 2000);
    let matched = scan_all(&mut c, "HSCAN", "big", &["MATCH", "field:1??", "NOVALUES"]);
    assert_eq!(matched.len(), 100);
    let members = scan_all(&mut c, "SSCAN", "bigset", &[]);
    assert_eq!(members.iter().collect::<BTreeSet<_>>().len(), 1000);
}

#[test]
fn set_counts_and_multi_key_reads() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["SADD", "a", "1", "2", "3", "4"], ":4"),
            (&["SADD", "b", "2", "3", "4", "5"], ":4"),
            (&["SINTERCARD", "2", "a", "b"], ":3"),
            (&["SINTERCARD", "2", "a", "b", "LIMIT", "2"], ":2"),
            (&["SINTERCARD", "2", "a", "b", "LIMIT", "0"], ":3"),
            (&["SINTERCARD", "2", "a", "nope"], ":0"),
            (
                &["SINTERCARD", "0", "a"],
                "!ERR numkeys should be greater than 0",
            ),
            (
                &["SINTERCARD", "3", "a", "b"],
                "!ERR Number of keys can't be greater than number of args",
            ),
            (
                &["SINTERCARD", "2", "a", "b", "LIMIT", "-1"],
                "!ERR LIMIT can't be negative",
            ),
            (
                &["SINTERCARD", "2", "a", "b", "BOGUS", "1"],
                "!ERR syntax error",
            ),
            (&["SMISMEMBER", "a", "1", "9", "4"], "[:1,:0,:1]"),
            (&["SMISMEMBER", "nope", "1"], "[:0]"),
            (
                &["SPOP", "a", "-1"],
                "!ERR value is out of range, must be positive",
            ),
            (&["SPOP", "a", "0"], "[]"),
            (&["SPOP", "nope", "3"], "[]"),
            (&["SPOP", "nope"], "nil"),
            (&["SRANDMEMBER", "nope"], "nil"),
            (&["SRANDMEMBER", "nope", "5"], "[]"),
            (&["SRANDMEMBER", "a", "0"], "[]"),
            (
                &["SRANDMEMBER", "a", "-9223372036854775808"],
                "!ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
            ),
        ],
    );
    let n: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("a")
        .arg(-10)
        .query(&mut c)
        .unwrap();
    assert_eq!(n.len(), 10);
    let n: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("a")
        .arg(10)
        .query(&mut c)
        .unwrap();
    assert_eq!(n.len(), 4);
    let popped: Vec<String> = redis::cmd("SPOP").arg("a").arg(10).query(&mut c).unwrap();
    assert_eq!(popped.len(), 4);
    table(&mut c, &[(&["EXISTS", "a"], ":0")]);
}

#[test]
fn a_collection_created_over_an_expired_one_starts_empty() {
    let clock = std::sync::Arc::new(strata_kv::ManualClock::new(1_700_000_000_000));
    let server = Server::start_with_clock(KvConfig::default(), clock.clone());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["HSET", "h", "old", "1"], ":1"),
            (&["PEXPIRE", "h", "10"], ":1"),
        ],
    );
    clock.advance_ms(20);
    table(
        &mut c,
        &[
            (&["HSET", "h", "new", "2"], ":1"),
            (&["HGETALL", "h"], "[$new,$2]"),
            (&["TTL", "h"], ":-1"),
        ],
    );
}
