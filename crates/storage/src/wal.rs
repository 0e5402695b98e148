//! The write-ahead log: framing, appending, and recovery.
//!
//! Every commit group (one or more write batches, see `db.rs`) becomes one *frame*:
//!
//! ```text
//! header_crc u32 | payload_len u32 | first_seqno u64 | payload_crc u32 | payload (payload_len bytes)
//! ```
//!
//! All integers little-endian; `header_crc` is crc32c over the 16 bytes after it, `payload_crc` crc32c over
//! the payload. The header has its own checksum so a damaged length can never make recovery mistake valid
//! frames that follow for a torn tail. A frame is applied all-or-nothing, which is what makes a batch atomic.
//! The payload is a sequence of `len u32 | batch` (see `batch.rs`); batch `i` takes the seqnos after those
//! of batches `0..i`.
//!
//! Recovery ([`replay`]) reads frames in order. A damaged or incomplete frame is a *torn tail* — the
//! unfinished last write of a crashed process or machine — when no complete frame with valid checksums
//! starts anywhere after it; the file is then truncated at the end of the last valid frame. Damage followed
//! by a valid frame is corruption: recovery refuses to open and names the file and offset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{IoContext, Result, StorageError};
use crate::fs::{FileSystem, WritableFile};

/// Bytes of a frame header.
pub const FRAME_HEADER_BYTES: usize = 20;

/// Name of WAL segment `id`.
pub fn wal_file_name(id: u64) -> String {
    format!("wal-{id:06}.log")
}

/// Parses a WAL segment file name.
pub fn parse_wal_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Starts a frame in `out`; returns the frame's start so [`finish_frame`] can fill in the header.
pub fn begin_frame(out: &mut Vec<u8>, first_seqno: u64) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&first_seqno.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    start
}

/// Fills in the header of the frame begun at `start`, covering everything appended since.
pub fn finish_frame(out: &mut [u8], start: usize) {
    let payload_len = out.len() - start - FRAME_HEADER_BYTES;
    let payload_crc = crc32c::crc32c(&out[start + FRAME_HEADER_BYTES..]);
    // payload_len fits: callers bound the group buffer far below 4 GiB (Options::max_pending_write_bytes).
    let len = u32::try_from(payload_len).unwrap_or(u32::MAX);
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    out[start + 16..start + 20].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&out[start + 4..start + FRAME_HEADER_BYTES]);
    out[start..start + 4].copy_from_slice(&header_crc.to_le_bytes());
}

/// Deferred frames buffered beyond this many bytes are written out at once, bounding what a crash can
/// lose when nobody calls [`crate::Db::sync_to`] (e.g. under `fsync = no`).
pub const MAX_DEFERRED_BYTES: usize = 1 << 20;

/// An open WAL segment being appended to, with a buffer of *deferred* frames (see
/// [`crate::Db::write_deferred`]): frames already applied to the memtable whose bytes are not yet handed
/// to the operating system. Frames reach the file in seqno order: an immediate append writes the buffered
/// frames first, in the same write call.
pub struct WalWriter {
    /// Segment id.
    pub id: u64,
    /// Path of the segment.
    pub path: PathBuf,
    file: Arc<dyn WritableFile>,
    /// Bytes in the segment (written, not counting the deferred buffer).
    pub len_bytes: u64,
    /// Deferred frames, in seqno order.
    pending: Vec<u8>,
    /// Last seqno of the deferred frames.
    pending_last_seqno: u64,
    /// Every seqno up to this one is written to the file (or was recovered from it).
    pub written_seqno: u64,
}

impl WalWriter {
    /// Creates a new, empty segment and makes its directory entry durable.
    pub fn create(fs: &dyn FileSystem, dir: &Path, id: u64) -> Result<Self> {
        let path = dir.join(wal_file_name(id));
        let file = fs
            .create(&path)
            .ctx(|| format!("create WAL segment {}", path.display()))?;
        fs.sync_dir(dir)
            .ctx(|| format!("fsync directory {}", dir.display()))?;
        Ok(WalWriter {
            id,
            path,
            file,
            len_bytes: 0,
            pending: Vec::new(),
            pending_last_seqno: 0,
            written_seqno: 0,
        })
    }

