//! Write batches: several tree and log writes committed atomically (one WAL frame, one seqno range).
//!
//! Encoding (`rep`), also the payload of a batch inside a WAL frame, all integers little-endian:
//!
//! ```text
//! count u32, then `count` ops:
//!   Put          tag=1 | tree u32 | key_len varint | key | value_len varint | value
//!   Delete       tag=0 | tree u32 | key_len varint | key
//!   RangeDelete  tag=2 | tree u32 | start_len varint | start | end_len varint | end   (end exclusive)
//!   LogAppend    tag=3 | log u32  | offset u64 | len varint | payload   (offset filled in at commit)
//!   LogTruncate  tag=4 | log u32  | before_offset u64
//!   ClearTree    tag=5 | tree u32   (a range tombstone over the whole tree)
//! ```
//! Every op takes one seqno, in order.

use crate::error::{Result, StorageError};

const TAG_DELETE: u8 = 0;
const TAG_PUT: u8 = 1;
const TAG_RANGE_DELETE: u8 = 2;
const TAG_LOG_APPEND: u8 = 3;
const TAG_LOG_TRUNCATE: u8 = 4;
const TAG_CLEAR_TREE: u8 = 5;

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
    /// Drop log entries before `before`.
    LogTruncate {
        /// Log id.
        log: u32,
        /// New head offset.
        before: u64,
    },
}

/// An atomic group of writes to trees and logs. Build it with the methods below and commit it with
/// [`crate::Db::write`]; either all of it becomes visible and durable, or none of it.
#[derive(Debug, Clone)]
pub struct WriteBatch {
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

fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
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
            rep: vec![0, 0, 0, 0],
            count: 0,
            log_slots: Vec::new(),
            conditions: Vec::new(),
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
        self.rep.truncate(4);
        self.rep[..4].copy_from_slice(&[0; 4]);
        self.count = 0;
        self.log_slots.clear();
        self.conditions.clear();
    }

    fn bump(&mut self) {
        self.count += 1;
        self.rep[..4].copy_from_slice(&self.count.to_le_bytes());
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
        self.rep.push(TAG_CLEAR_TREE);
        self.rep.extend_from_slice(&tree.id().to_le_bytes());
        self.bump();
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
        self.rep.push(TAG_PUT);
        self.rep.extend_from_slice(&tree.to_le_bytes());
        put_varint(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        put_varint(&mut self.rep, value.len() as u64);
        self.rep.extend_from_slice(value);
        self.bump();
    }

    pub(crate) fn delete_raw(&mut self, tree: u32, key: &[u8]) {
        self.rep.push(TAG_DELETE);
        self.rep.extend_from_slice(&tree.to_le_bytes());
        put_varint(&mut self.rep, key.len() as u64);
        self.rep.extend_from_slice(key);
        self.bump();
    }

    pub(crate) fn delete_range_raw(&mut self, tree: u32, start: &[u8], end: &[u8]) {
        self.rep.push(TAG_RANGE_DELETE);
        self.rep.extend_from_slice(&tree.to_le_bytes());
        put_varint(&mut self.rep, start.len() as u64);
        self.rep.extend_from_slice(start);
        put_varint(&mut self.rep, end.len() as u64);
        self.rep.extend_from_slice(end);
        self.bump();
    }

    pub(crate) fn log_append_raw(&mut self, log: u32, payload: &[u8]) {
        self.rep.push(TAG_LOG_APPEND);
        self.rep.extend_from_slice(&log.to_le_bytes());
        self.log_slots.push((log, self.rep.len()));
        self.rep.extend_from_slice(&[0u8; 8]);
        put_varint(&mut self.rep, payload.len() as u64);
        self.rep.extend_from_slice(payload);
        self.bump();
    }

    pub(crate) fn log_truncate_raw(&mut self, log: u32, before: u64) {
        self.rep.push(TAG_LOG_TRUNCATE);
        self.rep.extend_from_slice(&log.to_le_bytes());
        self.rep.extend_from_slice(&before.to_le_bytes());
        self.bump();
    }

    /// Iterates over the operations of this batch.
    pub fn ops(&self) -> BatchIter<'_> {
        BatchIter::new(&self.rep).unwrap_or(BatchIter {
            data: &[],
            pos: 0,
            remaining: 0,
        })
    }
}

/// Iterator over the ops of an encoded batch; yields an error on malformed input.
pub struct BatchIter<'a> {
    data: &'a [u8],
    pos: usize,
    remaining: u32,
}

impl<'a> BatchIter<'a> {
    /// Parses the count of an encoded batch.
    pub fn new(data: &'a [u8]) -> Result<Self> {
        let mut pos = 0;
        let remaining = get_u32(data, &mut pos).ok_or_else(|| malformed("batch header"))?;
        Ok(BatchIter {
            data,
            pos,
            remaining,
        })
    }

    /// Number of ops declared by the header.
    pub fn count(data: &'a [u8]) -> Result<u32> {
        Ok(Self::new(data)?.remaining)
    }

    fn parse(&mut self) -> Option<BatchOp<'a>> {
        let d = self.data;
        let p = &mut self.pos;
        let tag = *d.get(*p)?;
        *p += 1;
        let id = get_u32(d, p)?;
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
            TAG_LOG_TRUNCATE => BatchOp::LogTruncate {
                log: id,
                before: get_u64(d, p)?,
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
        if self.remaining == 0 {
            if self.pos != self.data.len() {
                self.pos = self.data.len();
                return Some(Err(malformed("batch: trailing bytes")));
            }
            return None;
        }
        self.remaining -= 1;
        match self.parse() {
            Some(op) => Some(Ok(op)),
            None => {
                self.remaining = 0;
                self.pos = self.data.len();
                Some(Err(malformed("batch op")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            ops[3],
            BatchOp::LogAppend {
                log: 7,
                offset: 0,
                payload: b"entry"
            }
        );
        // Truncated input is an error, never a panic.
        for cut in 0..b.rep.len() {
            let r: Result<Vec<_>> = match BatchIter::new(&b.rep[..cut]) {
                Ok(it) => it.collect(),
                Err(e) => Err(e),
            };
            assert!(r.is_err(), "cut {cut}");
        }
    }
}
