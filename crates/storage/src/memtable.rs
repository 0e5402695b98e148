//! The in-memory write buffer: a lock-free skiplist keyed by internal key.
//!
//! Keys are encoded internal keys (`user_key ++ (seqno << 8 | kind)` big-endian, see the storage contract),
//! ordered by user key ascending then seqno descending, so the newest visible version of a key is the first
//! entry at or after the lookup key `(key, read_seqno, max kind)`. The "user key" here already carries the
//! tree prefix (`tree id u32 BE ++ key`). Range tombstones are kept beside the skiplist, not in it, because
//! SSTs store them separately too.
//!
//! Beside the skiplist, a sharded hash index maps each user key to its newest version. A point read whose
//! seqno is at least that version's (every read of the latest data, unless a writer is mid-apply) answers
//! from the index with one or two cache misses instead of the skiplist's ~2·log2(n), and a key absent from
//! the index is certainly absent from the memtable. Correctness rests on the publish order: a version is
//! in both the skiplist and the index before its seqno becomes visible to readers, and the index keeps the
//! highest seqno per key, so a slot at or below the read seqno is the newest visible version; a slot above
//! it sends the read to the skiplist.

use std::cmp::Ordering as CmpOrdering;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use crossbeam_skiplist::SkipMap;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};

/// Kind byte of a deletion.
pub const KIND_DELETE: u8 = 0;
/// Kind byte of a put.
pub const KIND_PUT: u8 = 1;
/// Kind byte of a range deletion (the largest kind; used in lookup keys).
pub const KIND_RANGE_DELETE: u8 = 2;

/// Per-entry bookkeeping bytes counted toward the memtable size (skiplist node, Bytes headers).
const ENTRY_OVERHEAD_BYTES: usize = 80;
/// Entries fetched per skiplist walk by [`MemIter`]; amortizes re-seeking.
const ITER_PREFETCH: usize = 32;

/// Shards of the memtable's key index (a power of two).
const INDEX_SHARDS: usize = 16;
/// Bytes counted per distinct key for the index (a 64-byte slot plus hash-table slack).
const INDEX_ENTRY_BYTES: usize = 80;
/// User keys up to this many bytes are stored inside an index slot.
const INDEX_INLINE_BYTES: usize = 22;

/// Size of the chunks values are copied into (see [`ValueArena`]).
const VALUE_CHUNK_BYTES: usize = 64 << 10;
/// Values longer than this get an allocation of their own instead of a piece of a chunk.
const VALUE_ARENA_MAX_BYTES: usize = VALUE_CHUNK_BYTES / 8;

/// Where a memtable copies values: consecutive pieces of shared 64 KiB chunks.
///
/// A put used to cost two allocations for its value (the copy, then the shared header `Bytes` allocates
/// when a vector-backed value is first cloned for the index) plus the clone's bookkeeping. A piece of a
/// chunk costs a copy and a reference-count increment; skiplist and index share it by another increment.
/// A chunk is freed when the memtable and every value read from it are gone, so a reader holding one
/// value keeps at most one chunk alive.
struct ValueArena {
    chunk: BytesMut,
}

impl ValueArena {
    fn copy(&mut self, v: &[u8]) -> Bytes {
        if v.is_empty() {
            return Bytes::new();
        }
        if v.len() > VALUE_ARENA_MAX_BYTES {
            return Bytes::copy_from_slice(v);
        }
        if self.chunk.capacity() - self.chunk.len() < v.len() {
            self.chunk = BytesMut::with_capacity(VALUE_CHUNK_BYTES);
        }
        self.chunk.extend_from_slice(v);
        self.chunk.split().freeze()
    }
}

/// Hashes `key` of `tree` for the memtable index: a multiply-fold over 8-byte words. [`LookupKey`]
/// computes it once per read for every memtable.
pub fn key_hash(tree: u32, k: &[u8]) -> u64 {
    const P0: u64 = 0xa076_1d64_78bd_642f;
    const P1: u64 = 0xe703_7ed1_a0b4_28db;
    #[inline(always)]
    fn fold(a: u64, b: u64) -> u64 {
        let r = u128::from(a) * u128::from(b);
        (r as u64) ^ ((r >> 64) as u64)
    }
    let mut h = ((k.len() as u64) << 32 | u64::from(tree)) ^ P0;
    let mut words = k.chunks_exact(8);
    for w in &mut words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = fold(h ^ u64::from_le_bytes(a), P1);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut a = [0u8; 8];
        a[..rest.len()].copy_from_slice(rest);
        h = fold(h ^ u64::from_le_bytes(a), P1);
    }
    fold(h, P0)
}

