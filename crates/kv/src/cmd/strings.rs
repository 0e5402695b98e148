//! String commands: GET, SET and its relatives, counters, APPEND, ranges; the bit commands and LCS in
//! their own files.

mod bits;
mod lcs;

use bytes::{Bytes, BytesMut};
use strata_resp::Arg;
use strata_resp::Frame;

use super::CommandSpec;
use super::{parse_i64, storage_error};
use crate::keyspace::{Entry, Kind};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "append",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: append,
    },
    CommandSpec {
        name: "bitcount",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: bits::bitcount,
    },
    CommandSpec {
        name: "bitfield",
        arity: -2,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: bits::bitfield,
    },
    CommandSpec {
        name: "bitfield_ro",
        arity: -2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: bits::bitfield,
    },
    CommandSpec {
        name: "bitop",
        arity: -4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: bits::bitop,
    },
    CommandSpec {
        name: "bitpos",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: bits::bitpos,
    },
    CommandSpec {
        name: "decr",
        arity: 2,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: decr,
    },
    CommandSpec {
        name: "decrby",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: decrby,
    },
    CommandSpec {
        name: "get",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: get,
    },
    CommandSpec {
        name: "getdel",
        arity: 2,
        flags: &["write", "fast"],
        no_auth: false,
        run: getdel,
    },
    CommandSpec {
        name: "getex",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: getex,
    },
    CommandSpec {
        name: "getbit",
        arity: 3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: bits::getbit,
    },
    CommandSpec {
        name: "getrange",
        arity: 4,
        flags: &["readonly"],
        no_auth: false,
        run: getrange,
    },
    CommandSpec {
        name: "getset",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: getset,
    },
    CommandSpec {
        name: "incr",
        arity: 2,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: incr,
    },
    CommandSpec {
        name: "incrby",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: incrby,
    },
    CommandSpec {
        name: "incrbyfloat",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: incrbyfloat,
    },
    CommandSpec {
        name: "lcs",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: lcs::lcs,
    },
    CommandSpec {
        name: "mget",
        arity: -2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: mget,
    },
    CommandSpec {
        name: "mset",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: mset,
    },
    CommandSpec {
        name: "msetnx",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: msetnx,
    },
    CommandSpec {
        name: "psetex",
        arity: 4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: psetex,
    },
    CommandSpec {
        name: "set",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: set,
    },
    CommandSpec {
        name: "setbit",
        arity: 4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: bits::setbit,
    },
    CommandSpec {
        name: "setex",
        arity: 4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: setex,
    },
    CommandSpec {
        name: "setnx",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: setnx,
    },
    CommandSpec {
        name: "setrange",
        arity: 4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: setrange,
    },
    CommandSpec {
        name: "strlen",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: strlen,
    },
    CommandSpec {
        name: "substr",
        arity: 4,
        flags: &["readonly"],
        no_auth: false,
        run: getrange,
    },
];

/// Redis's `proto-max-bulk-len`: the largest string SETRANGE and APPEND may build.
const MAX_STRING_BYTES: usize = 512 * 1024 * 1024;

pub(crate) fn wrongtype() -> Frame {
    Frame::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

fn syntax_error() -> Frame {
    Frame::error("ERR syntax error")
}

/// The string value of a key: `Ok(None)` if missing, `Err(WRONGTYPE)` if another type.
fn get_string(sh: &Shared, db: usize, key: &[u8]) -> Result<Option<Entry>, Frame> {
    match sh.keyspace.get(db, key).map_err(storage_error)? {
        Some(e) if e.kind != Kind::String => Err(wrongtype()),
        other => Ok(other),
    }
}

pub fn get(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match get_string(sh, s.db, &args[1]) {
        Ok(Some(e)) => Frame::Bulk(e.payload),
        Ok(None) => Frame::Null,
        Err(reply) => reply,
    }
}

pub fn mget(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let mut out = Vec::with_capacity(args.len() - 1);
    for key in &args[1..] {
        out.push(match sh.keyspace.get(s.db, key) {
            Ok(Some(e)) if e.kind == Kind::String => Frame::Bulk(e.payload),
            Ok(_) => Frame::Null,
            Err(e) => return storage_error(e),
        });
    }
    Frame::Array(out)
}

/// The absolute expiry (Unix ms) an `EX`/`PX`/`EXAT`/`PXAT` option with `value` asks for, as SET and
/// GETEX read them; `command` names the command in the error.
fn expiry_option(opt: &[u8], value: &[u8], now: u64, command: &str) -> Result<u64, Frame> {
    let invalid = || Frame::error(format!("ERR invalid expire time in '{command}' command"));
    let n = parse_i64(value)?;
    if n <= 0 {
        return Err(invalid());
    }
    let n = n.unsigned_abs();
    let at = match opt {
        b"EX" => n.checked_mul(1000).and_then(|ms| ms.checked_add(now)),
        b"PX" => n.checked_add(now),
        b"EXAT" => n.checked_mul(1000),
        _ => Some(n),
    };
    at.filter(|&t| t < i64::MAX as u64).ok_or_else(invalid)
}

#[derive(Default)]
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    expire_at_ms: Option<u64>,
}

