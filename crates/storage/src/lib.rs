//! strata-storage: the storage engine every durable byte in strata goes through.
//!
//! Named *trees* (ordered keyspaces on one LSM tree) and named *logs* (append-only segmented logs) share one
//! write-ahead log, so a [`WriteBatch`] spanning several trees and logs is atomic. Reads are MVCC by
//! sequence number: a [`Snapshot`] sees exactly what was committed before it.
//!
//! What it is not: a distributed store, a SQL engine, or a transaction manager beyond single atomic
//! batches with preconditions ([`WriteBatch::require`]) and per-key read-modify-write
//! ([`Tree::update`], [`Tree::compare_and_swap`], [`Tree::increment`]).
//!
//! Limits (see [`Options`]): keys up to 64 KiB, values and log entries up to 512 MiB (Redis's largest
//! string), batches up to 1 GiB;
//! a writer blocks when 64 MiB of commits are queued behind the current group-commit leader, and writes
//! stall (counted in [`StatsSnapshot::stall_micros`]) while too many memtables or L0 files await flush or
//! compaction. Durability follows [`FsyncPolicy`]. An I/O failure on the write path poisons the engine:
//! writes then fail with [`StorageError::Poisoned`] until it is reopened. The on-disk format and the
//! recovery argument are in `docs/storage-format.md`.
//!
//! ```
//! use strata_storage::{Db, Options, WriteBatch};
//!
//! # fn main() -> strata_storage::Result<()> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let db = Db::open(dir.path(), Options::default())?;
//! let users = db.tree("users")?;
//! let events = db.log("events")?;
//!
//! let mut batch = WriteBatch::new();
//! batch.put(&users, b"alice", b"{\"age\":30}");
//! batch.log_append(&events, b"created alice");
//! let info = db.write(&batch)?; // durable once this returns (fsync = always)
//! assert_eq!(info.log_offsets, vec![0]);
//!
//! let snap = db.snapshot();
//! users.delete(b"alice")?;
//! assert!(users.get(b"alice")?.is_none());
//! assert!(snap.get(&users, b"alice")?.is_some());
//! for entry in snap.prefix(&users, b"al") {
//!     let (key, _value) = entry?;
//!     assert_eq!(&key[..], b"alice");
//! }
//! assert_eq!(users.increment(b"visits", 2)?, 2);
//! assert_eq!(&events.read(0, 10, 1 << 20)?[0].1[..], b"created alice");
//! # Ok(())
//! # }
//! ```

pub mod batch;
pub mod block_cache;
pub mod check;
pub mod checkpoint;
pub mod compaction;
pub mod db;
pub mod db_iter;
pub mod error;
pub mod flush;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod huge;
pub mod iter;
pub mod key;
pub mod log;
pub mod manifest;
pub mod memtable;
pub mod merge;
pub mod options;
pub mod prefetch;
pub mod range_index;
mod readers;
pub(crate) mod skip_hint;
pub mod snapshot;
pub mod sst;
pub mod stats;
pub mod tree;
pub mod version;
pub mod wal;

pub use batch::{PatchBuilder, WriteBatch};
pub use checkpoint::CheckpointInfo;
pub use compaction::filter::{CompactionFilter, FilterContext};
pub use compaction::gc::Decision;
pub use compaction::manual::RawEntries;
pub use db::{CommitFuture, CommitInfo, Db, WalTicket};
pub use db_iter::DbIter;
pub use error::{Result, StorageError};
pub use log::Log;
pub use options::{BackgroundPriority, BlockCompression, FsyncPolicy, Options};
pub use snapshot::Snapshot;
pub use stats::StatsSnapshot;
pub use tree::Tree;