/// A user key in an index slot: inline when short.
enum SlotKey {
    Inline {
        len: u8,
        buf: [u8; INDEX_INLINE_BYTES],
    },
    Heap(Box<[u8]>),
}

impl SlotKey {
    fn new(tree: u32, key: &[u8]) -> Self {
        let len = 4 + key.len();
        if len <= INDEX_INLINE_BYTES {
            let mut buf = [0u8; INDEX_INLINE_BYTES];
            buf[..4].copy_from_slice(&tree.to_be_bytes());
            buf[4..len].copy_from_slice(key);
            SlotKey::Inline {
                len: len as u8,
                buf,
            }
        } else {
            let mut v = Vec::with_capacity(len);
            tree_key(&mut v, tree, key);
            SlotKey::Heap(v.into_boxed_slice())
        }
    }

    /// The index hash of this key.
    fn hash(&self) -> u64 {
        let b = self.as_bytes();
        let mut t = [0u8; 4];
        t.copy_from_slice(&b[..4]);
        key_hash(u32::from_be_bytes(t), &b[4..])
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            SlotKey::Inline { len, buf } => &buf[..usize::from(*len)],
            SlotKey::Heap(b) => b,
        }
    }

    /// Whether this is `tree_be ++ key`, without building that key.
    #[inline]
    fn is(&self, tree: u32, key: &[u8]) -> bool {
        let b = self.as_bytes();
        b.len() == 4 + key.len() && b[..4] == tree.to_be_bytes() && &b[4..] == key
    }
}

/// The newest version of one key.
struct Slot {
    key: SlotKey,
    /// `seqno << 8 | kind`.
    trailer: u64,
    value: Bytes,
}

/// A point read's key, prepared once for every memtable (and the SSTs): the internal lookup key
/// `(tree_be ++ key, read_seqno, KIND_RANGE_DELETE)` and the index hash of its user-key part.
pub struct LookupKey {
    key: MemKey,
    hash: u64,
}

impl LookupKey {
    /// Prepares a read of `key` in `tree` at `read_seqno` (no allocation for short keys).
    pub fn new(tree: u32, key: &[u8], read_seqno: u64) -> Self {
        LookupKey {
            hash: key_hash(tree, key),
            key: MemKey::internal(tree, key, read_seqno, KIND_RANGE_DELETE),
        }
    }

    /// The prefixed user key `tree_be ++ key`.
    #[inline]
    pub fn user_key(&self) -> &[u8] {
        split_internal(self.key.as_bytes()).0
    }

    /// The read seqno.
    #[inline]
    pub fn read_seqno(&self) -> u64 {
        split_internal(self.key.as_bytes()).1 >> 8
    }
}

/// Compares encoded internal keys: user key ascending, then trailer (seqno, kind) descending. A key shorter
/// than 8 bytes compares as a user key with trailer 0 (never panics).
#[inline]
pub fn compare_internal_keys(a: &[u8], b: &[u8]) -> CmpOrdering {
    let (ua, ta) = split_internal(a);
    let (ub, tb) = split_internal(b);
    match compare_bytes(ua, ub) {
        CmpOrdering::Equal => tb.cmp(&ta),
        o => o,
    }
}

/// Lexicographic byte-string comparison, 8 bytes at a time as big-endian words.
///
/// Equivalent to `a.cmp(b)`, but inlined: a skiplist insert compares ~2·log2(n) keys of ~20 bytes, and the
/// library `memcmp` call (plus its length dispatch) cost more than the comparison itself (measured with
/// callgrind on `examples/put_loop.rs`: ~1,850 of ~4,400 instructions per memtable insert).
#[inline]
pub fn compare_bytes(a: &[u8], b: &[u8]) -> CmpOrdering {
    let n = a.len().min(b.len());
    let (mut x, mut y) = (&a[..n], &b[..n]);
    while let (Some((wx, rx)), Some((wy, ry))) =
        (x.split_first_chunk::<8>(), y.split_first_chunk::<8>())
    {
        let (wx, wy) = (u64::from_be_bytes(*wx), u64::from_be_bytes(*wy));
        if wx != wy {
            return wx.cmp(&wy);
        }
        (x, y) = (rx, ry);
    }
    if let (Some((wx, rx)), Some((wy, ry))) =
        (x.split_first_chunk::<4>(), y.split_first_chunk::<4>())
    {
        let (wx, wy) = (u32::from_be_bytes(*wx), u32::from_be_bytes(*wy));
        if wx != wy {
            return wx.cmp(&wy);
        }
        (x, y) = (rx, ry);
    }
    for (bx, by) in x.iter().zip(y) {
        if bx != by {
            return bx.cmp(by);
        }
    }
    a.len().cmp(&b.len())
}

