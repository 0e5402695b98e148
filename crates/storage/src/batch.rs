//! Write batches: several tree and log writes committed atomically (one WAL frame, one seqno range).
//!
//! Encoding (`rep`, WAL format v2): the ops one after another, no header (the count is kept beside the
//! bytes, and a WAL frame needs none: its ops run to the end of the frame). Varints are LEB128; the log
//! offset is a fixed little-endian u64 because it is filled in at commit, in place.
//!
//! ```text
//!   Put          tag=1 | tree varint | key_len varint | key | value_len varint | value
//!   Delete       tag=0 | tree varint | key_len varint | key
//!   RangeDelete  tag=2 | tree varint | start_len varint | start | end_len varint | end   (end exclusive)
//!   LogAppend    tag=3 | log varint  | offset u64 | len varint | payload   (offset filled in at commit)
//!   LogTruncate  tag=4 | log varint  | before_offset varint
//!   ClearTree    tag=5 | tree varint   (a range tombstone over the whole tree)
//!   Patch        tag=6 | tree varint | key_len varint | key | patch_len varint | patch
//!                  patch: (offset varint | len varint | bytes) repeated to its end
//! ```
//!
//! A Patch rewrites byte ranges of a key's current value (zero-filling any gap past its end; an absent
//! value is empty) and stores the result as a put: the WAL carries only the changed bytes, the memtable
//! and SSTs only whole values. A HyperLogLog register or one bit of a big bitmap changes a few bytes of
//! a 12 KiB or 1 MiB string, and writing it whole to the WAL was most of PFADD's and SETBIT's cost.
//!
//! Format v1 (written by builds before WAL v2, still read by recovery, see [`BatchIter::new_v1`]) starts
//! with `count u32` and has the same ops with `tree`/`log` as u32 and `before_offset` as u64, all
//! little-endian. Every op takes one seqno, in order.

use crate::error::{Result, StorageError};

const TAG_DELETE: u8 = 0;
const TAG_PUT: u8 = 1;
const TAG_RANGE_DELETE: u8 = 2;
const TAG_LOG_APPEND: u8 = 3;
const TAG_LOG_TRUNCATE: u8 = 4;
const TAG_CLEAR_TREE: u8 = 5;
const TAG_PATCH: u8 = 6;
/// The largest op tag.
pub(crate) const MAX_TAG: u8 = TAG_PATCH;
/// The largest end offset a patch piece may write (Redis's 512 MB string limit); the engine's
/// `max_value_bytes` is checked at commit, this bounds what a damaged WAL frame could make recovery
/// allocate.
pub const MAX_PATCH_END: u64 = 512 << 20;

/// A decoded batch operation borrowing from the encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOp<'a> {
    /// Insert or overwrite a key.
    Put {
        /// Tree id.
        tree: u32,
        /// User key.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
    },
    /// Delete a key.
    Delete {
        /// Tree id.
        tree: u32,
        /// User key.
        key: &'a [u8],
    },
    /// Delete every key in `[start, end)`.
    RangeDelete {
        /// Tree id.
        tree: u32,
        /// First key deleted.
        start: &'a [u8],
        /// First key not deleted.
        end: &'a [u8],
    },
    /// Append one entry to a log at `offset`.
    LogAppend {
        /// Log id.
        log: u32,
        /// Offset assigned at commit.
        offset: u64,
        /// Entry bytes.
        payload: &'a [u8],
    },
    /// Delete every key of a tree.
    ClearTree {
        /// Tree id.
        tree: u32,
    },
    /// Rewrite byte ranges of a key's value (see the module docs).
    Patch {
        /// Tree id.
        tree: u32,
        /// User key.
        key: &'a [u8],
        /// The pieces, validated when decoded (iterate them with [`Patch::pieces`]).
        patch: Patch<'a>,
    },
    /// Drop log entries before `before`.
    LogTruncate {
        /// Log id.
        log: u32,
        /// New head offset.
        before: u64,
    },
}

