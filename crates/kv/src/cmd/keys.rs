//! Generic key commands: DEL, EXISTS, TYPE, the EXPIRE family, TTL, PERSIST, KEYS, DBSIZE, FLUSHDB,
//! FLUSHALL, SCAN, RENAME, COPY, MOVE, SWAPDB, RANDOMKEY, TOUCH; DUMP/RESTORE, MIGRATE, OBJECT and SORT in
//! their own files.

mod dump;
mod migrate;
mod object;
mod sort;

pub(super) use dump::dump;
pub use dump::fuzzing;
pub(super) use object::object;

pub(super) use sort::store_position as sort_store_position;

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::Frame;

use super::CommandSpec;
use super::{parse_i64, storage_error};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "copy",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: copy,
    },
    CommandSpec {
        name: "dbsize",
        arity: 1,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: dbsize,
    },
    CommandSpec {
        name: "del",
        arity: -2,
        flags: &["write"],
        no_auth: false,
        run: del,
    },
    CommandSpec {
        name: "dump",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: dump::dump,
    },
    CommandSpec {
        name: "restore",
        arity: -4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: dump::restore,
    },
    CommandSpec {
        name: "exists",
        arity: -2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: exists,
    },
    CommandSpec {
        name: "expire",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: expire,
    },
    CommandSpec {
        name: "expireat",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: expireat,
    },
    CommandSpec {
        name: "expiretime",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: expiretime,
    },
    CommandSpec {
        name: "flushall",
        arity: -1,
        flags: &["write"],
        no_auth: false,
        run: flushall,
    },
    CommandSpec {
        name: "flushdb",
        arity: -1,
        flags: &["write"],
        no_auth: false,
        run: flushdb,
    },
    CommandSpec {
        name: "keys",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: keys,
    },
    CommandSpec {
        name: "migrate",
        arity: -6,
        flags: &["write"],
        no_auth: false,
        run: migrate::migrate,
    },
    CommandSpec {
        name: "move",
        arity: 3,
        flags: &["write", "fast"],
        no_auth: false,
        run: move_,
    },
    CommandSpec {
        name: "object",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: object::object,
    },
    CommandSpec {
        name: "persist",
        arity: 2,
        flags: &["write", "fast"],
        no_auth: false,
        run: persist,
    },
    CommandSpec {
        name: "pexpire",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: pexpire,
    },
    CommandSpec {
        name: "pexpireat",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: pexpireat,
    },
    CommandSpec {
        name: "pexpiretime",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: pexpiretime,
    },
    CommandSpec {
        name: "pttl",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: pttl,
    },
    CommandSpec {
        name: "randomkey",
        arity: 1,
        flags: &["readonly"],
        no_auth: false,
        run: randomkey,
    },
    CommandSpec {
        name: "rename",
        arity: 3,
        flags: &["write"],
        no_auth: false,
        run: rename,
    },
    CommandSpec {
        name: "renamenx",
        arity: 3,
        flags: &["write", "fast"],
        no_auth: false,
        run: rename,
    },
    CommandSpec {
        name: "scan",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: scan,
    },
    CommandSpec {
        name: "sort",
        arity: -2,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: sort::sort,
    },
    CommandSpec {
        name: "sort_ro",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: sort::sort,
    },
    CommandSpec {
        name: "swapdb",
        arity: 3,
        flags: &["write", "fast"],
        no_auth: false,
        run: swapdb,
    },
    CommandSpec {
        name: "touch",
        arity: -2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: exists,
    },
    CommandSpec {
        name: "ttl",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: ttl,
    },
    CommandSpec {
        name: "type",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: type_,
    },
    CommandSpec {
        name: "unlink",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: del,
    },
];

pub fn del(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let mut removed = 0;
    for key in &args[1..] {
        let _guard = sh.keyspace.lock(s.db, key);
        match sh.keyspace.delete(s.db, key) {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(e) => return storage_error(e),
        }
    }
    Frame::Integer(removed)
}

pub fn exists(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let mut n = 0;
    for key in &args[1..] {
        match sh.keyspace.get(s.db, key) {
            Ok(Some(_)) => n += 1,
            Ok(None) => {}
            Err(e) => return storage_error(e),
        }
    }
    Frame::Integer(n)
}

