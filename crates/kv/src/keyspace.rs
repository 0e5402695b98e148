//! The keyspace: Redis keys and their values, stored in strata-storage.
//!
//! Each logical database is one storage tree (`kv0` .. `kv15`), so FLUSHDB is one range tombstone. A key's
//! *metadata record* lives at `b'm' ++ key`:
//!
//! ```text
//! type u8 | expire_at_ms u64 big-endian (0 = no expiry) | payload
//! ```
//!
//! For a string the payload is the value itself. Collections (later) keep a version and a size in the
//! payload and their elements under versioned sub-keys, so deleting one is O(1); `docs/kv-encoding.md` has
//! the full layout.
//!
//! Expiry is lazy: a read that finds an expired record treats the key as missing. Every record with a TTL
//! also has an entry in an *expiry index* (`b'x' ++ expire_at_ms u64 BE ++ key`, written in the same batch
//! as the record), which the active expiry cycle ([`expire`]) walks from the oldest deadline to delete keys
//! nobody reads. Writes that read first (INCR, APPEND, SET with conditions) hold a lock stripe for the key
//! so concurrent read-modify-writes of one key serialize while different keys proceed in parallel.
//! Storage compaction reclaims expired records and dead collection elements on its own, through a
//! compaction filter installed at open (`keyspace/compaction.rs`).
//!
//! Database `n` is the tree `map[n]` points at: SWAPDB swaps two entries of that map (persisted in the tree
//! `kvdbmap`) rather than any data.

mod compaction;
pub mod expire;
#[doc(hidden)]
pub mod fuzzing;
mod plain;
pub mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::{Mutex, MutexGuard};
use strata_storage::{Db, StorageError, Tree, WriteBatch};

/// Prefix of metadata records.
const META_PREFIX: u8 = b'm';
/// Bytes before a record's payload: type, deadline.
const HEADER_BYTES: usize = 9;
/// Bytes before the payload of a record that carries its index deadline too (type, deadline, index
/// deadline); the type byte has [`INDEXED_FLAG`] set.
const INDEXED_HEADER_BYTES: usize = 17;
/// Set in a record's type byte when an index deadline follows the deadline (see [`Entry::indexed_at_ms`]).
const INDEXED_FLAG: u8 = 0x80;
/// Lock stripes for read-modify-write commands.
const LOCK_STRIPES: usize = 1024;
/// Prefix of expiry index entries: `b'x' ++ expire_at_ms u64 BE ++ key`, empty value.
const EXPIRE_PREFIX: u8 = b'x';
/// Families of element records a collection may own, each laid out as `family ++ len(key) u32 ++ key ++
/// version ++ ...`: `s` elements and `z` the sorted-set score index.
const ELEMENT_FAMILIES: [u8; 2] = [SUB_PREFIX, b'z'];
/// Name of the tree holding the database → tree map, and its one record.
const MAP_TREE: &str = "kvdbmap";
const MAP_KEY: &[u8] = b"map";

/// Whether a record with deadline `expire_at_ms` (0 = none) is expired at `now_ms`. Redis's rule: a key
/// is alive through the millisecond of its deadline and expired once the clock is past it (`now > when`).
pub fn is_expired(expire_at_ms: u64, now_ms: u64) -> bool {
    expire_at_ms != 0 && expire_at_ms < now_ms
}

/// A key's type, as `TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (also integers and floats).
    String = 0,
    /// A list.
    List = 1,
    /// A hash.
    Hash = 2,
    /// A set.
    Set = 3,
    /// A sorted set.
    ZSet = 4,
    /// A stream (`keyspace/stream.rs`).
    Stream = 5,
    /// An autocomplete dictionary (RediSearch's `trietype0`; `cmd/suggest.rs`).
    Trie = 8,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::String,
            1 => Kind::List,
            2 => Kind::Hash,
            3 => Kind::Set,
            4 => Kind::ZSet,
            5 => Kind::Stream,
            8 => Kind::Trie,
            _ => return None,
        })
    }

    /// The name `TYPE` replies with.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Stream => "stream",
            Kind::Trie => "trietype0",
        }
    }
}

/// A decoded metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value's type.
    pub kind: Kind,
    /// Unix time in milliseconds at which the key expires; 0 for never.
    pub expire_at_ms: u64,
    /// The deadline the expiry index lists the key under when that is earlier than `expire_at_ms`, else 0.
    /// A later deadline leaves the index entry where it was (see [`reindex`]); the record remembers where,
    /// so the entry can be found again. Entries built by commands leave it 0; writes that change the
    /// deadline work it out from the stored record.
    pub indexed_at_ms: u64,
    /// The string value (or a collection's header).
    pub payload: Bytes,
}

impl Entry {
    /// A string value without expiry.
    pub fn string(value: Bytes) -> Entry {
        Entry {
            kind: Kind::String,
            expire_at_ms: 0,
            indexed_at_ms: 0,
            payload: value,
        }
    }

    /// The deadline the expiry index lists this key under (0: not listed).
    pub fn index_at(&self) -> u64 {
        if self.indexed_at_ms != 0 && self.expire_at_ms != 0 {
            self.indexed_at_ms
        } else {
            self.expire_at_ms
        }
    }

    /// The record's header: type (with [`INDEXED_FLAG`] if the index deadline differs), deadline, and
    /// the index deadline `index_at` if it differs.
    fn put_header(&self, index_at: u64, out: &mut impl BufMut) {
        if index_at == self.expire_at_ms || self.expire_at_ms == 0 {
            out.put_u8(self.kind as u8);
            out.put_u64(self.expire_at_ms);
        } else {
            out.put_u8(self.kind as u8 | INDEXED_FLAG);
            out.put_u64(self.expire_at_ms);
            out.put_u64(index_at);
        }
    }

    /// Encodes the record into `out` (cleared first).
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_listed_into(self.index_at(), out);
    }

    /// Encodes the record, listed in the expiry index under `index_at` (what [`reindex`] returned for
    /// it), into `out` (cleared first).
    fn encode_listed_into(&self, index_at: u64, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(INDEXED_HEADER_BYTES + self.payload.len());
        self.put_header(index_at, out);
        out.extend_from_slice(&self.payload);
    }

    /// Encodes this record with its collection header replaced by `header` (what
    /// `Entry { payload: header.to_payload(), ..self }.encode()` gives), without allocating the payload.
    fn encode_with_header_into(&self, header: CollectionHeader, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(INDEXED_HEADER_BYTES + 16);
        self.put_header(self.index_at(), out);
        out.extend_from_slice(&header.version.to_be_bytes());
        out.extend_from_slice(&header.size.to_be_bytes());
    }

    /// The encoded record, listed in the expiry index under `index_at`.
    fn encode_listed(&self, index_at: u64) -> BytesMut {
        let mut out = BytesMut::with_capacity(INDEXED_HEADER_BYTES + self.payload.len());
        self.put_header(index_at, &mut out);
        out.put_slice(&self.payload);
        out
    }

    fn decode(mut raw: Bytes) -> Result<Entry, KvError> {
        let first = raw
            .first()
            .copied()
            .ok_or(KvError::Corrupt("unknown value type"))?;
        let kind =
            Kind::from_byte(first & !INDEXED_FLAG).ok_or(KvError::Corrupt("unknown value type"))?;
        let word = |at: usize| {
            raw.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or(KvError::Corrupt("short metadata record"))
        };
        let expire = word(1)?;
        let header = Self::header_len(&raw);
        let indexed = if header == INDEXED_HEADER_BYTES {
            word(HEADER_BYTES)?
        } else {
            0
        };
        // Advancing the record's own handle past the header moves a pointer; slicing it (and dropping
        // the record) cost a reference-count increment and decrement on every read.
        raw.advance(header);
        Ok(Entry {
            kind,
            expire_at_ms: expire,
            indexed_at_ms: indexed,
            payload: raw,
        })
    }

    /// Bytes before the payload of the encoded record `raw`.
    fn header_len(raw: &[u8]) -> usize {
        match raw.first() {
            Some(b) if b & INDEXED_FLAG != 0 => INDEXED_HEADER_BYTES,
            _ => HEADER_BYTES,
        }
    }
}

/// Errors of keyspace operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The storage engine failed (I/O, poisoned, closed).
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    /// A stored record did not decode.
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
}

/// Where the current time comes from, in Unix milliseconds; tests inject their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// The time at `at`, a monotonic instant read a moment ago, in milliseconds since the Unix epoch. A
    /// clock that cannot tell reads itself.
    fn ms_at(&self, at: std::time::Instant) -> u64 {
        let _ = at;
        self.now_ms()
    }
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        unix_ms(std::time::SystemTime::now())
    }

    /// From the monotonic clock and the wall clock's offset to it, measured again at most once a second
    /// (both run at the same rate; a step of the wall clock shows within that second). A command's
    /// cached time then needs no clock read of its own.
    fn ms_at(&self, at: std::time::Instant) -> u64 {
        use std::sync::atomic::AtomicI64;
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        /// Wall-clock minus monotonic nanoseconds, and the monotonic nanoseconds when it was measured
        /// (0: never).
        static OFFSET_NS: AtomicI64 = AtomicI64::new(0);
        static MEASURED_NS: AtomicU64 = AtomicU64::new(0);
        const REMEASURE_NS: u64 = 1_000_000_000;
        let epoch = *EPOCH.get_or_init(std::time::Instant::now);
        let mono = |t: std::time::Instant| {
            u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
        };
        let at_ns = mono(at);
        let measured = MEASURED_NS.load(Ordering::Relaxed);
        let offset = if measured == 0 || at_ns.abs_diff(measured) > REMEASURE_NS {
            let now = std::time::Instant::now();
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            let now_ns = mono(now).max(1);
            let offset = wall.saturating_sub(i64::try_from(now_ns).unwrap_or(i64::MAX));
            OFFSET_NS.store(offset, Ordering::Relaxed);
            MEASURED_NS.store(now_ns, Ordering::Relaxed);
            offset
        } else {
            OFFSET_NS.load(Ordering::Relaxed)
        };
        let ns = i64::try_from(at_ns)
            .unwrap_or(i64::MAX)
            .saturating_add(offset);
        u64::try_from(ns / 1_000_000).unwrap_or(0)
    }
}

/// `t` in milliseconds since the Unix epoch (0 before it).
fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

