//! Hash commands. A hash is a metadata record (version, field count) plus one element record per field
//! (see `docs/kv-encoding.md`), so HGET is one point read and HLEN reads only the metadata.

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::Frame;

use super::CommandSpec;
use super::strings::wrongtype;
use super::{parse_i64, storage_error};
use crate::keyspace::{CollectionHeader, Entry, Kind, KvError};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "hdel",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: hdel,
    },
    CommandSpec {
        name: "hexists",
        arity: 3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hexists,
    },
    CommandSpec {
        name: "hget",
        arity: 3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hget,
    },
    CommandSpec {
        name: "hgetall",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: hgetall,
    },
    CommandSpec {
        name: "hincrby",
        arity: 4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hincrby,
    },
    CommandSpec {
        name: "hincrbyfloat",
        arity: 4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hincrbyfloat,
    },
    CommandSpec {
        name: "hkeys",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: hkeys,
    },
    CommandSpec {
        name: "hlen",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hlen,
    },
    CommandSpec {
        name: "hmget",
        arity: -3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hmget,
    },
    CommandSpec {
        name: "hmset",
        arity: -4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hset,
    },
    CommandSpec {
        name: "hrandfield",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: hrandfield,
    },
    CommandSpec {
        name: "hscan",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: hscan,
    },
    CommandSpec {
        name: "hset",
        arity: -4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hset,
    },
    CommandSpec {
        name: "hsetnx",
        arity: 4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hsetnx,
    },
    CommandSpec {
        name: "hstrlen",
        arity: 3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hstrlen,
    },
    CommandSpec {
        name: "hvals",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: hvals,
    },
];

/// The live hash at `key`, or `Ok(None)`; a reply on WRONGTYPE or a storage error.
fn load(sh: &Shared, db: usize, key: &[u8]) -> Result<Option<(Entry, CollectionHeader)>, Frame> {
    load_kind(sh, db, key, Kind::Hash)
}

/// The live collection of `kind` at `key`, or `Ok(None)`; a reply on WRONGTYPE or a storage error.
pub(crate) fn load_kind(
    sh: &Shared,
    db: usize,
    key: &[u8],
    kind: Kind,
) -> Result<Option<(Entry, CollectionHeader)>, Frame> {
    sh.keyspace
        .get_collection(db, key, kind)
        .map_err(|e| e.map_or_else(wrongtype, storage_error))
}

/// The hash at `key` for writing: the existing one, or a new empty one with a fresh version.
fn load_for_write(sh: &Shared, db: usize, key: &[u8]) -> Result<(Entry, CollectionHeader), Frame> {
    load_kind_for_write(sh, db, key, Kind::Hash)
}

/// The collection of `kind` at `key` for writing: the existing one, or a new empty one.
pub(crate) fn load_kind_for_write(
    sh: &Shared,
    db: usize,
    key: &[u8],
    kind: Kind,
) -> Result<(Entry, CollectionHeader), Frame> {
    if let Some(found) = load_kind(sh, db, key, kind)? {
        return Ok(found);
    }
    // An expired record still stored here goes first, so its elements do not outlive it.
    sh.keyspace.purge_expired(db, key).map_err(storage_error)?;
    Ok({
        let header = CollectionHeader {
            version: sh.keyspace.new_version(),
            size: 0,
        };
        let entry = Entry {
            kind,
            expire_at_ms: 0,
            indexed_at_ms: 0,
            payload: header.to_payload(),
        };
        (entry, header)
    })
}

pub(crate) fn field(
    sh: &Shared,
    db: usize,
    key: &[u8],
    h: CollectionHeader,
    f: &[u8],
) -> Result<Option<Bytes>, Frame> {
    if h.size == 0 {
        // A collection being created: nothing stored yet.
        return Ok(None);
    }
    sh.keyspace
        .get_element(db, key, h.version, f)
        .map_err(storage_error)
}