/// Splits an internal key into user key and trailer.
#[inline]
pub fn split_internal(k: &[u8]) -> (&[u8], u64) {
    if k.len() < 8 {
        return (k, 0);
    }
    let (u, t) = k.split_at(k.len() - 8);
    let mut a = [0u8; 8];
    a.copy_from_slice(t);
    (u, u64::from_be_bytes(a))
}

/// Appends an internal key to `out`.
pub fn encode_internal(out: &mut Vec<u8>, user_key: &[u8], seqno: u64, kind: u8) {
    out.extend_from_slice(user_key);
    out.extend_from_slice(&((seqno << 8) | u64::from(kind)).to_be_bytes());
}

/// Prefixes a tree-local key with its tree id, as stored in the LSM.
pub fn tree_key(out: &mut Vec<u8>, tree: u32, key: &[u8]) {
    out.extend_from_slice(&tree.to_be_bytes());
    out.extend_from_slice(key);
}

/// Internal keys up to this many bytes live inside the skiplist node itself. A skiplist insert or lookup
/// compares against ~2·log2(n) nodes scattered over the heap; with the key behind a pointer each comparison
/// costs two cache misses instead of one, which dominated random inserts (16-byte user keys + 4-byte tree
/// prefix + 8-byte trailer = 28 bytes fit).
const INLINE_KEY_BYTES: usize = 38;

#[derive(Clone)]
enum KeyRepr {
    Inline {
        len: u8,
        buf: [u8; INLINE_KEY_BYTES],
    },
    Heap(Bytes),
}

/// An encoded internal key with internal-key ordering; short keys are stored inline.
#[derive(Clone)]
pub struct MemKey(KeyRepr);

impl MemKey {
    /// A key holding a copy of `k`.
    pub fn new(k: &[u8]) -> Self {
        if k.len() <= INLINE_KEY_BYTES {
            let mut buf = [0u8; INLINE_KEY_BYTES];
            buf[..k.len()].copy_from_slice(k);
            MemKey(KeyRepr::Inline {
                len: k.len() as u8,
                buf,
            })
        } else {
            MemKey(KeyRepr::Heap(Bytes::copy_from_slice(k)))
        }
    }

    /// The internal key `tree_be ++ key ++ trailer(seqno, kind)`, built without an intermediate buffer
    /// when it fits inline.
    pub fn internal(tree: u32, key: &[u8], seqno: u64, kind: u8) -> Self {
        let len = 4 + key.len() + 8;
        if len <= INLINE_KEY_BYTES {
            let mut buf = [0u8; INLINE_KEY_BYTES];
            buf[..4].copy_from_slice(&tree.to_be_bytes());
            buf[4..4 + key.len()].copy_from_slice(key);
            buf[4 + key.len()..len]
                .copy_from_slice(&((seqno << 8) | u64::from(kind)).to_be_bytes());
            MemKey(KeyRepr::Inline {
                len: len as u8,
                buf,
            })
        } else {
            let mut k = Vec::with_capacity(len);
            tree_key(&mut k, tree, key);
            encode_internal(&mut k, &[], seqno, kind);
            MemKey(KeyRepr::Heap(Bytes::from(k)))
        }
    }

    /// The encoded key.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyRepr::Inline { len, buf } => &buf[..usize::from(*len)],
            KeyRepr::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for MemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MemKey").field(&self.as_bytes()).finish()
    }
}

impl PartialEq for MemKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MemKey {}

impl Ord for MemKey {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> CmpOrdering {
        match (&self.0, &other.0) {
            (KeyRepr::Inline { len: la, buf: ba }, KeyRepr::Inline { len: lb, buf: bb })
                if *la >= 8 && *lb >= 8 =>
            {
                compare_inline(ba, usize::from(*la) - 8, bb, usize::from(*lb) - 8)
            }
            _ => compare_internal_keys(self.as_bytes(), other.as_bytes()),
        }
    }
}