    /// A new segment continuing this one: the caller wrote the deferred buffer out first.
    pub fn successor(&self, fs: &dyn FileSystem, dir: &Path, id: u64) -> Result<Self> {
        let mut w = Self::create(fs, dir, id)?;
        w.written_seqno = self.written_seqno;
        Ok(w)
    }

    /// Appends encoded frames whose last seqno is `last_seqno`, preceded by any deferred frames, in one
    /// write call.
    pub fn append(&mut self, frames: &[u8], last_seqno: u64) -> Result<()> {
        if self.pending.is_empty() {
            self.write(frames)?;
        } else {
            self.pending.extend_from_slice(frames);
            let pending = std::mem::take(&mut self.pending);
            let r = self.write(&pending);
            self.pending = pending;
            self.pending.clear();
            r?;
        }
        self.written_seqno = last_seqno;
        Ok(())
    }

    /// Buffers encoded frames whose last seqno is `last_seqno` without writing them (unless the buffer
    /// outgrew [`MAX_DEFERRED_BYTES`]).
    pub fn defer(&mut self, frames: &[u8], last_seqno: u64) -> Result<()> {
        self.pending.extend_from_slice(frames);
        self.pending_last_seqno = last_seqno;
        if self.pending.len() >= MAX_DEFERRED_BYTES {
            self.write_deferred()?;
        }
        Ok(())
    }

    /// Writes the deferred frames (one write call; nothing if there are none).
    pub fn write_deferred(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let r = self.write(&pending);
        self.pending = pending;
        self.pending.clear();
        r?;
        self.written_seqno = self.pending_last_seqno;
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .append(bytes)
            .ctx(|| format!("write WAL segment {}", self.path.display()))?;
        self.len_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes the deferred frames and fsyncs the segment.
    pub fn sync(&mut self) -> Result<()> {
        self.write_deferred()?;
        self.file
            .sync_data()
            .ctx(|| format!("fsync WAL segment {}", self.path.display()))
    }

    /// A handle for fsyncing from another thread (the `everysec` syncer).
    pub fn file(&self) -> Arc<dyn WritableFile> {
        self.file.clone()
    }
}

/// What [`replay`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Number of valid frames.
    pub frames: u64,
    /// End of the last valid frame.
    pub valid_len: u64,
    /// Bytes after `valid_len` that form a torn tail (0 if the file ended cleanly).
    pub torn_bytes: u64,
    /// Highest seqno + 1 seen (0 if no frames).
    pub next_seqno: u64,
}

/// Reads every frame of a WAL segment held in `data`, calling `apply(first_seqno, payload)` for each valid
/// frame in order. A torn tail is reported in the outcome (the caller truncates, and only for the newest
/// segment); any other damage is [`StorageError::Corruption`].
pub fn replay(
    path: &Path,
    data: &[u8],
    mut apply: impl FnMut(u64, &[u8]) -> Result<u64>,
) -> Result<ReplayOutcome> {
    let mut pos = 0usize;
    let mut frames = 0u64;
    let mut next_seqno = 0u64;
    let torn = |pos: usize| -> u64 { (data.len() - pos) as u64 };
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < FRAME_HEADER_BYTES {
            return Ok(ReplayOutcome {
                frames,
                valid_len: pos as u64,
                torn_bytes: torn(pos),
                next_seqno,
            });
        }
        let header = &rest[..FRAME_HEADER_BYTES];
        let header_crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if crc32c::crc32c(&header[4..]) != header_crc {
            if !valid_frame_after(data, pos) {
                return Ok(ReplayOutcome {
                    frames,
                    valid_len: pos as u64,
                    torn_bytes: torn(pos),
                    next_seqno,
                });
            }
            return Err(StorageError::corruption(
                path,
                pos as u64,
                "WAL frame header checksum mismatch",
            ));
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&header[8..16]);
        let first_seqno = u64::from_le_bytes(seq);
        let payload_crc = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
        let end = FRAME_HEADER_BYTES + len;
        if end > rest.len() {
            return Ok(ReplayOutcome {
                frames,
                valid_len: pos as u64,
                torn_bytes: torn(pos),
                next_seqno,
            });
        }
        let payload = &rest[FRAME_HEADER_BYTES..end];
        if crc32c::crc32c(payload) != payload_crc {
            if !valid_frame_after(data, pos) {
                return Ok(ReplayOutcome {
                    frames,
                    valid_len: pos as u64,
                    torn_bytes: torn(pos),
                    next_seqno,
                });
            }
            return Err(StorageError::corruption(
                path,
                pos as u64,
                "WAL frame payload checksum mismatch",
            ));
        }
        if first_seqno < next_seqno {
            return Err(StorageError::corruption(
                path,
                pos as u64,
                format!("WAL frame seqno {first_seqno} goes backwards (expected >= {next_seqno})"),
            ));
        }
        next_seqno = apply(first_seqno, payload).map_err(|e| match e {
            StorageError::Corruption { what, .. } => {
                StorageError::corruption(path, pos as u64, format!("WAL frame content: {what}"))
            }
            other => other,
        })?;
        frames += 1;
        pos += end;
    }
    Ok(ReplayOutcome {
        frames,
        valid_len: pos as u64,
        torn_bytes: 0,
        next_seqno,
    })
}

