//! Snapshots: a read view fixed at one seqno. While a snapshot lives, compaction keeps every version it
//! can see, so it reads the same data however long it is held.

use bytes::Bytes;

use std::ops::RangeBounds;

use crate::db::Db;
use crate::db_iter::DbIter;
use crate::error::Result;
use crate::tree::Tree;

/// A consistent read view. Drop it to let compaction discard the versions only it could see.
pub struct Snapshot {
    db: Db,
    seqno: u64,
    /// Keeps the memtable versions this snapshot sees (see [`crate::readers`]).
    _reading: crate::readers::OwnedReadGuard,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seqno", &self.seqno)
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(db: Db) -> Self {
        let (seqno, reading) = db.inner.acquire_snapshot();
        Snapshot {
            db,
            seqno,
            _reading: reading,
        }
    }

    /// The seqno this snapshot reads at: it sees exactly the writes with seqno <= this.
    pub fn seqno(&self) -> u64 {
        self.seqno
    }

    /// The value of `key` in `tree` as of this snapshot.
    pub fn get(&self, tree: &Tree, key: &[u8]) -> Result<Option<Bytes>> {
        self.db.inner.get(tree.id(), key, self.seqno)
    }

    /// Values of several keys as of this snapshot.
    pub fn multi_get<K: AsRef<[u8]>>(&self, tree: &Tree, keys: &[K]) -> Result<Vec<Option<Bytes>>> {
        keys.iter()
            .map(|k| self.db.inner.get(tree.id(), k.as_ref(), self.seqno))
            .collect()
    }
}

impl Snapshot {
    /// Iterates over every key of `tree` as of this snapshot.
    pub fn iter(&self, tree: &Tree) -> DbIter {
        tree.range_at::<&[u8], _>(&.., self.seqno)
    }

    /// Iterates over the keys of `tree` in `range` as of this snapshot.
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, tree: &Tree, range: R) -> DbIter {
        tree.range_at(&range, self.seqno)
    }

    /// Iterates over the keys of `tree` starting with `prefix` as of this snapshot.
    pub fn prefix(&self, tree: &Tree, prefix: &[u8]) -> DbIter {
        tree.prefix_at(prefix, self.seqno)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        self.db.inner.release_snapshot(self.seqno);
    }
}
