//! Versions: immutable sets of SSTs per level, swapped atomically when a flush or compaction commits.
//!
//! Readers clone the current `Arc<Version>` and keep reading it however long they need: files a newer
//! version dropped stay readable through their open handles (deleted files live on until closed on Unix).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::db::DbInner;
use crate::db_iter::SourceIter;
use crate::error::{IoContext, Result, StorageError};
use crate::fs::{FileSystem, ReadableFile};
use crate::iter::InternalIterator;
use crate::manifest::FileMeta;
use crate::memtable::split_internal;
use crate::sst::{BlockCache, RandomAccessFile, SstIterator, SstReader};

/// Name of SST `id`.
pub fn sst_file_name(id: u64) -> String {
    format!("{id:06}.sst")
}

/// Parses an SST file name.
pub fn parse_sst_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(".sst")?.parse().ok()
}

/// Adapts the engine's file layer to the SST reader's file trait.
pub(crate) struct FileAdapter(pub(crate) Arc<dyn ReadableFile>);

impl RandomAccessFile for FileAdapter {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
}

/// An open SST.
pub(crate) struct SstFile {
    pub(crate) meta: FileMeta,
    pub(crate) reader: SstReader,
}

impl SstFile {
    pub(crate) fn open(
        fs: &dyn FileSystem,
        dir: &Path,
        meta: FileMeta,
        cache: Option<Arc<dyn BlockCache>>,
    ) -> Result<Self> {
        let path = dir.join(sst_file_name(meta.id));
        let f = fs
            .open_read(&path)
            .ctx(|| format!("open SST {}", path.display()))?;
        let reader = SstReader::open(Arc::new(FileAdapter(f)), meta.id, cache)
            .map_err(|e| StorageError::from_sst(&path, e))?;
        Ok(SstFile { meta, reader })
    }

    fn covers(&self, ukey: &[u8]) -> bool {
        self.meta.smallest.as_slice() <= ukey && ukey <= self.meta.largest.as_slice()
    }
}

/// An immutable set of SSTs: `levels[0]` newest first (ranges may overlap), deeper levels sorted by key and
/// non-overlapping.
#[derive(Default)]
pub(crate) struct Version {
    pub(crate) levels: Vec<Vec<Arc<SstFile>>>,
    /// The largest seqno in any of the files.
    max_seqno: u64,
    /// Point reads of this version's files remembered (see [`RowCache`]).
    rows: RowCache,
}

/// Slots of a version's row cache (direct-mapped: a key's slot holds it or another key).
const ROW_SLOTS: usize = 4096;
/// Largest value the row cache keeps (a copy: a slice would pin its whole block).
const ROW_MAX_VALUE_BYTES: usize = 512;

/// What the files of one version answered to recent point reads of the newest data, by key: a hot record
/// that is not rewritten (a stream's header and its group under XACK, a counter's key after a flush) lives
/// in an SSTable, and each read of it cost a bloom probe per L0 file, a block cache lookup and a seek in
/// the block. The files of a version never change, so an answer stays right for as long as the version
/// lives; a flush or compaction installs a new version with an empty cache. Only reads at or above every
/// seqno in the files are answered or remembered: for them the answer does not depend on the read seqno.
/// RocksDB's `row_cache` does the same per file.
struct RowCache {
    slots: Box<[parking_lot::Mutex<Option<Row>>]>,
}

struct Row {
    key: Box<[u8]>,
    seqno: u64,
    kind: u8,
    value: Bytes,
    /// Highest seqno of the files' range tombstones covering the key (see [`note_rts`]).
    tombstone: u64,
}

impl Default for RowCache {
    fn default() -> Self {
        RowCache {
            slots: (0..ROW_SLOTS)
                .map(|_| parking_lot::Mutex::new(None))
                .collect(),
        }
    }
}

impl RowCache {
    fn slot(&self, ukey: &[u8]) -> &parking_lot::Mutex<Option<Row>> {
        // The memtable index's hash, over the tree-prefixed key.
        let h = crate::memtable::key_hash(0, ukey);
        &self.slots[h as usize % ROW_SLOTS]
    }

