//! The in-memory write buffer: an ordered map of user keys, each with its versions, and a hash index.
//!
//! Entries are encoded internal keys (`user_key ++ (seqno << 8 | kind)` big-endian, see the storage contract),
//! ordered by user key ascending then seqno descending, so the newest visible version of a key is the first
//! entry at or after the lookup key `(key, read_seqno, max kind)`. The "user key" here already carries the
//! tree prefix (`tree id u32 BE ++ key`). Range tombstones are kept beside the point entries, because SSTs
//! store them separately too.
//!
//! A sharded hash index maps each user key to its node: the key and all its versions (a small vector in
//! trailer order), shared with the ordered map. The index holds a hash and a pointer per key, not the key
//! itself, in its own linear-probing table ([`KeyIndex`]), so a new key's insert touches one cache line.
//! A point read whose seqno is at least the newest version's (every read of the latest data, unless a
//! writer is mid-apply) takes the last version; an older read binary-searches the versions; a key
//! absent from the index is certainly absent from the memtable. A write to a key already present appends to
//! its versions and never touches the ordered map, which only a new key enters (see [`MemTable::add`]) and
//! iterators walk.
//!
//! The ordered map is a `BTreeMap` behind a lock, not a lock-free skiplist: only one thread writes, readers
//! hold the lock for one prefetch buffer, and a B-tree insert over a few hundred thousand random keys costs
//! about a third of a crossbeam skiplist's (a few node visits with keys side by side, against ~2·log2(n)
//! scattered nodes). With one skiplist node per version, the skiplist search was the largest item of every
//! write benchmark's CPU. A new key is not inserted into the B-tree at once but appended to an unordered
//! list, which the next ordered read whose range the list's keys could fall in sorts and inserts (see
//! [`Ordered`]): a write-only workload never pays for order on the writing thread, a scan of one part of
//! the tree does not order keys written elsewhere, and the flush sorts the keys once, on its own thread.
//!
//! Correctness rests on the publish order: a version is in the key's versions, and a new key in the ordered
//! map's unordered list (with its flag set) and in the index, before its seqno becomes visible to readers.
//! Versions stay in trailer order even if a group applies out of order, so the newest at or below the read
//! seqno is the visible one.
//!
//! A write may drop the versions of its key that no read can see any more: those whose successor is at or
//! below the commit's *horizon*, the published seqno when no read was in flight (see [`crate::readers`]).
//! A rewritten key's new value then gets an allocation of its own, reusing a dropped version's buffer when
//! the version held the only handle on it, so a hot key does not fill the arena with copies. A patch of a
//! hot key (PFADD changing two bytes of a 12 KiB sketch) need not even copy the value: the version before
//! the newest differs from the newest only in the ranges the newest's patch wrote (its [`Delta`]), so its
//! buffer, once dropped, becomes the new value by copying those ranges and writing the new patch.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, MutexGuard, RwLock};
use smallvec::SmallVec;

/// Kind byte of a deletion.
pub const KIND_DELETE: u8 = 0;
/// Kind byte of a put.
pub const KIND_PUT: u8 = 1;
/// Kind byte of a range deletion (the largest kind; used in lookup keys).
pub const KIND_RANGE_DELETE: u8 = 2;

/// Bookkeeping bytes counted toward the memtable size per version (its trailer and value handle).
const ENTRY_OVERHEAD_BYTES: usize = 48;
/// Bookkeeping bytes counted per distinct key: its map entry, shared versions and index slot.
const KEY_OVERHEAD_BYTES: usize = 240;
/// Entries fetched per walk of the ordered map by [`MemIter`]; amortizes re-seeking and the read lock.
const ITER_PREFETCH: usize = 32;
/// Entries the first walk after a seek fetches; each refill doubles it up to [`ITER_PREFETCH`]. Many
/// scans stop after an entry or two (XREADGROUP COUNT 1, a stream's first or last entry), and copying
/// 32 entries for them was 5% of XREADGROUP's CPU.
const ITER_FIRST_FILL: usize = 4;

/// How many nodes ahead of the one it reads a memtable iterator's fill asks the CPU to load. The ordered
/// map holds each key's node by pointer, and nodes lie wherever they were allocated, so a walk in key order
/// missed the cache on every node, one miss after another: 41% of the flush thread's CPU when 400k
/// expired keys' tombstones were flushed. Loaded ahead, the misses overlap.
const NODE_LOOKAHEAD: usize = 8;

/// Shards of the memtable's key index (a power of two).
const INDEX_SHARDS: usize = 16;
/// User keys up to this many bytes are stored inside an index slot, so comparing a probed slot's key costs
/// no pointer chase (stream, hash and set sub-keys are 30-50 bytes with their prefixes).
const INDEX_INLINE_BYTES: usize = 54;

/// Size of the chunks values are copied into (see [`ValueArena`]).
pub(crate) const VALUE_CHUNK_BYTES: usize = 64 << 10;
/// Values longer than this get an allocation of their own instead of a piece of a chunk. 16 KiB takes in a
/// dense HyperLogLog (12 KiB), which PFADD rewrites on every register change: an allocation of its own per
/// version cost a malloc and fresh pages (1M PFADD -P16: 180k page faults, 120k with the sketch in chunks).
const VALUE_ARENA_MAX_BYTES: usize = VALUE_CHUNK_BYTES / 4;

/// Where a memtable copies values: consecutive pieces of shared 64 KiB chunks.
///
/// A put used to cost two allocations for its value (the copy, then the shared header `Bytes` allocates
/// when a vector-backed value is first cloned for the index) plus the clone's bookkeeping. A piece of a
/// chunk costs a copy and a reference-count increment; versions and index share it by another increment.
/// A chunk is freed when the memtable and every value read from it are gone, so a reader holding one
/// value keeps at most one chunk alive.
///
/// The arena keeps a handle on each chunk it filled, so when the memtable is released after its flush
/// the chunks no reader holds any more go to the next memtable ([`MemTable::into_chunks`],
/// [`MemTable::give_chunks`]) instead of back to the allocator: their pages are already mapped, and a
/// fresh chunk's first writes were page faults (a quarter of PFADD's worker time at -P16, which writes
/// a 12 KiB sketch per register change).
struct ValueArena {
    chunk: BytesMut,
    /// Handles on the chunks filled before `chunk` (empty tails sharing each chunk's allocation).
    filled: Vec<BytesMut>,
    /// Chunks recycled from a released memtable, taken before allocating a new one.
    spare: Vec<BytesMut>,
}