pub fn type_(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match sh.keyspace.get(s.db, &args[1]) {
        Ok(Some(e)) => Frame::simple(e.kind.name()),
        Ok(None) => Frame::simple("none"),
        Err(e) => storage_error(e),
    }
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT with NX / XX / GT / LT.
fn expire_generic(
    s: &mut Session,
    sh: &Shared,
    args: &[Arg],
    unit_ms: u64,
    absolute: bool,
    name: &str,
) -> Frame {
    let n = match parse_i64(&args[2]) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        match opt.to_ascii_uppercase().as_slice() {
            b"NX" => nx = true,
            b"XX" => xx = true,
            b"GT" => gt = true,
            b"LT" => lt = true,
            _ => {
                return Frame::error(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(opt)
                ));
            }
        }
    }
    if nx && (xx || gt || lt) {
        return Frame::error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return Frame::error("ERR GT and LT options at the same time are not compatible");
    }
    let now = sh.keyspace.now_ms() as i64;
    let invalid = || Frame::error(format!("ERR invalid expire time in '{name}' command"));
    // The new deadline in ms; may be in the past, which deletes the key.
    let Some(at) = n.checked_mul(unit_ms as i64).and_then(|ms| {
        if absolute {
            Some(ms)
        } else {
            ms.checked_add(now)
        }
    }) else {
        return invalid();
    };
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let mut entry = match sh.keyspace.get(s.db, &args[1]) {
        Ok(Some(e)) => e,
        Ok(None) => return Frame::Integer(0),
        Err(e) => return storage_error(e),
    };
    // A key without a TTL counts as an infinite TTL for GT and LT.
    let current = (entry.expire_at_ms != 0).then_some(entry.expire_at_ms as i64);
    let allowed = match current {
        None => !xx && !gt,
        Some(cur) => !nx && (!gt || at > cur) && (!lt || at < cur),
    };
    if !allowed {
        return Frame::Integer(0);
    }
    let result = if at <= now {
        sh.keyspace.delete(s.db, &args[1]).map(|_| ())
    } else {
        entry.expire_at_ms = at as u64;
        sh.keyspace.put(s.db, &args[1], &entry)
    };
    match result {
        Ok(()) => Frame::Integer(1),
        Err(e) => storage_error(e),
    }
}

pub fn expire(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    expire_generic(s, sh, args, 1000, false, "expire")
}

pub fn pexpire(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    expire_generic(s, sh, args, 1, false, "pexpire")
}

pub fn expireat(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    expire_generic(s, sh, args, 1000, true, "expireat")
}

pub fn pexpireat(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    expire_generic(s, sh, args, 1, true, "pexpireat")
}

/// TTL and PTTL: -2 missing, -1 no expiry, else the time left (TTL rounds to the nearest second).
fn ttl_generic(s: &mut Session, sh: &Shared, args: &[Arg], in_ms: bool) -> Frame {
    match sh.keyspace.get(s.db, &args[1]) {
        Ok(None) => Frame::Integer(-2),
        Ok(Some(e)) if e.expire_at_ms == 0 => Frame::Integer(-1),
        Ok(Some(e)) => {
            let left = e.expire_at_ms.saturating_sub(sh.keyspace.now_ms()) as i64;
            Frame::Integer(if in_ms { left } else { (left + 500) / 1000 })
        }
        Err(e) => storage_error(e),
    }
}

pub fn ttl(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    ttl_generic(s, sh, args, false)
}

pub fn pttl(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    ttl_generic(s, sh, args, true)
}

fn expiretime_generic(s: &mut Session, sh: &Shared, args: &[Arg], in_ms: bool) -> Frame {
    match sh.keyspace.get(s.db, &args[1]) {
        Ok(None) => Frame::Integer(-2),
        Ok(Some(e)) if e.expire_at_ms == 0 => Frame::Integer(-1),
        Ok(Some(e)) => {
            let at = e.expire_at_ms as i64;
            Frame::Integer(if in_ms { at } else { at / 1000 })
        }
        Err(e) => storage_error(e),
    }
}

pub fn expiretime(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    expiretime_generic(s, sh, args, false)
}

pub fn pexpiretime(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    expiretime_generic(s, sh, args, true)
}

pub fn persist(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    match sh.keyspace.get(s.db, &args[1]) {
        Ok(Some(mut e)) if e.expire_at_ms != 0 => {
            e.expire_at_ms = 0;
            match sh.keyspace.put(s.db, &args[1], &e) {
                Ok(()) => Frame::Integer(1),
                Err(err) => storage_error(err),
            }
        }
        Ok(_) => Frame::Integer(0),
        Err(e) => storage_error(e),
    }
}

pub fn keys(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let pattern = &args[1];
    match sh.keyspace.keys(s.db, |k| glob_match(pattern, k, false)) {
        Ok(keys) => Frame::Array(keys.into_iter().map(Frame::Bulk).collect()),
        Err(e) => storage_error(e),
    }
}

