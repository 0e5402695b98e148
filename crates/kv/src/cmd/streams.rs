//! Stream commands (Redis 7.0 semantics): XADD, XRANGE, XREVRANGE, XLEN, XREAD, XDEL, XTRIM, XSETID here;
//! consumer groups (XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM) in `groups`; XINFO in `info`.
//!
//! A stream is a collection (`keyspace/stream.rs`): a metadata record holding the stream's header
//! ([`Meta`]) and sub-records under its versioned prefix, one family per first byte:
//!
//! ```text
//! e ++ id                                   entry: node u64 | nfields u32 | (len u32 | bytes)*
//! g ++ group                                group: last_id | entries_read i64 | pel_count | consumers
//! c ++ len(group) u32 ++ group ++ consumer  consumer: seen_time u64 | pel_count u64 | active_time i64
//! p ++ len(group) u32 ++ group ++ id        pending entry: delivery_time | delivery_count | consumer
//! q ++ len(group) u32 ++ group ++ len(consumer) u32 ++ consumer ++ id   a consumer's pending entry (empty)
//! ```
//!
//! IDs are 16 bytes (ms, seq big-endian), so byte order is ID order. Redis groups entries in radix-tree
//! nodes of `stream-node-max-entries`; approximate trimming (`~`) removes whole nodes only, so each entry
//! records the node it was added to and the header tracks the tail node, which reproduces Redis's
//! approximate trimming exactly (node size in bytes is estimated).

mod group_records;
mod groups;
pub(crate) mod image;
mod info;
mod pel_counts;
mod pending_owners;
mod read_ahead;

pub(crate) use group_records::GroupRecords;
pub(crate) use pel_counts::PelCounts;
use pel_counts::{PelChange, Tally};
pub(crate) use pending_owners::PendingOwners;
pub(crate) use read_ahead::ReadAhead;
use strata_resp::Arg;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut as _, Bytes, BytesMut};
use strata_resp::Frame;

use super::strings::wrongtype;
use super::{CommandSpec, storage_error};
use crate::keyspace::stream::StreamWrite;
use crate::keyspace::{Entry, Kind};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "xack",
        arity: -4,
        flags: &["write", "fast"],
        no_auth: false,
        run: groups::xack,
    },
    CommandSpec {
        name: "xadd",
        arity: -5,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: xadd,
    },
    CommandSpec {
        name: "xautoclaim",
        arity: -6,
        flags: &["write", "fast"],
        no_auth: false,
        run: groups::xautoclaim,
    },
    CommandSpec {
        name: "xclaim",
        arity: -6,
        flags: &["write", "fast"],
        no_auth: false,
        run: groups::xclaim,
    },
    CommandSpec {
        name: "xdel",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: xdel,
    },
    CommandSpec {
        name: "xgroup",
        arity: -2,
        flags: &["write"],
        no_auth: false,
        run: groups::xgroup,
    },
    CommandSpec {
        name: "xinfo",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: info::xinfo,
    },
    CommandSpec {
        name: "xlen",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: xlen,
    },
    CommandSpec {
        name: "xpending",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: groups::xpending,
    },
    CommandSpec {
        name: "xrange",
        arity: -4,
        flags: &["readonly"],
        no_auth: false,
        run: xrange,
    },
    CommandSpec {
        name: "xread",
        arity: -4,
        flags: &["readonly", "blocking"],
        no_auth: false,
        run: xread,
    },
    CommandSpec {
        name: "xreadgroup",
        arity: -7,
        flags: &["write", "blocking"],
        no_auth: false,
        run: xread,
    },
    CommandSpec {
        name: "xrevrange",
        arity: -4,
        flags: &["readonly"],
        no_auth: false,
        run: xrange,
    },
    CommandSpec {
        name: "xsetid",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: xsetid,
    },
    CommandSpec {
        name: "xtrim",
        arity: -4,
        flags: &["write"],
        no_auth: false,
        run: xtrim,
    },
];

/// A stream entry ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub(crate) struct Id {
    ms: u64,
    seq: u64,
}

