//! Compactions asked for by the user rather than picked: [`Db::compact_all`] rewrites everything into one
//! level under the bottommost rules (so compaction filters see every key and dead versions and tombstones
//! go), and [`Db::raw_entries`] counts what a tree physically stores, for tests and diagnostics.

use std::sync::Arc;
use std::time::Duration;

use crate::compaction::job::run_task;
use crate::compaction::picker::{CompactionReason, CompactionTask};
use crate::db::{Db, DbInner};
use crate::error::{Result, StorageError};
use crate::iter::InternalIterator;
use crate::key::{MAX_SEQNO, ValueKind, internal_key, parse_internal_key};
use crate::memtable::MemIter;

/// What a tree physically stores: every version and tombstone not yet dropped by compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawEntries {
    /// Stored values (live or shadowed).
    pub puts: u64,
    /// Point deletes.
    pub deletes: u64,
    /// Range tombstones (a cleared tree counts one).
    pub range_tombstones: u64,
}

impl Db {
    /// Flushes the memtables, then compacts every SST into a single level (the deepest one holding data,
    /// at least L1) under the bottommost rules: shadowed versions, deleted values and tombstones nobody
    /// needs are dropped, and compaction filters see the newest version of every key. Background
    /// compactions wait meanwhile. Costs a rewrite of the whole database; meant for tests, tools and
    /// maintenance (RocksDB's `CompactRange` over everything).
    pub fn compact_all(&self) -> Result<()> {
        self.flush()?;
        let db = &self.inner;
        // The busy set's lock keeps background compactions out for the whole run; take it only when no
        // background compaction is in flight (a running one holds files in the set).
        let busy = loop {
            db.check_poison()?;
            let busy = db.compacting.lock();
            if busy.is_empty() {
                break busy;
            }
            drop(busy);
            let mut bg = db.bg.lock();
            if bg.shutdown {
                return Err(StorageError::Closed);
            }
            db.bg_cv.wait_for(&mut bg, Duration::from_millis(10));
        };
        let r = compact_everything(db);
        drop(busy);
        if let Err(e) = &r {
            db.poison(e);
        }
        let mut bg = db.bg.lock();
        bg.progress += 1;
        db.bg_cv.notify_all();
        r
    }

    /// Counts what `tree` physically stores in its memtables and SSTs (every version, delete and range
    /// tombstone). A full scan of the tree's part of every file: for tests and diagnostics.
    pub fn raw_entries(&self, tree: &crate::Tree) -> Result<RawEntries> {
        let prefix = tree.id().to_be_bytes();
        let db = &self.inner;
        let mut out = RawEntries::default();
        let start = internal_key(&prefix, MAX_SEQNO, ValueKind::RangeDelete);
        let sst = |e| StorageError::from_sst(std::path::Path::new("<raw_entries>"), e);
        let mut count = |it: &mut dyn InternalIterator| -> Result<()> {
            it.seek(&start).map_err(sst)?;
            while it.valid() && it.key().starts_with(&prefix) {
                match parse_internal_key(it.key()).map_err(sst)?.kind {
                    ValueKind::Put => out.puts += 1,
                    ValueKind::Delete => out.deletes += 1,
                    ValueKind::RangeDelete => out.range_tombstones += 1,
                }
                it.next().map_err(sst)?;
            }
            Ok(())
        };
        let mems = db.mems.read().clone();
        let v = crate::version::current(db);
        for m in std::iter::once(&mems.active).chain(mems.imms.iter()) {
            count(&mut MemIter::new(m.clone()))?;
        }
        for (_, f) in v.files() {
            count(&mut f.reader.iter())?;
        }
        for m in std::iter::once(&mems.active).chain(mems.imms.iter()) {
            out.range_tombstones += m
                .range_tombstones()
                .iter()
                .filter(|t| t.start.starts_with(&prefix))
                .count() as u64;
        }
        for (_, f) in v.files() {
            out.range_tombstones += f
                .reader
                .range_tombstones()
                .iter()
                .filter(|t| t.start.starts_with(&prefix))
                .count() as u64;
        }
        Ok(out)
    }
}

/// Merges level after level down into the deepest level holding data; the last step rewrites that level
/// whole with the bottommost rules. The caller keeps other compactions out.
fn compact_everything(db: &Arc<DbInner>) -> Result<()> {
    let v = crate::version::current(db);
    let Some(deepest) = v.levels.iter().rposition(|l| !l.is_empty()) else {
        return Ok(());
    };
    let target = deepest.max(1);
    for lvl in 0..target {
        let v = crate::version::current(db);
        let ids = |l: usize| -> Vec<u64> {
            v.levels
                .get(l)
                .map(|files| files.iter().map(|f| f.meta.id).collect())
                .unwrap_or_default()
        };
        let (inputs, below) = (ids(lvl), ids(lvl + 1));
        let last = lvl + 1 == target;
        let task = if inputs.is_empty() {
            if !last || below.is_empty() {
                continue;
            }
            // Nothing above the target level: rewrite it in place.
            CompactionTask {
                input_level: target,
                output_level: target,
                inputs: below,
                overlapping: Vec::new(),
                bottommost: true,
                reason: CompactionReason::Manual,
            }
        } else {
            CompactionTask {
                input_level: lvl,
                output_level: lvl + 1,
                inputs,
                // All of the next level, so its outputs stay one sorted run however the key ranges fall.
                overlapping: below,
                bottommost: last,
                reason: CompactionReason::Manual,
            }
        };
        run_task(db, &task, &v)?;
    }
    Ok(())
}
