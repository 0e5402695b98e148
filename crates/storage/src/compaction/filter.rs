//! Compaction filters: the owner of a tree tells compaction which values are dead, so they are reclaimed
//! without anyone writing a delete (RocksDB's `CompactionFilter`; Kvrocks drops expired keys and the
//! elements of deleted collections this way).
//!
//! A filter is installed per tree with [`Db::set_compaction_filter`]. Compaction asks it only about the
//! newest version of a key, only when that version is a put, and only when no live snapshot can see it;
//! `Remove` turns the put into a point delete at the same seqno, so older versions in deeper levels cannot
//! resurface, and at the bottommost level the delete itself is dropped. Flushes do not consult filters.
//!
//! **The contract.** A filter may remove only values that are dead for every reader from now on — data
//! whose removal no reader can tell from its being deleted at the moment it died (an expired record, the
//! element of a collection whose current metadata has another version). Compaction runs at any moment,
//! possibly never, so a filter must never be needed for correctness. The engine guarantees:
//!
//! - a version some live snapshot can see never changes: it is in an older stripe and never asked about,
//!   and if a snapshot is taken while a compaction whose filter removed something runs, that compaction's
//!   result is thrown away and the compaction redone without the filter;
//! - [`FilterContext::get`] reads the tree's latest committed data (the newest value of a key may be newer
//!   than the one being filtered); the last key read is remembered for the rest of the compaction, so
//!   consecutive questions about one key (the elements of one collection) cost one read.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::compaction::gc::{Decision, EntryFilter};
use crate::db::{Db, DbInner};
use crate::error::Result;
use crate::tree::Tree;

/// Decides, during compaction, whether values of one tree are dead. See the module docs for the contract.
pub trait CompactionFilter: Send + Sync {
    /// The decision about `value`, the newest version of `key` (a key of the tree, without any engine
    /// prefix), which no live snapshot sees. `ctx` tells the output level and reads the tree.
    fn filter(&self, ctx: &mut FilterContext<'_>, key: &[u8], value: &[u8]) -> Decision;
}

/// What a [`CompactionFilter`] may consult: the compaction's output level and the tree's latest data.
pub struct FilterContext<'a> {
    db: &'a DbInner,
    tree: u32,
    level: usize,
    memo: &'a mut Option<(u32, Vec<u8>, Option<Bytes>)>,
}

impl FilterContext<'_> {
    /// The level the compaction writes to (1 and deeper; larger is older data).
    pub fn level(&self) -> usize {
        self.level
    }

    /// The latest committed value of `key` in the tree being filtered. The last key read is remembered
    /// for the rest of this compaction (see the module docs), so a filter must not rely on seeing writes
    /// made while the compaction runs.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>> {
        if let Some((tree, k, v)) = self.memo.as_ref()
            && *tree == self.tree
            && k.as_slice() == key
        {
            return Ok(v.clone());
        }
        let v = self.db.get_latest(self.tree, key)?;
        *self.memo = Some((self.tree, key.to_vec(), v.clone()));
        Ok(v)
    }
}

/// The installed filters, by tree id.
#[derive(Default)]
pub(crate) struct Registry {
    filters: RwLock<HashMap<u32, Arc<dyn CompactionFilter>>>,
}

impl Registry {
    /// The filters installed now, or `None` when there are none.
    pub(crate) fn current(&self) -> Option<HashMap<u32, Arc<dyn CompactionFilter>>> {
        let f = self.filters.read();
        (!f.is_empty()).then(|| f.clone())
    }
}

impl Db {
    /// Installs `filter` for `tree`, replacing any earlier one; compactions starting from now consult it.
    /// The filter must not hold this `Db` (or a tree, log or snapshot of it): the engine would then keep
    /// itself open. It reads the tree through its [`FilterContext`] instead.
    pub fn set_compaction_filter(&self, tree: &Tree, filter: Arc<dyn CompactionFilter>) {
        self.inner
            .compaction_filters
            .filters
            .write()
            .insert(tree.id(), filter);
    }

    /// Removes the compaction filter of `tree`, if any.
    pub fn remove_compaction_filter(&self, tree: &Tree) {
        self.inner
            .compaction_filters
            .filters
            .write()
            .remove(&tree.id());
    }
}

/// The per-compaction dispatcher: finds the tree of each engine-level key (its 4-byte id prefix) and asks
/// that tree's filter, if any.
pub(crate) struct TreeFilters {
    db: Arc<DbInner>,
    filters: HashMap<u32, Arc<dyn CompactionFilter>>,
    level: usize,
    memo: Option<(u32, Vec<u8>, Option<Bytes>)>,
}

impl TreeFilters {
    pub(crate) fn new(
        db: Arc<DbInner>,
        filters: HashMap<u32, Arc<dyn CompactionFilter>>,
        level: usize,
    ) -> Self {
        TreeFilters {
            db,
            filters,
            level,
            memo: None,
        }
    }
}

impl EntryFilter for TreeFilters {
    fn decide(&mut self, user_key: &[u8], value: &[u8]) -> Decision {
        let Some((id, key)) = user_key
            .split_first_chunk::<4>()
            .map(|(id, key)| (u32::from_be_bytes(*id), key))
        else {
            return Decision::Keep;
        };
        let Some(filter) = self.filters.get(&id) else {
            return Decision::Keep;
        };
        let mut ctx = FilterContext {
            db: &self.db,
            tree: id,
            level: self.level,
            memo: &mut self.memo,
        };
        filter.filter(&mut ctx, key, value)
    }
}
