//! Engine statistics: plain atomic counters, cheap to bump on hot paths, exported to `/metrics` by the server.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters maintained by the engine. Read them with [`Stats::snapshot`].
#[derive(Debug, Default)]
pub struct Stats {
    pub(crate) user_bytes_written: AtomicU64,
    pub(crate) wal_bytes_written: AtomicU64,
    pub(crate) wal_syncs: AtomicU64,
    pub(crate) commit_groups: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) flush_bytes_written: AtomicU64,
    pub(crate) compaction_bytes_written: AtomicU64,
    pub(crate) compaction_bytes_read: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) stall_micros: AtomicU64,
    pub(crate) stalls: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) cache_misses: AtomicU64,
    pub(crate) gets: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) compaction_debt_bytes: AtomicU64,
    pub(crate) compaction_filter_removed: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    /// Key and value bytes written by users.
    pub user_bytes_written: u64,
    /// Bytes appended to the WAL.
    pub wal_bytes_written: u64,
    /// WAL fsyncs.
    pub wal_syncs: u64,
    /// Commit groups (each one WAL write).
    pub commit_groups: u64,
    /// Write batches committed.
    pub writes: u64,
    /// SST bytes written by flushes.
    pub flush_bytes_written: u64,
    /// SST bytes written by compactions.
    pub compaction_bytes_written: u64,
    /// SST bytes read by compactions.
    pub compaction_bytes_read: u64,
    /// Memtable flushes.
    pub flushes: u64,
    /// Compactions run.
    pub compactions: u64,
    /// Total time writers spent stalled.
    pub stall_micros: u64,
    /// Number of write stalls.
    pub stalls: u64,
    /// Block cache hits.
    pub cache_hits: u64,
    /// Block cache misses.
    pub cache_misses: u64,
    /// Point lookups.
    pub gets: u64,
    /// Value bytes returned by reads.
    pub bytes_read: u64,
    /// Bytes compaction must still rewrite to bring levels within their targets.
    pub compaction_debt_bytes: u64,
    /// Values compaction filters removed (see [`crate::compaction::filter`]).
    pub compaction_filter_removed: u64,
    /// Approximate bytes in the active memtable (gauge).
    pub memtable_bytes: u64,
    /// Frozen memtables waiting for flush (gauge).
    pub immutable_memtables: u64,
    /// SST files per level (gauge).
    pub level_files: Vec<u64>,
    /// SST bytes per level (gauge).
    pub level_bytes: Vec<u64>,
    /// Live snapshots (gauge).
    pub snapshots: u64,
    /// Forward scans that started past a remembered run of dead keys instead of walking it (skip hints).
    pub skip_hint_uses: u64,
}

impl StatsSnapshot {
    /// (WAL + flush + compaction bytes written) / user bytes written; 0 before any write.
    pub fn write_amplification(&self) -> f64 {
        if self.user_bytes_written == 0 {
            return 0.0;
        }
        (self.wal_bytes_written + self.flush_bytes_written + self.compaction_bytes_written) as f64
            / self.user_bytes_written as f64
    }
}

impl Stats {
    /// Copies every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            user_bytes_written: l(&self.user_bytes_written),
            wal_bytes_written: l(&self.wal_bytes_written),
            wal_syncs: l(&self.wal_syncs),
            commit_groups: l(&self.commit_groups),
            writes: l(&self.writes),
            flush_bytes_written: l(&self.flush_bytes_written),
            compaction_bytes_written: l(&self.compaction_bytes_written),
            compaction_bytes_read: l(&self.compaction_bytes_read),
            flushes: l(&self.flushes),
            compactions: l(&self.compactions),
            stall_micros: l(&self.stall_micros),
            stalls: l(&self.stalls),
            cache_hits: l(&self.cache_hits),
            cache_misses: l(&self.cache_misses),
            gets: l(&self.gets),
            bytes_read: l(&self.bytes_read),
            compaction_debt_bytes: l(&self.compaction_debt_bytes),
            compaction_filter_removed: l(&self.compaction_filter_removed),
            ..StatsSnapshot::default()
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// [`Stats::add`] for a counter only one thread at a time changes (under a lock, or the commit
    /// leader's): a load and a store, no locked instruction on the commit path.
    pub(crate) fn add_exclusive(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}
