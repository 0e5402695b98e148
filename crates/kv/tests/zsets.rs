//! Sorted-set commands: table-driven replies and error strings over raw RESP (RESP2 and RESP3), a model
//! test against a BTreeMap, cache coherence under DEL, RENAME, expiry and concurrent writers, and the
//! blocking pops (BZPOPMIN, BZPOPMAX, BZMPOP).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::BytesMut;
use common::Server;
use proptest::prelude::*;
use strata_kv::{KvConfig, ManualClock};
use strata_resp::Frame;

/// Runs `commands` (whitespace-separated words) pipelined on one connection and renders each reply
/// compactly: `:3` integer, `x` bulk, `(nil)`, `,1.5` double, `[a b]` array, `-ERR ...` error, `+OK`.
fn run(server: &Server, commands: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for line in commands.iter().map(String::as_str).chain(["QUIT"]) {
        let words: Vec<&str> = line.split_whitespace().collect();
        out.extend_from_slice(format!("*{}\r\n", words.len()).as_bytes());
        for w in words {
            out.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
        }
    }
    let mut buf = BytesMut::from(&server.raw(&out)[..]);
    let mut replies = Vec::new();
    while let Some(f) = Frame::decode(&mut buf).unwrap() {
        replies.push(render(&f));
    }
    assert_eq!(
        replies.pop().as_deref(),
        Some("+OK"),
        "QUIT's reply comes last"
    );
    assert_eq!(replies.len(), commands.len());
    replies
}

