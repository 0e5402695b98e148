//! Checkpoints: a consistent, openable copy of the database as of one seqno, made while it runs.
//!
//! [`Db::checkpoint`] builds a directory that [`Db::open`] opens as a complete database equal to the state
//! at one seqno (the returned [`CheckpointInfo::seqno`]): every batch committed up to it, none after, never
//! half a batch. RocksDB's `Checkpoint` is the model. How:
//!
//! 1. Commits pause (no commit group runs; writers queue as behind a slow leader). Every published batch
//!    is then in the WAL file (deferred frames are written out first) and applied to the memtable and
//!    logs. The cut is the active WAL segment's length and the published seqno.
//! 2. Still paused, under the version lock (no flush or compaction installs): the manifest state is
//!    cloned; every live SST is hard-linked into the target (SSTs are immutable; a file the original later
//!    deletes lives on through the link); every sealed log segment is hard-linked too. The active log
//!    segments and the WAL segments the manifest still needs are *opened* and their lengths recorded:
//!    they are appended to in place, so they are copied, and only up to the recorded length. Where a hard
//!    link fails (another file system), the file is opened for copying instead. The pause lasts a
//!    directory listing, a few opens and one link per file.
//! 3. Commits resume. The recorded prefixes are copied through the open handles (a file the original
//!    deletes meanwhile stays readable), every copy and linked log segment is fsynced, and a fresh
//!    `MANIFEST` + `CURRENT` describing exactly those files is written (and the directories fsynced).
//!
//! On open, the checkpoint replays its WAL copy above the manifest's flushed seqno into a memtable, which
//! restores everything committed up to the cut that was not yet flushed. The whole build happens in
//! `<target>.tmp-<pid>-<n>` and is renamed to `target` at the end, so `target` either does not exist or
//! is complete; an existing `target` is refused. A failed build removes its temporary directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::{Db, DbInner, WalCut};
use crate::error::{IoContext, Result, StorageError};
use crate::fs::{FileSystem, ReadableFile};
use crate::manifest::{ManifestState, ManifestWriter};
use crate::version::{parse_sst_file_name, sst_file_name};
use crate::wal;

/// What [`Db::checkpoint`] made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The checkpoint holds every batch committed up to this seqno and none after it.
    pub seqno: u64,
    /// Files shared with the database through hard links (SSTs, sealed log segments).
    pub files_linked: u64,
    /// Files copied (WAL segments, active log segments, and anything a hard link could not reach).
    pub files_copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
}

/// A file to copy after commits resume: an open handle (so a deletion by the original does not matter)
/// and the prefix to copy.
struct PendingCopy {
    src: Arc<dyn ReadableFile>,
    src_path: PathBuf,
    len_bytes: u64,
    dst: PathBuf,
}

/// Bytes read and written per call while copying.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Makes temporary directory names unique within the process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Db {
    /// Writes a consistent copy of the database as of one seqno to the new directory `target`, which
    /// [`Db::open`] opens as a complete database (see the [module docs](crate::checkpoint)). Writers keep
    /// running; they pause only while the files are listed and linked. Fails with
    /// [`StorageError::InvalidArgument`] if `target` exists. `target` should be on the same file system as
    /// the database, so SSTs are hard-linked rather than copied.
    pub fn checkpoint(&self, target: impl AsRef<Path>) -> Result<CheckpointInfo> {
        let inner = &self.inner;
        inner.check_poison()?;
        let fs = inner.fs.clone();
        let target = target.as_ref();
        if fs.exists(target) {
            return Err(StorageError::InvalidArgument(format!(
                "checkpoint target {} already exists",
                target.display()
            )));
        }
        let name = target.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            StorageError::InvalidArgument(format!(
                "checkpoint target {} has no usable file name",
                target.display()
            ))
        })?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs.create_dir_all(&parent)
            .ctx(|| format!("create directory {}", parent.display()))?;
        let tmp = parent.join(format!(
            "{name}.tmp-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        if fs.exists(&tmp) {
            fs.remove_dir_all(&tmp)
                .ctx(|| format!("remove stale {}", tmp.display()))?;
        }
        let built = build(inner, &tmp).and_then(|info| {
            if fs.exists(target) {
                return Err(StorageError::InvalidArgument(format!(
                    "checkpoint target {} already exists",
                    target.display()
                )));
            }
            fs.rename(&tmp, target)
                .ctx(|| format!("rename {} to {}", tmp.display(), target.display()))?;
            fs.sync_dir(&parent)
                .ctx(|| format!("fsync directory {}", parent.display()))?;
            Ok(info)
        });
        if built.is_err() && fs.exists(&tmp) {
            let _ = fs.remove_dir_all(&tmp);
        }
        built
    }
}

