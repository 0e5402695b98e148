//! The manifest: an append-only, checksummed record of version edits, found through `CURRENT`.
//!
//! Each record is one WAL-style frame (see `wal.rs`, seqno field unused) whose payload is a list of
//! [`Edit`]s applied atomically: a flush adds a file and moves the WAL boundary in one record, a compaction
//! adds outputs and deletes inputs in one record. `CURRENT` holds the name of the live manifest; it is
//! replaced by writing `CURRENT.tmp`, fsyncing it and renaming it over `CURRENT` (then fsyncing the
//! directory), so a crash leaves either the old or the new manifest live, never neither. On every open the
//! engine writes a fresh manifest holding a snapshot of the state, which keeps manifests short.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::put_varint;
use crate::error::{IoContext, Result, StorageError};
use crate::fs::{FileSystem, WritableFile};
use crate::wal;

/// Metadata of one SST file as recorded in the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// File id (`{id:06}.sst`).
    pub id: u64,
    /// Size in bytes.
    pub size: u64,
    /// Smallest prefixed user key (including range tombstone bounds).
    pub smallest: Vec<u8>,
    /// Largest prefixed user key.
    pub largest: Vec<u8>,
    /// Smallest seqno in the file.
    pub min_seqno: u64,
    /// Largest seqno in the file.
    pub max_seqno: u64,
    /// Number of point entries.
    pub entries: u64,
    /// Point plus range tombstones.
    pub tombstones: u64,
}

/// One change to the engine's durable state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// A tree was created.
    CreateTree {
        /// Tree id.
        id: u32,
        /// Tree name.
        name: String,
    },
    /// A log was created.
    CreateLog {
        /// Log id.
        id: u32,
        /// Log name.
        name: String,
    },
    /// A log's head moved (entries before it are gone).
    LogHead {
        /// Log id.
        id: u32,
        /// First retained offset.
        head: u64,
    },
    /// WAL segments with smaller ids are no longer needed.
    WalMin(u64),
    /// Next file id to allocate.
    NextFileId(u64),
    /// Every seqno up to this one is in SSTs (or was never used).
    FlushedSeqno(u64),
    /// An SST joined a level.
    AddFile {
        /// Level.
        level: u32,
        /// The file.
        meta: FileMeta,
    },
    /// An SST left a level.
    DeleteFile {
        /// Level.
        level: u32,
        /// File id.
        id: u64,
    },
}

/// The state the manifest describes.
#[derive(Clone, Debug, Default)]
pub struct ManifestState {
    /// Trees by id.
    pub trees: BTreeMap<u32, String>,
    /// Logs by id.
    pub logs: BTreeMap<u32, String>,
    /// Durable log heads.
    pub log_heads: BTreeMap<u32, u64>,
    /// Oldest WAL segment still needed.
    pub wal_min: u64,
    /// Next file id.
    pub next_file_id: u64,
    /// Highest seqno contained in SSTs.
    pub flushed_seqno: u64,
    /// SSTs per level (by id).
    pub levels: Vec<BTreeMap<u64, FileMeta>>,
}

impl ManifestState {
    /// Applies one edit.
    pub fn apply(&mut self, e: &Edit) {
        match e {
            Edit::CreateTree { id, name } => {
                self.trees.insert(*id, name.clone());
            }
            Edit::CreateLog { id, name } => {
                self.logs.insert(*id, name.clone());
            }
            Edit::LogHead { id, head } => {
                let h = self.log_heads.entry(*id).or_insert(0);
                *h = (*h).max(*head);
            }
            Edit::WalMin(w) => self.wal_min = self.wal_min.max(*w),
            Edit::NextFileId(n) => self.next_file_id = self.next_file_id.max(*n),
            Edit::FlushedSeqno(s) => self.flushed_seqno = self.flushed_seqno.max(*s),
            Edit::AddFile { level, meta } => {
                let l = *level as usize;
                if self.levels.len() <= l {
                    self.levels.resize_with(l + 1, BTreeMap::new);
                }
                self.next_file_id = self.next_file_id.max(meta.id.saturating_add(1));
                self.levels[l].insert(meta.id, meta.clone());
            }
            Edit::DeleteFile { level, id } => {
                if let Some(l) = self.levels.get_mut(*level as usize) {
                    l.remove(id);
                }
            }
        }
    }

