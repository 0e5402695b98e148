//! Model-based test: random command sequences run against the server and against an in-memory model of
//! Redis 7's semantics, reply by reply. The sequences mix every data type on a few shared keys (so wrong-type
//! errors, overwrites and deletions of emptied collections happen often), move an injected clock past expiry
//! deadlines, and restart the server on the same data directory, so persistence is checked by the model too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use common::Server;
use proptest::prelude::*;
use redis::Value as V;
use strata_kv::{KvConfig, ManualClock};

const KEYS: &[&str] = &["k1", "k2", "k3", "k4"];
/// String values: integers (with an overflow edge), non-integers, the empty string.
const VALUES: &[&str] = &["0", "1", "-3", "10", "9223372036854775807", "x", "", "ab"];
/// Elements, members and fields.
const ITEMS: &[&str] = &["a", "b", "c", "1"];
const T0: u64 = 1_700_000_000_000;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INT: &str = "ERR value is not an integer or out of range";
const OVERFLOW: &str = "ERR increment or decrement would overflow";

/// A reply, normalised: errors are `code message`, as `redis` splits them.
#[derive(Debug, Clone, PartialEq)]
enum R {
    Nil,
    Int(i64),
    Bulk(Vec<u8>),
    Status(String),
    Arr(Vec<R>),
    Err(String),
}

fn bulk(b: &[u8]) -> R {
    R::Bulk(b.to_vec())
}

fn ok() -> R {
    R::Status("OK".into())
}

fn err(msg: &str) -> R {
    R::Err(msg.into())
}