/// Word `w` (bytes `8w..8w+8`, big-endian) of an inline key buffer; `w < 4`.
#[inline(always)]
fn inline_word(buf: &[u8; INLINE_KEY_BYTES], w: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[w * 8..w * 8 + 8]);
    u64::from_be_bytes(a)
}

/// The trailer of an inline internal key whose user key is `ulen` bytes.
#[inline(always)]
fn inline_trailer(buf: &[u8; INLINE_KEY_BYTES], ulen: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[ulen..ulen + 8]);
    u64::from_be_bytes(a)
}

/// [`compare_internal_keys`] for two inline keys with user keys of `ua` and `ub` bytes: whole words of
/// the fixed-size buffers, the last partial word masked, no slicing of the common prefix. The skiplist
/// calls this ~2·log2(n) times per insert and lookup; it is about a third of the general comparison.
#[inline(always)]
fn compare_inline(
    ba: &[u8; INLINE_KEY_BYTES],
    ua: usize,
    bb: &[u8; INLINE_KEY_BYTES],
    ub: usize,
) -> CmpOrdering {
    // ua, ub <= INLINE_KEY_BYTES - 8 = 30, so every word read below lies inside the buffers.
    let n = ua.min(ub);
    let full = n / 8;
    for w in 0..full {
        let (x, y) = (inline_word(ba, w), inline_word(bb, w));
        if x != y {
            return x.cmp(&y);
        }
    }
    let rest = n % 8;
    if rest != 0 {
        let mask = !0u64 << (64 - 8 * rest);
        let (x, y) = (inline_word(ba, full) & mask, inline_word(bb, full) & mask);
        if x != y {
            return x.cmp(&y);
        }
    }
    match ua.cmp(&ub) {
        CmpOrdering::Equal => inline_trailer(bb, ub).cmp(&inline_trailer(ba, ua)),
        o => o,
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// A range tombstone over prefixed user keys `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemRangeTombstone {
    /// First key covered.
    pub start: Bytes,
    /// First key not covered.
    pub end: Bytes,
    /// Seqno of the deletion: it hides versions with smaller seqnos.
    pub seqno: u64,
}

/// A memtable's range tombstones: as added (for flush) and indexed (for reads).
#[derive(Default)]
struct RangeDels {
    list: Vec<MemRangeTombstone>,
    index: crate::range_index::TombstoneSet,
}

impl RangeDels {
    fn push(&mut self, t: MemRangeTombstone) {
        self.index.insert(crate::range_index::Tombstone {
            start: t.start.clone(),
            end: t.end.clone(),
            seqno: t.seqno,
        });
        self.list.push(t);
    }
}

/// A memtable.
pub struct MemTable {
    map: SkipMap<MemKey, Bytes>,
    /// Newest version per user key (see the module docs); shard = hash bits 32.. .
    index: Box<[RwLock<HashTable<Slot>>]>,
    /// Distinct user keys in `index` (sizes the next memtable's index).
    distinct_keys: AtomicUsize,
    /// Values are copied here (written by the single applying thread; the lock is uncontended).
    values: Mutex<ValueArena>,
    range_dels: RwLock<RangeDels>,
    /// Whether `range_dels` is non-empty, readable without the lock on the read path.
    has_range_dels: AtomicBool,
    approx_bytes: AtomicUsize,
    max_seqno: AtomicU64,
    /// Oldest WAL segment holding data of this memtable.
    pub wal_id: u64,
}

impl MemTable {
    /// An empty memtable whose data starts in WAL segment `wal_id`.
    pub fn new(wal_id: u64) -> Self {
        Self::with_key_capacity(wal_id, 0)
    }

    /// An empty memtable whose index has room for about `keys` distinct keys without growing. Pass the
    /// previous memtable's [`MemTable::distinct_keys`]: growing a hash table rehashes and moves every slot,
    /// which showed up as ~3% of a random put and as latency spikes at each doubling.
    pub fn with_key_capacity(wal_id: u64, keys: usize) -> Self {
        let per_shard = keys.div_ceil(INDEX_SHARDS);
        MemTable {
            map: SkipMap::new(),
            index: (0..INDEX_SHARDS)
                .map(|_| RwLock::new(HashTable::with_capacity(per_shard)))
                .collect(),
            distinct_keys: AtomicUsize::new(0),
            values: Mutex::new(ValueArena {
                chunk: BytesMut::new(),
            }),
            range_dels: RwLock::new(RangeDels::default()),
            has_range_dels: AtomicBool::new(false),
            approx_bytes: AtomicUsize::new(0),
            max_seqno: AtomicU64::new(0),
            wal_id,
        }
    }

    /// Approximate memory used.
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes.load(Ordering::Relaxed)
    }

    /// Whether nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.range_dels.read().list.is_empty()
    }

    /// Number of point entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Number of distinct keys with point entries.
    pub fn distinct_keys(&self) -> usize {
        self.distinct_keys.load(Ordering::Relaxed)
    }

    /// Highest seqno written.
    pub fn max_seqno(&self) -> u64 {
        self.max_seqno.load(Ordering::Relaxed)
    }

    /// Records that seqnos up to `seqno` were applied (log-only writes take seqnos but add no entries).
    pub fn note_seqno(&self, seqno: u64) {
        self.max_seqno.fetch_max(seqno, Ordering::Relaxed);
    }

    /// Counts `bytes` of WAL data this memtable's lifetime covers (log appends) toward its size.
    pub fn note_bytes(&self, bytes: usize) {
        self.approx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn note(&self, bytes: usize, seqno: u64) {
        self.approx_bytes
            .fetch_add(bytes + ENTRY_OVERHEAD_BYTES, Ordering::Relaxed);
        self.max_seqno.fetch_max(seqno, Ordering::Relaxed);
    }

    /// Inserts a point entry (put or delete) for prefixed user key `ukey`.
    pub fn add(&self, tree: u32, key: &[u8], seqno: u64, kind: u8, value: &[u8]) {
        let k = MemKey::internal(tree, key, seqno, kind);
        let bytes = 4 + key.len() + 8 + value.len();
        let v = self.values.lock().copy(value);
        self.map.insert(k, v.clone());
        let trailer = (seqno << 8) | u64::from(kind);
        let h = key_hash(tree, key);
        let mut shard = self.index[index_shard(h)].write();
        let new_key = match shard.find_mut(h, |s| s.key.is(tree, key)) {
            Some(s) => {
                // Groups apply in seqno order, but keep the newest regardless.
                if s.trailer >> 8 < seqno {
                    s.trailer = trailer;
                    s.value = v;
                }
                false
            }
            None => {
                shard.insert_unique(
                    h,
                    Slot {
                        key: SlotKey::new(tree, key),
                        trailer,
                        value: v,
                    },
                    |s| s.key.hash(),
                );
                true
            }
        };
        drop(shard);
        let extra = if new_key {
            self.distinct_keys.fetch_add(1, Ordering::Relaxed);
            INDEX_ENTRY_BYTES
        } else {
            0
        };
        self.note(bytes + extra, seqno);
    }

    /// Adds a range tombstone for tree keys `[start, end)`.
    pub fn add_range_delete(&self, tree: u32, start: &[u8], end: &[u8], seqno: u64) {
        let mut s = Vec::with_capacity(4 + start.len());
        tree_key(&mut s, tree, start);
        let mut e = Vec::with_capacity(4 + end.len());
        tree_key(&mut e, tree, end);
        let bytes = s.len() + e.len();
        self.range_dels.write().push(MemRangeTombstone {
            start: Bytes::from(s),
            end: Bytes::from(e),
            seqno,
        });
        self.has_range_dels.store(true, Ordering::Release);
        self.note(bytes, seqno);
    }

    /// Adds a range tombstone covering every key of `tree`.
    pub fn add_tree_clear(&self, tree: u32, seqno: u64) {
        let start = Bytes::copy_from_slice(&tree.to_be_bytes());
        // The next tree's prefix; for the last possible id, a bound above every 4-byte-prefixed key.
        let end = match tree.checked_add(1) {
            Some(n) => Bytes::copy_from_slice(&n.to_be_bytes()),
            None => Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff]),
        };
        self.range_dels
            .write()
            .push(MemRangeTombstone { start, end, seqno });
        self.has_range_dels.store(true, Ordering::Release);
        self.note(9, seqno);
    }

    /// Newest point entry for `key` of `tree` with seqno <= `read_seqno`: (seqno, kind, value).
    pub fn get(&self, tree: u32, key: &[u8], read_seqno: u64) -> Option<(u64, u8, Bytes)> {
        self.get_lookup(&LookupKey::new(tree, key, read_seqno))
    }

    /// Like [`MemTable::get`] with a prepared lookup key, so a read over several memtables builds and
    /// hashes it once. Answers from the index when it can (see the module docs).
    pub fn get_lookup(&self, lookup: &LookupKey) -> Option<(u64, u8, Bytes)> {
        let ukey = lookup.user_key();
        {
            let shard = self.index[index_shard(lookup.hash)].read();
            let s = shard.find(lookup.hash, |s| s.key.as_bytes() == ukey)?;
            let seqno = s.trailer >> 8;
            if seqno <= lookup.read_seqno() {
                return Some((seqno, (s.trailer & 0xff) as u8, s.value.clone()));
            }
        }
        // The newest version is newer than the read: an older one may be visible.
        let e = self.map.lower_bound(Bound::Included(&lookup.key))?;
        let (u, trailer) = split_internal(e.key().as_bytes());
        if u != ukey {
            return None;
        }
        Some((trailer >> 8, (trailer & 0xff) as u8, e.value().clone()))
    }

    /// Highest seqno <= `read_seqno` of a range tombstone covering `ukey`.
    pub fn max_range_tombstone(&self, ukey: &[u8], read_seqno: u64) -> Option<u64> {
        self.range_dels.read().index.max_covering(ukey, read_seqno)
    }

    /// Adds to `out` the indexed tombstone runs overlapping the key range from `lo` to `hi`.
    pub fn range_tombstone_runs(
        &self,
        lo: &[u8],
        hi: Bound<&[u8]>,
        out: &mut Vec<Arc<crate::range_index::FragRun>>,
    ) {
        self.range_dels.read().index.runs_overlapping(lo, hi, out);
    }

    /// A copy of the range tombstones, as they were added.
    pub fn range_tombstones(&self) -> Vec<MemRangeTombstone> {
        self.range_dels.read().list.clone()
    }

    /// Whether any range tombstone exists.
    pub fn has_range_tombstones(&self) -> bool {
        self.has_range_dels.load(Ordering::Acquire)
    }
}