/// Several elements of a collection, read at once (in the order of `fs`).
pub(crate) fn fields<F: AsRef<[u8]>>(
    sh: &Shared,
    db: usize,
    key: &[u8],
    h: CollectionHeader,
    fs: &[F],
) -> Result<Vec<Option<Bytes>>, Frame> {
    if h.size == 0 {
        return Ok(vec![None; fs.len()]);
    }
    sh.keyspace
        .get_elements(db, key, h.version, fs)
        .map_err(storage_error)
}

/// The distinct elements of `all`, in order of first appearance.
pub(crate) fn distinct<'a>(all: impl Iterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in all {
        // A linear check is cheaper for the usual handful of elements.
        let new = if out.len() < 16 {
            !out.contains(&e)
        } else {
            if seen.is_empty() {
                seen.extend(out.iter().copied());
            }
            seen.insert(e)
        };
        if new {
            out.push(e);
        }
    }
    out
}

pub(crate) fn commit(
    sh: &Shared,
    db: usize,
    key: &[u8],
    entry: &Entry,
    header: CollectionHeader,
    puts: &[(&[u8], &[u8])],
    deletes: &[&[u8]],
) -> Result<(), Frame> {
    sh.keyspace
        .write_collection(db, key, entry, header, puts, deletes)
        .map_err(|e: KvError| storage_error(e))
}

/// HSET and HMSET (HMSET replies OK, HSET the number of new fields).
pub fn hset(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let hmset = args[0].eq_ignore_ascii_case(b"hmset");
    if !args.len().is_multiple_of(2) {
        return super::wrong_arity(if hmset { "hmset" } else { "hset" });
    }
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let (entry, mut header) = load_for_write(sh, s.db, key)?;
        let pairs = &args[2..];
        let names = distinct(pairs.chunks_exact(2).map(|p| &p[0][..]));
        let added = fields(sh, s.db, key, header, &names)?
            .iter()
            .filter(|v| v.is_none())
            .count() as u64;
        // The last value given for a field wins.
        let puts: Vec<(&[u8], &[u8])> = if names.len() == pairs.len() / 2 {
            pairs
                .chunks_exact(2)
                .map(|p| (&p[0][..], &p[1][..]))
                .collect()
        } else {
            let last: std::collections::HashMap<&[u8], &[u8]> = pairs
                .chunks_exact(2)
                .map(|p| (&p[0][..], &p[1][..]))
                .collect();
            names.iter().map(|f| (*f, last[f])).collect()
        };
        if added == 0 && header.size > 0 {
            // Only existing fields change: the metadata record stays as it is.
            sh.keyspace
                .write_elements(s.db, key, header.version, &puts, &[])
                .map_err(storage_error)?;
        } else {
            header.size += added;
            commit(sh, s.db, key, &entry, header, &puts, &[])?;
        }
        // Redis counts every field given as a change.
        sh.keyspace.add_dirty(((args.len() - 2) / 2) as u64 - 1);
        Ok(added)
    })();
    match result {
        Ok(_) if hmset => Frame::ok(),
        Ok(added) => Frame::Integer(added as i64),
        Err(reply) => reply,
    }
}

pub fn hsetnx(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let (entry, mut header) = load_for_write(sh, s.db, key)?;
        if field(sh, s.db, key, header, &args[2])?.is_some() {
            return Ok(0);
        }
        header.size += 1;
        commit(sh, s.db, key, &entry, header, &[(&args[2], &args[3])], &[])?;
        Ok(1)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

pub fn hget(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(Some((_, h))) => match field(sh, s.db, &args[1], h, &args[2]) {
            Ok(v) => v.map_or(Frame::Null, Frame::Bulk),
            Err(r) => r,
        },
        Ok(None) => Frame::Null,
        Err(r) => r,
    }
}

pub fn hmget(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(Some((_, h))) => match fields(sh, s.db, &args[1], h, &args[2..]) {
            Ok(vs) => Frame::Array(
                vs.into_iter()
                    .map(|v| v.map_or(Frame::Null, Frame::Bulk))
                    .collect(),
            ),
            Err(r) => r,
        },
        Ok(None) => Frame::Array(vec![Frame::Null; args.len() - 2]),
        Err(r) => r,
    }
}

