//! Key commands through a real Redis client, table-driven: COPY, MOVE, SWAPDB, OBJECT, SORT, the EXPIRE
//! options, TOUCH, RANDOMKEY, SCAN TYPE.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod table;

use common::Server;
use strata_kv::KvConfig;
use table::{run, table};

#[test]
fn copy_move_and_swapdb() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["SET", "s", "v"], "+OK"),
            (&["PEXPIRE", "s", "100000"], ":1"),
            (&["HSET", "h", "a", "1", "b", "2"], ":2"),
            (&["COPY", "s", "s2"], ":1"),
            (&["GET", "s2"], "$v"),
            (&["TTL", "s2"], ":100"),
            (&["COPY", "s", "s2"], ":0"),
            (&["SET", "s", "w"], "+OK"),
            (&["COPY", "s", "s2", "REPLACE"], ":1"),
            (&["GET", "s2"], "$w"),
            (&["TTL", "s2"], ":-1"),
            (
                &["COPY", "s", "s"],
                "!ERR source and destination objects are the same",
            ),
            (
                &["COPY", "s", "s", "DB", "0"],
                "!ERR source and destination objects are the same",
            ),
            (
                &["COPY", "s", "x", "DB", "16"],
                "!ERR DB index is out of range",
            ),
            (
                &["COPY", "s", "x", "DB", "z"],
                "!ERR value is not an integer or out of range",
            ),
            (&["COPY", "s", "x", "BOGUS"], "!ERR syntax error"),
            (&["COPY", "nope", "x"], ":0"),
            (&["COPY", "h", "h2"], ":1"),
            (&["HSET", "h", "c", "3"], ":1"),
            (&["HGETALL", "h2"], "[$a,$1,$b,$2]"),
            (&["COPY", "h", "s", "DB", "3"], ":1"),
            (&["SELECT", "3"], "+OK"),
            (&["HLEN", "s"], ":3"),
            (&["SELECT", "0"], "+OK"),
            (
                &["MOVE", "h", "0"],
                "!ERR source and destination objects are the same",
            ),
            (&["MOVE", "h", "99"], "!ERR DB index is out of range"),
            (
                &["MOVE", "h", "x"],
                "!ERR value is not an integer or out of range",
            ),
            (&["MOVE", "nope", "1"], ":0"),
            (&["MOVE", "h", "1"], ":1"),
            (&["EXISTS", "h"], ":0"),
            (&["SET", "s2", "zero"], "+OK"),
            (&["COPY", "s2", "h", "DB", "1"], ":0"),
            (&["MOVE", "s", "3"], ":0"),
            (&["SELECT", "1"], "+OK"),
            (&["HGETALL", "h"], "[$a,$1,$b,$2,$c,$3]"),
            (&["SELECT", "0"], "+OK"),
            (&["SWAPDB", "0", "1"], "+OK"),
            (&["HLEN", "h"], ":3"),
            (&["EXISTS", "s"], ":0"),
            (&["SWAPDB", "0", "0"], "+OK"),
            (&["SWAPDB", "x", "0"], "!ERR invalid first DB index"),
            (&["SWAPDB", "0", "x"], "!ERR invalid second DB index"),
            (&["SWAPDB", "0", "16"], "!ERR DB index is out of range"),
            (&["SWAPDB", "-1", "0"], "!ERR DB index is out of range"),
            (&["SELECT", "1"], "+OK"),
            (&["GET", "s"], "$w"),
            (&["DBSIZE"], ":3"),
        ],
    );
}

#[test]
fn swapdb_touches_watched_keys_of_both_databases() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let mut other = server.client();
    for db in ["0", "1"] {
        table(
            &mut c,
            &[
                (&["SELECT", db], "+OK"),
                (&["SET", "k", "v"], "+OK"),
                (&["WATCH", "k"], "+OK"),
                (&["MULTI"], "+OK"),
                (&["PING"], "+QUEUED"),
            ],
        );
        table(&mut other, &[(&["SWAPDB", "0", "1"], "+OK")]);
        table(&mut c, &[(&["EXEC"], "nil")]);
    }
    // As in Redis, a watched key that exists in neither database is not touched by the swap.
    table(
        &mut c,
        &[
            (&["SELECT", "0"], "+OK"),
            (&["WATCH", "missing"], "+OK"),
            (&["MULTI"], "+OK"),
            (&["PING"], "+QUEUED"),
        ],
    );
    table(&mut other, &[(&["SWAPDB", "0", "1"], "+OK")]);
    table(&mut c, &[(&["EXEC"], "[+PONG]")]);
    // Inside a transaction SWAPDB runs under EXEC's exclusive lock.
    table(
        &mut c,
        &[
            (&["SELECT", "0"], "+OK"),
            (&["SET", "a", "0"], "+OK"),
            (&["MULTI"], "+OK"),
            (&["SWAPDB", "0", "2"], "+QUEUED"),
            (&["GET", "a"], "+QUEUED"),
            (&["EXEC"], "[+OK,nil]"),
            (&["SELECT", "2"], "+OK"),
            (&["GET", "a"], "$0"),
        ],
    );
}