impl Id {
    const MIN: Id = Id { ms: 0, seq: 0 };
    const MAX: Id = Id {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    fn is_zero(self) -> bool {
        self == Id::MIN
    }

    /// The next ID, or `None` after the last one.
    fn incr(self) -> Option<Id> {
        if self.seq < u64::MAX {
            Some(Id {
                ms: self.ms,
                seq: self.seq + 1,
            })
        } else if self.ms < u64::MAX {
            Some(Id {
                ms: self.ms + 1,
                seq: 0,
            })
        } else {
            None
        }
    }

    /// The previous ID, or `None` before the first one.
    fn decr(self) -> Option<Id> {
        if self.seq > 0 {
            Some(Id {
                ms: self.ms,
                seq: self.seq - 1,
            })
        } else if self.ms > 0 {
            Some(Id {
                ms: self.ms - 1,
                seq: u64::MAX,
            })
        } else {
            None
        }
    }

    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.ms.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Id> {
        Some(Id {
            ms: u64::from_be_bytes(b.get(..8)?.try_into().ok()?),
            seq: u64::from_be_bytes(b.get(8..16)?.try_into().ok()?),
        })
    }

    /// `ms-seq` as a bulk string (every XADD replies with one: written digit by digit, not through `fmt`).
    fn frame(self) -> Frame {
        let mut b = BytesMut::with_capacity(41);
        strata_resp::put_uint(&mut b, self.ms);
        b.put_u8(b'-');
        strata_resp::put_uint(&mut b, self.seq);
        Frame::Bulk(b.freeze())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Redis's `string2ull`: a non-negative decimal, leading zeros and a `+` allowed.
fn parse_u64(s: &[u8]) -> Option<u64> {
    let digits = s.strip_prefix(b"+").unwrap_or(s);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn invalid_id() -> Frame {
    Frame::error("ERR Invalid stream ID specified as stream command argument")
}

/// Parses `ms-seq` (or `ms`, the sequence then `missing_seq`); `-` and `+` unless `strict`.
fn parse_id(arg: &[u8], missing_seq: u64, strict: bool) -> Result<Id, Frame> {
    match arg {
        b"-" if !strict => return Ok(Id::MIN),
        b"+" if !strict => return Ok(Id::MAX),
        _ => {}
    }
    if arg.len() > 127 {
        return Err(invalid_id());
    }
    let (ms, seq) = match arg.iter().position(|&b| b == b'-') {
        Some(i) => (&arg[..i], Some(&arg[i + 1..])),
        None => (arg, None),
    };
    let ms = parse_u64(ms).ok_or_else(invalid_id)?;
    let seq = match seq {
        Some(s) => parse_u64(s).ok_or_else(invalid_id)?,
        None => missing_seq,
    };
    Ok(Id { ms, seq })
}

/// An interval bound: `(id` is exclusive.
fn parse_bound(arg: &[u8], missing_seq: u64) -> Result<(Id, bool), Frame> {
    if arg.len() > 1 && arg[0] == b'(' {
        Ok((parse_id(&arg[1..], missing_seq, true)?, true))
    } else {
        Ok((parse_id(arg, missing_seq, false)?, false))
    }
}

/// A range's inclusive start and end from its arguments, as XRANGE reads them.
fn parse_range(start: &[u8], end: &[u8]) -> Result<(Id, Id), Frame> {
    let (mut s, sx) = parse_bound(start, 0)?;
    if sx {
        s = s
            .incr()
            .ok_or_else(|| Frame::error("ERR invalid start ID for the interval"))?;
    }
    let (mut e, ex) = parse_bound(end, u64::MAX)?;
    if ex {
        e = e
            .decr()
            .ok_or_else(|| Frame::error("ERR invalid end ID for the interval"))?;
    }
    Ok((s, e))
}

/// Whether `n` arguments (the command name included) satisfy Redis's `arity`.
fn arity_ok(arity: i32, n: usize) -> bool {
    match usize::try_from(arity) {
        Ok(exact) => n == exact,
        Err(_) => n >= arity.unsigned_abs() as usize,
    }
}

/// An integer argument (Redis's `getLongLongFromObjectOrReply`), with Redis's message or `msg`.
fn int_arg(arg: &[u8], msg: Option<&str>) -> Result<i64, Frame> {
    super::string_to_i64(arg).ok_or_else(|| {
        Frame::error(format!(
            "ERR {}",
            msg.unwrap_or("value is not an integer or out of range")
        ))
    })
}

// ---------------------------------------------------------------------------------------------------
// Records.

const ENTRY: u8 = b'e';
const GROUP: u8 = b'g';
const CONSUMER: u8 = b'c';
const PENDING: u8 = b'p';
const CONSUMER_PENDING: u8 = b'q';
const NODE: u8 = b'n';

fn entry_key(id: Id) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(ENTRY);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The summary record of closed node `node`: its live entries when it closed and the first entry after
/// it (see [`NodeSummary`]).
fn node_key(node: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(NODE);
    k.extend_from_slice(&node.to_be_bytes());
    k
}

/// What a node's summary record tells: how many entries it was given and how many of them are live,
/// and the first entry after it. Written when the node closes (the next node's first entry is added)
/// and deleted when any of its entries is deleted by XDEL or the node is trimmed, so a summary that
/// exists is exact. A trim that removes the head node whole learns the next node's count and end from
/// it instead of reading the node (Redis reads the count from the node's listpack header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeSummary {
    given: u64,
    live: u64,
    end: Id,
}

impl NodeSummary {
    const BYTES: usize = 32;

    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::BYTES);
        v.extend_from_slice(&self.given.to_be_bytes());
        v.extend_from_slice(&self.live.to_be_bytes());
        v.extend_from_slice(&self.end.to_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<NodeSummary> {
        Some(NodeSummary {
            given: u64_at(v, 0),
            live: u64_at(v, 8),
            end: Id::from_bytes(v.get(16..)?)?,
        })
        .filter(|n| v.len() == Self::BYTES && n.live > 0 && n.live <= n.given)
    }

    /// Whether every entry the node was given is there: its first entry is then the first one added
    /// to it.
    fn intact(&self) -> bool {
        self.live == self.given
    }
}

/// The exclusive end bound of entries up to `id` inclusive.
fn entry_end(id: Id) -> Vec<u8> {
    match id.incr() {
        Some(next) => entry_key(next),
        None => vec![ENTRY + 1],
    }
}

fn with_len(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

/// A key of `tag` with room for `len` bytes in all (the builders below push their parts without
/// reallocating).
fn key_of(tag: u8, len: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(len);
    k.push(tag);
    k
}

fn group_key(group: &[u8]) -> Vec<u8> {
    let mut k = key_of(GROUP, 1 + group.len());
    k.extend_from_slice(group);
    k
}

fn consumer_prefix(group: &[u8]) -> Vec<u8> {
    consumer_key(group, &[])
}

fn consumer_key(group: &[u8], consumer: &[u8]) -> Vec<u8> {
    let mut k = key_of(CONSUMER, 5 + group.len() + consumer.len());
    with_len(&mut k, group);
    k.extend_from_slice(consumer);
    k
}

fn pending_prefix(group: &[u8]) -> Vec<u8> {
    let mut k = key_of(PENDING, 5 + group.len() + 16);
    with_len(&mut k, group);
    k
}

fn pending_key(group: &[u8], id: Id) -> Vec<u8> {
    let mut k = pending_prefix(group);
    k.extend_from_slice(&id.to_bytes());
    k
}

fn cpending_prefix(group: &[u8], consumer: Option<&[u8]>) -> Vec<u8> {
    let mut k = key_of(
        CONSUMER_PENDING,
        5 + group.len() + consumer.map_or(0, |c| 4 + c.len()) + 16,
    );
    with_len(&mut k, group);
    if let Some(c) = consumer {
        with_len(&mut k, c);
    }
    k
}

fn cpending_key(group: &[u8], consumer: &[u8], id: Id) -> Vec<u8> {
    let mut k = cpending_prefix(group, Some(consumer));
    k.extend_from_slice(&id.to_bytes());
    k
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_be_bytes)
}

fn corrupt() -> Frame {
    Frame::error("ERR corrupt stream record")
}

/// A stream entry's stored value.
struct EntryValue {
    fields: Vec<Bytes>,
}

fn encode_entry(node: u64, fields: &[Arg]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + fields.iter().map(|f| f.len() + 4).sum::<usize>());
    v.extend_from_slice(&node.to_be_bytes());
    v.extend_from_slice(
        &u32::try_from(fields.len() / 2)
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for f in fields {
        with_len(&mut v, f);
    }
    v
}

fn decode_entry(raw: &Bytes) -> Result<EntryValue, Frame> {
    let n = raw
        .get(8..12)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or_else(corrupt)? as usize;
    let mut fields = Vec::with_capacity(n * 2);
    let mut at = 12;
    for _ in 0..n * 2 {
        let len = raw
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(corrupt)? as usize;
        at += 4;
        if raw.len() < at + len {
            return Err(corrupt());
        }
        fields.push(raw.slice(at..at + len));
        at += len;
    }
    Ok(EntryValue { fields })
}

/// `[id, [field, value, ...]]`.
fn entry_frame(id: Id, fields: Vec<Bytes>) -> Frame {
    Frame::Array(vec![
        id.frame(),
        Frame::Array(fields.into_iter().map(Frame::Bulk).collect()),
    ])
}

/// A consumer group.
#[derive(Debug, Clone)]
struct Group {
    last_id: Id,
    /// `-1`: unknown (Redis's `SCG_INVALID_ENTRIES_READ`).
    entries_read: i64,
    /// Not maintained: the counts are kept in memory (see `pel_counts.rs`); the field keeps the layout.
    pel_count: u64,
    consumers: u64,
    /// The highest ID ever made pending in this group: XREADGROUP looks up an existing pending entry
    /// (one XGROUP SETID or XCLAIM FORCE may have left) only at or below it.
    pel_max: Id,
}

impl Group {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(56);
        v.extend_from_slice(&self.last_id.to_bytes());
        v.extend_from_slice(&self.entries_read.to_be_bytes());
        v.extend_from_slice(&self.pel_count.to_be_bytes());
        v.extend_from_slice(&self.consumers.to_be_bytes());
        v.extend_from_slice(&self.pel_max.to_bytes());
        v
    }

    fn decode(b: &[u8]) -> Group {
        Group {
            last_id: Id::from_bytes(b).unwrap_or_default(),
            entries_read: u64_at(b, 16) as i64,
            pel_count: u64_at(b, 24),
            consumers: u64_at(b, 32),
            // Missing (a record without it): every ID may be pending.
            pel_max: b.get(40..).and_then(Id::from_bytes).unwrap_or(Id::MAX),
        }
    }
}

/// A consumer of a group.
#[derive(Debug, Clone, Copy)]
struct Consumer {
    /// When the consumer last tried to read or claim (Unix ms).
    seen_time: u64,
    /// When it last got entries from a read or a claim (Unix ms), -1 if never (Redis 7.2's
    /// `active-time`).
    active_time: i64,
    /// Not maintained: the counts are kept in memory (see `pel_counts.rs`); the field keeps the layout.
    pel_count: u64,
}

impl Consumer {
    fn encode(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.seen_time.to_be_bytes());
        v.extend_from_slice(&self.pel_count.to_be_bytes());
        v.extend_from_slice(&self.active_time.to_be_bytes());
        v
    }

    fn decode(b: &[u8]) -> Consumer {
        Consumer {
            seen_time: u64_at(b, 0),
            pel_count: u64_at(b, 8),
            // Records written before active times were kept have 16 bytes: never active, as far as known.
            active_time: if b.len() >= 24 {
                u64_at(b, 16) as i64
            } else {
                -1
            },
        }
    }
}

/// A pending entry (Redis's NACK).
#[derive(Debug, Clone)]
struct Nack {
    delivery_time: u64,
    delivery_count: u64,
    consumer: Bytes,
}

impl Nack {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + self.consumer.len());
        v.extend_from_slice(&self.delivery_time.to_be_bytes());
        v.extend_from_slice(&self.delivery_count.to_be_bytes());
        v.extend_from_slice(&self.consumer);
        v
    }

    fn decode(b: &Bytes) -> Nack {
        Nack {
            delivery_time: u64_at(b, 0),
            delivery_count: u64_at(b, 8),
            consumer: b.slice(16.min(b.len())..),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The stream header.

/// The stream's header, after the common `version | size` (size = the stream's length).
#[derive(Debug, Clone, Copy, Default)]
struct Meta {
    version: u64,
    length: u64,
    last_id: Id,
    first_id: Id,
    max_deleted: Id,
    entries_added: u64,
    /// The node new entries go to, how many entries it was given, how many of them are still there, and
    /// its estimated size in bytes.
    tail_node: u64,
    tail_count: u64,
    tail_live: u64,
    tail_bytes: u64,
    /// The node of the first entry and how many of its entries are left (0: not known), so XADD's
    /// approximate trim can tell without reading the node that it cannot remove it (Redis reads the
    /// count from the node's header). Headers written before this field have it unknown.
    head_node: u64,
    head_live: u64,
    /// The first entry of the node after the head node, when known (`Id::MIN`: not known): every entry
    /// before it is in the head node, so a trim that removes the whole head node range-deletes up to it
    /// without reading the node's entries. New entries always get larger IDs, so it stays a boundary.
    head_end: Id,
}

impl Meta {
    fn payload(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16 + 48 + 56 + 16);
        b.put_u64(self.version);
        b.put_u64(self.length);
        for id in [self.last_id, self.first_id, self.max_deleted] {
            b.put_slice(&id.to_bytes());
        }
        for w in [
            self.entries_added,
            self.tail_node,
            self.tail_count,
            self.tail_live,
            self.tail_bytes,
            self.head_node,
            self.head_live,
        ] {
            b.put_u64(w);
        }
        b.put_slice(&self.head_end.to_bytes());
        b.freeze()
    }

    fn parse(p: &[u8]) -> Option<Meta> {
        if p.len() < 16 + 48 + 40 {
            return None;
        }
        Some(Meta {
            version: u64_at(p, 0),
            length: u64_at(p, 8),
            last_id: Id::from_bytes(&p[16..])?,
            first_id: Id::from_bytes(&p[32..])?,
            max_deleted: Id::from_bytes(&p[48..])?,
            entries_added: u64_at(p, 64),
            tail_node: u64_at(p, 72),
            tail_count: u64_at(p, 80),
            tail_live: u64_at(p, 88),
            tail_bytes: u64_at(p, 96),
            head_node: if p.len() >= 120 { u64_at(p, 104) } else { 0 },
            head_live: if p.len() >= 120 { u64_at(p, 112) } else { 0 },
            head_end: p.get(120..).and_then(Id::from_bytes).unwrap_or(Id::MIN),
        })
    }
}

/// The metadata payload of a new, empty stream with collection `version` (RESTORE, COPY use the generic
/// paths and keep the header as it is).
fn new_meta(version: u64) -> Meta {
    Meta {
        version,
        ..Meta::default()
    }
}

/// A loaded stream and the changes a command makes to it, committed in one batch.
struct Stream<'a> {
    sh: &'a Shared,
    db: usize,
    key: &'a [u8],
    entry: Entry,
    m: Meta,
    write: StreamWrite,
    /// Whether the metadata or any record changed.
    dirty: bool,
    /// Whether the stream is new (its metadata record must be written).
    created: bool,
    /// Changes of pending counts this command made, applied to [`PelCounts`] once committed.
    pel_changes: Vec<PelChange>,
}