/// Parses SET's options; `now` turns relative expiries into absolute ones.
fn parse_set_options(args: &[Arg], now: u64) -> Result<SetOptions, Frame> {
    let mut o = SetOptions::default();
    let mut i = 0;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        let has_expiry = o.expire_at_ms.is_some() || o.keep_ttl;
        match opt.as_slice() {
            b"NX" if !o.xx => o.nx = true,
            b"XX" if !o.nx => o.xx = true,
            b"GET" => o.get = true,
            b"KEEPTTL" if !has_expiry => o.keep_ttl = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if !has_expiry && i + 1 < args.len() => {
                o.expire_at_ms = Some(expiry_option(&opt, &args[i + 1], now, "set")?);
                i += 1;
            }
            _ => return Err(syntax_error()),
        }
        i += 1;
    }
    Ok(o)
}

pub fn set(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let now = sh.keyspace.now_ms();
    let o = match parse_set_options(&args[3..], now) {
        Ok(o) => o,
        Err(reply) => return reply,
    };
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let old = if o.get || o.nx || o.xx || o.keep_ttl {
        match sh.keyspace.get(s.db, key) {
            Ok(old) => old,
            Err(e) => return storage_error(e),
        }
    } else {
        None
    };
    if o.get && old.as_ref().is_some_and(|e| e.kind != Kind::String) {
        return wrongtype();
    }
    let old_reply = || {
        old.as_ref()
            .map_or(Frame::Null, |e| Frame::Bulk(e.payload.clone()))
    };
    if (o.nx && old.is_some()) || (o.xx && old.is_none()) {
        return if o.get { old_reply() } else { Frame::Null };
    }
    let expire_at_ms = match (o.expire_at_ms, o.keep_ttl) {
        (Some(at), _) => at,
        (None, true) => old.as_ref().map_or(0, |e| e.expire_at_ms),
        (None, false) => 0,
    };
    let entry = Entry {
        kind: Kind::String,
        expire_at_ms,
        indexed_at_ms: 0,
        payload: args[2].to_bytes(),
    };
    if let Err(e) = sh.keyspace.put(s.db, key, &entry) {
        return storage_error(e);
    }
    if o.get { old_reply() } else { Frame::ok() }
}

pub fn setnx(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    match sh.keyspace.get(s.db, &args[1]) {
        Ok(Some(_)) => Frame::Integer(0),
        Ok(None) => match sh
            .keyspace
            .put(s.db, &args[1], &Entry::string(args[2].to_bytes()))
        {
            Ok(()) => Frame::Integer(1),
            Err(e) => storage_error(e),
        },
        Err(e) => storage_error(e),
    }
}

fn set_with_ttl(s: &mut Session, sh: &Shared, args: &[Arg], unit_ms: u64, name: &str) -> Frame {
    let n = match parse_i64(&args[2]) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let now = sh.keyspace.now_ms();
    let at = u64::try_from(n)
        .ok()
        .filter(|&n| n > 0)
        .and_then(|n| n.checked_mul(unit_ms))
        .and_then(|ms| ms.checked_add(now))
        .filter(|&t| t < i64::MAX as u64);
    let Some(expire_at_ms) = at else {
        return Frame::error(format!("ERR invalid expire time in '{name}' command"));
    };
    let entry = Entry {
        kind: Kind::String,
        expire_at_ms,
        indexed_at_ms: 0,
        payload: args[3].to_bytes(),
    };
    match sh.keyspace.put(s.db, &args[1], &entry) {
        Ok(()) => Frame::ok(),
        Err(e) => storage_error(e),
    }
}

pub fn setex(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    set_with_ttl(s, sh, args, 1000, "setex")
}

pub fn psetex(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    set_with_ttl(s, sh, args, 1, "psetex")
}

pub fn getset(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let old = match get_string(sh, s.db, &args[1]) {
        Ok(old) => old,
        Err(reply) => return reply,
    };
    match sh
        .keyspace
        .put(s.db, &args[1], &Entry::string(args[2].to_bytes()))
    {
        Ok(()) => old.map_or(Frame::Null, |e| Frame::Bulk(e.payload)),
        Err(e) => storage_error(e),
    }
}

