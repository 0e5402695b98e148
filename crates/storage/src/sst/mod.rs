//! SSTables: immutable sorted files of internal keys.
//!
//! An SSTable holds point entries (puts and point deletes, keyed by internal key) in data blocks with
//! prefix-compressed keys and restart points, a bloom filter over user keys, a block of range tombstones, a
//! properties block ([`SstMeta`]), an index with one entry per data block and a fixed-size footer. Every
//! block carries a crc32c, and the footer has its own checksum and a magic number; part 2 of
//! `docs/storage-format.md` documents the byte layout and why damage is always detected.
//!
//! Limits: one key plus value at most [`MAX_ENTRY_BYTES`]; the target block size is clamped to
//! `256 B..=64 MiB`. Readers never panic on damaged files: every offset and length read from a file is
//! bounds-checked and yields [`SstError::Corruption`].
//!
//! ```
//! use std::sync::Arc;
//! use strata_storage::key::{internal_key, ValueKind};
//! use strata_storage::sst::{SstOptions, SstReader, SstWriter};
//!
//! let mut w = SstWriter::new(Vec::new(), SstOptions::default());
//! w.add(&internal_key(b"apple", 2, ValueKind::Put), b"red").unwrap();
//! w.add(&internal_key(b"apple", 1, ValueKind::Put), b"green").unwrap();
//! let (bytes, meta) = w.finish().unwrap();
//! assert_eq!(meta.entries, 2);
//! let r = SstReader::open(Arc::new(bytes), 7, None).unwrap();
//! let (seqno, kind, value) = r.get(b"apple", 1).unwrap().unwrap();
//! assert_eq!((seqno, kind, &value[..]), (1, ValueKind::Put, &b"green"[..]));
//! ```

pub mod block;
pub mod bloom;
mod builder;
mod error;
pub mod format;
mod props;
mod reader;

use std::io;

pub use builder::SstWriter;
pub use error::SstError;
pub use reader::{SstIterator, SstReader, VerifyReport};

use crate::key::SeqNo;

/// Largest key plus value one entry may have.
pub const MAX_ENTRY_BYTES: usize = 256 << 20;

/// How data blocks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Stored as is.
    #[default]
    None,
    /// lz4 block compression; a block that does not shrink by at least 1/8 is stored raw.
    Lz4,
}

/// How an [`SstWriter`] lays out its file.
#[derive(Debug, Clone, PartialEq)]
pub struct SstOptions {
    /// Target uncompressed size of one data block (clamped to 256 B..=64 MiB). Default 4096.
    pub block_size_bytes: usize,
    /// Entries between two restart points (full keys) inside a block. Default 16.
    pub restart_interval: usize,
    /// Bloom filter bits per user key; 0 writes no filter. Default 10 (about 1% false positives).
    pub bloom_bits_per_key: u32,
    /// Data block compression. Default none.
    pub compression: Compression,
}

impl Default for SstOptions {
    fn default() -> Self {
        SstOptions {
            block_size_bytes: 4096,
            restart_interval: 16,
            bloom_bits_per_key: 10,
            compression: Compression::None,
        }
    }
}

/// Deletes every version with seqno < `seqno` of every user key in `start..end`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RangeTombstone {
    /// First deleted user key (inclusive).
    pub start: Vec<u8>,
    /// End of the deleted range (exclusive); must be greater than `start`.
    pub end: Vec<u8>,
    /// Sequence number of the range delete.
    pub seqno: SeqNo,
}

impl RangeTombstone {
    /// True when this tombstone deletes `user_key` at version `seqno`.
    #[inline]
    pub fn covers(&self, user_key: &[u8], seqno: SeqNo) -> bool {
        seqno < self.seqno && self.start.as_slice() <= user_key && user_key < self.end.as_slice()
    }
}

/// What a finished SSTable holds; persisted in its properties block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SstMeta {
    /// Size of the whole file in bytes.
    pub file_size: u64,
    /// Point entries (puts and point deletes).
    pub entries: u64,
    /// Point deletes among `entries`.
    pub point_tombstones: u64,
    /// Range tombstones in the range-tombstone block.
    pub range_tombstones: u64,
    /// Smallest user key of any point entry or range tombstone start (empty for an empty file).
    pub smallest_user_key: Vec<u8>,
    /// Largest user key of any point entry or range tombstone end (empty for an empty file).
    pub largest_user_key: Vec<u8>,
    /// Smallest seqno of any entry or range tombstone (0 for an empty file).
    pub min_seqno: SeqNo,
    /// Largest seqno of any entry or range tombstone (0 for an empty file).
    pub max_seqno: SeqNo,
    /// Sum of internal key lengths of point entries.
    pub raw_key_bytes: u64,
    /// Sum of value lengths of point entries.
    pub raw_value_bytes: u64,
}

/// Positioned reads from an immutable file.
pub trait RandomAccessFile: Send + Sync {
    /// Fills `buf` from `offset`; fails if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True for an empty file.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

impl RandomAccessFile for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

fn read_from_slice(data: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
    let src = start
        .checked_add(buf.len())
        .and_then(|end| data.get(start..end))
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    buf.copy_from_slice(src);
    Ok(())
}

/// In-memory files, for tests, fuzzing and tools.
impl RandomAccessFile for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_from_slice(self, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(Vec::len(self) as u64)
    }
}

impl RandomAccessFile for bytes::Bytes {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_from_slice(self, buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(bytes::Bytes::len(self) as u64)
    }
}

/// A cache of uncompressed, checksum-verified blocks keyed by `(file_id, block_offset)`.
pub trait BlockCache: Send + Sync {
    /// The cached block, if any.
    fn get(&self, file_id: u64, block_offset: u64) -> Option<bytes::Bytes>;
    /// Caches a block.
    fn insert(&self, file_id: u64, block_offset: u64, block: bytes::Bytes);
}

/// Entry points for fuzzers (`fuzz/` targets and the proptest in this crate).
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::Arc;

    use super::SstReader;
    use crate::iter::InternalIterator;
    use crate::key::MAX_SEQNO;

    /// Bounds the work per input so a fuzzer never stalls on one case.
    const MAX_STEPS: usize = 10_000;

    /// Opens `bytes` as an SSTable and exercises every read path; must never panic or hang.
    ///
    /// Runs twice: once as production does, and once with checksum checks disabled so that the parsers
    /// behind the checksums (blocks, index, properties, filter, range tombstones) see arbitrary bytes too.
    pub fn fuzz_open_and_scan(bytes: &[u8]) {
        for verify_checksums in [true, false] {
            let file = Arc::new(bytes.to_vec());
            let Ok(r) = SstReader::open_inner(file, 1, None, verify_checksums) else {
                continue;
            };
            let _ = r.verify();
            let mut it = r.iter();
            let mut keys = Vec::new();
            if it.seek_to_first().is_ok() {
                for _ in 0..MAX_STEPS {
                    if !it.valid() {
                        break;
                    }
                    if keys.len() < 8 {
                        keys.push(it.key().to_vec());
                    }
                    let _ = it.value();
                    if it.next().is_err() {
                        break;
                    }
                }
            }
            if it.seek_to_last().is_ok() {
                for _ in 0..MAX_STEPS {
                    if !it.valid() || it.prev().is_err() {
                        break;
                    }
                }
            }
            for k in &keys {
                let _ = it.seek(k);
                let _ = it.seek_for_prev(k);
                let uk = crate::key::user_key(k);
                let _ = r.may_contain(uk);
                let _ = r.get(uk, MAX_SEQNO);
            }
            let _ = r.range_tombstones().len();
        }
    }
}

#[cfg(test)]
mod tests;