/// The pieces of a [`BatchOp::Patch`]: byte ranges to write over a value, in order (a later piece wins
/// where two overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch<'a> {
    rep: &'a [u8],
    /// The largest `offset + len` of any piece.
    end: usize,
}

impl<'a> Patch<'a> {
    /// Decodes and validates an encoded piece list; `None` if malformed or writing past
    /// [`MAX_PATCH_END`].
    pub(crate) fn parse(rep: &'a [u8]) -> Option<Patch<'a>> {
        let mut end = 0u64;
        let mut p = 0;
        while p < rep.len() {
            let offset = get_varint(rep, &mut p)?;
            let len = get_varint(rep, &mut p)?;
            let piece_end = offset.checked_add(len).filter(|e| *e <= MAX_PATCH_END)?;
            p = p.checked_add(len as usize).filter(|e| *e <= rep.len())?;
            end = end.max(piece_end);
        }
        Some(Patch {
            rep,
            end: end as usize,
        })
    }

    /// The encoded pieces.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.rep
    }

    /// The length of the value after patching a base of `base_len` bytes.
    pub fn patched_len(&self, base_len: usize) -> usize {
        self.end.max(base_len)
    }

    /// The largest offset a piece writes up to.
    pub fn end(&self) -> usize {
        self.end
    }