pub fn dbsize(s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    let mut n = 0i64;
    match sh.keyspace.keys(s.db, |_| {
        n += 1;
        false
    }) {
        Ok(_) => Frame::Integer(n),
        Err(e) => storage_error(e),
    }
}

/// FLUSHDB / FLUSHALL take an optional ASYNC or SYNC; both are O(1) here (one range tombstone).
fn flush_mode_ok(args: &[Arg]) -> bool {
    match args {
        [_] => true,
        [_, mode] => mode.eq_ignore_ascii_case(b"async") || mode.eq_ignore_ascii_case(b"sync"),
        _ => false,
    }
}

pub fn flushdb(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if !flush_mode_ok(args) {
        return Frame::error("ERR syntax error");
    }
    match sh.keyspace.flush_db(s.db) {
        Ok(()) => Frame::ok(),
        Err(e) => storage_error(e),
    }
}

pub fn flushall(_s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if !flush_mode_ok(args) {
        return Frame::error("ERR syntax error");
    }
    match sh.keyspace.flush_all() {
        Ok(()) => Frame::ok(),
        Err(e) => storage_error(e),
    }
}

/// Most `*` runs a pattern may have before its end: Redis's matcher recurses once per run and gives up
/// past 1000 levels (its protection against abusive patterns), so a longer pattern matches nothing there.
const MAX_GLOB_STARS: usize = 1000;

/// Redis's glob matching (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, and `\` escapes.
pub fn glob_match(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    // A run that is not last needs a byte after it, so fewer than 2 * (limit + 1) bytes cannot pass it.
    if pattern.len() > 2 * MAX_GLOB_STARS && inner_star_runs(pattern) > MAX_GLOB_STARS {
        return false;
    }
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut p, mut t) = (0usize, 0usize);
    // Backtracking point for the last `*`: (pattern index after it, text index it matched up to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let matched_one = if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    true
                }
                b'[' => {
                    let (ok, next) = match_class(pattern, p + 1, text[t], nocase);
                    p = next;
                    ok
                }
                b'\\' if p + 1 < pattern.len() => {
                    p += 2;
                    eq(pattern[p - 1], text[t])
                }
                c => {
                    p += 1;
                    eq(c, text[t])
                }
            }
        } else {
            false
        };
        if matched_one {
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// The runs of `*` in `pattern` that something follows (a class's or an escaped `*` is a literal).
fn inner_star_runs(pattern: &[u8]) -> usize {
    let mut runs = 0;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' => i += 2,
            b'[' => {
                i += 1;
                while i < pattern.len() && pattern[i] != b']' {
                    i += if pattern[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'*' => {
                while i < pattern.len() && pattern[i] == b'*' {
                    i += 1;
                }
                if i < pattern.len() {
                    runs += 1;
                }
            }
            _ => i += 1,
        }
    }
    runs
}

/// Matches one byte against the class starting at `start` (just after `[`); returns the result and the
/// pattern index after the closing `]`.
fn match_class(pattern: &[u8], start: usize, c: u8, nocase: bool) -> (bool, usize) {
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    let c = fold(c);
    let mut i = start;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= fold(pattern[i + 1]) == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (a, b) = (fold(pattern[i]), fold(pattern[i + 2]));
            matched |= (a.min(b)..=a.max(b)).contains(&c);
            i += 3;
        } else {
            matched |= fold(pattern[i]) == c;
            i += 1;
        }
    }
    // Past the `]` (an unterminated class ends the pattern, as in Redis).
    (matched != negate, (i + 1).min(pattern.len()))
}

/// Most SCAN cursors remembered at once; the oldest are forgotten first, and a forgotten cursor restarts its
/// scan from the beginning (SCAN may return a key more than once, never miss one present throughout).
const MAX_SCAN_CURSORS: usize = 65_536;

/// Outstanding SCAN cursors: an opaque number stands for (database, last key visited).
#[derive(Debug, Default)]
pub struct ScanCursors {
    positions: std::collections::HashMap<u64, (usize, Bytes)>,
    order: std::collections::VecDeque<u64>,
    next: u64,
}

impl ScanCursors {
    pub(crate) fn remember(&mut self, db: usize, last: Bytes) -> u64 {
        self.next += 1;
        // splitmix64 of a counter: unique, nonzero in practice, and not guessable as "the next number".
        let mut z = self.next.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let id = (z ^ (z >> 31)).max(1);
        if self.order.len() >= MAX_SCAN_CURSORS
            && let Some(old) = self.order.pop_front()
        {
            self.positions.remove(&old);
        }
        self.positions.insert(id, (db, last));
        self.order.push_back(id);
        id
    }

