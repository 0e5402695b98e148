//! Runs compactions: asks the pure picker for a task, merges the inputs through the garbage-collecting
//! CompactionIterator into new SSTs split at the target file size, and commits the result with one manifest
//! record (add outputs, delete inputs) before installing the new version and deleting the inputs.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::compaction::filter::TreeFilters;
use crate::compaction::gc::{CompactionIterator, clip_tombstones};
use crate::compaction::picker::{self, CompactionTask, FileInfo, LevelsView, PickerOptions};
use crate::db::DbInner;
use crate::error::{Result, StorageError};
use crate::flush::SstOutput;
use crate::iter::InternalIterator;
use crate::manifest::{Edit, FileMeta};
use crate::memtable::split_internal;
use crate::merge::MergingIterator;
use crate::stats::Stats;
use crate::version::{SstFile, Version, sst_file_name};

/// Picker options from the engine options.
pub(crate) fn picker_options(db: &DbInner) -> PickerOptions {
    PickerOptions {
        l0_compaction_trigger: db.opts.l0_compaction_trigger,
        level1_target_bytes: db.opts.level1_target_bytes,
        level_size_multiplier: db.opts.level_size_multiplier,
        max_levels: db.opts.max_levels,
        tombstone_ratio_trigger: 0.5,
    }
}

/// The picker's view of a version.
pub(crate) fn levels_info(
    v: &Version,
    busy: &HashSet<u64>,
    max_levels: usize,
) -> Vec<Vec<FileInfo>> {
    let mut levels: Vec<Vec<FileInfo>> = v
        .levels
        .iter()
        .map(|l| {
            l.iter()
                .map(|f| FileInfo {
                    id: f.meta.id,
                    size: f.meta.size,
                    smallest_user_key: f.meta.smallest.clone(),
                    largest_user_key: f.meta.largest.clone(),
                    entries: f.meta.entries,
                    tombstones: f.meta.tombstones,
                    being_compacted: busy.contains(&f.meta.id),
                })
                .collect()
        })
        .collect();
    while levels.len() < max_levels {
        levels.push(Vec::new());
    }
    levels
}

/// Picks and runs one compaction. Returns whether one ran.
pub(crate) fn compact_once(db: &Arc<DbInner>) -> Result<bool> {
    let popts = picker_options(db);
    let (task, version) = {
        let mut busy = db.compacting.lock();
        let v = db.version.read().clone();
        let levels = levels_info(&v, &busy, popts.max_levels);
        let view = LevelsView { levels: &levels };
        db.stats.compaction_debt_bytes.store(
            picker::compaction_debt_bytes(&view, &popts),
            Ordering::Relaxed,
        );
        let Some(task) = picker::pick(&view, &popts) else {
            return Ok(false);
        };
        for id in task.inputs.iter().chain(task.overlapping.iter()) {
            busy.insert(*id);
        }
        (task, v)
    };
    let r = run_task(db, &task, &version);
    let mut busy = db.compacting.lock();
    for id in task.inputs.iter().chain(task.overlapping.iter()) {
        busy.remove(id);
    }
    r.map(|_| true)
}

fn find(v: &Version, level: usize, id: u64) -> Option<Arc<SstFile>> {
    v.levels
        .get(level)?
        .iter()
        .find(|f| f.meta.id == id)
        .cloned()
}

/// How one attempt at a compaction ended.
enum Attempt {
    /// The result is installed.
    Installed,
    /// A compaction filter removed values and a snapshot taken meanwhile could see them: the outputs
    /// were discarded (see [`crate::compaction::filter`]).
    SnapshotRace,
}

/// Runs `task`, consulting the installed compaction filters; redone without them in the rare case that a
/// snapshot taken while it ran could see a value a filter removed.
pub(crate) fn run_task(db: &Arc<DbInner>, task: &CompactionTask, v: &Version) -> Result<()> {
    if let Attempt::SnapshotRace = attempt(db, task, v, true)? {
        tracing::debug!(
            output_level = task.output_level,
            "snapshot taken during a filtered compaction; redoing it without filters"
        );
        attempt(db, task, v, false)?;
    }
    Ok(())
}