    fn get(&self, ukey: &[u8]) -> Option<(u64, u8, Bytes, u64)> {
        let slot = self.slot(ukey).lock();
        let row = slot.as_ref().filter(|r| &*r.key == ukey)?;
        Some((row.seqno, row.kind, row.value.clone(), row.tombstone))
    }

    fn insert(&self, ukey: &[u8], seqno: u64, kind: u8, value: &[u8], tombstone: u64) {
        if value.len() > ROW_MAX_VALUE_BYTES {
            return;
        }
        *self.slot(ukey).lock() = Some(Row {
            key: ukey.into(),
            seqno,
            kind,
            value: Bytes::copy_from_slice(value),
            tombstone,
        });
    }
}

impl Version {
    /// A version of `levels`, with an empty row cache.
    pub(crate) fn new(levels: Vec<Vec<Arc<SstFile>>>) -> Version {
        let max_seqno = levels
            .iter()
            .flatten()
            .map(|f| f.meta.max_seqno)
            .max()
            .unwrap_or(0);
        Version {
            levels,
            max_seqno,
            rows: RowCache::default(),
        }
    }

    /// Total bytes per level.
    pub(crate) fn level_bytes(&self) -> Vec<u64> {
        self.levels
            .iter()
            .map(|l| l.iter().map(|f| f.meta.size).sum())
            .collect()
    }

    /// Files per level.
    pub(crate) fn level_files(&self) -> Vec<u64> {
        self.levels.iter().map(|l| l.len() as u64).collect()
    }

    /// Every file.
    pub(crate) fn files(&self) -> impl Iterator<Item = (usize, &Arc<SstFile>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(l, fs)| fs.iter().map(move |f| (l, f)))
    }
}

/// The current version.
pub(crate) fn current(db: &DbInner) -> Arc<Version> {
    db.version.read().clone()
}

/// Adds the range tombstones of `v`'s files that touch keys starting with `prefix`.
/// Adds to `out` the SSTs' indexed range tombstones that overlap the prefixed key range from `lo` to `hi`.
pub(crate) fn range_runs(
    v: &Version,
    lo: &[u8],
    hi: std::ops::Bound<&[u8]>,
    out: &mut Vec<Arc<crate::range_index::FragRun>>,
) {
    for (_, f) in v.files() {
        if f.meta.tombstones == 0 || f.reader.range_tombstones().is_empty() {
            continue;
        }
        let run = f.reader.range_index();
        if run.overlaps(lo, hi) {
            out.push(run.clone());
        }
    }
}

struct SstSource {
    it: SstIterator,
    max_seqno: u64,
}

fn sst_err(e: crate::sst::SstError) -> StorageError {
    StorageError::from_sst(Path::new("<sst>"), e)
}

impl SourceIter for SstSource {
    fn valid(&self) -> bool {
        self.it.valid()
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        if target.is_empty() {
            self.it.seek_to_first().map_err(sst_err)
        } else {
            self.it.seek(target).map_err(sst_err)
        }
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        self.it.seek_for_prev(target).map_err(sst_err)
    }
    fn seek_to_last(&mut self) -> Result<()> {
        self.it.seek_to_last().map_err(sst_err)
    }
    fn next(&mut self) -> Result<()> {
        self.it.next().map_err(sst_err)
    }
    fn prev(&mut self) -> Result<()> {
        self.it.prev().map_err(sst_err)
    }
    fn key(&self) -> &[u8] {
        self.it.key()
    }
    fn value(&self) -> &[u8] {
        self.it.value()
    }
    fn max_seqno(&self) -> u64 {
        self.max_seqno
    }
}

/// Concatenates the sorted, non-overlapping files of one level, opening one file iterator at a time.
struct LevelSource {
    max_seqno: u64,
    files: Vec<Arc<SstFile>>,
    idx: usize,
    cur: Option<SstIterator>,
}

