//! Named append-only logs stored as segment files, sharing the engine's WAL for atomicity.
//!
//! A log lives in `logs/<id>/` as segments named by their first offset (`{base:020}.seg`). Each entry:
//!
//! ```text
//! crc u32 (crc32c of the 12 bytes after it and the payload) | len u32 | offset u64 | payload
//! ```
//!
//! Appends are first committed in the WAL (with their offset), then written to the active segment without
//! fsync; before the WAL segments holding them are deleted, the log segments are fsynced, so the WAL always
//! covers whatever a crash may have torn. Recovery therefore truncates a torn tail of the newest segment and
//! replays the WAL, skipping entries already present (offset below the recovered tail).
//! `truncate_before(offset)` moves the head and deletes segments that hold only entries before it; the
//! head is durable through the WAL and then the manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use crate::error::{IoContext, Result, StorageError};
use crate::fs::{FileSystem, ReadableFile, WritableFile};

/// Bytes of an entry header.
pub const ENTRY_HEADER_BYTES: usize = 16;
/// One index point is kept per this many entries of a segment.
const INDEX_EVERY: u64 = 64;

/// (index points, entry count, valid length) of a scanned segment.
type Scan = (Vec<(u64, u64)>, u64, u64);
/// (reader, entry position, that entry's offset, segment base, segment length).
type Located = (Arc<dyn ReadableFile>, u64, u64, u64, u64);

fn segment_name(base: u64) -> String {
    format!("{base:020}.seg")
}

struct Segment {
    base: u64,
    path: PathBuf,
    reader: Option<Arc<dyn ReadableFile>>,
    /// (offset, file position) every INDEX_EVERY entries; built when the segment is scanned.
    index: Vec<(u64, u64)>,
    indexed: bool,
    len_bytes: u64,
}

pub(crate) struct LogState {
    pub(crate) head: u64,
    /// Next offset to be written (applied).
    pub(crate) next: u64,
    /// Next offset visible to readers (published after the commit group).
    pub(crate) visible_next: u64,
    segments: BTreeMap<u64, Segment>,
    active: Option<Arc<dyn WritableFile>>,
    /// Whether segments were written since the last sync.
    dirty: Vec<u64>,
    scratch: Vec<u8>,
}

/// The shared part of a log.
pub(crate) struct LogInner {
    pub(crate) id: u32,
    pub(crate) name: String,
    dir: PathBuf,
    fs: Arc<dyn FileSystem>,
    segment_bytes: u64,
    pub(crate) state: RwLock<LogState>,
}

