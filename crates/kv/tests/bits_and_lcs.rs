//! SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD, BITFIELD_RO and LCS, table-driven: replies and error
//! strings as Redis 7 gives them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod table;

use common::Server;
use strata_kv::KvConfig;
use table::table;

#[test]
fn setbit_getbit_bitcount_bitpos() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["SETBIT", "b", "7", "1"], ":0"),
            (&["SETBIT", "b", "7", "1"], ":1"),
            (&["GET", "b"], "$\u{1}"),
            (&["SETBIT", "b", "7", "0"], ":1"),
            (
                &["SETBIT", "b", "-1", "1"],
                "!ERR bit offset is not an integer or out of range",
            ),
            (
                &["SETBIT", "b", "4294967296", "1"],
                "!ERR bit offset is not an integer or out of range",
            ),
            (
                &["SETBIT", "b", "x", "1"],
                "!ERR bit offset is not an integer or out of range",
            ),
            (
                &["SETBIT", "b", "1", "2"],
                "!ERR bit is not an integer or out of range",
            ),
            (&["GETBIT", "b", "100"], ":0"),
            (&["GETBIT", "nope", "0"], ":0"),
            (
                &["GETBIT", "b", "-1"],
                "!ERR bit offset is not an integer or out of range",
            ),
            (&["SET", "s", "foobar"], "+OK"),
            (&["BITCOUNT", "s"], ":26"),
            (&["BITCOUNT", "s", "0", "0"], ":4"),
            (&["BITCOUNT", "s", "1", "1"], ":6"),
            (&["BITCOUNT", "s", "1", "1", "BYTE"], ":6"),
            (&["BITCOUNT", "s", "5", "30", "BIT"], ":17"),
            (&["BITCOUNT", "s", "-2", "-1"], ":7"),
            (&["BITCOUNT", "s", "-1", "-2"], ":0"),
            (&["BITCOUNT", "s", "0"], "!ERR syntax error"),
            (&["BITCOUNT", "s", "0", "1", "NIBBLE"], "!ERR syntax error"),
            (
                &["BITCOUNT", "s", "a", "1"],
                "!ERR value is not an integer or out of range",
            ),
            (&["BITCOUNT", "nope"], ":0"),
            (
                &[
                    "BITFIELD", "p", "SET", "u8", "0", "255", "SET", "u8", "8", "240", "SET", "u8",
                    "16", "0",
                ],
                "[:0,:0,:0]",
            ),
            (&["BITPOS", "p", "0"], ":12"),
            (
                &[
                    "BITFIELD", "q", "SET", "u8", "8", "255", "SET", "u8", "16", "240",
                ],
                "[:0,:0]",
            ),
            (&["BITPOS", "q", "1", "0"], ":8"),
            (&["BITPOS", "q", "1", "2"], ":16"),
            (&["BITPOS", "q", "1", "2", "-1", "BYTE"], ":16"),
            (&["BITPOS", "q", "1", "7", "15", "BIT"], ":8"),
            (&["BITPOS", "q", "1", "7", "-3", "BIT"], ":8"),
            (&["BITFIELD", "ones", "SET", "u16", "0", "65535"], "[:0]"),
            (&["BITPOS", "ones", "0"], ":16"),
            (&["BITPOS", "ones", "0", "0"], ":16"),
            (&["BITPOS", "ones", "0", "0", "-1"], ":-1"),
            (&["BITPOS", "nope", "1"], ":-1"),
            (&["BITPOS", "nope", "0"], ":0"),
            (
                &["BITPOS", "q", "2"],
                "!ERR The bit argument must be 1 or 0.",
            ),
            (
                &["BITPOS", "q", "1", "0", "1", "BOGUS"],
                "!ERR syntax error",
            ),
            (&["LPUSH", "l", "x"], ":1"),
            (
                &["GETBIT", "l", "0"],
                "!WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                &["BITCOUNT", "l"],
                "!WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
        ],
    );
}