pub fn hdel(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    remove_elements(s, sh, &args[1], Kind::Hash, &args[2..])
}

/// HDEL and SREM: removes the given elements of the collection of `kind` at `key` (holding its lock
/// stripe) and replies with how many were there. Removing the last one deletes the key.
pub(crate) fn remove_elements(
    s: &mut Session,
    sh: &Shared,
    key: &[u8],
    kind: Kind,
    elements: &[Arg],
) -> Frame {
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let Some((entry, mut header)) = load_kind(sh, s.db, key, kind)? else {
            return Ok(0);
        };
        let candidates = distinct(elements.iter().map(|e| &e[..]));
        let found = fields(sh, s.db, key, header, &candidates)?;
        let deletes: Vec<&[u8]> = candidates
            .into_iter()
            .zip(found)
            .filter_map(|(e, v)| v.map(|_| e))
            .collect();
        if deletes.is_empty() {
            return Ok(0);
        }
        header.size -= deletes.len() as u64;
        commit(sh, s.db, key, &entry, header, &[], &deletes)?;
        sh.keyspace.add_dirty(deletes.len() as u64 - 1);
        Ok(deletes.len() as i64)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

pub fn hexists(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(Some((_, h))) => match field(sh, s.db, &args[1], h, &args[2]) {
            Ok(v) => Frame::Integer(i64::from(v.is_some())),
            Err(r) => r,
        },
        Ok(None) => Frame::Integer(0),
        Err(r) => r,
    }
}

pub fn hlen(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(h) => Frame::Integer(h.map_or(0, |(_, h)| h.size as i64)),
        Err(r) => r,
    }
}

pub fn hstrlen(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(Some((_, h))) => match field(sh, s.db, &args[1], h, &args[2]) {
            Ok(v) => Frame::Integer(v.map_or(0, |v| v.len() as i64)),
            Err(r) => r,
        },
        Ok(None) => Frame::Integer(0),
        Err(r) => r,
    }
}

/// HKEYS, HVALS and HGETALL: one prefix scan.
fn all(s: &mut Session, sh: &Shared, key: &[u8], keys: bool, values: bool) -> Frame {
    let h = match load(sh, s.db, key) {
        Ok(Some((_, h))) => h,
        Ok(None) if keys && values => return Frame::Map(Vec::new()),
        Ok(None) => return Frame::Array(Vec::new()),
        Err(r) => return r,
    };
    let elements = match sh.keyspace.elements(s.db, key, h.version) {
        Ok(e) => e,
        Err(e) => return storage_error(e),
    };
    if keys && values {
        return Frame::Map(
            elements
                .into_iter()
                .map(|(f, v)| (Frame::Bulk(f), Frame::Bulk(v)))
                .collect(),
        );
    }
    Frame::Array(
        elements
            .into_iter()
            .map(|(f, v)| Frame::Bulk(if keys { f } else { v }))
            .collect(),
    )
}

pub fn hkeys(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    all(s, sh, &args[1], true, false)
}

pub fn hvals(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    all(s, sh, &args[1], false, true)
}

pub fn hgetall(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    all(s, sh, &args[1], true, true)
}