/// The stream at `key`: `Ok(None)` if missing, a WRONGTYPE error for another type.
fn load<'a>(sh: &'a Shared, db: usize, key: &'a [u8]) -> Result<Option<Stream<'a>>, Frame> {
    match sh.keyspace.get(db, key).map_err(storage_error)? {
        None => Ok(None),
        Some(e) if e.kind != Kind::Stream => Err(wrongtype()),
        Some(e) => {
            let m = Meta::parse(&e.payload).ok_or_else(corrupt)?;
            Ok(Some(Stream {
                sh,
                db,
                key,
                entry: e,
                m,
                write: StreamWrite::default(),
                dirty: false,
                created: false,
                pel_changes: Vec::new(),
            }))
        }
    }
}

/// A new, empty stream (not stored until committed).
fn create<'a>(sh: &'a Shared, db: usize, key: &'a [u8]) -> Stream<'a> {
    let m = new_meta(sh.keyspace.new_version());
    Stream {
        sh,
        db,
        key,
        entry: Entry {
            kind: Kind::Stream,
            expire_at_ms: 0,
            indexed_at_ms: 0,
            payload: m.payload(),
        },
        m,
        write: StreamWrite::default(),
        dirty: true,
        created: true,
        pel_changes: Vec::new(),
    }
}