/// Whether a complete frame with valid checksums starts anywhere after `pos`. Damage followed by no valid
/// frame can only be the unfinished last write; damage followed by a valid frame is corruption.
fn valid_frame_after(data: &[u8], pos: usize) -> bool {
    let mut p = pos + 1;
    while p + FRAME_HEADER_BYTES <= data.len() {
        let h = &data[p..p + FRAME_HEADER_BYTES];
        let header_crc = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if crc32c::crc32c(&h[4..]) == header_crc {
            let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
            let payload_crc = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
            let start = p + FRAME_HEADER_BYTES;
            if let Some(payload) = data.get(start..start.saturating_add(len))
                && crc32c::crc32c(payload) == payload_crc
            {
                return true;
            }
        }
        p += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let s = begin_frame(&mut v, seq);
        v.extend_from_slice(payload);
        finish_frame(&mut v, s);
        v
    }

    type Frames = Vec<(u64, Vec<u8>)>;

    fn collect(data: &[u8]) -> Result<(Frames, ReplayOutcome)> {
        let mut got = Vec::new();
        let out = replay(Path::new("w"), data, |s, p| {
            got.push((s, p.to_vec()));
            Ok(s + 1)
        })?;
        Ok((got, out))
    }

    #[test]
    fn round_trip_and_torn_tails() {
        let mut data = frame(1, b"hello");
        data.extend(frame(2, b"world!"));
        let whole = data.len();
        let (got, out) = collect(&data).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(out.valid_len as usize, whole);
        // Every truncation point inside the second frame is a torn tail.
        let first = frame(1, b"hello").len();
        for cut in first..whole {
            let (got, out) = collect(&data[..cut]).unwrap();
            assert_eq!(got.len(), 1, "cut {cut}");
            assert_eq!(out.valid_len as usize, first);
        }
        // Garbage in the last frame's payload is torn; zeros appended are torn.
        let mut d2 = data.clone();
        d2[whole - 1] ^= 1;
        assert_eq!(collect(&d2).unwrap().1.valid_len as usize, first);
        let mut d3 = data.clone();
        d3.extend_from_slice(&[0u8; 100]);
        assert_eq!(collect(&d3).unwrap().1.torn_bytes, 100);
    }

    #[test]
    fn damage_before_valid_data_is_corruption() {
        let mut data = frame(1, b"hello");
        data.extend(frame(2, b"world!"));
        data[FRAME_HEADER_BYTES + 1] ^= 1;
        match collect(&data) {
            Err(StorageError::Corruption { offset, .. }) => assert_eq!(offset, 0),
            other => panic!("{other:?}"),
        }
        let mut data = frame(1, b"hello");
        data.extend(frame(2, b"world!"));
        data[5] ^= 0x80; // length field: header checksum catches it
        assert!(matches!(
            collect(&data),
            Err(StorageError::Corruption { .. })
        ));
    }
}