/// Hard-links `src` to `dst`, or (another file system, no link support) opens `src` to be copied later.
fn link_or_open(
    fs: &dyn FileSystem,
    src: &Path,
    dst: &Path,
    copies: &mut Vec<PendingCopy>,
) -> Result<bool> {
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(true);
    }
    let r = fs
        .open_read(src)
        .ctx(|| format!("open {} for a checkpoint", src.display()))?;
    let len_bytes = r.len().ctx(|| format!("size of {}", src.display()))?;
    copies.push(PendingCopy {
        src: r,
        src_path: src.to_path_buf(),
        len_bytes,
        dst: dst.to_path_buf(),
    });
    Ok(false)
}

/// Everything decided while commits were paused.
struct Plan {
    cut: WalCut,
    state: ManifestState,
    copies: Vec<PendingCopy>,
    /// Hard-linked log segments (fsynced before the manifest is written: they may not be durable yet).
    linked_logs: Vec<PathBuf>,
    files_linked: u64,
    wal_ids: Vec<u64>,
}

fn plan(inner: &DbInner, tmp: &Path, cut: WalCut) -> Result<Plan> {
    let fs = inner.fs.as_ref();
    let _installs = inner.version_lock.lock();
    let state = inner.manifest.lock().state.clone();
    let mut p = Plan {
        cut,
        state,
        copies: Vec::new(),
        linked_logs: Vec::new(),
        files_linked: 0,
        wal_ids: Vec::new(),
    };
    // WAL segments the manifest still needs, up to the cut.
    let names = fs
        .list_dir(&inner.dir)
        .ctx(|| format!("list {}", inner.dir.display()))?;
    let mut wal_ids: Vec<u64> = names
        .iter()
        .filter_map(|n| wal::parse_wal_file_name(n))
        .filter(|id| *id >= p.state.wal_min && *id <= cut.wal_id)
        .collect();
    wal_ids.sort_unstable();
    for id in &wal_ids {
        let src = inner.dir.join(wal::wal_file_name(*id));
        let r = fs
            .open_read(&src)
            .ctx(|| format!("open WAL segment {} for a checkpoint", src.display()))?;
        let len_bytes = if *id == cut.wal_id {
            cut.wal_len_bytes
        } else {
            r.len().ctx(|| format!("size of {}", src.display()))?
        };
        p.copies.push(PendingCopy {
            src: r,
            src_path: src,
            len_bytes,
            dst: tmp.join(wal::wal_file_name(*id)),
        });
    }
    p.wal_ids = wal_ids;
    // Live SSTs.
    for files in &p.state.levels {
        for id in files.keys() {
            let n = sst_file_name(*id);
            if link_or_open(fs, &inner.dir.join(&n), &tmp.join(&n), &mut p.copies)? {
                p.files_linked += 1;
            }
        }
    }
    // Logs: sealed segments are immutable (linked), the newest is appended to (copied up to its length,
    // which is exact now: only a commit leader appends, and none runs).
    for id in p.state.logs.keys() {
        let src_dir = inner.dir.join("logs").join(id.to_string());
        let dst_dir = tmp.join("logs").join(id.to_string());
        fs.create_dir_all(&dst_dir)
            .ctx(|| format!("create {}", dst_dir.display()))?;
        if !fs.exists(&src_dir) {
            continue;
        }
        let mut segs: Vec<(u64, String)> = fs
            .list_dir(&src_dir)
            .ctx(|| format!("list {}", src_dir.display()))?
            .into_iter()
            .filter_map(|n| {
                let base = n.strip_suffix(".seg")?.parse::<u64>().ok()?;
                Some((base, n))
            })
            .collect();
        segs.sort_unstable();
        let last = segs.len().saturating_sub(1);
        for (i, (_, n)) in segs.iter().enumerate() {
            let (src, dst) = (src_dir.join(n), dst_dir.join(n));
            if i == last {
                let r = fs
                    .open_read(&src)
                    .ctx(|| format!("open log segment {} for a checkpoint", src.display()))?;
                let len_bytes = r.len().ctx(|| format!("size of {}", src.display()))?;
                p.copies.push(PendingCopy {
                    src: r,
                    src_path: src,
                    len_bytes,
                    dst,
                });
            } else if link_or_open(fs, &src, &dst, &mut p.copies)? {
                p.files_linked += 1;
                p.linked_logs.push(dst);
            }
        }
    }
    Ok(p)
}