#[test]
fn swapdb_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
        strata_kv::Keyspace::open(db, 16, std::sync::Arc::new(strata_kv::SystemClock)).unwrap()
    };
    {
        let ks = open();
        ks.put(0, b"k", &strata_kv::keyspace::Entry::string("zero".into()))
            .unwrap();
        ks.swap_db(0, 5).unwrap();
        assert!(ks.get(0, b"k").unwrap().is_none());
    }
    let ks = open();
    assert!(ks.get(0, b"k").unwrap().is_none());
    assert_eq!(ks.get(5, b"k").unwrap().unwrap().payload, "zero");
}

#[test]
fn object_subcommands() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let long = "x".repeat(45);
    let big_field = "f".repeat(65);
    table(
        &mut c,
        &[
            (&["SET", "int", "12345"], "+OK"),
            (&["SET", "lead0", "012"], "+OK"),
            (&["SET", "emb", "hello"], "+OK"),
            (&["SET", "raw", &long], "+OK"),
            (&["OBJECT", "ENCODING", "int"], "$int"),
            (&["OBJECT", "ENCODING", "lead0"], "$embstr"),
            (&["OBJECT", "ENCODING", "emb"], "$embstr"),
            (&["OBJECT", "ENCODING", "raw"], "$raw"),
            (&["OBJECT", "ENCODING", "nope"], "nil"),
            (&["RPUSH", "l", "a", "b"], ":2"),
            (&["OBJECT", "ENCODING", "l"], "$listpack"),
            (&["HSET", "h", "a", "1"], ":1"),
            (&["OBJECT", "ENCODING", "h"], "$listpack"),
            (&["HSET", "h", &big_field, "1"], ":1"),
            (&["OBJECT", "ENCODING", "h"], "$hashtable"),
            (&["SADD", "si", "1", "2", "3"], ":3"),
            (&["OBJECT", "ENCODING", "si"], "$intset"),
            (&["SADD", "si", "x"], ":1"),
            (&["OBJECT", "ENCODING", "si"], "$listpack"),
            (&["CONFIG", "SET", "set-max-listpack-entries", "2"], "+OK"),
            (&["OBJECT", "ENCODING", "si"], "$hashtable"),
            (&["OBJECT", "REFCOUNT", "int"], ":1"),
            (&["SET", "small", "42"], "+OK"),
            (&["OBJECT", "REFCOUNT", "small"], ":2147483647"),
            (&["OBJECT", "REFCOUNT", "emb"], ":1"),
            (&["OBJECT", "IDLETIME", "emb"], ":0"),
            (
                &["OBJECT", "FREQ", "emb"],
                "!ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
                 Please note that when switching between policies at runtime LRU and LFU data \
                 will take some time to adjust.",
            ),
            (
                &["OBJECT", "ENCODING"],
                "!ERR wrong number of arguments for 'object|encoding' command",
            ),
            (
                &["OBJECT", "NOPE", "x"],
                "!ERR unknown subcommand 'NOPE'. Try OBJECT HELP.",
            ),
        ],
    );
    let help = run(&mut c, &["OBJECT", "HELP"]);
    assert!(help.starts_with("[+OBJECT <subcommand>"), "{help}");
    assert!(help.ends_with("+HELP,+    Prints this help.]"), "{help}");
}