thread_local! {
    /// The command-time scope of this thread: how many [`CommandTime`] guards are open, and the time they
    /// share (Unix ms; 0 until a command first asks).
    static COMMAND_TIME: std::cell::Cell<(u32, u64)> = const { std::cell::Cell::new((0, 0)) };
    /// The instant the outermost open [`CommandTime`] scope started at, when it was given one.
    static COMMAND_START: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// While alive, [`Keyspace::now_ms`] on this thread reads the clock once and then answers that reading:
/// Redis's cached command time. A command, a whole script and a whole transaction each see one instant,
/// so a key cannot expire between two of their steps (Redis freezes time the same way), and a command
/// that checks many keys reads the clock once. Guards nest; the outermost one decides the instant.
#[must_use = "the time is frozen only while the guard lives"]
pub struct CommandTime(());

impl CommandTime {
    /// Opens (or joins) this thread's command-time scope.
    pub fn begin() -> Self {
        COMMAND_TIME.with(|c| {
            let (depth, ms) = c.get();
            c.set((depth + 1, ms));
        });
        CommandTime(())
    }

    /// Opens (or joins) this thread's command-time scope; an outermost scope's time is that of `start`,
    /// a monotonic instant just read ([`Clock::ms_at`]).
    pub fn begin_at(start: std::time::Instant) -> Self {
        let outermost = COMMAND_TIME.with(|c| {
            let (depth, ms) = c.get();
            c.set((depth + 1, ms));
            depth == 0
        });
        if outermost {
            COMMAND_START.with(|s| s.set(Some(start)));
        }
        CommandTime(())
    }
}

impl Drop for CommandTime {
    fn drop(&mut self) {
        let outermost = COMMAND_TIME.with(|c| {
            let (depth, ms) = c.get();
            let depth = depth.saturating_sub(1);
            c.set((depth, if depth == 0 { 0 } else { ms }));
            depth == 0
        });
        if outermost {
            COMMAND_START.with(|s| s.set(None));
            // A big record (or key) is not kept past its command: every thread would hold on to the
            // last one it touched.
            LAST_READ.with(|r| {
                let mut last = r.borrow_mut();
                if last.as_ref().is_some_and(|l| {
                    l.key.capacity() + l.raw.as_ref().map_or(0, Bytes::len) > KEPT_READ_BYTES
                }) {
                    *last = None;
                }
            });
        }
    }
}

/// Whether this thread is inside a [`CommandTime`] scope.
fn in_command() -> bool {
    COMMAND_TIME.with(|c| c.get().0 > 0)
}

/// The largest remembered record (key and value) kept past its command; a HyperLogLog is 12 KiB.
const KEPT_READ_BYTES: usize = 64 << 10;

thread_local! {
    /// The record a command on this thread read or wrote last (see [`Keyspace::read_record`]). It stays
    /// past the command: the next command on this thread, often on the same hot key (a counter, a
    /// stream, a HyperLogLog), finds it still valid while nothing was written since.
    static LAST_READ: std::cell::RefCell<Option<LastRead>> = const { std::cell::RefCell::new(None) };
}

/// One record read: which keyspace, tree and key, the storage seqno before the read, and what it found.
struct LastRead {
    /// [`Keyspace::id`]: a keyspace's own, never reused (an address could be, with another database
    /// behind it at the same seqno).
    keyspace: u64,
    tree: usize,
    key: Vec<u8>,
    seqno: u64,
    raw: Option<Bytes>,
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> Self {
        ManualClock(AtomicU64::new(ms))
    }

    /// Moves the clock forward.
    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// All databases of the service.
#[derive(Debug)]
pub struct Keyspace {
    /// Unique in the process, for [`LastRead`].
    id: u64,
    db: Db,
    trees: Vec<Tree>,
    clock: Arc<dyn Clock>,
    locks: Vec<Mutex<()>>,
    /// Next collection version. Starts above any version used before a restart: each version is created
    /// together with a write, so `(seqno at open + 1) << 20` exceeds every earlier one unless a million
    /// collections were created per write, which cannot happen.
    next_version: AtomicU64,
    /// Keys some connection WATCHes, with a counter bumped by every write to them.
    watched: Mutex<std::collections::HashMap<(usize, Bytes), WatchSlot>>,
    /// Number of entries in `watched`, so writes skip the map when nobody watches anything.
    watching: AtomicU64,
    /// Order-statistic trees of hot sorted sets (rank and range in O(log n)); see `cmd/zsets.rs`.
    pub(crate) zset_trees: crate::cmd::zsets::TreeCache,
    /// Stream entries read ahead for consumer groups; see `cmd/streams/read_ahead.rs`.
    pub(crate) stream_reads: crate::cmd::streams::ReadAhead,
    /// Owners of pending stream entries, mirrored from their records; see `cmd/streams/pending_owners.rs`.
    pub(crate) stream_owners: crate::cmd::streams::PendingOwners,
    /// Pending counts of consumer groups; see `cmd/streams/pel_counts.rs`.
    pub(crate) pel_counts: crate::cmd::streams::PelCounts,
    /// Consumer-group records, mirrored from storage; see `cmd/streams/group_records.rs`.
    pub(crate) group_records: crate::cmd::streams::GroupRecords,
    /// Tries of recently used autocomplete dictionaries; see `cmd/suggest.rs`.
    pub(crate) sug_tries: crate::cmd::suggest::TrieCache,
    /// Database index → index into `trees` (SWAPDB permutes it).
    map: Vec<AtomicUsize>,
    /// Where `map` is persisted.
    map_tree: Tree,
    /// Serializes SWAPDBs.
    swap_lock: Mutex<()>,
    /// Keys removed by the active expiry cycle (INFO's `expired_keys`).
    expired: AtomicU64,
    /// The database the next expiry cycle starts with, so one busy database cannot starve the others.
    expire_next_db: AtomicUsize,
    /// Per tree: no expiry index entry has a deadline below this (0: not known), so a cycle skips the
    /// tree's scan until it is due and starts the scan there (see [`Keyspace::expire_cycle_with`]).
    expire_floor: Box<[AtomicU64]>,
    /// Changes since the start, counted as Redis's `server.dirty` (INFO's `rdb_changes_since_last_save`):
    /// one per key a write changes, plus what commands changing several elements add ([`Keyspace::add_dirty`]).
    dirty: AtomicU64,
    /// Keys that surely hold no collection and no TTL, so overwriting them needs no read first.
    plain: Arc<plain::PlainFilter>,
    /// Whether any key may have a TTL (set by the first write of one, or at open when the expiry index
    /// holds entries): until then lazy expiry has nothing to look up.
    ttl_seen: std::sync::atomic::AtomicBool,
    /// The thread building `plain`; joined on drop, as it holds the storage open.
    plain_builder: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Keyspace {
    fn drop(&mut self) {
        self.plain.stop();
        if let Some(t) = self.plain_builder.get_mut().take()
            && t.join().is_err()
        {
            tracing::error!("the plain-key filter scan panicked");
        }
    }
}

/// Fills `filter` from the metadata records of `trees` (tree `i` of the keyspace is `trees[i]`), then
/// declares it ready; gives up (leaving it not ready, so writers keep reading) on an error or a stop.
fn build_plain_filter(trees: &[Tree], filter: &plain::PlainFilter) {
    for (t, tree) in trees.iter().enumerate() {
        for item in tree.prefix(&[META_PREFIX]) {
            if filter.stopping() {
                return;
            }
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::warn!("building the plain-key filter: {e}; overwrites keep reading");
                    return;
                }
            };
            let special = v.first().is_none_or(|&b| b != Kind::String as u8)
                || v.get(1..HEADER_BYTES)
                    .is_none_or(|at| at.iter().any(|&b| b != 0));
            if special {
                filter.mark(t, &k[1..]);
            }
        }
    }
    filter.set_ready();
}

#[derive(Debug, Default)]
struct WatchSlot {
    writes: u64,
    watchers: usize,
}

/// One collection's changes in [`Keyspace::write_collections`].
#[derive(Debug, Clone, Copy)]
pub struct CollectionWrite<'a> {
    /// The collection's key.
    pub key: &'a [u8],
    /// Its metadata record before the change (type and deadline are kept).
    pub entry: &'a Entry,
    /// Its header after the change; size 0 deletes the collection.
    pub header: CollectionHeader,
    /// Elements to store, as (element key, value).
    pub puts: &'a [(&'a [u8], &'a [u8])],
    /// Element keys to delete.
    pub deletes: &'a [&'a [u8]],
}

/// Prefix of collection element records.
const SUB_PREFIX: u8 = b's';

/// The header of a collection's metadata payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionHeader {
    /// Distinguishes this incarnation of the key from earlier ones.
    pub version: u64,
    /// Number of elements.
    pub size: u64,
}

impl CollectionHeader {
    /// Encodes the header as a metadata payload.
    pub fn to_payload(self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_u64(self.version);
        b.put_u64(self.size);
        b.freeze()
    }

    /// Decodes a collection's metadata payload.
    pub fn from_payload(p: &[u8]) -> Result<Self, KvError> {
        let word = |i: usize| {
            p.get(i..i + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or(KvError::Corrupt("short collection header"))
        };
        Ok(CollectionHeader {
            version: word(0)?,
            size: word(8)?,
        })
    }
}

/// The sub-key prefix of one incarnation of a collection: `b's' ++ len(key) u32 ++ key ++ version`.
pub fn sub_prefix(key: &[u8], version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 4 + key.len() + 8);
    sub_prefix_into(key, version, &mut k);
    k
}

/// [`sub_prefix`] written into `out` (cleared first).
fn sub_prefix_into(key: &[u8], version: u64, out: &mut Vec<u8>) {
    out.clear();
    out.push(SUB_PREFIX);
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&version.to_be_bytes());
}

/// Adds range tombstones over every element family of one incarnation of a collection.
fn drop_elements(batch: &mut WriteBatch, tree: &Tree, key: &[u8], version: u64) {
    for family in ELEMENT_FAMILIES {
        let prefix = family_prefix(family, key, version);
        batch.delete_range(tree, &prefix, &prefix_end(&prefix));
    }
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

/// Most bytes a thread's reusable write batch keeps allocated between writes.
const MAX_KEPT_BATCH_BYTES: usize = 64 * 1024;

thread_local! {
    /// The write batch and key and value buffers each thread reuses, so a write does not grow fresh
    /// buffers from nothing every time (a batch grows by doubling: an MSET of ten keys reallocated it
    /// eight times).
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch {
        batch: WriteBatch::new(),
        key: Vec::new(),
        value: Vec::new(),
    });
}

