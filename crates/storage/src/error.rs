//! The one error type of strata-storage.

use std::io;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
///
/// Errors name the subject and the verb ("fsync WAL segment 12") so an operator can act on them.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed; `op` says what was being done to which file.
    #[error("{op}: {source}")]
    Io {
        /// What was being done, e.g. "fsync WAL segment /data/wal-000003.log".
        op: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A checksum or structural check failed; the engine refuses to use the file.
    #[error("corruption in {} at offset {offset}: {what}", file.display())]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the first damaged record.
        offset: u64,
        /// What was wrong.
        what: String,
    },
    /// An earlier write or fsync failed; retrying an fsync is unsafe, so all later writes fail until the
    /// database is closed and reopened (which recovers from the WAL).
    #[error("storage engine is poisoned after an earlier I/O failure ({cause}); reopen to recover")]
    Poisoned {
        /// The failure that poisoned the engine.
        cause: String,
    },
    /// The caller passed something the engine cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A key, value, batch or record exceeds a documented limit.
    #[error("{what} is {size_bytes} bytes, over the limit of {limit_bytes} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// Another process (or another `Db` in this process) holds the data directory's lock.
    #[error("data directory {} is locked by another user", .0.display())]
    Locked(PathBuf),
    /// The database was closed.
    #[error("storage engine is closed")]
    Closed,
    /// A conditional write batch found a key with a value other than the one it required.
    #[error("condition failed: key {key:?} in tree {tree} does not have the required value")]
    ConditionFailed {
        /// Tree id.
        tree: u32,
        /// The key whose value differed (lossy UTF-8 for display).
        key: String,
    },
    /// An SSTable operation failed (I/O or a structural problem that is not on-disk corruption).
    #[error("SSTable {}: {source}", file.display())]
    Sst {
        /// The SST file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: crate::sst::SstError,
    },
    /// A log read asked for an offset that was truncated away.
    #[error("log {log}: offset {offset} was truncated (head is {head})")]
    OffsetTruncated {
        /// Log name.
        log: String,
        /// Requested offset.
        offset: u64,
        /// First offset still stored.
        head: u64,
    },
}

impl StorageError {
    /// Wraps an I/O error with a description of the operation.
    pub fn io(op: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            op: op.into(),
            source,
        }
    }

    /// Maps an SST error on `file`; on-disk damage becomes [`StorageError::Corruption`] naming the file.
    pub fn from_sst(file: &std::path::Path, e: crate::sst::SstError) -> Self {
        match e {
            crate::sst::SstError::Corruption { offset, what, .. } => {
                StorageError::corruption(file, offset, what)
            }
            source => StorageError::Sst {
                file: file.to_path_buf(),
                source,
            },
        }
    }

    /// A corruption error.
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        StorageError::Corruption {
            file: file.into(),
            offset,
            what: what.into(),
        }
    }
}

/// Adds an operation description to `io::Result`s.
pub(crate) trait IoContext<T> {
    /// Maps an `io::Error` to [`StorageError::Io`] with the operation `op()`.
    fn ctx(self, op: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| StorageError::io(op(), e))
    }
}