    /// Edits that recreate this state from nothing.
    pub fn snapshot_edits(&self) -> Vec<Edit> {
        let mut v = Vec::new();
        for (id, name) in &self.trees {
            v.push(Edit::CreateTree {
                id: *id,
                name: name.clone(),
            });
        }
        for (id, name) in &self.logs {
            v.push(Edit::CreateLog {
                id: *id,
                name: name.clone(),
            });
        }
        for (id, head) in &self.log_heads {
            v.push(Edit::LogHead {
                id: *id,
                head: *head,
            });
        }
        v.push(Edit::WalMin(self.wal_min));
        v.push(Edit::NextFileId(self.next_file_id));
        v.push(Edit::FlushedSeqno(self.flushed_seqno));
        for (level, files) in self.levels.iter().enumerate() {
            for meta in files.values() {
                v.push(Edit::AddFile {
                    level: level as u32,
                    meta: meta.clone(),
                });
            }
        }
        v
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes edits as a manifest record payload.
pub fn encode_edits(out: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        match e {
            Edit::CreateTree { id, name } => {
                out.push(1);
                put_varint(out, u64::from(*id));
                put_bytes(out, name.as_bytes());
            }
            Edit::CreateLog { id, name } => {
                out.push(2);
                put_varint(out, u64::from(*id));
                put_bytes(out, name.as_bytes());
            }
            Edit::LogHead { id, head } => {
                out.push(3);
                put_varint(out, u64::from(*id));
                put_varint(out, *head);
            }
            Edit::WalMin(w) => {
                out.push(4);
                put_varint(out, *w);
            }
            Edit::NextFileId(n) => {
                out.push(5);
                put_varint(out, *n);
            }
            Edit::FlushedSeqno(s) => {
                out.push(6);
                put_varint(out, *s);
            }
            Edit::AddFile { level, meta } => {
                out.push(7);
                put_varint(out, u64::from(*level));
                for v in [
                    meta.id,
                    meta.size,
                    meta.min_seqno,
                    meta.max_seqno,
                    meta.entries,
                    meta.tombstones,
                ] {
                    put_varint(out, v);
                }
                put_bytes(out, &meta.smallest);
                put_bytes(out, &meta.largest);
            }
            Edit::DeleteFile { level, id } => {
                out.push(8);
                put_varint(out, u64::from(*level));
                put_varint(out, *id);
            }
        }
    }
}

struct Reader<'a> {
    d: &'a [u8],
    p: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.d.get(self.p)?;
            self.p += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.varint()?).ok()
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        let s = self.d.get(self.p..self.p.checked_add(n)?)?;
        self.p += n;
        Some(s)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

/// Levels an `AddFile` edit may name; a larger level is damage, not a bigger tree (and would make
/// [`ManifestState::apply`] allocate a level vector of that length).
pub const MAX_DECODED_LEVELS: u32 = 64;

/// Decodes a manifest record payload.
pub fn decode_edits(data: &[u8]) -> Option<Vec<Edit>> {
    let mut r = Reader { d: data, p: 0 };
    let mut v = Vec::new();
    while r.p < data.len() {
        let tag = data[r.p];
        r.p += 1;
        v.push(match tag {
            1 => Edit::CreateTree {
                id: r.u32()?,
                name: r.string()?,
            },
            2 => Edit::CreateLog {
                id: r.u32()?,
                name: r.string()?,
            },
            3 => Edit::LogHead {
                id: r.u32()?,
                head: r.varint()?,
            },
            4 => Edit::WalMin(r.varint()?),
            5 => Edit::NextFileId(r.varint()?),
            6 => Edit::FlushedSeqno(r.varint()?),
            7 => {
                let level = r.u32()?;
                if level >= MAX_DECODED_LEVELS {
                    return None;
                }
                let id = r.varint()?;
                let size = r.varint()?;
                let min_seqno = r.varint()?;
                let max_seqno = r.varint()?;
                let entries = r.varint()?;
                let tombstones = r.varint()?;
                let smallest = r.bytes()?.to_vec();
                let largest = r.bytes()?.to_vec();
                Edit::AddFile {
                    level,
                    meta: FileMeta {
                        id,
                        size,
                        smallest,
                        largest,
                        min_seqno,
                        max_seqno,
                        entries,
                        tombstones,
                    },
                }
            }
            8 => Edit::DeleteFile {
                level: r.u32()?,
                id: r.varint()?,
            },
            _ => return None,
        });
    }
    Some(v)
}

