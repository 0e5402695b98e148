//! List commands. A list is a metadata record (version, size, head index) plus one element record per
//! item keyed by its absolute index (u64 big-endian, starting mid-range so both ends can grow): LPUSH,
//! RPUSH, LPOP, RPOP, LINDEX, LSET and LRANGE touch only the items they return or change, LTRIM drops both
//! ends with two range tombstones, and LREM / LINSERT rewrite the list (O(n), as in Redis).

use bytes::{BufMut as _, Bytes, BytesMut};
use strata_resp::Arg;
use strata_resp::Frame;

use super::CommandSpec;
use super::strings::wrongtype;
use super::{parse_i64, storage_error};
use crate::keyspace::{CollectionHeader, Entry, Kind};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "blmove",
        arity: 6,
        flags: &["write", "denyoom", "noscript", "blocking"],
        no_auth: false,
        run: blmove,
    },
    CommandSpec {
        name: "blmpop",
        arity: -5,
        flags: &["write", "blocking"],
        no_auth: false,
        run: mpop,
    },
    CommandSpec {
        name: "blpop",
        arity: -3,
        flags: &["write", "noscript", "blocking"],
        no_auth: false,
        run: bpop,
    },
    CommandSpec {
        name: "brpop",
        arity: -3,
        flags: &["write", "noscript", "blocking"],
        no_auth: false,
        run: bpop,
    },
    CommandSpec {
        name: "brpoplpush",
        arity: 4,
        flags: &["write", "denyoom", "noscript", "blocking"],
        no_auth: false,
        run: blmove,
    },
    CommandSpec {
        name: "lindex",
        arity: 3,
        flags: &["readonly"],
        no_auth: false,
        run: lindex,
    },
    CommandSpec {
        name: "linsert",
        arity: 5,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: linsert,
    },
    CommandSpec {
        name: "llen",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: llen,
    },
    CommandSpec {
        name: "lmove",
        arity: 5,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: lmove,
    },
    CommandSpec {
        name: "lmpop",
        arity: -4,
        flags: &["write"],
        no_auth: false,
        run: mpop,
    },
    CommandSpec {
        name: "lpop",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: pop,
    },
    CommandSpec {
        name: "lpos",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: lpos,
    },
    CommandSpec {
        name: "lpush",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: push,
    },
    CommandSpec {
        name: "lpushx",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: push,
    },
    CommandSpec {
        name: "lrange",
        arity: 4,
        flags: &["readonly"],
        no_auth: false,
        run: lrange,
    },
    CommandSpec {
        name: "lrem",
        arity: 4,
        flags: &["write"],
        no_auth: false,
        run: lrem,
    },
    CommandSpec {
        name: "lset",
        arity: 4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: lset,
    },
    CommandSpec {
        name: "ltrim",
        arity: 4,
        flags: &["write"],
        no_auth: false,
        run: ltrim,
    },
    CommandSpec {
        name: "rpop",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: pop,
    },
    CommandSpec {
        name: "rpoplpush",
        arity: 3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: lmove,
    },
    CommandSpec {
        name: "rpush",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: push,
    },
    CommandSpec {
        name: "rpushx",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: push,
    },
];

/// Index of the first item of a new list: the middle of the u64 range.
const INITIAL_HEAD: u64 = 1 << 63;
/// Pops of at most this many items delete them one by one rather than with a range tombstone.
const POINT_DELETE_MAX: u64 = 16;
/// Reads of at most this many items are point reads rather than a range scan.
const POINT_READ_MAX: u64 = 4;

#[derive(Debug, Clone, Copy)]
struct ListHeader {
    version: u64,
    size: u64,
    head: u64,
}

impl ListHeader {
    fn payload(self) -> Bytes {
        let mut b = BytesMut::with_capacity(24);
        b.put_u64(self.version);
        b.put_u64(self.size);
        b.put_u64(self.head);
        b.freeze()
    }

    fn parse(p: &[u8]) -> Option<ListHeader> {
        let common = CollectionHeader::from_payload(p).ok()?;
        let head = u64::from_be_bytes(p.get(16..24)?.try_into().ok()?);
        Some(ListHeader {
            version: common.version,
            size: common.size,
            head,
        })
    }

    fn tail(self) -> u64 {
        self.head + self.size
    }
}