fn attempt(
    db: &Arc<DbInner>,
    task: &CompactionTask,
    v: &Version,
    use_filters: bool,
) -> Result<Attempt> {
    let mut inputs: Vec<Arc<SstFile>> = Vec::new();
    for id in &task.inputs {
        inputs.push(find(v, task.input_level, *id).ok_or_else(|| {
            StorageError::InvalidArgument(format!("compaction input {id} not in level"))
        })?);
    }
    let mut overlapping: Vec<Arc<SstFile>> = Vec::new();
    for id in &task.overlapping {
        overlapping.push(find(v, task.output_level, *id).ok_or_else(|| {
            StorageError::InvalidArgument(format!("compaction input {id} not in level"))
        })?);
    }
    if task.input_level == 0 {
        // Newest first, so the merge prefers newer data on ties.
        inputs.sort_by_key(|f| std::cmp::Reverse(f.meta.max_seqno));
    }
    let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
    let mut rts = Vec::new();
    let mut read_bytes = 0;
    for f in inputs.iter().chain(overlapping.iter()) {
        children.push(Box::new(f.reader.iter()));
        rts.extend(f.reader.range_tombstones().iter().cloned());
        read_bytes += f.meta.size;
    }
    let snapshots: Vec<u64> = db.snapshots.lock().keys().copied().collect();
    let merged = MergingIterator::new(children);
    let mut gc = CompactionIterator::new(merged, &snapshots, task.bottommost, rts);
    if use_filters && let Some(filters) = db.compaction_filters.current() {
        gc = gc.with_filter(Box::new(TreeFilters::new(
            db.clone(),
            filters,
            task.output_level,
        )));
    }
    let carried = gc.range_tombstones_to_keep();
    let target = db.opts.target_file_size_bytes;
    let mut outputs: Vec<FileMeta> = Vec::new();
    let mut out: Option<SstOutput> = None;
    // First user key of the current output (None for the first output): the clip bounds for tombstones.
    let mut out_lo: Option<Vec<u8>> = None;
    let mut last_user_key: Vec<u8> = Vec::new();
    let sst = |e| StorageError::from_sst(std::path::Path::new("<compaction>"), e);
    gc.seek_to_first().map_err(sst)?;
    while gc.valid() {
        let key = gc.key();
        let ukey = split_internal(key).0;
        // Split only between user keys, so every version of a key stays in one file.
        if out.as_ref().is_some_and(|o| {
            o.writer.estimated_size() >= target && ukey != last_user_key.as_slice()
        }) && let Some(mut o) = out.take()
        {
            for t in clip_tombstones(&carried, out_lo.as_deref(), Some(ukey)) {
                o.writer.add_range_tombstone(t).map_err(sst)?;
            }
            outputs.push(o.finish(db)?);
            out_lo = Some(ukey.to_vec());
        }
        if out.is_none() {
            out = Some(SstOutput::create(db)?);
        }
        if let Some(o) = &mut out {
            o.writer.add(key, gc.value()).map_err(sst)?;
        }
        last_user_key.clear();
        last_user_key.extend_from_slice(ukey);
        gc.next().map_err(sst)?;
    }
    if !carried.is_empty() && out.is_none() {
        out = Some(SstOutput::create(db)?);
    }
    if let Some(mut o) = out.take() {
        for t in clip_tombstones(&carried, out_lo.as_deref(), None) {
            o.writer.add_range_tombstone(t).map_err(sst)?;
        }
        outputs.push(o.finish(db)?);
    }
    db.fs
        .sync_dir(&db.dir)
        .map_err(|e| StorageError::io(format!("fsync directory {}", db.dir.display()), e))?;

    let mut edits = Vec::new();
    let mut written = 0;
    let mut opened = Vec::new();
    for m in &outputs {
        written += m.size;
        edits.push(Edit::AddFile {
            level: task.output_level as u32,
            meta: m.clone(),
        });
        opened.push(Arc::new(SstFile::open(
            db.fs.as_ref(),
            &db.dir,
            m.clone(),
            db.block_cache.clone(),
        )?));
    }
    for f in &inputs {
        edits.push(Edit::DeleteFile {
            level: task.input_level as u32,
            id: f.meta.id,
        });
    }
    for f in &overlapping {
        edits.push(Edit::DeleteFile {
            level: task.output_level as u32,
            id: f.meta.id,
        });
    }
    edits.push(Edit::NextFileId(db.next_file_id.load(Ordering::SeqCst)));
    let filter_removed = gc.stats().filter_removed;
    {
        let _g = db.version_lock.lock();
        // A snapshot taken since this compaction started may see a value a filter removed. Held until the
        // new version is installed, so no snapshot can be taken between this check and the install.
        let _snapshots = if filter_removed > 0 {
            let live = db.snapshots.lock();
            // `snapshots` came from the same ordered map, so it is sorted.
            if live.keys().any(|s| snapshots.binary_search(s).is_err()) {
                drop(live);
                drop(opened);
                for m in &outputs {
                    let _ = db.fs.remove_file(&db.dir.join(sst_file_name(m.id)));
                }
                return Ok(Attempt::SnapshotRace);
            }
            Some(live)
        } else {
            None
        };
        db.manifest.lock().log_and_apply(&edits)?;
        let cur = db.version.read().clone();
        let gone: HashSet<u64> = inputs
            .iter()
            .chain(overlapping.iter())
            .map(|f| f.meta.id)
            .collect();
        let mut levels: Vec<Vec<Arc<SstFile>>> = cur
            .levels
            .iter()
            .map(|l| {
                l.iter()
                    .filter(|f| !gone.contains(&f.meta.id))
                    .cloned()
                    .collect()
            })
            .collect();
        while levels.len() <= task.output_level {
            levels.push(Vec::new());
        }
        levels[task.output_level].extend(opened);
        levels[task.output_level].sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
        db.bump_install_gen();
        *db.version.write() = Arc::new(Version::new(levels));
    }
    for f in inputs.iter().chain(overlapping.iter()) {
        let _ = db.fs.remove_file(&db.dir.join(sst_file_name(f.meta.id)));
    }
    Stats::add(&db.stats.compactions, 1);
    Stats::add(&db.stats.compaction_bytes_read, read_bytes);
    Stats::add(&db.stats.compaction_bytes_written, written);
    Stats::add(&db.stats.compaction_filter_removed, filter_removed);
    Ok(Attempt::Installed)
}

/// The compaction thread: runs compactions while the picker finds work.
pub(crate) fn compaction_loop(db: Arc<DbInner>) {
    loop {
        {
            let mut bg = db.bg.lock();
            while !bg.shutdown && !bg.compaction_requested {
                db.bg_cv.wait_for(&mut bg, Duration::from_secs(1));
                if !bg.compaction_requested && !bg.shutdown {
                    // Periodic re-check: snapshots released may make tombstone compactions possible.
                    bg.compaction_requested = true;
                }
            }
            if bg.shutdown {
                return;
            }
            bg.compaction_requested = false;
        }
        loop {
            if db.is_poisoned() || db.bg.lock().shutdown {
                return;
            }
            match compact_once(&db) {
                Ok(true) => {
                    let mut bg = db.bg.lock();
                    bg.progress += 1;
                    db.bg_cv.notify_all();
                }
                Ok(false) => break,
                Err(e) => {
                    db.poison(&e);
                    let mut bg = db.bg.lock();
                    bg.progress += 1;
                    db.bg_cv.notify_all();
                    return;
                }
            }
        }
    }
}