impl Stream<'_> {
    /// A sub-record, as this command's changes so far leave it.
    fn get(&self, element: &[u8]) -> Result<Option<Bytes>, Frame> {
        if let Some(v) = self.write.ops.get(element) {
            return Ok(v.as_ref().map(|v| Bytes::copy_from_slice(v)));
        }
        self.sh
            .keyspace
            .get_element(self.db, self.key, self.m.version, element)
            .map_err(storage_error)
    }

    /// Hints that the new sub-record `element` is about to be written
    /// (see [`crate::keyspace::Keyspace::prefetch_sub`]).
    fn prefetch(&self, element: &[u8]) {
        self.sh
            .keyspace
            .prefetch_sub(self.db, self.key, self.m.version, element);
    }

    fn put(&mut self, element: Vec<u8>, value: Vec<u8>) {
        self.dirty = true;
        self.write.ops.insert(element, Some(value));
    }

    fn del(&mut self, element: Vec<u8>) {
        self.dirty = true;
        self.write.ops.insert(element, None);
    }

    /// Stored sub-records in `[start, end)` (empty `end`: to the end), at most `limit`, in order or
    /// reversed. Changes of this command are not seen.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Bytes)>, Frame> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.sh
            .keyspace
            .stream_scan(
                self.db,
                self.key,
                self.m.version,
                start,
                end,
                rev,
                |k, v| {
                    out.push((k.to_vec(), v));
                    Ok(out.len() < limit)
                },
            )
            .map_err(storage_error)?;
        Ok(out)
    }

    /// Entries with IDs in `[start, end]`, at most `limit` (0: all), in order or reversed.
    fn entries(
        &self,
        start: Id,
        end: Id,
        rev: bool,
        limit: usize,
    ) -> Result<Vec<(Id, EntryValue)>, Frame> {
        if start > end {
            return Ok(Vec::new());
        }
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.scan(&entry_key(start), &entry_end(end), rev, limit)?
            .into_iter()
            .map(|(k, v)| {
                let id = Id::from_bytes(&k[1..]).ok_or_else(corrupt)?;
                Ok((id, decode_entry(&v)?))
            })
            .collect()
    }

    /// A group's next `count` entries from `start` on (all when `count` is 0), through the entries read
    /// ahead for it (see `read_ahead.rs`).
    fn entries_for_group(
        &self,
        group: &[u8],
        start: Id,
        count: usize,
    ) -> Result<Vec<(Id, EntryValue)>, Frame> {
        if count == 0 || count >= read_ahead::READ_AHEAD {
            return self.entries(start, Id::MAX, false, count);
        }
        let reads = &self.sh.keyspace.stream_reads;
        let version = self.m.version;
        if let Some(got) = reads.take(version, group, start, count, self.m.last_id) {
            return got
                .into_iter()
                .map(|(id, v)| Ok((id, decode_entry(&v)?)))
                .collect();
        }
        // The entries asked for, then more while the read-ahead has room: READ_AHEAD entries and
        // READ_AHEAD_BYTES of values (big entries are not read, or kept, beyond what was asked).
        let mut out = Vec::with_capacity(count);
        let mut kept = std::collections::VecDeque::new();
        let mut kept_bytes = 0usize;
        let mut bad_key = false;
        self.sh
            .keyspace
            .stream_scan(
                self.db,
                self.key,
                version,
                &entry_key(start),
                &[ENTRY + 1],
                false,
                |k, v| {
                    let Some(id) = Id::from_bytes(&k[1..]) else {
                        bad_key = true;
                        return Ok(false);
                    };
                    if out.len() < count {
                        out.push((id, v));
                        return Ok(out.len() < count || kept_bytes < read_ahead::READ_AHEAD_BYTES);
                    }
                    kept_bytes += v.len();
                    if kept_bytes > read_ahead::READ_AHEAD_BYTES {
                        return Ok(false);
                    }
                    kept.push_back((id, Bytes::copy_from_slice(&v)));
                    Ok(out.len() + kept.len() < read_ahead::READ_AHEAD)
                },
            )
            .map_err(storage_error)?;
        if bad_key {
            return Err(corrupt());
        }
        if let Some(from) = out.last().and_then(|(id, _)| id.incr())
            && !kept.is_empty()
        {
            reads.keep(version, group, from, kept);
        }
        out.into_iter()
            .map(|(id, v)| Ok((id, decode_entry(&v)?)))
            .collect()
    }

    /// One entry.
    fn entry(&self, id: Id) -> Result<Option<EntryValue>, Frame> {
        self.get(&entry_key(id))?
            .map(|v| decode_entry(&v))
            .transpose()
    }

    /// The ID of the first or last entry.
    fn edge(&self, last: bool) -> Result<Option<Id>, Frame> {
        Ok(self
            .scan(&[ENTRY], &[ENTRY + 1], last, 1)?
            .first()
            .and_then(|(k, _)| Id::from_bytes(&k[1..])))
    }

    /// The last entry's ID (Redis's `streamLastValidID`), 0-0 when empty.
    fn last_valid_id(&self) -> Result<Id, Frame> {
        if self.m.length == 0 {
            return Ok(Id::MIN);
        }
        Ok(self.edge(true)?.unwrap_or(Id::MIN))
    }

    /// Stores the changes and the header, if anything changed.
    fn commit(mut self) -> Result<(), Frame> {
        if !self.dirty {
            return Ok(());
        }
        // A group-only change (XREADGROUP, XACK, ...) leaves the header as it was: not rewritten.
        let payload = self.m.payload();
        let changed = self.created || payload != self.entry.payload;
        self.entry.payload = payload;
        self.sh
            .keyspace
            .write_stream(
                self.db,
                self.key,
                changed.then_some(&self.entry),
                self.m.version,
                &self.write,
            )
            .map_err(storage_error)?;
        self.sh
            .keyspace
            .stream_owners
            .apply(self.m.version, &self.write);
        self.sh
            .keyspace
            .group_records
            .apply(self.m.version, &self.write);
        self.sh
            .keyspace
            .pel_counts
            .apply(self.m.version, &self.pel_changes);
        Ok(())
    }

    /// The pending counts of `group`: remembered, or counted from its pending records (then
    /// remembered). Call before this command changes the group's pending list.
    fn tally(&self, group: &[u8]) -> Result<Tally, Frame> {
        if let Some(t) = self.sh.keyspace.pel_counts.get(self.m.version, group) {
            return Ok(t);
        }
        let prefix = pending_prefix(group);
        let mut tally = Tally::default();
        for (_, v) in self.scan(&prefix, &prefix_end(&prefix), false, usize::MAX)? {
            tally.total += 1;
            *tally
                .consumers
                .entry(Nack::decode(&v).consumer)
                .or_default() += 1;
        }
        self.sh
            .keyspace
            .pel_counts
            .insert(self.m.version, group, tally.clone());
        Ok(tally)
    }

    /// Notes a change of `group`'s pending counts, for [`PelCounts`] once committed.
    fn count_pending(&mut self, group: &[u8], consumer: &[u8], delta: i64, total: i64) {
        self.pel_changes.push(PelChange {
            group: Bytes::copy_from_slice(group),
            consumer: Bytes::copy_from_slice(consumer),
            delta,
            total,
        });
    }

    /// Whether `start..=end` (open ends: the whole stream) may contain a deleted entry (Redis's
    /// `streamRangeHasTombstones`).
    fn range_has_tombstones(&self, start: Option<Id>) -> bool {
        let m = &self.m;
        if m.length == 0 || m.max_deleted.is_zero() || m.first_id > m.max_deleted {
            return false;
        }
        start.unwrap_or(Id::MIN) <= m.max_deleted
    }

    /// The logical read counter of `id` (Redis's `streamEstimateDistanceFromFirstEverEntry`), `-1` when
    /// it cannot be known.
    fn estimate_distance(&self, id: Id) -> i64 {
        let m = &self.m;
        let added = m.entries_added as i64;
        if m.entries_added == 0 {
            return 0;
        }
        if m.length == 0 && id <= m.last_id {
            return added;
        }
        if id == m.last_id {
            return added;
        }
        if id > m.last_id {
            return -1;
        }
        if m.max_deleted.is_zero() || m.max_deleted < m.first_id {
            if id < m.first_id {
                return added - m.length as i64;
            }
            if id == m.first_id {
                return added - m.length as i64 + 1;
            }
        }
        -1
    }

    /// A group's lag (Redis's `streamReplyWithCGLag`); `None` when it cannot be known.
    fn lag(&self, g: &Group) -> Option<i64> {
        let added = self.m.entries_added as i64;
        if self.m.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != -1 && !self.range_has_tombstones(Some(g.last_id)) {
            return Some(added - g.entries_read);
        }
        let read = self.estimate_distance(g.last_id);
        (read != -1).then_some(added - read)
    }

    fn group(&self, name: &[u8]) -> Result<Option<Group>, Frame> {
        let key = group_key(name);
        if self.write.ops.contains_key(&key) {
            return Ok(self.get(&key)?.map(|v| Group::decode(&v)));
        }
        let records = &self.sh.keyspace.group_records;
        if let Some(record) = records.get(self.m.version, name) {
            return Ok(Some(Group::decode(&record)));
        }
        let record = self.get(&key)?;
        if let Some(r) = &record {
            records.remember(self.m.version, name, r.clone());
        }
        Ok(record.map(|v| Group::decode(&v)))
    }

    fn put_group(&mut self, name: &[u8], g: &Group) {
        self.put(group_key(name), g.encode());
    }

    /// Every group, in name order.
    fn groups(&self) -> Result<Vec<(Bytes, Group)>, Frame> {
        Ok(self
            .scan(&[GROUP], &[GROUP + 1], false, usize::MAX)?
            .into_iter()
            .map(|(k, v)| (Bytes::copy_from_slice(&k[1..]), Group::decode(&v)))
            .collect())
    }

    fn consumer(&self, group: &[u8], name: &[u8]) -> Result<Option<Consumer>, Frame> {
        Ok(self
            .get(&consumer_key(group, name))?
            .map(|v| Consumer::decode(&v)))
    }

    fn put_consumer(&mut self, group: &[u8], name: &[u8], c: Consumer) {
        self.put(consumer_key(group, name), c.encode());
    }

    /// Every consumer of a group, in name order.
    fn consumers(&self, group: &[u8]) -> Result<Vec<(Bytes, Consumer)>, Frame> {
        let prefix = consumer_prefix(group);
        Ok(self
            .scan(&prefix, &prefix_end(&prefix), false, usize::MAX)?
            .into_iter()
            .map(|(k, v)| {
                (
                    Bytes::copy_from_slice(&k[prefix.len()..]),
                    Consumer::decode(&v),
                )
            })
            .collect())
    }

    /// The consumer owning pending entry `id` of `group`, if it is pending: from the owners remembered
    /// in memory when this command has not changed the record, else from storage.
    fn pending_owner(&self, group: &[u8], id: Id) -> Result<Option<Bytes>, Frame> {
        let element = pending_key(group, id);
        if !self.write.ops.contains_key(&element)
            && let Some(known) =
                self.sh
                    .keyspace
                    .stream_owners
                    .owner(self.m.version, group, id, || {
                        self.sh.keyspace.pel_counts.total(self.m.version, group)
                    })
        {
            return Ok(known);
        }
        Ok(self.get(&element)?.map(|v| Nack::decode(&v).consumer))
    }

    fn nack(&self, group: &[u8], id: Id) -> Result<Option<Nack>, Frame> {
        Ok(self.get(&pending_key(group, id))?.map(|v| Nack::decode(&v)))
    }

    /// Pending entries of a group (or of one consumer) with IDs in `[start, end]`, at most `limit`.
    fn pending(
        &self,
        group: &[u8],
        consumer: Option<&[u8]>,
        start: Id,
        end: Id,
        limit: usize,
    ) -> Result<Vec<Id>, Frame> {
        if start > end {
            return Ok(Vec::new());
        }
        let prefix = match consumer {
            Some(c) => cpending_prefix(group, Some(c)),
            None => pending_prefix(group),
        };
        let mut lo = prefix.clone();
        lo.extend_from_slice(&start.to_bytes());
        let hi = match end.incr() {
            Some(next) => {
                let mut hi = prefix.clone();
                hi.extend_from_slice(&next.to_bytes());
                hi
            }
            None => prefix_end(&prefix),
        };
        Ok(self
            .scan(&lo, &hi, false, limit)?
            .into_iter()
            .filter_map(|(k, _)| Id::from_bytes(&k[prefix.len()..]))
            .collect())
    }

    /// Removes a pending entry from the group and its owner (counts included).
    fn drop_nack(&mut self, group: &[u8], id: Id, owner: &[u8]) {
        self.del(pending_key(group, id));
        self.del(cpending_key(group, owner, id));
        self.count_pending(group, owner, -1, -1);
    }

    /// Gives the pending entry `id` (already in the group's list, owned by `nack.consumer`) to
    /// `consumer`, storing `nack` with its new times.
    fn move_nack(
        &mut self,
        group: &[u8],
        id: Id,
        old_owner: Option<&Bytes>,
        consumer: &[u8],
        nack: &mut Nack,
    ) -> Result<(), Frame> {
        if old_owner.is_none_or(|o| &o[..] != consumer) {
            if let Some(old) = old_owner {
                self.del(cpending_key(group, old, id));
                self.count_pending(group, old, -1, 0);
            }
            let cpending = cpending_key(group, consumer, id);
            self.prefetch(&cpending);
            self.put(cpending, Vec::new());
            self.count_pending(group, consumer, 1, i64::from(old_owner.is_none()));
            nack.consumer = Bytes::copy_from_slice(consumer);
        }
        let pending = pending_key(group, id);
        if old_owner.is_none() {
            self.prefetch(&pending);
        }
        self.put(pending, nack.encode());
        Ok(())
    }
}

/// Publishes a stream keyspace event for `key` (after the command, in the order they happened).
fn notify(sh: &Shared, key: &[u8], event: &'static str) {
    crate::notify::stream_event(sh, key, event);
}