#[inline]
fn index_shard(hash: u64) -> usize {
    (hash >> 32) as usize & (INDEX_SHARDS - 1)
}

/// A bidirectional iterator over a memtable's point entries (encoded internal keys).
///
/// It holds the memtable by `Arc` and re-seeks from the current key whenever its small prefetch buffer runs
/// out, because skiplist entries borrow the map and cannot be stored beside it without `unsafe`.
pub struct MemIter {
    mem: Arc<MemTable>,
    /// `buf[0]` is the current entry; the rest follow in the current direction.
    buf: VecDeque<(MemKey, Bytes)>,
    forward: bool,
}

impl MemIter {
    /// A new, unpositioned iterator.
    pub fn new(mem: Arc<MemTable>) -> Self {
        MemIter {
            mem,
            buf: VecDeque::with_capacity(ITER_PREFETCH),
            forward: true,
        }
    }

    fn fill_forward(&mut self, from: Bound<&MemKey>) {
        self.buf.clear();
        self.forward = true;
        let mut e = match self.mem.map.lower_bound(from) {
            Some(e) => e,
            None => return,
        };
        loop {
            self.buf.push_back((e.key().clone(), e.value().clone()));
            if self.buf.len() >= ITER_PREFETCH {
                return;
            }
            e = match e.next() {
                Some(n) => n,
                None => return,
            };
        }
    }