/// Name of manifest `id`.
pub fn manifest_file_name(id: u64) -> String {
    format!("MANIFEST-{id:06}")
}

/// What [`read`] found in a manifest.
#[derive(Debug, Clone)]
pub struct ManifestRead {
    /// The state described.
    pub state: ManifestState,
    /// Manifest id.
    pub id: u64,
    /// Its path.
    pub path: PathBuf,
    /// Valid records.
    pub records: u64,
    /// Valid length in bytes.
    pub valid_len: u64,
    /// Bytes of a torn tail after the valid records.
    pub torn_bytes: u64,
}

/// Reads the live manifest of `dir` (through `CURRENT`) without modifying anything.
pub fn read(fs: &dyn FileSystem, dir: &Path) -> Result<Option<ManifestRead>> {
    let current = dir.join("CURRENT");
    if !fs.exists(&current) {
        return Ok(None);
    }
    let name = fs
        .read_all(&current)
        .ctx(|| format!("read {}", current.display()))?;
    let name = String::from_utf8(name)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| s.starts_with("MANIFEST-"))
        .ok_or_else(|| StorageError::corruption(&current, 0, "CURRENT does not name a manifest"))?;
    let id: u64 = name["MANIFEST-".len()..]
        .parse()
        .map_err(|_| StorageError::corruption(&current, 0, "bad manifest name in CURRENT"))?;
    let path = dir.join(&name);
    let data = fs
        .read_all(&path)
        .ctx(|| format!("read {}", path.display()))?;
    let mut state = ManifestState::default();
    let outcome = wal::replay(&path, &data, |_, payload| {
        let edits = decode_edits(payload)
            .ok_or_else(|| StorageError::corruption("", 0, "undecodable manifest edit"))?;
        for e in &edits {
            state.apply(e);
        }
        Ok(0)
    })?;
    Ok(Some(ManifestRead {
        state,
        id,
        path,
        records: outcome.frames,
        valid_len: outcome.valid_len,
        torn_bytes: outcome.torn_bytes,
    }))
}

/// Reads the live manifest of `dir`, if any, truncating a torn tail. Returns the state and the manifest id.
pub fn recover(fs: &dyn FileSystem, dir: &Path) -> Result<Option<(ManifestState, u64)>> {
    let Some(r) = read(fs, dir)? else {
        return Ok(None);
    };
    if r.torn_bytes > 0 {
        fs.truncate(&r.path, r.valid_len)
            .ctx(|| format!("truncate torn tail of {}", r.path.display()))?;
    }
    Ok(Some((r.state, r.id)))
}

/// The live manifest, appended to under the engine's manifest lock.
pub struct ManifestWriter {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// Manifest id.
    pub id: u64,
    path: PathBuf,
    file: Arc<dyn WritableFile>,
    len_bytes: u64,
    /// The state after every edit so far.
    pub state: ManifestState,
    buf: Vec<u8>,
}

/// Manifests larger than this are rewritten as a snapshot.
const MANIFEST_ROLL_BYTES: u64 = 4 << 20;