impl ValueArena {
    fn new() -> Self {
        ValueArena {
            chunk: BytesMut::new(),
            filled: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// Makes room for `len` more bytes in the current chunk (`len` ≤ a chunk).
    fn reserve(&mut self, len: usize) {
        if self.chunk.capacity() - self.chunk.len() >= len {
            return;
        }
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(VALUE_CHUNK_BYTES));
        let full = std::mem::replace(&mut self.chunk, next);
        self.filled.push(full);
    }

    fn copy(&mut self, v: &[u8]) -> Bytes {
        if v.is_empty() {
            return Bytes::new();
        }
        if v.len() > VALUE_ARENA_MAX_BYTES {
            return Bytes::copy_from_slice(v);
        }
        self.reserve(v.len());
        self.chunk.extend_from_slice(v);
        let out = self.chunk.split().freeze();
        self.prefetch_tail();
        out
    }

    /// Starts loading the chunk's memory a few writes ahead. The chunks are recycled from released
    /// memtables and written once per memtable lifetime, so the next value's lines are cold: without this
    /// each new line's miss (and TLB walk) was paid by the copy, ~3% of an EVALSHA on 100k keys.
    fn prefetch_tail(&self) {
        const AHEAD: usize = 256;
        if self.chunk.capacity() > AHEAD {
            crate::prefetch::prefetch(self.chunk.as_ptr().wrapping_add(AHEAD));
        }
    }

    /// `base` with `patch` applied, written once, straight into the arena.
    fn patched(&mut self, base: &[u8], patch: &crate::batch::Patch<'_>) -> Bytes {
        let len = patch.patched_len(base.len());
        if len == 0 {
            return Bytes::new();
        }
        if len > VALUE_ARENA_MAX_BYTES {
            let mut v = Vec::with_capacity(len);
            v.extend_from_slice(base);
            v.resize(len, 0);
            patch.write_pieces(&mut v);
            return Bytes::from(v);
        }
        self.reserve(len);
        let start = self.chunk.len();
        self.chunk.extend_from_slice(base);
        self.chunk.resize(start + len, 0);
        patch.write_pieces(&mut self.chunk[start..]);
        let out = self.chunk.split().freeze();
        self.prefetch_tail();
        out
    }

    /// The chunks no value outlives any more, emptied for reuse. Call once every value the memtable
    /// held is dropped.
    fn into_reusable(self) -> Vec<BytesMut> {
        let mut out = Vec::with_capacity(self.filled.len() + self.spare.len() + 1);
        for mut chunk in self.filled.into_iter().chain(std::iter::once(self.chunk)) {
            chunk.clear();
            if chunk.try_reclaim(VALUE_CHUNK_BYTES) && chunk.capacity() >= VALUE_CHUNK_BYTES {
                out.push(chunk);
            }
        }
        out.extend(self.spare);
        out
    }
}

/// A version's value as [`MemTable::add_with`] receives it: its bytes, or a base with a patch applied.
#[derive(Clone, Copy)]
enum NewValue<'a> {
    Copy(&'a [u8]),
    Patched(&'a [u8], &'a crate::batch::Patch<'a>),
}

impl NewValue<'_> {
    fn len(&self) -> usize {
        match self {
            NewValue::Copy(v) => v.len(),
            NewValue::Patched(base, patch) => patch.patched_len(base.len()),
        }
    }

    /// The value as a piece of the arena (or, past [`VALUE_ARENA_MAX_BYTES`], its own allocation).
    fn in_arena(self, arena: &mut ValueArena) -> Bytes {
        match self {
            NewValue::Copy(v) => arena.copy(v),
            NewValue::Patched(base, patch) => arena.patched(base, patch),
        }
    }

    /// The value written into `buf` (emptied first), an allocation of its own.
    fn in_own(self, mut buf: Vec<u8>) -> Bytes {
        buf.clear();
        match self {
            NewValue::Copy(v) => buf.extend_from_slice(v),
            NewValue::Patched(base, patch) => {
                buf.extend_from_slice(base);
                buf.resize(patch.patched_len(base.len()), 0);
                patch.write_pieces(&mut buf);
            }
        }
        Bytes::from(buf)
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

/// Bytes kept inline in a zero-padded buffer of `N` bytes (`N` < 256) when they fit, else on the heap as `H`.
#[derive(Clone)]
enum Packed<const N: usize, H> {
    Inline { len: u8, buf: [u8; N] },
    Heap(H),
}

impl<const N: usize, H: AsRef<[u8]> + From<Vec<u8>>> Packed<N, H> {
    /// `parts` concatenated.
    fn from_parts(parts: &[&[u8]]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= N {
            let mut buf = [0u8; N];
            let mut at = 0;
            for p in parts {
                buf[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            Packed::Inline {
                len: len as u8,
                buf,
            }
        } else {
            Packed::Heap(H::from(parts.concat()))
        }
    }

    /// `tree_be ++ key`.
    fn prefixed(tree: u32, key: &[u8]) -> Self {
        Self::from_parts(&[&tree.to_be_bytes(), key])
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            Packed::Inline { len, buf } => &buf[..usize::from(*len)],
            Packed::Heap(h) => h.as_ref(),
        }
    }
}

/// A user key in an index slot: inline when short.
type SlotKey = Packed<INDEX_INLINE_BYTES, Box<[u8]>>;

impl SlotKey {
    /// Whether this is `tree_be ++ key`, without building that key.
    #[inline]
    fn is(&self, tree: u32, key: &[u8]) -> bool {
        let b = self.as_bytes();
        b.len() == 4 + key.len() && b[..4] == tree.to_be_bytes() && &b[4..] == key
    }
}

/// One distinct key of a memtable: its prefixed user key and every version, shared by the hash index and
/// the ordered map. The index holds only a pointer to it, so the table a write probes stays small (a new key
/// writes 8 bytes there and its node into freshly allocated memory, where a 104-byte slot written into a
/// table of millions of slots was a cache miss and most of an insert's cost).
struct Node {
    key: SlotKey,
    /// Taken for writing only by the single applying thread.
    versions: RwLock<Versions>,
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
/// Equivalent to `a.cmp(b)`, but inlined: an ordered insert compares ~log2(n) keys of ~20 bytes, and the
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

/// Lookup keys up to this many bytes are built on the stack.
const LOOKUP_INLINE_BYTES: usize = 38;

/// An encoded internal key `tree_be ++ key ++ trailer(seqno, kind)`; short keys are stored inline.
#[derive(Clone)]
pub struct MemKey(Packed<LOOKUP_INLINE_BYTES, Box<[u8]>>);

impl MemKey {
    /// The internal key `tree_be ++ key ++ trailer(seqno, kind)`, built without an intermediate buffer
    /// when it fits inline.
    pub fn internal(tree: u32, key: &[u8], seqno: u64, kind: u8) -> Self {
        let trailer = ((seqno << 8) | u64::from(kind)).to_be_bytes();
        MemKey(Packed::from_parts(&[&tree.to_be_bytes(), key, &trailer]))
    }

    /// The encoded key.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for MemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MemKey").field(&self.as_bytes()).finish()
    }
}

/// User keys (tree prefix included) up to this many bytes live inside the ordered map's node itself, side
/// by side, so a search compares them without following a pointer per key. 56 bytes hold the sub-keys of
/// streams, hashes and sets (a stream's pending-entry key is ~45 bytes with its prefixes); a key and its
/// length then fill one 64-byte cache line.
const NODE_INLINE_BYTES: usize = 56;

/// A key of the ordered map: a prefixed user key, inline when short. Inline buffers are zero-padded, which lets two
/// inline keys compare as big-endian words and then their lengths (a zero pad byte is the smallest
/// byte, so where the padded words first differ is where the keys first differ, and when they are equal
/// the shorter key is a prefix of the longer).
type NodeKey = Packed<NODE_INLINE_BYTES, Bytes>;

/// Word `w` (bytes `8w..8w+8`, big-endian) of an inline node key; `w < NODE_INLINE_BYTES / 8`.
#[inline(always)]
fn node_word(buf: &[u8; NODE_INLINE_BYTES], w: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[w * 8..w * 8 + 8]);
    u64::from_be_bytes(a)
}

impl Ord for NodeKey {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> CmpOrdering {
        match (self, other) {
            (Packed::Inline { len: la, buf: ba }, Packed::Inline { len: lb, buf: bb }) => {
                for w in 0..NODE_INLINE_BYTES / 8 {
                    let (x, y) = (node_word(ba, w), node_word(bb, w));
                    if x != y {
                        return x.cmp(&y);
                    }
                }
                la.cmp(lb)
            }
            _ => compare_bytes(self.as_bytes(), other.as_bytes()),
        }
    }
}

impl PartialOrd for NodeKey {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for NodeKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for NodeKey {}

impl std::borrow::Borrow<[u8]> for NodeKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// One version of a key: its trailer `seqno << 8 | kind` and value.
#[derive(Clone)]
struct Version {
    trailer: u64,
    value: Bytes,
}

/// Every version of one user key in a memtable, in ascending trailer order (oldest first), and how the
/// newest differs from the one before it when it was written as a patch of it (see [`Delta`]).
///
/// Up to two versions are held in the node itself: a rewritten key keeps two in the steady state (the
/// newest and the one a read in flight may still want; [`Versions::insert`] drops older ones), and in a
/// vector of their own a point read paid a third cache miss after the index slot and the node (29% of
/// `MemTable::get_lookup`, itself 8% of the `strata-bench kv` EVALSHA run's CPU).
struct Versions {
    vs: SmallVec<[Version; 2]>,
    delta: Option<Box<Delta>>,
}

/// The byte ranges `(offset, length)` in which a key's newest version differs from the one before it, the
/// newest having been written as a patch of that one, of the same length. Outside them the two values
/// are equal, so the older one's buffer becomes the newest's value by copying these ranges over (see
/// [`Versions::recycle_patched`]). Boxed, so a key's versions stay as small as without it; a patch of
/// more pieces than it holds has no delta.
struct Delta {
    len: usize,
    ranges: [(u32, u32); DELTA_RANGES],
}

/// Pieces a [`Delta`] holds: a PFADD patches 2 or 3 (the header's cache bit and one register's bytes).
const DELTA_RANGES: usize = 6;

impl Delta {
    fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges[..self.len]
    }
}

impl Versions {
    /// A key's first version.
    fn one(v: Version) -> Self {
        let mut vs = SmallVec::new();
        vs.push(v);
        Versions { vs, delta: None }
    }

    #[inline]
    fn as_slice(&self) -> &[Version] {
        &self.vs
    }

    /// The delta of a new version that is `patch` applied to `base`, if `base` is this key's newest
    /// value itself (not a copy) and the patch keeps its length.
    fn patch_delta(&self, base: &[u8], patch: &crate::batch::Patch<'_>) -> Option<Box<Delta>> {
        let newest = &self.as_slice().last()?.value;
        if newest.as_ptr() != base.as_ptr()
            || newest.len() != base.len()
            || patch.patched_len(base.len()) != base.len()
        {
            return None;
        }
        let mut delta = Delta {
            len: 0,
            ranges: [(0, 0); DELTA_RANGES],
        };
        for (offset, bytes) in patch.pieces() {
            let slot = delta.ranges.get_mut(delta.len)?;
            *slot = (
                u32::try_from(offset).ok()?,
                u32::try_from(bytes.len()).ok()?,
            );
            delta.len += 1;
        }
        Some(Box::new(delta))
    }

    /// The value of a new version that is `patch` applied to the newest (`base`, with the patch's ranges
    /// known, see [`Versions::patch_delta`]), built in the buffer of the version before the newest
    /// when that one is shadowed at `horizon` and holds the only handle on its buffer: that buffer
    /// differs from the newest only in the newest's [`Delta`], so the new value costs copying those few
    /// bytes and the patch's, not the whole value (a dense HyperLogLog is 12 KiB; PFADD changes 2 bytes).
    /// Returns what it dropped (the shadowed versions, as [`Versions::drop_shadowed`]; the reused buffer
    /// counts as released, the new value holding it again) and the value; `None`, changing nothing, when
    /// the buffer cannot be used so.
    fn recycle_patched(
        &mut self,
        horizon: u64,
        base: &[u8],
        patch: &crate::batch::Patch<'_>,
    ) -> Option<(Dropped, Bytes)> {
        let Versions {
            vs,
            delta: Some(delta),
        } = self
        else {
            return None;
        };
        let n = shadowed(vs, horizon);
        if vs.len() < 2 || n != vs.len() - 1 {
            return None;
        }
        let before = n - 1;
        let buf = match std::mem::take(&mut vs[before].value).try_into_mut() {
            Ok(buf) if buf.len() == base.len() => buf,
            Ok(buf) => {
                vs[before].value = buf.freeze();
                return None;
            }
            Err(shared) => {
                vs[before].value = shared;
                return None;
            }
        };
        let mut buf = buf;
        for &(offset, len) in delta.ranges() {
            let range = offset as usize..offset as usize + len as usize;
            buf[range.clone()].copy_from_slice(&base[range]);
        }
        patch.write_pieces(&mut buf);
        let mut dropped = Dropped {
            versions: 0,
            value_bytes: buf.len(),
        };
        for v in vs.drain(..n) {
            dropped.count(&v);
        }
        Some((dropped, buf.freeze()))
    }

    /// Records how the newest version differs from the one before it (`None`: unknown).
    fn set_delta(&mut self, d: Option<Box<Delta>>) {
        self.delta = d;
    }

    /// Drops the versions whose successor is at or below `horizon` (see [`Versions::insert`]), returning
    /// what it dropped and, when one of them held the only handle on a buffer of its own of at least `want`
    /// bytes, that buffer. (A piece of an arena chunk is never unique: the arena holds every chunk.)
    fn drop_shadowed(&mut self, horizon: u64, want: usize) -> (Dropped, Option<Vec<u8>>) {
        let vs = &mut self.vs;
        let n = shadowed(vs, horizon);
        let mut spare = None;
        let mut dropped = Dropped::default();
        for v in vs.drain(..n) {
            dropped.count(&v);
            if spare.is_none()
                && let Ok(mut own) = v.value.try_into_mut()
            {
                // Emptied first: turning a `BytesMut` into a `Vec` copies its contents, and the old
                // value is neither wanted nor in cache (3% of an EVALSHA run's CPU read it).
                own.clear();
                let buf = Vec::from(own);
                if buf.capacity() >= want {
                    spare = Some(buf);
                }
            }
        }
        (dropped, spare)
    }

    /// Adds `v` in trailer order (at the end, live: groups apply in seqno order); an equal trailer is
    /// replaced, as a map insert of an equal key would. Appending, it first drops the versions whose
    /// successor is at or below `horizon` (the newest of those at or below it stays: reads at the
    /// horizon see it) and returns what it dropped. The newest version's delta is forgotten (an
    /// appending caller that knows it sets it after).
    fn insert(&mut self, v: Version, horizon: u64) -> Dropped {
        self.set_delta(None);
        let vs = &mut self.vs;
        let mut dropped = Dropped::default();
        match vs.last() {
            Some(last) if last.trailer < v.trailer => {
                let n = shadowed(vs, horizon);
                for old in vs.drain(..n) {
                    dropped.count(&old);
                }
                vs.push(v);
            }
            _ => match vs.binary_search_by_key(&v.trailer, |x| x.trailer) {
                Ok(i) => {
                    let old = std::mem::replace(&mut vs[i], v);
                    dropped.count(&old);
                }
                Err(i) => vs.insert(i, v),
            },
        }
        dropped
    }
}

/// What dropping versions of a key released, so the memtable's size counts only what it still holds:
/// how many versions, and the bytes of those values that were allocations of their own with no other
/// handle (a piece of an arena chunk stays until the chunk goes, and a value a reader still holds stays
/// with it).
#[derive(Default, Clone, Copy)]
struct Dropped {
    versions: usize,
    value_bytes: usize,
}

impl Dropped {
    fn count(&mut self, v: &Version) {
        self.versions += 1;
        if v.value.is_unique() {
            self.value_bytes += v.value.len();
        }
    }

    fn add(&mut self, other: Dropped) {
        self.versions += other.versions;
        self.value_bytes += other.value_bytes;
    }
}

/// How many of `vs` (in trailer order) have a successor at or below `horizon`: the versions no read sees.
fn shadowed(vs: &[Version], horizon: u64) -> usize {
    vs.partition_point(|x| x.trailer >> 8 <= horizon)
        .saturating_sub(1)
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

/// The memtable's distinct keys. A new key is appended to `unordered` (a vector push, where a map insert
/// was 6% of a write-heavy script's CPU on the applying thread); the first ordered read after that sorts
/// those keys into `sorted`, so a flush, which reads the whole memtable once, sorts its keys in one go on
/// its own thread, and a workload that scans as it writes orders a few keys per scan.
///
/// The keys a memtable's first ordering sorts (for most memtables, all of them, at the flush) go to `run`
/// instead: the nodes themselves in key order, a vector of pointers. The flush walks them once, and
/// building the map for that walk (a copy of every key beside its node, the map's nodes, then dropping it
/// all) was half the flush thread's CPU under XADD. Only a later ordering that adds few keys to many
/// builds the map, from `run` and the new keys; from then on `run` stays empty.
#[derive(Default)]
struct Ordered {
    sorted: BTreeMap<NodeKey, Arc<Node>>,
    /// Nodes in key order, none in `sorted`, and only while `sorted` is empty.
    run: Vec<Arc<Node>>,
    /// Changes whenever `run` is replaced, so an iterator's remembered place in it is known stale.
    run_generation: u64,
    /// Nodes of keys in no particular order, none of them in `sorted` (a key enters the memtable once),
    /// grouped by their first bytes ([`Unordered`]). Only the node, not a map key beside it: the applying
    /// thread writes 8 bytes per new key here, not 72, and [`Ordered::order`] makes the map keys from the
    /// nodes, on the thread that orders.
    unordered: Vec<Unordered>,
    /// The group the last new key went to (a run of writes mostly stays in one).
    last_group: usize,
    /// Room reserved for new keys ([`MemTable::reserve_keys_for`]), taken by the first group.
    spare: Vec<Arc<Node>>,
}

/// The unordered new keys that share their first [`GROUP_HEAD_BYTES`] bytes: the tree and the first byte
/// of the user key, which in a kv keyspace tells a key's record from its expiry index entry and from a
/// collection's elements. A range read orders only the groups whose span meets its range, so the active
/// expiry's scan of the index (every 100 ms) orders the few index entries written since the last one, not
/// every stream entry and record the commands wrote meanwhile (26% of the expiry thread's CPU in the kv
/// benchmark, when one span covered all the new keys).
struct Unordered {
    head: u64,
    nodes: Vec<Arc<Node>>,
    /// The smallest and largest key in `nodes`, so a read of a range outside them need not order them
    /// (XREADGROUP scans entries while the pending entries it adds are elsewhere in the tree).
    span: Option<(NodeKey, NodeKey)>,
}

/// Key bytes that decide a key's [`Unordered`] group: the tree's 4 and one of the user key.
const GROUP_HEAD_BYTES: usize = 5;

/// Groups with a head of their own; the keys of further heads share the group [`MIXED_GROUP`].
const MAX_GROUPS: usize = 16;

/// The head of the group of keys past [`MAX_GROUPS`] heads (no key's: a head's last byte is at most 5).
const MIXED_GROUP: u64 = u64::MAX;

/// The group of a prefixed key: its first [`GROUP_HEAD_BYTES`] bytes and their count.
fn group_head(key: &[u8]) -> u64 {
    let n = key.len().min(GROUP_HEAD_BYTES);
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&key[..n]);
    b[7] = n as u8;
    u64::from_be_bytes(b)
}

impl Unordered {
    /// Whether every key lies outside the user-key range `bounds` (prefixed keys).
    fn outside(&self, bounds: &KeyBounds) -> bool {
        let Some((min, max)) = &self.span else {
            return true;
        };
        let (min, max) = (min.as_bytes(), max.as_bytes());
        let below = match &bounds.1 {
            Bound::Included(hi) => hi.as_slice() < min,
            Bound::Excluded(hi) => hi.as_slice() <= min,
            Bound::Unbounded => false,
        };
        let above = match &bounds.0 {
            Bound::Included(lo) => lo.as_slice() > max,
            Bound::Excluded(lo) => lo.as_slice() >= max,
            Bound::Unbounded => false,
        };
        below || above
    }
}

impl Ordered {
    fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.run.is_empty() && !self.has_unordered()
    }

    fn has_unordered(&self) -> bool {
        self.unordered.iter().any(|g| !g.nodes.is_empty())
    }

    /// Adds a new key's node, unordered.
    fn push(&mut self, node: Arc<Node>) {
        let key = node.key.as_bytes();
        let head = group_head(key);
        let at = match self.unordered.get(self.last_group) {
            Some(g) if g.head == head => self.last_group,
            _ => self.group_for(head),
        };
        self.last_group = at;
        let group = &mut self.unordered[at];
        match &mut group.span {
            None => {
                let k = NodeKey::from_parts(&[key]);
                group.span = Some((k.clone(), k));
            }
            Some((lo, hi)) => {
                if key < lo.as_bytes() {
                    *lo = NodeKey::from_parts(&[key]);
                } else if key > hi.as_bytes() {
                    *hi = NodeKey::from_parts(&[key]);
                }
            }
        }
        group.nodes.push(node);
    }

    /// The group of keys with `head`: a new one unless there are [`MAX_GROUPS`] already, when the keys of
    /// every further head share one (binary keys could otherwise make hundreds of groups per tree).
    fn group_for(&mut self, head: u64) -> usize {
        if let Some(at) = self.unordered.iter().position(|g| g.head == head) {
            return at;
        }
        let head = if self.unordered.len() >= MAX_GROUPS {
            if let Some(at) = self.unordered.iter().position(|g| g.head == MIXED_GROUP) {
                return at;
            }
            MIXED_GROUP
        } else {
            head
        };
        self.unordered.push(Unordered {
            head,
            nodes: std::mem::take(&mut self.spare),
            span: None,
        });
        self.unordered.len() - 1
    }

    /// Orders every key into one run, the map's keys included: for a memtable that takes no more keys (a
    /// frozen one about to be flushed), which will be read once, in order. Ordering its last new keys into
    /// the map instead built a B-tree of a million keys (a merge and a bulk build) for one pass over it,
    /// ~19% of the flush thread's CPU in the kv suite, where reads during the memtable's life had made a
    /// map of it.
    fn order_into_run(&mut self) {
        if !self.sorted.is_empty() {
            // A map is only ever made of a run that it then replaces: it is all the ordered keys.
            debug_assert!(self.run.is_empty());
            self.run = std::mem::take(&mut self.sorted).into_values().collect();
            self.run_generation += 1;
        }
        self.order(None, true);
    }

    /// Whether every unordered key lies outside the user-key range `bounds` (prefixed keys).
    fn unordered_outside(&self, bounds: &KeyBounds) -> bool {
        self.unordered.iter().all(|g| g.outside(bounds))
    }

    /// Moves the unordered keys of the groups that meet `bounds` (all of them without bounds) into `run` or
    /// `sorted`: sorted first, then appended as the run when nothing was ordered before, merged with the
    /// run when they are many against it, or else put in the map: built in bulk when it is empty (from the
    /// run and the new keys) or by a merge when the new keys are many against it, or inserted in key order,
    /// which walks neighbouring leaves. Rebuilding a large map by a merge on every ordering was tried: a
    /// periodic scan (active expiry, every 100 ms) then rebuilt a map of ~300k keys per tick to add ~10k.
    /// With `into_run`, the new keys always go into the run (see [`Ordered::order_into_run`]).
    fn order(&mut self, bounds: Option<&KeyBounds>, into_run: bool) {
        let taken = |g: &Unordered| !g.nodes.is_empty() && !bounds.is_some_and(|b| g.outside(b));
        // Sized for every group's keys at once: appending one group after another regrew it, copying
        // (and faulting in) megabytes per flush.
        let mut new: Vec<Arc<Node>> = Vec::with_capacity(
            self.unordered
                .iter()
                .filter(|g| taken(g))
                .map(|g| g.nodes.len())
                .sum(),
        );
        // The smallest and largest new key: every key between them shares the prefix they share.
        let mut extremes: Option<(NodeKey, NodeKey)> = None;
        let mut spans_known = true;
        for group in &mut self.unordered {
            if !taken(group) {
                continue;
            }
            match (group.span.take(), &mut extremes) {
                (None, _) => spans_known = false,
                (Some(span), None) => extremes = Some(span),
                (Some((lo, hi)), Some((min, max))) => {
                    if lo.as_bytes() < min.as_bytes() {
                        *min = lo;
                    }
                    if hi.as_bytes() > max.as_bytes() {
                        *max = hi;
                    }
                }
            }
            // Drained rather than taken, so the group keeps its room for the keys still to come.
            new.append(&mut group.nodes);
        }
        if new.is_empty() {
            return;
        }
        let shared = extremes
            .filter(|_| spans_known)
            .map(|(min, max)| common_prefix(min.as_bytes(), max.as_bytes()));
        sort_nodes(&mut new, shared);
        if self.sorted.is_empty() && (into_run || new.len() * 4 >= self.run.len()) {
            self.run = if self.run.is_empty() {
                new
            } else {
                merge_nodes(std::mem::take(&mut self.run), new)
            };
            self.run_generation += 1;
            return;
        }
        let with_keys = |nodes: Vec<Arc<Node>>| {
            nodes
                .into_iter()
                .map(|n| (NodeKey::from_parts(&[n.key.as_bytes()]), n))
        };
        if !self.run.is_empty() {
            // Few keys against the run: the map from now on (see above).
            let run = std::mem::take(&mut self.run);
            self.run_generation += 1;
            self.sorted = with_keys(run).collect();
            self.sorted.extend(with_keys(new));
        } else if new.len() * 4 >= self.sorted.len() {
            // Many new keys against the map (a flush after scans ordered only part of the memtable): one
            // merge and a bulk build cost less than an insert each.
            let old = std::mem::take(&mut self.sorted);
            self.sorted = MergeSorted {
                a: old.into_iter().peekable(),
                b: with_keys(new).peekable(),
            }
            .collect();
        } else {
            self.sorted.extend(with_keys(new));
        }
    }
}

/// Two runs of nodes in key order, with no key in both, merged into one.
fn merge_nodes(a: Vec<Arc<Node>>, b: Vec<Arc<Node>>) -> Vec<Arc<Node>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y.key.as_bytes() < x.key.as_bytes() => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(n) => out.push(n),
            None => return out,
        }
    }
}