    fn fill_backward(&mut self, from: Bound<&MemKey>) {
        self.buf.clear();
        self.forward = false;
        let mut e = match self.mem.map.upper_bound(from) {
            Some(e) => e,
            None => return,
        };
        loop {
            self.buf.push_back((e.key().clone(), e.value().clone()));
            if self.buf.len() >= ITER_PREFETCH {
                return;
            }
            e = match e.prev() {
                Some(n) => n,
                None => return,
            };
        }
    }

    /// Whether positioned on an entry.
    pub fn valid(&self) -> bool {
        !self.buf.is_empty()
    }
    /// Positions at the first entry.
    pub fn seek_to_first(&mut self) {
        self.fill_forward(Bound::Unbounded);
    }
    /// Positions at the last entry.
    pub fn seek_to_last(&mut self) {
        self.fill_backward(Bound::Unbounded);
    }
    /// First entry >= target.
    pub fn seek(&mut self, target: &[u8]) {
        let t = MemKey::new(target);
        self.fill_forward(Bound::Included(&t));
    }
    /// Last entry <= target.
    pub fn seek_for_prev(&mut self, target: &[u8]) {
        let t = MemKey::new(target);
        self.fill_backward(Bound::Included(&t));
    }
    /// Advances.
    pub fn next(&mut self) {
        if self.forward && self.buf.len() > 1 {
            self.buf.pop_front();
            return;
        }
        if let Some((k, _)) = self.buf.pop_front() {
            self.fill_forward(Bound::Excluded(&k));
        }
    }
    /// Steps back.
    pub fn prev(&mut self) {
        if !self.forward && self.buf.len() > 1 {
            self.buf.pop_front();
            return;
        }
        if let Some((k, _)) = self.buf.pop_front() {
            self.fill_backward(Bound::Excluded(&k));
        }
    }
    /// Current key (empty if not valid).
    pub fn key(&self) -> &[u8] {
        self.buf.front().map_or(&[], |(k, _)| k.as_bytes())
    }
    /// Highest seqno in the memtable.
    pub fn max_seqno(&self) -> u64 {
        self.mem.max_seqno()
    }
    /// Current value (empty if not valid).
    pub fn value(&self) -> &[u8] {
        self.buf.front().map_or(&[], |(_, v)| v)
    }
}