/// The metadata payload and the element keys of a new list of `len` items with collection `version`
/// (RESTORE builds a list in one batch with these).
pub(crate) fn layout(version: u64, len: u64) -> (Bytes, Vec<[u8; 8]>) {
    let h = ListHeader {
        version,
        size: len,
        head: INITIAL_HEAD,
    };
    (
        h.payload(),
        (0..len).map(|i| index_key(h.head + i)).collect(),
    )
}

fn index_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

struct List {
    entry: Entry,
    h: ListHeader,
}

fn load(sh: &Shared, db: usize, key: &[u8]) -> Result<Option<List>, Frame> {
    match sh.keyspace.get(db, key).map_err(storage_error)? {
        None => Ok(None),
        Some(e) if e.kind != Kind::List => Err(wrongtype()),
        Some(e) => {
            let h = ListHeader::parse(&e.payload)
                .ok_or_else(|| Frame::error("ERR corrupt list header"))?;
            Ok(Some(List { entry: e, h }))
        }
    }
}

fn new_list(sh: &Shared) -> List {
    let h = ListHeader {
        version: sh.keyspace.new_version(),
        size: 0,
        head: INITIAL_HEAD,
    };
    List {
        entry: Entry {
            kind: Kind::List,
            expire_at_ms: 0,
            indexed_at_ms: 0,
            payload: h.payload(),
        },
        h,
    }
}

fn save(
    sh: &Shared,
    db: usize,
    key: &[u8],
    list: &mut List,
    puts: &[(&[u8], &[u8])],
    deletes: &[&[u8]],
    ranges: &[(&[u8], &[u8])],
) -> Result<(), Frame> {
    list.entry.payload = list.h.payload();
    sh.keyspace
        .write_collection_raw(
            db,
            key,
            &list.entry,
            list.h.version,
            list.h.size,
            puts,
            deletes,
            ranges,
        )
        .map_err(storage_error)
}

/// Items `[from, to)` by position (0 = head), in order.
fn items(
    sh: &Shared,
    db: usize,
    key: &[u8],
    h: ListHeader,
    from: u64,
    to: u64,
) -> Result<Vec<Bytes>, Frame> {
    items_as(sh, db, key, h, from, to, |v| v)
}

/// [`items`], each passed through `map`.
fn items_as<T>(
    sh: &Shared,
    db: usize,
    key: &[u8],
    h: ListHeader,
    from: u64,
    to: u64,
    map: impl FnMut(Bytes) -> T,
) -> Result<Vec<T>, Frame> {
    if from >= to {
        return Ok(Vec::new());
    }
    // A few items are cheaper as point reads (bloom filters, no merging iterator) than as a range.
    if to - from <= POINT_READ_MAX {
        let keys: Vec<[u8; 8]> = (from..to).map(|p| index_key(h.head + p)).collect();
        return Ok(sh
            .keyspace
            .get_elements(db, key, h.version, &keys)
            .map_err(storage_error)?
            .into_iter()
            .flatten()
            .map(map)
            .collect());
    }
    let (lo, hi) = (index_key(h.head + from), index_key(h.head + to));
    sh.keyspace
        .element_values(
            db,
            key,
            h.version,
            &lo,
            &hi,
            usize::try_from(to - from).unwrap_or(usize::MAX),
            map,
        )
        .map_err(storage_error)
}

/// Redis's start/stop normalisation for LRANGE and LTRIM: returns `[from, to)` positions, possibly empty.
fn normalise(start: i64, stop: i64, len: u64) -> (u64, u64) {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    if start > stop || start >= len {
        (0, 0)
    } else {
        (start as u64, stop as u64 + 1)
    }
}

/// LPUSH, RPUSH, LPUSHX, RPUSHX.
pub fn push(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let name = args[0].to_ascii_lowercase();
    let left = name.starts_with(b"l");
    let only_existing = name.ends_with(b"x");
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let mut list = match load(sh, s.db, key) {
        Ok(Some(l)) => l,
        Ok(None) if only_existing => return Frame::Integer(0),
        Ok(None) => new_list(sh),
        Err(r) => return r,
    };
    let mut keys: Vec<[u8; 8]> = Vec::with_capacity(args.len() - 2);
    for _ in &args[2..] {
        if left {
            list.h.head -= 1;
            keys.push(index_key(list.h.head));
        } else {
            keys.push(index_key(list.h.tail()));
        }
        list.h.size += 1;
    }
    let puts: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(&args[2..])
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    match save(sh, s.db, key, &mut list, &puts, &[], &[]) {
        Ok(()) => {
            sh.keyspace.add_dirty(puts.len() as u64 - 1);
            Frame::Integer(list.h.size as i64)
        }
        Err(r) => r,
    }
}

