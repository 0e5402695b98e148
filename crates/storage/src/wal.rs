//! The write-ahead log: framing, appending, and recovery.
//!
//! Every commit group (one or more write batches, see `db.rs`) becomes one *frame*. Segments are written in
//! format v2; recovery also reads v1 segments written by earlier builds (see `docs/storage-format.md`).
//!
//! **v2** — the segment starts with the 8-byte [`WAL_V2_MAGIC`], then frames:
//!
//! ```text
//! crc u32 | len varint | first_seqno varint | ops (see batch.rs)        (len = bytes after the len field)
//! ```
//!
//! `crc` is crc32c (little-endian) over the `len` field and the `len` bytes after it, so a damaged length
//! fails the checksum like damaged content. The ops of every batch of the group follow one another; op
//! `i` takes seqno `first_seqno + i`. A single put costs 4 + 1 + ~3 bytes of framing plus its op header
//! (tag, tree id, two lengths: 4 bytes), against 20 + 4 + 4 + 7 in v1.
//!
//! **v1** — no segment header; frames are
//! `header_crc u32 | payload_len u32 | first_seqno u64 | payload_crc u32 | payload`, all little-endian,
//! `header_crc` over the 16 bytes after it, `payload_crc` over the payload, which is `len u32 | batch`
//! repeated (v1 batch encoding). The manifest still uses this framing for its records ([`begin_frame`],
//! [`finish_frame`], [`replay`]).
//!
//! A frame is applied all-or-nothing, which is what makes a batch atomic. Recovery ([`replay_segment`])
//! reads frames in order. A damaged or incomplete frame is a *torn tail* — the unfinished last write of a
//! crashed process or machine — when no complete frame with valid checksums (of either format) starts
//! anywhere after it; the file is then truncated at the end of the last valid frame. Damage followed by a
//! valid frame is corruption: recovery refuses to open and names the file and offset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{WalFormat, put_varint};
use crate::error::{IoContext, Result, StorageError};
use crate::fs::{FileSystem, WritableFile};

/// Bytes of a v1 frame header.
pub const FRAME_HEADER_BYTES: usize = 20;

/// First bytes of a v2 WAL segment. A v1 segment starts with a frame whose bytes 4..8 are a payload
/// length; `"AL\0\x02"` read as one (~33 MiB) is above any group a v1 build wrote with default options,
/// and its header checksum would also have to equal `"STRW"`.
pub const WAL_V2_MAGIC: [u8; 8] = *b"STRWAL\0\x02";

/// Bytes reserved at the start of a v2 group buffer for `crc u32 | len varint` (a u32 varint is at most
/// 5 bytes); [`finish_frame_v2`] right-aligns the header inside them.
pub const V2_RESERVED_BYTES: usize = 9;

/// Largest v2 frame body accepted (as v1: a u32 length).
const V2_MAX_LEN: u64 = u32::MAX as u64;

/// Starts a v2 frame in the empty group buffer `out`: the reserved header, then `first_seqno`.
pub fn begin_frame_v2(out: &mut Vec<u8>, first_seqno: u64) {
    out.clear();
    out.extend_from_slice(&[0u8; V2_RESERVED_BYTES]);
    put_varint(out, first_seqno);
}