impl crate::iter::InternalIterator for MemIter {
    fn valid(&self) -> bool {
        MemIter::valid(self)
    }
    fn seek_to_first(&mut self) -> Result<(), crate::sst::SstError> {
        MemIter::seek_to_first(self);
        Ok(())
    }
    fn seek_to_last(&mut self) -> Result<(), crate::sst::SstError> {
        MemIter::seek_to_last(self);
        Ok(())
    }
    fn seek(&mut self, target: &[u8]) -> Result<(), crate::sst::SstError> {
        MemIter::seek(self, target);
        Ok(())
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<(), crate::sst::SstError> {
        MemIter::seek_for_prev(self, target);
        Ok(())
    }
    fn next(&mut self) -> Result<(), crate::sst::SstError> {
        MemIter::next(self);
        Ok(())
    }
    fn prev(&mut self) -> Result<(), crate::sst::SstError> {
        MemIter::prev(self);
        Ok(())
    }
    fn key(&self) -> &[u8] {
        MemIter::key(self)
    }
    fn value(&self) -> &[u8] {
        MemIter::value(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_visible_version_wins() {
        let m = MemTable::new(1);
        m.add(1, b"a", 1, KIND_PUT, b"v1");
        m.add(1, b"a", 3, KIND_PUT, b"v3");
        m.add(1, b"a", 5, KIND_DELETE, b"");
        m.add(2, b"a", 4, KIND_PUT, b"other tree");
        assert_eq!(m.get(1, b"a", 0), None);
        assert_eq!(m.get(1, b"a", 2).unwrap().2.as_ref(), b"v1");
        assert_eq!(m.get(1, b"a", 4).unwrap().2.as_ref(), b"v3");
        assert_eq!(m.get(1, b"a", 9).unwrap().1, KIND_DELETE);
        assert_eq!(m.get(2, b"a", 9).unwrap().2.as_ref(), b"other tree");
        assert_eq!(m.get(2, b"a", 3), None);
        assert_eq!(m.get(1, b"b", 9), None);
    }

    #[test]
    fn index_agrees_with_the_skiplist_for_long_keys_and_out_of_order_applies() {
        let m = MemTable::new(1);
        let long = vec![7u8; 100];
        m.add(3, &long, 10, KIND_PUT, b"new");
        // An older version applied later (never happens live, but the index must keep the newest).
        m.add(3, &long, 4, KIND_PUT, b"old");
        assert_eq!(m.get(3, &long, 20).unwrap().2.as_ref(), b"new");
        assert_eq!(m.get(3, &long, 9).unwrap().2.as_ref(), b"old");
        assert_eq!(m.get(3, &long, 3), None);
        assert_eq!(m.get(3, &long[..99], 20), None);
        // Same bytes, different tree split: tree 1 + key [0,0,0,2,x] vs tree 2 + key [x].
        m.add(2, b"x", 5, KIND_PUT, b"t2");
        assert_eq!(m.get(1, &[0, 0, 0, 2, b'x'][1..], 9), None);
        assert_eq!(m.get(2, b"x", 9).unwrap().2.as_ref(), b"t2");
    }

    /// The reference order: user key ascending (plain slice order), then trailer descending.
    fn naive_order(a: &[u8], b: &[u8]) -> CmpOrdering {
        let (ua, ta) = split_internal(a);
        let (ub, tb) = split_internal(b);
        ua.cmp(ub).then(tb.cmp(&ta))
    }

    proptest::proptest! {
        #[test]
        fn fast_comparisons_agree_with_slice_order(
            // Short alphabets make shared prefixes, equal words and prefix-of cases common.
            a in proptest::collection::vec(0u8..3, 0..48),
            b in proptest::collection::vec(0u8..3, 0..48),
        ) {
            proptest::prop_assert_eq!(compare_bytes(&a, &b), a.cmp(&b));
            let want = naive_order(&a, &b);
            proptest::prop_assert_eq!(compare_internal_keys(&a, &b), want);
            proptest::prop_assert_eq!(MemKey::new(&a).cmp(&MemKey::new(&b)), want);
        }
    }

    #[test]
    fn inline_comparison_at_word_boundaries() {
        // Every user-key length up to the inline limit and one past it, differing in each byte.
        for len in 0..=INLINE_KEY_BYTES - 7 {
            for at in 0..len {
                let a: Vec<u8> = (0..len as u8).collect();
                let mut b = a.clone();
                b[at] = b[at].wrapping_add(1);
                for (ta, tb) in [(5u64, 5u64), (5, 9), (9, 5)] {
                    let mut ka = a.clone();
                    ka.extend_from_slice(&ta.to_be_bytes());
                    let mut kb = b.clone();
                    kb.extend_from_slice(&tb.to_be_bytes());
                    let got = MemKey::new(&ka).cmp(&MemKey::new(&kb));
                    assert_eq!(got, naive_order(&ka, &kb), "len {len} at {at}");
                    // Prefix pairs: `a[..at]` against `a`.
                    let mut kp = a[..at].to_vec();
                    kp.extend_from_slice(&ta.to_be_bytes());
                    let mut kf = a.clone();
                    kf.extend_from_slice(&tb.to_be_bytes());
                    let got = MemKey::new(&kp).cmp(&MemKey::new(&kf));
                    assert_eq!(got, naive_order(&kp, &kf), "prefix {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn values_share_chunks_and_survive_the_memtable() {
        let m = MemTable::new(1);
        let big = vec![9u8; VALUE_ARENA_MAX_BYTES + 1];
        for i in 0..2_000u32 {
            let v = vec![(i % 251) as u8; (i % 300) as usize];
            m.add(1, &i.to_be_bytes(), u64::from(i) + 1, KIND_PUT, &v);
        }
        m.add(1, b"big", 5_000, KIND_PUT, &big);
        let got = m.get(1, &7u32.to_be_bytes(), 10_000).unwrap().2;
        let big_got = m.get(1, b"big", 10_000).unwrap().2;
        for i in 0..2_000u32 {
            let v = m.get(1, &i.to_be_bytes(), 10_000).unwrap().2;
            assert_eq!(v.as_ref(), &vec![(i % 251) as u8; (i % 300) as usize][..]);
        }
        drop(m);
        assert_eq!(got.as_ref(), &[7u8; 7][..]);
        assert_eq!(big_got.as_ref(), &big[..]);
    }

    #[test]
    fn iterator_both_directions_across_prefetch_boundaries() {
        let m = Arc::new(MemTable::new(1));
        for i in 0..100u32 {
            m.add(1, &i.to_be_bytes(), u64::from(i) + 1, KIND_PUT, b"x");
        }
        let mut it = MemIter::new(m.clone());
        it.seek_to_first();
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next();
        }
        assert_eq!(n, 100);
        it.seek_to_last();
        let mut n = 0;
        let mut last: Option<Vec<u8>> = None;
        while it.valid() {
            if let Some(l) = &last {
                assert_eq!(compare_internal_keys(it.key(), l), CmpOrdering::Less);
            }
            last = Some(it.key().to_vec());
            n += 1;
            it.prev();
        }
        assert_eq!(n, 100);
        // Direction changes.
        it.seek_to_first();
        for _ in 0..40 {
            it.next();
        }
        let k40 = it.key().to_vec();
        it.prev();
        it.next();
        assert_eq!(it.key(), &k40[..]);
    }
}
