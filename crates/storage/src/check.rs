//! Offline verification and statistics of a data directory (`strata storage check|stats <dir>`).
//!
//! [`check`] reads every WAL segment, the manifest, every log segment and every SST and verifies every
//! checksum without modifying anything; the first damage found is returned as
//! [`StorageError::Corruption`] naming the file and offset. A torn tail in the newest WAL segment or the
//! newest segment of a log is reported (recovery would truncate it), not treated as corruption; so is a
//! torn sealed WAL segment, with the segments after it ([`CheckReport::wal_segments_after_tear`]).

use std::path::Path;
use std::sync::Arc;

use crate::error::{IoContext, Result, StorageError};
use crate::fs::{FileSystem, OsFs};
use crate::manifest;
use crate::wal;

/// What [`check`] verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// WAL segments read.
    pub wal_segments: u64,
    /// Valid WAL frames.
    pub wal_frames: u64,
    /// Bytes of a torn WAL tail that recovery would truncate.
    pub wal_torn_tail_bytes: u64,
    /// WAL segments after a torn frame in an earlier one. Under `fsync everysec|no` a sealed segment is
    /// fsynced after the next one starts, so a machine crash can leave this, and recovery drops them (the
    /// newest writes); under `fsync always` it is damage, and recovery refuses to open.
    pub wal_segments_after_tear: u64,
    /// Valid manifest records.
    pub manifest_records: u64,
    /// SST files verified.
    pub sst_files: u64,
    /// SST bytes verified.
    pub sst_bytes: u64,
    /// Log segments verified.
    pub log_segments: u64,
    /// Log entries verified.
    pub log_entries: u64,
    /// Bytes of torn log-segment tails that recovery would truncate.
    pub log_torn_tail_bytes: u64,
}

/// Per-level statistics from [`stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Level number.
    pub level: usize,
    /// Number of SSTs.
    pub files: u64,
    /// Bytes of SSTs.
    pub bytes: u64,
    /// Point entries.
    pub entries: u64,
    /// Point and range tombstones.
    pub tombstones: u64,
}

/// What [`stats`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirStats {
    /// Per level.
    pub levels: Vec<LevelStats>,
    /// Total SST bytes.
    pub sst_bytes: u64,
    /// WAL bytes still needed by recovery.
    pub wal_bytes: u64,
    /// Total SST bytes divided by the bytes of the last non-empty level (1.0 means no redundancy); 0 when
    /// there are no SSTs.
    pub space_amplification: f64,
    /// Trees by name.
    pub trees: Vec<String>,
    /// Logs by name with (head, number of segments).
    pub logs: Vec<(String, u64)>,
}

fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<String>> {
    fs.list_dir(dir).ctx(|| format!("list {}", dir.display()))
}

/// Verifies every checksum in the data directory `dir` (read-only).
pub fn check(dir: impl AsRef<Path>) -> Result<CheckReport> {
    check_with(Arc::new(OsFs), dir.as_ref())
}

/// [`check`] through a given file layer.
pub fn check_with(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let Some(m) = manifest::read(fs.as_ref(), dir)? else {
        return Err(StorageError::corruption(
            dir.join("CURRENT"),
            0,
            "no CURRENT file: not a strata data directory",
        ));
    };
    r.manifest_records = m.records;
    let names = list(fs.as_ref(), dir)?;
    let mut wal_ids: Vec<u64> = names
        .iter()
        .filter_map(|n| wal::parse_wal_file_name(n))
        .filter(|id| *id >= m.state.wal_min)
        .collect();
    wal_ids.sort_unstable();
    for (i, id) in wal_ids.iter().enumerate() {
        let path = dir.join(wal::wal_file_name(*id));
        let data = fs
            .read_all(&path)
            .ctx(|| format!("read WAL segment {}", path.display()))?;
        let out = wal::replay_segment(&path, &data, |format, first, payload| {
            // Structure check of every op in the frame.
            let mut seq = first;
            for op in crate::batch::FrameOps::new(format, payload) {
                op?;
                seq += 1;
            }
            Ok(seq)
        })?;
        r.wal_segments += 1;
        r.wal_frames += out.frames;
        if out.torn_bytes > 0 {
            r.wal_torn_tail_bytes += out.torn_bytes;
            if i + 1 != wal_ids.len() {
                r.wal_segments_after_tear = (wal_ids.len() - i - 1) as u64;
                break;
            }
        }
    }
    for id in m.state.logs.keys() {
        let ldir = dir.join("logs").join(id.to_string());
        if !fs.exists(&ldir) {
            continue;
        }
        let mut segs: Vec<u64> = list(fs.as_ref(), &ldir)?
            .iter()
            .filter_map(|n| n.strip_suffix(".seg").and_then(|b| b.parse().ok()))
            .collect();
        segs.sort_unstable();
        for (i, base) in segs.iter().enumerate() {
            let path = ldir.join(format!("{base:020}.seg"));
            let last = i + 1 == segs.len();
            let (n, torn) = crate::log::verify_segment_file(fs.as_ref(), &path, *base, last)?;
            r.log_segments += 1;
            r.log_entries += n;
            r.log_torn_tail_bytes += torn;
        }
    }
    crate::version::verify_ssts(fs.as_ref(), dir, &m.state, &mut r)?;
    Ok(r)
}

/// Levels, file counts, sizes and amplification of the data directory `dir` (read-only, from the manifest).
pub fn stats(dir: impl AsRef<Path>) -> Result<DirStats> {
    let fs = OsFs;
    let dir = dir.as_ref();
    let Some(m) = manifest::read(&fs, dir)? else {
        return Err(StorageError::corruption(
            dir.join("CURRENT"),
            0,
            "no CURRENT file: not a strata data directory",
        ));
    };
    let mut s = DirStats::default();
    for (level, files) in m.state.levels.iter().enumerate() {
        let mut l = LevelStats {
            level,
            ..LevelStats::default()
        };
        for f in files.values() {
            l.files += 1;
            l.bytes += f.size;
            l.entries += f.entries;
            l.tombstones += f.tombstones;
        }
        s.sst_bytes += l.bytes;
        s.levels.push(l);
    }
    if let Some(last) = s.levels.iter().rev().find(|l| l.bytes > 0) {
        s.space_amplification = s.sst_bytes as f64 / last.bytes as f64;
    }
    for n in list(&fs, dir)? {
        if let Some(id) = wal::parse_wal_file_name(&n)
            && id >= m.state.wal_min
        {
            s.wal_bytes += fs.file_size(&dir.join(&n)).unwrap_or(0);
        }
    }
    s.trees = m.state.trees.values().cloned().collect();
    for (id, name) in &m.state.logs {
        s.logs.push((
            name.clone(),
            m.state.log_heads.get(id).copied().unwrap_or(0),
        ));
    }
    Ok(s)
}