    /// The pieces: (offset, bytes).
    pub fn pieces(&self) -> impl Iterator<Item = (usize, &'a [u8])> + 'a {
        let rep = self.rep;
        let mut p = 0;
        std::iter::from_fn(move || {
            if p >= rep.len() {
                return None;
            }
            // Validated by `parse`.
            let offset = get_varint(rep, &mut p)? as usize;
            let len = get_varint(rep, &mut p)? as usize;
            let bytes = &rep[p..p + len];
            p += len;
            Some((offset, bytes))
        })
    }

    /// Writes `base` with the pieces applied into `out` (`patched_len(base.len())` bytes).
    pub fn apply(&self, base: &[u8], out: &mut [u8]) {
        out[..base.len()].copy_from_slice(base);
        out[base.len()..].fill(0);
        self.write_pieces(out);
    }

    /// Writes the pieces over `out`, which holds the base already (`patched_len` bytes).
    pub fn write_pieces(&self, out: &mut [u8]) {
        for (offset, bytes) in self.pieces() {
            out[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
    }
}

/// Builds the piece list of a [`WriteBatch::patch`].
#[derive(Debug, Default, Clone)]
pub struct PatchBuilder {
    rep: Vec<u8>,
    end: usize,
}

impl PatchBuilder {
    /// An empty piece list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes every piece, keeping the allocation.
    pub fn clear(&mut self) {
        self.rep.clear();
        self.end = 0;
    }

    /// The largest offset a piece writes up to.
    pub fn end(&self) -> usize {
        self.end
    }

    /// Whether no piece was added.
    pub fn is_empty(&self) -> bool {
        self.rep.is_empty()
    }

    /// Writes `bytes` at `offset`.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) {
        put_varint(&mut self.rep, offset as u64);
        put_varint(&mut self.rep, bytes.len() as u64);
        self.rep.extend_from_slice(bytes);
        self.end = self.end.max(offset + bytes.len());
    }

    /// The encoded pieces.
    pub fn as_bytes(&self) -> &[u8] {
        &self.rep
    }
}

/// The encoding of a WAL frame's payload (see `wal.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFormat {
    /// `len u32 | batch` repeated, each batch `count u32 | ops` with fixed-width ids.
    V1,
    /// Ops until the end of the payload, varint ids.
    V2,
}

/// An atomic group of writes to trees and logs. Build it with the methods below and commit it with
/// [`crate::Db::write`]; either all of it becomes visible and durable, or none of it.
#[derive(Debug, Clone)]
pub struct WriteBatch {
    /// The ops, encoded as in WAL format v2 (see the module docs).
    pub(crate) rep: Vec<u8>,
    pub(crate) count: u32,
    /// Position in `rep` of each LogAppend's offset field, with its log id, in order.
    pub(crate) log_slots: Vec<(u32, usize)>,
    /// Preconditions checked atomically at commit: (tree, key, expected value; None = absent).
    pub(crate) conditions: Vec<(u32, Vec<u8>, Option<Vec<u8>>)>,
}

impl Default for WriteBatch {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`put_varint`] writes for `v`.
pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

pub(crate) fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

fn get_u32(data: &[u8], pos: &mut usize) -> Option<u32> {
    let b = data.get(*pos..*pos + 4)?;
    *pos += 4;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn get_u64(data: &[u8], pos: &mut usize) -> Option<u64> {
    let b = data.get(*pos..*pos + 8)?;
    *pos += 8;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_le_bytes(a))
}

fn get_id(data: &[u8], pos: &mut usize, v1: bool) -> Option<u32> {
    if v1 {
        get_u32(data, pos)
    } else {
        u32::try_from(get_varint(data, pos)?).ok()
    }
}

fn get_slice<'a>(data: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(get_varint(data, pos)?).ok()?;
    let s = data.get(*pos..pos.checked_add(len)?)?;
    *pos += len;
    Some(s)
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch {
            rep: Vec::new(),
            count: 0,
            log_slots: Vec::new(),
            conditions: Vec::new(),
        }
    }

    /// An empty batch with room for `bytes` of encoded operations, for a caller that knows roughly
    /// what it will add (growing from empty reallocates several times).
    pub fn with_capacity(bytes: usize) -> Self {
        WriteBatch {
            rep: Vec::with_capacity(bytes),
            ..WriteBatch::new()
        }
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size in bytes.
    pub fn size_bytes(&self) -> usize {
        self.rep.len()
    }

    /// Removes every operation, keeping the allocation.
    pub fn clear(&mut self) {
        self.rep.clear();
        self.count = 0;
        self.log_slots.clear();
        self.conditions.clear();
    }

    fn bump(&mut self) {
        self.count += 1;
    }

    fn op_header(&mut self, tag: u8, id: u32) {
        self.rep.push(tag);
        put_varint(&mut self.rep, u64::from(id));
    }

    /// Inserts or overwrites `key` in `tree`.
    pub fn put(&mut self, tree: &crate::Tree, key: &[u8], value: &[u8]) {
        self.put_raw(tree.id(), key, value);
    }

    /// Deletes `key` from `tree`.
    pub fn delete(&mut self, tree: &crate::Tree, key: &[u8]) {
        self.delete_raw(tree.id(), key);
    }

    /// Deletes every key of `tree` in `[start, end)`.
    pub fn delete_range(&mut self, tree: &crate::Tree, start: &[u8], end: &[u8]) {
        // An empty or inverted range deletes nothing (as `Tree::delete_range`); recording it would give
        // the memtable a tombstone no SSTable can hold.
        if start >= end {
            return;
        }
        self.delete_range_raw(tree.id(), start, end);
    }

    /// Deletes every key of `tree` (one range tombstone).
    pub fn clear_tree(&mut self, tree: &crate::Tree) {
        self.clear_tree_raw(tree.id());
    }

    /// Rewrites the byte ranges of `patch` in the value of `key` in `tree` as of this op (see the module
    /// docs). Only the pieces go to the WAL; readers see the whole patched value.
    pub fn patch(&mut self, tree: &crate::Tree, key: &[u8], patch: &PatchBuilder) {
        self.patch_raw(tree.id(), key, patch.as_bytes());
    }

    /// Appends `payload` to `log`; its offset is assigned at commit (see [`crate::Db::write`]).
    pub fn log_append(&mut self, log: &crate::Log, payload: &[u8]) {
        self.log_append_raw(log.id(), payload);
    }

    /// Drops the entries of `log` before offset `before`.
    pub fn log_truncate_before(&mut self, log: &crate::Log, before: u64) {
        self.log_truncate_raw(log.id(), before);
    }

    /// Makes the commit conditional: it fails with [`crate::StorageError::ConditionFailed`] (writing
    /// nothing) unless `key` in `tree` currently has value `expected` (`None` = absent). Conditions are
    /// checked atomically with the commit with respect to other conditional batches and to
    /// `Tree::update`/`compare_and_swap`/`increment` on the same keys.
    pub fn require(&mut self, tree: &crate::Tree, key: &[u8], expected: Option<&[u8]>) {
        self.conditions
            .push((tree.id(), key.to_vec(), expected.map(<[u8]>::to_vec)));
    }

    pub(crate) fn put_raw(&mut self, tree: u32, key: &[u8], value: &[u8]) {
        self.op_header(TAG_PUT, tree);
        put_varint(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        put_varint(&mut self.rep, value.len() as u64);
        self.rep.extend_from_slice(value);
        self.bump();
    }

    pub(crate) fn patch_raw(&mut self, tree: u32, key: &[u8], patch: &[u8]) {
        self.op_header(TAG_PATCH, tree);
        put_varint(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        put_varint(&mut self.rep, patch.len() as u64);
        self.rep.extend_from_slice(patch);
        self.bump();
    }

    pub(crate) fn delete_raw(&mut self, tree: u32, key: &[u8]) {
        self.op_header(TAG_DELETE, tree);
        put_varint(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        self.bump();
    }

    pub(crate) fn delete_range_raw(&mut self, tree: u32, start: &[u8], end: &[u8]) {
        self.op_header(TAG_RANGE_DELETE, tree);
        put_varint(&mut self.rep, start.len() as u64);
        self.rep.extend_from_slice(start);
        put_varint(&mut self.rep, end.len() as u64);
        self.rep.extend_from_slice(end);
        self.bump();
    }

    pub(crate) fn log_append_raw(&mut self, log: u32, payload: &[u8]) {
        self.op_header(TAG_LOG_APPEND, log);
        self.log_slots.push((log, self.rep.len()));
        self.rep.extend_from_slice(&[0u8; 8]);
        put_varint(&mut self.rep, payload.len() as u64);
        self.rep.extend_from_slice(payload);
        self.bump();
    }

    pub(crate) fn clear_tree_raw(&mut self, tree: u32) {
        self.op_header(TAG_CLEAR_TREE, tree);
        self.bump();
    }

    pub(crate) fn log_truncate_raw(&mut self, log: u32, before: u64) {
        self.op_header(TAG_LOG_TRUNCATE, log);
        put_varint(&mut self.rep, before);
        self.bump();
    }

    /// Iterates over the operations of this batch.
    pub fn ops(&self) -> BatchIter<'_> {
        BatchIter::v2(&self.rep)
    }

    /// This batch in the v1 encoding (`count u32 | ops` with fixed-width ids), as builds before WAL v2
    /// wrote it inside WAL frames. For tests and tools that produce old-format WAL segments.
    #[doc(hidden)]
    pub fn encode_v1(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.rep.len() + 4 + 4 * self.count as usize);
        out.extend_from_slice(&self.count.to_le_bytes());
        for op in self.ops().flatten() {
            let (tag, id) = match op {
                BatchOp::Put { tree, .. } => (TAG_PUT, tree),
                BatchOp::Delete { tree, .. } => (TAG_DELETE, tree),
                BatchOp::RangeDelete { tree, .. } => (TAG_RANGE_DELETE, tree),
                BatchOp::LogAppend { log, .. } => (TAG_LOG_APPEND, log),
                BatchOp::LogTruncate { log, .. } => (TAG_LOG_TRUNCATE, log),
                BatchOp::ClearTree { tree } => (TAG_CLEAR_TREE, tree),
                BatchOp::Patch { tree, .. } => (TAG_PATCH, tree),
            };
            out.push(tag);
            out.extend_from_slice(&id.to_le_bytes());
            let slice = |out: &mut Vec<u8>, b: &[u8]| {
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            };
            match op {
                BatchOp::Put { key, value, .. } => {
                    slice(&mut out, key);
                    slice(&mut out, value);
                }
                BatchOp::Delete { key, .. } => slice(&mut out, key),
                BatchOp::Patch { key, patch, .. } => {
                    slice(&mut out, key);
                    slice(&mut out, patch.as_bytes());
                }
                BatchOp::RangeDelete { start, end, .. } => {
                    slice(&mut out, start);
                    slice(&mut out, end);
                }
                BatchOp::LogAppend {
                    offset, payload, ..
                } => {
                    out.extend_from_slice(&offset.to_le_bytes());
                    slice(&mut out, payload);
                }
                BatchOp::LogTruncate { before, .. } => {
                    out.extend_from_slice(&before.to_le_bytes());
                }
                BatchOp::ClearTree { .. } => {}
            }
        }
        out
    }
}

/// Iterator over the ops of an encoded batch; yields an error on malformed input.
pub struct BatchIter<'a> {
    data: &'a [u8],
    pos: usize,
    /// Ops left per the v1 header; `None` in v2, whose ops run to the end of the data.
    remaining: Option<u32>,
    v1: bool,
}

