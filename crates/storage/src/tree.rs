//! Trees: named ordered keyspaces. A [`Tree`] is a cheap handle; all trees share the engine's WAL, memtable
//! and SSTs, their keys prefixed by the tree id.

use std::cell::RefCell;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::WriteBatch;
use crate::db::{Db, prefix_successor};
use crate::db_iter::DbIter;
use crate::error::{Result, StorageError};

thread_local! {
    /// Reused by single-key writes so a put does not allocate a batch buffer.
    static SCRATCH_BATCH: RefCell<WriteBatch> = RefCell::new(WriteBatch::new());
}

/// A named ordered keyspace. Clone it freely.
#[derive(Clone)]
pub struct Tree {
    pub(crate) db: Db,
    id: u32,
    name: Arc<str>,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

impl Tree {
    pub(crate) fn new(db: Db, id: u32, name: &str) -> Self {
        Tree {
            db,
            id,
            name: Arc::from(name),
        }
    }

    /// The tree's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        self.db.inner.check_key_len(key.len())
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        self.db.inner.check_value_len("value", value.len())
    }

    fn write_one(&self, f: impl FnOnce(&mut WriteBatch)) -> Result<u64> {
        self.write_one_mode(f, false)
    }

    fn write_one_mode(&self, f: impl FnOnce(&mut WriteBatch), deferred: bool) -> Result<u64> {
        SCRATCH_BATCH.with(|b| match b.try_borrow_mut() {
            Ok(mut b) => {
                b.clear();
                f(&mut b);
                self.db.inner.commit(&b, None, deferred)
            }
            Err(_) => {
                let mut b = WriteBatch::new();
                f(&mut b);
                self.db.inner.commit(&b, None, deferred)
            }
        })
    }

    fn deferred(&self) -> bool {
        self.db.inner.opts.fsync != crate::FsyncPolicy::Always
    }

    /// Like [`Tree::put`], but the WAL write may be deferred: call [`Db::sync_to`] with the returned
    /// ticket before acknowledging (see [`Db::write_deferred`]).
    pub fn put_deferred(&self, key: &[u8], value: &[u8]) -> Result<crate::WalTicket> {
        self.check_key(key)?;
        self.check_value(value)?;
        let seqno = self.write_one_mode(|b| b.put_raw(self.id, key, value), self.deferred())?;
        Ok(crate::CommitInfo {
            seqno,
            log_offsets: Vec::new(),
        }
        .wal_ticket())
    }

    /// Like [`Tree::delete`], with the WAL write deferred as in [`Tree::put_deferred`].
    pub fn delete_deferred(&self, key: &[u8]) -> Result<crate::WalTicket> {
        self.check_key(key)?;
        let seqno = self.write_one_mode(|b| b.delete_raw(self.id, key), self.deferred())?;
        Ok(crate::CommitInfo {
            seqno,
            log_offsets: Vec::new(),
        }
        .wal_ticket())
    }