impl LevelSource {
    fn open(&mut self, idx: usize) {
        self.idx = idx;
        self.cur = self.files.get(idx).map(|f| f.reader.iter());
    }
    fn skip_forward(&mut self) -> Result<()> {
        while let Some(it) = &self.cur {
            if it.valid() {
                return Ok(());
            }
            let n = self.idx + 1;
            self.open(n);
            if let Some(it) = &mut self.cur {
                it.seek_to_first().map_err(sst_err)?;
            }
        }
        Ok(())
    }
    fn skip_backward(&mut self) -> Result<()> {
        while let Some(it) = &self.cur {
            if it.valid() {
                return Ok(());
            }
            if self.idx == 0 {
                self.cur = None;
                return Ok(());
            }
            let n = self.idx - 1;
            self.open(n);
            if let Some(it) = &mut self.cur {
                it.seek_to_last().map_err(sst_err)?;
            }
        }
        Ok(())
    }
}

impl SourceIter for LevelSource {
    fn valid(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| c.valid())
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let ukey = split_internal(target).0;
        let i = if target.is_empty() {
            0
        } else {
            self.files
                .partition_point(|f| f.meta.largest.as_slice() < ukey)
        };
        self.open(i);
        if let Some(it) = &mut self.cur {
            if target.is_empty() {
                it.seek_to_first().map_err(sst_err)?;
            } else {
                it.seek(target).map_err(sst_err)?;
            }
        }
        self.skip_forward()
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        let ukey = split_internal(target).0;
        let n = self
            .files
            .partition_point(|f| f.meta.smallest.as_slice() <= ukey);
        if n == 0 {
            self.cur = None;
            return Ok(());
        }
        self.open(n - 1);
        if let Some(it) = &mut self.cur {
            it.seek_for_prev(target).map_err(sst_err)?;
        }
        self.skip_backward()
    }
    fn seek_to_last(&mut self) -> Result<()> {
        if self.files.is_empty() {
            self.cur = None;
            return Ok(());
        }
        self.open(self.files.len() - 1);
        if let Some(it) = &mut self.cur {
            it.seek_to_last().map_err(sst_err)?;
        }
        self.skip_backward()
    }
    fn next(&mut self) -> Result<()> {
        if let Some(it) = &mut self.cur {
            it.next().map_err(sst_err)?;
        }
        self.skip_forward()
    }
    fn prev(&mut self) -> Result<()> {
        if let Some(it) = &mut self.cur {
            it.prev().map_err(sst_err)?;
        }
        self.skip_backward()
    }
    fn key(&self) -> &[u8] {
        self.cur.as_ref().map_or(&[], |c| c.key())
    }
    fn value(&self) -> &[u8] {
        self.cur.as_ref().map_or(&[], |c| c.value())
    }
    fn max_seqno(&self) -> u64 {
        self.max_seqno
    }
}

/// Adds an iterator per L0 file and one per deeper level.
pub(crate) fn sources(v: &Version, out: &mut Vec<Box<dyn SourceIter>>) {
    for (l, files) in v.levels.iter().enumerate() {
        if files.is_empty() {
            continue;
        }
        if l == 0 {
            for f in files {
                out.push(Box::new(SstSource {
                    it: f.reader.iter(),
                    max_seqno: f.meta.max_seqno,
                }));
            }
        } else {
            out.push(Box::new(LevelSource {
                max_seqno: files.iter().map(|f| f.meta.max_seqno).max().unwrap_or(0),
                files: files.clone(),
                idx: 0,
                cur: None,
            }));
        }
    }
}

fn note_rts(f: &SstFile, ukey: &[u8], read_seqno: u64, max_rt: &mut u64) {
    if f.meta.tombstones == 0 || f.reader.range_tombstones().is_empty() {
        return;
    }
    if let Some(seqno) = f.reader.range_index().max_covering(ukey, read_seqno) {
        *max_rt = (*max_rt).max(seqno);
    }
}

