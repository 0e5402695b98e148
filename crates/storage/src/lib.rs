//! strata-storage: the storage engine every durable byte in strata goes through.
//!
//! Named *trees* (ordered keyspaces on an LSM tree) and named *logs* (append-only segmented logs) share one
//! write-ahead log, so a write batch spanning several trees and logs is atomic.

pub mod error;
pub mod fs;
pub mod options;
pub mod wal;

pub use error::{Result, StorageError};
pub use options::{BlockCompression, FsyncPolicy, Options};