/// Sorts a memtable's new keys (their nodes, by key). `shared`, when the caller knows it, is how many
/// leading bytes every key has in common (else a pass over the keys finds out).
///
/// Comparison sorts compared keys from their first byte, though the keys of one flush mostly share a long
/// prefix (tree, collection key and version): 7% of the CPU of an XACK run went to ordering the keys of
/// each flush. Here the keys are sorted by 24-byte digits, most significant first, starting after the
/// prefix all of them share (small (digit, position) records are sorted; a run of equal digits is sorted
/// by the next digit), and the nodes are then gathered in that order.
fn sort_nodes(nodes: &mut Vec<Arc<Node>>, shared: Option<usize>) {
    const SMALL: usize = 64;
    if nodes.len() <= SMALL || u32::try_from(nodes.len()).is_err() {
        nodes.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        return;
    }
    let shared = shared.unwrap_or_else(|| {
        let first = nodes[0].key.as_bytes();
        // Each node is a cache miss of its own (they lie wherever the allocator put them): the passes
        // over them load a few nodes ahead.
        let mut shared = first.len();
        for (at, node) in nodes.iter().enumerate() {
            if let Some(ahead) = nodes.get(at + NODE_LOOKAHEAD) {
                prefetch_node(ahead);
            }
            shared = shared.min(common_prefix(first, node.key.as_bytes()));
        }
        shared
    });
    let mut order: Vec<Digit> = (0..nodes.len())
        .map(|i| Digit {
            high: 0,
            low: 0,
            at: i as u32,
        })
        .collect();
    sort_by_digits(&mut order, nodes, shared);
    // Gathered into a new vector, each node's pointer moved once (a clone and drop would touch every node).
    let mut from: Vec<Option<Arc<Node>>> = std::mem::take(nodes).into_iter().map(Some).collect();
    *nodes = order
        .iter()
        .map(|d| {
            from[d.at as usize]
                .take()
                .expect("a permutation takes each node once")
        })
        .collect();
}

/// How many leading bytes `a` and `b` have in common.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One key's digit (its 24 bytes from some offset, zero-padded, as two big-endian numbers) and its
/// position. The 8 bytes of `low` fill what would be padding beside a 16-byte digit: the record is 32 bytes
/// either way, and a stream entry's key (a family byte and a 16-byte ID past the shared prefix) is told
/// apart by one digit, where 16 bytes left the entries of each millisecond tied for a second pass.
#[derive(Clone, Copy)]
struct Digit {
    high: u128,
    low: u64,
    at: u32,
}

impl Digit {
    fn key(&self) -> (u128, u64) {
        (self.high, self.low)
    }
}

/// Sorts `order` (positions into `keys`, which agree on their first `offset` bytes) by key.
fn sort_by_digits(order: &mut [Digit], keys: &[Arc<Node>], offset: usize) {
    /// Digits compared before a run of keys that still tie is sorted by whole keys (bounds the work on
    /// long keys that share most of their bytes).
    const MAX_DIGITS: usize = 6;
    const DIGIT: usize = 24;
    let mut merged: Vec<Digit> = Vec::new();
    let mut pending = vec![(0, order.len(), offset)];
    while let Some((lo, hi, at)) = pending.pop() {
        let run = &mut order[lo..hi];
        if at >= offset + MAX_DIGITS * DIGIT
            || run
                .iter()
                .all(|e| keys[e.at as usize].key.as_bytes().len() <= at)
        {
            run.sort_unstable_by(|a, b| {
                keys[a.at as usize]
                    .key
                    .as_bytes()
                    .cmp(keys[b.at as usize].key.as_bytes())
            });
            continue;
        }
        // Zero-padded, so a digit orders as the key does among keys equal up to `at` (a tie of digits
        // goes on to the next one, or to whole keys: `a` and `a\0` have equal digits).
        for i in 0..run.len() {
            if let Some(ahead) = run.get(i + NODE_LOOKAHEAD) {
                prefetch_node(&keys[ahead.at as usize]);
            }
            let e = &mut run[i];
            let mut d = [0u8; DIGIT];
            let tail = keys[e.at as usize]
                .key
                .as_bytes()
                .get(at..)
                .unwrap_or_default();
            let n = tail.len().min(DIGIT);
            d[..n].copy_from_slice(&tail[..n]);
            let (high, low) = d.split_at(16);
            e.high = u128::from_be_bytes(high.try_into().expect("16 bytes"));
            e.low = u64::from_be_bytes(low.try_into().expect("8 bytes"));
        }
        // Keys added in a few ascending sequences at once (a stream's entries beside its node records)
        // are merged; keys added mostly in order make a few ascending runs, which the stable sort merges
        // in about one pass (the unstable one sorted them as if shuffled).
        if !merge_lanes(run, &mut merged) {
            let descents = run.windows(2).filter(|w| w[1].key() < w[0].key()).count();
            if descents * 64 < run.len() {
                run.sort_by_key(Digit::key);
            } else {
                run.sort_unstable_by_key(Digit::key);
            }
        }
        let mut i = 0;
        while i < run.len() {
            let mut j = i + 1;
            while j < run.len() && run[j].key() == run[i].key() {
                j += 1;
            }
            if j - i > 1 {
                pending.push((lo + i, lo + j, at + DIGIT));
            }
            i = j;
        }
    }
}