impl ManifestWriter {
    /// Writes a new manifest `id` holding `state`, makes it live through `CURRENT`, and removes older ones.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        id: u64,
        state: ManifestState,
    ) -> Result<Self> {
        let path = dir.join(manifest_file_name(id));
        let file = fs
            .create(&path)
            .ctx(|| format!("create {}", path.display()))?;
        let mut w = ManifestWriter {
            fs: fs.clone(),
            dir: dir.to_path_buf(),
            id,
            path,
            file,
            len_bytes: 0,
            state: ManifestState::default(),
            buf: Vec::new(),
        };
        w.append(&state.snapshot_edits())?;
        w.state = state;
        let tmp = dir.join("CURRENT.tmp");
        let cur_file = fs
            .create(&tmp)
            .ctx(|| format!("create {}", tmp.display()))?;
        cur_file
            .append(format!("{}\n", manifest_file_name(id)).as_bytes())
            .ctx(|| format!("write {}", tmp.display()))?;
        cur_file
            .sync_data()
            .ctx(|| format!("fsync {}", tmp.display()))?;
        fs.rename(&tmp, &dir.join("CURRENT"))
            .ctx(|| format!("rename {} to CURRENT", tmp.display()))?;
        fs.sync_dir(dir)
            .ctx(|| format!("fsync directory {}", dir.display()))?;
        for name in fs.list_dir(dir).ctx(|| format!("list {}", dir.display()))? {
            if let Some(old) = name
                .strip_prefix("MANIFEST-")
                .and_then(|s| s.parse::<u64>().ok())
                && old != id
            {
                let _ = fs.remove_file(&dir.join(&name));
            }
        }
        Ok(w)
    }

    fn append(&mut self, edits: &[Edit]) -> Result<()> {
        self.buf.clear();
        let start = wal::begin_frame(&mut self.buf, 0);
        encode_edits(&mut self.buf, edits);
        wal::finish_frame(&mut self.buf, start);
        self.file
            .append(&self.buf)
            .ctx(|| format!("write {}", self.path.display()))?;
        self.file
            .sync_data()
            .ctx(|| format!("fsync {}", self.path.display()))?;
        self.len_bytes += self.buf.len() as u64;
        Ok(())
    }

    /// Durably records `edits` (one atomic record) and applies them to the in-memory state.
    pub fn log_and_apply(&mut self, edits: &[Edit]) -> Result<()> {
        self.append(edits)?;
        for e in edits {
            self.state.apply(e);
        }
        if self.len_bytes > MANIFEST_ROLL_BYTES {
            let next = ManifestWriter::create(
                self.fs.clone(),
                &self.dir.clone(),
                self.id + 1,
                self.state.clone(),
            )?;
            *self = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OsFs;

    #[test]
    fn edits_round_trip_through_current() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn FileSystem> = Arc::new(OsFs);
        let mut w =
            ManifestWriter::create(fs.clone(), dir.path(), 1, ManifestState::default()).unwrap();
        let meta = FileMeta {
            id: 9,
            size: 100,
            smallest: b"a".to_vec(),
            largest: b"z".to_vec(),
            min_seqno: 1,
            max_seqno: 5,
            entries: 3,
            tombstones: 1,
        };
        w.log_and_apply(&[
            Edit::CreateTree {
                id: 1,
                name: "t".into(),
            },
            Edit::AddFile { level: 0, meta },
            Edit::WalMin(3),
        ])
        .unwrap();
        let (st, id) = recover(fs.as_ref(), dir.path()).unwrap().unwrap();
        assert_eq!(id, 1);
        assert_eq!(st.trees.get(&1).map(String::as_str), Some("t"));
        assert_eq!(st.levels[0].len(), 1);
        assert_eq!(st.wal_min, 3);
        assert_eq!(st.next_file_id, 10);
        let w2 = ManifestWriter::create(fs.clone(), dir.path(), 2, st).unwrap();
        drop(w2);
        let (st2, id2) = recover(fs.as_ref(), dir.path()).unwrap().unwrap();
        assert_eq!(id2, 2);
        assert_eq!(st2.levels[0].len(), 1);
        assert!(!dir.path().join("MANIFEST-000001").exists());
    }
}