// ---------------------------------------------------------------------------------------------------
// Trimming.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    None,
    MaxLen(u64),
    MinId(Id),
}

/// XADD / XTRIM trimming options.
#[derive(Debug, Clone, Copy)]
struct TrimArgs {
    strategy: Strategy,
    approx: bool,
    /// 0: no limit.
    limit: u64,
}

/// `stream-node-max-entries` and `stream-node-max-bytes`, as CONFIG SET last set them.
#[derive(Debug)]
pub(crate) struct NodeLimits {
    entries: AtomicU64,
    bytes: AtomicU64,
}

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            entries: AtomicU64::new(100),
            bytes: AtomicU64::new(4096),
        }
    }
}

impl NodeLimits {
    /// Records a new value of `stream-node-max-entries` (`entries`) or `stream-node-max-bytes`.
    pub(crate) fn set(&self, entries: bool, value: u64) {
        let target = if entries { &self.entries } else { &self.bytes };
        target.store(value, Ordering::Relaxed);
    }
}

/// `stream-node-max-entries` and `stream-node-max-bytes`.
fn node_limits(sh: &Shared) -> (u64, u64) {
    (
        sh.stream_nodes.entries.load(Ordering::Relaxed),
        sh.stream_nodes.bytes.load(Ordering::Relaxed),
    )
}

