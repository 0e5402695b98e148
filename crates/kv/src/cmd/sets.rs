//! Set commands. A set is a metadata record (version, size) plus one empty element record per member.

use std::collections::BTreeSet;
use strata_resp::Arg;

use bytes::Bytes;
use strata_resp::Frame;

use super::CommandSpec;
use super::hashes::{Rng, commit, distinct, field, fields, load_kind, load_kind_for_write};
use super::{parse_i64, storage_error};
use crate::keyspace::{CollectionHeader, CollectionWrite, Entry, Kind};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "sadd",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: sadd,
    },
    CommandSpec {
        name: "scard",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: scard,
    },
    CommandSpec {
        name: "sdiff",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: setop,
    },
    CommandSpec {
        name: "sdiffstore",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: setop_store,
    },
    CommandSpec {
        name: "sinter",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: setop,
    },
    CommandSpec {
        name: "sintercard",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: sintercard,
    },
    CommandSpec {
        name: "sinterstore",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: setop_store,
    },
    CommandSpec {
        name: "sismember",
        arity: 3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: sismember,
    },
    CommandSpec {
        name: "smembers",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: smembers,
    },
    CommandSpec {
        name: "smismember",
        arity: -3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: smismember,
    },
    CommandSpec {
        name: "smove",
        arity: 4,
        flags: &["write", "fast"],
        no_auth: false,
        run: smove,
    },
    CommandSpec {
        name: "spop",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: spop,
    },
    CommandSpec {
        name: "srandmember",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: srandmember,
    },
    CommandSpec {
        name: "sscan",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: sscan,
    },
    CommandSpec {
        name: "srem",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: srem,
    },
    CommandSpec {
        name: "sunion",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: setop,
    },
    CommandSpec {
        name: "sunionstore",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: setop_store,
    },
];

/// The members of the set at `key` (empty if missing); a reply on WRONGTYPE or a storage error.
fn members(sh: &Shared, db: usize, key: &[u8]) -> Result<BTreeSet<Bytes>, Frame> {
    match load_kind(sh, db, key, Kind::Set)? {
        None => Ok(BTreeSet::new()),
        Some((_, h)) => Ok(sh
            .keyspace
            .elements(db, key, h.version)
            .map_err(storage_error)?
            .into_iter()
            .map(|(m, _)| m)
            .collect()),
    }
}

pub fn sadd(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let (entry, mut header) = load_kind_for_write(sh, s.db, key, Kind::Set)?;
        let members = distinct(args[2..].iter().map(|m| &m[..]));
        let found = fields(sh, s.db, key, header, &members)?;
        let puts: Vec<(&[u8], &[u8])> = members
            .into_iter()
            .zip(found)
            .filter(|(_, v)| v.is_none())
            .map(|(m, _)| (m, &b""[..]))
            .collect();
        if puts.is_empty() {
            return Ok(0);
        }
        header.size += puts.len() as u64;
        commit(sh, s.db, key, &entry, header, &puts, &[])?;
        sh.keyspace.add_dirty(puts.len() as u64 - 1);
        Ok(puts.len() as i64)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

pub fn srem(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    super::hashes::remove_elements(s, sh, &args[1], Kind::Set, &args[2..])
}

pub fn sismember(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load_kind(sh, s.db, &args[1], Kind::Set) {
        Ok(Some((_, h))) => match field(sh, s.db, &args[1], h, &args[2]) {
            Ok(v) => Frame::Integer(i64::from(v.is_some())),
            Err(r) => r,
        },
        Ok(None) => Frame::Integer(0),
        Err(r) => r,
    }
}

pub fn smismember(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load_kind(sh, s.db, &args[1], Kind::Set) {
        Ok(Some((_, h))) => match fields(sh, s.db, &args[1], h, &args[2..]) {
            Ok(vs) => Frame::Array(
                vs.into_iter()
                    .map(|v| Frame::Integer(i64::from(v.is_some())))
                    .collect(),
            ),
            Err(r) => r,
        },
        Ok(None) => Frame::Array(vec![Frame::Integer(0); args.len() - 2]),
        Err(r) => r,
    }
}

pub fn scard(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load_kind(sh, s.db, &args[1], Kind::Set) {
        Ok(h) => Frame::Integer(h.map_or(0, |(_, h)| h.size as i64)),
        Err(r) => r,
    }
}

fn set_reply(members: impl IntoIterator<Item = Bytes>) -> Frame {
    Frame::Set(members.into_iter().map(Frame::Bulk).collect())
}

pub fn smembers(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    members(sh, s.db, &args[1]).map_or_else(|r| r, set_reply)
}

/// The result of SINTER, SUNION or SDIFF over `keys`.
fn combine(sh: &Shared, db: usize, op: &[u8], keys: &[Arg]) -> Result<BTreeSet<Bytes>, Frame> {
    let mut sets = Vec::with_capacity(keys.len());
    for k in keys {
        sets.push(members(sh, db, k)?);
    }
    let mut it = sets.into_iter();
    let first = it.next().unwrap_or_default();
    Ok(match op {
        b"sinter" | b"sinterstore" | b"sintercard" => it.fold(first, |acc, s| &acc & &s),
        b"sunion" | b"sunionstore" => it.fold(first, |acc, s| &acc | &s),
        _ => it.fold(first, |acc, s| &acc - &s),
    })
}

/// SINTER, SUNION, SDIFF.
pub fn setop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let op = args[0].to_ascii_lowercase();
    combine(sh, s.db, &op, &args[1..]).map_or_else(|r| r, set_reply)
}