/// Pops up to `count` items from one end; returns them in pop order.
fn pop_n(
    sh: &Shared,
    db: usize,
    key: &[u8],
    left: bool,
    count: u64,
) -> Result<Option<Vec<Bytes>>, Frame> {
    let Some(mut list) = load(sh, db, key)? else {
        return Ok(None);
    };
    let n = count.min(list.h.size);
    let (from, to) = if left {
        (0, n)
    } else {
        (list.h.size - n, list.h.size)
    };
    let mut popped = items(sh, db, key, list.h, from, to)?;
    if !left {
        popped.reverse();
    }
    let (lo, hi) = (index_key(list.h.head + from), index_key(list.h.head + to));
    // A few items go as point deletes; many as one range tombstone (cheaper to write, but each one is
    // checked by later reads until compaction, so not one per single pop).
    let points: Vec<[u8; 8]> = if n <= POINT_DELETE_MAX {
        (from..to).map(|p| index_key(list.h.head + p)).collect()
    } else {
        Vec::new()
    };
    let deletes: Vec<&[u8]> = points.iter().map(|k| &k[..]).collect();
    if left {
        list.h.head += n;
    }
    list.h.size -= n;
    if points.is_empty() {
        save(sh, db, key, &mut list, &[], &[], &[(&lo, &hi)])?;
    } else {
        save(sh, db, key, &mut list, &[], &deletes, &[])?;
    }
    Ok(Some(popped))
}

/// LPOP and RPOP, with an optional count.
pub fn pop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let left = args[0].eq_ignore_ascii_case(b"lpop");
    let count = match args.get(2).map(|c| parse_i64(c)) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n as u64),
        Some(Ok(_)) => return Frame::error("ERR value is out of range, must be positive"),
        Some(Err(r)) => return r,
    };
    if args.len() > 3 {
        return super::wrong_arity(if left { "lpop" } else { "rpop" });
    }
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    match (pop_n(sh, s.db, &args[1], left, count.unwrap_or(1)), count) {
        (Err(r), _) => r,
        (Ok(None), None) => Frame::Null,
        (Ok(None), Some(_)) => Frame::NullArray,
        (Ok(Some(mut v)), None) => v.pop().map_or(Frame::Null, Frame::Bulk),
        (Ok(Some(v)), Some(_)) => Frame::Array(v.into_iter().map(Frame::Bulk).collect()),
    }
}

pub fn llen(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(l) => Frame::Integer(l.map_or(0, |l| l.h.size as i64)),
        Err(r) => r,
    }
}

