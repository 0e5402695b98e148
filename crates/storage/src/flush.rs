//! Background flush: frozen memtables become L0 SSTs, oldest first, and the WAL segments they covered are
//! deleted once the manifest records the new file.
//!
//! Order of a flush, each step durable before the next: write `{id}.sst.tmp`, fsync, rename to `{id}.sst`,
//! fsync the directory; fsync every log segment written since the last flush; append one manifest record
//! {add file, flushed seqno, WAL boundary, log heads}; install the new version and drop the memtable;
//! delete WAL segments below the boundary. A crash anywhere leaves either the old state (the WAL still has
//! everything; an orphan SST is deleted on open) or the new one.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::compaction::gc::CompactionIterator;
use crate::db::{DbInner, MemSet};
use crate::error::{IoContext, Result, StorageError};
use crate::fs::{FileSystem, WritableFile};
use crate::manifest::{Edit, FileMeta};
use crate::memtable::VALUE_CHUNK_BYTES;
use crate::memtable::{Leftovers, MemIter, MemTable};
use crate::options::BackgroundPriority;
use crate::options::BlockCompression;
use crate::sst::{Compression, RangeTombstone, SstMeta, SstOptions, SstWriter};
use crate::stats::Stats;
use crate::version::{SstFile, Version, sst_file_name};
use crate::wal;

/// Buffered `io::Write` over the engine's file layer.
pub(crate) struct FileWriter {
    file: Arc<dyn WritableFile>,
    buf: Vec<u8>,
    pub(crate) written: u64,
}

const WRITE_BUFFER_BYTES: usize = 256 << 10;

impl FileWriter {
    pub(crate) fn new(file: Arc<dyn WritableFile>) -> Self {
        FileWriter {
            file,
            buf: Vec::with_capacity(WRITE_BUFFER_BYTES),
            written: 0,
        }
    }
    /// Flushes buffered bytes and fsyncs.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }
}