/// Sorts `run` by digit if it is at most four ascending (non-decreasing) sequences interleaved, as
/// the keys of a stream's entries, its node records and the node records its trims delete are: each
/// record goes to the lane whose last digit is the largest one not above its own, and the lanes are then
/// merged through `merged` (scratch). Returns false, `run` unchanged, when more lanes would be needed.
/// Two passes and a copy, where sorting such keys cost a stable sort's quicksort on runs too short for
/// it to merge (a fifth of the flush thread's CPU under XADD -P16).
fn merge_lanes(run: &mut [Digit], merged: &mut Vec<Digit>) -> bool {
    const LANES: usize = 4;
    let mut last = [(0u128, 0u64); LANES];
    let mut lanes = 0;
    let mut lane_of: Vec<u8> = Vec::with_capacity(run.len());
    for e in run.iter() {
        let key = e.key();
        let mut pick: Option<usize> = None;
        for (i, l) in last[..lanes].iter().enumerate() {
            if *l <= key && pick.is_none_or(|p| last[p] < *l) {
                pick = Some(i);
            }
        }
        let lane = match pick {
            Some(i) => i,
            None if lanes < LANES => {
                lanes += 1;
                lanes - 1
            }
            None => return false,
        };
        last[lane] = key;
        lane_of.push(lane as u8);
    }
    if lanes <= 1 {
        return true;
    }
    // Each lane's next record: a cursor that skips the other lanes' records.
    let next_of = |lane: usize, from: usize| {
        lane_of[from..]
            .iter()
            .position(|&l| usize::from(l) == lane)
            .map_or(run.len(), |p| from + p)
    };
    let mut cursor = [0usize; LANES];
    for (lane, c) in cursor[..lanes].iter_mut().enumerate() {
        *c = next_of(lane, 0);
    }
    merged.clear();
    merged.reserve(run.len());
    for _ in 0..run.len() {
        let mut best: Option<usize> = None;
        for lane in 0..lanes {
            if cursor[lane] < run.len()
                && best.is_none_or(|b| run[cursor[lane]].key() < run[cursor[b]].key())
            {
                best = Some(lane);
            }
        }
        let lane = best.expect("a lane has records left while some are unmerged");
        merged.push(run[cursor[lane]]);
        cursor[lane] = next_of(lane, cursor[lane] + 1);
    }
    run.copy_from_slice(merged);
    true
}

/// One fill of a [`MemIter`]'s buffer: where it starts, in which direction, and how much it takes.
struct Fill<'b, 's> {
    buf: &'b mut VecDeque<(NodeKey, u64, Bytes)>,
    fill: usize,
    newest_only: bool,
    start: FillFrom<'s>,
    backward: bool,
}

impl Fill<'_, '_> {
    /// Pushes the entries of `nodes` (in the fill's direction, each with its map key when it has one)
    /// from the start on, until the buffer holds `fill`: forward, each key's versions newest first;
    /// backward, oldest first; only each key's newest version when `newest_only`. Returns the position
    /// among `nodes` of the last node it took entries from (0 if none).
    fn take<'a>(
        &mut self,
        nodes: impl Iterator<Item = (Option<&'a NodeKey>, &'a Arc<Node>)> + Clone,
    ) -> usize {
        let Fill {
            buf,
            fill,
            newest_only,
            start,
            backward,
        } = self;
        let (fill, newest_only, backward) = (*fill, *newest_only, *backward);
        let mut start = start.take();
        let mut ahead = nodes.clone();
        ahead
            .by_ref()
            .take(NODE_LOOKAHEAD)
            .for_each(|(_, n)| prefetch_node(n));
        let mut last = 0;
        for (at, (key, node)) in nodes.enumerate() {
            if let Some((_, n)) = ahead.next() {
                prefetch_node(n);
            }
            let versions = node.versions.read();
            let vs = versions.as_slice();
            let (mut begin, mut end) = (0, vs.len());
            if let Some((u, t, inclusive)) = start.take()
                && node.key.as_bytes() == u
            {
                if backward {
                    // Entries before `(u, t)` are this key's versions with larger trailers.
                    begin = vs.partition_point(|v| v.trailer < t || (!inclusive && v.trailer == t));
                } else {
                    // Entries after `(u, t)` are this key's versions with smaller trailers.
                    end = vs.partition_point(|v| v.trailer < t || (inclusive && v.trailer == t));
                }
            }
            // Newest only: the key's newest version, if the bound lets it in.
            let shown = match (newest_only, backward) {
                (false, _) => &vs[begin..end],
                (true, false) if end == vs.len() => &vs[end.saturating_sub(1)..end],
                (true, false) => &[],
                (true, true) => &vs[vs.len().saturating_sub(1).max(begin)..],
            };
            if shown.is_empty() {
                continue;
            }
            last = at;
            let key = key
                .cloned()
                .unwrap_or_else(|| NodeKey::from_parts(&[node.key.as_bytes()]));
            // Stops inside a key's versions too: a hot key can have thousands.
            let room = fill.saturating_sub(buf.len()).max(1);
            let mut push = |v: &Version| buf.push_back((key.clone(), v.trailer, v.value.clone()));
            if backward {
                shown.iter().take(room).for_each(&mut push);
            } else {
                shown.iter().rev().take(room).for_each(&mut push);
            }
            if buf.len() >= fill {
                break;
            }
        }
        last
    }
}

/// Where a fill from `start` begins in `map.run` (not empty): forward, the first node at or after its
/// key; backward, one past the last node at or before it. `hint`, where the iterator's previous fill
/// stopped, is tried first, so a walk over the run costs no search per fill.
fn run_position(
    hint: Option<(u64, usize)>,
    map: &Ordered,
    start: FillFrom<'_>,
    backward: bool,
) -> usize {
    let run = &map.run;
    let Some((u, _, _)) = start else {
        return if backward { run.len() } else { 0 };
    };
    let i = match hint {
        Some((generation, i))
            if generation == map.run_generation
                && run.get(i).is_some_and(|n| n.key.as_bytes() == u) =>
        {
            i
        }
        _ => run.partition_point(|n| n.key.as_bytes() < u),
    };
    // Backward, the node at `u` itself is in the fill.
    let at_u = run.get(i).is_some_and(|n| n.key.as_bytes() == u);
    i + usize::from(backward && at_u)
}

/// Asks the CPU to load `node` (its key, its versions' lock and, for most keys, every version) ahead of a
/// read.
#[inline]
fn prefetch_node(node: &Arc<Node>) {
    prefetch_node_at(Arc::as_ptr(node).cast::<u8>());
}

/// [`prefetch_node`] of the node at `p`: each of the cache lines it spans.
#[inline]
fn prefetch_node_at(p: *const u8) {
    let mut offset = 0;
    while offset < size_of::<Node>() {
        crate::prefetch::prefetch(p.wrapping_add(offset));
        offset += 64;
    }
    crate::prefetch::prefetch(p.wrapping_add(size_of::<Node>() - 1));
}

