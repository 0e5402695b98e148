//! Hash commands. A hash is a metadata record (version, field count) plus one element record per field
//! (see `docs/kv-encoding.md`), so HGET is one point read and HLEN reads only the metadata.

use bytes::Bytes;
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
    Ok(load_kind(sh, db, key, kind)?.unwrap_or_else(|| {
        let header = CollectionHeader {
            version: sh.keyspace.new_version(),
            size: 0,
        };
        let entry = Entry {
            kind,
            expire_at_ms: 0,
            payload: header.to_payload(),
        };
        (entry, header)
    }))
}

pub(crate) fn field(
    sh: &Shared,
    db: usize,
    key: &[u8],
    h: CollectionHeader,
    f: &[u8],
) -> Result<Option<Bytes>, Frame> {
    sh.keyspace
        .get_element(db, key, h.version, f)
        .map_err(storage_error)
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
pub fn hset(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    let hmset = args[0].eq_ignore_ascii_case(b"hmset");
    if !args.len().is_multiple_of(2) {
        return super::wrong_arity(if hmset { "hmset" } else { "hset" });
    }
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let (entry, mut header) = load_for_write(sh, s.db, key)?;
        let mut puts: Vec<(&[u8], &[u8])> = Vec::with_capacity((args.len() - 2) / 2);
        let mut added = 0;
        for pair in args[2..].chunks_exact(2) {
            let already_set = puts.iter().any(|(f, _)| *f == &pair[0][..]);
            if !already_set && field(sh, s.db, key, header, &pair[0])?.is_none() {
                added += 1;
            }
            puts.retain(|(f, _)| *f != &pair[0][..]);
            puts.push((&pair[0], &pair[1]));
        }
        header.size += added;
        commit(sh, s.db, key, &entry, header, &puts, &[])?;
        Ok(added)
    })();
    match result {
        Ok(_) if hmset => Frame::ok(),
        Ok(added) => Frame::Integer(added as i64),
        Err(reply) => reply,
    }
}

pub fn hsetnx(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
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

pub fn hget(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(Some((_, h))) => match field(sh, s.db, &args[1], h, &args[2]) {
            Ok(v) => v.map_or(Frame::Null, Frame::Bulk),
            Err(r) => r,
        },
        Ok(None) => Frame::Null,
        Err(r) => r,
    }
}

pub fn hmget(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(Some((_, h))) => {
            let mut out = Vec::with_capacity(args.len() - 2);
            for f in &args[2..] {
                match field(sh, s.db, &args[1], h, f) {
                    Ok(v) => out.push(v.map_or(Frame::Null, Frame::Bulk)),
                    Err(r) => return r,
                }
            }
            Frame::Array(out)
        }
        Ok(None) => Frame::Array(vec![Frame::Null; args.len() - 2]),
        Err(r) => r,
    }
}

pub fn hdel(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    remove_elements(s, sh, &args[1], Kind::Hash, &args[2..])
}

/// HDEL and SREM: removes the given elements of the collection of `kind` at `key` (holding its lock
/// stripe) and replies with how many were there. Removing the last one deletes the key.
pub(crate) fn remove_elements(
    s: &mut Session,
    sh: &Shared,
    key: &[u8],
    kind: Kind,
    elements: &[Bytes],
) -> Frame {
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let Some((entry, mut header)) = load_kind(sh, s.db, key, kind)? else {
            return Ok(0);
        };
        let mut deletes: Vec<&[u8]> = Vec::new();
        for e in elements {
            if !deletes.contains(&&e[..]) && field(sh, s.db, key, header, e)?.is_some() {
                deletes.push(e);
            }
        }
        if deletes.is_empty() {
            return Ok(0);
        }
        header.size -= deletes.len() as u64;
        commit(sh, s.db, key, &entry, header, &[], &deletes)?;
        Ok(deletes.len() as i64)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

pub fn hexists(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(Some((_, h))) => match field(sh, s.db, &args[1], h, &args[2]) {
            Ok(v) => Frame::Integer(i64::from(v.is_some())),
            Err(r) => r,
        },
        Ok(None) => Frame::Integer(0),
        Err(r) => r,
    }
}

pub fn hlen(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(h) => Frame::Integer(h.map_or(0, |(_, h)| h.size as i64)),
        Err(r) => r,
    }
}

pub fn hstrlen(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
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

pub fn hkeys(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    all(s, sh, &args[1], true, false)
}

pub fn hvals(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    all(s, sh, &args[1], false, true)
}

pub fn hgetall(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    all(s, sh, &args[1], true, true)
}

pub fn hincrby(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
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

pub fn hincrbyfloat(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    let parse = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .filter(|t| !t.is_empty() && t.trim() == *t)
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    let Some(delta) = parse(&args[3]) else {
        return Frame::error("ERR value is not a valid float");
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
