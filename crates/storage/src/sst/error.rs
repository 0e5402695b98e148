//! The error type of the SSTable layer (and of internal-key parsing and iteration).

use std::io;

/// What can go wrong while writing, reading or iterating SSTables.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SstError {
    /// An I/O call failed; `op` says what was being done ("read block at 4096 of SST 12").
    #[error("{op}: {source}")]
    Io {
        /// The operation and its subject.
        op: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes read from a file are not a valid SSTable: a checksum mismatch, an out-of-range offset, a
    /// malformed length. The file must not be trusted.
    #[error("corrupt SST {file_id} at offset {offset}: {what}")]
    Corruption {
        /// The file's id as given to [`crate::sst::SstReader::open`].
        file_id: u64,
        /// Byte offset in the file of the block (or footer) found corrupt.
        offset: u64,
        /// What was wrong.
        what: String,
    },
    /// The writer was given a key not strictly greater than the previous one.
    #[error("keys out of order: {key:?} added after {prev_key:?}")]
    KeyOrder {
        /// The previously added internal key.
        prev_key: Vec<u8>,
        /// The offending internal key.
        key: Vec<u8>,
    },
    /// An in-memory internal key could not be decoded (too short, unknown kind).
    #[error("invalid internal key of {len} bytes: {what}")]
    InvalidKey {
        /// Length of the key.
        len: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A caller passed an argument the SST layer cannot store (an empty range tombstone, a range delete
    /// as a point entry, a key or value beyond the size limits).
    #[error("invalid argument: {what}")]
    InvalidArgument {
        /// What was wrong.
        what: String,
    },
    /// An earlier write error left the writer in an unknown state; the output must be discarded.
    #[error("SST writer failed earlier; discard its output")]
    WriterFailed,
}

impl SstError {
    /// Builds a [`SstError::Corruption`].
    pub(crate) fn corruption(file_id: u64, offset: u64, what: impl Into<String>) -> Self {
        SstError::Corruption {
            file_id,
            offset,
            what: what.into(),
        }
    }

    /// True for [`SstError::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, SstError::Corruption { .. })
    }
}