/// Reusable buffers for building one write.
struct Scratch {
    batch: WriteBatch,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// `k` cut back to its first `prefix_len` bytes (a collection's element prefix) with `element` appended:
/// the storage key of that element.
fn element_key<'k>(k: &'k mut Vec<u8>, prefix_len: usize, element: &[u8]) -> &'k [u8] {
    k.truncate(prefix_len);
    k.extend_from_slice(element);
    k
}

/// Adds element puts, then element deletes (an element in both ends up deleted, as before this helper
/// existed), of the collection whose element prefix is `k[..prefix_len]`.
fn add_elements(
    batch: &mut WriteBatch,
    tree: &Tree,
    k: &mut Vec<u8>,
    prefix_len: usize,
    puts: &[(&[u8], &[u8])],
    deletes: &[&[u8]],
) {
    for (element, value) in puts {
        batch.put(tree, element_key(k, prefix_len, element), value);
    }
    for element in deletes {
        batch.delete(tree, element_key(k, prefix_len, element));
    }
}

/// Runs `f` with an empty write batch and empty key and value buffers: the thread's reusable ones, or new
/// ones if they are in use further up the stack.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.batch.clear();
            scratch.key.clear();
            scratch.value.clear();
            let out = f(&mut scratch);
            if scratch.batch.size_bytes() > MAX_KEPT_BATCH_BYTES {
                scratch.batch = WriteBatch::new();
            }
            if scratch.value.capacity() > MAX_KEPT_BATCH_BYTES {
                scratch.value = Vec::new();
            }
            if scratch.key.capacity() > MAX_KEPT_BATCH_BYTES {
                scratch.key = Vec::new();
            }
            out
        }
        Err(_) => f(&mut Scratch {
            batch: WriteBatch::new(),
            key: Vec::new(),
            value: Vec::new(),
        }),
    })
}

thread_local! {
    /// The buffer each thread builds the storage key of a point read in.
    static READ_KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the storage key `build` writes into the thread's read-key buffer (a fresh one if that is
/// in use), so a point read allocates no key.
fn with_read_key<R>(build: impl FnOnce(&mut Vec<u8>), f: impl FnOnce(&[u8]) -> R) -> R {
    READ_KEY.with(|cell| match cell.try_borrow_mut() {
        Ok(mut k) => {
            k.clear();
            build(&mut k);
            let out = f(&k);
            if k.capacity() > MAX_KEPT_BATCH_BYTES {
                *k = Vec::new();
            }
            out
        }
        Err(_) => {
            let mut k = Vec::new();
            build(&mut k);
            f(&k)
        }
    })
}

/// Writes `b'm' ++ key` into `out` (cleared first).
fn meta_key_into(key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(META_PREFIX);
    out.extend_from_slice(key);
}

fn meta_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(META_PREFIX);
    k.extend_from_slice(key);
    k
}

/// The expiry index entry of `key` expiring at `at`.
/// The deadline and key of an expiry index entry (`None` if malformed).
pub(crate) fn split_expire_key(k: &[u8]) -> Option<(u64, &[u8])> {
    let at = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?);
    Some((at, k.get(9..)?))
}

fn expire_key(at: u64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(EXPIRE_PREFIX);
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Adds to `batch` the expiry index changes of `key`, listed under `old` (0: not listed), getting deadline
/// `new` (0: none); returns where the index lists it after (encode the record with it: `Entry::encode_listed_into`).
///
/// The index need only list a key no later than its deadline: the active cycle reads the record of each
/// entry it finds due and moves an early entry to the record's deadline (`expire_pass`). So a deadline
/// pushed later — EXPIRE refreshing a session, a lock or a rate limiter's key — keeps the entry where it is
/// and writes the record alone, instead of a delete and a put of index keys on every refresh.
fn reindex(batch: &mut WriteBatch, tree: &Tree, key: &[u8], old: u64, new: u64) -> u64 {
    if new != 0 && old != 0 && old <= new {
        return old;
    }
    if old != 0 {
        batch.delete(tree, &expire_key(old, key));
    }
    if new != 0 {
        batch.put(tree, &expire_key(new, key), b"");
    }
    new
}

/// The prefix of one element family of one incarnation of a collection.
fn family_prefix(family: u8, key: &[u8], version: u64) -> Vec<u8> {
    let mut k = sub_prefix(key, version);
    k[0] = family;
    k
}

/// Decodes a persisted database map; `None` unless it is a permutation of `0..n`.
fn decode_map(raw: &[u8], n: usize) -> Option<Vec<usize>> {
    if raw.len() != 2 * n {
        return None;
    }
    let map: Vec<usize> = raw
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])))
        .collect();
    let mut seen = vec![false; n];
    for &t in &map {
        if t >= n || std::mem::replace(&mut seen[t], true) {
            return None;
        }
    }
    Some(map)
}