/// Parses XADD's options before the ID (returning the ID's position) or XTRIM's options.
fn parse_trim(sh: &Shared, args: &[Arg], xadd: bool) -> Result<(TrimArgs, usize, bool), Frame> {
    let mut t = TrimArgs {
        strategy: Strategy::None,
        approx: false,
        limit: 0,
    };
    let mut nomkstream = false;
    let mut limit_given = false;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i];
        if xadd && &opt[..] == b"*" {
            break;
        } else if (opt.eq_ignore_ascii_case(b"maxlen") || opt.eq_ignore_ascii_case(b"minid"))
            && more > 0
        {
            if t.strategy != Strategy::None {
                return Err(Frame::error(
                    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            t.approx = false;
            let next = &args[i + 1][..];
            if more >= 2 && next == b"~" {
                t.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            let value = &args[i + 1];
            if opt.eq_ignore_ascii_case(b"maxlen") {
                let n = int_arg(value, None)?;
                if n < 0 {
                    return Err(Frame::error("ERR The MAXLEN argument must be >= 0."));
                }
                t.strategy = Strategy::MaxLen(n as u64);
            } else {
                t.strategy = Strategy::MinId(parse_id(value, 0, true)?);
            }
            i += 2;
            continue;
        } else if opt.eq_ignore_ascii_case(b"limit") && more > 0 {
            let n = int_arg(&args[i + 1], None)?;
            if n < 0 {
                return Err(Frame::error("ERR The LIMIT argument must be >= 0."));
            }
            t.limit = n as u64;
            limit_given = true;
            i += 2;
            continue;
        } else if xadd && opt.eq_ignore_ascii_case(b"nomkstream") {
            nomkstream = true;
        } else if xadd {
            break;
        } else {
            return Err(Frame::error("ERR syntax error"));
        }
        i += 1;
    }
    if t.limit > 0 && t.strategy == Strategy::None {
        return Err(Frame::error(
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && t.strategy == Strategy::None {
        return Err(Frame::error(
            "ERR syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    if limit_given {
        if !t.approx {
            return Err(Frame::error(
                "ERR syntax error, LIMIT cannot be used without the special ~ option",
            ));
        }
    } else if t.approx {
        let (max_entries, _) = node_limits(sh);
        t.limit = max_entries.saturating_mul(100).clamp(1, 1_000_000);
        if max_entries == 0 {
            t.limit = 10_000;
        }
    } else {
        t.limit = 0;
    }
    Ok((t, i, nomkstream))
}

impl Stream<'_> {
    /// Trims as Redis's `streamTrim` does: whole nodes from the head while that keeps the stream within
    /// the bound (and within `limit` entries of work), then, unless approximate, single entries of the
    /// next node. `pending` is an entry this command added and has not stored yet (XADD's). Returns how
    /// many entries were deleted.
    fn trim(&mut self, t: TrimArgs, pending: Option<(Id, u64)>) -> Result<u64, Frame> {
        if t.strategy == Strategy::None {
            return Ok(0);
        }
        // The head node's count, when known, tells an approximate MAXLEN trim without reading the node
        // that it cannot remove it, which is what almost every capped XADD finds.
        if let Strategy::MaxLen(max) = t.strategy
            && t.approx
            && self.m.head_live > 0
            && self.m.length.saturating_sub(self.m.head_live) < max
        {
            return Ok(0);
        }
        let mut deleted: u64 = 0;
        let mut removed: Vec<(Id, u64)> = Vec::new();
        // The head node as the loop leaves it: (node, entries left, first entry of the next node), when it
        // read the whole node.
        let mut head: Option<(u64, u64, Id)> = None;
        // The first entry of the node the loop stopped at without removing any of it (approximate trims).
        let mut stop_first: Option<Id> = None;
        // From the first live entry: the trimmed ones before it are range-deleted but still in the
        // memtable, and walking them cost more than the trim.
        let mut cursor = entry_key(self.m.first_id);
        // The head node goes whole, and its size and end are known: removed as the range
        // `[first_id, head_end)` without reading its entries (half of a capped XADD's trim reads).
        let mut skipped: Option<(Id, Id)> = None;
        let head_known = self.m.head_live > 16
            && self.m.head_end != Id::MIN
            && self.m.head_node != self.m.tail_node
            && pending.is_none_or(|p| p.1 != self.m.head_node)
            && (t.limit == 0 || self.m.head_live <= t.limit);
        let head_goes = match t.strategy {
            Strategy::MaxLen(max) => self.m.length - self.m.head_live.min(self.m.length) >= max,
            Strategy::MinId(min) => self.m.head_end <= min,
            Strategy::None => false,
        };
        if head_known && head_goes && self.m.head_live <= self.m.length {
            self.m.length -= self.m.head_live;
            deleted += self.m.head_live;
            skipped = Some((self.m.first_id, self.m.head_end));
            cursor = entry_key(self.m.head_end);
            self.del(node_key(self.m.head_node));
        }
        let mut pending_used = false;
        let bounded_nodes = node_limits(self.sh).0 > 0;
        // After a skipped head node, an approximate MAXLEN trim stops at the next node unless it can go
        // too: the next node's summary, when there is one, says so and makes it the head without reading
        // it. Its first entry is the skipped node's end when no entry of it was ever deleted, else the
        // first one found within it.
        let mut first_within: Option<Id> = None;
        let mut first_known: Option<Id> = None;
        let next_node = self.m.head_node + 1;
        if let (Some(_), Strategy::MaxLen(max)) = (skipped, t.strategy)
            && t.approx
            && bounded_nodes
            && next_node != self.m.tail_node
            && pending.is_none_or(|p| p.1 != next_node)
            && let Some(next) = self
                .get(&node_key(next_node))?
                .and_then(|v| NodeSummary::decode(&v))
            && next.live <= self.m.length
            && self.m.length - next.live < max
        {
            head = Some((next_node, next.live, next.end));
            first_within = Some(next.end);
            if next.intact() {
                first_known = skipped.map(|(_, end)| end);
            }
        }
        loop {
            if first_within.is_some() {
                break;
            }
            if let Strategy::MaxLen(max) = t.strategy
                && self.m.length <= max
            {
                break;
            }
            // Under MAXLEN, a node of more than `length - max` entries is not removed and only its first
            // `length - max` entries can be: reading one more than that is enough to decide.
            // Approximate trims read the whole head node when nodes are bounded by a count: its size is
            // then remembered (`head_live`) and the next capped XADDs skip the walk, where a capped read
            // learned nothing and every XADD read again, one entry more each time.
            let cap = match t.strategy {
                Strategy::MaxLen(_) if t.approx && bounded_nodes => usize::MAX,
                Strategy::MaxLen(max) => (self.m.length - max).saturating_add(1) as usize,
                _ => usize::MAX,
            };
            // The next node's entries, and the first entry of the node after it.
            let mut node: Vec<(Id, u64)> = Vec::new();
            let mut next_first = Id::MIN;
            let mut capped = false;
            self.sh
                .keyspace
                .stream_scan(
                    self.db,
                    self.key,
                    self.m.version,
                    &cursor,
                    &[ENTRY + 1],
                    false,
                    |k, v| {
                        let (Some(id), n) = (Id::from_bytes(&k[1..]), u64_at(&v, 0)) else {
                            return Ok(false);
                        };
                        if node.first().is_some_and(|(_, first)| *first != n) {
                            next_first = id;
                            return Ok(false);
                        }
                        node.push((id, n));
                        if node.len() >= cap {
                            capped = true;
                            return Ok(false);
                        }
                        Ok(true)
                    },
                )
                .map_err(storage_error)?;
            if let Some(p) = pending
                && !pending_used
                && !capped
                && node.first().is_none_or(|(_, n)| *n == p.1)
            {
                node.push(p);
                pending_used = true;
            }
            let Some(&(last, _)) = node.last() else {
                break;
            };
            let entries = node.len() as u64;
            if t.limit > 0 && deleted + entries > t.limit {
                break;
            }
            let remove_node = match t.strategy {
                Strategy::MaxLen(max) => self.m.length - entries >= max,
                Strategy::MinId(min) => last < min,
                Strategy::None => false,
            };
            if remove_node {
                self.m.length -= entries;
                deleted += entries;
                if let Some(&(_, n)) = node.first() {
                    self.del(node_key(n));
                }
                removed.extend_from_slice(&node);
                cursor = entry_end(last);
                if last == Id::MAX {
                    break;
                }
                continue;
            }
            let node_id = node.first().map_or(0, |(_, n)| *n);
            if t.approx {
                if !capped {
                    head = Some((node_id, entries, next_first));
                }
                stop_first = node.first().map(|(id, _)| *id);
                break;
            }
            let before = deleted;
            for &(id, n) in &node {
                let stop = match t.strategy {
                    Strategy::MaxLen(max) => self.m.length <= max,
                    Strategy::MinId(min) => id >= min,
                    Strategy::None => true,
                };
                if stop {
                    break;
                }
                self.m.length -= 1;
                deleted += 1;
                removed.push((id, n));
            }
            if !capped {
                head = Some((node_id, entries - (deleted - before), next_first));
            }
            break;
        }
        // Whatever the trim removed, the head is now the node it stopped at (count known if it read the
        // whole node), or unknown.
        match head {
            Some((node, live, end)) if live > 0 => {
                self.m.head_node = node;
                self.m.head_live = live;
                self.m.head_end = end;
            }
            _ if deleted > 0 => {
                self.m.head_live = 0;
                self.m.head_end = Id::MIN;
            }
            _ => {}
        }
        if deleted == 0 {
            return Ok(0);
        }
        self.sh.keyspace.stream_reads.forget(self.m.version);
        // The deleted entries are a prefix of the stream: a range for many, point deletes for a few.
        let stored: Vec<Id> = removed
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| pending.is_none_or(|p| p.0 != *id))
            .collect();
        if let Some((first, end)) = skipped {
            // The skipped head node and whatever the loop removed after it: still one prefix.
            let end = stored
                .last()
                .map_or(entry_key(end), |last| entry_end(*last));
            self.write.ranges.push((entry_key(first), end));
            self.dirty = true;
        } else if stored.len() > 16 {
            // From the first deleted entry, not from the stream's start: ranges that each cover the ones
            // before them fragment quadratically in the memtable's tombstone index, disjoint ones do not.
            if let (Some(&first), Some(&last)) = (stored.first(), stored.last()) {
                self.write.ranges.push((entry_key(first), entry_end(last)));
                self.dirty = true;
            }
        } else {
            for id in &stored {
                self.del(entry_key(*id));
            }
        }
        if let Some(p) = pending
            && removed.iter().any(|(id, _)| *id == p.0)
        {
            self.write.ops.remove(&entry_key(p.0));
        }
        let tail_gone = removed
            .iter()
            .filter(|(_, n)| *n == self.m.tail_node)
            .count() as u64;
        self.m.tail_live = self.m.tail_live.saturating_sub(tail_gone);
        self.dirty = true;
        // The first entry now: the one after the last deleted.
        if self.m.length == 0 {
            self.m.first_id = Id::MIN;
        } else if let Some(first) = stop_first.or(first_known) {
            self.m.first_id = first;
        } else if let Some(from) = removed
            .last()
            .map(|(last, _)| entry_end(*last))
            .or(skipped.map(|(_, end)| entry_key(end)))
        {
            let end = first_within.map_or(vec![ENTRY + 1], entry_key);
            let next = self
                .scan(&from, &end, false, 1)?
                .first()
                .and_then(|(k, _)| Id::from_bytes(&k[1..]));
            self.m.first_id = next.or(pending.map(|p| p.0)).unwrap_or(Id::MIN);
        }
        Ok(deleted)
    }

    /// Appends an entry (the caller checked `id` is past `last_id`); returns its node.
    fn append(&mut self, id: Id, fields: &[Arg]) -> u64 {
        let (max_entries, max_bytes) = node_limits(self.sh);
        let max_bytes = if max_bytes == 0 { u64::MAX } else { max_bytes };
        let values: u64 = fields.iter().map(|f| f.len() as u64).sum();
        let new_node = self.m.tail_live == 0
            || self.m.tail_bytes + values >= max_bytes
            || (max_entries > 0 && self.m.tail_count >= max_entries);
        if new_node {
            // The head node is the one being closed: this entry is where it ends.
            if self.m.length > 0 && self.m.head_live > 0 && self.m.head_node == self.m.tail_node {
                self.m.head_end = id;
            }
            if self.m.tail_live > 0 {
                let closed = NodeSummary {
                    given: self.m.tail_count,
                    live: self.m.tail_live,
                    end: id,
                };
                self.put(node_key(self.m.tail_node), closed.encode());
            }
            self.m.tail_node += 1;
            self.m.tail_count = 0;
            self.m.tail_live = 0;
            self.m.tail_bytes = 16;
        }
        self.m.tail_count += 1;
        self.m.tail_live += 1;
        // A listpack entry: its values plus a few bytes of flags, ID deltas and lengths.
        self.m.tail_bytes += values + 4 + fields.len() as u64;
        let node = self.m.tail_node;
        let key = entry_key(id);
        self.prefetch(&key);
        self.put(key, encode_entry(node, fields));
        if self.m.length == 0 {
            self.m.first_id = id;
            self.m.head_node = node;
            self.m.head_live = 1;
            self.m.head_end = Id::MIN;
        } else if self.m.head_live > 0 && self.m.head_node == node {
            self.m.head_live += 1;
        }
        self.m.length += 1;
        self.m.entries_added += 1;
        self.m.last_id = id;
        node
    }
}

// ---------------------------------------------------------------------------------------------------
// Commands.

/// XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] *|id field value [field value ...]
pub fn xadd(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (trim, idpos, nomkstream) = match parse_trim(sh, args, true) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // (id, whether the sequence was given)
    let mut given: Option<(Id, bool)> = None;
    if let Some(arg) = args.get(idpos)
        && &arg[..] != b"*"
    {
        let (ms_part, seq_auto) = match arg.strip_suffix(b"-*") {
            Some(ms) => (ms, true),
            None => (&arg[..], false),
        };
        let id = match parse_id(ms_part, 0, true) {
            Ok(id) if !seq_auto || !ms_part.contains(&b'-') => id,
            Ok(_) => return invalid_id(),
            Err(r) => return r,
        };
        given = Some((id, !seq_auto));
    }
    let fields = args.get(idpos + 1..).unwrap_or_default();
    if fields.is_empty() || !fields.len().is_multiple_of(2) {
        return super::wrong_arity("xadd");
    }
    if let Some((id, true)) = given
        && id.is_zero()
    {
        return Frame::error("ERR The ID specified in XADD must be greater than 0-0");
    }
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let mut st = match load(sh, s.db, key) {
        Ok(Some(st)) => st,
        Ok(None) if nomkstream => return Frame::Null,
        Ok(None) => create(sh, s.db, key),
        Err(r) => return r,
    };
    if st.m.last_id == Id::MAX {
        return Frame::error(
            "ERR The stream has exhausted the last possible ID, unable to add more items",
        );
    }
    let last = st.m.last_id;
    let id = match given {
        Some((id, true)) => Some(id),
        Some((id, false)) if last.ms == id.ms => last.incr().filter(|n| n.ms == id.ms),
        Some((id, false)) => Some(id),
        None => {
            let now = sh.keyspace.now_ms();
            if now > last.ms {
                Some(Id { ms: now, seq: 0 })
            } else {
                last.incr()
            }
        }
    };
    let Some(id) = id.filter(|id| *id > last) else {
        return Frame::error(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item",
        );
    };
    let node = st.append(id, fields);
    let trimmed = match st.trim(trim, Some((id, node))) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if let Err(r) = st.commit() {
        return r;
    }
    notify(sh, key, "xadd");
    if trimmed > 0 {
        notify(sh, key, "xtrim");
    }
    id.frame()
}

/// XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]
pub fn xtrim(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let trim = match parse_trim(sh, args, false) {
        Ok((t, ..)) => t,
        Err(r) => return r,
    };
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let mut st = match load(sh, s.db, key) {
        Ok(Some(st)) => st,
        Ok(None) => return Frame::Integer(0),
        Err(r) => return r,
    };
    let deleted = match st.trim(trim, None) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if let Err(r) = st.commit() {
        return r;
    }
    if deleted > 0 {
        sh.keyspace.add_dirty(deleted - 1);
        notify(sh, key, "xtrim");
    }
    Frame::Integer(deleted as i64)
}

/// XDEL key id [id ...]
pub fn xdel(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let mut st = match load(sh, s.db, key) {
        Ok(Some(st)) => st,
        Ok(None) => return Frame::Integer(0),
        Err(r) => return r,
    };
    let mut ids = Vec::with_capacity(args.len() - 2);
    for a in &args[2..] {
        match parse_id(a, 0, true) {
            Ok(id) => ids.push(id),
            Err(r) => return r,
        }
    }
    let mut deleted = 0u64;
    let mut first_deleted = false;
    let old_first = st.m.first_id;
    for id in ids {
        let element = entry_key(id);
        let Some(raw) = (match st.get(&element) {
            Ok(v) => v,
            Err(r) => return r,
        }) else {
            continue;
        };
        if u64_at(&raw, 0) == st.m.tail_node {
            st.m.tail_live = st.m.tail_live.saturating_sub(1);
        } else {
            // The closed node's summary no longer counts right.
            st.del(node_key(u64_at(&raw, 0)));
        }
        if u64_at(&raw, 0) == st.m.head_node {
            // At zero the head moves to a node whose count and end are not known.
            st.m.head_live = st.m.head_live.saturating_sub(1);
            if st.m.head_live == 0 {
                st.m.head_end = Id::MIN;
            }
        }
        st.del(element);
        st.m.length -= 1;
        if id == st.m.first_id {
            first_deleted = true;
        }
        if id > st.m.max_deleted {
            st.m.max_deleted = id;
        }
        deleted += 1;
    }
    if deleted > 0 {
        sh.keyspace.stream_reads.forget(st.m.version);
        if st.m.length == 0 {
            st.m.first_id = Id::MIN;
        } else if first_deleted {
            // The first stored entry not deleted by this command, from the old first entry (the
            // range-deleted ones before it are still in the memtable).
            let mut from = entry_key(old_first);
            loop {
                let next = match st.scan(&from, &[ENTRY + 1], false, 64) {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                let Some((k, _)) = next.last().cloned() else {
                    break;
                };
                if let Some((k, _)) = next
                    .iter()
                    .find(|(k, _)| !st.write.ops.contains_key(k.as_slice()))
                {
                    st.m.first_id = Id::from_bytes(&k[1..]).unwrap_or_default();
                    break;
                }
                from = k;
                from.push(0);
            }
        }
        if let Err(r) = st.commit() {
            return r;
        }
        sh.keyspace.add_dirty(deleted - 1);
        notify(sh, key, "xdel");
    }
    Frame::Integer(deleted as i64)
}

/// XLEN key
pub fn xlen(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load(sh, s.db, &args[1]) {
        Ok(Some(st)) => Frame::Integer(st.m.length as i64),
        Ok(None) => Frame::Integer(0),
        Err(r) => r,
    }
}

/// XRANGE key start end [COUNT n], XREVRANGE key end start [COUNT n]
pub fn xrange(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let rev = args[0].eq_ignore_ascii_case(b"xrevrange");
    let (start, end) = if rev {
        (&args[3], &args[2])
    } else {
        (&args[2], &args[3])
    };
    let (start, end) = match parse_range(start, end) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut count: i64 = -1;
    let mut j = 4;
    while j < args.len() {
        if args[j].eq_ignore_ascii_case(b"count") && j + 1 < args.len() {
            count = match int_arg(&args[j + 1], None) {
                Ok(n) => n.max(0),
                Err(r) => return r,
            };
            j += 2;
        } else {
            return Frame::error("ERR syntax error");
        }
    }
    let st = match load(sh, s.db, &args[1]) {
        Ok(Some(st)) => st,
        Ok(None) => return Frame::Array(Vec::new()),
        Err(r) => return r,
    };
    if count == 0 {
        return Frame::NullArray;
    }
    let limit = if count < 0 { 0 } else { count as usize };
    match st.entries(start, end, rev, limit) {
        Ok(entries) => Frame::Array(
            entries
                .into_iter()
                .map(|(id, e)| entry_frame(id, e.fields))
                .collect(),
        ),
        Err(r) => r,
    }
}

/// XSETID key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]
pub fn xsetid(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let id = match parse_id(&args[2], 0, true) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let mut entries_added: i64 = -1;
    let mut max_xdel = Id::MIN;
    let mut i = 3;
    while i < args.len() {
        let more = args.len() - 1 - i;
        if args[i].eq_ignore_ascii_case(b"entriesadded") && more > 0 {
            match int_arg(&args[i + 1], None) {
                Ok(n) if n < 0 => return Frame::error("ERR entries_added must be positive"),
                Ok(n) => entries_added = n,
                Err(r) => return r,
            }
            i += 2;
        } else if args[i].eq_ignore_ascii_case(b"maxdeletedid") && more > 0 {
            match parse_id(&args[i + 1], 0, true) {
                Ok(m) if id < m => {
                    return Frame::error(
                        "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                    );
                }
                Ok(m) => max_xdel = m,
                Err(r) => return r,
            }
            i += 2;
        } else {
            return Frame::error("ERR syntax error");
        }
    }
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let mut st = match load(sh, s.db, key) {
        Ok(Some(st)) => st,
        Ok(None) => return Frame::error("ERR no such key"),
        Err(r) => return r,
    };
    if st.m.length > 0 {
        let top = match st.last_valid_id() {
            Ok(t) => t,
            Err(r) => return r,
        };
        if id < top {
            return Frame::error(
                "ERR The ID specified in XSETID is smaller than the target stream top item",
            );
        }
        if entries_added != -1 && st.m.length > entries_added as u64 {
            return Frame::error(
                "ERR The entries_added specified in XSETID is smaller than the target stream length",
            );
        }
    }
    st.m.last_id = id;
    // Entries read ahead stay right through a new last ID; dropped anyway, as for any change of what
    // the stream says about its entries.
    sh.keyspace.stream_reads.forget(st.m.version);
    if entries_added != -1 {
        st.m.entries_added = entries_added as u64;
    }
    if !max_xdel.is_zero() {
        st.m.max_deleted = max_xdel;
    }
    st.dirty = true;
    if let Err(r) = st.commit() {
        return r;
    }
    notify(sh, key, "xsetid");
    Frame::ok()
}

/// What XREAD / XREADGROUP asked for.
struct ReadArgs {
    count: usize,
    block: Option<Option<std::time::Instant>>,
    group: Option<(Bytes, Bytes)>,
    noack: bool,
    streams_at: usize,
    nstreams: usize,
}

fn parse_read(args: &[Arg], group_cmd: bool, from_script: bool) -> Result<ReadArgs, Frame> {
    let mut r = ReadArgs {
        count: 0,
        block: None,
        group: None,
        noack: false,
        streams_at: 0,
        nstreams: 0,
    };
    let mut i = 1;
    while i < args.len() {
        let more = args.len() - i - 1;
        let o = &args[i];
        if o.eq_ignore_ascii_case(b"block") && more > 0 {
            if from_script {
                return Err(Frame::error(format!(
                    "ERR {} command is not allowed with BLOCK option from scripts",
                    String::from_utf8_lossy(&args[0])
                )));
            }
            i += 1;
            let ms = int_arg(&args[i], Some("timeout is not an integer or out of range"))?;
            if ms < 0 {
                return Err(Frame::error("ERR timeout is negative"));
            }
            r.block = Some(if ms == 0 {
                None
            } else {
                std::time::Instant::now().checked_add(std::time::Duration::from_millis(ms as u64))
            });
        } else if o.eq_ignore_ascii_case(b"count") && more > 0 {
            i += 1;
            r.count = int_arg(&args[i], None)?.max(0) as usize;
        } else if o.eq_ignore_ascii_case(b"streams") && more > 0 {
            r.streams_at = i + 1;
            let n = args.len() - r.streams_at;
            if !n.is_multiple_of(2) {
                return Err(Frame::error(
                    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            r.nstreams = n / 2;
            break;
        } else if o.eq_ignore_ascii_case(b"group") && more >= 2 {
            if !group_cmd {
                return Err(Frame::error(
                    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.group = Some((args[i + 1].to_bytes(), args[i + 2].to_bytes()));
            i += 2;
        } else if o.eq_ignore_ascii_case(b"noack") {
            if !group_cmd {
                return Err(Frame::error(
                    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            r.noack = true;
        } else {
            return Err(Frame::error("ERR syntax error"));
        }
        i += 1;
    }
    if r.streams_at == 0 {
        return Err(Frame::error("ERR syntax error"));
    }
    if group_cmd && r.group.is_none() {
        return Err(Frame::error("ERR Missing GROUP option for XREADGROUP"));
    }
    Ok(r)
}

/// Positions of the keys of an XREAD / XREADGROUP (after STREAMS, the first half).
pub(crate) fn read_key_positions(args: &[Arg]) -> Vec<usize> {
    let Some(at) = args.iter().position(|a| a.eq_ignore_ascii_case(b"streams")) else {
        return Vec::new();
    };
    let n = (args.len() - at - 1) / 2;
    (at + 1..at + 1 + n).collect()
}

/// XREADGROUP's reply when the stream or its group does not exist.
fn xreadgroup_nogroup(key: &[u8], group: &[u8]) -> Frame {
    Frame::error(format!(
        "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

/// XREAD [COUNT n] [BLOCK ms] STREAMS key [key ...] id [id ...], and XREADGROUP GROUP group consumer
/// [COUNT n] [BLOCK ms] [NOACK] STREAMS key [key ...] id [id ...].
pub fn xread(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let group_cmd = args[0].eq_ignore_ascii_case(b"xreadgroup");
    let from_script = s.id == crate::script::SCRIPT_CLIENT_ID;
    let r = match parse_read(args, group_cmd, from_script) {
        Ok(r) => r,
        Err(f) => return f,
    };
    let keys = &args[r.streams_at..r.streams_at + r.nstreams];
    let id_args = &args[r.streams_at + r.nstreams..];
    // The IDs a blocked XREAD resolved `$` to stay those of its first attempt.
    let resolved: Option<Vec<Id>> = s
        .stream_ids
        .take()
        .filter(|_| s.retrying_block)
        .map(|v| v.into_iter().map(|(ms, seq)| Id { ms, seq }).collect());
    let guards = sh.keyspace.lock_many(s.db, keys.iter().map(|k| &k[..]));
    // None: `>` (new entries of the group).
    let mut ids: Vec<Option<Id>> = Vec::with_capacity(keys.len());
    // Each stream as loaded here (None: missing), with its group for XREADGROUP, served below without
    // reading either again (the key locks are held throughout).
    let mut loaded: Vec<(Option<Stream<'_>>, Option<Group>)> = Vec::with_capacity(keys.len());
    let retrying = s.retrying_block;
    for (i, (key, arg)) in keys.iter().zip(id_args).enumerate() {
        let st = match load(sh, s.db, key) {
            // A blocked XREADGROUP whose key went away or changed type is told so (Redis's
            // unblock reply); a blocked XREAD keeps waiting.
            Err(_) | Ok(None) if retrying && group_cmd => {
                return Frame::error("UNBLOCKED the stream key no longer exists");
            }
            Ok(st) => st,
            Err(_) if retrying => None,
            Err(f) => return f,
        };
        let mut found = None;
        if let Some((group, _)) = &r.group {
            found = match &st {
                Some(st) => match st.group(group) {
                    Ok(g) => g,
                    Err(f) => return f,
                },
                None => None,
            };
            let exists = found.is_some();
            if !exists && retrying {
                return Frame::error(
                    "NOGROUP the consumer group this client was blocked on no longer exists",
                );
            }
            if !exists {
                return xreadgroup_nogroup(key, group);
            }
        }
        if &arg[..] == b"$" {
            if group_cmd {
                return Frame::error(
                    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the \
                     history of this consumer by specifying a proper ID, or use the > ID to get new \
                     messages. The $ ID would just return an empty result set.",
                );
            }
            let id = match resolved.as_ref().and_then(|v| v.get(i).copied()) {
                Some(id) => id,
                None => st.as_ref().map_or(Id::MIN, |st| st.m.last_id),
            };
            ids.push(Some(id));
        } else if &arg[..] == b"+" && !group_cmd {
            // Redis 7.4: the last entry, or (on an empty stream) what `$` would wait for.
            let id = match resolved.as_ref().and_then(|v| v.get(i).copied()) {
                Some(id) => id,
                None => match &st {
                    Some(st) if st.m.length > 0 => match st.last_valid_id() {
                        Ok(last) => last.decr().unwrap_or(Id::MIN),
                        Err(f) => return f,
                    },
                    Some(st) => st.m.last_id,
                    None => Id::MIN,
                },
            };
            ids.push(Some(id));
        } else if &arg[..] == b">" {
            if !group_cmd {
                return Frame::error(
                    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP \
                     <group> <consumer> option.",
                );
            }
            ids.push(None);
        } else {
            match parse_id(arg, 0, true) {
                Ok(id) => ids.push(Some(id)),
                Err(f) => return f,
            }
        }
        loaded.push((st, found));
    }
    let mut out: Vec<(Bytes, Frame)> = Vec::new();
    for (i, ((key, id), (st, mut group_found))) in keys.iter().zip(&ids).zip(loaded).enumerate() {
        // A key named twice is served twice, the second time after the first one's writes.
        let st = if keys[..i].contains(key) {
            let st = match load(sh, s.db, key) {
                Ok(st) => st,
                Err(_) if retrying => None,
                Err(f) => return f,
            };
            if let (Some(st), Some((group, _))) = (&st, &r.group) {
                group_found = match st.group(group) {
                    Ok(g) => g,
                    Err(f) => return f,
                };
            }
            st
        } else {
            st
        };
        let Some(mut st) = st else { continue };
        let served = match &r.group {
            None => {
                let Some(after) = *id else { continue };
                // Served when an entry follows `after` (the scan itself tells).
                if st.m.length == 0 || st.m.last_id <= after {
                    continue;
                }
                let Some(start) = after.incr() else { continue };
                let count = if r.count == 0 && r.block.is_some() && retrying {
                    1000
                } else {
                    r.count
                };
                match st.entries(start, Id::MAX, false, count) {
                    Ok(entries) if entries.is_empty() => continue,
                    Ok(entries) => Frame::Array(
                        entries
                            .into_iter()
                            .map(|(id, e)| entry_frame(id, e.fields))
                            .collect(),
                    ),
                    Err(f) => return f,
                }
            }
            Some((group, consumer)) => {
                // Found by the first pass, or by the reload of a key named twice (nothing in between
                // drops a group, but the reply stays the first pass's if it ever did).
                let Some(g) = group_found else {
                    return xreadgroup_nogroup(key, group);
                };
                match groups::read_group(&mut st, group, g, consumer, *id, r.count, r.noack) {
                    Ok(Some(frame)) => {
                        if let Err(f) = st.commit() {
                            return f;
                        }
                        frame
                    }
                    Ok(None) => continue,
                    Err(f) => return f,
                }
            }
        };
        out.push((key.to_bytes(), served));
    }
    drop(guards);
    if !out.is_empty() {
        return if s.protocol == strata_resp::ProtocolVersion::Resp3 {
            Frame::Map(out.into_iter().map(|(k, v)| (Frame::Bulk(k), v)).collect())
        } else {
            Frame::Array(
                out.into_iter()
                    .map(|(k, v)| Frame::Array(vec![Frame::Bulk(k), v]))
                    .collect(),
            )
        };
    }
    match r.block {
        Some(deadline) if !s.in_exec => {
            s.stream_ids = Some(
                ids.iter()
                    .map(|i| i.map_or((u64::MAX, u64::MAX), |i| (i.ms, i.seq)))
                    .collect(),
            );
            s.block_on(crate::blocking::BlockRequest {
                keys: strata_resp::to_owned_args(keys),
                deadline,
                timeout_reply: Frame::NullArray,
            })
        }
        _ => Frame::NullArray,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_frames_read_as_their_display() {
        for (ms, seq) in [
            (0, 0),
            (1, 2),
            (9, 10),
            (1_700_000_000_123, 0),
            (u64::MAX, u64::MAX),
        ] {
            let id = Id { ms, seq };
            assert_eq!(id.frame(), Frame::Bulk(Bytes::from(id.to_string())));
        }
    }

    #[test]
    fn node_summaries_round_trip_and_refuse_what_they_cannot_vouch_for() {
        let s = NodeSummary {
            given: 100,
            live: 97,
            end: Id { ms: 5, seq: 1 },
        };
        assert_eq!(NodeSummary::decode(&s.encode()), Some(s));
        assert!(!s.intact());
        let empty = NodeSummary { live: 0, ..s };
        assert_eq!(NodeSummary::decode(&empty.encode()), None);
        let over = NodeSummary { live: 101, ..s };
        assert_eq!(NodeSummary::decode(&over.encode()), None);
        assert_eq!(NodeSummary::decode(&s.encode()[..31]), None);
    }
}