pub(crate) fn encode_entry(out: &mut Vec<u8>, offset: u64, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Scans a segment's bytes: returns the index, the number of entries, and the valid length; damage that is
/// not a torn tail (or any damage when `allow_torn_tail` is false) is corruption.
fn scan_segment(path: &Path, base: u64, data: &[u8], allow_torn_tail: bool) -> Result<Scan> {
    let mut pos = 0usize;
    let mut expect = base;
    let mut index = Vec::new();
    while pos < data.len() {
        let rest = &data[pos..];
        let torn = |what: &str| -> Result<Scan> {
            Err(StorageError::corruption(path, pos as u64, what.to_string()))
        };
        if rest.len() < ENTRY_HEADER_BYTES {
            if allow_torn_tail {
                break;
            }
            return torn("incomplete log entry header");
        }
        let crc = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let mut o = [0u8; 8];
        o.copy_from_slice(&rest[8..16]);
        let offset = u64::from_le_bytes(o);
        let end = ENTRY_HEADER_BYTES.saturating_add(len);
        if end > rest.len() {
            if allow_torn_tail {
                break;
            }
            return torn("incomplete log entry");
        }
        if crc32c::crc32c(&rest[4..end]) != crc {
            if allow_torn_tail && (end == rest.len() || rest.iter().all(|b| *b == 0)) {
                break;
            }
            return torn("log entry checksum mismatch");
        }
        if offset != expect {
            return torn(&format!("log entry offset {offset}, expected {expect}"));
        }
        if (offset - base).is_multiple_of(INDEX_EVERY) {
            index.push((offset, pos as u64));
        }
        let Some(next) = expect.checked_add(1) else {
            return torn("log offset overflows");
        };
        expect = next;
        pos += end;
    }
    Ok((index, expect - base, pos as u64))
}

/// [`scan_segment`] for the fuzzing entry points: returns (entries, valid length).
pub(crate) fn fuzz_scan_segment(
    data: &[u8],
    base: u64,
    allow_torn_tail: bool,
) -> Result<(u64, u64)> {
    scan_segment(Path::new("fuzz.log"), base, data, allow_torn_tail).map(|(_, n, len)| (n, len))
}

impl LogInner {
    /// Opens (or creates) the log directory, recovering segments. `head` is the durable head.
    pub(crate) fn open(
        fs: Arc<dyn FileSystem>,
        root: &Path,
        id: u32,
        name: String,
        head: u64,
        segment_bytes: u64,
    ) -> Result<Self> {
        let dir = root.join(id.to_string());
        fs.create_dir_all(&dir)
            .ctx(|| format!("create log directory {}", dir.display()))?;
        let mut segments = BTreeMap::new();
        for n in fs
            .list_dir(&dir)
            .ctx(|| format!("list log directory {}", dir.display()))?
        {
            if let Some(base) = n.strip_suffix(".seg").and_then(|b| b.parse::<u64>().ok()) {
                segments.insert(
                    base,
                    Segment {
                        base,
                        path: dir.join(&n),
                        reader: None,
                        index: Vec::new(),
                        indexed: false,
                        len_bytes: 0,
                    },
                );
            }
        }
        let mut next = head;
        let mut active = None;
        if let Some((_, last)) = segments.iter_mut().next_back() {
            let data = fs
                .read_all(&last.path)
                .ctx(|| format!("read log segment {}", last.path.display()))?;
            let (index, count, valid) = scan_segment(&last.path, last.base, &data, true)?;
            if valid < data.len() as u64 {
                fs.truncate(&last.path, valid)
                    .ctx(|| format!("truncate torn tail of {}", last.path.display()))?;
            }
            last.index = index;
            last.indexed = true;
            last.len_bytes = valid;
            next = last.base + count;
            active = Some(
                fs.open_append(&last.path)
                    .ctx(|| format!("open log segment {}", last.path.display()))?,
            );
        }
        let first_base = segments.keys().next().copied().unwrap_or(next);
        let head = head.max(first_base).min(next);
        Ok(LogInner {
            id,
            name,
            dir,
            fs,
            segment_bytes,
            state: RwLock::new(LogState {
                head,
                next,
                visible_next: next,
                segments,
                active,
                dirty: Vec::new(),
                scratch: Vec::new(),
            }),
        })
    }

    /// Writes one committed entry (called by the commit leader and by WAL replay). Entries below the
    /// recovered tail are skipped, which makes replay idempotent.
    pub(crate) fn apply_append(&self, offset: u64, payload: &[u8]) -> Result<()> {
        let mut st = self.state.write();
        if offset < st.next {
            return Ok(());
        }
        if offset > st.next {
            return Err(StorageError::corruption(
                &self.dir,
                offset,
                format!(
                    "log {} append at offset {offset}, tail is {}",
                    self.name, st.next
                ),
            ));
        }
        let need_new = match st.segments.iter().next_back() {
            None => true,
            Some((_, s)) => s.len_bytes >= self.segment_bytes,
        } || st.active.is_none();
        if need_new {
            let path = self.dir.join(segment_name(offset));
            let f = self
                .fs
                .create(&path)
                .ctx(|| format!("create log segment {}", path.display()))?;
            st.active = Some(f);
            st.segments.insert(
                offset,
                Segment {
                    base: offset,
                    path,
                    reader: None,
                    index: Vec::new(),
                    indexed: true,
                    len_bytes: 0,
                },
            );
        }
        let mut buf = std::mem::take(&mut st.scratch);
        buf.clear();
        encode_entry(&mut buf, offset, payload);
        let r = match &st.active {
            Some(f) => f.append(&buf),
            None => Ok(()),
        };
        let (base, pos) = match st.segments.iter_mut().next_back() {
            Some((_, seg)) => {
                let pos = seg.len_bytes;
                seg.len_bytes += buf.len() as u64;
                if (offset - seg.base).is_multiple_of(INDEX_EVERY) {
                    seg.index.push((offset, pos));
                }
                (seg.base, pos)
            }
            None => (offset, 0),
        };
        st.scratch = buf;
        r.ctx(|| format!("write log {} segment {base} at {pos}", self.name))?;
        if st.dirty.last() != Some(&base) {
            st.dirty.push(base);
        }
        st.next = offset + 1;
        Ok(())
    }

    /// Moves the head to `before` (clamped to the tail) and deletes segments entirely before it.
    pub(crate) fn apply_truncate(&self, before: u64) -> Result<()> {
        let mut st = self.state.write();
        let head = before.min(st.next).max(st.head);
        st.head = head;
        let bases: Vec<u64> = st.segments.keys().copied().collect();
        for w in bases.windows(2) {
            let (base, next_base) = (w[0], w[1]);
            if next_base <= head
                && let Some(seg) = st.segments.remove(&base)
            {
                st.dirty.retain(|d| *d != base);
                self.fs
                    .remove_file(&seg.path)
                    .ctx(|| format!("remove log segment {}", seg.path.display()))?;
            }
        }
        Ok(())
    }

    /// Makes appended entries visible to readers.
    pub(crate) fn publish(&self) {
        let mut st = self.state.write();
        st.visible_next = st.next;
    }

    /// Fsyncs segments written since the last call (before the WAL covering them is deleted).
    #[allow(dead_code)] // used by flush once SSTs land
    pub(crate) fn sync(&self) -> Result<()> {
        let (dirty, active) = {
            let mut st = self.state.write();
            (std::mem::take(&mut st.dirty), st.active.clone())
        };
        let Some((&last, _)) = self.state.read().segments.iter().next_back() else {
            return Ok(());
        };
        for base in dirty {
            if base == last {
                if let Some(f) = &active {
                    f.sync_data()
                        .ctx(|| format!("fsync log {} segment {base}", self.name))?;
                }
            } else {
                // A truncate on the writing thread may delete this segment at any moment after `dirty`
                // was taken (an exists-then-open check raced with it and poisoned the engine): a segment
                // that is gone held only truncated entries, with nothing left to make durable.
                let path = self.dir.join(segment_name(base));
                match self.fs.open_append(&path) {
                    Ok(f) => f
                        .sync_data()
                        .ctx(|| format!("fsync log {} segment {base}", self.name))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).ctx(|| format!("fsync log {} segment {base}", self.name));
                    }
                }
            }
        }
        self.fs
            .sync_dir(&self.dir)
            .ctx(|| format!("fsync log directory {}", self.dir.display()))
    }

    /// Reads up to `max_entries` entries starting at `from`, stopping after `max_bytes` of payload (at least
    /// one entry is returned if any exists).
    pub(crate) fn read(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>> {
        let (head, visible) = {
            let st = self.state.read();
            (st.head, st.visible_next)
        };
        if from < head {
            return Err(StorageError::OffsetTruncated {
                log: self.name.clone(),
                offset: from,
                head,
            });
        }
        let mut out = Vec::new();
        let mut offset = from;
        let mut bytes = 0usize;
        while offset < visible && out.len() < max_entries && (bytes < max_bytes || out.is_empty()) {
            let (reader, mut pos, index_offset, seg_base, seg_len) = self.locate(offset)?;
            let mut cur = skip_to(index_offset, &mut pos, offset, &reader, &self.name)?;
            // Read entries sequentially within this segment, a chunk at a time; payloads are zero-copy
            // slices of the chunk.
            let mut chunk = Bytes::new();
            let mut chunk_pos = pos;
            while cur < visible
                && pos < seg_len
                && out.len() < max_entries
                && (bytes < max_bytes || out.is_empty())
            {
                let mut at = (pos - chunk_pos) as usize;
                if chunk.len() < at + ENTRY_HEADER_BYTES {
                    chunk = read_chunk(
                        &reader,
                        pos,
                        READ_CHUNK_BYTES.min(seg_len - pos),
                        &self.name,
                    )?;
                    chunk_pos = pos;
                    at = 0;
                    if chunk.len() < ENTRY_HEADER_BYTES {
                        break;
                    }
                }
                let h = &chunk[at..at + ENTRY_HEADER_BYTES];
                let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
                if chunk.len() < at + ENTRY_HEADER_BYTES + len {
                    let want = (READ_CHUNK_BYTES as usize).max(ENTRY_HEADER_BYTES + len) as u64;
                    chunk = read_chunk(&reader, pos, want.min(seg_len - pos), &self.name)?;
                    chunk_pos = pos;
                    at = 0;
                    if chunk.len() < ENTRY_HEADER_BYTES + len {
                        return Err(StorageError::corruption(
                            self.dir.join(segment_name(seg_base)),
                            pos,
                            "log entry extends past the end of its segment",
                        ));
                    }
                }
                let h = &chunk[at..at + ENTRY_HEADER_BYTES];
                let crc = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                let mut o = [0u8; 8];
                o.copy_from_slice(&h[8..16]);
                let body = &chunk[at + 4..at + ENTRY_HEADER_BYTES + len];
                if crc32c::crc32c(body) != crc || u64::from_le_bytes(o) != cur {
                    return Err(StorageError::corruption(
                        self.dir.join(segment_name(seg_base)),
                        pos,
                        "log entry checksum or offset mismatch",
                    ));
                }
                bytes += len;
                let start = at + ENTRY_HEADER_BYTES;
                out.push((cur, chunk.slice(start..start + len)));
                pos += (ENTRY_HEADER_BYTES + len) as u64;
                cur += 1;
            }
            if cur == offset {
                break;
            }
            offset = cur;
        }
        Ok(out)
    }

    /// Finds the segment holding `offset`: (reader, position of an entry at or before it, that entry's
    /// offset, segment base, segment length).
    fn locate(&self, offset: u64) -> Result<Located> {
        {
            let st = self.state.read();
            if let Some((_, seg)) = st.segments.range(..=offset).next_back()
                && seg.indexed
                && let Some(r) = &seg.reader
            {
                let (at, pos) = index_lookup(&seg.index, seg.base, offset);
                return Ok((r.clone(), pos, at, seg.base, seg.len_bytes));
            }
        }
        let mut st = self.state.write();
        let Some((_, seg)) = st.segments.range_mut(..=offset).next_back() else {
            return Err(StorageError::OffsetTruncated {
                log: self.name.clone(),
                offset,
                head: offset,
            });
        };
        if !seg.indexed {
            let data = self
                .fs
                .read_all(&seg.path)
                .ctx(|| format!("read log segment {}", seg.path.display()))?;
            let (index, _, valid) = scan_segment(&seg.path, seg.base, &data, false)?;
            seg.index = index;
            seg.len_bytes = valid;
            seg.indexed = true;
        }
        if seg.reader.is_none() {
            seg.reader = Some(
                self.fs
                    .open_read(&seg.path)
                    .ctx(|| format!("open log segment {}", seg.path.display()))?,
            );
        }
        let (at, pos) = index_lookup(&seg.index, seg.base, offset);
        let r = seg.reader.clone().ok_or(StorageError::Closed)?;
        Ok((r, pos, at, seg.base, seg.len_bytes))
    }

    /// Deletes the log's files.
    pub(crate) fn head_tail(&self) -> (u64, u64) {
        let st = self.state.read();
        (st.head, st.visible_next)
    }

    /// Verifies every entry checksum of every segment (offline check).
    #[allow(dead_code)] // used by check.rs
    pub(crate) fn verify(&self) -> Result<u64> {
        let st = self.state.read();
        let mut n = 0;
        for seg in st.segments.values() {
            let data = self
                .fs
                .read_all(&seg.path)
                .ctx(|| format!("read log segment {}", seg.path.display()))?;
            n += scan_segment(&seg.path, seg.base, &data, false)?.1;
        }
        Ok(n)
    }
}