pub fn getdel(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    match get_string(sh, s.db, &args[1]) {
        Ok(Some(e)) => match sh.keyspace.delete(s.db, &args[1]) {
            Ok(_) => Frame::Bulk(e.payload),
            Err(err) => storage_error(err),
        },
        Ok(None) => Frame::Null,
        Err(reply) => reply,
    }
}

pub fn getex(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let now = sh.keyspace.now_ms();
    let mut persist = false;
    let mut expire_at = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        if opt == b"PERSIST".as_slice() && expire_at.is_none() && !persist {
            persist = true;
        } else if matches!(opt.as_slice(), b"EX" | b"PX" | b"EXAT" | b"PXAT")
            && i + 1 < args.len()
            && expire_at.is_none()
            && !persist
        {
            match expiry_option(&opt, &args[i + 1], now, "getex") {
                Ok(t) => expire_at = Some(t),
                Err(reply) => return reply,
            }
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let mut entry = match get_string(sh, s.db, &args[1]) {
        Ok(Some(e)) => e,
        Ok(None) => return Frame::Null,
        Err(reply) => return reply,
    };
    let value = entry.payload.clone();
    if persist || expire_at.is_some() {
        entry.expire_at_ms = expire_at.unwrap_or(0);
        let result = if entry.expire_at_ms != 0 && entry.expire_at_ms <= now {
            sh.keyspace.delete(s.db, &args[1]).map(|_| ())
        } else {
            sh.keyspace.put(s.db, &args[1], &entry)
        };
        if let Err(e) = result {
            return storage_error(e);
        }
    }
    Frame::Bulk(value)
}

pub fn mset(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if args.len() % 2 != 1 {
        return super::wrong_arity(if args[0].eq_ignore_ascii_case(b"msetnx") {
            "msetnx"
        } else {
            "mset"
        });
    }
    let pairs: Vec<(&[u8], Entry)> = args[1..]
        .chunks_exact(2)
        .map(|kv| (&kv[0][..], Entry::string(kv[1].to_bytes())))
        .collect();
    let _guards = sh.keyspace.lock_many(s.db, pairs.iter().map(|(k, _)| *k));
    match sh.keyspace.put_many(s.db, &pairs) {
        Ok(()) => Frame::ok(),
        Err(e) => storage_error(e),
    }
}

pub fn msetnx(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if args.len() % 2 != 1 {
        return super::wrong_arity("msetnx");
    }
    let pairs: Vec<(&[u8], Entry)> = args[1..]
        .chunks_exact(2)
        .map(|kv| (&kv[0][..], Entry::string(kv[1].to_bytes())))
        .collect();
    let _guards = sh.keyspace.lock_many(s.db, pairs.iter().map(|(k, _)| *k));
    for (key, _) in &pairs {
        match sh.keyspace.get(s.db, key) {
            Ok(Some(_)) => return Frame::Integer(0),
            Ok(None) => {}
            Err(e) => return storage_error(e),
        }
    }
    match sh.keyspace.put_many(s.db, &pairs) {
        Ok(()) => Frame::Integer(1),
        Err(e) => storage_error(e),
    }
}

pub fn append(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let old = match get_string(sh, s.db, &args[1]) {
        Ok(old) => old,
        Err(reply) => return reply,
    };
    let old_len = old.as_ref().map_or(0, |e| e.payload.len());
    if old_len + args[2].len() > MAX_STRING_BYTES {
        return Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    let len = old_len + args[2].len();
    if old.is_some() {
        // Only the appended bytes are written (a patch past the end of the string).
        return match sh
            .keyspace
            .patch_string(s.db, &args[1], [(old_len, &args[2][..])])
        {
            Ok(()) => Frame::Integer(len as i64),
            Err(e) => storage_error(e),
        };
    }
    let entry = Entry {
        kind: Kind::String,
        expire_at_ms: 0,
        indexed_at_ms: 0,
        payload: args[2].to_bytes(),
    };
    match sh.keyspace.put(s.db, &args[1], &entry) {
        Ok(()) => Frame::Integer(len as i64),
        Err(e) => storage_error(e),
    }
}

pub fn strlen(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match get_string(sh, s.db, &args[1]) {
        Ok(e) => Frame::Integer(e.map_or(0, |e| e.payload.len() as i64)),
        Err(reply) => reply,
    }
}

/// Redis's index normalisation for GETRANGE: negative from the end, clamped.
pub fn getrange(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (start, end) = match (parse_i64(&args[2]), parse_i64(&args[3])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let value = match get_string(sh, s.db, &args[1]) {
        Ok(Some(e)) => e.payload,
        Ok(None) => return Frame::Bulk(Bytes::new()),
        Err(reply) => return reply,
    };
    let len = value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Frame::Bulk(Bytes::new());
    }
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 {
        (len + end).max(0)
    } else {
        end.min(len - 1)
    };
    if start > end || len == 0 {
        return Frame::Bulk(Bytes::new());
    }
    Frame::Bulk(value.slice(start as usize..=end as usize))
}

pub fn setrange(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let offset = match parse_i64(&args[2]) {
        Ok(o) if o >= 0 => o as usize,
        Ok(_) => return Frame::error("ERR offset is out of range"),
        Err(r) => return r,
    };
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let old = match get_string(sh, s.db, &args[1]) {
        Ok(old) => old,
        Err(reply) => return reply,
    };
    let patch = &args[3];
    if patch.is_empty() {
        return Frame::Integer(old.map_or(0, |e| e.payload.len() as i64));
    }
    if offset.saturating_add(patch.len()) > MAX_STRING_BYTES {
        return Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    if let Some(e) = old {
        // Only the rewritten range is written (growing zero-fills the gap).
        let len = e.payload.len().max(offset + patch.len());
        return match sh
            .keyspace
            .patch_string(s.db, &args[1], [(offset, &patch[..])])
        {
            Ok(()) => Frame::Integer(len as i64),
            Err(e) => storage_error(e),
        };
    }
    let mut value = BytesMut::new();
    value.resize(offset + patch.len(), 0);
    value[offset..].copy_from_slice(patch);
    let len = value.len();
    let entry = Entry {
        kind: Kind::String,
        expire_at_ms: 0,
        indexed_at_ms: 0,
        payload: value.freeze(),
    };
    match sh.keyspace.put(s.db, &args[1], &entry) {
        Ok(()) => Frame::Integer(len as i64),
        Err(e) => storage_error(e),
    }
}

/// Adds `delta` to the integer stored at `key`, as INCR, DECR, INCRBY and DECRBY do.
fn incr_by(s: &mut Session, sh: &Shared, key: &Bytes, delta: i64) -> Frame {
    let _guard = sh.keyspace.lock(s.db, key);
    let old = match get_string(sh, s.db, key) {
        Ok(old) => old,
        Err(reply) => return reply,
    };
    let (current, expire_at_ms) = match &old {
        Some(e) => match parse_i64(&e.payload) {
            Ok(n) => (n, e.expire_at_ms),
            Err(reply) => return reply,
        },
        None => (0, 0),
    };
    let Some(next) = current.checked_add(delta) else {
        return Frame::error("ERR increment or decrement would overflow");
    };
    let entry = Entry {
        kind: Kind::String,
        expire_at_ms,
        indexed_at_ms: 0,
        payload: Bytes::from(next.to_string()),
    };
    match sh.keyspace.put(s.db, key, &entry) {
        Ok(()) => Frame::Integer(next),
        Err(e) => storage_error(e),
    }
}

pub fn incr(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    incr_by(s, sh, &args[1].to_bytes(), 1)
}

pub fn decr(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    incr_by(s, sh, &args[1].to_bytes(), -1)
}

pub fn incrby(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match parse_i64(&args[2]) {
        Ok(d) => incr_by(s, sh, &args[1].to_bytes(), d),
        Err(r) => r,
    }
}

pub fn decrby(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match parse_i64(&args[2]) {
        Ok(d) if d != i64::MIN => incr_by(s, sh, &args[1].to_bytes(), -d),
        Ok(_) => Frame::error("ERR decrement would overflow"),
        Err(r) => r,
    }
}

/// Parses a float argument as Redis does (no spaces, no NaN).
fn parse_f64(arg: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(arg).ok()?;
    if s.is_empty() || s.trim() != s {
        return None;
    }
    let v: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

pub fn incrbyfloat(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let Some(delta) = parse_f64(&args[2]) else {
        return Frame::error("ERR value is not a valid float");
    };
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let old = match get_string(sh, s.db, &args[1]) {
        Ok(old) => old,
        Err(reply) => return reply,
    };
    let (current, expire_at_ms) = match &old {
        Some(e) => match parse_f64(&e.payload) {
            Some(v) => (v, e.expire_at_ms),
            None => return Frame::error("ERR value is not a valid float"),
        },
        None => (0.0, 0),
    };
    let next = current + delta;
    if !next.is_finite() {
        return Frame::error("ERR increment would produce NaN or Infinity");
    }
    let text = Bytes::from(format!("{next}"));
    let entry = Entry {
        kind: Kind::String,
        expire_at_ms,
        indexed_at_ms: 0,
        payload: text.clone(),
    };
    match sh.keyspace.put(s.db, &args[1], &entry) {
        Ok(()) => Frame::Bulk(text),
        Err(e) => storage_error(e),
    }
}