impl<'a> BatchIter<'a> {
    /// An iterator over the ops of a v2 encoding (a [`WriteBatch`]'s, or a v2 WAL frame's ops). Never
    /// fails: malformed ops are reported by the iterator.
    pub fn new(data: &'a [u8]) -> Result<Self> {
        Ok(Self::v2(data))
    }

    fn v2(data: &'a [u8]) -> Self {
        BatchIter {
            data,
            pos: 0,
            remaining: None,
            v1: false,
        }
    }

    /// An iterator over a v1 batch encoding (`count u32 | ops`); fails if the header is missing.
    pub fn new_v1(data: &'a [u8]) -> Result<Self> {
        let mut pos = 0;
        let remaining = get_u32(data, &mut pos).ok_or_else(|| malformed("batch header"))?;
        Ok(BatchIter {
            data,
            pos,
            remaining: Some(remaining),
            v1: true,
        })
    }

    /// Number of ops of a v2 encoding (an error if any op is malformed).
    pub fn count(data: &'a [u8]) -> Result<u32> {
        let mut n = 0u32;
        for op in Self::v2(data) {
            op?;
            n += 1;
        }
        Ok(n)
    }

    fn parse(&mut self) -> Option<BatchOp<'a>> {
        let d = self.data;
        let v1 = self.v1;
        let p = &mut self.pos;
        let tag = *d.get(*p)?;
        *p += 1;
        let id = get_id(d, p, v1)?;
        Some(match tag {
            TAG_PUT => {
                let key = get_slice(d, p)?;
                let value = get_slice(d, p)?;
                BatchOp::Put {
                    tree: id,
                    key,
                    value,
                }
            }
            TAG_DELETE => BatchOp::Delete {
                tree: id,
                key: get_slice(d, p)?,
            },
            TAG_RANGE_DELETE => {
                let start = get_slice(d, p)?;
                let end = get_slice(d, p)?;
                BatchOp::RangeDelete {
                    tree: id,
                    start,
                    end,
                }
            }
            TAG_LOG_APPEND => {
                let offset = get_u64(d, p)?;
                BatchOp::LogAppend {
                    log: id,
                    offset,
                    payload: get_slice(d, p)?,
                }
            }
            TAG_CLEAR_TREE => BatchOp::ClearTree { tree: id },
            TAG_PATCH => {
                let key = get_slice(d, p)?;
                let patch = Patch::parse(get_slice(d, p)?)?;
                BatchOp::Patch {
                    tree: id,
                    key,
                    patch,
                }
            }
            TAG_LOG_TRUNCATE => BatchOp::LogTruncate {
                log: id,
                before: if v1 {
                    get_u64(d, p)?
                } else {
                    get_varint(d, p)?
                },
            },
            _ => return None,
        })
    }
}