pub fn lrange(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (start, stop) = match (parse_i64(&args[2]), parse_i64(&args[3])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let list = match load(sh, s.db, &args[1]) {
        Ok(Some(l)) => l,
        Ok(None) => return Frame::Array(Vec::new()),
        Err(r) => return r,
    };
    let (from, to) = normalise(start, stop, list.h.size);
    match items_as(sh, s.db, &args[1], list.h, from, to, Frame::Bulk) {
        Ok(v) => Frame::Array(v),
        Err(r) => r,
    }
}

/// Position of a possibly negative index, if inside the list.
fn position(index: i64, size: u64) -> Option<u64> {
    let i = if index < 0 {
        size as i64 + index
    } else {
        index
    };
    (0..size as i64).contains(&i).then_some(i as u64)
}

pub fn lindex(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let index = match parse_i64(&args[2]) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let list = match load(sh, s.db, &args[1]) {
        Ok(Some(l)) => l,
        Ok(None) => return Frame::Null,
        Err(r) => return r,
    };
    let Some(p) = position(index, list.h.size) else {
        return Frame::Null;
    };
    match sh
        .keyspace
        .get_element(s.db, &args[1], list.h.version, &index_key(list.h.head + p))
    {
        Ok(v) => v.map_or(Frame::Null, Frame::Bulk),
        Err(e) => storage_error(e),
    }
}

pub fn lset(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let index = match parse_i64(&args[2]) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let mut list = match load(sh, s.db, &args[1]) {
        Ok(Some(l)) => l,
        Ok(None) => return Frame::error("ERR no such key"),
        Err(r) => return r,
    };
    let Some(p) = position(index, list.h.size) else {
        return Frame::error("ERR index out of range");
    };
    let k = index_key(list.h.head + p);
    match save(sh, s.db, &args[1], &mut list, &[(&k, &args[3])], &[], &[]) {
        Ok(()) => Frame::ok(),
        Err(r) => r,
    }
}

pub fn ltrim(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (start, stop) = match (parse_i64(&args[2]), parse_i64(&args[3])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let mut list = match load(sh, s.db, &args[1]) {
        Ok(Some(l)) => l,
        Ok(None) => return Frame::ok(),
        Err(r) => return r,
    };
    let (from, to) = normalise(start, stop, list.h.size);
    let h = list.h;
    let (a0, a1) = (index_key(h.head), index_key(h.head + from));
    let (b0, b1) = (index_key(h.head + to.max(from)), index_key(h.tail()));
    list.h.head += from;
    list.h.size = to.saturating_sub(from);
    match save(
        sh,
        s.db,
        &args[1],
        &mut list,
        &[],
        &[],
        &[(&a0, &a1), (&b0, &b1)],
    ) {
        Ok(()) => Frame::ok(),
        Err(r) => r,
    }
}

/// Replaces the whole list with `values` (LREM, LINSERT): a fresh index range under the same version.
fn rewrite(
    sh: &Shared,
    db: usize,
    key: &[u8],
    list: &mut List,
    values: &[Bytes],
) -> Result<(), Frame> {
    let old = list.h;
    let (old_lo, old_hi) = (index_key(old.head), index_key(old.tail()));
    list.h.head = INITIAL_HEAD;
    list.h.size = values.len() as u64;
    let keys: Vec<[u8; 8]> = (0..values.len() as u64)
        .map(|i| index_key(INITIAL_HEAD + i))
        .collect();
    let puts: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(values)
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    save(sh, db, key, list, &puts, &[], &[(&old_lo, &old_hi)])
}

pub fn lrem(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let count = match parse_i64(&args[2]) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let result = (|| {
        let Some(mut list) = load(sh, s.db, &args[1])? else {
            return Ok(0);
        };
        let mut values = items(sh, s.db, &args[1], list.h, 0, list.h.size)?;
        let target = &args[3];
        let limit = if count == 0 {
            usize::MAX
        } else {
            count.unsigned_abs() as usize
        };
        let mut removed = 0;
        if count >= 0 {
            values.retain(|v| {
                if removed < limit && v == target {
                    removed += 1;
                    false
                } else {
                    true
                }
            });
        } else {
            values.reverse();
            values.retain(|v| {
                if removed < limit && v == target {
                    removed += 1;
                    false
                } else {
                    true
                }
            });
            values.reverse();
        }
        if removed > 0 {
            rewrite(sh, s.db, &args[1], &mut list, &values)?;
        }
        Ok(removed as i64)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

pub fn linsert(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let before = if args[2].eq_ignore_ascii_case(b"before") {
        true
    } else if args[2].eq_ignore_ascii_case(b"after") {
        false
    } else {
        return Frame::error("ERR syntax error");
    };
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let result = (|| {
        let Some(mut list) = load(sh, s.db, &args[1])? else {
            return Ok(0);
        };
        let mut values = items(sh, s.db, &args[1], list.h, 0, list.h.size)?;
        let Some(at) = values.iter().position(|v| *v == args[3]) else {
            return Ok(-1);
        };
        values.insert(if before { at } else { at + 1 }, args[4].to_bytes());
        rewrite(sh, s.db, &args[1], &mut list, &values)?;
        Ok(values.len() as i64)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

/// `LEFT` or `RIGHT`.
fn side(b: &[u8]) -> Option<bool> {
    if b.eq_ignore_ascii_case(b"left") {
        Some(true)
    } else if b.eq_ignore_ascii_case(b"right") {
        Some(false)
    } else {
        None
    }
}

/// Whether `key` holds a non-empty list. A key of another type is an error, except while a blocked
/// command retries (`skip_wrong_type`): Redis keeps such a client waiting.
fn has_items(sh: &Shared, db: usize, key: &[u8], skip_wrong_type: bool) -> Result<bool, Frame> {
    match load(sh, db, key) {
        Ok(list) => Ok(list.is_some_and(|l| l.h.size > 0)),
        Err(_) if skip_wrong_type => Ok(false),
        Err(e) => Err(e),
    }
}

/// Pops one item from `src` and pushes it onto `dst`; `None` when `src` is empty.
fn move_one(
    sh: &Shared,
    db: usize,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
    skip_wrong_type: bool,
) -> Result<Option<Bytes>, Frame> {
    let _guards = sh.keyspace.lock_many(db, [src, dst].into_iter());
    if !has_items(sh, db, src, skip_wrong_type)? {
        return Ok(None);
    }
    // A wrong-typed destination fails before anything is popped.
    load(sh, db, dst)?;
    let Some(item) = pop_n(sh, db, src, from_left, 1)?.and_then(|mut v| v.pop()) else {
        return Ok(None);
    };
    let mut list = load(sh, db, dst)?.unwrap_or_else(|| new_list(sh));
    let k = if to_left {
        list.h.head -= 1;
        index_key(list.h.head)
    } else {
        index_key(list.h.tail())
    };
    list.h.size += 1;
    save(sh, db, dst, &mut list, &[(&k, &item)], &[], &[])?;
    Ok(Some(item))
}

/// LMOVE source destination LEFT|RIGHT LEFT|RIGHT, and RPOPLPUSH (RIGHT LEFT).
pub fn lmove(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (from_left, to_left) = if args[0].eq_ignore_ascii_case(b"rpoplpush") {
        (false, true)
    } else {
        match (side(&args[3]), side(&args[4])) {
            (Some(a), Some(b)) => (a, b),
            _ => return Frame::error("ERR syntax error"),
        }
    };
    match move_one(sh, s.db, &args[1], &args[2], from_left, to_left, false) {
        Ok(Some(item)) => Frame::Bulk(item),
        Ok(None) => Frame::Null,
        Err(r) => r,
    }
}

/// BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout, and BRPOPLPUSH source destination timeout.
pub fn blmove(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (from_left, to_left) = if args[0].eq_ignore_ascii_case(b"brpoplpush") {
        (false, true)
    } else {
        match (side(&args[3]), side(&args[4])) {
            (Some(a), Some(b)) => (a, b),
            _ => return Frame::error("ERR syntax error"),
        }
    };
    let deadline = match crate::blocking::parse_timeout(&args[args.len() - 1]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let skip = s.retrying_block;
    match move_one(sh, s.db, &args[1], &args[2], from_left, to_left, skip) {
        Ok(Some(item)) => Frame::Bulk(item),
        Ok(None) if s.in_exec => Frame::Null,
        Ok(None) => s.block_on(crate::blocking::BlockRequest {
            keys: vec![args[1].to_bytes()],
            deadline,
            timeout_reply: Frame::NullArray,
        }),
        Err(r) => r,
    }
}

/// BLPOP key [key ...] timeout, BRPOP key [key ...] timeout: the first non-empty list in key order.
pub fn bpop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let left = args[0].eq_ignore_ascii_case(b"blpop");
    let deadline = match crate::blocking::parse_timeout(&args[args.len() - 1]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let keys = &args[1..args.len() - 1];
    // All the keys' stripes at once: the pop comes from the first non-empty list at one instant.
    let guards = sh.keyspace.lock_many(s.db, keys.iter().map(|k| &k[..]));
    for key in keys {
        match has_items(sh, s.db, key, s.retrying_block) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(r) => return r,
        }
        match pop_n(sh, s.db, key, left, 1) {
            Ok(Some(mut v)) => {
                if let Some(item) = v.pop() {
                    return Frame::Array(vec![Frame::Bulk(key.to_bytes()), Frame::Bulk(item)]);
                }
            }
            Ok(None) => {}
            Err(r) => return r,
        }
    }
    drop(guards);
    s.block_on(crate::blocking::BlockRequest {
        keys: strata_resp::to_owned_args(keys),
        deadline,
        timeout_reply: Frame::NullArray,
    })
}

/// LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count], and BLMPOP timeout numkeys ....
pub fn mpop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let blocking = args[0].eq_ignore_ascii_case(b"blmpop");
    let numkeys_at = if blocking { 2 } else { 1 };
    let numkeys = match parse_i64(&args[numkeys_at]) {
        Ok(n) if n > 0 => n as usize,
        _ => return Frame::error("ERR numkeys should be greater than 0"),
    };
    let Some(where_at) = numkeys_at
        .checked_add(numkeys)
        .and_then(|n| n.checked_add(1))
        .filter(|&w| w < args.len())
    else {
        return Frame::error("ERR syntax error");
    };
    let Some(left) = side(&args[where_at]) else {
        return Frame::error("ERR syntax error");
    };
    let mut count = None;
    let mut i = where_at + 1;
    while i < args.len() {
        if count.is_none() && args[i].eq_ignore_ascii_case(b"count") && i + 1 < args.len() {
            match parse_i64(&args[i + 1]) {
                Ok(n) if n > 0 => count = Some(n as u64),
                _ => return Frame::error("ERR count should be greater than 0"),
            }
            i += 2;
        } else {
            return Frame::error("ERR syntax error");
        }
    }
    let deadline = if blocking {
        match crate::blocking::parse_timeout(&args[1]) {
            Ok(d) => d,
            Err(r) => return r,
        }
    } else {
        None
    };
    let keys = &args[numkeys_at + 1..where_at];
    // All the keys' stripes at once: the pop comes from the first non-empty list at one instant.
    let guards = sh.keyspace.lock_many(s.db, keys.iter().map(|k| &k[..]));
    for key in keys {
        match has_items(sh, s.db, key, s.retrying_block) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(r) => return r,
        }
        match pop_n(sh, s.db, key, left, count.unwrap_or(1)) {
            Ok(Some(v)) if !v.is_empty() => {
                return Frame::Array(vec![
                    Frame::Bulk(key.to_bytes()),
                    Frame::Array(v.into_iter().map(Frame::Bulk).collect()),
                ]);
            }
            Ok(_) => {}
            Err(r) => return r,
        }
    }
    drop(guards);
    if !blocking {
        return Frame::NullArray;
    }
    s.block_on(crate::blocking::BlockRequest {
        keys: strata_resp::to_owned_args(keys),
        deadline,
        timeout_reply: Frame::NullArray,
    })
}

/// LPOS key element [RANK rank] [COUNT n] [MAXLEN len].
pub fn lpos(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 3;
    while i < args.len() {
        let Some(v) = args.get(i + 1) else {
            return Frame::error("ERR syntax error");
        };
        let n = match parse_i64(v) {
            Ok(n) => n,
            Err(r) => return r,
        };
        match args[i].to_ascii_uppercase().as_slice() {
            b"RANK" if n == 0 || n == i64::MIN => {
                return Frame::error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or \
                     use negative to start from the end of the list",
                );
            }
            b"RANK" => rank = n,
            b"COUNT" if n < 0 => return Frame::error("ERR COUNT can't be negative"),
            b"COUNT" => count = Some(n as usize),
            b"MAXLEN" if n < 0 => return Frame::error("ERR MAXLEN can't be negative"),
            b"MAXLEN" => maxlen = n as usize,
            _ => return Frame::error("ERR syntax error"),
        }
        i += 2;
    }
    let list = match load(sh, s.db, &args[1]) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return if count.is_some() {
                Frame::Array(Vec::new())
            } else {
                Frame::Null
            };
        }
        Err(r) => return r,
    };
    let values = match items(sh, s.db, &args[1], list.h, 0, list.h.size) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let want = match count {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => 1,
    };
    let mut skip = rank.unsigned_abs() - 1;
    let mut found = Vec::new();
    let positions: Box<dyn Iterator<Item = usize>> = if rank > 0 {
        Box::new(0..values.len())
    } else {
        Box::new((0..values.len()).rev())
    };
    for (scanned, p) in positions.enumerate() {
        if maxlen != 0 && scanned >= maxlen {
            break;
        }
        if values[p] == args[2] {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(p as i64);
            if found.len() >= want {
                break;
            }
        }
    }
    match count {
        Some(_) => Frame::Array(found.into_iter().map(Frame::Integer).collect()),
        None => found.first().map_or(Frame::Null, |&p| Frame::Integer(p)),
    }
}