impl Write for FileWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buf.len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.append(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// SST writer options from the engine options.
pub(crate) fn sst_options(db: &DbInner) -> SstOptions {
    SstOptions {
        block_size_bytes: db.opts.block_size_bytes,
        restart_interval: 16,
        bloom_bits_per_key: db.opts.bloom_bits_per_key,
        compression: match db.opts.compression {
            BlockCompression::None => Compression::None,
            BlockCompression::Lz4 => Compression::Lz4,
        },
    }
}

/// Manifest metadata from an SST's own metadata.
pub(crate) fn file_meta(id: u64, m: &SstMeta) -> FileMeta {
    FileMeta {
        id,
        size: m.file_size,
        smallest: m.smallest_user_key.clone(),
        largest: m.largest_user_key.clone(),
        min_seqno: m.min_seqno,
        max_seqno: m.max_seqno,
        entries: m.entries,
        tombstones: m.point_tombstones + m.range_tombstones,
    }
}

/// A started SST output: `{id}.sst.tmp` until [`SstOutput::finish`].
pub(crate) struct SstOutput {
    pub(crate) id: u64,
    pub(crate) writer: SstWriter<FileWriter>,
}

impl SstOutput {
    pub(crate) fn create(db: &DbInner) -> Result<Self> {
        let id = db.next_file_id.fetch_add(1, Ordering::SeqCst);
        let tmp = db.dir.join(format!("{}.tmp", sst_file_name(id)));
        let f = db
            .fs
            .create(&tmp)
            .ctx(|| format!("create SST {}", tmp.display()))?;
        Ok(SstOutput {
            id,
            writer: SstWriter::new(FileWriter::new(f), sst_options(db)),
        })
    }

    /// Finishes, fsyncs and renames the file into place; returns its metadata.
    pub(crate) fn finish(self, db: &DbInner) -> Result<FileMeta> {
        let tmp = db.dir.join(format!("{}.tmp", sst_file_name(self.id)));
        let path = db.dir.join(sst_file_name(self.id));
        let (mut w, meta) = self
            .writer
            .finish()
            .map_err(|e| StorageError::from_sst(&tmp, e))?;
        w.sync().ctx(|| format!("fsync SST {}", tmp.display()))?;
        db.fs
            .rename(&tmp, &path)
            .ctx(|| format!("rename {} into place", tmp.display()))?;
        Ok(file_meta(self.id, &meta))
    }
}

/// Writes a memtable to a new L0 SST; `None` if it holds nothing.
///
/// The entries go through the compaction garbage collector (not bottommost, so point tombstones stay):
/// per user key only the newest version of each snapshot stripe survives, and versions covered by a range
/// tombstone of their stripe are dropped, so overwrites and queue-like put/delete pairs that met in the
/// memtable are not written out twice. Every seqno in a frozen memtable is already published, so a
/// snapshot taken after `snapshots` is read sees only the newest versions, which are kept.
fn write_memtable(db: &DbInner, mem: &Arc<MemTable>) -> Result<Option<FileMeta>> {
    if mem.is_empty() {
        return Ok(None);
    }
    let sst = |e| StorageError::from_sst(Path::new("<flush>"), e);
    let mut out = SstOutput::create(db)?;
    out.writer.expect_keys(mem.distinct_keys());
    let snapshots: Vec<u64> = db.snapshots.lock().keys().copied().collect();
    let rts: Vec<RangeTombstone> = mem
        .range_tombstones()
        .into_iter()
        .map(|t| RangeTombstone {
            start: t.start.to_vec(),
            end: t.end.to_vec(),
            seqno: t.seqno,
        })
        .collect();
    mem.order_for_flush();
    // With no snapshot open the collector keeps only each key's newest version: show it nothing else.
    let source = if snapshots.is_empty() {
        MemIter::newest_only(mem.clone())
    } else {
        MemIter::new(mem.clone())
    };
    let mut gc = CompactionIterator::new(source, &snapshots, false, rts);
    let carried = gc.range_tombstones_to_keep();
    gc.seek_to_first().map_err(sst)?;
    while gc.valid() {
        out.writer.add(gc.key(), gc.value()).map_err(sst)?;
        gc.next().map_err(sst)?;
    }
    for t in carried {
        // A WAL written before batches dropped empty ranges may still carry one: it deletes nothing.
        if t.start >= t.end {
            continue;
        }
        out.writer.add_range_tombstone(t).map_err(sst)?;
    }
    let meta = out.finish(db)?;
    Ok(Some(meta))
}

/// Flushes the oldest frozen memtable. Returns it (the caller frees it after waking waiters: dropping a
/// large skiplist takes a while), or `None` if there was none.
pub(crate) fn flush_one(db: &Arc<DbInner>) -> Result<Option<Arc<MemTable>>> {
    let Some(mem) = db.mems.read().imms.last().cloned() else {
        return Ok(None);
    };
    let meta = write_memtable(db, &mem)?;
    db.fs
        .sync_dir(&db.dir)
        .ctx(|| format!("fsync directory {}", db.dir.display()))?;
    for log in db.all_logs() {
        log.sync()?;
    }
    let _flush_guard = db.version_lock.lock();
    let file = match &meta {
        Some(m) => Some(Arc::new(SstFile::open(
            db.fs.as_ref(),
            &db.dir,
            m.clone(),
            db.block_cache.clone(),
        )?)),
        None => None,
    };
    // The WAL boundary: the oldest WAL still holding unflushed data.
    let wal_min = {
        let mems = db.mems.read();
        let n = mems.imms.len();
        if n >= 2 {
            mems.imms[n - 2].wal_id
        } else {
            mems.active.wal_id
        }
    };
    let mut edits = Vec::new();
    if let Some(m) = &meta {
        edits.push(Edit::AddFile {
            level: 0,
            meta: m.clone(),
        });
        Stats::add(&db.stats.flush_bytes_written, m.size);
    }
    edits.push(Edit::FlushedSeqno(mem.max_seqno()));
    edits.push(Edit::WalMin(wal_min));
    edits.push(Edit::NextFileId(db.next_file_id.load(Ordering::SeqCst)));
    for log in db.all_logs() {
        edits.push(Edit::LogHead {
            id: log.id,
            head: log.head_tail().0,
        });
    }
    db.manifest.lock().log_and_apply(&edits)?;
    // Readers at the latest seqno retry if they straddle this install (see `DbInner::read_view`): the
    // flushed SST lacks versions the memtable had.
    db.bump_install_gen();
    if let Some(f) = file {
        let mut v = db.version.write();
        let mut levels = v.levels.clone();
        if levels.is_empty() {
            levels.push(Vec::new());
        }
        levels[0].insert(0, f);
        *v = Arc::new(Version::new(levels));
    }
    {
        let mut m = db.mems.write();
        let mut imms = m.imms.clone();
        imms.pop();
        *m = Arc::new(MemSet {
            active: m.active.clone(),
            imms,
        });
    }
    drop(_flush_guard);
    // Older WAL segments are now covered by SSTs, log segments and the manifest.
    if let Ok(names) = db.fs.list_dir(&db.dir) {
        for n in names {
            if let Some(id) = wal::parse_wal_file_name(&n)
                && id < wal_min
            {
                let _ = db.fs.remove_file(&db.dir.join(&n));
            }
        }
    }
    Stats::add(&db.stats.flushes, 1);
    Ok(Some(mem))
}

/// Number of L0 files.
pub(crate) fn l0_files(db: &DbInner) -> usize {
    db.version.read().levels.first().map_or(0, Vec::len)
}

fn flush_loop(db: Arc<DbInner>) {
    let mut releasing: Vec<Arc<MemTable>> = Vec::new();
    // What released memtables left (value chunks, index tables), for the next spare memtable.
    let mut leftovers = Leftovers::default();
    loop {
        release_unshared(&mut releasing, &mut leftovers);
        {
            let mut bg = db.bg.lock();
            while !bg.shutdown && !bg.flush_requested && db.mems.read().imms.is_empty() {
                db.bg_cv.wait_for(&mut bg, Duration::from_secs(1));
            }
            if bg.shutdown && db.mems.read().imms.is_empty() {
                return;
            }
            bg.flush_requested = false;
        }
        if db.is_poisoned() {
            return;
        }
        // A switch just took the spare: the next one is built first, so it is ready even if the next
        // switch comes before this flush ends.
        prepare_spare(&db, &mut leftovers);
        loop {
            match flush_one(&db) {
                Ok(Some(flushed)) => {
                    let mut bg = db.bg.lock();
                    bg.progress += 1;
                    bg.compaction_requested = true;
                    db.bg_cv.notify_all();
                    drop(bg);
                    releasing.push(flushed);
                    release_unshared(&mut releasing, &mut leftovers);
                    prepare_spare(&db, &mut leftovers);
                }
                Ok(None) => break,
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

/// Builds the memtable the next switch takes, unless one is waiting, sized for as many keys as the newest
/// frozen one has, on `leftovers`' index tables when they fit; then hands it the leftover value chunks.
/// Built here rather than by the commit leader at the switch (sizing its index for a million keys took
/// 2-13 ms of every writer, and ~40 ms on fresh pages), and outside the lock: the leader takes the spare
/// under it.
fn prepare_spare(db: &DbInner, leftovers: &mut Leftovers) {
    if db.spare_memtable.lock().is_none() {
        let keys = db
            .mems
            .read()
            .imms
            .first()
            .map(|m| db.next_memtable_keys(m));
        if let Some(keys) = keys {
            let fresh = MemTable::with_leftovers(0, keys, leftovers);
            fresh.reserve_keys_for(db.opts.memtable_size_bytes);
            db.spare_memtable.lock().get_or_insert(fresh);
        }
    }
    // At most one memtable's worth waits in the spare.
    if let Some(spare) = db.spare_memtable.lock().as_ref() {
        let max = db.opts.memtable_size_bytes / VALUE_CHUNK_BYTES + 1;
        spare.give_chunks(leftovers.take_chunks(), max);
    }
}

/// Releases the flushed memtables no reader holds any more into `leftovers`, here on the flush thread: had
/// a reader (a point read, an iterator) the last reference, freeing a memtable of a million keys —
/// milliseconds — would fall on a thread serving requests. One still held waits for a later flush; past
/// two waiting, the oldest is left to its readers (a long scan must not keep memtables alive).
fn release_unshared(releasing: &mut Vec<Arc<MemTable>>, leftovers: &mut Leftovers) {
    // Nothing else can take a new reference to one: only this list holds it besides its readers.
    let mut held = Vec::with_capacity(releasing.len());
    for mem in releasing.drain(..) {
        match Arc::try_unwrap(mem) {
            Ok(mem) => mem.release(leftovers),
            Err(mem) => held.push(mem),
        }
    }
    *releasing = held;
    while releasing.len() > 2 {
        drop(releasing.remove(0));
    }
}

/// Schedules the calling thread as a background thread at `priority` (see [`BackgroundPriority`]): on
/// Linux `SCHED_IDLE`, or nice 10 (`setpriority(PRIO_PROCESS, 0, ..)` changes only the calling
/// thread). A policy the system refuses falls back to nice 10, and failing that the thread keeps the
/// normal priority, which is harmless. Public so the layers above put their own background threads
/// (strata-kv's active expiry) at the engine's priority.
pub fn background_priority(priority: BackgroundPriority) {
    if priority == BackgroundPriority::Idle && set_idle_policy() {
        return;
    }
    let _ = rustix::process::setpriority_process(None, 10);
}

/// Puts the calling thread under `SCHED_IDLE`; whether that worked.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_idle_policy() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` reads the parameter struct, which lives across the call; pid 0 is the
    // calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn set_idle_policy() -> bool {
    false
}

/// Starts the flush and compaction threads.
pub(crate) fn spawn_background(db: &Arc<DbInner>) -> Result<Vec<JoinHandle<()>>> {
    let mut v = Vec::new();
    let d = db.clone();
    v.push(
        std::thread::Builder::new()
            .name("strata-flush".into())
            .spawn(move || {
                background_priority(d.opts.background_priority);
                flush_loop(d)
            })
            .ctx(|| "spawn flush thread".to_string())?,
    );
    if db.opts.background_compaction {
        let d = db.clone();
        v.push(
            std::thread::Builder::new()
                .name("strata-compact".into())
                .spawn(move || {
                    background_priority(d.opts.background_priority);
                    crate::compaction::job::compaction_loop(d)
                })
                .ctx(|| "spawn compaction thread".to_string())?,
        );
    }
    Ok(v)
}

/// Deletes SST files the manifest does not reference (left by a crash mid-flush or mid-compaction).
pub(crate) fn remove_orphans(
    fs: &dyn FileSystem,
    dir: &Path,
    live: &std::collections::HashSet<u64>,
) -> Result<()> {
    for n in fs.list_dir(dir).ctx(|| format!("list {}", dir.display()))? {
        let orphan = if let Some(stem) = n.strip_suffix(".sst.tmp") {
            stem.parse::<u64>().is_ok()
        } else if let Some(id) = crate::version::parse_sst_file_name(&n) {
            !live.contains(&id)
        } else {
            false
        };
        if orphan {
            let _ = fs.remove_file(&dir.join(&n));
        }
    }
    Ok(())
}