/// Verifies every entry of one segment file; returns the number of entries and the bytes of a torn tail
/// (only tolerated when `allow_torn_tail`). Used by the offline check.
pub(crate) fn verify_segment_file(
    fs: &dyn FileSystem,
    path: &Path,
    base: u64,
    allow_torn_tail: bool,
) -> Result<(u64, u64)> {
    let data = fs
        .read_all(path)
        .ctx(|| format!("read log segment {}", path.display()))?;
    let (_, count, valid) = scan_segment(path, base, &data, allow_torn_tail)?;
    Ok((count, data.len() as u64 - valid))
}

/// Bytes read per I/O when scanning a log segment.
const READ_CHUNK_BYTES: u64 = 64 << 10;

fn read_chunk(reader: &Arc<dyn ReadableFile>, pos: u64, len: u64, name: &str) -> Result<Bytes> {
    let mut buf = vec![0u8; len as usize];
    reader
        .read_exact_at(&mut buf, pos)
        .ctx(|| format!("read log {name} at {pos}"))?;
    Ok(Bytes::from(buf))
}

fn index_lookup(index: &[(u64, u64)], base: u64, offset: u64) -> (u64, u64) {
    match index.binary_search_by(|(o, _)| o.cmp(&offset)) {
        Ok(i) => index[i],
        Err(0) => (base, 0),
        Err(i) => index[i - 1],
    }
}