/// Looks `ukey` up in the SSTs of `v` (in directory `dir`), newest data first; updates `max_rt` with
/// covering range tombstones. `v` need not be the current version yet: recovery looks up the values WAL
/// patches apply to before the engine is up.
pub(crate) fn get(
    v: &Version,
    dir: &Path,
    ukey: &[u8],
    read_seqno: u64,
    max_rt: &mut u64,
) -> Result<Option<(u64, u8, Bytes)>> {
    let newest = read_seqno >= v.max_seqno;
    if newest && let Some((seq, kind, val, rt)) = v.rows.get(ukey) {
        *max_rt = (*max_rt).max(rt);
        return Ok(Some((seq, kind, val)));
    }
    let mut rt = 0;
    let found = files_get(v, dir, ukey, read_seqno, &mut rt)?;
    if newest && let Some((seq, kind, val)) = &found {
        v.rows.insert(ukey, *seq, *kind, val, rt);
    }
    *max_rt = (*max_rt).max(rt);
    Ok(found)
}

/// [`get`] from the files.
fn files_get(
    v: &Version,
    dir: &Path,
    ukey: &[u8],
    read_seqno: u64,
    max_rt: &mut u64,
) -> Result<Option<(u64, u8, Bytes)>> {
    for (l, files) in v.levels.iter().enumerate() {
        let candidates: &[Arc<SstFile>] = if l == 0 {
            files
        } else {
            // A clipped range tombstone's exclusive end may equal the next file's smallest key, so up to
            // two neighbouring files can cover `ukey`.
            let i = files.partition_point(|f| f.meta.largest.as_slice() < ukey);
            let mut j = i;
            while j < files.len() && j < i + 2 && files[j].meta.smallest.as_slice() <= ukey {
                j += 1;
            }
            &files[i..j]
        };
        for f in candidates {
            if !f.covers(ukey) {
                continue;
            }
            note_rts(f, ukey, read_seqno, max_rt);
            if !f.reader.may_contain(ukey) {
                continue;
            }
            let hit = f
                .reader
                .get(ukey, read_seqno)
                .map_err(|e| StorageError::from_sst(&dir.join(sst_file_name(f.meta.id)), e))?;
            if let Some((seq, kind, val)) = hit {
                return Ok(Some((seq, kind as u8, val)));
            }
        }
    }
    Ok(None)
}

/// Builds a version from manifest levels, opening every file.
pub(crate) fn open_version(
    fs: &dyn FileSystem,
    dir: &Path,
    levels: &[std::collections::BTreeMap<u64, FileMeta>],
    cache: Option<Arc<dyn BlockCache>>,
) -> Result<Version> {
    let mut v: Vec<Vec<Arc<SstFile>>> = Vec::new();
    for (l, files) in levels.iter().enumerate() {
        let mut opened = Vec::new();
        for meta in files.values() {
            opened.push(Arc::new(SstFile::open(
                fs,
                dir,
                meta.clone(),
                cache.clone(),
            )?));
        }
        if l == 0 {
            // Newest first: a flushed file's seqnos are all above those of older L0 files.
            opened.sort_by_key(|f| std::cmp::Reverse(f.meta.max_seqno));
        } else {
            opened.sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
        }
        v.push(opened);
    }
    Ok(Version::new(v))
}

/// Verifies every SST named by the manifest: opens it and checks every block checksum.
pub(crate) fn verify_ssts(
    fs: &dyn FileSystem,
    dir: &Path,
    state: &crate::manifest::ManifestState,
    report: &mut crate::check::CheckReport,
) -> Result<()> {
    for files in &state.levels {
        for meta in files.values() {
            let path = dir.join(sst_file_name(meta.id));
            let f = SstFile::open(fs, dir, meta.clone(), None)?;
            f.reader
                .verify()
                .map_err(|e| StorageError::from_sst(&path, e))?;
            report.sst_files += 1;
            report.sst_bytes += meta.size;
        }
    }
    Ok(())
}