#[test]
fn bitop() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["SET", "a", "abc"], "+OK"),
            (&["SET", "b", "a"], "+OK"),
            (&["BITOP", "AND", "d", "a", "b"], ":3"),
            (&["GET", "d"], "$a\u{0}\u{0}"),
            (&["BITOP", "OR", "d", "a", "b"], ":3"),
            (&["GET", "d"], "$abc"),
            (&["BITOP", "XOR", "d", "a", "b"], ":3"),
            (&["GET", "d"], "$\u{0}bc"),
            (&["SET", "n", "\u{f}"], "+OK"),
            (&["BITOP", "NOT", "d", "n"], ":1"),
            (&["STRLEN", "d"], ":1"),
            (&["BITCOUNT", "d"], ":4"),
            (
                &["BITOP", "NOT", "d", "a", "b"],
                "!ERR BITOP NOT must be called with a single source key.",
            ),
            (&["BITOP", "NAND", "d", "a"], "!ERR syntax error"),
            (&["BITOP", "AND", "d", "nope1", "nope2"], ":0"),
            (&["EXISTS", "d"], ":0"),
            (&["LPUSH", "l", "x"], ":1"),
            (
                &["BITOP", "AND", "d", "a", "l"],
                "!WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
        ],
    );
}

#[test]
fn bitfield() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (
                &["BITFIELD", "f", "SET", "i8", "0", "100", "GET", "i8", "0"],
                "[:0,:100]",
            ),
            (&["BITFIELD", "f", "INCRBY", "i8", "0", "100"], "[:-56]"),
            (
                &[
                    "BITFIELD", "f", "OVERFLOW", "SAT", "INCRBY", "i8", "0", "-100",
                ],
                "[:-128]",
            ),
            (
                &[
                    "BITFIELD", "f", "OVERFLOW", "FAIL", "INCRBY", "i8", "0", "-1", "GET", "i8",
                    "0",
                ],
                "[nil,:-128]",
            ),
            (
                &[
                    "BITFIELD", "g", "SET", "u8", "#1", "255", "GET", "u8", "8", "GET", "u4", "#2",
                ],
                "[:0,:255,:15]",
            ),
            (&["STRLEN", "g"], ":2"),
            (&["BITFIELD", "g", "INCRBY", "u8", "8", "1"], "[:0]"),
            (
                &[
                    "BITFIELD", "g", "OVERFLOW", "SAT", "INCRBY", "u8", "8", "300", "INCRBY", "u8",
                    "8", "-400",
                ],
                "[:255,:0]",
            ),
            (&["BITFIELD", "g", "SET", "u8", "8", "-1"], "[:0]"),
            (&["BITFIELD", "g", "GET", "u8", "8"], "[:255]"),
            (
                &[
                    "BITFIELD", "h", "SET", "i64", "0", "-1", "GET", "u63", "0", "GET", "i64", "0",
                ],
                "[:0,:9223372036854775807,:-1]",
            ),
            (
                &["BITFIELD", "h", "INCRBY", "i64", "0", "9223372036854775807"],
                "[:9223372036854775806]",
            ),
            (&["BITFIELD", "missing", "GET", "u8", "0"], "[:0]"),
            (&["EXISTS", "missing"], ":0"),
            (
                &["BITFIELD", "f", "GET", "u64", "0"],
                "!ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
            ),
            (
                &["BITFIELD", "f", "GET", "i65", "0"],
                "!ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
            ),
            (
                &["BITFIELD", "f", "GET", "x8", "0"],
                "!ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
            ),
            (
                &["BITFIELD", "f", "GET", "u8", "-1"],
                "!ERR bit offset is not an integer or out of range",
            ),
            (
                &["BITFIELD", "f", "GET", "u8", "#x"],
                "!ERR bit offset is not an integer or out of range",
            ),
            (
                &["BITFIELD", "f", "SET", "u8", "0", "x"],
                "!ERR value is not an integer or out of range",
            ),
            (
                &["BITFIELD", "f", "OVERFLOW", "BOOM"],
                "!ERR Invalid OVERFLOW type specified",
            ),
            (&["BITFIELD", "f", "GET", "u8"], "!ERR syntax error"),
            (&["BITFIELD", "f", "FROB"], "!ERR syntax error"),
            (&["BITFIELD", "f"], "[]"),
            (&["BITFIELD_RO", "g", "GET", "u8", "8"], "[:255]"),
            (
                &["BITFIELD_RO", "g", "SET", "u8", "8", "1"],
                "!ERR BITFIELD_RO only supports the GET subcommand",
            ),
            (&["LPUSH", "l", "x"], ":1"),
            (
                &["BITFIELD", "l", "GET", "u8", "0"],
                "!WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
        ],
    );
}