fn from_value(v: V) -> R {
    match v {
        V::Nil => R::Nil,
        V::Int(n) => R::Int(n),
        V::BulkString(b) => R::Bulk(b),
        V::SimpleString(s) => R::Status(s),
        V::Okay => ok(),
        V::Array(items) | V::Set(items) => R::Arr(items.into_iter().map(from_value).collect()),
        other => panic!("unexpected reply {other:?}"),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    List(VecDeque<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
    /// Member to score; scores stay integral, so their text form is exact.
    ZSet(BTreeMap<Vec<u8>, i64>),
}

impl Val {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "string",
            Val::Hash(_) => "hash",
            Val::List(_) => "list",
            Val::Set(_) => "set",
            Val::ZSet(_) => "zset",
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Val::Str(_) => false,
            Val::Hash(h) => h.is_empty(),
            Val::List(l) => l.is_empty(),
            Val::Set(s) => s.is_empty(),
            Val::ZSet(z) => z.is_empty(),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    val: Val,
    /// Unix ms deadline.
    expire_at: Option<u64>,
}

/// How a reply's order is made comparable where Redis leaves it unspecified.
#[derive(Debug, Clone, Copy)]
enum Sort {
    None,
    Items,
    Pairs,
}

#[derive(Debug, Clone)]
enum Op {
    /// A command, with how to order its reply.
    Cmd(Vec<String>, Sort),
    /// Move the clock forward.
    Advance(u64),
    /// Restart the server on the same data directory.
    Reopen,
}

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(KEYS).prop_map(str::to_owned)
}
fn value() -> impl Strategy<Value = String> {
    proptest::sample::select(VALUES).prop_map(str::to_owned)
}
fn item() -> impl Strategy<Value = String> {
    proptest::sample::select(ITEMS).prop_map(str::to_owned)
}
fn small() -> impl Strategy<Value = i64> {
    -4i64..5
}
fn side() -> impl Strategy<Value = String> {
    proptest::sample::select(&["LEFT", "RIGHT"][..]).prop_map(str::to_owned)
}

fn cmd(args: &[&str]) -> Op {
    Op::Cmd(args.iter().map(|s| (*s).to_owned()).collect(), Sort::None)
}
fn cmd_sorted(args: &[&str], sort: Sort) -> Op {
    Op::Cmd(args.iter().map(|s| (*s).to_owned()).collect(), sort)
}

fn op() -> impl Strategy<Value = Op> {
    let strings = prop_oneof![
        (key(), value()).prop_map(|(k, v)| cmd(&["SET", &k, &v])),
        key().prop_map(|k| cmd(&["GET", &k])),
        key().prop_map(|k| cmd(&["INCR", &k])),
        (key(), value()).prop_map(|(k, v)| cmd(&["APPEND", &k, &v])),
        (key(), 0i64..6, value()).prop_map(|(k, o, v)| cmd(&["SETRANGE", &k, &o.to_string(), &v])),
        key().prop_map(|k| cmd(&["GETDEL", &k])),
        key().prop_map(|k| cmd(&["STRLEN", &k])),
    ];
    let hashes = prop_oneof![
        (key(), item(), value()).prop_map(|(k, f, v)| cmd(&["HSET", &k, &f, &v])),
        (key(), item()).prop_map(|(k, f)| cmd(&["HDEL", &k, &f])),
        (key(), item()).prop_map(|(k, f)| cmd(&["HGET", &k, &f])),
        key().prop_map(|k| cmd_sorted(&["HGETALL", &k], Sort::Pairs)),
        key().prop_map(|k| cmd(&["HLEN", &k])),
        (key(), item(), small()).prop_map(|(k, f, n)| cmd(&["HINCRBY", &k, &f, &n.to_string()])),
    ];
    let lists = prop_oneof![
        (key(), proptest::collection::vec(item(), 1..3)).prop_map(|(k, vs)| {
            let mut a = vec!["LPUSH", &k];
            a.extend(vs.iter().map(String::as_str));
            cmd(&a)
        }),
        (key(), proptest::collection::vec(item(), 1..3)).prop_map(|(k, vs)| {
            let mut a = vec!["RPUSH", &k];
            a.extend(vs.iter().map(String::as_str));
            cmd(&a)
        }),
        key().prop_map(|k| cmd(&["LPOP", &k])),
        key().prop_map(|k| cmd(&["RPOP", &k])),
        (key(), small(), small()).prop_map(|(k, a, b)| cmd(&[
            "LRANGE",
            &k,
            &a.to_string(),
            &b.to_string()
        ])),
        key().prop_map(|k| cmd(&["LRANGE", &k, "0", "-1"])),
        (key(), small()).prop_map(|(k, i)| cmd(&["LINDEX", &k, &i.to_string()])),
        (key(), any::<bool>(), item(), item()).prop_map(|(k, before, p, v)| cmd(&[
            "LINSERT",
            &k,
            if before { "BEFORE" } else { "AFTER" },
            &p,
            &v
        ])),
        (key(), -2i64..3, item()).prop_map(|(k, n, v)| cmd(&["LREM", &k, &n.to_string(), &v])),
        (key(), small(), small()).prop_map(|(k, a, b)| cmd(&[
            "LTRIM",
            &k,
            &a.to_string(),
            &b.to_string()
        ])),
        (key(), key(), side(), side()).prop_map(|(s, d, a, b)| cmd(&["LMOVE", &s, &d, &a, &b])),
    ];
    let sets = prop_oneof![
        (key(), proptest::collection::vec(item(), 1..3)).prop_map(|(k, vs)| {
            let mut a = vec!["SADD", &k];
            a.extend(vs.iter().map(String::as_str));
            cmd(&a)
        }),
        (key(), item()).prop_map(|(k, m)| cmd(&["SREM", &k, &m])),
        key().prop_map(|k| cmd_sorted(&["SMEMBERS", &k], Sort::Items)),
        key().prop_map(|k| cmd(&["SCARD", &k])),
        (key(), item()).prop_map(|(k, m)| cmd(&["SISMEMBER", &k, &m])),
        (key(), key(), item()).prop_map(|(s, d, m)| cmd(&["SMOVE", &s, &d, &m])),
        (key(), key(), key()).prop_map(|(d, a, b)| cmd(&["SINTERSTORE", &d, &a, &b])),
    ];
    let zsets = prop_oneof![
        (key(), small(), item()).prop_map(|(k, s, m)| cmd(&["ZADD", &k, &s.to_string(), &m])),
        (key(), small(), item()).prop_map(|(k, s, m)| cmd(&["ZINCRBY", &k, &s.to_string(), &m])),
        (key(), item()).prop_map(|(k, m)| cmd(&["ZREM", &k, &m])),
        (key(), item()).prop_map(|(k, m)| cmd(&["ZSCORE", &k, &m])),
        (key(), item()).prop_map(|(k, m)| cmd(&["ZRANK", &k, &m])),
        key().prop_map(|k| cmd(&["ZCARD", &k])),
        (key(), small(), small()).prop_map(|(k, a, b)| cmd(&[
            "ZRANGE",
            &k,
            &a.to_string(),
            &b.to_string(),
            "WITHSCORES"
        ])),
        (key(), small(), small()).prop_map(|(k, a, b)| cmd(&[
            "ZRANGEBYSCORE",
            &k,
            &a.to_string(),
            &b.to_string()
        ])),
    ];
    let keys = prop_oneof![
        (key(), key()).prop_map(|(a, b)| cmd(&["DEL", &a, &b])),
        (key(), key()).prop_map(|(a, b)| cmd(&["EXISTS", &a, &b])),
        key().prop_map(|k| cmd(&["TYPE", &k])),
        (key(), key()).prop_map(|(a, b)| cmd(&["RENAME", &a, &b])),
        (key(), key(), any::<bool>()).prop_map(|(a, b, r)| if r {
            cmd(&["COPY", &a, &b, "REPLACE"])
        } else {
            cmd(&["COPY", &a, &b])
        }),
        (key(), -1i64..4).prop_map(|(k, s)| cmd(&["EXPIRE", &k, &s.to_string()])),
        (key(), 0u64..2500).prop_map(|(k, ms)| cmd(&["PEXPIRE", &k, &ms.to_string()])),
        key().prop_map(|k| cmd(&["TTL", &k])),
        key().prop_map(|k| cmd(&["PTTL", &k])),
        key().prop_map(|k| cmd(&["PERSIST", &k])),
        Just(cmd_sorted(&["KEYS", "*"], Sort::Items)),
    ];
    prop_oneof![
        3 => strings,
        3 => hashes,
        4 => lists,
        3 => sets,
        3 => zsets,
        4 => keys,
        2 => proptest::sample::select(&[1u64, 250, 499, 500, 999, 1000, 1500][..]).prop_map(Op::Advance),
        1 => Just(Op::Reopen),
    ]
}

/// Redis's `string2ll`: no sign but `-`, no leading zeros, no spaces.
fn parse_ll(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    let digits = s.strip_prefix('-').unwrap_or(s);
    if s == "0" {
        return Some(0);
    }
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Redis's index normalisation for LRANGE and ZRANGE: `None` for an empty range.
fn range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut stop = if stop < 0 { len + stop } else { stop };
    if start < 0 {
        start = 0;
    }
    if start > stop || start >= len {
        return None;
    }
    if stop >= len {
        stop = len - 1;
    }
    Some((start as usize, stop as usize))
}

#[derive(Debug, Default)]
struct Model {
    now: u64,
    keys: BTreeMap<Vec<u8>, Entry>,
}

impl Model {
    /// Drops expired keys: Redis treats a key as expired once `now > deadline`.
    fn expire(&mut self) {
        let now = self.now;
        self.keys
            .retain(|_, e| e.expire_at.is_none_or(|t| now <= t));
    }

    fn get(&self, k: &[u8]) -> Option<&Val> {
        self.keys.get(k).map(|e| &e.val)
    }

    /// Removes `k` if its collection became empty.
    fn cleanup(&mut self, k: &[u8]) {
        if self.get(k).is_some_and(Val::is_empty) {
            self.keys.remove(k);
        }
    }

    /// The value at `k`, created empty (no TTL) if missing; `Err` if of another type.
    fn entry_of(&mut self, k: &[u8], empty: Val) -> Result<&mut Val, R> {
        let want = empty.type_name();
        let e = self.keys.entry(k.to_vec()).or_insert(Entry {
            val: empty,
            expire_at: None,
        });
        if e.val.type_name() == want {
            Ok(&mut e.val)
        } else {
            Err(err(WRONGTYPE))
        }
    }

    fn apply(&mut self, a: &[String]) -> R {
        self.expire();
        let b: Vec<&[u8]> = a.iter().map(|s| s.as_bytes()).collect();
        let int = |i: usize| -> i64 { a[i].parse().expect("generated integer") };
        let res = self.run(&a[0], &b, int);
        // A failed type check on a missing key must not leave the placeholder behind.
        let touched: Vec<Vec<u8>> = b[1..].iter().map(|k| k.to_vec()).collect();
        for k in touched {
            self.cleanup(&k);
        }
        res
    }

    fn run(&mut self, name: &str, b: &[&[u8]], int: impl Fn(usize) -> i64) -> R {
        let now = self.now;
        match name {
            "SET" => {
                self.keys.insert(
                    b[1].to_vec(),
                    Entry {
                        val: Val::Str(b[2].to_vec()),
                        expire_at: None,
                    },
                );
                ok()
            }
            "GET" | "GETDEL" | "STRLEN" => {
                let r = match self.get(b[1]) {
                    None => {
                        return if name == "STRLEN" { R::Int(0) } else { R::Nil };
                    }
                    Some(Val::Str(s)) if name == "STRLEN" => R::Int(s.len() as i64),
                    Some(Val::Str(s)) => bulk(s),
                    Some(_) => return err(WRONGTYPE),
                };
                if name == "GETDEL" {
                    self.keys.remove(b[1]);
                }
                r
            }
            "INCR" => match self.keys.get_mut(b[1]) {
                None => {
                    self.keys.insert(
                        b[1].to_vec(),
                        Entry {
                            val: Val::Str(b"1".to_vec()),
                            expire_at: None,
                        },
                    );
                    R::Int(1)
                }
                Some(Entry {
                    val: Val::Str(s), ..
                }) => match parse_ll(s) {
                    None => err(NOT_INT),
                    Some(n) => match n.checked_add(1) {
                        None => err(OVERFLOW),
                        Some(n) => {
                            *s = n.to_string().into_bytes();
                            R::Int(n)
                        }
                    },
                },
                Some(_) => err(WRONGTYPE),
            },
            "APPEND" => match self.entry_of(b[1], Val::Str(Vec::new())) {
                Ok(Val::Str(s)) => {
                    s.extend_from_slice(b[2]);
                    R::Int(s.len() as i64)
                }
                Ok(_) => unreachable!(),
                Err(e) => e,
            },
            "SETRANGE" => {
                let off = int(2) as usize;
                match self.get(b[1]) {
                    None if b[3].is_empty() => return R::Int(0),
                    Some(Val::Str(s)) if b[3].is_empty() => return R::Int(s.len() as i64),
                    Some(v) if v.type_name() != "string" => return err(WRONGTYPE),
                    _ => {}
                }
                let Ok(Val::Str(s)) = self.entry_of(b[1], Val::Str(Vec::new())) else {
                    unreachable!()
                };
                if s.len() < off + b[3].len() {
                    s.resize(off + b[3].len(), 0);
                }
                s[off..off + b[3].len()].copy_from_slice(b[3]);
                R::Int(s.len() as i64)
            }
            "HSET" => match self.entry_of(b[1], Val::Hash(BTreeMap::new())) {
                Ok(Val::Hash(h)) => {
                    R::Int(i64::from(h.insert(b[2].to_vec(), b[3].to_vec()).is_none()))
                }
                Ok(_) => unreachable!(),
                Err(e) => e,
            },
            "HDEL" | "HGET" | "HGETALL" | "HLEN" => {
                static EMPTY: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
                let h = match self.get(b[1]) {
                    None => &EMPTY,
                    Some(Val::Hash(h)) => h,
                    Some(_) => return err(WRONGTYPE),
                };
                match name {
                    "HGET" => h.get(b[2]).map_or(R::Nil, |v| bulk(v)),
                    "HLEN" => R::Int(h.len() as i64),
                    "HGETALL" => R::Arr(h.iter().flat_map(|(f, v)| [bulk(f), bulk(v)]).collect()),
                    _ => match self.keys.get_mut(b[1]) {
                        Some(Entry {
                            val: Val::Hash(h), ..
                        }) => R::Int(i64::from(h.remove(b[2]).is_some())),
                        _ => R::Int(0),
                    },
                }
            }
            "HINCRBY" => match self.entry_of(b[1], Val::Hash(BTreeMap::new())) {
                Ok(Val::Hash(h)) => {
                    let cur = match h.get(b[2]) {
                        None => 0,
                        Some(v) => match parse_ll(v) {
                            Some(n) => n,
                            None => return err("ERR hash value is not an integer"),
                        },
                    };
                    match cur.checked_add(int(3)) {
                        None => err(OVERFLOW),
                        Some(n) => {
                            h.insert(b[2].to_vec(), n.to_string().into_bytes());
                            R::Int(n)
                        }
                    }
                }
                Ok(_) => unreachable!(),
                Err(e) => e,
            },
            "LPUSH" | "RPUSH" => match self.entry_of(b[1], Val::List(VecDeque::new())) {
                Ok(Val::List(l)) => {
                    for v in &b[2..] {
                        if name == "LPUSH" {
                            l.push_front(v.to_vec());
                        } else {
                            l.push_back(v.to_vec());
                        }
                    }
                    R::Int(l.len() as i64)
                }
                Ok(_) => unreachable!(),
                Err(e) => e,
            },
            "LPOP" | "RPOP" | "LRANGE" | "LINDEX" | "LINSERT" | "LREM" | "LTRIM" => {
                let Some(e) = self.keys.get_mut(b[1]) else {
                    return match name {
                        "LRANGE" => R::Arr(vec![]),
                        "LINSERT" | "LREM" => R::Int(0),
                        "LTRIM" => ok(),
                        _ => R::Nil,
                    };
                };
                let Val::List(l) = &mut e.val else {
                    return err(WRONGTYPE);
                };
                match name {
                    "LPOP" => l.pop_front().map_or(R::Nil, R::Bulk),
                    "RPOP" => l.pop_back().map_or(R::Nil, R::Bulk),
                    "LRANGE" => R::Arr(
                        range(l.len(), int(2), int(3))
                            .map(|(s, e)| l.range(s..=e).map(|v| bulk(v)).collect())
                            .unwrap_or_default(),
                    ),
                    "LINDEX" => {
                        let i = int(2);
                        let i = if i < 0 { l.len() as i64 + i } else { i };
                        usize::try_from(i)
                            .ok()
                            .and_then(|i| l.get(i))
                            .map_or(R::Nil, |v| bulk(v))
                    }
                    "LINSERT" => match l.iter().position(|v| v.as_slice() == b[3]) {
                        None => R::Int(-1),
                        Some(p) => {
                            let at = if b[2] == b"BEFORE" { p } else { p + 1 };
                            l.insert(at, b[4].to_vec());
                            R::Int(l.len() as i64)
                        }
                    },
                    "LREM" => {
                        let count = int(2);
                        let limit = if count == 0 {
                            usize::MAX
                        } else {
                            count.unsigned_abs() as usize
                        };
                        let mut removed = 0;
                        let mut kept: VecDeque<Vec<u8>> = VecDeque::new();
                        let matches = |v: &Vec<u8>| v.as_slice() == b[3];
                        if count >= 0 {
                            for v in l.drain(..) {
                                if removed < limit && matches(&v) {
                                    removed += 1;
                                } else {
                                    kept.push_back(v);
                                }
                            }
                        } else {
                            for v in l.drain(..).rev() {
                                if removed < limit && matches(&v) {
                                    removed += 1;
                                } else {
                                    kept.push_front(v);
                                }
                            }
                        }
                        *l = kept;
                        R::Int(removed as i64)
                    }
                    _ => {
                        match range(l.len(), int(2), int(3)) {
                            None => l.clear(),
                            Some((s, e)) => *l = l.range(s..=e).cloned().collect(),
                        }
                        ok()
                    }
                }
            }
            "LMOVE" => {
                match self.get(b[1]) {
                    None => return R::Nil,
                    Some(Val::List(_)) => {}
                    Some(_) => return err(WRONGTYPE),
                }
                if self.get(b[2]).is_some_and(|v| v.type_name() != "list") {
                    return err(WRONGTYPE);
                }
                let Some(Entry {
                    val: Val::List(src),
                    ..
                }) = self.keys.get_mut(b[1])
                else {
                    unreachable!()
                };
                let v = if b[3] == b"LEFT" {
                    src.pop_front()
                } else {
                    src.pop_back()
                }
                .expect("non-empty");
                let Ok(Val::List(dst)) = self.entry_of(b[2], Val::List(VecDeque::new())) else {
                    unreachable!()
                };
                if b[4] == b"LEFT" {
                    dst.push_front(v.clone());
                } else {
                    dst.push_back(v.clone());
                }
                R::Bulk(v)
            }
            "SADD" => match self.entry_of(b[1], Val::Set(BTreeSet::new())) {
                Ok(Val::Set(s)) => {
                    R::Int(b[2..].iter().filter(|m| s.insert(m.to_vec())).count() as i64)
                }
                Ok(_) => unreachable!(),
                Err(e) => e,
            },
            "SREM" | "SMEMBERS" | "SCARD" | "SISMEMBER" => {
                let Some(e) = self.keys.get_mut(b[1]) else {
                    return if name == "SMEMBERS" {
                        R::Arr(vec![])
                    } else {
                        R::Int(0)
                    };
                };
                let Val::Set(s) = &mut e.val else {
                    return err(WRONGTYPE);
                };
                match name {
                    "SREM" => R::Int(i64::from(s.remove(b[2]))),
                    "SMEMBERS" => R::Arr(s.iter().map(|m| bulk(m)).collect()),
                    "SCARD" => R::Int(s.len() as i64),
                    _ => R::Int(i64::from(s.contains(b[2]))),
                }
            }
            "SMOVE" => {
                match self.get(b[1]) {
                    None => return R::Int(0),
                    Some(Val::Set(_)) => {}
                    Some(_) => return err(WRONGTYPE),
                }
                if self.get(b[2]).is_some_and(|v| v.type_name() != "set") {
                    return err(WRONGTYPE);
                }
                if b[1] == b[2] {
                    let Some(Val::Set(s)) = self.get(b[1]) else {
                        unreachable!()
                    };
                    return R::Int(i64::from(s.contains(b[3])));
                }
                let Some(Entry {
                    val: Val::Set(s), ..
                }) = self.keys.get_mut(b[1])
                else {
                    unreachable!()
                };
                if !s.remove(b[3]) {
                    return R::Int(0);
                }
                self.cleanup(b[1]);
                let Ok(Val::Set(d)) = self.entry_of(b[2], Val::Set(BTreeSet::new())) else {
                    unreachable!()
                };
                d.insert(b[3].to_vec());
                R::Int(1)
            }
            "SINTERSTORE" => {
                let mut sets = Vec::new();
                for k in &b[2..] {
                    match self.get(k) {
                        None => sets.push(BTreeSet::new()),
                        Some(Val::Set(s)) => sets.push(s.clone()),
                        Some(_) => return err(WRONGTYPE),
                    }
                }
                let inter: BTreeSet<Vec<u8>> = sets[0]
                    .iter()
                    .filter(|m| sets[1..].iter().all(|s| s.contains(*m)))
                    .cloned()
                    .collect();
                let n = inter.len() as i64;
                self.keys.remove(b[1]);
                if n > 0 {
                    self.keys.insert(
                        b[1].to_vec(),
                        Entry {
                            val: Val::Set(inter),
                            expire_at: None,
                        },
                    );
                }
                R::Int(n)
            }
            "ZADD" | "ZINCRBY" => {
                let (score, incr) = if name == "ZADD" {
                    (int(2), false)
                } else {
                    (int(2), true)
                };
                match self.entry_of(b[1], Val::ZSet(BTreeMap::new())) {
                    Ok(Val::ZSet(z)) => {
                        if incr {
                            let s = z.entry(b[3].to_vec()).or_insert(0);
                            *s += score;
                            R::Bulk(s.to_string().into_bytes())
                        } else {
                            R::Int(i64::from(z.insert(b[3].to_vec(), score).is_none()))
                        }
                    }
                    Ok(_) => unreachable!(),
                    Err(e) => e,
                }
            }
            "ZREM" | "ZSCORE" | "ZRANK" | "ZCARD" | "ZRANGE" | "ZRANGEBYSCORE" => {
                let Some(e) = self.keys.get_mut(b[1]) else {
                    return match name {
                        "ZREM" | "ZCARD" => R::Int(0),
                        "ZRANGE" | "ZRANGEBYSCORE" => R::Arr(vec![]),
                        _ => R::Nil,
                    };
                };
                let Val::ZSet(z) = &mut e.val else {
                    return err(WRONGTYPE);
                };
                let mut ordered: Vec<(i64, Vec<u8>)> =
                    z.iter().map(|(m, s)| (*s, m.clone())).collect();
                ordered.sort();
                match name {
                    "ZREM" => R::Int(i64::from(z.remove(b[2]).is_some())),
                    "ZSCORE" => z
                        .get(b[2])
                        .map_or(R::Nil, |s| R::Bulk(s.to_string().into_bytes())),
                    "ZRANK" => ordered
                        .iter()
                        .position(|(_, m)| m.as_slice() == b[2])
                        .map_or(R::Nil, |p| R::Int(p as i64)),
                    "ZCARD" => R::Int(z.len() as i64),
                    "ZRANGE" => R::Arr(
                        range(ordered.len(), int(2), int(3))
                            .map(|(s, e)| {
                                ordered[s..=e]
                                    .iter()
                                    .flat_map(|(sc, m)| {
                                        [bulk(m), R::Bulk(sc.to_string().into_bytes())]
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    _ => {
                        let (lo, hi) = (int(2), int(3));
                        R::Arr(
                            ordered
                                .iter()
                                .filter(|(s, _)| lo <= *s && *s <= hi)
                                .map(|(_, m)| bulk(m))
                                .collect(),
                        )
                    }
                }
            }
            "DEL" => {
                let mut n = 0;
                for k in &b[1..] {
                    n += i64::from(self.keys.remove(*k).is_some());
                }
                R::Int(n)
            }
            "EXISTS" => R::Int(
                b[1..]
                    .iter()
                    .filter(|k| self.keys.contains_key(**k))
                    .count() as i64,
            ),
            "TYPE" => R::Status(self.get(b[1]).map_or("none", Val::type_name).into()),
            "KEYS" => R::Arr(self.keys.keys().map(|k| bulk(k)).collect()),
            "RENAME" => match self.keys.remove(b[1]) {
                None => err("ERR no such key"),
                Some(e) => {
                    self.keys.insert(b[2].to_vec(), e);
                    ok()
                }
            },
            "COPY" => {
                if b[1] == b[2] {
                    return err("ERR source and destination objects are the same");
                }
                let Some(e) = self.keys.get(b[1]).cloned() else {
                    return R::Int(0);
                };
                if self.keys.contains_key(b[2]) && b.len() == 3 {
                    return R::Int(0);
                }
                self.keys.insert(b[2].to_vec(), e);
                R::Int(1)
            }
            "EXPIRE" | "PEXPIRE" => {
                let ms = if name == "EXPIRE" {
                    int(2) * 1000
                } else {
                    int(2)
                };
                let Some(e) = self.keys.get_mut(b[1]) else {
                    return R::Int(0);
                };
                let at = now as i64 + ms;
                if at <= now as i64 {
                    self.keys.remove(b[1]);
                } else {
                    e.expire_at = Some(at as u64);
                }
                R::Int(1)
            }
            "TTL" | "PTTL" => match self.keys.get(b[1]) {
                None => R::Int(-2),
                Some(Entry {
                    expire_at: None, ..
                }) => R::Int(-1),
                Some(Entry {
                    expire_at: Some(t), ..
                }) => {
                    let ms = (t - now) as i64;
                    R::Int(if name == "PTTL" {
                        ms
                    } else {
                        (ms + 500) / 1000
                    })
                }
            },
            "PERSIST" => match self.keys.get_mut(b[1]) {
                Some(e) if e.expire_at.is_some() => {
                    e.expire_at = None;
                    R::Int(1)
                }
                _ => R::Int(0),
            },
            other => panic!("no model for {other}"),
        }
    }
}

fn sort_reply(r: R, sort: Sort) -> R {
    match (r, sort) {
        (R::Arr(mut items), Sort::Items) => {
            items.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            R::Arr(items)
        }
        (R::Arr(items), Sort::Pairs) => {
            let mut pairs: Vec<Vec<R>> = items.chunks(2).map(<[R]>::to_vec).collect();
            pairs.sort_by(|a, b| format!("{:?}", a[0]).cmp(&format!("{:?}", b[0])));
            R::Arr(pairs.concat())
        }
        (r, _) => r,
    }
}

fn check(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let start = || Server::start_in(dir.path(), KvConfig::default(), clock.clone());
    let mut server = start();
    let mut con = server.client();
    let mut model = Model {
        now: T0,
        ..Model::default()
    };
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Advance(ms) => {
                clock.advance_ms(*ms);
                model.now += ms;
            }
            Op::Reopen => {
                drop(con);
                drop(server);
                server = start();
                con = server.client();
            }
            Op::Cmd(args, sort) => {
                let mut c = redis::cmd(&args[0]);
                for a in &args[1..] {
                    c.arg(a);
                }
                let got = match c.query::<V>(&mut con) {
                    Ok(v) => from_value(v),
                    Err(e) => R::Err(format!(
                        "{} {}",
                        e.code().unwrap_or("?"),
                        e.detail().unwrap_or_default()
                    )),
                };
                let want = sort_reply(model.apply(args), *sort);
                let got = sort_reply(got, *sort);
                prop_assert_eq!(got, want, "step {}: {:?}", i, args);
            }
        }
    }
    Ok(())
}

proptest! {
    // 48 cases keep the suite fast; PROPTEST_CASES=1000 explores more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        check(&ops)?;
    }
}