fn malformed(what: &str) -> StorageError {
    StorageError::corruption("<batch>", 0, format!("malformed {what}"))
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchOp<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.remaining {
            Some(0) => {
                if self.pos != self.data.len() {
                    self.pos = self.data.len();
                    return Some(Err(malformed("batch: trailing bytes")));
                }
                return None;
            }
            Some(n) => *n -= 1,
            None if self.pos >= self.data.len() => return None,
            None => {}
        }
        match self.parse() {
            Some(op) => Some(Ok(op)),
            None => {
                self.remaining = Some(0);
                self.pos = self.data.len();
                Some(Err(malformed("batch op")))
            }
        }
    }
}

/// The ops of a WAL frame payload in either format, in order (each takes the next seqno).
pub struct FrameOps<'a> {
    data: &'a [u8],
    pos: usize,
    /// The batch being read (in v2 the whole payload is one run of ops).
    cur: Option<BatchIter<'a>>,
    format: WalFormat,
}

impl<'a> FrameOps<'a> {
    /// Iterates over `payload`, a frame payload written in `format`.
    pub fn new(format: WalFormat, payload: &'a [u8]) -> Self {
        FrameOps {
            data: payload,
            pos: 0,
            cur: (format == WalFormat::V2).then(|| BatchIter::v2(payload)),
            format,
        }
    }