/// Adds `n` to a counter only the applying thread changes (a plain load and store: no locked instruction).
#[inline]
fn bump(counter: &AtomicUsize, n: usize) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Two ascending sequences of distinct keys merged into one.
struct MergeSorted<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A, B> Iterator for MergeSorted<A, B>
where
    A: Iterator<Item = (NodeKey, Arc<Node>)>,
    B: Iterator<Item = (NodeKey, Arc<Node>)>,
{
    type Item = (NodeKey, Arc<Node>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y.0 < x.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// A range of prefixed user keys: lower and upper bound.
pub type KeyBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A memtable.
pub struct MemTable {
    /// Every distinct user key with its versions: in order, and the newest keys not yet ordered. Written
    /// by the applying thread for new keys only; read by iterators, a prefetch buffer at a time.
    map: RwLock<Ordered>,
    /// Whether `map` has keys not yet ordered (readable without its lock).
    has_unordered: AtomicBool,
    /// Every user key by hash, with its newest version (see the module docs); shard = hash bits 32.. .
    index: Box<[IndexShard]>,
    /// Distinct user keys in `index` (sizes the next memtable's index).
    distinct_keys: AtomicUsize,
    /// Point entries (versions).
    entries: AtomicUsize,
    /// Held for a whole [`MemTable::add`], so adds are serialized (one thread applies, so it is
    /// uncontended); values are copied into its arena.
    writer: Mutex<ValueArena>,
    range_dels: RwLock<RangeDels>,
    /// Whether `range_dels` is non-empty, readable without the lock on the read path.
    has_range_dels: AtomicBool,
    /// Memory held: what the adds counted, less what dropped versions gave back.
    approx_bytes: AtomicUsize,
    /// Bytes of the WAL frames whose writes this memtable holds (see [`MemTable::is_full`]).
    wal_bytes: AtomicUsize,
    max_seqno: AtomicU64,
    /// Oldest WAL segment holding data of this memtable.
    pub wal_id: u64,
}

/// What a released memtable leaves for the next one (see [`MemTable::release`]).
#[derive(Default)]
pub struct Leftovers {
    chunks: Vec<BytesMut>,
    /// The key index tables, every slot empty.
    tables: Vec<crate::huge::HugeSlice<Slot>>,
}

impl Leftovers {
    /// Takes the value chunks.
    pub fn take_chunks(&mut self) -> Vec<BytesMut> {
        std::mem::take(&mut self.chunks)
    }
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
        Self::with_leftovers(wal_id, keys, &mut Leftovers::default())
    }

    /// [`MemTable::with_key_capacity`], on a released memtable's key index tables when they are the size
    /// it wants: fresh ones are tens of MB of pages the kernel zeroes (a commit leader that had to build
    /// its next memtable spent ~40 ms at it, 1.4% of XADD -P16's worker). Takes the tables either way;
    /// leaves the chunks (see [`MemTable::give_chunks`]).
    pub fn with_leftovers(wal_id: u64, keys: usize, leftovers: &mut Leftovers) -> Self {
        let slots = KeyIndex::slots_for(keys.div_ceil(INDEX_SHARDS));
        let mut tables = std::mem::take(&mut leftovers.tables);
        // Up to twice the slots wanted will do (the load is lower, the memory what the last one had).
        if tables.len() != INDEX_SHARDS
            || tables
                .iter()
                .any(|t| t.len() < slots || t.len() > 2 * slots)
        {
            drop(tables);
            // The shards' tables side by side in one region, so together they make whole huge pages.
            tables = crate::huge::HugeSlice::split(INDEX_SHARDS, slots);
        }
        MemTable {
            map: RwLock::new(Ordered {
                spare: Vec::with_capacity(keys),
                ..Ordered::default()
            }),
            has_unordered: AtomicBool::new(false),
            index: tables
                .into_iter()
                .map(|slots| IndexShard::new(KeyIndex { slots, len: 0 }))
                .collect(),
            distinct_keys: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            writer: Mutex::new(ValueArena::new()),
            range_dels: RwLock::new(RangeDels::default()),
            has_range_dels: AtomicBool::new(false),
            approx_bytes: AtomicUsize::new(0),
            wal_bytes: AtomicUsize::new(0),
            max_seqno: AtomicU64::new(0),
            wal_id,
        }
    }

    /// Releases this memtable into `leftovers`: the value chunks no reader still holds a value of, and its
    /// key index tables, emptied, for the next memtable ([`MemTable::with_leftovers`]). The flush thread
    /// calls it on memtables it flushed.
    pub fn release(self, leftovers: &mut Leftovers) {
        let MemTable {
            map,
            index,
            writer,
            range_dels,
            ..
        } = self;
        // Every value lives in a node (index and ordered map share them); drop them first. The map goes
        // first, in key order, and leaves the index the last reference to each node. The run's nodes are
        // loaded a few ahead, as the index's are (see `release_nodes`).
        let mut ordered = map.into_inner();
        let mut run = std::mem::take(&mut ordered.run).into_iter();
        while let Some(node) = run.next() {
            if let Some(ahead) = run.as_slice().get(NODE_LOOKAHEAD) {
                crate::prefetch::prefetch(Arc::as_ptr(ahead).cast::<u8>().wrapping_sub(16));
            }
            drop(node);
        }
        drop(ordered);
        leftovers.tables = index
            .into_iter()
            .map(|shard| {
                let mut table = shard.table.into_inner();
                table.release_nodes();
                table.slots
            })
            .collect();
        drop(range_dels);
        leftovers.chunks.extend(writer.into_inner().into_reusable());
    }

    /// Hands this memtable value chunks to fill before it allocates any (see [`MemTable::release`]).
    /// It keeps at most `max` waiting; the rest go back to the allocator.
    pub fn give_chunks(&self, chunks: Vec<BytesMut>, max: usize) {
        let mut arena = self.writer.lock();
        let room = max.saturating_sub(arena.spare.len());
        arena.spare.extend(chunks.into_iter().take(room));
    }

    /// Reserves room in the list of new keys for as many as a memtable of `bytes` can hold (each new key
    /// counts at least [`KEY_OVERHEAD_BYTES`]), so it never grows by copying: doubling a vector of 1M
    /// keys copied ~70 MB and touched twice its pages (XADD -P16: ~5% of the worker). Untouched room
    /// costs address space only.
    pub fn reserve_keys_for(&self, bytes: usize) {
        let keys = bytes / (KEY_OVERHEAD_BYTES + ENTRY_OVERHEAD_BYTES);
        let mut map = self.map.write();
        // The group that takes most of the new keys is usually the first one (a record, or a stream's
        // entries); the others grow as they need.
        let map = &mut *map;
        let room = match map.unordered.first_mut() {
            Some(g) => &mut g.nodes,
            None => &mut map.spare,
        };
        if room.is_empty() {
            // A fresh allocation, not a reserve: growing copies the old capacity, touching its pages.
            if room.capacity() < keys {
                *room = Vec::with_capacity(keys);
            }
        } else {
            room.reserve(keys.saturating_sub(room.len()));
        }
    }

    /// Approximate memory used. Versions dropped as their key is rewritten give back what they counted
    /// (their value's bytes only when that memory went with them), so a memtable of hot keys that are
    /// rewritten over and over stays the size of its live data.
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes.load(Ordering::Relaxed)
    }

    /// Counts a WAL frame of `bytes` whose writes this memtable holds. The applying thread's call, as adds
    /// are.
    pub fn note_wal(&self, bytes: usize) {
        bump(&self.wal_bytes, bytes);
    }

    /// Bytes of WAL frames counted by [`MemTable::note_wal`].
    pub fn wal_bytes(&self) -> usize {
        self.wal_bytes.load(Ordering::Relaxed)
    }

    /// Whether this memtable is due to be frozen and flushed: it holds `limit` bytes, or the WAL frames
    /// whose writes it holds add up to `limit`. Without the second bound a memtable of hot keys (each
    /// write drops the version before it) would never fill, and the WAL, which only a flush lets go,
    /// would grow without end; with it the WAL stays as bounded as when every version counted, and such
    /// a memtable is flushed once per `limit` bytes of log instead of once per `limit` of versions
    /// (EVALSHA's INCR+EXPIRE: 110 WAL bytes a call, against 213 counted bytes of versions).
    pub fn is_full(&self, limit: usize) -> bool {
        self.approx_bytes() >= limit || self.wal_bytes() >= limit
    }

    /// Whether nothing was ever written.
    pub fn is_empty(&self) -> bool {
        self.map.read().is_empty() && self.range_dels.read().list.is_empty()
    }

    /// The ordered map with every key added so far in it (ordering the new ones first, if any), or, given
    /// `bounds`, with every key in that range: keys added outside it may stay unordered.
    fn ordered(&self, bounds: Option<&KeyBounds>) -> parking_lot::RwLockReadGuard<'_, Ordered> {
        if self.has_unordered.load(Ordering::Acquire) {
            if let Some(bounds) = bounds {
                let map = self.map.read();
                if map.unordered_outside(bounds) {
                    return map;
                }
            }
            let mut map = self.map.write();
            map.order(bounds, false);
            self.has_unordered
                .store(map.has_unordered(), Ordering::Release);
            return parking_lot::RwLockWriteGuard::downgrade(map);
        }
        self.map.read()
    }

    /// Orders every key of a memtable that takes no more (a frozen one, before its flush) into one run
    /// in key order, the cheapest form to read once from start to end ([`Ordered::order_into_run`]).
    /// Readers meanwhile are unaffected: an iterator finds its place again by key.
    pub fn order_for_flush(&self) {
        let mut map = self.map.write();
        map.order_into_run();
        self.has_unordered
            .store(map.has_unordered(), Ordering::Release);
    }

    /// Number of point entries.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
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
    /// The applying thread's call (as adds are): a load and a store, not a locked read-modify-write.
    pub fn note_seqno(&self, seqno: u64) {
        if seqno > self.max_seqno.load(Ordering::Relaxed) {
            self.max_seqno.store(seqno, Ordering::Relaxed);
        }
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

    /// Inserts a point entry (put or delete) for `key` of `tree`.
    ///
    /// A key already in the memtable costs a hash lookup and an append to its versions; only a new key
    /// enters the ordered map (whose entries are keys, not versions).
    pub fn add(&self, tree: u32, key: &[u8], seqno: u64, kind: u8, value: &[u8]) {
        self.writer().add_at(tree, key, seqno, kind, value, 0);
    }

    /// [`MemTable::add`], dropping the key's versions whose successor is at or below `horizon`: nobody
    /// reads them any more (see [`crate::readers`]; 0 drops none).
    pub fn add_at(&self, tree: u32, key: &[u8], seqno: u64, kind: u8, value: &[u8], horizon: u64) {
        self.writer().add_at(tree, key, seqno, kind, value, horizon);
    }

    /// Takes the writer lock for a run of adds (a WAL frame's): each add then costs no lock of its own.
    /// Hold it only while adding; readers never wait for it, but other adds do.
    pub fn writer(&self) -> MemWriter<'_> {
        MemWriter {
            mem: self,
            arena: self.writer.lock(),
        }
    }

    /// Starts loading the index slot an [`MemTable::add`] of `key` will probe (a hint: it changes nothing).
    pub fn prefetch(&self, tree: u32, key: &[u8]) {
        let h = key_hash(tree, key);
        self.index[index_shard(h)].prefetch(h);
    }

    /// Starts loading the node of `key` (in `tree`), the second stage of a single read's prefetch: the
    /// first, [`MemTable::prefetch`], loaded its index slot a while before, so the probe here is cheap. A
    /// hint: it changes nothing (the node of a slot whose stored hash matches is loaded, key unchecked).
    pub fn prefetch_node(&self, tree: u32, key: &[u8]) {
        let h = key_hash(tree, key);
        let table = self.index[index_shard(h)].table.read();
        if let Ok(node) = table.probe(h, |_| true) {
            prefetch_node_at(Arc::as_ptr(node).cast::<u8>());
        }
    }

    /// Starts loading what point reads of `keys` (in `tree`) will touch, for a batch of reads about to
    /// happen (a pipeline's commands): each key's index slot, then its node, then its newest value. Each
    /// stage runs over the whole batch before the next, so the batch's cache misses overlap instead of each
    /// read stalling on three in a row. A hint: it changes nothing, and a key not here costs one slot probe.
    /// Returns how many of the keys (or of their hashes) it found.
    pub fn prefetch_reads(&self, tree: u32, keys: &[&[u8]]) -> usize {
        const MAX: usize = 32;
        let keys = &keys[..keys.len().min(MAX)];
        let mut hashes = [0u64; MAX];
        for (h, k) in hashes.iter_mut().zip(keys) {
            *h = key_hash(tree, k);
            self.index[index_shard(*h)].prefetch(*h);
        }
        let hashes = &hashes[..keys.len()];
        // The node of the slot whose stored hash matches: its key is not compared, as a hash collision only
        // loads a line for nothing. Nothing of the node is read yet (not even its reference count).
        let mut found = 0;
        for &h in hashes {
            let table = self.index[index_shard(h)].table.read();
            if let Ok(node) = table.probe(h, |_| true) {
                prefetch_node_at(Arc::as_ptr(node).cast::<u8>());
                found += 1;
            }
        }
        if found == 0 {
            return 0;
        }
        // By now the first nodes have arrived; the slots are cached, so probing again is cheap.
        for &h in hashes {
            let table = self.index[index_shard(h)].table.read();
            if let Ok(node) = table.probe(h, |_| true)
                && let Some(v) = node.versions.read().as_slice().last()
            {
                crate::prefetch::prefetch(v.value.as_ptr());
            }
        }
        found
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
        let read_seqno = lookup.read_seqno();
        let table = self.index[index_shard(lookup.hash)].table.read();
        let node = table
            .probe(lookup.hash, |n| n.key.as_bytes() == ukey)
            .ok()?;
        let versions = node.versions.read();
        let vs = versions.as_slice();
        // The newest version, unless it is newer than the read: then an older one may be visible.
        let visible = match vs.last() {
            Some(v) if v.trailer >> 8 <= read_seqno => vs.len(),
            _ => vs.partition_point(|v| v.trailer >> 8 <= read_seqno),
        };
        let v = &vs[visible.checked_sub(1)?];
        Some((v.trailer >> 8, (v.trailer & 0xff) as u8, v.value.clone()))
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

/// One shard of the memtable's key index: open addressing with linear probing over 16-byte slots, each a
/// key's hash and its node, four to a cache line. Inserting a new key reads one line (its probe) and writes
/// the same line, where hashbrown's control-byte table touched two places: the control group and, a few
/// MB away, the slot (the slot store was a second cache miss, and `MemTable::add` ~14% of XREADGROUP's
/// CPU with two new keys per call). The stored hash spares a probe the node's key for other keys' slots.
/// A memtable's shards start as windows of one region on huge pages ([`crate::huge`]), so a probe's line is
/// reached without a TLB miss too; a shard that outgrows its window moves to a table of its own.
struct KeyIndex {
    /// A power of two of slots; a slot without a node is empty.
    slots: crate::huge::HugeSlice<Slot>,
    len: usize,
}

/// A key index slot.
#[derive(Default)]
struct Slot {
    hash: u64,
    node: Option<Arc<Node>>,
}

/// Slots of the smallest key index table.
const INDEX_MIN_SLOTS: usize = 16;

impl KeyIndex {
    /// Slots with room for `keys` keys below the load limit.
    fn slots_for(keys: usize) -> usize {
        let want = (keys.saturating_mul(10) / 7 + 1).max(INDEX_MIN_SLOTS);
        want.checked_next_power_of_two().unwrap_or(want)
    }

    /// Room for `keys` keys below the load limit.
    #[cfg(test)]
    fn with_capacity(keys: usize) -> Self {
        KeyIndex {
            slots: crate::huge::HugeSlice::new(Self::slots_for(keys)),
            len: 0,
        }
    }

    /// Whether one more key would pass the load limit (7/10: linear probing's misses stay within about
    /// two cache lines).
    fn is_full(&self) -> bool {
        (self.len + 1) * 10 > self.slots.len() * 7
    }

    /// The node of the key `eq` accepts, else the empty slot where that key belongs.
    #[inline]
    fn probe(&self, hash: u64, eq: impl Fn(&Node) -> bool) -> Result<&Arc<Node>, usize> {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let slot = &self.slots[i];
            match &slot.node {
                None => return Err(i),
                Some(node) if slot.hash == hash && eq(node) => return Ok(node),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// Puts a new key's node into the empty slot `i` that [`KeyIndex::probe`] returned.
    fn fill(&mut self, i: usize, hash: u64, node: Arc<Node>) {
        debug_assert!(self.slots[i].node.is_none());
        self.slots[i] = Slot {
            hash,
            node: Some(node),
        };
        self.len += 1;
    }

    /// Drops every node, loading each a few slots ahead: the slots hold the nodes in hash order, so each
    /// drop (its reference count, its versions) was a cache miss in a row of them, ~20% of the flush
    /// thread's CPU under XADD -P16; loaded ahead, the misses overlap.
    fn release_nodes(&mut self) {
        const AHEAD: usize = 16;
        let n = self.slots.len();
        for i in 0..n {
            if let Some(node) = self.slots.get(i + AHEAD).and_then(|s| s.node.as_ref()) {
                // The reference counts sit just before the node; the versions a line further.
                let p = Arc::as_ptr(node).cast::<u8>();
                crate::prefetch::prefetch(p.wrapping_sub(16));
                crate::prefetch::prefetch(p.wrapping_add(48));
            }
            self.slots[i].node = None;
        }
        self.len = 0;
    }

    /// The same keys in twice the slots.
    fn doubled(&mut self) -> KeyIndex {
        let mut bigger = KeyIndex {
            slots: crate::huge::HugeSlice::new(self.slots.len() * 2),
            len: 0,
        };
        for slot in self.slots.iter_mut() {
            if let Some(node) = slot.node.take() {
                let mask = bigger.slots.len() - 1;
                let mut at = slot.hash as usize & mask;
                while bigger.slots[at].node.is_some() {
                    at = (at + 1) & mask;
                }
                bigger.fill(at, slot.hash, node);
            }
        }
        bigger
    }
}

/// A hold on a memtable's writer lock for a run of adds (see [`MemTable::writer`]).
pub struct MemWriter<'a> {
    mem: &'a MemTable,
    arena: MutexGuard<'a, ValueArena>,
}

impl MemWriter<'_> {
    /// [`MemTable::add_at`] under this hold.
    pub fn add_at(
        &mut self,
        tree: u32,
        key: &[u8],
        seqno: u64,
        kind: u8,
        value: &[u8],
        horizon: u64,
    ) {
        self.add_with(tree, key, seqno, kind, horizon, NewValue::Copy(value));
    }

    /// Inserts a put of `base` with `patch` applied (see [`crate::batch::Patch`]), copying the base once.
    pub fn add_patched(
        &mut self,
        tree: u32,
        key: &[u8],
        seqno: u64,
        base: &[u8],
        patch: &crate::batch::Patch<'_>,
        horizon: u64,
    ) {
        self.add_with(
            tree,
            key,
            seqno,
            KIND_PUT,
            horizon,
            NewValue::Patched(base, patch),
        );
    }

    /// One add.
    fn add_with(
        &mut self,
        tree: u32,
        key: &[u8],
        seqno: u64,
        kind: u8,
        horizon: u64,
        value: NewValue<'_>,
    ) {
        let mem = self.mem;
        let writer = &mut *self.arena;
        // What a version counts toward the memtable's size beside its value: its internal key and bookkeeping.
        let version_bytes = 4 + key.len() + 8 + ENTRY_OVERHEAD_BYTES;
        let value_len = value.len();
        let trailer = (seqno << 8) | u64::from(kind);
        let h = key_hash(tree, key);
        let shard = &mem.index[index_shard(h)];
        let mut dropped = Dropped::default();
        // Only this thread adds keys (the writer lock), so the empty slot the probe ends on stays empty and
        // the table keeps its size until the key is filled in below; readers go on meanwhile.
        let vacant = {
            let mut table = shard.table.read();
            if table.is_full() {
                drop(table);
                shard.grow();
                table = shard.table.read();
            }
            match table.probe(h, |n| n.key.is(tree, key)) {
                Ok(node) => {
                    let mut versions = node.versions.write();
                    let appends = versions
                        .as_slice()
                        .last()
                        .is_some_and(|v| v.trailer < trailer);
                    let delta = match value {
                        NewValue::Patched(base, patch) if appends => {
                            versions.patch_delta(base, patch)
                        }
                        _ => None,
                    };
                    let recycled = match value {
                        NewValue::Patched(base, patch) if delta.is_some() && horizon != 0 => {
                            versions.recycle_patched(horizon, base, patch)
                        }
                        _ => None,
                    };
                    let value = if let Some((n, value)) = recycled {
                        dropped = n;
                        value
                    } else if appends && horizon != 0 && value.len() > 0 {
                        // A rewritten key's value gets an allocation of its own, taken over from a
                        // version nobody reads any more when one is free: a hot key cycles through a
                        // few warm buffers instead of filling the arena with fresh pages.
                        let (n, spare) = versions.drop_shadowed(horizon, value.len());
                        dropped = n;
                        value.in_own(spare.unwrap_or_else(|| Vec::with_capacity(value.len())))
                    } else {
                        value.in_arena(writer)
                    };
                    dropped.add(versions.insert(Version { trailer, value }, horizon));
                    versions.set_delta(delta);
                    None
                }
                Err(slot) => Some((
                    slot,
                    Version {
                        trailer,
                        value: value.in_arena(writer),
                    },
                )),
            }
        };
        let new_key = vacant.is_some();
        if let Some((slot, version)) = vacant {
            // Ordered map first, index second: a reader that finds the key in the index finds it in the map.
            let node = Arc::new(Node {
                key: SlotKey::prefixed(tree, key),
                versions: RwLock::new(Versions::one(version)),
            });
            {
                // The flag changes only under the lock, so an ordering reader cannot clear it after a
                // push it did not see.
                let mut map = mem.map.write();
                map.push(node.clone());
                mem.has_unordered.store(true, Ordering::Release);
            }
            shard.table.write().fill(slot, h, node);
            bump(&mem.distinct_keys, 1);
        }
        // The counters change only on the applying thread (here under the writer lock): a load and a store
        // each, not the locked read-modify-writes that were a tenth of an add.
        let extra = if new_key { KEY_OVERHEAD_BYTES } else { 0 };
        let added = version_bytes + value_len + extra;
        if dropped.versions == 0 {
            bump(&mem.entries, 1);
            bump(&mem.approx_bytes, added);
        } else {
            let n = mem.entries.load(Ordering::Relaxed);
            mem.entries
                .store(n + 1 - dropped.versions, Ordering::Relaxed);
            // A dropped version gives back what its add counted, except a value whose memory stays.
            let freed = dropped.versions * version_bytes + dropped.value_bytes;
            let size = mem.approx_bytes.load(Ordering::Relaxed) + added;
            mem.approx_bytes
                .store(size.saturating_sub(freed), Ordering::Relaxed);
        }
        if seqno > mem.max_seqno.load(Ordering::Relaxed) {
            mem.max_seqno.store(seqno, Ordering::Relaxed);
        }
    }
}

/// A key index shard behind its lock, and where its slots are for [`MemTable::prefetch`].
struct IndexShard {
    table: RwLock<KeyIndex>,
    /// The table's first slot and slot mask, read without the lock: only a hint, so a pair torn by a
    /// concurrent growth costs one useless prefetch.
    slots_at: AtomicUsize,
    mask: AtomicUsize,
}

impl IndexShard {
    fn new(table: KeyIndex) -> Self {
        IndexShard {
            slots_at: AtomicUsize::new(table.slots.as_ptr() as usize),
            mask: AtomicUsize::new(table.slots.len() - 1),
            table: RwLock::new(table),
        }
    }

    /// Doubles the table (the applying thread, before an insert that would pass the load limit).
    fn grow(&self) {
        let mut table = self.table.write();
        let bigger = table.doubled();
        *table = bigger;
        self.slots_at
            .store(table.slots.as_ptr() as usize, Ordering::Relaxed);
        self.mask.store(table.slots.len() - 1, Ordering::Relaxed);
    }

    /// Starts loading the cache line of the slot where a probe for `hash` begins.
    #[inline]
    fn prefetch(&self, hash: u64) {
        let at = self.slots_at.load(Ordering::Relaxed);
        let i = hash as usize & self.mask.load(Ordering::Relaxed);
        crate::prefetch::prefetch((at as *const Slot).wrapping_add(i));
    }
}

#[inline]
fn index_shard(hash: u64) -> usize {
    (hash >> 32) as usize & (INDEX_SHARDS - 1)
}

/// A bidirectional iterator over a memtable's point entries (encoded internal keys).
///
/// It holds the memtable by `Arc` and re-seeks from the current key whenever its small prefetch buffer runs
/// out, because map entries borrow the locked map. A re-seek inside one key's versions is a binary search.
pub struct MemIter {
    mem: Arc<MemTable>,
    /// `buf[0]` is the current entry: user key, trailer, value; the rest follow in the current direction.
    buf: VecDeque<(NodeKey, u64, Bytes)>,
    /// The internal key of `buf[0]`.
    key: Vec<u8>,
    forward: bool,
    /// Whether only each key's newest version is shown (see [`MemIter::newest_only`]).
    newest_only: bool,
    /// Entries the next fill fetches.
    fill: usize,
    /// The prefixed user keys the reader will look at, when it said (see [`MemIter::within`]).
    bounds: Option<KeyBounds>,
    /// Where the last fill stopped in the memtable's run, if it walked one: the run's generation and the
    /// position of the last node it took entries from (see [`MemIter::run_position`]).
    run_at: Option<(u64, usize)>,
}

/// Where a fill starts: an internal key split into user key and trailer, and whether the key itself counts.
type FillFrom<'a> = Option<(&'a [u8], u64, bool)>;