pub fn hincrby(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let delta = match parse_i64(&args[3]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let (entry, mut header) = load_for_write(sh, s.db, key)?;
        let old = field(sh, s.db, key, header, &args[2])?;
        let current = match &old {
            Some(v) => {
                parse_i64(v).map_err(|_| Frame::error("ERR hash value is not an integer"))?
            }
            None => 0,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| Frame::error("ERR increment or decrement would overflow"))?;
        if old.is_none() {
            header.size += 1;
        }
        let text = next.to_string();
        commit(
            sh,
            s.db,
            key,
            &entry,
            header,
            &[(&args[2], text.as_bytes())],
            &[],
        )?;
        Ok(next)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

pub fn hincrbyfloat(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let parse = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .filter(|t| !t.is_empty() && t.trim() == *t)
            .and_then(|t| t.parse::<f64>().ok())
    };
    let delta = match parse(&args[3]) {
        // Like strtold, the parse accepts `inf` and `nan`, which Redis then refuses by name.
        Some(d) if !d.is_finite() => return Frame::error("ERR value is NaN or Infinity"),
        Some(d) => d,
        None => return Frame::error("ERR value is not a valid float"),
    };
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let (entry, mut header) = load_for_write(sh, s.db, key)?;
        let old = field(sh, s.db, key, header, &args[2])?;
        let current = match &old {
            Some(v) => parse(v).ok_or_else(|| Frame::error("ERR hash value is not a float"))?,
            None => 0.0,
        };
        let next = current + delta;
        if !next.is_finite() {
            return Err(Frame::error("ERR increment would produce NaN or Infinity"));
        }
        if old.is_none() {
            header.size += 1;
        }
        let text = format!("{next}");
        commit(
            sh,
            s.db,
            key,
            &entry,
            header,
            &[(&args[2], text.as_bytes())],
            &[],
        )?;
        Ok(Bytes::from(text))
    })();
    result.map_or_else(|r| r, Frame::Bulk)
}