impl Keyspace {
    /// Opens (creating on demand) `databases` trees in `db`.
    pub fn open(db: Db, databases: usize, clock: Arc<dyn Clock>) -> Result<Keyspace, KvError> {
        let trees = (0..databases)
            .map(|i| db.tree(&format!("kv{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        // Compaction reclaims expired keys and dead elements on its own, judging expiry by our clock.
        let filter = Arc::new(compaction::KvFilter::new(clock.clone()));
        for tree in &trees {
            db.set_compaction_filter(tree, filter.clone());
        }
        let next_version = AtomicU64::new((db.seqno() + 1) << 20);
        let map_tree = db.tree(MAP_TREE)?;
        let map = match map_tree.get(MAP_KEY)? {
            None => (0..databases).collect(),
            Some(raw) => decode_map(&raw, databases).unwrap_or_else(|| {
                // Written for another number of databases: swaps are not carried over.
                tracing::warn!("database map does not fit {databases} databases; ignoring SWAPDBs");
                (0..databases).collect()
            }),
        };
        let mut ttl_seen = false;
        for tree in &trees {
            ttl_seen = ttl_seen || tree.prefix(&[EXPIRE_PREFIX]).next().transpose()?.is_some();
        }
        let plain = Arc::new(plain::PlainFilter::default());
        let plain_builder = {
            let (trees, plain) = (trees.clone(), plain.clone());
            std::thread::Builder::new()
                .name("kv-plain-filter".into())
                .spawn(move || build_plain_filter(&trees, &plain))
                .map_err(|e| {
                    tracing::warn!(
                        "cannot start the plain-key filter scan: {e}; overwrites keep reading"
                    );
                })
                .ok()
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(Keyspace {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            db,
            trees,
            plain,
            plain_builder: Mutex::new(plain_builder),
            ttl_seen: std::sync::atomic::AtomicBool::new(ttl_seen),
            clock,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            next_version,
            watched: Mutex::new(std::collections::HashMap::new()),
            watching: AtomicU64::new(0),
            zset_trees: Default::default(),
            stream_reads: Default::default(),
            stream_owners: Default::default(),
            pel_counts: Default::default(),
            group_records: Default::default(),
            sug_tries: Default::default(),
            map: map.into_iter().map(AtomicUsize::new).collect(),
            map_tree,
            swap_lock: Mutex::new(()),
            expired: AtomicU64::new(0),
            expire_next_db: AtomicUsize::new(0),
            expire_floor: (0..databases).map(|_| AtomicU64::new(0)).collect(),
            dirty: AtomicU64::new(0),
        })
    }

    /// Number of databases.
    pub fn databases(&self) -> usize {
        self.trees.len()
    }

    /// Starts watching `key`; returns the write counter to compare at EXEC.
    pub fn watch(&self, db: usize, key: &Bytes) -> u64 {
        let mut w = self.watched.lock();
        let slot = w.entry((db, key.clone())).or_default();
        slot.watchers += 1;
        let writes = slot.writes;
        self.watching.store(w.len() as u64, Ordering::Release);
        writes
    }

    /// Stops one watch of `key`.
    pub fn unwatch(&self, db: usize, key: &Bytes) {
        let mut w = self.watched.lock();
        let k = (db, key.clone());
        if let Some(slot) = w.get_mut(&k) {
            slot.watchers = slot.watchers.saturating_sub(1);
            if slot.watchers == 0 {
                w.remove(&k);
            }
        }
        self.watching.store(w.len() as u64, Ordering::Release);
    }

    /// The write counter of a watched key.
    pub fn watch_writes(&self, db: usize, key: &Bytes) -> u64 {
        self.watched
            .lock()
            .get(&(db, key.clone()))
            .map_or(u64::MAX, |s| s.writes)
    }

    /// Changes since the start, as Redis's `server.dirty` counts them. It never resets: INFO persistence's
    /// `rdb_changes_since_last_save` subtracts the value recorded when the last SAVE/BGSAVE began.
    pub fn dirty(&self) -> u64 {
        self.dirty.load(Ordering::Relaxed)
    }

    /// Adds `n` changes to [`Keyspace::dirty`]: a command that changed several elements of one key in one
    /// write (HSET of three fields, RPUSH of five items) adds what the write itself did not count.
    pub fn add_dirty(&self, n: u64) {
        self.dirty.fetch_add(n, Ordering::Relaxed);
    }

    /// Records a change of `key`: its watchers see a write, and the dirty counter grows by one.
    fn changed(&self, db: usize, key: &[u8]) {
        self.dirty.fetch_add(1, Ordering::Relaxed);
        self.touched(db, key);
    }

    /// Records a write to `key` for its watchers.
    fn touched(&self, db: usize, key: &[u8]) {
        if self.watching.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(slot) = self
            .watched
            .lock()
            .get_mut(&(db, Bytes::copy_from_slice(key)))
        {
            slot.writes += 1;
        }
    }

    /// Records a write to every watched key of `db` (or of every database) for which `affected(db, key)`
    /// holds. As in Redis, emptying or swapping a database only touches watched keys that exist there, so a
    /// WATCH of a missing key survives a FLUSHALL. A storage error counts as affected.
    fn touched_all(&self, db: Option<usize>, affected: impl Fn(usize, &[u8]) -> bool) {
        if self.watching.load(Ordering::Acquire) == 0 {
            return;
        }
        let candidates: Vec<(usize, Bytes)> = self
            .watched
            .lock()
            .keys()
            .filter(|(d, _)| db.is_none_or(|db| db == *d))
            .cloned()
            .collect();
        let hit: Vec<(usize, Bytes)> = candidates
            .into_iter()
            .filter(|(d, k)| affected(*d, k))
            .collect();
        let mut watched = self.watched.lock();
        for k in hit {
            if let Some(slot) = watched.get_mut(&k) {
                slot.writes += 1;
            }
        }
    }

    /// Whether `key` holds a live value in `db` (a storage error answers true, the safe side for WATCH).
    fn exists_or_unknown(&self, db: usize, key: &[u8]) -> bool {
        !matches!(self.get(db, key), Ok(None))
    }

    /// The storage engine underneath.
    pub fn storage(&self) -> &Db {
        &self.db
    }

    /// Now, in Unix milliseconds: inside a [`CommandTime`] scope, the scope's instant.
    pub fn now_ms(&self) -> u64 {
        COMMAND_TIME.with(|c| match c.get() {
            (0, _) => self.clock.now_ms(),
            (depth, 0) => {
                let ms = match COMMAND_START.with(std::cell::Cell::get) {
                    Some(start) => self.clock.ms_at(start),
                    None => self.clock.now_ms(),
                };
                c.set((depth, ms));
                ms
            }
            (_, ms) => ms,
        })
    }

    /// Hints that the sub-record `element` of collection `key` (incarnation `version`) is about to be
    /// written, so a new one's memtable index miss overlaps the rest of the command
    /// ([`Tree::prefetch_write`]). Changes nothing.
    pub fn prefetch_sub(&self, db: usize, key: &[u8], version: u64, element: &[u8]) {
        let tree = self.tree(db);
        with_read_key(
            |k| {
                sub_prefix_into(key, version, k);
                k.extend_from_slice(element);
            },
            |k| tree.prefetch_write(k),
        );
    }

    /// Hints that the record of `key` in `db` is about to be read by a command that was just received
    /// on its own (nothing pipelined after it, see [`crate::lookahead`]): its plain-filter bit and its
    /// memtable index slot start loading. [`Keyspace::prefetch_record_node`] is the second stage, for a
    /// command that does enough before its first read (a script) for the slot to have arrived.
    pub fn prefetch_record_slot(&self, db: usize, key: &[u8]) {
        let tree_index = self.tree_index(db);
        self.plain.prefetch(tree_index, key);
        with_read_key(
            |k| meta_key_into(key, k),
            |k| self.trees[tree_index].prefetch_write(k),
        );
    }

    /// The second stage of [`Keyspace::prefetch_record_slot`]: the record's memtable node starts loading.
    pub fn prefetch_record_node(&self, db: usize, key: &[u8]) {
        with_read_key(
            |k| meta_key_into(key, k),
            |k| self.tree(db).prefetch_node(k),
        );
    }

    /// Hints that the records of `keys` in `db` are about to be read (a pipeline's next commands): their
    /// memtable slots, nodes and values start loading together ([`Tree::prefetch_reads`]). Changes nothing;
    /// keys past the first 16, or past 1 KiB of them, are left out. Returns how many records it found in
    /// memory to load (none: the keys are new, or only on disk, and the hint was for nothing).
    pub fn prefetch_reads(&self, db: usize, keys: &[&[u8]]) -> usize {
        const MAX_KEYS: usize = 16;
        let mut buf = [0u8; 1024];
        let mut ends = [0usize; MAX_KEYS];
        let mut n = 0;
        let mut used = 0;
        let tree_index = self.tree_index(db);
        for key in keys.iter().take(MAX_KEYS) {
            self.plain.prefetch(tree_index, key);
            let Some(room) = buf.get_mut(used..used + 1 + key.len()) else {
                break;
            };
            room[0] = META_PREFIX;
            room[1..].copy_from_slice(key);
            used += room.len();
            ends[n] = used;
            n += 1;
        }
        let mut metas: [&[u8]; MAX_KEYS] = [&[]; MAX_KEYS];
        let mut start = 0;
        for (meta, &end) in metas.iter_mut().zip(&ends[..n]) {
            *meta = &buf[start..end];
            start = end;
        }
        self.trees[tree_index].prefetch_reads(&metas[..n])
    }

    fn tree(&self, db: usize) -> &Tree {
        &self.trees[self.tree_index(db)]
    }

    fn tree_index(&self, db: usize) -> usize {
        self.map[db.min(self.map.len() - 1)].load(Ordering::Acquire)
    }

    /// Notes that `entry` is about to be stored at `key`: marks it in the plain-key filter if it is a
    /// collection or has a TTL. Returns whether the record it replaces is surely at most a string without
    /// TTL (or missing), so it needs no read to be cleaned up after. The caller holds the key's stripe.
    fn note_write(&self, db: usize, key: &[u8], entry: &Entry) -> bool {
        let t = self.tree_index(db);
        if entry.expire_at_ms != 0 && !self.ttl_seen.load(Ordering::Relaxed) {
            self.ttl_seen.store(true, Ordering::Relaxed);
        }
        if entry.kind != Kind::String || entry.expire_at_ms != 0 {
            self.plain.mark(t, key)
        } else {
            self.plain.surely_plain(t, key)
        }
    }

    /// Whether the plain-key filter has been built (tests wait for it).
    #[doc(hidden)]
    pub fn plain_filter_ready(&self) -> bool {
        self.plain.is_ready()
    }

    fn stripe(db: usize, key: &[u8]) -> usize {
        // The memtable's key hash, eight bytes a step: FNV-1a's byte-at-a-time multiply chain was an
        // eighth of the command dispatch (`run_spec`) under EVALSHA -P16.
        let h = strata_storage::memtable::key_hash(db as u32, key);
        (h % LOCK_STRIPES as u64) as usize
    }

    /// Locks the stripe of one key for a read-modify-write.
    pub fn lock(&self, db: usize, key: &[u8]) -> MutexGuard<'_, ()> {
        self.locks[Self::stripe(db, key)].lock()
    }

    /// Locks the stripes of several keys, in stripe order so two multi-key commands cannot deadlock.
    pub fn lock_many<'a>(
        &'a self,
        db: usize,
        keys: impl Iterator<Item = &'a [u8]>,
    ) -> Vec<MutexGuard<'a, ()>> {
        let mut stripes: Vec<usize> = keys.map(|k| Self::stripe(db, k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes.into_iter().map(|s| self.locks[s].lock()).collect()
    }

    /// The live entry of `key`, or `None` if it is missing or expired.
    pub fn get(&self, db: usize, key: &[u8]) -> Result<Option<Entry>, KvError> {
        let raw = self.read_record(db, key)?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let entry = Entry::decode(raw)?;
        if is_expired(entry.expire_at_ms, self.now_ms()) {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// Stores `entry` under `key`, replacing whatever was there (a replaced collection's elements are
    /// dropped with one range tombstone).
    pub fn put(&self, db: usize, key: &[u8], entry: &Entry) -> Result<(), KvError> {
        self.changed(db, key);
        let tree = self.tree(db);
        let (old_index, old_prefix) = if self.note_write(db, key, entry) {
            (0, None)
        } else {
            self.old_record(db, key)?
        };
        // Rewriting a collection's own metadata (EXPIRE, PERSIST) keeps its elements.
        let same_collection = |prefix: &Vec<u8>| {
            entry.kind != Kind::String
                && CollectionHeader::from_payload(&entry.payload)
                    .is_ok_and(|h| *prefix == sub_prefix(key, h.version))
        };
        let old_prefix = old_prefix.filter(|p| !same_collection(p));
        with_scratch(|scratch| {
            let batch = &mut scratch.batch;
            if let Some(prefix) = old_prefix {
                batch.delete_range(tree, &prefix, &prefix_end(&prefix));
            }
            let index_at = reindex(batch, tree, key, old_index, entry.expire_at_ms);
            meta_key_into(key, &mut scratch.key);
            entry.encode_listed_into(index_at, &mut scratch.value);
            if batch.is_empty() {
                let seqno = tree.put_deferred(&scratch.key, &scratch.value)?.seqno();
                self.remember_written(db, key, seqno, &scratch.value);
                return Ok(());
            }
            batch.put(tree, &scratch.key, &scratch.value);
            let seqno = self.db.write_deferred(batch)?.seqno;
            self.remember_written(db, key, seqno, &scratch.value);
            if index_at != old_index {
                self.indexed(db, index_at);
            }
            Ok(())
        })
    }

    /// Rewrites byte ranges of the string payload stored at `key`: `pieces` are (offset in the payload,
    /// bytes), applied in order; writing past the end zero-fills the gap. Only the pieces reach the WAL
    /// (see [`strata_storage::PatchBuilder`]), so changing a HyperLogLog register or one bit of a large
    /// bitmap logs a few bytes instead of the whole string.
    ///
    /// The caller holds the key's lock and has read a live string there; its kind and deadline stay.
    pub fn patch_string<'p>(
        &self,
        db: usize,
        key: &[u8],
        pieces: impl IntoIterator<Item = (usize, &'p [u8])>,
    ) -> Result<(), KvError> {
        self.changed(db, key);
        // The caller's read is remembered, so this costs no lookup.
        let header = self
            .read_record(db, key)?
            .map_or(HEADER_BYTES, |raw| Entry::header_len(&raw));
        let mut patch = strata_storage::PatchBuilder::new();
        for (offset, bytes) in pieces {
            patch.write(header + offset, bytes);
        }
        if patch.is_empty() {
            return Ok(());
        }
        with_scratch(|scratch| {
            meta_key_into(key, &mut scratch.key);
            self.tree(db).patch_deferred(&scratch.key, &patch)?;
            Ok(())
        })
    }

    /// The index deadline (0 if none or missing; see [`Entry::index_at`]) and the element prefix (if a
    /// collection) of the record, live or expired, stored at `key`.
    fn old_record(&self, db: usize, key: &[u8]) -> Result<(u64, Option<Vec<u8>>), KvError> {
        let raw = self.read_record(db, key)?;
        self.decode_old(key, raw)
    }

    /// The raw record stored at `key`, live or expired.
    ///
    /// A command reads its key's record up to three times: lazy expiry before it runs, its own read, and the
    /// old record its write replaces. A command's last read is remembered with the storage seqno taken
    /// before it; while the seqno has not moved nothing was written anywhere, so the same read is answered
    /// from memory, in this command or a later one on the same thread (any write moves the seqno and voids
    /// it, except that a record the command itself writes is remembered at its write's seqno: see
    /// [`Keyspace::remember_written`]).
    fn read_record(&self, db: usize, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let tree_index = self.tree_index(db);
        let me = self.id;
        if !in_command() {
            return Ok(with_read_key(
                |k| meta_key_into(key, k),
                |k| self.trees[tree_index].get(k),
            )?);
        }
        let seqno = self.db.seqno();
        let remembered = LAST_READ.with(|r| {
            r.borrow().as_ref().and_then(|last| {
                (last.seqno == seqno
                    && last.keyspace == me
                    && last.tree == tree_index
                    && last.key == key)
                    .then(|| last.raw.clone())
            })
        });
        if let Some(raw) = remembered {
            return Ok(raw);
        }
        let raw = with_read_key(|k| meta_key_into(key, k), |k| self.trees[tree_index].get(k))?;
        self.remember(tree_index, key, seqno, raw.clone());
        Ok(raw)
    }

    /// Remembers that `key` of tree `tree_index` held `raw` at storage seqno `seqno` (see
    /// [`Keyspace::read_record`]).
    fn remember(&self, tree_index: usize, key: &[u8], seqno: u64, raw: Option<Bytes>) {
        let me = self.id;
        LAST_READ.with(|r| {
            let mut last = r.borrow_mut();
            match last.as_mut() {
                Some(l) => {
                    l.keyspace = me;
                    l.tree = tree_index;
                    l.key.clear();
                    l.key.extend_from_slice(key);
                    l.seqno = seqno;
                    l.raw = raw;
                }
                None => {
                    *last = Some(LastRead {
                        keyspace: me,
                        tree: tree_index,
                        key: key.to_vec(),
                        seqno,
                        raw,
                    })
                }
            }
        });
    }

    /// Remembers the record a command just wrote at `key`, as though read at `seqno`, the seqno of that
    /// write: while the storage seqno stays there, nothing was written after it, so it is what a read would
    /// find. A script's commands (INCR, then EXPIRE, then GET of one key) each check expiry and read the
    /// key again after the previous one wrote it; those reads cost no lookup.
    fn remember_written(&self, db: usize, key: &[u8], seqno: u64, raw: &[u8]) {
        if in_command() {
            self.remember(
                self.tree_index(db),
                key,
                seqno,
                Some(Bytes::copy_from_slice(raw)),
            );
        }
    }

    /// Notes that a batch taking seqnos `first..=last` left `key`'s record alone: a record remembered at
    /// the seqno just before it is still what a read would find at `last` (nothing else was written in
    /// between, or the seqnos would not follow on).
    fn remember_unchanged(&self, db: usize, key: &[u8], first: u64, last: u64) {
        let tree = self.tree_index(db);
        LAST_READ.with(|r| {
            if let Some(l) = r.borrow_mut().as_mut()
                && l.keyspace == self.id
                && l.tree == tree
                && l.seqno + 1 == first
                && l.key == key
            {
                l.seqno = last;
            }
        });
    }

    /// [`Keyspace::old_record`] of an already read record.
    fn decode_old(
        &self,
        key: &[u8],
        raw: Option<Bytes>,
    ) -> Result<(u64, Option<Vec<u8>>), KvError> {
        let Some(raw) = raw else {
            return Ok((0, None));
        };
        let entry = Entry::decode(raw)?;
        if entry.kind == Kind::String {
            return Ok((entry.index_at(), None));
        }
        let h = CollectionHeader::from_payload(&entry.payload)?;
        Ok((entry.index_at(), Some(sub_prefix(key, h.version))))
    }

    /// Stores several string entries atomically.
    pub fn put_many(&self, db: usize, entries: &[(&[u8], Entry)]) -> Result<(), KvError> {
        for (key, _) in entries {
            self.changed(db, key);
        }
        let tree = self.tree(db);
        // The records that may need cleaning up after, read in one go.
        let unknown: Vec<Vec<u8>> = entries
            .iter()
            .filter(|(key, entry)| !self.note_write(db, key, entry))
            .map(|(key, _)| meta_key(key))
            .collect();
        let mut olds = if unknown.is_empty() {
            Vec::new()
        } else {
            tree.multi_get(&unknown)?
        }
        .into_iter();
        let mut unknown = unknown.iter();
        with_scratch(|scratch| {
            let Scratch {
                batch,
                key: mkey,
                value,
            } = scratch;
            // The earliest deadline this batch indexes (0: none).
            let mut earliest = 0;
            for (key, entry) in entries {
                meta_key_into(key, mkey);
                let (old_index, old_prefix) = if unknown.as_slice().first() == Some(mkey) {
                    unknown.next();
                    self.decode_old(key, olds.next().flatten())?
                } else {
                    (0, None)
                };
                if let Some(prefix) = old_prefix {
                    batch.delete_range(tree, &prefix, &prefix_end(&prefix));
                }
                let index_at = reindex(batch, tree, key, old_index, entry.expire_at_ms);
                if index_at != old_index && index_at != 0 {
                    earliest = match earliest {
                        0 => index_at,
                        e => e.min(index_at),
                    };
                }
                entry.encode_listed_into(index_at, value);
                batch.put(tree, mkey, value);
            }
            self.db.write_deferred(batch)?;
            self.indexed(db, earliest);
            Ok(())
        })
    }

    /// Moves `entry` from `from` to `to` in one atomic batch (RENAME). A collection's elements are copied
    /// under a new version (O(n), as in Redis-on-LSM designs); whatever `to` held is dropped.
    pub fn rename(&self, db: usize, from: &[u8], to: &[u8], entry: &Entry) -> Result<(), KvError> {
        self.transfer(db, from, db, to, entry, true)
    }

    /// Copies (or, with `remove_source`, moves) the live `entry` of `from` in database `src` to `to` in
    /// database `dst`, in one atomic batch: COPY, MOVE and RENAME. The TTL goes along; a collection's
    /// elements are copied under a fresh version; whatever `to` held is dropped.
    pub fn transfer(
        &self,
        src: usize,
        from: &[u8],
        dst: usize,
        to: &[u8],
        entry: &Entry,
        remove_source: bool,
    ) -> Result<(), KvError> {
        if remove_source {
            self.touched(src, from);
        }
        self.changed(dst, to);
        let (src_tree, dst_tree) = (self.tree(src), self.tree(dst));
        let mut batch = WriteBatch::new();
        // Whatever `to` held goes first.
        if let Some(raw) = dst_tree.get(&meta_key(to))? {
            let old = Entry::decode(raw)?;
            reindex(&mut batch, dst_tree, to, old.index_at(), 0);
            if old.kind != Kind::String {
                let h = CollectionHeader::from_payload(&old.payload)?;
                drop_elements(&mut batch, dst_tree, to, h.version);
            }
        }
        if remove_source {
            // Where the index lists the source is the stored record's business, not `entry`'s.
            let stored = match src_tree.get(&meta_key(from))? {
                Some(raw) => Entry::decode(raw)?.index_at(),
                None => 0,
            };
            batch.delete(src_tree, &meta_key(from));
            reindex(&mut batch, src_tree, from, stored, 0);
        }
        let moved = if entry.kind == Kind::String {
            entry.clone()
        } else {
            let old = CollectionHeader::from_payload(&entry.payload)?;
            let version = self.new_version();
            for family in ELEMENT_FAMILIES {
                let old_prefix = family_prefix(family, from, old.version);
                let new_prefix = family_prefix(family, to, version);
                let mut k = new_prefix.clone();
                for item in src_tree.prefix(&old_prefix) {
                    let (element, value) = item?;
                    k.truncate(new_prefix.len());
                    k.extend_from_slice(&element[old_prefix.len()..]);
                    batch.put(dst_tree, &k, &value);
                }
            }
            if remove_source {
                drop_elements(&mut batch, src_tree, from, old.version);
            }
            // The new version replaces the first word; the rest (size, a list's head) stays valid because
            // elements keep their element keys.
            let mut payload = BytesMut::from(&entry.payload[..]);
            payload[..8].copy_from_slice(&version.to_be_bytes());
            Entry {
                kind: entry.kind,
                expire_at_ms: entry.expire_at_ms,
                indexed_at_ms: 0,
                payload: payload.freeze(),
            }
        };
        self.note_write(dst, to, &moved);
        let index_at = reindex(&mut batch, dst_tree, to, 0, moved.expire_at_ms);
        batch.put(dst_tree, &meta_key(to), &moved.encode_listed(index_at));
        self.db.write_deferred(&batch)?;
        self.indexed(dst, index_at);
        Ok(())
    }

    /// Deletes `key`; returns whether a live key was there. A collection's elements go with one range
    /// tombstone, so this is O(1) whatever its size.
    pub fn delete(&self, db: usize, key: &[u8]) -> Result<bool, KvError> {
        let live = self.delete_record(db, key)?;
        if live {
            self.dirty.fetch_add(1, Ordering::Relaxed);
        }
        Ok(live)
    }

    /// [`Keyspace::delete`] without counting a change (active expiry, as Redis's expiry does not).
    fn delete_record(&self, db: usize, key: &[u8]) -> Result<bool, KvError> {
        self.touched(db, key);
        let tree = self.tree(db);
        // Usually read already (lazy expiry, the command's own check), so remembered.
        let Some(raw) = self.read_record(db, key)? else {
            return Ok(false);
        };
        let entry = Entry::decode(raw)?;
        let live = !is_expired(entry.expire_at_ms, self.now_ms());
        // An expired record is deleted too, so its space is reclaimed.
        let mut batch = WriteBatch::new();
        batch.delete(tree, &meta_key(key));
        reindex(&mut batch, tree, key, entry.index_at(), 0);
        if entry.kind != Kind::String {
            let prefix = sub_prefix(key, CollectionHeader::from_payload(&entry.payload)?.version);
            batch.delete_range(tree, &prefix, &prefix_end(&prefix));
        }
        let seqno = self.db.write_deferred(&batch)?.seqno;
        if in_command() {
            self.remember(self.tree_index(db), key, seqno, None);
        }
        Ok(live)
    }

    /// A fresh collection version.
    pub fn new_version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }

    /// The live collection of type `kind` at `key`: `Ok(Some((entry, header)))`, `Ok(None)` if missing,
    /// `Err(None)` if the key holds another type.
    pub fn get_collection(
        &self,
        db: usize,
        key: &[u8],
        kind: Kind,
    ) -> Result<Option<(Entry, CollectionHeader)>, Option<KvError>> {
        match self.get(db, key).map_err(Some)? {
            None => Ok(None),
            Some(e) if e.kind != kind => Err(None),
            Some(e) => {
                let h = CollectionHeader::from_payload(&e.payload).map_err(Some)?;
                Ok(Some((e, h)))
            }
        }
    }

    /// Reads one element of a collection.
    pub fn get_element(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        element: &[u8],
    ) -> Result<Option<Bytes>, KvError> {
        let tree = self.tree(db);
        let build = |k: &mut Vec<u8>| {
            sub_prefix_into(key, version, k);
            k.extend_from_slice(element);
        };
        Ok(with_read_key(build, |k| tree.get(k))?)
    }

    /// Reads several elements of a collection at once, all at one point in time; the values come in the
    /// order of `elements`.
    pub fn get_elements<E: AsRef<[u8]>>(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        elements: &[E],
    ) -> Result<Vec<Option<Bytes>>, KvError> {
        if let [one] = elements {
            return Ok(vec![self.get_element(db, key, version, one.as_ref())?]);
        }
        let prefix = sub_prefix(key, version);
        let keys: Vec<Vec<u8>> = elements
            .iter()
            .map(|e| {
                let mut k = Vec::with_capacity(prefix.len() + e.as_ref().len());
                k.extend_from_slice(&prefix);
                k.extend_from_slice(e.as_ref());
                k
            })
            .collect();
        Ok(self.tree(db).multi_get(&keys)?)
    }

    /// The values of a collection's elements with element keys in `[start, end)`, in order, at most
    /// `limit`, each passed through `map` (LRANGE: the element keys themselves are not needed, and the
    /// values go straight into reply frames).
    #[allow(clippy::too_many_arguments)]
    pub fn element_values<T>(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        start: &[u8],
        end: &[u8],
        limit: usize,
        mut map: impl FnMut(Bytes) -> T,
    ) -> Result<Vec<T>, KvError> {
        let prefix = sub_prefix(key, version);
        let mut lo = Vec::with_capacity(prefix.len() + start.len());
        lo.extend_from_slice(&prefix);
        lo.extend_from_slice(start);
        let mut hi = prefix;
        hi.extend_from_slice(end);
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self.tree(db).range(lo..hi).take(limit) {
            out.push(map(item?.1));
        }
        Ok(out)
    }

    /// Every (element, value) of a collection, in element order.
    pub fn elements(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        let prefix = sub_prefix(key, version);
        let mut out = Vec::new();
        for item in self.tree(db).prefix(&prefix) {
            let (k, v) = item?;
            out.push((k.slice(prefix.len()..), v));
        }
        Ok(out)
    }

    /// Like [`Keyspace::write_collection`] for collections whose payload carries more than the common
    /// header (lists keep their head index): `entry` already holds the new payload; `range_deletes` are
    /// element-key ranges `[start, end)` to drop (relative to the collection's element prefix).
    #[allow(clippy::too_many_arguments)]
    pub fn write_collection_raw(
        &self,
        db: usize,
        key: &[u8],
        entry: &Entry,
        version: u64,
        size: u64,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
        range_deletes: &[(&[u8], &[u8])],
    ) -> Result<(), KvError> {
        self.changed(db, key);
        let tree = self.tree(db);
        with_scratch(|scratch| {
            let Scratch {
                batch,
                key: k,
                value,
            } = scratch;
            sub_prefix_into(key, version, k);
            let prefix_len = k.len();
            for (start, end) in range_deletes {
                let start = element_key(k, prefix_len, start).to_vec();
                batch.delete_range(tree, &start, element_key(k, prefix_len, end));
            }
            // Deletes first, so an element both deleted and put ends up put.
            for element in deletes {
                batch.delete(tree, element_key(k, prefix_len, element));
            }
            for (element, value) in puts {
                batch.put(tree, element_key(k, prefix_len, element), value);
            }
            if size == 0 {
                let prefix = element_key(k, prefix_len, b"").to_vec();
                batch.delete(tree, &meta_key(key));
                reindex(batch, tree, key, entry.index_at(), 0);
                batch.delete_range(tree, &prefix, &prefix_end(&prefix));
            } else {
                self.note_write(db, key, entry);
                meta_key_into(key, k);
                entry.encode_into(value);
                batch.put(tree, k, value);
            }
            self.db.write_deferred(batch)?;
            Ok(())
        })
    }

    /// Elements of a collection with element keys in `[start, end)`, in order, at most `limit`.
    pub fn element_range(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        let prefix = sub_prefix(key, version);
        let mut lo = prefix.clone();
        lo.extend_from_slice(start);
        let mut hi = prefix.clone();
        hi.extend_from_slice(end);
        let mut out = Vec::new();
        for item in self.tree(db).range(lo..hi).take(limit) {
            let (k, v) = item?;
            out.push((k.slice(prefix.len()..), v));
        }
        Ok(out)
    }

    /// Applies element puts and deletes and the new metadata record of a collection in one atomic batch;
    /// a collection left empty is deleted, as Redis does.
    pub fn write_collection(
        &self,
        db: usize,
        key: &[u8],
        entry: &Entry,
        header: CollectionHeader,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), KvError> {
        self.write_collections(
            db,
            &[CollectionWrite {
                key,
                entry,
                header,
                puts,
                deletes,
            }],
        )
    }

    /// [`Keyspace::write_collection`] for several collections of one database in one atomic batch (SMOVE).
    pub fn write_collections(
        &self,
        db: usize,
        writes: &[CollectionWrite<'_>],
    ) -> Result<(), KvError> {
        let tree = self.tree(db);
        with_scratch(|scratch| {
            let Scratch {
                batch,
                key: k,
                value,
            } = scratch;
            for w in writes {
                let (key, entry, header) = (w.key, w.entry, w.header);
                self.changed(db, key);
                sub_prefix_into(key, header.version, k);
                let prefix_len = k.len();
                add_elements(batch, tree, k, prefix_len, w.puts, w.deletes);
                if header.size == 0 {
                    k.truncate(prefix_len);
                    batch.delete_range(tree, k, &prefix_end(k));
                    batch.delete(tree, &meta_key(key));
                    reindex(batch, tree, key, entry.index_at(), 0);
                } else {
                    // The record is the old one with the new header: type, deadline, version, size.
                    self.note_write(db, key, entry);
                    meta_key_into(key, k);
                    entry.encode_with_header_into(header, value);
                    batch.put(tree, k, value);
                }
            }
            self.db.write_deferred(batch)?;
            Ok(())
        })
    }

    /// Applies element puts and deletes to a stored collection whose metadata record does not change (its
    /// size stays the same: HSET of existing fields, ZADD of new scores for existing members), so the
    /// record is not rewritten — one storage record less per such write. The caller holds the key's stripe
    /// and has read the live record, whose version is `version`.
    pub fn write_elements(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), KvError> {
        self.changed(db, key);
        let tree = self.tree(db);
        with_scratch(|scratch| {
            let Scratch { batch, key: k, .. } = scratch;
            sub_prefix_into(key, version, k);
            let prefix_len = k.len();
            if let ([(element, value)], []) = (puts, deletes) {
                // One record: no batch to build.
                k.extend_from_slice(element);
                tree.put_deferred(k, value)?;
                return Ok(());
            }
            add_elements(batch, tree, k, prefix_len, puts, deletes);
            self.db.write_deferred(batch)?;
            Ok(())
        })
    }

    /// Removes every key of one database.
    pub fn flush_db(&self, db: usize) -> Result<(), KvError> {
        self.touched_all(Some(db), |d, k| self.exists_or_unknown(d, k));
        self.stream_reads.clear();
        self.stream_owners.clear();
        self.pel_counts.clear();
        self.group_records.clear();
        self.dirty.fetch_add(1, Ordering::Relaxed);
        Ok(self.tree(db).clear()?)
    }

    /// Removes every key of every database, atomically.
    pub fn flush_all(&self) -> Result<(), KvError> {
        self.touched_all(None, |d, k| self.exists_or_unknown(d, k));
        self.stream_reads.clear();
        self.stream_owners.clear();
        self.pel_counts.clear();
        self.group_records.clear();
        self.dirty.fetch_add(1, Ordering::Relaxed);
        let mut batch = WriteBatch::new();
        for tree in &self.trees {
            batch.clear_tree(tree);
        }
        self.db.write_deferred(&batch)?;
        Ok(())
    }

    /// One step of SCAN: visits up to `budget` records after `after` (from the start when `None`) and
    /// returns the live keys among them for which `keep(key, kind)` holds, plus the last key visited, or
    /// `None` when the database is exhausted.
    pub fn scan(
        &self,
        db: usize,
        after: Option<&[u8]>,
        budget: usize,
        mut keep: impl FnMut(&[u8], Kind) -> bool,
    ) -> Result<(Vec<Bytes>, Option<Bytes>), KvError> {
        use std::ops::Bound;
        let now = self.now_ms();
        let start = match after {
            Some(k) => Bound::Excluded(meta_key(k)),
            None => Bound::Included(vec![META_PREFIX]),
        };
        let end = Bound::Excluded(vec![META_PREFIX + 1]);
        let mut out = Vec::new();
        let mut last = None;
        let mut visited = 0;
        for item in self.tree(db).range::<Vec<u8>, _>((start, end)) {
            let (k, v) = item?;
            let entry = Entry::decode(v)?;
            let user_key = k.slice(1..);
            let live = !is_expired(entry.expire_at_ms, now);
            if live && keep(&user_key, entry.kind) {
                out.push(user_key.clone());
            }
            visited += 1;
            if visited >= budget {
                last = Some(user_key);
                break;
            }
        }
        Ok((out, last))
    }

    /// The number of live keys of one database, and how many of them have a TTL.
    pub fn count(&self, db: usize) -> Result<(u64, u64), KvError> {
        let now = self.now_ms();
        let (mut keys, mut expires) = (0, 0);
        for item in self.tree(db).prefix(&[META_PREFIX]) {
            let (_k, v) = item?;
            let entry = Entry::decode(v)?;
            if entry.expire_at_ms == 0 {
                keys += 1;
            } else if !is_expired(entry.expire_at_ms, now) {
                keys += 1;
                expires += 1;
            }
        }
        Ok((keys, expires))
    }

    /// Live keys of one database, in key order, for which `keep` holds (KEYS, DBSIZE, SCAN).
    pub fn keys(
        &self,
        db: usize,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<Bytes>, KvError> {
        let now = self.now_ms();
        let mut out = Vec::new();
        for item in self.tree(db).prefix(&[META_PREFIX]) {
            let (k, v) = item?;
            let entry = Entry::decode(v)?;
            if is_expired(entry.expire_at_ms, now) {
                continue;
            }
            let user_key = k.slice(1..);
            if keep(&user_key) {
                out.push(user_key);
            }
        }
        Ok(out)
    }

    /// Swaps databases `a` and `b` (SWAPDB): two entries of the database map change, nothing is copied.
    /// The map is persisted before it is switched, so an acknowledged swap survives a restart. The caller
    /// must keep every other command out meanwhile (the exclusive execution lock), so no command sees the
    /// swap half-way through; watchers of either database see a write.
    pub fn swap_db(&self, a: usize, b: usize) -> Result<(), KvError> {
        let _serial = self.swap_lock.lock();
        let mut map: Vec<usize> = self.map.iter().map(|m| m.load(Ordering::Acquire)).collect();
        map.swap(a, b);
        let raw: Vec<u8> = map
            .iter()
            .flat_map(|&t| u16::try_from(t).unwrap_or(u16::MAX).to_be_bytes())
            .collect();
        self.map_tree.put(MAP_KEY, &raw)?;
        self.map[a].store(map[a], Ordering::Release);
        self.map[b].store(map[b], Ordering::Release);
        // A watched key is affected if it exists on either side of the swap.
        let either =
            |_: usize, k: &[u8]| self.exists_or_unknown(a, k) || self.exists_or_unknown(b, k);
        self.touched_all(Some(a), either);
        self.touched_all(Some(b), either);
        Ok(())
    }

    /// Locks the stripes of keys in several databases (COPY, MOVE), in stripe order.
    pub fn lock_keys<'a>(&'a self, keys: &[(usize, &[u8])]) -> Vec<MutexGuard<'a, ()>> {
        let mut stripes: Vec<usize> = keys.iter().map(|(db, k)| Self::stripe(*db, k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes.into_iter().map(|s| self.locks[s].lock()).collect()
    }

    /// A random live key of `db` (RANDOMKEY), or `None` if it has none. It seeks to a random point between
    /// the first and the last key and picks one of the next live keys (wrapping around), so it costs a seek
    /// and a short read rather than a scan.
    pub fn random_key(&self, db: usize, mut seed: u64) -> Result<Option<Bytes>, KvError> {
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let tree = self.tree(db);
        let now = self.now_ms();
        let (Some(first), Some(last)) = (
            tree.prefix(&[META_PREFIX]).next().transpose()?,
            tree.prefix(&[META_PREFIX]).next_back().transpose()?,
        ) else {
            return Ok(None);
        };
        let (first, last) = (&first.0[1..], &last.0[1..]);
        // A probe sharing the common prefix of the first and the last key, then a random byte between
        // theirs, then random bytes.
        let common = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        let mut probe = vec![META_PREFIX];
        probe.extend_from_slice(&first[..common]);
        let lo = u64::from(first.get(common).copied().unwrap_or(0));
        let hi = u64::from(last.get(common).copied().unwrap_or(0));
        probe.push((lo + rand() % (hi - lo.min(hi) + 1)) as u8);
        probe.extend_from_slice(&rand().to_be_bytes());
        let live = |item: Result<(Bytes, Bytes), StorageError>| -> Result<Option<Bytes>, KvError> {
            let (k, v) = item?;
            let e = Entry::decode(v)?;
            Ok((!is_expired(e.expire_at_ms, now)).then(|| k.slice(1..)))
        };
        // The answer is drawn uniformly from the WINDOW live keys that follow the probe: a key's chance is
        // then the average of the gaps before the WINDOW keys up to it rather than its own gap, which is
        // close to uniform, and exactly uniform in a database of at most WINDOW keys.
        const WINDOW: usize = 64;
        // Bounded work when most keys are expired but not yet removed.
        const MAX_VISITS: usize = 1000;
        let mut window = Vec::with_capacity(WINDOW);
        for item in tree
            .range(probe.clone()..vec![META_PREFIX + 1])
            .chain(tree.range(vec![META_PREFIX]..probe))
            .take(MAX_VISITS)
        {
            if let Some(k) = live(item)? {
                window.push(k);
                if window.len() == WINDOW {
                    break;
                }
            }
        }
        if window.is_empty() {
            return Ok(None);
        }
        let pick = (rand() % window.len() as u64) as usize;
        Ok(Some(window.swap_remove(pick)))
    }

    /// One pass of active expiry: walks the expiry index of each database (starting with a different one
    /// each pass) from the earliest deadline up to `now_ms`, visiting at most `budget` entries in all, and
    /// deletes the keys whose metadata confirms they expired. Entries left behind by an overwritten or
    /// re-expired key are removed without touching the key; an entry whose key's record compaction
    /// already reclaimed (see `compaction`) counts as that key's expiry. Returns the number of keys
    /// deleted.
    pub fn expire_cycle(&self, now_ms: u64, budget: usize) -> Result<usize, KvError> {
        self.expire_cycle_with(now_ms, budget, |_, _| {})
    }

    /// [`Keyspace::expire_cycle`], calling `on_expired(db, key)` for each key it removes (keyspace
    /// notifications' `expired` event).
    pub fn expire_cycle_with(
        &self,
        now_ms: u64,
        budget: usize,
        mut on_expired: impl FnMut(usize, &[u8]),
    ) -> Result<usize, KvError> {
        // No key ever had a TTL, so the index is empty: its range read would only make the memtable
        // order the keys written since the last tick, for nothing.
        if !self.may_expire() {
            return Ok(0);
        }
        let n = self.map.len();
        let first = self.expire_next_db.fetch_add(1, Ordering::Relaxed) % n;
        let (mut visited, mut expired) = (0, 0);
        for db in (first..n).chain(0..first) {
            if visited >= budget {
                break;
            }
            // Every deadline in this tree's index is at or after now: nothing is due, and no scan (whose
            // range read would make the memtable order every key written since the last one).
            let floor = &self.expire_floor[self.tree_index(db)];
            if floor.load(Ordering::SeqCst) >= now_ms {
                continue;
            }
            // The pass starts at the floor: no entry is below it, so the scan does not walk the
            // tombstones of the entries earlier passes removed (the index's first keys, until compaction
            // drops them). Correct only because every write that indexes a key lowers the floor
            // (`indexed`).
            let from = floor.swap(u64::MAX, Ordering::SeqCst);
            std::sync::atomic::fence(Ordering::SeqCst);
            // The first deadline left after this pass: `from` (scan from there again) unless the pass
            // saw it.
            let mut next_at = from;
            let pass = self.expire_pass(
                db,
                now_ms,
                from,
                budget - visited,
                &mut next_at,
                &mut on_expired,
            );
            floor.fetch_min(next_at, Ordering::SeqCst);
            let (v, e) = pass?;
            visited += v;
            expired += e;
        }
        self.expired.fetch_add(expired as u64, Ordering::Relaxed);
        Ok(expired)
    }

    /// Lowers `db`'s expiry floor to `at` (0: nothing indexed), after a write that indexed a key
    /// under that deadline committed.
    ///
    /// Together with the cycle's side this is a store-then-load handshake on both sides: the writer's
    /// commit, then a fence, then its read of the floor; the cycle's reset of the floor, then a fence, then
    /// its snapshot. Either the writer sees the reset and lowers the floor itself, or its write is in the
    /// cycle's snapshot and the floor the cycle sets is at most its deadline.
    fn indexed(&self, db: usize, at: u64) {
        if at == 0 {
            return;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        let floor = &self.expire_floor[self.tree_index(db)];
        if at < floor.load(Ordering::SeqCst) {
            floor.fetch_min(at, Ordering::SeqCst);
        }
    }

    /// One pass over `db`'s due index entries (deadlines strictly before `now_ms`: a key at its deadline
    /// is still alive, as in Redis) from deadline `from` on (none is below it), at most `budget` of them.
    /// Sets `next_at` to the first deadline left. Returns (entries visited, keys expired).
    fn expire_pass(
        &self,
        db: usize,
        now_ms: u64,
        from: u64,
        budget: usize,
        next_at: &mut u64,
        on_expired: &mut impl FnMut(usize, &[u8]),
    ) -> Result<(usize, usize), KvError> {
        let tree = self.tree(db).clone();
        let mut due: Vec<Bytes> = Vec::new();
        let mut next = u64::MAX;
        let mut last_at = from;
        for item in tree.range(expire_key(from, b"")..prefix_end(&[EXPIRE_PREFIX])) {
            let (k, _) = item?;
            let at = split_expire_key(&k).map_or(last_at, |(at, _)| at);
            if at >= now_ms {
                next = at;
                break;
            }
            if due.len() == budget {
                next = at;
                break;
            }
            last_at = at;
            due.push(k);
        }
        let visited = due.len();
        let mut expired = 0;
        for index_key in due {
            let Some((at, key)) = split_expire_key(&index_key) else {
                tree.delete(&index_key)?;
                continue;
            };
            let _guard = self.lock(db, key);
            // Both read at one seqno: every write changes a key's record and its index entry in
            // one batch, so the pair is consistent.
            let mut both = tree
                .multi_get(&[meta_key(key).as_slice(), &index_key[..]])?
                .into_iter();
            let (meta, indexed) = (both.next().flatten(), both.next().flatten().is_some());
            let meta = meta.map(Entry::decode).transpose()?;
            match meta {
                Some(entry) if entry.index_at() == at && is_expired(entry.expire_at_ms, now_ms) => {
                    self.delete_record(db, key)?;
                    on_expired(db, key);
                    expired += 1;
                }
                Some(entry) if entry.index_at() == at => {
                    // Listed early: the deadline moved later since (see `reindex`). List it under
                    // the deadline now.
                    let mut batch = WriteBatch::new();
                    batch.delete(&tree, &index_key);
                    batch.put(&tree, &expire_key(entry.expire_at_ms, key), b"");
                    batch.put(
                        &tree,
                        &meta_key(key),
                        &entry.encode_listed(entry.expire_at_ms),
                    );
                    self.db.write_deferred(&batch)?;
                    self.indexed(db, entry.expire_at_ms);
                }
                None if indexed => {
                    // The key expired and compaction already reclaimed its record (see
                    // `compaction`); it still gets its event and its count.
                    self.touched(db, key);
                    tree.delete(&index_key)?;
                    on_expired(db, key);
                    expired += 1;
                }
                _ => tree.delete(&index_key)?,
            }
        }
        *next_at = next;
        Ok((visited, expired))
    }

    /// Keys removed by active and lazy expiry since the start (INFO's `expired_keys`).
    pub fn expired_keys(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Zeroes `expired_keys` (CONFIG RESETSTAT).
    pub fn reset_expired_keys(&self) {
        self.expired.store(0, Ordering::Relaxed);
    }

    /// Whether any key may have a TTL; `false` means no key can be expired.
    pub fn may_expire(&self) -> bool {
        self.ttl_seen.load(Ordering::Relaxed)
    }

    /// Lazy expiry, as Redis's `expireIfNeeded` on a command's key: deletes `key` if its record is expired
    /// and counts it in `expired_keys`. Returns whether it did (the caller publishes `expired`). Costs one
    /// hash probe for keys the plain-key filter knows have no TTL. The caller holds the key's stripe.
    pub fn expire_if_needed(&self, db: usize, key: &[u8]) -> Result<bool, KvError> {
        if !self.may_expire() || self.plain.surely_plain(self.tree_index(db), key) {
            return Ok(false);
        }
        let Some(raw) = self.read_record(db, key)? else {
            return Ok(false);
        };
        if !is_expired(Entry::decode(raw)?.expire_at_ms, self.now_ms()) {
            return Ok(false);
        }
        self.delete_record(db, key)?;
        self.expired.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Deletes the expired record at `key`, if there is one, so a collection created in its place does not
    /// inherit its dead elements. Returns whether one was deleted.
    pub fn purge_expired(&self, db: usize, key: &[u8]) -> Result<bool, KvError> {
        let Some(raw) = self.tree(db).get(&meta_key(key))? else {
            return Ok(false);
        };
        let at = Entry::decode(raw)?.expire_at_ms;
        if !is_expired(at, self.now_ms()) {
            return Ok(false);
        }
        self.delete(db, key)?;
        Ok(true)
    }

    /// Replaces whatever `key` holds with the collection `entry` whose elements are `elements` (element
    /// key, value), in one atomic batch: the *STORE commands (SORT ... STORE, SINTERSTORE, ...), RESTORE. An
    /// empty `elements` deletes the key instead, unless `entry` is a stream.
    pub fn replace_collection(
        &self,
        db: usize,
        key: &[u8],
        entry: &Entry,
        elements: &[(&[u8], &[u8])],
    ) -> Result<(), KvError> {
        self.changed(db, key);
        let tree = self.tree(db);
        let mut batch = WriteBatch::new();
        if let Some(raw) = tree.get(&meta_key(key))? {
            let old = Entry::decode(raw)?;
            reindex(&mut batch, tree, key, old.index_at(), 0);
            if old.kind != Kind::String {
                let h = CollectionHeader::from_payload(&old.payload)?;
                drop_elements(&mut batch, tree, key, h.version);
            }
        }
        let mut index_at = 0;
        // A stream is the one collection that may be empty (XDEL of every entry leaves it).
        if elements.is_empty() && entry.kind != Kind::Stream {
            batch.delete(tree, &meta_key(key));
        } else {
            let version = CollectionHeader::from_payload(&entry.payload)?.version;
            let prefix = sub_prefix(key, version);
            let mut k = prefix.clone();
            for (element, value) in elements {
                k.truncate(prefix.len());
                k.extend_from_slice(element);
                batch.put(tree, &k, value);
            }
            self.note_write(db, key, entry);
            index_at = reindex(&mut batch, tree, key, 0, entry.expire_at_ms);
            batch.put(tree, &meta_key(key), &entry.encode_listed(index_at));
        }
        self.db.write_deferred(&batch)?;
        self.indexed(db, index_at);
        Ok(())
    }

    /// Up to `limit` elements of a collection after element key `after` (from the first when `None`), in
    /// order: one step of HSCAN / SSCAN.
    pub fn elements_after(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        use std::ops::Bound;
        let prefix = sub_prefix(key, version);
        let start = match after {
            Some(a) => {
                let mut k = prefix.clone();
                k.extend_from_slice(a);
                Bound::Excluded(k)
            }
            None => Bound::Included(prefix.clone()),
        };
        let mut out = Vec::new();
        for item in self
            .tree(db)
            .range::<Vec<u8>, _>((start, Bound::Excluded(prefix_end(&prefix))))
            .take(limit)
        {
            let (k, v) = item?;
            out.push((k.slice(prefix.len()..), v));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_from_a_monotonic_instant_matches_the_wall_clock() {
        let clock = SystemClock;
        // Far apart instants (past the re-measuring interval) and close ones: each within a few ms of the
        // wall clock read beside it, and in order.
        let start = std::time::Instant::now();
        let mut last = 0;
        for later in [0u64, 1, 1_500, 3_000] {
            let at = start + std::time::Duration::from_millis(later);
            let derived = clock.ms_at(at);
            let wall = clock.now_ms() + later;
            assert!(derived.abs_diff(wall) <= 5, "{derived} vs {wall}");
            assert!(derived >= last);
            last = derived;
        }
        // A command scope started at an instant answers that instant's time.
        let at = std::time::Instant::now();
        let _time = CommandTime::begin_at(at);
        let ks_ms = COMMAND_START
            .with(std::cell::Cell::get)
            .map(|s| clock.ms_at(s));
        assert_eq!(ks_ms, Some(clock.ms_at(at)));
    }

    fn open(dir: &std::path::Path) -> Keyspace {
        let db = Db::open(dir, strata_storage::Options::default()).expect("open storage");
        let ks = Keyspace::open(db, 2, Arc::new(SystemClock)).expect("open keyspace");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !ks.plain_filter_ready() {
            assert!(std::time::Instant::now() < deadline, "filter never ready");
            std::thread::yield_now();
        }
        ks
    }

    fn set_collection(ks: &Keyspace, db: usize, key: &[u8]) -> u64 {
        let header = CollectionHeader {
            version: ks.new_version(),
            size: 2,
        };
        let entry = Entry {
            kind: Kind::Set,
            expire_at_ms: 0,
            indexed_at_ms: 0,
            payload: header.to_payload(),
        };
        ks.write_collection(db, key, &entry, header, &[(b"a", b""), (b"b", b"")], &[])
            .expect("write collection");
        header.version
    }

    #[test]
    fn a_record_with_a_new_header_encodes_as_the_entry_would() {
        let entry = Entry {
            kind: Kind::Hash,
            expire_at_ms: 1_234_567,
            indexed_at_ms: 0,
            payload: CollectionHeader {
                version: 7,
                size: 3,
            }
            .to_payload(),
        };
        let header = CollectionHeader {
            version: 7,
            size: 9,
        };
        let mut out = Vec::new();
        entry.encode_with_header_into(header, &mut out);
        let expected = Entry {
            payload: header.to_payload(),
            ..entry
        };
        assert_eq!(&out[..], &expected.encode_listed(expected.index_at())[..]);
    }

    fn ttl(value: &'static [u8], at: u64) -> Entry {
        Entry {
            kind: Kind::String,
            expire_at_ms: at,
            indexed_at_ms: 0,
            payload: Bytes::from_static(value),
        }
    }

    fn index_entries(ks: &Keyspace, db: usize) -> usize {
        ks.tree(db).prefix(&[EXPIRE_PREFIX]).count()
    }

    /// Overwrites drop what the old record owned whether or not the filter lets them skip the read.
    fn check_overwrites(ks: &Keyspace) {
        let far = ks.now_ms() + 3_600_000;
        let v = set_collection(ks, 0, b"coll");
        ks.put(0, b"coll", &Entry::string(Bytes::from_static(b"x")))
            .expect("put");
        assert!(ks.elements(0, b"coll", v).expect("elements").is_empty());
        ks.put(0, b"ttl", &ttl(b"x", far)).expect("put");
        assert_eq!(index_entries(ks, 0), 1);
        ks.put(0, b"ttl", &Entry::string(Bytes::from_static(b"y")))
            .expect("put");
        assert_eq!(index_entries(ks, 0), 0);
        // MSET over a collection, a TTL key and fresh keys.
        let v = set_collection(ks, 1, b"c");
        ks.put(1, b"t", &ttl(b"x", far)).expect("put");
        let s = |b: &'static [u8]| Entry::string(Bytes::from_static(b));
        ks.put_many(
            1,
            &[
                (b"new1", s(b"1")),
                (b"c", s(b"2")),
                (b"new2", s(b"3")),
                (b"t", s(b"4")),
                (b"c", s(b"5")),
            ],
        )
        .expect("put_many");
        assert!(ks.elements(1, b"c", v).expect("elements").is_empty());
        assert_eq!(index_entries(ks, 1), 0);
        assert_eq!(
            ks.get(1, b"c").expect("get").map(|e| e.payload),
            Some(Bytes::from_static(b"5"))
        );
        assert_eq!(ks.count(1).expect("count"), (4, 0));
        // A fresh key given a TTL by SET ... EX gets its index entry.
        ks.put(1, b"fresh", &ttl(b"x", far)).expect("put");
        assert_eq!(index_entries(ks, 1), 1);
    }

    #[test]
    fn overwrites_clean_up_with_a_ready_filter() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_overwrites(&open(dir.path()));
    }

    #[test]
    fn overwrites_clean_up_records_stored_before_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let far = SystemClock.now_ms() + 3_600_000;
        let version = {
            let ks = open(dir.path());
            ks.put(0, b"ttl", &ttl(b"x", far)).expect("put");
            set_collection(&ks, 0, b"coll")
        };
        let ks = open(dir.path());
        assert_eq!(index_entries(&ks, 0), 1);
        ks.put(0, b"coll", &Entry::string(Bytes::from_static(b"x")))
            .expect("put");
        ks.put(0, b"ttl", &Entry::string(Bytes::from_static(b"x")))
            .expect("put");
        assert!(
            ks.elements(0, b"coll", version)
                .expect("elements")
                .is_empty()
        );
        assert_eq!(index_entries(&ks, 0), 0);
        drop(ks);
        check_overwrites(&open(tempfile::tempdir().expect("tempdir").path()));
    }
}