impl MemIter {
    /// A new, unpositioned iterator.
    pub fn new(mem: Arc<MemTable>) -> Self {
        MemIter {
            mem,
            buf: VecDeque::with_capacity(ITER_FIRST_FILL),
            key: Vec::new(),
            forward: true,
            newest_only: false,
            fill: ITER_FIRST_FILL,
            bounds: None,
            run_at: None,
        }
    }

    /// An iterator whose reader looks only at prefixed user keys within `bounds`: keys added since the
    /// last ordering and all outside them are not ordered for it (entries it shows outside `bounds` may
    /// miss them, so the reader must not use those).
    pub fn within(mem: Arc<MemTable>, bounds: KeyBounds) -> Self {
        MemIter {
            bounds: Some(bounds),
            ..MemIter::new(mem)
        }
    }

    /// An iterator that shows only the newest version of each key, as if the older ones were not there.
    /// A flush with no snapshot open keeps nothing else, so it need not copy out and then discard the
    /// older versions (a hot key's memtable can hold thousands).
    pub fn newest_only(mem: Arc<MemTable>) -> Self {
        MemIter {
            newest_only: true,
            ..MemIter::new(mem)
        }
    }

    /// Splits a seek bound on internal keys.
    fn fill_from(bound: Bound<&[u8]>) -> FillFrom<'_> {
        match bound {
            Bound::Unbounded => None,
            Bound::Included(k) => {
                let (u, t) = split_internal(k);
                Some((u, t, true))
            }
            Bound::Excluded(k) => {
                let (u, t) = split_internal(k);
                Some((u, t, false))
            }
        }
    }

    /// Rebuilds `key` for the current entry.
    fn settle(&mut self) {
        self.key.clear();
        if let Some((k, trailer, _)) = self.buf.front() {
            self.key.extend_from_slice(k.as_bytes());
            self.key.extend_from_slice(&trailer.to_be_bytes());
        }
    }

    /// Fills with the entries at or after `from` (internal-key order: user key ascending, then trailer
    /// descending).
    fn fill_forward(&mut self, from: Bound<&[u8]>) {
        self.fill_toward(from, false);
    }

    /// Fills with the entries at or before `from`, in descending internal-key order.
    fn fill_backward(&mut self, from: Bound<&[u8]>) {
        self.fill_toward(from, true);
    }

    /// Fills from `from` on, forward or `backward`, from the map or the run, whichever holds the keys.
    fn fill_toward(&mut self, from: Bound<&[u8]>, backward: bool) {
        self.buf.clear();
        self.forward = !backward;
        let start = Self::fill_from(from);
        let map = self.mem.ordered(self.bounds.as_ref());
        let hint = self.run_at;
        let mut fill = Fill {
            buf: &mut self.buf,
            fill: self.fill,
            newest_only: self.newest_only,
            start,
            backward,
        };
        if map.run.is_empty() {
            let at = start.map_or(Bound::Unbounded, |(u, _, _)| Bound::Included(u));
            let range = match backward {
                false => (at, Bound::Unbounded),
                true => (Bound::Unbounded, at),
            };
            let nodes = map.sorted.range::<[u8], _>(range);
            match backward {
                false => fill.take(nodes.map(|(k, n)| (Some(k), n))),
                true => fill.take(nodes.rev().map(|(k, n)| (Some(k), n))),
            };
        } else {
            let at = run_position(hint, &map, start, backward);
            let stopped = match backward {
                false => at + fill.take(map.run[at..].iter().map(|n| (None, n))),
                true => {
                    at.saturating_sub(1 + fill.take(map.run[..at].iter().rev().map(|n| (None, n))))
                }
            };
            self.run_at = Some((map.run_generation, stopped));
        }
        drop(map);
        self.settle();
    }

    /// Whether positioned on an entry.
    pub fn valid(&self) -> bool {
        !self.buf.is_empty()
    }
    /// Positions at the first entry.
    pub fn seek_to_first(&mut self) {
        self.fill = ITER_FIRST_FILL;
        self.fill_forward(Bound::Unbounded);
    }
    /// Positions at the last entry.
    pub fn seek_to_last(&mut self) {
        self.fill = ITER_FIRST_FILL;
        self.fill_backward(Bound::Unbounded);
    }
    /// First entry >= target.
    pub fn seek(&mut self, target: &[u8]) {
        self.fill = ITER_FIRST_FILL;
        self.fill_forward(Bound::Included(target));
    }
    /// Last entry <= target.
    pub fn seek_for_prev(&mut self, target: &[u8]) {
        self.fill = ITER_FIRST_FILL;
        self.fill_backward(Bound::Included(target));
    }
    /// Advances.
    pub fn next(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.forward && self.buf.len() > 1 {
            self.buf.pop_front();
            self.settle();
            return;
        }
        let current = std::mem::take(&mut self.key);
        self.fill = (self.fill * 2).min(ITER_PREFETCH);
        self.fill_forward(Bound::Excluded(&current));
    }
    /// Steps back.
    pub fn prev(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if !self.forward && self.buf.len() > 1 {
            self.buf.pop_front();
            self.settle();
            return;
        }
        let current = std::mem::take(&mut self.key);
        self.fill = (self.fill * 2).min(ITER_PREFETCH);
        self.fill_backward(Bound::Excluded(&current));
    }
    /// Current key (empty if not valid).
    pub fn key(&self) -> &[u8] {
        &self.key
    }
    /// Highest seqno in the memtable.
    pub fn max_seqno(&self) -> u64 {
        self.mem.max_seqno()
    }
    /// Current value (empty if not valid).
    pub fn value(&self) -> &[u8] {
        self.buf.front().map_or(&[], |(_, _, v)| v)
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

    /// Every entry a full walk shows, forward or backward.
    fn walk(m: &Arc<MemTable>, backward: bool) -> Vec<Vec<u8>> {
        let mut it = MemIter::new(m.clone());
        let mut out = Vec::new();
        if backward {
            it.seek_to_last();
        } else {
            it.seek_to_first();
        }
        while it.valid() {
            out.push(it.key().to_vec());
            if backward {
                it.prev();
            } else {
                it.next();
            }
        }
        out
    }

    #[test]
    fn walks_over_the_run_and_then_the_map_show_every_version_in_order() {
        let m = Arc::new(MemTable::new(1));
        let mut seqno = 0;
        // Keys added out of order, three versions each; more entries than several fills.
        for round in 0..3 {
            for i in (0..300u32).rev() {
                seqno += 1;
                let k = (i * 7 % 300).to_be_bytes();
                m.add(1, &k, seqno, KIND_PUT, &[round]);
            }
        }
        let mut want: Vec<Vec<u8>> = Vec::new();
        for i in 0..300u32 {
            let k = i.to_be_bytes();
            for s in (1..=seqno).rev() {
                if m.get(1, &k, s).is_some_and(|hit| hit.0 == s) {
                    want.push(MemKey::internal(1, &k, s, KIND_PUT).as_bytes().to_vec());
                }
            }
        }
        assert_eq!(want.len(), 900);
        // The first ordering makes the run.
        assert_eq!(walk(&m, false), want);
        assert!(!m.map.read().run.is_empty());
        let mut backward = walk(&m, true);
        backward.reverse();
        assert_eq!(backward, want);
        // Seeks into the run land where they should, both ways.
        let mut it = MemIter::new(m.clone());
        it.seek(&want[451]);
        assert_eq!(it.key(), &want[451][..]);
        it.seek_for_prev(&want[451]);
        assert_eq!(it.key(), &want[451][..]);
        it.prev();
        assert_eq!(it.key(), &want[450][..]);
        // A few new keys against many: the map from then on, same entries.
        seqno += 1;
        m.add(1, &1000u32.to_be_bytes(), seqno, KIND_PUT, b"x");
        want.push(
            MemKey::internal(1, &1000u32.to_be_bytes(), seqno, KIND_PUT)
                .as_bytes()
                .to_vec(),
        );
        assert_eq!(walk(&m, false), want);
        assert!(m.map.read().run.is_empty());
        let mut backward = walk(&m, true);
        backward.reverse();
        assert_eq!(backward, want);
        // Ordered for its flush, with new keys still unordered and a reader midway through the map: one
        // run of every key, and the reader goes on from where it was.
        let mut reader = MemIter::new(m.clone());
        reader.seek(&want[600]);
        // Past every key so far, in key order (so `want` stays sorted), added out of order.
        for k in [150u32, 5, 2000] {
            seqno += 1;
            m.add(1, &(k * 1000).to_be_bytes(), seqno, KIND_PUT, b"y");
            want.push(
                MemKey::internal(1, &(k * 1000).to_be_bytes(), seqno, KIND_PUT)
                    .as_bytes()
                    .to_vec(),
            );
        }
        let last = want.len();
        want[last - 3..].sort_by_key(|k| k[..8].to_vec());
        m.order_for_flush();
        {
            let map = m.map.read();
            assert!(map.sorted.is_empty() && !map.has_unordered());
            assert_eq!(map.run.len(), 304);
        }
        let at = want
            .iter()
            .position(|k| k.as_slice() == reader.key())
            .unwrap();
        for k in &want[at..] {
            assert_eq!(reader.key(), &k[..]);
            reader.next();
        }
        assert!(!reader.valid());
        assert_eq!(walk(&m, false), want);
        let mut backward = walk(&m, true);
        backward.reverse();
        assert_eq!(backward, want);
    }

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
    fn prefetching_reads_counts_the_keys_held_and_changes_nothing() {
        let m = MemTable::new(1);
        for i in 0..100u64 {
            m.add(1, &i.to_be_bytes(), i + 1, KIND_PUT, &i.to_le_bytes());
        }
        let keys: Vec<[u8; 8]> = (90..110u64).map(u64::to_be_bytes).collect();
        let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        // Ten of the twenty are here; the same keys in another tree are not.
        assert_eq!(m.prefetch_reads(1, &keys), 10);
        assert_eq!(m.prefetch_reads(2, &keys), 0);
        assert_eq!(m.prefetch_reads(1, &[]), 0);
        // More keys than a batch takes are left out, not an error.
        let many: Vec<&[u8]> = std::iter::repeat_n(keys[0], 40).collect();
        assert_eq!(m.prefetch_reads(1, &many), 32);
        for i in 0..100u64 {
            assert_eq!(
                m.get(1, &i.to_be_bytes(), 200).unwrap().2.as_ref(),
                i.to_le_bytes()
            );
        }
    }

    #[test]
    fn a_rewritten_key_keeps_its_versions_in_its_node() {
        let m = MemTable::new(1);
        // Each rewrite's horizon is the previous version's seqno: a read in flight may still want that one.
        for seqno in 1..=100u64 {
            m.add_at(1, b"hot", seqno, KIND_PUT, &seqno.to_be_bytes(), seqno - 1);
        }
        let h = key_hash(1, b"hot");
        let table = m.index[index_shard(h)].table.read();
        let node = table.probe(h, |n| n.key.is(1, b"hot")).ok().unwrap();
        let versions = node.versions.read();
        assert_eq!(versions.as_slice().len(), 2);
        assert!(!versions.vs.spilled(), "two versions stay inline");
        drop(versions);
        drop(table);
        assert_eq!(
            m.get(1, b"hot", 100).unwrap().2.as_ref(),
            100u64.to_be_bytes()
        );
        assert_eq!(
            m.get(1, b"hot", 99).unwrap().2.as_ref(),
            99u64.to_be_bytes()
        );
        // The node prefetch is a hint: held keys, missing keys and other trees alike change nothing.
        m.prefetch(1, b"hot");
        m.prefetch_node(1, b"hot");
        m.prefetch_node(1, b"cold");
        m.prefetch_node(2, b"hot");
        assert_eq!(
            m.get(1, b"hot", 100).unwrap().2.as_ref(),
            100u64.to_be_bytes()
        );
        assert_eq!(m.get(1, b"cold", 100), None);
    }

    #[test]
    fn dropped_versions_give_back_their_size_and_the_wal_bound_still_fills_the_memtable() {
        let m = MemTable::new(1);
        let value = [7u8; 100];
        m.add_at(1, b"hot", 1, KIND_PUT, &value, 0);
        let one = m.approx_bytes();
        for seqno in 2..=10_000u64 {
            m.add_at(1, b"hot", seqno, KIND_PUT, &value, seqno - 1);
            m.note_wal(100);
        }
        // The first value stays in its arena chunk; later ones are own buffers that are reused or freed:
        // two live versions' worth, not 10,000.
        assert!(m.approx_bytes() < 3 * one, "{} vs {one}", m.approx_bytes());
        assert_eq!(m.len(), 2);
        assert!(!m.is_full(1 << 20));
        // ~10,000 frames of 100 bytes: the WAL reaches the limit long before the memory does.
        assert!(m.is_full(900_000));
        // Without drops (horizon 0: a read may want every version) every version counts.
        let all = MemTable::new(1);
        for seqno in 1..=1_000u64 {
            all.add_at(1, b"hot", seqno, KIND_PUT, &value, 0);
        }
        assert!(all.approx_bytes() >= 1_000 * value.len());
        // A value a reader still holds is not given back: the same writes with and without a reader
        // holding version 2 (an own buffer, dropped by the fourth write) differ by its bytes.
        let rewrite = |hold: bool| {
            let m = MemTable::new(1);
            m.add_at(1, b"k", 1, KIND_PUT, &value, 0);
            m.add_at(1, b"k", 2, KIND_PUT, &value, 1);
            let kept = hold.then(|| m.get(1, b"k", 2).unwrap().2);
            m.add_at(1, b"k", 3, KIND_PUT, &value, 2);
            m.add_at(1, b"k", 4, KIND_PUT, &value, 3);
            assert_eq!(kept.as_deref(), hold.then_some(&value[..]));
            m.approx_bytes()
        };
        assert_eq!(rewrite(true), rewrite(false) + value.len());
    }

    #[test]
    fn a_released_index_serves_the_next_memtable_empty() {
        let m = MemTable::with_key_capacity(1, 5_000);
        for i in 0..5_000u64 {
            m.add(1, &i.to_be_bytes(), i + 1, KIND_PUT, b"v");
        }
        let tables: Vec<usize> = m
            .index
            .iter()
            .map(|s| s.slots_at.load(Ordering::Relaxed))
            .collect();
        let mut leftovers = Leftovers::default();
        m.release(&mut leftovers);
        let next = MemTable::with_leftovers(2, 5_000, &mut leftovers);
        let reused: Vec<usize> = next
            .index
            .iter()
            .map(|s| s.slots_at.load(Ordering::Relaxed))
            .collect();
        assert_eq!(reused, tables, "the same tables");
        for i in 0..5_000u64 {
            assert_eq!(next.get(1, &i.to_be_bytes(), 1 << 20), None);
        }
        for i in 0..6_000u64 {
            next.add(1, &i.to_be_bytes(), i + 1, KIND_PUT, &i.to_be_bytes());
        }
        for i in 0..6_000u64 {
            let got = next.get(1, &i.to_be_bytes(), 1 << 20).unwrap().2;
            assert_eq!(got.as_ref(), i.to_be_bytes());
        }
        // Tables of another size are not taken.
        next.release(&mut leftovers);
        let small = MemTable::with_leftovers(3, 10, &mut leftovers);
        assert!(leftovers.tables.is_empty());
        assert!(
            small
                .index
                .iter()
                .all(|s| s.mask.load(Ordering::Relaxed) < 64)
        );
    }

    #[test]
    fn released_memtable_chunks_are_refilled_by_the_next_one_unless_a_reader_holds_them() {
        let value = vec![5u8; 10_000];
        let m = MemTable::new(1);
        for i in 0..40u64 {
            m.add(1, &i.to_be_bytes(), i + 1, KIND_PUT, &value);
        }
        // Six values fit a 64 KiB chunk: seven chunks, one kept alive by a reader of key 3.
        let held = m.get(1, &3u64.to_be_bytes(), 100).unwrap().2;
        let mut leftovers = Leftovers::default();
        m.release(&mut leftovers);
        let chunks = leftovers.take_chunks();
        assert_eq!(chunks.len(), 6);
        assert!(
            chunks
                .iter()
                .all(|c| c.is_empty() && c.capacity() >= VALUE_CHUNK_BYTES)
        );
        assert_eq!(held.as_ref(), &value[..]);

        let next = MemTable::new(2);
        next.give_chunks(chunks, usize::MAX);
        for i in 0..20u64 {
            next.add(1, &i.to_be_bytes(), i + 1, KIND_PUT, &[i as u8; 10_000]);
        }
        assert_eq!(
            next.writer.lock().spare.len(),
            2,
            "took four recycled chunks"
        );
        for i in 0..20u64 {
            let got = next.get(1, &i.to_be_bytes(), 100).unwrap().2;
            assert_eq!(got.as_ref(), &[i as u8; 10_000][..]);
        }
        assert_eq!(held.as_ref(), &value[..]);
    }

    #[test]
    fn index_agrees_with_the_versions_for_long_keys_and_out_of_order_applies() {
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

    #[test]
    fn new_keys_sort_as_whole_keys_do() {
        // Keys with a long shared prefix and short, long (heap), zero-ending and prefix-of-each-other tails,
        // in a scrambled order; and keys sharing no prefix at all.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for shared in [&b"stream-key\x00\x00\x00\x01p"[..], b""] {
            let mut tails: Vec<Vec<u8>> = Vec::new();
            for _ in 0..3000 {
                let len = (next() % 24) as usize;
                let mut t: Vec<u8> = (0..len).map(|_| (next() % 4) as u8).collect();
                if next() % 5 == 0 {
                    t.extend_from_slice(&[7u8; 60]);
                }
                if next() % 7 == 0 {
                    // Past the digits compared before whole keys are.
                    t.splice(0..0, [9u8; 150]);
                }
                tails.push(t);
            }
            tails.sort();
            tails.dedup();
            let expected: Vec<SlotKey> = tails
                .iter()
                .map(|t| SlotKey::from_parts(&[&1u32.to_be_bytes(), shared, t]))
                .collect();
            let nodes: Vec<Arc<Node>> = tails
                .iter()
                .map(|t| {
                    Arc::new(Node {
                        key: SlotKey::from_parts(&[&1u32.to_be_bytes(), shared, t]),
                        versions: RwLock::new(Versions {
                            vs: SmallVec::new(),
                            delta: None,
                        }),
                    })
                })
                .collect();
            let want: Vec<&[u8]> = expected.iter().map(|k| k.as_bytes()).collect();
            // Shuffled; and in order but for a few runs out of place (the stable sort's case).
            let mut shuffled = nodes.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            let mut runs = nodes.clone();
            let third = runs.len() / 3;
            runs[third..].rotate_left(third / 2);
            // A few ascending sequences interleaved (merged as lanes up to four, sorted past that).
            let mut interleaved = Vec::new();
            for lanes in 2..=5u64 {
                let mut split: Vec<Vec<Arc<Node>>> = vec![Vec::new(); lanes as usize];
                for n in &nodes {
                    split[(next() % lanes) as usize].push(n.clone());
                }
                let mut mixed = Vec::new();
                let mut cursors = vec![0; split.len()];
                while mixed.len() < nodes.len() {
                    let lane = (next() % lanes) as usize;
                    if let Some(n) = split[lane].get(cursors[lane]) {
                        mixed.push(n.clone());
                        cursors[lane] += 1;
                    }
                }
                interleaved.push(mixed);
            }
            // The shared prefix found by a pass, or given (the smallest and largest keys' common prefix).
            let given = common_prefix(want[0], want[want.len() - 1]);
            for keys in [shuffled, runs].into_iter().chain(interleaved) {
                for shared in [None, Some(given)] {
                    let mut keys = keys.clone();
                    sort_nodes(&mut keys, shared);
                    let got: Vec<&[u8]> = keys.iter().map(|n| n.key.as_bytes()).collect();
                    assert_eq!(got, want);
                }
            }
        }
    }

    #[test]
    fn key_index_probes_past_equal_hashes_and_keeps_every_key_through_growth() {
        let node = |k: u32| {
            Arc::new(Node {
                key: SlotKey::prefixed(1, &k.to_be_bytes()),
                versions: RwLock::new(Versions {
                    vs: SmallVec::new(),
                    delta: None,
                }),
            })
        };
        let shard = IndexShard::new(KeyIndex::with_capacity(0));
        // Hashes chosen to collide: every fourth key shares one hash, all land in a few home slots, and the
        // table doubles several times (16 slots to 2048).
        let hash = |k: u32| u64::from(k % 4) * 0x9e37_79b9;
        for k in 0..1000u32 {
            if shard.table.read().is_full() {
                shard.grow();
            }
            let mut table = shard.table.write();
            let Err(slot) = table.probe(hash(k), |n| n.key.is(1, &k.to_be_bytes())) else {
                panic!("key {k} is new but was found");
            };
            table.fill(slot, hash(k), node(k));
        }
        let table = shard.table.read();
        assert_eq!(table.len, 1000);
        assert!(
            table.slots.len() * 7 >= 1000 * 10,
            "{} slots",
            table.slots.len()
        );
        for k in 0..1000u32 {
            let found = table.probe(hash(k), |n| n.key.is(1, &k.to_be_bytes()));
            assert!(
                found.is_ok_and(|n| n.key.is(1, &k.to_be_bytes())),
                "key {k}"
            );
        }
        assert!(
            table
                .probe(hash(5), |n| n.key.is(1, &5000u32.to_be_bytes()))
                .is_err()
        );
    }

    /// The reference order: user key ascending (plain slice order), then trailer descending.
    fn naive_order(a: &[u8], b: &[u8]) -> CmpOrdering {
        let (ua, ta) = split_internal(a);
        let (ub, tb) = split_internal(b);
        ua.cmp(ub).then(tb.cmp(&ta))
    }

    /// A node key holding `k` as is (inline when it fits).
    fn node_key(k: &[u8]) -> NodeKey {
        NodeKey::from_parts(&[k])
    }

    proptest::proptest! {
        #[test]
        fn fast_comparisons_agree_with_slice_order(
            // Short alphabets make shared prefixes, equal words and prefix-of cases common.
            a in proptest::collection::vec(0u8..3, 0..48),
            b in proptest::collection::vec(0u8..3, 0..48),
        ) {
            proptest::prop_assert_eq!(compare_bytes(&a, &b), a.cmp(&b));
            proptest::prop_assert_eq!(compare_internal_keys(&a, &b), naive_order(&a, &b));
            proptest::prop_assert_eq!(node_key(&a).cmp(&node_key(&b)), a.cmp(&b));
        }

        /// Bounded scans between adds see exactly the keys of their range, in order, whichever groups
        /// of unordered keys they order and leave: keys of up to 40 first bytes (more than
        /// `MAX_GROUPS`, so the mixed group is used too) in two trees.
        #[test]
        fn bounded_scans_between_adds_agree_with_a_sorted_model(
            steps in proptest::collection::vec((0u8..40, 0u8..4, 1u32..3, 0u8..40, 0u8..8), 1..150),
        ) {
            let m = Arc::new(MemTable::new(1));
            let mut model = std::collections::BTreeSet::new();
            let prefixed = |tree: u32, k: &[u8]| {
                let mut v = Vec::new();
                tree_key(&mut v, tree, k);
                v
            };
            for (seqno, (first, second, tree, width, scan)) in steps.into_iter().enumerate() {
                let key = [first, second];
                m.add(tree, &key, seqno as u64 + 1, KIND_PUT, b"v");
                model.insert(prefixed(tree, &key));
                if scan < 3 {
                    continue;
                }
                let (lo, hi) = (first.saturating_sub(width / 2), first.saturating_add(width / 2 + 1));
                let (lo, hi) = (prefixed(tree, &[lo]), prefixed(tree, &[hi]));
                let mut it = MemIter::within(m.clone(), (Bound::Included(lo.clone()), Bound::Excluded(hi.clone())));
                it.seek(MemKey::internal(tree, &lo[4..], u64::MAX >> 8, KIND_RANGE_DELETE).as_bytes());
                let mut got = Vec::new();
                while it.valid() && split_internal(it.key()).0 < hi.as_slice() {
                    got.push(split_internal(it.key()).0.to_vec());
                    it.next();
                }
                // A key added twice shows both versions.
                got.dedup();
                let want: Vec<Vec<u8>> = model.range(lo..hi).cloned().collect();
                proptest::prop_assert_eq!(got, want);
            }
            let mut it = MemIter::new(m.clone());
            it.seek_to_first();
            let mut all = Vec::new();
            while it.valid() {
                all.push(split_internal(it.key()).0.to_vec());
                it.next();
            }
            all.dedup();
            proptest::prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }

        /// Iteration in both directions, from every kind of seek, against a sorted model of the
        /// internal keys: keys with many versions, versions added out of order, and prefix keys; and the
        /// same with only each key's newest version shown.
        #[test]
        fn iterator_agrees_with_a_sorted_model(
            adds in proptest::collection::vec((0u8..6, 0u8..3, 1u64..40, proptest::bool::ANY), 1..120),
            seeks in proptest::collection::vec((0u8..7, 0u8..3, 0u64..42, 0u8..4, 0usize..50), 1..20),
            newest_only in proptest::bool::ANY,
            order_after in 0usize..120,
        ) {
            let m = Arc::new(MemTable::new(1));
            let mut model = std::collections::BTreeMap::new();
            // Keys of 0..2 `x` bytes plus a tag; some long enough to live on the heap.
            let key_of = |k: u8, len: u8| {
                let mut key = vec![b'x'; usize::from(len) * 15];
                key.push(k);
                key
            };
            for (i, (k, len, seqno, put)) in adds.into_iter().enumerate() {
                if i == order_after {
                    // An ordered read part way: the earlier keys are bulk-built into the map, the
                    // later ones inserted into it.
                    MemIter::new(m.clone()).seek_to_first();
                }
                let key = key_of(k, len);
                let kind = if put { KIND_PUT } else { KIND_DELETE };
                let value = format!("{k}/{seqno}").into_bytes();
                m.add(7, &key, seqno, kind, if put { &value } else { &[] });
                let mut ik = Vec::new();
                tree_key(&mut ik, 7, &key);
                encode_internal(&mut ik, &[], seqno, kind);
                model.insert(Ordered(ik), if put { value } else { Vec::new() });
            }
            let mut all: Vec<(Vec<u8>, Vec<u8>)> =
                model.iter().map(|(k, v)| (k.0.clone(), v.clone())).collect();
            let mut it = if newest_only {
                // A key's first entry in internal order is its newest version.
                all.dedup_by(|b, a| split_internal(&a.0).0 == split_internal(&b.0).0);
                MemIter::newest_only(m.clone())
            } else {
                MemIter::new(m.clone())
            };
            for (k, len, seqno, how, steps) in seeks {
                let mut target = Vec::new();
                tree_key(&mut target, 7, &key_of(k, len));
                encode_internal(&mut target, &[], seqno, KIND_PUT);
                // Position in `all` of the expected entry, as (index, forward).
                let (mut want, forward) = match how {
                    0 => (all.iter().position(|(x, _)| naive_order(x, &target).is_ge()), true),
                    1 => (all.iter().rposition(|(x, _)| naive_order(x, &target).is_le()), false),
                    2 => { it.seek_to_first(); (Some(0).filter(|_| !all.is_empty()), true) }
                    _ => { it.seek_to_last(); (all.len().checked_sub(1), false) }
                };
                match how {
                    0 => it.seek(&target),
                    1 => it.seek_for_prev(&target),
                    _ => {}
                }
                for _ in 0..steps {
                    match want {
                        Some(i) => {
                            proptest::prop_assert!(it.valid());
                            proptest::prop_assert_eq!(it.key(), &all[i].0[..]);
                            proptest::prop_assert_eq!(it.value(), &all[i].1[..]);
                        }
                        None => proptest::prop_assert!(!it.valid()),
                    }
                    if want.is_none() {
                        break;
                    }
                    if forward {
                        it.next();
                        want = want.map(|i| i + 1).filter(|&i| i < all.len());
                    } else {
                        it.prev();
                        want = want.and_then(|i| i.checked_sub(1));
                    }
                }
            }
        }
    }

    /// Internal keys in internal-key order, for a model map.
    #[derive(PartialEq, Eq)]
    struct Ordered(Vec<u8>);

    impl Ord for Ordered {
        fn cmp(&self, other: &Self) -> CmpOrdering {
            naive_order(&self.0, &other.0)
        }
    }

    impl PartialOrd for Ordered {
        fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
            Some(self.cmp(other))
        }
    }

    #[test]
    fn inline_comparison_at_word_boundaries() {
        // Every key length up to the inline limit and one past it, differing in each byte.
        for len in 0..=NODE_INLINE_BYTES + 1 {
            for at in 0..len {
                let a: Vec<u8> = (0..len as u8).collect();
                let mut b = a.clone();
                b[at] = b[at].wrapping_add(1);
                assert_eq!(
                    node_key(&a).cmp(&node_key(&b)),
                    a.cmp(&b),
                    "len {len} at {at}"
                );
                // Prefix pairs, including a prefix that ends in zero bytes like the padding.
                let p = &a[..at];
                assert_eq!(node_key(p).cmp(&node_key(&a)), CmpOrdering::Less);
                assert_eq!(node_key(&a).cmp(&node_key(p)), CmpOrdering::Greater);
                let mut z = a.clone();
                z.push(0);
                assert_eq!(
                    node_key(&a).cmp(&node_key(&z)),
                    a.cmp(&z),
                    "zero tail {len}"
                );
            }
        }
    }

    #[test]
    fn older_versions_stay_readable_behind_many_newer_ones() {
        let m = MemTable::new(1);
        for seqno in 1..=1_000u64 {
            m.add(1, b"hot", seqno, KIND_PUT, &seqno.to_be_bytes());
        }
        for read in [1u64, 2, 500, 999, 1_000, 5_000] {
            let (seqno, kind, v) = m.get(1, b"hot", read).unwrap();
            assert_eq!((seqno, kind), (read.min(1_000), KIND_PUT));
            assert_eq!(v.as_ref(), &read.min(1_000).to_be_bytes());
        }
        assert_eq!(m.get(1, b"hot", 0), None);
        assert_eq!((m.len(), m.distinct_keys()), (1_000, 1));
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

    /// A bounded iterator orders only what its range needs: keys added outside it stay unordered (and are
    /// still found by point reads and by later iterators that need them), keys inside it are seen.
    #[test]
    fn bounded_iterators_leave_keys_outside_their_range_unordered() {
        let m = Arc::new(MemTable::new(1));
        for k in [b"e1", b"e3", b"e2"] {
            m.add(1, k, 1, KIND_PUT, b"v");
        }
        let prefixed = |k: &[u8]| {
            let mut v = Vec::new();
            tree_key(&mut v, 1, k);
            v
        };
        let entries = (
            Bound::Included(prefixed(b"e")),
            Bound::Excluded(prefixed(b"f")),
        );
        let start = MemKey::internal(1, b"e", u64::MAX >> 8, KIND_RANGE_DELETE);
        let keys = |it: &mut MemIter| {
            let mut out = Vec::new();
            while it.valid() && split_internal(it.key()).0 < prefixed(b"f").as_slice() {
                out.push(split_internal(it.key()).0[4..].to_vec());
                it.next();
            }
            out
        };
        let mut it = MemIter::within(m.clone(), entries.clone());
        it.seek(start.as_bytes());
        assert_eq!(
            keys(&mut it),
            vec![b"e1".to_vec(), b"e2".to_vec(), b"e3".to_vec()]
        );
        // New keys after the range: a scan of the entries leaves them unordered.
        m.add(1, b"p2", 2, KIND_PUT, b"v");
        m.add(1, b"p1", 3, KIND_PUT, b"v");
        let mut it = MemIter::within(m.clone(), entries.clone());
        it.seek(start.as_bytes());
        assert_eq!(keys(&mut it).len(), 3);
        assert!(m.has_unordered.load(Ordering::Acquire));
        assert_eq!(m.get(1, b"p1", 9).unwrap().2.as_ref(), b"v");
        // A key inside the range is ordered for the next scan of it; keys whose first byte differs are in
        // another group and stay unordered, though the span of all new keys covers the range.
        m.add(1, b"e0", 4, KIND_PUT, b"v");
        m.add(1, b"a1", 5, KIND_PUT, b"v");
        let mut it = MemIter::within(m.clone(), entries.clone());
        it.seek(start.as_bytes());
        assert_eq!(keys(&mut it)[0], b"e0".to_vec());
        assert!(m.has_unordered.load(Ordering::Acquire));
        assert_eq!(
            m.map
                .read()
                .unordered
                .iter()
                .map(|g| g.nodes.len())
                .sum::<usize>(),
            3
        );
        // Keys of the range's group outside the range are ordered with the rest of their group.
        m.add(1, b"e9", 6, KIND_PUT, b"v");
        let mut it = MemIter::within(m.clone(), entries);
        it.seek(start.as_bytes());
        assert_eq!(keys(&mut it).len(), 5);
        // An unbounded iterator sees everything, in order.
        m.add(1, b"a", 7, KIND_PUT, b"v");
        let mut it = MemIter::new(m.clone());
        it.seek_to_first();
        let mut all = Vec::new();
        while it.valid() {
            all.push(split_internal(it.key()).0[4..].to_vec());
            it.next();
        }
        let want: Vec<Vec<u8>> = [
            &b"a"[..],
            b"a1",
            b"e0",
            b"e1",
            b"e2",
            b"e3",
            b"e9",
            b"p1",
            b"p2",
        ]
        .iter()
        .map(|k| k.to_vec())
        .collect();
        assert_eq!(all, want);
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