    pub(crate) fn position(&self, id: u64, db: usize) -> Option<Bytes> {
        self.positions
            .get(&id)
            .filter(|(d, _)| *d == db)
            .map(|(_, k)| k.clone())
    }
}

pub fn scan(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return Frame::error("ERR invalid cursor");
    };
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    let mut i = 2;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        let Some(value) = args.get(i + 1) else {
            return Frame::error("ERR syntax error");
        };
        match opt.as_slice() {
            b"MATCH" => pattern = Some(*value),
            b"COUNT" => match parse_i64(value) {
                Ok(n) if n >= 1 => count = usize::try_from(n).unwrap_or(usize::MAX),
                Ok(_) => return Frame::error("ERR syntax error"),
                Err(r) => return r,
            },
            b"TYPE" => kind = Some(value.to_ascii_lowercase()),
            _ => return Frame::error("ERR syntax error"),
        }
        i += 2;
    }
    let after = if cursor == 0 {
        None
    } else {
        sh.scan_cursors.lock().position(cursor, s.db)
    };
    let result = sh
        .keyspace
        .scan(s.db, after.as_deref(), count.min(100_000), |key, k| {
            pattern.as_ref().is_none_or(|p| glob_match(p, key, false))
                && kind
                    .as_ref()
                    .is_none_or(|t| t.as_slice() == k.name().as_bytes())
        });
    match result {
        Ok((keys, last)) => {
            let next = match last {
                Some(last) => sh.scan_cursors.lock().remember(s.db, last),
                None => 0,
            };
            Frame::Array(vec![
                Frame::bulk(next.to_string()),
                Frame::Array(keys.into_iter().map(Frame::Bulk).collect()),
            ])
        }
        Err(e) => storage_error(e),
    }
}

pub fn randomkey(s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    match sh.keyspace.random_key(s.db, random_seed()) {
        Ok(k) => k.map_or(Frame::Null, Frame::Bulk),
        Err(e) => storage_error(e),
    }
}

/// A seed for the small generators RANDOMKEY and friends use: a process-wide SplitMix64 sequence
/// started from the wall clock, so every call (even two in one nanosecond, on any thread) gets a
/// different, well-mixed seed.
pub(crate) fn random_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: std::sync::LazyLock<AtomicU64> = std::sync::LazyLock::new(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        AtomicU64::new(nanos ^ u64::from(std::process::id()).rotate_left(32))
    });
    let mut z = STATE
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// A database index argument as Redis's `getIntFromObjectOrReply` reads it, checked against the number
/// of databases.
fn db_index(sh: &Shared, arg: &[u8]) -> Result<usize, Frame> {
    let n = parse_i64(arg)?;
    if i32::try_from(n).is_err() {
        return Err(Frame::error("ERR value is not an integer or out of range"));
    }
    usize::try_from(n)
        .ok()
        .filter(|&i| i < sh.keyspace.databases())
        .ok_or_else(|| Frame::error("ERR DB index is out of range"))
}

fn same_object() -> Frame {
    Frame::error("ERR source and destination objects are the same")
}

/// COPY source destination [DB destination-db] [REPLACE]: the value and its TTL, in one batch.
pub fn copy(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (from, to) = (&args[1], &args[2]);
    let (mut dst, mut replace) = (s.db, false);
    let mut j = 3;
    while j < args.len() {
        if args[j].eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if args[j].eq_ignore_ascii_case(b"db") && j + 1 < args.len() {
            match db_index(sh, &args[j + 1]) {
                Ok(d) => dst = d,
                Err(r) => return r,
            }
            j += 1;
        } else {
            return Frame::error("ERR syntax error");
        }
        j += 1;
    }
    if dst == s.db && from == to {
        return same_object();
    }
    let _guards = sh.keyspace.lock_keys(&[(s.db, from), (dst, to)]);
    let entry = match sh.keyspace.get(s.db, from) {
        Ok(Some(e)) => e,
        Ok(None) => return Frame::Integer(0),
        Err(e) => return storage_error(e),
    };
    match sh.keyspace.get(dst, to) {
        Ok(Some(_)) if !replace => return Frame::Integer(0),
        Ok(_) => {}
        Err(e) => return storage_error(e),
    }
    match sh.keyspace.transfer(s.db, from, dst, to, &entry, false) {
        Ok(()) => Frame::Integer(1),
        Err(e) => storage_error(e),
    }
}

