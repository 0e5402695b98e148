//! strata-storage: the storage engine every durable byte in strata goes through.
//!
//! Named *trees* (ordered keyspaces on an LSM tree) and named *logs* (append-only segmented logs) share one
//! write-ahead log, so a write batch spanning several trees and logs is atomic.

pub mod compaction;
pub mod iter;
pub mod key;
pub mod merge;
pub mod sst;
