//! Generic key commands: DEL, EXISTS, TYPE, the EXPIRE family, TTL, PERSIST, KEYS, DBSIZE, FLUSHDB,
//! FLUSHALL.

use bytes::Bytes;
use strata_resp::Frame;

use super::{parse_i64, storage_error};
use crate::{Session, Shared};

pub fn del(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
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

pub fn exists(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
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

pub fn type_(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
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
    args: &[Bytes],
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

pub fn expire(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    expire_generic(s, sh, args, 1000, false, "expire")
}

pub fn pexpire(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    expire_generic(s, sh, args, 1, false, "pexpire")
}

pub fn expireat(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    expire_generic(s, sh, args, 1000, true, "expireat")
}

pub fn pexpireat(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    expire_generic(s, sh, args, 1, true, "pexpireat")
}

/// TTL and PTTL: -2 missing, -1 no expiry, else the time left (TTL rounds to the nearest second).
fn ttl_generic(s: &mut Session, sh: &Shared, args: &[Bytes], in_ms: bool) -> Frame {
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

pub fn ttl(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    ttl_generic(s, sh, args, false)
}

pub fn pttl(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    ttl_generic(s, sh, args, true)
}

fn expiretime_generic(s: &mut Session, sh: &Shared, args: &[Bytes], in_ms: bool) -> Frame {
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

pub fn expiretime(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    expiretime_generic(s, sh, args, false)
}

pub fn pexpiretime(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    expiretime_generic(s, sh, args, true)
}

pub fn persist(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
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

pub fn keys(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    let pattern = &args[1];
    match sh.keyspace.keys(s.db, |k| glob_match(pattern, k, false)) {
        Ok(keys) => Frame::Array(keys.into_iter().map(Frame::Bulk).collect()),
        Err(e) => storage_error(e),
    }
}

pub fn dbsize(s: &mut Session, sh: &Shared, _args: &[Bytes]) -> Frame {
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
fn flush_mode_ok(args: &[Bytes]) -> bool {
    match args {
        [_] => true,
        [_, mode] => mode.eq_ignore_ascii_case(b"async") || mode.eq_ignore_ascii_case(b"sync"),
        _ => false,
    }
}

pub fn flushdb(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    if !flush_mode_ok(args) {
        return Frame::error("ERR syntax error");
    }
    match sh.keyspace.flush_db(s.db) {
        Ok(()) => Frame::ok(),
        Err(e) => storage_error(e),
    }
}

pub fn flushall(_s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    if !flush_mode_ok(args) {
        return Frame::error("ERR syntax error");
    }
    match sh.keyspace.flush_all() {
        Ok(()) => Frame::ok(),
        Err(e) => storage_error(e),
    }
}

/// Redis's glob matching (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, and `\` escapes.
pub fn glob_match(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
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

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_like_redis() {
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