/// MOVE key db: to another database, unless the key exists there.
pub fn move_(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let dst = match db_index(sh, &args[2]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    if dst == s.db {
        return same_object();
    }
    let _guards = sh.keyspace.lock_keys(&[(s.db, key), (dst, key)]);
    let entry = match sh.keyspace.get(s.db, key) {
        Ok(Some(e)) => e,
        Ok(None) => return Frame::Integer(0),
        Err(e) => return storage_error(e),
    };
    match sh.keyspace.get(dst, key) {
        Ok(Some(_)) => return Frame::Integer(0),
        Ok(None) => {}
        Err(e) => return storage_error(e),
    }
    match sh.keyspace.transfer(s.db, key, dst, key, &entry, true) {
        Ok(()) => Frame::Integer(1),
        Err(e) => storage_error(e),
    }
}

/// SWAPDB index1 index2. The dispatcher runs it through [`swapdb_exclusive`] (inside EXEC the
/// transaction's exclusive lock is held already), so no command runs while the map changes.
pub fn swapdb(_s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let index = |arg: &[u8], msg: &str| {
        parse_i64(arg)
            .ok()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| Frame::error(msg.to_string()))
    };
    let (a, b) = match (
        index(&args[1], "ERR invalid first DB index"),
        index(&args[2], "ERR invalid second DB index"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let n = sh.keyspace.databases();
    let (Some(a), Some(b)) = (
        usize::try_from(a).ok().filter(|&a| a < n),
        usize::try_from(b).ok().filter(|&b| b < n),
    ) else {
        return Frame::error("ERR DB index is out of range");
    };
    if a != b
        && let Err(e) = sh.keyspace.swap_db(a, b)
    {
        return storage_error(e);
    }
    Frame::ok()
}

/// SWAPDB outside a transaction: takes the execution lock exclusively (as EXEC does) so the swap is atomic
/// with respect to every other command.
pub fn swapdb_exclusive(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let _exclusive = match super::exclusive_lock(s.id, sh) {
        Ok(guard) => guard,
        Err(busy) => return busy,
    };
    swapdb(s, sh, args)
}

/// RENAME and RENAMENX: the value and its TTL move to the new name in one atomic batch.
pub fn rename(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let nx = args[0].eq_ignore_ascii_case(b"renamenx");
    let (from, to) = (&args[1], &args[2]);
    let _guards = sh
        .keyspace
        .lock_many(s.db, [&from[..], &to[..]].into_iter());
    let entry = match sh.keyspace.get(s.db, from) {
        Ok(Some(e)) => e,
        Ok(None) => return Frame::error("ERR no such key"),
        Err(e) => return storage_error(e),
    };
    if from == to {
        return if nx { Frame::Integer(0) } else { Frame::ok() };
    }
    if nx {
        match sh.keyspace.get(s.db, to) {
            Ok(Some(_)) => return Frame::Integer(0),
            Ok(None) => {}
            Err(e) => return storage_error(e),
        }
    }
    match sh.keyspace.rename(s.db, from, to, &entry) {
        Ok(()) if nx => Frame::Integer(1),
        Ok(()) => Frame::ok(),
        Err(e) => storage_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_like_redis() {
        // Redis matches nothing with more than 1000 inner `*` runs; a trailing run is free.
        let key = vec![b'a'; 2000];
        for (runs, matches) in [(1000, true), (1001, false)] {
            let pattern = b"*a".repeat(runs);
            assert_eq!(glob_match(&pattern, &key, false), matches, "{runs}");
            let mut trailing = pattern.clone();
            trailing.push(b'*');
            assert_eq!(glob_match(&trailing, &key, false), matches, "{runs}*");
        }
        let literal_stars = [b"\\*".repeat(1001), b"a".to_vec()].concat();
        assert!(glob_match(
            &literal_stars,
            &[b"*".repeat(1001), b"a".to_vec()].concat(),
            false
        ));
        assert!(!glob_match(
            &b"*?".repeat(50_000),
            &vec![b'a'; 50_000],
            false
        ));
        let yes: &[(&str, &str)] = &[
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("user:*:name", "user:42:name"),
            ("a\\*b", "a*b"),
            ("*a*b*", "xxaxxbxx"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p.as_bytes(), t.as_bytes(), false), "{p} ~ {t}");
        }
        let no: &[(&str, &str)] = &[
            ("h?llo", "hllo"),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("a\\*b", "axb"),
            ("user:*:name", "user:42:age"),
            ("", "x"),
        ];
        for (p, t) in no {
            assert!(!glob_match(p.as_bytes(), t.as_bytes(), false), "{p} !~ {t}");
        }
        assert!(glob_match(b"", b"", false));
        assert!(glob_match(b"HELLO", b"hello", true));
    }
}