    /// The latest committed value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.db.inner.get_latest(self.id, key)
    }

    /// Hints that `key` is about to be written: the active memtable starts loading the index slot the
    /// write will probe, so a new key's cache miss overlaps whatever the caller does before committing.
    /// Changes nothing; worth it only for keys likely new to the memtable.
    pub fn prefetch_write(&self, key: &[u8]) {
        self.db.inner.mems.read().active.prefetch(self.id, key);
    }

    /// Hints that `key` is about to be read, a while after [`Tree::prefetch_write`] of it: the active
    /// memtable starts loading its node ([`crate::MemTable::prefetch_node`]). Changes nothing.
    pub fn prefetch_node(&self, key: &[u8]) {
        self.db.inner.mems.read().active.prefetch_node(self.id, key);
    }

    /// Hints that `keys` are about to be read: the active memtable starts loading their index slots,
    /// nodes and newest values, all the batch's misses at once ([`crate::MemTable::prefetch_reads`]).
    /// Changes nothing. Returns how many of the keys the active memtable holds (or seems to: a hash match).
    pub fn prefetch_reads(&self, keys: &[&[u8]]) -> usize {
        self.db
            .inner
            .mems
            .read()
            .active
            .prefetch_reads(self.id, keys)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Values of several keys, all read at one seqno (a consistent view).
    pub fn multi_get<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        self.db.inner.latest(|seq| {
            keys.iter()
                .map(|k| self.db.inner.get(self.id, k.as_ref(), seq))
                .collect()
        })
    }

    /// Inserts or overwrites `key`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.check_value(value)?;
        self.write_one(|b| b.put_raw(self.id, key, value))?;
        Ok(())
    }

    /// Rewrites byte ranges of `key`'s value (see [`crate::batch::Patch`]): the WAL gets only the pieces,
    /// readers the whole patched value. An absent value patches as empty; gaps are zero-filled.
    pub fn patch(&self, key: &[u8], patch: &crate::PatchBuilder) -> Result<()> {
        self.patch_mode(key, patch, false)?;
        Ok(())
    }

    /// Like [`Tree::patch`], with the WAL write deferred as in [`Tree::put_deferred`].
    pub fn patch_deferred(
        &self,
        key: &[u8],
        patch: &crate::PatchBuilder,
    ) -> Result<crate::WalTicket> {
        let seqno = self.patch_mode(key, patch, self.deferred())?;
        Ok(crate::CommitInfo {
            seqno,
            log_offsets: Vec::new(),
        }
        .wal_ticket())
    }

    fn patch_mode(&self, key: &[u8], patch: &crate::PatchBuilder, deferred: bool) -> Result<u64> {
        self.check_key(key)?;
        self.db.inner.check_value_len("value", patch.end())?;
        self.write_one_mode(|b| b.patch_raw(self.id, key, patch.as_bytes()), deferred)
    }

    /// Deletes `key` (no error if absent).
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.write_one(|b| b.delete_raw(self.id, key))?;
        Ok(())
    }

    /// Deletes every key in `[start, end)` with one range tombstone.
    pub fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        self.check_key(start)?;
        self.check_key(end)?;
        if start >= end {
            return Ok(());
        }
        self.write_one(|b| b.delete_range_raw(self.id, start, end))?;
        Ok(())
    }

    /// Deletes every key of the tree (one range tombstone; space is reclaimed by compaction).
    pub fn clear(&self) -> Result<()> {
        self.write_one(|b| b.clear_tree(self))?;
        Ok(())
    }

    /// Atomically replaces the value of `key` with `f(current)` (`None` deletes) and returns the new value.
    ///
    /// Atomic with respect to every other `update`, `compare_and_swap` and `increment` on the same key (they
    /// share a lock stripe); a plain `put` racing with it is ordered arbitrarily.
    pub fn update<F>(&self, key: &[u8], f: F) -> Result<Option<Bytes>>
    where
        F: FnOnce(Option<&[u8]>) -> Option<Vec<u8>>,
    {
        self.check_key(key)?;
        let _g = self.db.inner.rmw_lock(self.id, key);
        let cur = self.get(key)?;
        let new = f(cur.as_deref());
        match &new {
            Some(v) => {
                self.check_value(v)?;
                self.write_one(|b| b.put_raw(self.id, key, v))?;
            }
            None => {
                if cur.is_some() {
                    self.write_one(|b| b.delete_raw(self.id, key))?;
                }
            }
        }
        Ok(new.map(Bytes::from))
    }

    /// Sets `key` to `new` (`None` deletes) only if its current value equals `expected` (`None` = absent).
    /// On mismatch returns `Ok(Err(current))`.
    pub fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<std::result::Result<(), Option<Bytes>>> {
        self.check_key(key)?;
        if let Some(v) = new {
            self.check_value(v)?;
        }
        let _g = self.db.inner.rmw_lock(self.id, key);
        let cur = self.get(key)?;
        if cur.as_deref() != expected {
            return Ok(Err(cur));
        }
        match new {
            Some(v) => self.write_one(|b| b.put_raw(self.id, key, v))?,
            None => self.write_one(|b| b.delete_raw(self.id, key))?,
        };
        Ok(Ok(()))
    }

    /// Adds `delta` to the integer stored as ASCII decimal at `key` (absent = 0) and returns the result.
    pub fn increment(&self, key: &[u8], delta: i64) -> Result<i64> {
        self.check_key(key)?;
        let _g = self.db.inner.rmw_lock(self.id, key);
        let cur = match self.get(key)? {
            None => 0,
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    StorageError::InvalidArgument("value is not an integer".to_string())
                })?,
        };
        let next = cur
            .checked_add(delta)
            .ok_or_else(|| StorageError::InvalidArgument("increment would overflow".to_string()))?;
        let s = next.to_string();
        self.write_one(|b| b.put_raw(self.id, key, s.as_bytes()))?;
        Ok(next)
    }

    /// Iterates over every key in order (`.rev()` for reverse order), at the current seqno.
    pub fn iter(&self) -> DbIter {
        self.range::<&[u8], _>(..)
    }

    /// Iterates over the keys in `range`, at the current seqno.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> DbIter {
        self.db.inner.latest(|seq| self.range_at(&range, seq))
    }

    /// Iterates over the keys starting with `prefix`, at the current seqno.
    pub fn prefix(&self, prefix: &[u8]) -> DbIter {
        self.db.inner.latest(|seq| self.prefix_at(prefix, seq))
    }

    pub(crate) fn range_at<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: &R,
        seq: u64,
    ) -> DbIter {
        let lo = map_bound(range.start_bound());
        let hi = map_bound(range.end_bound());
        self.db.inner.iter(self.id, lo, hi, seq)
    }

    pub(crate) fn prefix_at(&self, prefix: &[u8], seq: u64) -> DbIter {
        let succ = prefix_successor(prefix);
        let hi = match &succ {
            Some(s) => Bound::Excluded(s.as_slice()),
            None => Bound::Unbounded,
        };
        self.db
            .inner
            .iter(self.id, Bound::Included(prefix), hi, seq)
    }
}

fn map_bound<K: AsRef<[u8]>>(b: Bound<&K>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_ref()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