/// Fills in the header of the v2 frame in `buf` (begun by [`begin_frame_v2`]) and returns the offset where
/// the frame starts: the frame is `buf[offset..]`.
pub fn finish_frame_v2(buf: &mut [u8]) -> usize {
    let body_len = buf.len() - V2_RESERVED_BYTES;
    // The body fits a u32: callers bound the group buffer far below 4 GiB (max_pending_write_bytes).
    let mut v = body_len.min(u32::MAX as usize) as u32;
    let mut len = [0u8; 5];
    let mut n = 0;
    while v >= 0x80 {
        len[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    len[n] = v as u8;
    n += 1;
    let len_at = V2_RESERVED_BYTES - n;
    buf[len_at..V2_RESERVED_BYTES].copy_from_slice(&len[..n]);
    let crc = crc32c::crc32c(&buf[len_at..]);
    let start = len_at - 4;
    buf[start..len_at].copy_from_slice(&crc.to_le_bytes());
    start
}

/// The first seqno and the ops of a v2 frame body (the bytes after the length), or `None` if the seqno
/// is malformed.
pub fn split_v2_body(body: &[u8]) -> Option<(u64, &[u8])> {
    let mut pos = 0;
    let seqno = crate::batch::get_varint(body, &mut pos)?;
    Some((seqno, &body[pos..]))
}

/// What is at `pos` of a v2 segment.
enum V2Frame {
    /// A frame with a valid checksum: its body and its end.
    Valid {
        body: std::ops::Range<usize>,
        end: usize,
    },
    /// Runs past the end of the data (or its length does).
    Incomplete,
    /// A bad length or checksum.
    Bad,
}

fn v2_frame_at(data: &[u8], pos: usize) -> V2Frame {
    let Some(crc_bytes) = data.get(pos..pos + 4) else {
        return V2Frame::Incomplete;
    };
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let len_at = pos + 4;
    let mut p = len_at;
    let mut len = 0u64;
    let mut shift = 0;
    loop {
        let Some(&b) = data.get(p) else {
            return V2Frame::Incomplete;
        };
        p += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return V2Frame::Bad;
        }
    }
    if len == 0 || len > V2_MAX_LEN {
        return V2Frame::Bad;
    }
    let end = p.saturating_add(len as usize);
    if end > data.len() {
        return V2Frame::Incomplete;
    }
    // A cheap filter before the checksum (which matters when scanning a damaged tail byte by byte): a
    // frame holds at least one op, so its seqno is followed by an op tag.
    match split_v2_body(&data[p..end]) {
        Some((_, ops)) if ops.first().is_some_and(|t| *t <= crate::batch::MAX_TAG) => {}
        _ => return V2Frame::Bad,
    }
    if crc32c::crc32c(&data[len_at..end]) != stored {
        return V2Frame::Bad;
    }
    V2Frame::Valid { body: p..end, end }
}

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

/// Starts a v1 frame (the manifest's record framing) in `out`; returns the frame's start so [`finish_frame`] can fill in the header.
pub fn begin_frame(out: &mut Vec<u8>, first_seqno: u64) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&first_seqno.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    start
}