/// Skips entries from position `pos` (entry `at`) to `offset`; returns `offset` with `pos` at its entry.
fn skip_to(
    mut at: u64,
    pos: &mut u64,
    offset: u64,
    reader: &Arc<dyn ReadableFile>,
    name: &str,
) -> Result<u64> {
    while at < offset {
        let mut h = [0u8; ENTRY_HEADER_BYTES];
        reader
            .read_exact_at(&mut h, *pos)
            .ctx(|| format!("read log {name} at {pos}"))?;
        let len = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
        *pos += ENTRY_HEADER_BYTES as u64 + len;
        at += 1;
    }
    Ok(at)
}

/// Most entries one [`Log::read`] returns.
pub const MAX_READ_ENTRIES: usize = 65_536;

/// A named append-only log. Cheap to clone.
#[derive(Clone)]
pub struct Log {
    db: crate::db::Db,
    inner: Arc<LogInner>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("name", &self.inner.name)
            .field("id", &self.inner.id)
            .finish()
    }
}

impl Log {
    pub(crate) fn new(db: crate::db::Db, inner: Arc<LogInner>) -> Self {
        Log { db, inner }
    }

    pub(crate) fn id(&self) -> u32 {
        self.inner.id
    }

    /// The log's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn check(&self, payload: &[u8]) -> Result<()> {
        self.db.inner.check_value_len("log entry", payload.len())
    }

    /// Appends one entry; returns its offset.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        self.check(payload)?;
        let mut b = crate::batch::WriteBatch::new();
        b.log_append_raw(self.inner.id, payload);
        let info = self.db.write(&b)?;
        info.log_offsets
            .first()
            .copied()
            .ok_or(StorageError::Closed)
    }

    /// Appends several entries atomically; returns the offset of the first (they are consecutive).
    pub fn append_batch<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<u64> {
        let mut b = crate::batch::WriteBatch::new();
        for p in payloads {
            self.check(p.as_ref())?;
            b.log_append_raw(self.inner.id, p.as_ref());
        }
        let info = self.db.write(&b)?;
        Ok(info
            .log_offsets
            .first()
            .copied()
            .unwrap_or_else(|| self.tail()))
    }

    /// Reads up to `max_entries` (capped at [`MAX_READ_ENTRIES`]) committed entries from `from`, stopping
    /// once `max_bytes` of payload were read (at least one entry is returned when one exists). Reading at
    /// the tail returns nothing; reading before the head is [`StorageError::OffsetTruncated`].
    pub fn read(
        &self,
        from: u64,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>> {
        self.inner
            .read(from, max_entries.min(MAX_READ_ENTRIES), max_bytes)
    }

    /// Drops entries before `offset` (clamped to the tail); whole segments below it are deleted.
    pub fn truncate_before(&self, offset: u64) -> Result<()> {
        let mut b = crate::batch::WriteBatch::new();
        b.log_truncate_raw(self.inner.id, offset);
        self.db.write(&b)?;
        Ok(())
    }

    /// First retained offset.
    pub fn head(&self) -> u64 {
        self.inner.head_tail().0
    }

    /// Offset the next append gets (one past the last committed entry).
    pub fn tail(&self) -> u64 {
        self.inner.head_tail().1
    }

    /// Number of retained entries.
    pub fn len(&self) -> u64 {
        let (h, t) = self.inner.head_tail();
        t - h
    }

    /// Whether no entries are retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OsFs;
    use std::io;

    /// The real file system, except that one file vanishes as it is opened for appending: a truncate on
    /// the writing thread deleting a segment just before the flush thread's sync opens it.
    #[derive(Debug, Default)]
    struct VanishingFs {
        doomed: parking_lot::Mutex<Option<PathBuf>>,
    }

    impl FileSystem for VanishingFs {
        fn create(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
            OsFs.create(path)
        }
        fn open_append(&self, path: &Path) -> io::Result<Arc<dyn WritableFile>> {
            if self.doomed.lock().as_deref() == Some(path) {
                std::fs::remove_file(path)?;
            }
            OsFs.open_append(path)
        }
        fn open_read(&self, path: &Path) -> io::Result<Arc<dyn ReadableFile>> {
            OsFs.open_read(path)
        }
        fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
            OsFs.read_all(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            OsFs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            OsFs.remove_file(path)
        }
        fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
            OsFs.remove_dir_all(path)
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            OsFs.create_dir_all(path)
        }
        fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
            OsFs.list_dir(path)
        }
        fn sync_dir(&self, path: &Path) -> io::Result<()> {
            OsFs.sync_dir(path)
        }
        fn truncate(&self, path: &Path, len_bytes: u64) -> io::Result<()> {
            OsFs.truncate(path, len_bytes)
        }
        fn exists(&self, path: &Path) -> bool {
            OsFs.exists(path)
        }
        fn file_size(&self, path: &Path) -> io::Result<u64> {
            OsFs.file_size(path)
        }
    }

    #[test]
    fn sync_skips_a_segment_deleted_after_it_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(VanishingFs::default());
        let log = LogInner::open(fs.clone(), dir.path(), 1, "q".into(), 0, 64).unwrap();
        for offset in 0..8 {
            log.apply_append(offset, &[7u8; 40]).unwrap();
        }
        let first = log.state.read().segments.keys().next().copied().unwrap();
        assert!(
            log.state.read().segments.len() > 2,
            "several segments written"
        );
        *fs.doomed.lock() = Some(dir.path().join("1").join(segment_name(first)));
        // The model test met this as `fsync log q segment 0: No such file or directory`, poisoning the
        // engine; the segment's entries were truncated, so there is nothing to sync.
        log.sync().unwrap();
        assert!(!dir.path().join("1").join(segment_name(first)).exists());
    }
}