#[test]
fn lcs() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    table(
        &mut c,
        &[
            (&["MSET", "key1", "ohmytext", "key2", "mynewtext"], "+OK"),
            (&["LCS", "key1", "key2"], "$mytext"),
            (&["LCS", "key1", "key2", "LEN"], ":6"),
            (
                &["LCS", "key1", "key2", "IDX"],
                "[$matches,[[[:4,:7],[:5,:8]],[[:2,:3],[:0,:1]]],$len,:6]",
            ),
            (
                &["LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4"],
                "[$matches,[[[:4,:7],[:5,:8]]],$len,:6]",
            ),
            (
                &[
                    "LCS",
                    "key1",
                    "key2",
                    "IDX",
                    "MINMATCHLEN",
                    "4",
                    "WITHMATCHLEN",
                ],
                "[$matches,[[[:4,:7],[:5,:8],:4]],$len,:6]",
            ),
            (&["LCS", "key1", "nope"], "$"),
            (
                &["LCS", "key1", "key2", "LEN", "IDX"],
                "!ERR If you want both the length and indexes, please just use IDX.",
            ),
            (&["LCS", "key1", "key2", "BOGUS"], "!ERR syntax error"),
            (
                &["LCS", "key1", "key2", "MINMATCHLEN", "x"],
                "!ERR value is not an integer or out of range",
            ),
            (&["LPUSH", "l", "x"], ":1"),
            (
                &["LCS", "key1", "l"],
                "!ERR The specified keys must contain string values",
            ),
        ],
    );
}

/// SETBIT, SETRANGE, APPEND and BITFIELD on an existing string write only the bytes they change (a patch
/// of the string): the result, the key's TTL and a restart that replays the patches must all be as if
/// the whole string had been rewritten.
#[test]
fn in_place_string_writes_keep_ttl_and_survive_restart() {
    use std::sync::Arc;
    use strata_kv::SystemClock;
    let dir = tempfile::tempdir().unwrap();
    let mut model = vec![0u8; 100_000];
    let expect = {
        let server = Server::start_in(dir.path(), KvConfig::default(), Arc::new(SystemClock));
        let mut c = server.client();
        redis::cmd("SETRANGE")
            .arg("big")
            .arg(99_999)
            .arg("\0")
            .query::<i64>(&mut c)
            .unwrap();
        redis::cmd("EXPIRE")
            .arg("big")
            .arg(1000)
            .query::<i64>(&mut c)
            .unwrap();
        let mut x = 7u64;
        let mut pipe = redis::pipe();
        for i in 0..3000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (x >> 33) as usize % 800_000;
            match i % 3 {
                0 => {
                    model[at / 8] |= 0x80 >> (at % 8);
                    pipe.cmd("SETBIT").arg("big").arg(at).arg(1).ignore();
                }
                1 => {
                    let byte = (at / 8).min(model.len() - 3);
                    model[byte..byte + 3].copy_from_slice(b"abc");
                    pipe.cmd("SETRANGE")
                        .arg("big")
                        .arg(byte)
                        .arg("abc")
                        .ignore();
                }
                _ => {
                    let byte = at / 8;
                    model[byte] = i as u8;
                    pipe.cmd("BITFIELD")
                        .arg("big")
                        .arg("SET")
                        .arg("u8")
                        .arg(byte * 8)
                        .arg(i as u8)
                        .ignore();
                }
            }
        }
        pipe.query::<()>(&mut c).unwrap();
        // Growing: SETBIT and SETRANGE past the end zero-fill, APPEND adds at the end.
        redis::cmd("SETBIT")
            .arg("big")
            .arg(100_010 * 8 + 7)
            .arg(1)
            .query::<i64>(&mut c)
            .unwrap();
        model.resize(100_011, 0);
        model[100_010] = 1;
        let len: i64 = redis::cmd("APPEND")
            .arg("big")
            .arg("tail")
            .query(&mut c)
            .unwrap();
        model.extend_from_slice(b"tail");
        assert_eq!(len as usize, model.len());
        let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
        assert!(got == model, "string differs from the model");
        let ttl: i64 = redis::cmd("TTL").arg("big").query(&mut c).unwrap();
        assert!(ttl > 990, "TTL {ttl}");
        model
    };
    let server = Server::start_in(dir.path(), KvConfig::default(), Arc::new(SystemClock));
    let mut c = server.client();
    let got: Vec<u8> = redis::cmd("GET").arg("big").query(&mut c).unwrap();
    assert!(got == expect, "string differs after restart");
    let ttl: i64 = redis::cmd("TTL").arg("big").query(&mut c).unwrap();
    assert!(ttl > 990, "TTL {ttl}");
}