fn render(f: &Frame) -> String {
    match f {
        Frame::Simple(s) => format!("+{}", String::from_utf8_lossy(s)),
        Frame::Error(e) | Frame::BulkError(e) => format!("-{}", String::from_utf8_lossy(e)),
        Frame::Integer(n) => format!(":{n}"),
        Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Null | Frame::NullArray => "(nil)".into(),
        Frame::Double(d) => format!(",{d}"),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => format!(
            "[{}]",
            items.iter().map(render).collect::<Vec<_>>().join(" ")
        ),
        Frame::Map(pairs) => format!(
            "{{{}}}",
            pairs
                .iter()
                .map(|(k, v)| format!("{}: {}", render(k), render(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("{other:?}"),
    }
}

fn check(server: &Server, table: &[(&str, &str)]) {
    let commands: Vec<String> = table.iter().map(|(c, _)| c.to_string()).collect();
    for ((command, want), got) in table.iter().zip(run(server, &commands)) {
        if *want != "*" {
            assert_eq!(got, *want, "{command}");
        }
    }
}

#[test]
fn zadd_options_and_errors() {
    let server = Server::start(KvConfig::default());
    check(
        &server,
        &[
            ("ZADD z 1 a 2 b 3 c", ":3"),
            ("ZADD z 1 a", ":0"),
            ("ZADD z CH 5 a 2 b 4 d", ":2"),
            ("ZSCORE z a", "5"),
            ("ZADD z NX 9 a 7 e", ":1"),
            ("ZSCORE z a", "5"),
            ("ZADD z XX 6 a 8 f", ":0"),
            ("ZSCORE z a", "6"),
            ("ZSCORE z f", "(nil)"),
            ("ZADD z GT CH 1 a", ":0"),
            ("ZADD z GT CH 10 a", ":1"),
            ("ZADD z LT CH 20 a", ":0"),
            ("ZADD z LT CH 0.5 a", ":1"),
            ("ZSCORE z a", "0.5"),
            ("ZADD z INCR 2.5 a", "3"),
            ("ZADD z NX INCR 1 a", "(nil)"),
            ("ZADD z XX INCR 1 nope", "(nil)"),
            ("ZADD z GT INCR -1 a", "(nil)"),
            ("ZADD z 1 dup 2 dup", ":1"),
            ("ZSCORE z dup", "2"),
            ("ZADD missing XX 1 a", ":0"),
            ("ZADD missing XX INCR 1 a", "(nil)"),
            ("EXISTS missing", ":0"),
            ("ZINCRBY z 0.1 b", "2.1"),
            ("ZINCRBY z 1 newbie", "1"),
            ("ZADD z 1e8 big", ":1"),
            ("ZSCORE z big", "100000000"),
            ("ZADD z +inf top -inf bottom", ":2"),
            ("ZSCORE z top", "inf"),
            ("ZSCORE z bottom", "-inf"),
            (
                "ZINCRBY z -inf top",
                "-ERR resulting score is not a number (NaN)",
            ),
            (
                "ZADD z INCR -inf top",
                "-ERR resulting score is not a number (NaN)",
            ),
            ("ZSCORE z top", "inf"),
            (
                "ZADD z NX XX 1 a",
                "-ERR XX and NX options at the same time are not compatible",
            ),
            (
                "ZADD z GT LT 1 a",
                "-ERR GT, LT, and/or NX options at the same time are not compatible",
            ),
            (
                "ZADD z NX GT 1 a",
                "-ERR GT, LT, and/or NX options at the same time are not compatible",
            ),
            (
                "ZADD z INCR 1 a 2 b",
                "-ERR INCR option supports a single increment-element pair",
            ),
            ("ZADD z 1 a 2", "-ERR syntax error"),
            ("ZADD z NX 1", "-ERR syntax error"),
            ("ZADD z nan a", "-ERR value is not a valid float"),
            ("ZADD z abc a", "-ERR value is not a valid float"),
            ("ZINCRBY z abc a", "-ERR value is not a valid float"),
            (
                "ZADD z",
                "-ERR wrong number of arguments for 'zadd' command",
            ),
            ("SET s x", "+OK"),
            (
                "ZADD s 1 a",
                "-WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                "ZSCORE s a",
                "-WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            ("ZMSCORE z a nope b", "[3 (nil) 2.1]"),
            ("ZMSCORE nokey a b", "[(nil) (nil)]"),
            ("ZCARD z", ":10"),
            ("ZCARD nokey", ":0"),
            ("TYPE z", "+zset"),
            ("ZREM z a nope a b", ":2"),
            ("ZCARD z", ":8"),
            ("ZADD gone 1 x", ":1"),
            ("ZREM gone x", ":1"),
            ("EXISTS gone", ":0"),
        ],
    );
}

#[test]
fn ranges_by_rank_score_and_lex() {
    let server = Server::start(KvConfig::default());
    check(
        &server,
        &[
            ("ZADD z 1 a 2 b 3 c 4 d 5 e", ":5"),
            ("ZRANGE z 0 -1", "[a b c d e]"),
            ("ZRANGE z 1 2 WITHSCORES", "[b 2 c 3]"),
            ("ZRANGE z -2 100", "[d e]"),
            ("ZRANGE z 3 1", "[]"),
            ("ZRANGE z 0 -1 REV", "[e d c b a]"),
            ("ZRANGE z 0 1 REV WITHSCORES", "[e 5 d 4]"),
            ("ZREVRANGE z 0 1", "[e d]"),
            ("ZRANGE nokey 0 -1", "[]"),
            ("ZRANGE z (1 3 BYSCORE", "[b c]"),
            ("ZRANGE z -inf +inf BYSCORE LIMIT 1 2", "[b c]"),
            ("ZRANGE z +inf -inf BYSCORE REV LIMIT 0 2", "[e d]"),
            ("ZRANGE z 5 (3 BYSCORE REV WITHSCORES", "[e 5 d 4]"),
            ("ZRANGE z 1 5 BYSCORE LIMIT -1 2", "[]"),
            ("ZRANGE z 1 5 BYSCORE LIMIT 3 -1", "[d e]"),
            ("ZRANGEBYSCORE z (2 +inf WITHSCORES LIMIT 0 1", "[c 3]"),
            ("ZREVRANGEBYSCORE z 4 2", "[d c b]"),
            ("ZRANGEBYSCORE z 3 (3", "[]"),
            ("ZRANGEBYSCORE z x 3", "-ERR min or max is not a float"),
            ("ZRANGEBYSCORE z 1 3 REV", "-ERR syntax error"),
            ("ZCOUNT z (1 3", ":2"),
            ("ZCOUNT z -inf +inf", ":5"),
            ("ZCOUNT z 3 1", ":0"),
            ("ZCOUNT z ( 1", "-ERR min or max is not a float"),
            (
                "ZRANGE z 0 1 LIMIT 0 1",
                "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
            ),
            (
                "ZRANGE z - + BYLEX WITHSCORES",
                "-ERR syntax error, WITHSCORES not supported in combination with BYLEX",
            ),
            ("ZRANGE z 0 1 BOGUS", "-ERR syntax error"),
            ("ZRANGE z 0 1 LIMIT 1", "-ERR syntax error"),
            (
                "ZRANGE z a 1",
                "-ERR value is not an integer or out of range",
            ),
            ("ZADD l 0 a 0 b 0 c 0 d 0 e", ":5"),
            ("ZRANGE l - + BYLEX", "[a b c d e]"),
            ("ZRANGE l [b (d BYLEX", "[b c]"),
            ("ZRANGE l + - BYLEX REV LIMIT 1 2", "[d c]"),
            ("ZRANGEBYLEX l (b +", "[c d e]"),
            ("ZREVRANGEBYLEX l [c -", "[c b a]"),
            ("ZLEXCOUNT l [b [d", ":3"),
            ("ZLEXCOUNT l - +", ":5"),
            (
                "ZLEXCOUNT l b d",
                "-ERR min or max not valid string range item",
            ),
            (
                "ZRANGEBYLEX l +x -",
                "-ERR min or max not valid string range item",
            ),
            ("ZRANK z c", ":2"),
            ("ZREVRANK z c", ":2"),
            ("ZRANK z a WITHSCORE", "[:0 1]"),
            ("ZREVRANK z a WITHSCORE", "[:4 1]"),
            ("ZRANK z nope", "(nil)"),
            ("ZRANK z nope WITHSCORE", "(nil)"),
            ("ZRANK nokey a", "(nil)"),
            ("ZRANK z a BOGUS", "-ERR syntax error"),
            (
                "ZRANK z a WITHSCORE x",
                "-ERR wrong number of arguments for 'zrank' command",
            ),
            ("ZRANGESTORE dst z 1 3", ":3"),
            ("ZRANGE dst 0 -1 WITHSCORES", "[b 2 c 3 d 4]"),
            ("ZRANGESTORE dst z (4 +inf BYSCORE", ":1"),
            ("ZRANGE dst 0 -1", "[e]"),
            ("ZRANGESTORE dst z 10 20", ":0"),
            ("EXISTS dst", ":0"),
            ("ZRANGESTORE dst z 0 1 WITHSCORES", "-ERR syntax error"),
            ("ZREMRANGEBYRANK z 0 1", ":2"),
            ("ZRANGE z 0 -1", "[c d e]"),
            ("ZREMRANGEBYSCORE z (3 4", ":1"),
            ("ZRANGE z 0 -1", "[c e]"),
            ("ZREMRANGEBYSCORE z x 4", "-ERR min or max is not a float"),
            ("ZREMRANGEBYLEX l [b (d", ":2"),
            ("ZRANGE l 0 -1", "[a d e]"),
            (
                "ZREMRANGEBYLEX l b d",
                "-ERR min or max not valid string range item",
            ),
            ("ZREMRANGEBYRANK z 0 -1", ":2"),
            ("EXISTS z", ":0"),
        ],
    );
}

#[test]
fn pops_random_members_and_scan() {
    let server = Server::start(KvConfig::default());
    check(
        &server,
        &[
            ("ZADD z 1 a 2 b 3 c 4 d", ":4"),
            ("ZPOPMIN z", "[a 1]"),
            ("ZPOPMAX z 2", "[d 4 c 3]"),
            ("ZPOPMIN z 0", "[]"),
            (
                "ZPOPMIN z -1",
                "-ERR value is out of range, must be positive",
            ),
            ("ZPOPMIN z 1 2", "-ERR syntax error"),
            (
                "ZPOPMIN z x",
                "-ERR value is out of range, must be positive",
            ),
            ("ZPOPMIN z 5", "[b 2]"),
            ("EXISTS z", ":0"),
            ("ZPOPMIN z", "[]"),
            ("ZADD y 1 a 2 b 3 c", ":3"),
            ("ZMPOP 2 nokey y MAX COUNT 2", "[y [[c 3] [b 2]]]"),
            ("ZMPOP 1 y MIN", "[y [[a 1]]]"),
            ("ZMPOP 2 nokey y MIN", "(nil)"),
            ("ZMPOP 0 y MIN", "-ERR numkeys should be greater than 0"),
            ("ZMPOP 1 y SIDEWAYS", "-ERR syntax error"),
            (
                "ZMPOP 1 y MIN COUNT 0",
                "-ERR count should be greater than 0",
            ),
            ("ZMPOP 5 y MIN", "-ERR syntax error"),
            ("ZMPOP x y MIN", "-ERR numkeys should be greater than 0"),
            (
                "ZMPOP 1 y MIN COUNT x",
                "-ERR count should be greater than 0",
            ),
            ("ZMPOP 1 y MIN COUNT 1 COUNT 1", "-ERR syntax error"),
            ("ZRANDMEMBER nokey", "(nil)"),
            ("ZRANDMEMBER nokey 3", "[]"),
            ("ZADD r 1 only", ":1"),
            ("ZRANDMEMBER r", "only"),
            ("ZRANDMEMBER r 5 WITHSCORES", "[only 1]"),
            ("ZRANDMEMBER r -3", "[only only only]"),
            ("ZRANDMEMBER r 0", "[]"),
            ("ZRANDMEMBER r 1 BOGUS", "-ERR syntax error"),
            (
                "ZRANDMEMBER r x",
                "-ERR value is not an integer or out of range",
            ),
            ("ZSCAN r 0", "[0 [only 1]]"),
            ("ZSCAN r x", "-ERR invalid cursor"),
            ("ZSCAN r 0 COUNT 0", "-ERR syntax error"),
            ("ZSCAN nokey 0", "[0 []]"),
        ],
    );
    // Distinct members for a positive count.
    let mut c = server.client();
    let mut add = redis::cmd("ZADD");
    add.arg("big");
    for i in 0..300 {
        add.arg(i).arg(format!("m{i:03}"));
    }
    let n: i64 = add.query(&mut c).unwrap();
    assert_eq!(n, 300);
    let sample: Vec<String> = redis::cmd("ZRANDMEMBER")
        .arg("big")
        .arg(50)
        .query(&mut c)
        .unwrap();
    let distinct: std::collections::BTreeSet<String> = sample.into_iter().collect();
    assert_eq!(distinct.len(), 50);
    let sample: Vec<String> = redis::cmd("ZRANDMEMBER")
        .arg("big")
        .arg(-500)
        .query(&mut c)
        .unwrap();
    assert_eq!(sample.len(), 500);
    // A full ZSCAN of a set bigger than one batch returns every member exactly once here (no writes).
    let mut cursor = "0".to_string();
    let mut seen = BTreeMap::new();
    loop {
        let (next, items): (String, Vec<String>) = redis::cmd("ZSCAN")
            .arg("big")
            .arg(&cursor)
            .arg("COUNT")
            .arg(40)
            .query(&mut c)
            .unwrap();
        for pair in items.chunks(2) {
            assert!(seen.insert(pair[0].clone(), pair[1].clone()).is_none());
        }
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 300);
    assert_eq!(seen["m007"], "7");
    check(
        &server,
        &[
            ("ZSCAN r 0 MATCH o*", "[0 [only 1]]"),
            ("ZSCAN r 0 MATCH x*", "[0 []]"),
            (
                "ZSCAN big 0 MATCH m29* COUNT 1000",
                "[0 [m290 290 m291 291 m292 292 m293 293 m294 294 m295 295 m296 296 m297 297 m298 298 m299 299]]",
            ),
        ],
    );
}

#[test]
fn union_inter_diff_and_stores() {
    let server = Server::start(KvConfig::default());
    check(
        &server,
        &[
            ("ZADD a 1 x 2 y 3 z", ":3"),
            ("ZADD b 10 y 20 z 30 w", ":3"),
            ("SADD s x w", ":2"),
            ("ZUNION 2 a b WITHSCORES", "[x 1 y 12 z 23 w 30]"),
            ("ZUNION 2 a b WEIGHTS 2 1 AGGREGATE MAX", "[x y z w]"),
            (
                "ZUNION 2 a b WEIGHTS 2 1 AGGREGATE MIN WITHSCORES",
                "[x 2 y 4 z 6 w 30]",
            ),
            ("ZINTER 2 a b WITHSCORES", "[y 12 z 23]"),
            ("ZINTER 2 a s WITHSCORES", "[x 2]"),
            ("ZUNION 2 a s WITHSCORES", "[w 1 x 2 y 2 z 3]"),
            ("ZDIFF 2 a b WITHSCORES", "[x 1]"),
            ("ZDIFF 2 b s", "[y z]"),
            ("ZINTERCARD 2 a b", ":2"),
            ("ZINTERCARD 2 a b LIMIT 1", ":1"),
            ("ZINTERCARD 2 a b LIMIT -1", "-ERR LIMIT can't be negative"),
            (
                "ZINTERCARD 0 a",
                "-ERR at least 1 input key is needed for 'zintercard' command",
            ),
            (
                "ZUNION 0 a",
                "-ERR at least 1 input key is needed for 'zunion' command",
            ),
            ("ZUNION 3 a b", "-ERR syntax error"),
            ("ZUNION 2 a b WEIGHTS 1", "-ERR syntax error"),
            (
                "ZUNION 2 a b WEIGHTS 1 x",
                "-ERR weight value is not a float",
            ),
            ("ZUNION 2 a b AGGREGATE AVG", "-ERR syntax error"),
            ("ZDIFF 2 a b WEIGHTS 1 1", "-ERR syntax error"),
            ("ZUNIONSTORE out 2 a b WEIGHTS 1 2", ":4"),
            ("ZRANGE out 0 -1 WITHSCORES", "[x 1 y 22 z 43 w 60]"),
            ("ZUNIONSTORE out 2 a b WITHSCORES", "-ERR syntax error"),
            ("ZINTERSTORE out 2 a b AGGREGATE MAX", ":2"),
            ("ZRANGE out 0 -1 WITHSCORES", "[y 10 z 20]"),
            ("ZDIFFSTORE out 2 a a", ":0"),
            ("EXISTS out", ":0"),
            ("SET str v", "+OK"),
            ("ZDIFFSTORE str 1 a", ":3"),
            ("TYPE str", "+zset"),
            ("ZUNION 2 a str2 BOGUS", "-ERR syntax error"),
            ("SET str2 v", "+OK"),
            (
                "ZUNION 2 a str2 BOGUS",
                "-WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            ("ZADD inf 1 p", ":1"),
            ("ZADD inf2 -inf p", ":1"),
            ("ZUNION 2 inf inf2 WEIGHTS +inf 1 WITHSCORES", "[p 0]"),
        ],
    );
}

#[test]
fn resp3_reply_shapes() {
    let server = Server::start(KvConfig::default());
    check(
        &server,
        &[
            ("HELLO 3", "*"),
            ("ZADD z 1 a 2.5 b", ":2"),
            ("ZSCORE z b", ",2.5"),
            ("ZINCRBY z 1 a", ",2"),
            ("ZADD z INCR 1 a", ",3"),
            ("ZMSCORE z a x", "[,3 (nil)]"),
            ("ZRANGE z 0 -1", "[b a]"),
            ("ZRANGE z 0 -1 WITHSCORES", "[[b ,2.5] [a ,3]]"),
            ("ZRANGEBYSCORE z -inf +inf WITHSCORES", "[[b ,2.5] [a ,3]]"),
            ("ZRANK z a WITHSCORE", "[:1 ,3]"),
            ("ZUNION 1 z WITHSCORES", "[[b ,2.5] [a ,3]]"),
            ("ZADD one 4 q", ":1"),
            ("ZRANDMEMBER one -2 WITHSCORES", "[[q ,4] [q ,4]]"),
            ("ZSCAN z 0", "[0 [b 2.5 a 3]]"),
            ("ZPOPMIN z", "[b ,2.5]"),
            ("ZADD z 1 c", ":1"),
            ("ZPOPMAX z 1", "[[a ,3]]"),
            ("ZMPOP 1 z MIN", "[z [[c ,1]]]"),
            ("ZMPOP 1 z MIN", "(nil)"),
        ],
    );
}

#[test]
fn trees_follow_delete_rename_overwrite_and_expiry() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let server = Server::start_with_clock(KvConfig::default(), clock.clone());
    check(
        &server,
        &[
            ("ZADD z 1 a 2 b 3 c", ":3"),
            ("ZRANGE z 0 -1", "[a b c]"),
            ("DEL z", ":1"),
            ("ZADD z 5 x", ":1"),
            ("ZRANGE z 0 -1 WITHSCORES", "[x 5]"),
            ("ZRANK z x", ":0"),
            ("ZADD z 1 a 2 b", ":2"),
            ("ZRANGE z 0 -1", "[a b x]"),
            ("RENAME z y", "+OK"),
            ("ZRANGE y 0 -1 WITHSCORES", "[a 1 b 2 x 5]"),
            ("ZADD y 0 first", ":1"),
            ("ZRANK y first", ":0"),
            ("ZRANGE z 0 -1", "[]"),
            ("SET y str", "+OK"),
            (
                "ZADD y 7 q",
                "-WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            ("DEL y", ":1"),
            ("ZADD y 7 q", ":1"),
            ("ZRANGE y 0 -1", "[q]"),
            ("ZADD e 1 a 2 b", ":2"),
            ("ZRANGE e 0 -1", "[a b]"),
            ("PEXPIRE e 100", ":1"),
            ("ZRANGE e 0 -1", "[a b]"),
        ],
    );
    clock.advance_ms(200);
    check(
        &server,
        &[
            ("ZRANGE e 0 -1", "[]"),
            ("ZADD e 9 z", ":1"),
            ("ZRANGE e 0 -1", "[z]"),
            ("ZCARD e", ":1"),
            ("FLUSHDB", "+OK"),
            ("ZADD e 3 k", ":1"),
            ("ZRANGE e 0 -1 WITHSCORES", "[k 3]"),
        ],
    );
}

#[test]
fn concurrent_writers_keep_the_tree_consistent() {
    let server = Server::start(KvConfig::default());
    run(
        &server,
        &[
            "ZADD hot 0 m0 0 m1 0 m2 0 m3 0 m4 0 m5 0 m6 0 m7".to_string(),
            "ZRANGE hot 0 -1".to_string(),
        ],
    );
    std::thread::scope(|scope| {
        for t in 0..4 {
            let server = &server;
            scope.spawn(move || {
                let mut commands = Vec::new();
                for i in 0..150 {
                    commands.push(format!("ZINCRBY hot 1 m{}", (i * 3 + t) % 8));
                    commands.push("ZRANGE hot 0 -1".to_string());
                    commands.push(format!("ZREVRANK hot m{}", i % 8));
                }
                for (command, reply) in commands.iter().zip(run(server, &commands)) {
                    assert!(!reply.starts_with('-'), "{command}: {reply}");
                    if command.starts_with("ZRANGE") {
                        assert_eq!(reply.split(' ').count(), 8, "{reply}");
                    }
                }
            });
        }
    });
    let mut c = server.client();
    let items: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("hot")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut c)
        .unwrap();
    assert!(items.windows(2).all(|w| w[0].1 <= w[1].1));
    assert_eq!(items.iter().map(|(_, s)| s).sum::<f64>(), 600.0);
    for (rank, (member, score)) in items.iter().enumerate() {
        let r: i64 = redis::cmd("ZRANK")
            .arg("hot")
            .arg(member)
            .query(&mut c)
            .unwrap();
        assert_eq!(r, rank as i64);
        let s: f64 = redis::cmd("ZSCORE")
            .arg("hot")
            .arg(member)
            .query(&mut c)
            .unwrap();
        assert_eq!(s, *score);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Add(u8, i8),
    Rem(u8),
    Incr(u8, i8),
    Range(i8, i8),
    Rank(u8),
    ByScore(i8, i8),
    PopMin,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..20, -5i8..5).prop_map(|(m, s)| Op::Add(m, s)),
        2 => (0u8..20).prop_map(Op::Rem),
        2 => (0u8..20, -3i8..3).prop_map(|(m, s)| Op::Incr(m, s)),
        2 => (-25i8..25, -25i8..25).prop_map(|(a, b)| Op::Range(a, b)),
        2 => (0u8..20).prop_map(Op::Rank),
        1 => (-6i8..6, -6i8..6).prop_map(|(a, b)| Op::ByScore(a, b)),
        1 => Just(Op::PopMin),
    ]
}

/// The model's members in Redis order: by score (halves, as integers ×2), then member.
fn ordered(model: &BTreeMap<String, i32>) -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = model.iter().map(|(m, s)| (m.clone(), *s)).collect();
    v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn fmt_half(twice: i32) -> String {
    if twice % 2 == 0 {
        (twice / 2).to_string()
    } else {
        format!("{}", f64::from(twice) / 2.0)
    }
}

#[test]
fn matches_a_btreemap_model() {
    let server = Server::start(KvConfig::default());
    let case = std::sync::atomic::AtomicU32::new(0);
    proptest!(ProptestConfig::with_cases(48), |(ops in prop::collection::vec(op(), 1..80))| {
        let key = format!("model{}", case.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        // Scores are kept doubled so halves stay exact.
        let mut model: BTreeMap<String, i32> = BTreeMap::new();
        let mut expect: Vec<(String, String)> = Vec::new();
        for op in &ops {
            match *op {
                Op::Add(m, s) => {
                    let m = format!("m{m}");
                    let twice = i32::from(s) * 2 + 1;
                    let cmd = format!("ZADD {key} {} {m}", fmt_half(twice));
                    let added = model.insert(m, twice).is_none();
                    expect.push((cmd, format!(":{}", i32::from(added))));
                }
                Op::Rem(m) => {
                    let m = format!("m{m}");
                    let cmd = format!("ZREM {key} {m}");
                    expect.push((cmd, format!(":{}", i32::from(model.remove(&m).is_some()))));
                }
                Op::Incr(m, s) => {
                    let m = format!("m{m}");
                    let cmd = format!("ZINCRBY {key} {s} {m}");
                    let v = model.entry(m).or_insert(0);
                    *v += i32::from(s) * 2;
                    expect.push((cmd, fmt_half(*v)));
                }
                Op::Range(a, b) => {
                    let all = ordered(&model);
                    let len = all.len() as i64;
                    let (mut start, mut end) = (i64::from(a), i64::from(b));
                    if start < 0 { start += len; }
                    if end < 0 { end += len; }
                    start = start.max(0);
                    end = end.min(len - 1);
                    let want: Vec<String> = if start > end || start >= len {
                        Vec::new()
                    } else {
                        all[start as usize..=end as usize]
                            .iter()
                            .flat_map(|(m, s)| [m.clone(), fmt_half(*s)])
                            .collect()
                    };
                    expect.push((format!("ZRANGE {key} {a} {b} WITHSCORES"), format!("[{}]", want.join(" "))));
                }
                Op::Rank(m) => {
                    let m = format!("m{m}");
                    let all = ordered(&model);
                    let want = all
                        .iter()
                        .position(|(x, _)| *x == m)
                        .map_or("(nil)".to_string(), |r| format!(":{r}"));
                    expect.push((format!("ZRANK {key} {m}"), want));
                    let want = all
                        .iter()
                        .rev()
                        .position(|(x, _)| *x == m)
                        .map_or("(nil)".to_string(), |r| format!(":{r}"));
                    expect.push((format!("ZREVRANK {key} {m}"), want));
                }
                Op::ByScore(lo, hi) => {
                    let want: Vec<String> = ordered(&model)
                        .into_iter()
                        .filter(|(_, s)| *s > i32::from(lo) * 2 && *s <= i32::from(hi) * 2)
                        .map(|(m, _)| m)
                        .collect();
                    expect.push((format!("ZCOUNT {key} ({lo} {hi}"), format!(":{}", want.len())));
                    expect.push((format!("ZRANGEBYSCORE {key} ({lo} {hi}"), format!("[{}]", want.join(" "))));
                }
                Op::PopMin => {
                    let want = match ordered(&model).first() {
                        Some((m, s)) => {
                            model.remove(m);
                            format!("[{m} {}]", fmt_half(*s))
                        }
                        None => "[]".to_string(),
                    };
                    expect.push((format!("ZPOPMIN {key}"), want));
                }
            }
            expect.push((format!("ZCARD {key}"), format!(":{}", model.len())));
        }
        let commands: Vec<String> = expect.iter().map(|(c, _)| c.clone()).collect();
        for ((command, want), got) in expect.iter().zip(run(&server, &commands)) {
            prop_assert_eq!(&got, want, "{}", command);
        }
    });
}

// ---------------------------------------------------------------------------------------------------------
// Blocking pops

/// Sends `args` on a new connection from a thread and returns its rendered reply when it arrives.
fn blocked_call(server: &Server, args: &[&str]) -> std::thread::JoinHandle<String> {
    let mut raw = support::Raw::connect(server.addr());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    std::thread::spawn(move || {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        raw.send(&words);
        render(&raw.read())
    })
}

fn cmd(con: &mut redis::Connection, line: &str) -> redis::Value {
    let mut words = line.split_whitespace();
    let mut c = redis::cmd(words.next().unwrap());
    for w in words {
        c.arg(w);
    }
    c.query(con).unwrap()
}

#[test]
fn bzpop_and_bzmpop_answer_at_once_when_a_key_has_members() {
    let server = Server::start(KvConfig::default());
    check(
        &server,
        &[
            ("ZADD z1 1 a 2 b 3 c 4 d", ":4"),
            ("ZADD z2 5 e 6 f", ":2"),
            ("BZPOPMIN none z1 z2 0", "[z1 a 1]"),
            ("BZPOPMAX none z1 z2 0", "[z1 d 4]"),
            ("BZPOPMAX z2 z1 0.5", "[z2 f 6]"),
            ("BZMPOP 0 2 none z1 MIN", "[z1 [[b 2]]]"),
            ("BZMPOP 0 2 z1 z2 MAX COUNT 10", "[z1 [[c 3]]]"),
            ("EXISTS z1", ":0"),
            ("BZMPOP 0.01 1 z1 MIN COUNT 2", "(nil)"),
            ("BZPOPMIN z1 0.01", "(nil)"),
            ("HELLO 3", "*"),
            ("BZPOPMIN z2 0", "[z2 e ,5]"),
            ("ZADD z2 1.5 x", ":1"),
            ("BZMPOP 0 1 z2 MIN", "[z2 [[x ,1.5]]]"),
        ],
    );
}

#[test]
fn bzpop_errors() {
    let server = Server::start(KvConfig::default());
    check(
        &server,
        &[
            ("SET s x", "+OK"),
            (
                "BZPOPMIN s 1",
                "-WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                "BZPOPMAX none s 1",
                "-WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                "BZMPOP 1 2 none s MIN COUNT 3",
                "-WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            ("BZPOPMIN z -1", "-ERR timeout is negative"),
            (
                "BZPOPMIN z abc",
                "-ERR timeout is not a float or out of range",
            ),
            (
                "BZPOPMIN z",
                "-ERR wrong number of arguments for 'bzpopmin' command",
            ),
            (
                "BZMPOP 0 1 z",
                "-ERR wrong number of arguments for 'bzmpop' command",
            ),
            ("BZMPOP 0 0 z MIN", "-ERR numkeys should be greater than 0"),
            ("BZMPOP 0 a z MIN", "-ERR numkeys should be greater than 0"),
            ("BZMPOP 0 1 z bad", "-ERR syntax error"),
            ("BZMPOP 0 1 z MIN COUNT 1 COUNT 2", "-ERR syntax error"),
            (
                "BZMPOP 0 1 z MIN COUNT 0",
                "-ERR count should be greater than 0",
            ),
            ("BZMPOP -1 1 z MIN", "-ERR timeout is negative"),
            // Inside MULTI a blocking pop does not wait: an empty key answers nil at once.
            ("MULTI", "+OK"),
            ("BZPOPMIN z 0", "+QUEUED"),
            ("BZMPOP 0 1 z MAX", "+QUEUED"),
            ("EXEC", "[(nil) (nil)]"),
        ],
    );
}

#[test]
fn blocked_bzpop_is_served_by_zadd_in_blocking_order() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let first = blocked_call(&server, &["BZPOPMIN", "z", "other", "0"]);
    support::wait_blocked(&mut con, 1);
    let second = blocked_call(&server, &["BZPOPMAX", "other", "z", "0"]);
    support::wait_blocked(&mut con, 2);
    let third = blocked_call(&server, &["BZMPOP", "0", "1", "z", "MIN", "COUNT", "5"]);
    support::wait_blocked(&mut con, 3);
    // One ZADD with four members: the first waiter takes the lowest, the second the highest, the third
    // what is left.
    cmd(&mut con, "ZADD z 1 a 2 b 3 c 4 d");
    assert_eq!(first.join().unwrap(), "[z a 1]");
    assert_eq!(second.join().unwrap(), "[z d 4]");
    assert_eq!(third.join().unwrap(), "[z [[b 2] [c 3]]]");
    support::wait_blocked(&mut con, 0);
    assert_eq!(cmd(&mut con, "EXISTS z"), redis::Value::Int(0));
}

#[test]
fn bzpop_keeps_waiting_across_a_transaction_that_leaves_the_key_empty_or_wrongly_typed() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let waiter = blocked_call(&server, &["BZMPOP", "0", "1", "z", "MIN"]);
    support::wait_blocked(&mut con, 1);
    for line in ["MULTI", "ZADD z 0 foo", "DEL z", "SET z str", "EXEC"] {
        cmd(&mut con, line);
    }
    // The woken client retried, found a string and went back to waiting instead of failing.
    support::wait_blocked(&mut con, 1);
    cmd(&mut con, "DEL z");
    cmd(&mut con, "ZADD z 1 bar");
    assert_eq!(waiter.join().unwrap(), "[z [[bar 1]]]");
    support::wait_blocked(&mut con, 0);
}

#[test]
fn bzpop_times_out_with_a_null_array() {
    let server = Server::start(KvConfig::default());
    let waiter = blocked_call(&server, &["BZPOPMAX", "z", "0.05"]);
    assert_eq!(waiter.join().unwrap(), "(nil)");
    let mut raw = support::Raw::connect(server.addr());
    raw.send(&["BZMPOP", "0.01", "1", "z", "MIN"]);
    assert_eq!(raw.read(), Frame::NullArray);
}

#[test]
fn bzpop_is_woken_by_a_store_and_released_by_client_unblock() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    // A store into the awaited key serves the waiter; a key listed twice is harmless.
    let waiter = blocked_call(&server, &["BZPOPMAX", "dst", "dst", "0"]);
    support::wait_blocked(&mut con, 1);
    cmd(&mut con, "ZADD src 1 a 2 b");
    cmd(&mut con, "ZUNIONSTORE dst 1 src WEIGHTS 10");
    assert_eq!(waiter.join().unwrap(), "[dst b 20]");
    // CLIENT UNBLOCK answers the timeout reply (or the UNBLOCKED error) without popping.
    let mut raw = support::Raw::connect(server.addr());
    let Frame::Integer(id) = raw.call(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is an integer");
    };
    raw.send(&["BZMPOP", "0", "1", "empty", "MIN"]);
    support::wait_blocked(&mut con, 1);
    cmd(&mut con, &format!("CLIENT UNBLOCK {id}"));
    assert_eq!(raw.read(), Frame::NullArray);
    raw.send(&["BZPOPMIN", "empty", "0"]);
    support::wait_blocked(&mut con, 1);
    cmd(&mut con, &format!("CLIENT UNBLOCK {id} ERROR"));
    assert_eq!(
        render(&raw.read()),
        "-UNBLOCKED client unblocked via CLIENT UNBLOCK"
    );
    assert_eq!(cmd(&mut con, "ZCARD dst"), redis::Value::Int(1));
}