    fn fail(&mut self, what: &str) -> Option<Result<BatchOp<'a>>> {
        self.pos = self.data.len();
        self.cur = None;
        Some(Err(malformed(what)))
    }
}

impl<'a> Iterator for FrameOps<'a> {
    type Item = Result<BatchOp<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(it) = &mut self.cur {
                match it.next() {
                    Some(Ok(op)) => return Some(Ok(op)),
                    Some(Err(e)) => {
                        self.pos = self.data.len();
                        self.cur = None;
                        return Some(Err(e));
                    }
                    None => self.cur = None,
                }
            }
            if self.format == WalFormat::V2 || self.pos >= self.data.len() {
                return None;
            }
            // v1: `len u32 | batch` repeated.
            let mut p = self.pos;
            let Some(len) = get_u32(self.data, &mut p) else {
                return self.fail("truncated batch length");
            };
            let Some(rep) = self.data.get(p..p.saturating_add(len as usize)) else {
                return self.fail("truncated batch");
            };
            self.pos = p + rep.len();
            match BatchIter::new_v1(rep) {
                Ok(it) => self.cur = Some(it),
                Err(_) => return self.fail("batch header"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_op_round_trips_and_rejects_bad_pieces() {
        let mut p = PatchBuilder::new();
        p.write(3, b"abc");
        p.write(0, b"Z");
        assert_eq!(p.end(), 6);
        let mut b = WriteBatch::new();
        b.patch_raw(9, b"key", p.as_bytes());
        let ops: Vec<_> = b.ops().map(|o| o.unwrap()).collect();
        let BatchOp::Patch { tree, key, patch } = ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!((tree, key, patch.end()), (9, &b"key"[..], 6));
        let mut out = vec![0xee; patch.patched_len(2)];
        patch.apply(b"xy", &mut out);
        assert_eq!(out, b"Zy\0abc");
        // v1 re-encoding keeps it.
        let v1 = b.encode_v1();
        let v1: Vec<_> = BatchIter::new_v1(&v1)
            .unwrap()
            .map(|o| o.unwrap())
            .collect();
        assert_eq!(v1, ops);
        // A piece longer than the patch, or ending past the limit, is malformed.
        let mut bad = Vec::new();
        put_varint(&mut bad, 0);
        put_varint(&mut bad, 5);
        bad.extend_from_slice(b"abc");
        assert!(Patch::parse(&bad).is_none());
        let mut far = Vec::new();
        put_varint(&mut far, MAX_PATCH_END);
        put_varint(&mut far, 1);
        far.push(1);
        assert!(Patch::parse(&far).is_none());
        let mut b = WriteBatch::new();
        b.patch_raw(1, b"k", &far);
        assert!(b.ops().next().unwrap().is_err());
    }

    #[test]
    fn encode_decode() {
        let mut b = WriteBatch::new();
        b.put_raw(1, b"k", b"v");
        b.delete_raw(2, b"d");
        b.delete_range_raw(1, b"a", b"z");
        b.log_append_raw(7, b"entry");
        b.log_truncate_raw(7, 5);
        let ops: Vec<_> = BatchIter::new(&b.rep)
            .unwrap()
            .map(|o| o.unwrap())
            .collect();
        assert_eq!(ops.len(), 5);
        assert_eq!(BatchIter::count(&b.rep).unwrap(), 5);
        // The v1 encoding of the same batch decodes to the same ops.
        let v1 = b.encode_v1();
        let ops1: Vec<_> = BatchIter::new_v1(&v1)
            .unwrap()
            .map(|o| o.unwrap())
            .collect();
        assert_eq!(ops1, ops);
        // ... also as a v1 frame payload of two batches, against the v2 payload of the same ops.
        let mut p1 = Vec::new();
        for _ in 0..2 {
            p1.extend_from_slice(&(v1.len() as u32).to_le_bytes());
            p1.extend_from_slice(&v1);
        }
        let mut p2 = b.rep.clone();
        p2.extend_from_slice(&b.rep);
        let f1: Vec<_> = FrameOps::new(WalFormat::V1, &p1)
            .map(|o| o.unwrap())
            .collect();
        let f2: Vec<_> = FrameOps::new(WalFormat::V2, &p2)
            .map(|o| o.unwrap())
            .collect();
        assert_eq!(f1.len(), 10);
        assert_eq!(f1, f2);
        // v2 is smaller: ids and the truncation offset are varints, and there is no count.
        // 3 bytes per id (all < 128), 7 for the truncation offset, 4 for the count.
        assert_eq!(v1.len() - b.rep.len(), 5 * 3 + 7 + 4);
        assert_eq!(
            ops[3],
            BatchOp::LogAppend {
                log: 7,
                offset: 0,
                payload: b"entry"
            }
        );
        // Truncated input is an error, never a panic (v2: a cut at an op boundary is a shorter batch).
        let boundaries: Vec<usize> = {
            let mut b2 = WriteBatch::new();
            let mut v = vec![0];
            b2.put_raw(1, b"k", b"v");
            v.push(b2.rep.len());
            b2.delete_raw(2, b"d");
            v.push(b2.rep.len());
            b2.delete_range_raw(1, b"a", b"z");
            v.push(b2.rep.len());
            b2.log_append_raw(7, b"entry");
            v.push(b2.rep.len());
            v
        };
        for cut in 0..b.rep.len() {
            let r: Result<Vec<_>> = BatchIter::new(&b.rep[..cut]).unwrap().collect();
            assert_eq!(r.is_err(), !boundaries.contains(&cut), "cut {cut}");
        }
        for cut in 0..v1.len() {
            let r: Result<Vec<_>> = match BatchIter::new_v1(&v1[..cut]) {
                Ok(it) => it.collect(),
                Err(e) => Err(e),
            };
            assert!(r.is_err(), "v1 cut {cut}");
        }
        for cut in 0..p1.len() {
            if cut != v1.len() + 4 && cut != 0 {
                let r: Result<Vec<_>> = FrameOps::new(WalFormat::V1, &p1[..cut]).collect();
                assert!(r.is_err(), "v1 frame cut {cut}");
            }
        }
    }
}