/// Fills in the header of the v1 frame begun at `start`, covering everything appended since.
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
    /// Creates a new segment holding only the v2 header and makes its directory entry durable. (The
    /// header reaches the disk with the first fsync of a frame; a crash before that leaves an empty or
    /// partial header, which recovery reads as a segment without frames.)
    pub fn create(fs: &dyn FileSystem, dir: &Path, id: u64) -> Result<Self> {
        let path = dir.join(wal_file_name(id));
        let file = fs
            .create(&path)
            .ctx(|| format!("create WAL segment {}", path.display()))?;
        file.append(&WAL_V2_MAGIC)
            .ctx(|| format!("write WAL segment header {}", path.display()))?;
        fs.sync_dir(dir)
            .ctx(|| format!("fsync directory {}", dir.display()))?;
        Ok(WalWriter {
            id,
            path,
            file,
            len_bytes: WAL_V2_MAGIC.len() as u64,
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

/// Reads every frame of a WAL segment held in `data`, v2 (it starts with [`WAL_V2_MAGIC`]) or v1, calling
/// `apply(format, first_seqno, payload)` for each valid frame in order, where `payload` holds the frame's
/// batches (v1: `len u32 | batch` repeated) or ops (v2); `apply` returns the seqno after the frame. A torn
/// tail is reported in the outcome (the caller truncates, and only for the newest segment); any other
/// damage is [`StorageError::Corruption`].
pub fn replay_segment(
    path: &Path,
    data: &[u8],
    mut apply: impl FnMut(WalFormat, u64, &[u8]) -> Result<u64>,
) -> Result<ReplayOutcome> {
    if !data.starts_with(&WAL_V2_MAGIC) {
        return replay(path, data, |s, p| apply(WalFormat::V1, s, p));
    }
    let mut pos = WAL_V2_MAGIC.len();
    let mut frames = 0u64;
    let mut next_seqno = 0u64;
    while pos < data.len() {
        let (body, end) = match v2_frame_at(data, pos) {
            V2Frame::Valid { body, end } => (body, end),
            V2Frame::Incomplete | V2Frame::Bad => {
                if valid_frame_after(data, pos) {
                    return Err(StorageError::corruption(
                        path,
                        pos as u64,
                        "WAL frame checksum mismatch (or bad length) before a valid frame",
                    ));
                }
                return Ok(ReplayOutcome {
                    frames,
                    valid_len: pos as u64,
                    torn_bytes: (data.len() - pos) as u64,
                    next_seqno,
                });
            }
        };
        let Some((first_seqno, ops)) = split_v2_body(&data[body]) else {
            return Err(StorageError::corruption(
                path,
                pos as u64,
                "WAL frame content: malformed first seqno",
            ));
        };
        if first_seqno < next_seqno {
            return Err(StorageError::corruption(
                path,
                pos as u64,
                format!("WAL frame seqno {first_seqno} goes backwards (expected >= {next_seqno})"),
            ));
        }
        next_seqno = apply(WalFormat::V2, first_seqno, ops).map_err(|e| match e {
            StorageError::Corruption { what, .. } => {
                StorageError::corruption(path, pos as u64, format!("WAL frame content: {what}"))
            }
            other => other,
        })?;
        frames += 1;
        pos = end;
    }
    Ok(ReplayOutcome {
        frames,
        valid_len: pos as u64,
        torn_bytes: 0,
        next_seqno,
    })
}

/// Reads every v1 frame held in `data` (a v1 WAL segment or a manifest), calling
/// `apply(first_seqno, payload)` for each valid frame in order. A torn tail is reported in the outcome;
/// any other damage is [`StorageError::Corruption`].
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

/// Whether a complete frame with valid checksums, v1 or v2, starts anywhere after `pos`. Damage followed by
/// no valid frame can only be the unfinished last write; damage followed by a valid frame is corruption.
/// Both formats are looked for so that a v2 segment whose header was damaged (and is read as v1) is
/// reported as corrupt rather than truncated.
fn valid_frame_after(data: &[u8], pos: usize) -> bool {
    let mut p = pos + 1;
    while p < data.len() {
        if matches!(v2_frame_at(data, p), V2Frame::Valid { .. }) {
            return true;
        }
        if p + FRAME_HEADER_BYTES > data.len() {
            p += 1;
            continue;
        }
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

    /// A v2 frame of `ops` (v2-encoded ops) starting at `seq`.
    fn frame_v2(seq: u64, ops: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        begin_frame_v2(&mut buf, seq);
        buf.extend_from_slice(ops);
        let start = finish_frame_v2(&mut buf);
        buf[start..].to_vec()
    }

    fn put_ops(n: usize) -> Vec<u8> {
        let mut b = crate::batch::WriteBatch::new();
        for i in 0..n {
            b.put_raw(1, format!("key{i}").as_bytes(), b"value");
        }
        b.rep
    }

    type SegmentFrames = Vec<(WalFormat, u64, Vec<u8>)>;

    fn collect_segment(data: &[u8]) -> Result<(SegmentFrames, ReplayOutcome)> {
        let mut got = Vec::new();
        let out = replay_segment(Path::new("w"), data, |f, s, p| {
            got.push((f, s, p.to_vec()));
            let n = crate::batch::FrameOps::new(f, p).count() as u64;
            Ok(s + n)
        })?;
        Ok((got, out))
    }

    #[test]
    fn v2_round_trip_and_torn_tails() {
        let mut data = WAL_V2_MAGIC.to_vec();
        data.extend(frame_v2(1, &put_ops(1)));
        let first = data.len();
        // A single put: 4 (crc) + 1 (len) + 1 (seqno) + 1 (tag) + 1 (tree) + 1 + 4 (key) + 1 + 5 (value).
        assert_eq!(
            first - WAL_V2_MAGIC.len(),
            4 + 1 + 1 + 1 + 1 + 1 + 4 + 1 + 5
        );
        data.extend(frame_v2(2, &put_ops(300)));
        let whole = data.len();
        let (got, out) = collect_segment(&data).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[0].1, got[1].1), (WalFormat::V2, 1, 2));
        assert_eq!((out.valid_len as usize, out.next_seqno), (whole, 302));
        // Every cut inside the second frame (length included) is a torn tail, and so is every cut inside
        // the header.
        for cut in first..whole {
            let (got, out) = collect_segment(&data[..cut]).unwrap();
            assert_eq!((got.len(), out.valid_len as usize), (1, first), "cut {cut}");
        }
        for cut in 0..WAL_V2_MAGIC.len() {
            let (got, out) = collect_segment(&data[..cut]).unwrap();
            assert_eq!((got.len(), out.valid_len), (0, 0), "cut {cut}");
        }
        // Damage in the last frame, or zeros appended, is torn.
        let mut d2 = data.clone();
        d2[whole - 1] ^= 1;
        assert_eq!(collect_segment(&d2).unwrap().1.valid_len as usize, first);
        let mut d3 = data.clone();
        d3.extend_from_slice(&[0u8; 100]);
        assert_eq!(collect_segment(&d3).unwrap().1.torn_bytes, 100);
    }

    #[test]
    fn v2_damage_before_valid_data_is_corruption() {
        let mut data = WAL_V2_MAGIC.to_vec();
        data.extend(frame_v2(1, &put_ops(2)));
        data.extend(frame_v2(3, &put_ops(2)));
        // Content, length and checksum of the first frame.
        for at in [
            WAL_V2_MAGIC.len() + 10,
            WAL_V2_MAGIC.len() + 4,
            WAL_V2_MAGIC.len(),
        ] {
            let mut d = data.clone();
            d[at] ^= 0x40;
            match collect_segment(&d) {
                Err(StorageError::Corruption { offset, .. }) => {
                    assert_eq!(offset as usize, WAL_V2_MAGIC.len(), "at {at}")
                }
                other => panic!("at {at}: {other:?}"),
            }
        }
        // A damaged segment header: read as v1, whose damage is followed by valid v2 frames.
        let mut d = data.clone();
        d[2] ^= 1;
        match collect_segment(&d) {
            Err(StorageError::Corruption { offset, .. }) => assert_eq!(offset, 0),
            other => panic!("{other:?}"),
        }
        // Seqnos must not go backwards.
        let mut d = WAL_V2_MAGIC.to_vec();
        d.extend(frame_v2(5, &put_ops(2)));
        d.extend(frame_v2(6, &put_ops(1)));
        assert!(matches!(
            collect_segment(&d),
            Err(StorageError::Corruption { .. })
        ));
    }

    #[test]
    fn v1_segments_replay_through_replay_segment() {
        let mut b = crate::batch::WriteBatch::new();
        b.put_raw(1, b"k", b"v");
        b.delete_raw(2, b"d");
        let v1 = b.encode_v1();
        let mut payload = (v1.len() as u32).to_le_bytes().to_vec();
        payload.extend_from_slice(&v1);
        let mut data = frame(7, &payload);
        data.extend(frame(9, &payload));
        let (got, out) = collect_segment(&data).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0, got[0].1, got[1].1), (WalFormat::V1, 7, 9));
        assert_eq!(out.next_seqno, 11);
        let ops: Vec<_> = crate::batch::FrameOps::new(WalFormat::V1, &got[0].2)
            .map(|o| o.unwrap())
            .collect();
        assert_eq!(ops, b.ops().map(|o| o.unwrap()).collect::<Vec<_>>());
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
