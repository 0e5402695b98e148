//! strata-storage: the storage engine every durable byte in strata goes through.
//!
//! Named *trees* (ordered keyspaces on an LSM tree) and named *logs* (append-only segmented logs) share one
//! write-ahead log, so a write batch spanning several trees and logs is atomic.

pub mod batch;
pub mod block_cache;
pub mod check;
pub mod db;
pub mod db_iter;
pub mod error;
pub mod flush;
pub mod fs;
pub mod log;
pub mod manifest;
pub mod memtable;
pub mod options;
pub mod snapshot;
pub mod stats;
pub mod tree;
pub mod version;
pub mod wal;

pub use batch::WriteBatch;
pub use db::{CommitFuture, CommitInfo, Db};
pub use db_iter::DbIter;
pub use error::{Result, StorageError};
pub use log::Log;
pub use options::{BlockCompression, FsyncPolicy, Options};
pub use snapshot::Snapshot;
pub use stats::StatsSnapshot;
pub use tree::Tree;