/// A collection's small random generator (xorshift64*), seeded per call from a process-wide sequence.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new() -> Self {
        Rng(super::keys::random_seed())
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`), uniformly (Lemire's multiply-shift, bias below 2^-40 for any
    /// realistic `n`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// A count argument of HRANDFIELD / SRANDMEMBER: any `long` but `LONG_MIN`.
pub(crate) fn random_count(arg: &[u8]) -> Result<i64, Frame> {
    match parse_i64(arg)? {
        i64::MIN => Err(Frame::error(
            "ERR value is out of range, value must between -9223372036854775807 and \
             9223372036854775807",
        )),
        n => Ok(n),
    }
}

/// HRANDFIELD key [count [WITHVALUES]].
pub fn hrandfield(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let Some(count_arg) = args.get(2) else {
        let h = match load(sh, s.db, key) {
            Ok(Some((_, h))) => h,
            Ok(None) => return Frame::Null,
            Err(r) => return r,
        };
        return match sh.keyspace.elements(s.db, key, h.version) {
            Ok(all) if all.is_empty() => Frame::Null,
            Ok(mut all) => {
                let i = Rng::new().below(all.len());
                Frame::Bulk(all.swap_remove(i).0)
            }
            Err(e) => storage_error(e),
        };
    };
    let count = match random_count(count_arg) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let with_values = match args.get(3) {
        None => false,
        Some(a) if args.len() == 4 && a.eq_ignore_ascii_case(b"withvalues") => true,
        Some(_) => return Frame::error("ERR syntax error"),
    };
    if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return Frame::error("ERR value is out of range");
    }
    let h = match load(sh, s.db, key) {
        Ok(Some((_, h))) => h,
        Ok(None) => return Frame::Array(Vec::new()),
        Err(r) => return r,
    };
    if count == 0 {
        return Frame::Array(Vec::new());
    }
    let mut all = match sh.keyspace.elements(s.db, key, h.version) {
        Ok(all) => all,
        Err(e) => return storage_error(e),
    };
    if all.is_empty() {
        return Frame::Array(Vec::new());
    }
    // `$<len>\r\n<field>\r\n` at least, and as much again for the value.
    let min_bytes = if with_values { 12 } else { 6 };
    if count < 0 && super::reply_over_limit(s, sh, count.unsigned_abs(), min_bytes) {
        return Frame::Null;
    }
    let mut rng = Rng::new();
    let picked: Vec<(Bytes, Bytes)> = if count < 0 {
        (0..count.unsigned_abs())
            .map(|_| all[rng.below(all.len())].clone())
            .collect()
    } else {
        let want = usize::try_from(count).unwrap_or(usize::MAX).min(all.len());
        if want < all.len() {
            // Partial Fisher-Yates: the first `want` slots become a uniform sample.
            for i in 0..want {
                let j = i + rng.below(all.len() - i);
                all.swap(i, j);
            }
            all.truncate(want);
        }
        all
    };
    let mut out = Vec::with_capacity(picked.len() * if with_values { 2 } else { 1 });
    for (f, v) in picked {
        if with_values && s.protocol == strata_resp::ProtocolVersion::Resp3 {
            out.push(Frame::Array(vec![Frame::Bulk(f), Frame::Bulk(v)]));
        } else {
            out.push(Frame::Bulk(f));
            if with_values {
                out.push(Frame::Bulk(v));
            }
        }
    }
    Frame::Array(out)
}

/// Collections up to this size are scanned in one call with cursor 0, as Redis does for its compact
/// (listpack / intset) encodings.
const SCAN_ALL_AT_ONCE: u64 = 128;

/// HSCAN and SSCAN: `cmd key cursor [MATCH pattern] [COUNT n]` (and NOVALUES for HSCAN). Cursors are
/// opaque numbers standing for the last element returned.
pub(crate) fn scan_collection(s: &mut Session, sh: &Shared, args: &[Arg], kind: Kind) -> Frame {
    let Some(cursor) = std::str::from_utf8(&args[2])
        .ok()
        .filter(|c| !c.starts_with('+'))
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return Frame::error("ERR invalid cursor");
    };
    let key = &args[1];
    let empty = || Frame::Array(vec![Frame::bulk("0"), Frame::Array(Vec::new())]);
    let h = match load_kind(sh, s.db, key, kind) {
        Ok(Some((_, h))) => h,
        Ok(None) => return empty(),
        Err(r) => return r,
    };
    let (mut pattern, mut count, mut novalues) = (None, 10usize, false);
    let mut i = 3;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        let value = args.get(i + 1);
        match (opt.as_slice(), value) {
            (b"count", Some(v)) => match parse_i64(v) {
                Ok(n) if n >= 1 => count = usize::try_from(n).unwrap_or(usize::MAX),
                Ok(_) => return Frame::error("ERR syntax error"),
                Err(r) => return r,
            },
            (b"match", Some(v)) => pattern = (v[..] != b"*"[..]).then_some(*v),
            (b"novalues", _) if kind == Kind::Hash => {
                novalues = true;
                i += 1;
                continue;
            }
            _ => return Frame::error("ERR syntax error"),
        }
        i += 2;
    }
    // The cursor's position: `len(key) u32 ++ key ++ last element`, valid for this key only.
    let mut tag = (key.len() as u32).to_be_bytes().to_vec();
    tag.extend_from_slice(key);
    let after = if cursor == 0 {
        None
    } else {
        sh.scan_cursors
            .lock()
            .position(cursor, s.db)
            .filter(|p| p.starts_with(&tag))
            .map(|p| p.slice(tag.len()..))
    };
    let limit = if h.size <= SCAN_ALL_AT_ONCE {
        usize::MAX
    } else {
        count.min(100_000)
    };
    let batch = match sh
        .keyspace
        .elements_after(s.db, key, h.version, after.as_deref(), limit)
    {
        Ok(b) => b,
        Err(e) => return storage_error(e),
    };
    let next = match batch.last() {
        Some((last, _)) if batch.len() == limit => {
            let mut position = tag.clone();
            position.extend_from_slice(last);
            sh.scan_cursors.lock().remember(s.db, position.into())
        }
        _ => 0,
    };
    let mut out = Vec::new();
    for (element, value) in batch {
        if pattern
            .as_ref()
            .is_some_and(|p| !super::keys::glob_match(p, &element, false))
        {
            continue;
        }
        out.push(Frame::Bulk(element));
        if kind == Kind::Hash && !novalues {
            out.push(Frame::Bulk(value));
        }
    }
    Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(out)])
}

pub fn hscan(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    scan_collection(s, sh, args, Kind::Hash)
}