#[test]
fn sort_and_sort_ro() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["RPUSH", "l", "3", "1", "2", "10"], ":4"),
            (&["SORT", "l"], "[$1,$2,$3,$10]"),
            (&["SORT", "l", "DESC"], "[$10,$3,$2,$1]"),
            (&["SORT", "l", "ALPHA"], "[$1,$10,$2,$3]"),
            (&["SORT", "l", "LIMIT", "1", "2"], "[$2,$3]"),
            (&["SORT", "l", "LIMIT", "10", "2"], "[]"),
            (&["SORT", "l", "LIMIT", "-5", "-1"], "[$1,$2,$3,$10]"),
            (
                &["SORT", "l", "LIMIT", "x", "1"],
                "!ERR value is not an integer or out of range",
            ),
            (&["SORT", "l", "BY", "nosort"], "[$3,$1,$2,$10]"),
            (
                &["SORT", "l", "BY", "nosort", "DESC", "LIMIT", "0", "2"],
                "[$10,$2]",
            ),
            (&["MSET", "w_1", "30", "w_2", "20", "w_3", "10"], "+OK"),
            (&["SORT", "l", "BY", "w_*"], "[$10,$3,$2,$1]"),
            (&["HSET", "o_1", "name", "one"], ":1"),
            (&["HSET", "o_2", "name", "two"], ":1"),
            (&["SET", "v_3", "three"], "+OK"),
            (
                &["SORT", "l", "GET", "#", "GET", "o_*->name", "GET", "v_*"],
                "[$1,$one,nil,$2,$two,nil,$3,nil,$three,$10,nil,nil]",
            ),
            (&["SORT", "l", "BY", "o_*->name", "ALPHA"], "[$3,$10,$1,$2]"),
            (&["SORT", "l", "GET", "nostar"], "[nil,nil,nil,nil]"),
            (&["RPUSH", "bad", "1", "x"], ":2"),
            (
                &["SORT", "bad"],
                "!ERR One or more scores can't be converted into double",
            ),
            (&["SORT", "bad", "ALPHA"], "[$1,$x]"),
            (&["SORT", "l", "STORE", "dst"], ":4"),
            (&["LRANGE", "dst", "0", "-1"], "[$1,$2,$3,$10]"),
            (&["SORT", "l", "GET", "v_*", "STORE", "dst"], ":4"),
            (&["LRANGE", "dst", "0", "-1"], "[$,$,$three,$]"),
            (&["SORT", "missing", "STORE", "dst"], ":0"),
            (&["EXISTS", "dst"], ":0"),
            (&["SORT_RO", "l", "STORE", "dst"], "!ERR syntax error"),
            (&["SORT_RO", "l", "DESC"], "[$10,$3,$2,$1]"),
            (&["SORT", "l", "BOGUS"], "!ERR syntax error"),
            (&["SORT", "missing"], "[]"),
            (&["SET", "str", "x"], "+OK"),
            (
                &["SORT", "str"],
                "!WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (&["SADD", "set", "b", "a", "c"], ":3"),
            (&["SORT", "set", "ALPHA", "DESC"], "[$c,$b,$a]"),
            (&["SORT", "set", "BY", "nosort", "STORE", "dst"], ":3"),
            (&["LRANGE", "dst", "0", "-1"], "[$a,$b,$c]"),
            (&["RPUSH", "ties", "b", "a"], ":2"),
            (&["SORT", "ties", "BY", "nokey_*"], "[$a,$b]"),
        ],
    );
}

#[test]
fn expire_options_touch_randomkey_and_scan_type() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["SET", "k", "v"], "+OK"),
            (&["EXPIRE", "k", "100", "XX"], ":0"),
            (&["EXPIRE", "k", "100", "GT"], ":0"),
            (&["EXPIRE", "k", "100", "LT"], ":1"),
            (&["EXPIRE", "k", "200", "NX"], ":0"),
            (&["EXPIRE", "k", "200", "LT"], ":0"),
            (&["EXPIRE", "k", "200", "GT"], ":1"),
            (&["EXPIRE", "k", "50", "XX"], ":1"),
            (&["TTL", "k"], ":50"),
            (
                &["EXPIRE", "k", "10", "NX", "XX"],
                "!ERR NX and XX, GT or LT options at the same time are not compatible",
            ),
            (
                &["EXPIRE", "k", "10", "GT", "LT"],
                "!ERR GT and LT options at the same time are not compatible",
            ),
            (&["EXPIRE", "k", "10", "FOO"], "!ERR Unsupported option FOO"),
            (
                &["EXPIRE", "k", "99999999999999999"],
                "!ERR invalid expire time in 'expire' command",
            ),
            (&["PERSIST", "k"], ":1"),
            (&["EXPIRE", "k", "-1"], ":1"),
            (&["EXISTS", "k"], ":0"),
            (&["TOUCH", "a", "b"], ":0"),
            (&["SET", "a", "1"], "+OK"),
            (&["TOUCH", "a", "b", "a"], ":2"),
            (&["RPUSH", "list", "x"], ":1"),
            (&["SCAN", "0", "TYPE", "list"], "[$0,[$list]]"),
            (
                &["SCAN", "0", "TYPE", "string", "COUNT", "100"],
                "[$0,[$a]]",
            ),
            (&["SCAN", "0", "TYPE", "nosuchtype"], "[$0,[]]"),
            (&["SCAN", "x"], "!ERR invalid cursor"),
            (&["SCAN", "0", "COUNT", "0"], "!ERR syntax error"),
        ],
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        seen.insert(run(&mut c, &["RANDOMKEY"]));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec!["$a".to_string(), "$list".to_string()]
    );
    table(&mut c, &[(&["FLUSHDB"], "+OK"), (&["RANDOMKEY"], "nil")]);
}