fn copy_prefix(fs: &dyn FileSystem, c: &PendingCopy) -> Result<()> {
    let out = fs
        .create(&c.dst)
        .ctx(|| format!("create {}", c.dst.display()))?;
    let mut buf = vec![0u8; COPY_CHUNK_BYTES.min(c.len_bytes as usize)];
    let mut pos = 0u64;
    while pos < c.len_bytes {
        let n = (c.len_bytes - pos).min(buf.len() as u64) as usize;
        c.src
            .read_exact_at(&mut buf[..n], pos)
            .ctx(|| format!("read {} at {pos}", c.src_path.display()))?;
        out.append(&buf[..n])
            .ctx(|| format!("write {}", c.dst.display()))?;
        pos += n as u64;
    }
    out.sync_data().ctx(|| format!("fsync {}", c.dst.display()))
}

fn build(inner: &DbInner, tmp: &Path) -> Result<CheckpointInfo> {
    let fs = inner.fs.clone();
    fs.create_dir_all(tmp)
        .ctx(|| format!("create {}", tmp.display()))?;
    let p = inner.with_commits_paused(|cut| plan(inner, tmp, cut))?;
    let mut info = CheckpointInfo {
        seqno: p.cut.seqno,
        files_linked: p.files_linked,
        ..CheckpointInfo::default()
    };
    for c in &p.copies {
        copy_prefix(fs.as_ref(), c)?;
        info.files_copied += 1;
        info.bytes_copied += c.len_bytes;
    }
    for path in &p.linked_logs {
        fs.open_append(path)
            .and_then(|f| f.sync_data())
            .ctx(|| format!("fsync {}", path.display()))?;
    }
    if !p.state.logs.is_empty() {
        let logs = tmp.join("logs");
        for id in p.state.logs.keys() {
            let d = logs.join(id.to_string());
            fs.sync_dir(&d)
                .ctx(|| format!("fsync directory {}", d.display()))?;
        }
        fs.sync_dir(&logs)
            .ctx(|| format!("fsync directory {}", logs.display()))?;
    }
    // A manifest id above every file id in the checkpoint; the manifest writer fsyncs `tmp` once
    // `CURRENT` names it, which also makes every file created above durable in the directory.
    let mut state = p.state;
    let max_sst = state
        .levels
        .iter()
        .flat_map(|l| l.keys().copied())
        .max()
        .unwrap_or(0);
    let max_wal = p.wal_ids.last().copied().unwrap_or(0);
    let manifest_id = state
        .next_file_id
        .max(max_sst.saturating_add(1))
        .max(max_wal.saturating_add(1));
    state.next_file_id = manifest_id + 1;
    debug_assert!(
        fs.list_dir(tmp)
            .map(|names| names.iter().all(|n| parse_sst_file_name(n)
                .is_none_or(|id| state.levels.iter().any(|l| l.contains_key(&id)))))
            .unwrap_or(true)
    );
    ManifestWriter::create(fs, tmp, manifest_id, state)?;
    Ok(info)
}