/// SINTERSTORE, SUNIONSTORE, SDIFFSTORE: the result replaces the destination (deleted when empty).
pub fn setop_store(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let op = args[0].to_ascii_lowercase();
    let dest = &args[1];
    let _guards = sh
        .keyspace
        .lock_many(s.db, args[1..].iter().map(|k| &k[..]));
    let result = match combine(sh, s.db, &op, &args[2..]) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    // The old destination goes and the result arrives in one batch.
    let header = CollectionHeader {
        version: sh.keyspace.new_version(),
        size: result.len() as u64,
    };
    let entry = Entry {
        kind: Kind::Set,
        expire_at_ms: 0,
        indexed_at_ms: 0,
        payload: header.to_payload(),
    };
    let elements: Vec<(&[u8], &[u8])> = result.iter().map(|m| (&m[..], &b""[..])).collect();
    match sh
        .keyspace
        .replace_collection(s.db, dest, &entry, &elements)
    {
        Ok(()) => Frame::Integer(result.len() as i64),
        Err(e) => storage_error(e),
    }
}

pub fn sintercard(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let numkeys = match parse_i64(&args[1]) {
        Ok(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => return Frame::error("ERR numkeys should be greater than 0"),
    };
    let Some(keys) = args.get(2..2usize.saturating_add(numkeys)) else {
        return Frame::error("ERR Number of keys can't be greater than number of args");
    };
    let mut limit = 0usize;
    let rest = &args[2 + numkeys..];
    match rest {
        [] => {}
        [opt, n] if opt.eq_ignore_ascii_case(b"limit") => match parse_i64(n) {
            Ok(n) if n >= 0 => limit = usize::try_from(n).unwrap_or(usize::MAX),
            _ => return Frame::error("ERR LIMIT can't be negative"),
        },
        _ => return Frame::error("ERR syntax error"),
    }
    match combine(sh, s.db, b"sintercard", keys) {
        Ok(r) => {
            let n = if limit == 0 {
                r.len()
            } else {
                r.len().min(limit)
            };
            Frame::Integer(n as i64)
        }
        Err(reply) => reply,
    }
}

pub fn smove(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let _guards = sh
        .keyspace
        .lock_many(s.db, [&src[..], &dst[..]].into_iter());
    let result = (|| {
        // A missing source answers 0 before the destination's type is looked at, as in Redis.
        let Some((src_entry, mut src_h)) = load_kind(sh, s.db, src, Kind::Set)? else {
            return Ok(0);
        };
        let (dst_entry, mut dst_h) = load_kind_for_write(sh, s.db, dst, Kind::Set)?;
        if field(sh, s.db, src, src_h, member)?.is_none() {
            return Ok(0);
        }
        if src == dst {
            return Ok(1);
        }
        src_h.size -= 1;
        let added = field(sh, s.db, dst, dst_h, member)?.is_none();
        // Both sets change in one batch: nobody sees the member in neither or in both. A destination
        // that already holds the member is not written (nor touched for WATCH), as in Redis.
        let deletes: &[&[u8]] = &[member];
        let puts: &[(&[u8], &[u8])] = &[(member, b"")];
        dst_h.size += 1;
        let writes = [
            CollectionWrite {
                key: src,
                entry: &src_entry,
                header: src_h,
                puts: &[],
                deletes,
            },
            CollectionWrite {
                key: dst,
                entry: &dst_entry,
                header: dst_h,
                puts,
                deletes: &[],
            },
        ];
        let writes = if added { &writes[..] } else { &writes[..1] };
        sh.keyspace
            .write_collections(s.db, writes)
            .map_err(storage_error)?;
        Ok(1)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

/// SRANDMEMBER key [count]: positive count → distinct members, negative → may repeat.
pub fn srandmember(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let count = match args.get(2).map(|c| super::hashes::random_count(c)) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(r)) => return r,
    };
    if args.len() > 3 {
        return Frame::error("ERR syntax error");
    }
    let all: Vec<Bytes> = match members(sh, s.db, &args[1]) {
        Ok(m) => m.into_iter().collect(),
        Err(r) => return r,
    };
    let mut rng = Rng::new();
    match count {
        None if all.is_empty() => Frame::Null,
        None => Frame::Bulk(all[rng.below(all.len())].clone()),
        Some(n) if all.is_empty() || n == 0 => {
            let _ = n;
            Frame::Array(Vec::new())
        }
        // `$<len>\r\n<member>\r\n`: at least 6 bytes each.
        Some(n) if n < 0 && super::reply_over_limit(s, sh, n.unsigned_abs(), 6) => Frame::Null,
        Some(n) if n < 0 => Frame::Array(
            (0..n.unsigned_abs())
                .map(|_| Frame::Bulk(all[rng.below(all.len())].clone()))
                .collect(),
        ),
        Some(n) => {
            let mut pool = all;
            let want = (n as usize).min(pool.len());
            // Partial Fisher-Yates: the first `want` slots become a uniform sample.
            for i in 0..want {
                let j = i + rng.below(pool.len() - i);
                pool.swap(i, j);
            }
            pool.truncate(want);
            Frame::Array(pool.into_iter().map(Frame::Bulk).collect())
        }
    }
}

pub fn spop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let count = match args.get(2).map(|c| parse_i64(c)) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n as usize),
        Some(Ok(_)) => return Frame::error("ERR value is out of range, must be positive"),
        Some(Err(r)) => return r,
    };
    if args.len() > 3 {
        return Frame::error("ERR syntax error");
    }
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let Some((entry, mut header)) = load_kind(sh, s.db, key, Kind::Set)? else {
            return Ok(None);
        };
        let mut pool: Vec<Bytes> = sh
            .keyspace
            .elements(s.db, key, header.version)
            .map_err(storage_error)?
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        let want = count.unwrap_or(1).min(pool.len());
        let mut rng = Rng::new();
        for i in 0..want {
            let j = i + rng.below(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(want);
        let deletes: Vec<&[u8]> = pool.iter().map(|m| &m[..]).collect();
        header.size -= want as u64;
        if want > 0 {
            commit(sh, s.db, key, &entry, header, &[], &deletes)?;
        }
        Ok(Some(pool))
    })();
    match (result, count) {
        (Err(r), _) => r,
        (Ok(None), None) => Frame::Null,
        (Ok(None), Some(_)) => Frame::Set(Vec::new()),
        (Ok(Some(mut popped)), None) => popped.pop().map_or(Frame::Null, Frame::Bulk),
        (Ok(Some(popped)), Some(_)) => set_reply(popped),
    }
}

pub fn sscan(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    super::hashes::scan_collection(s, sh, args, Kind::Set)
}
