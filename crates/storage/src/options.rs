//! Engine configuration.

use std::fmt;
use std::sync::Arc;

use crate::fs::{FileSystem, OsFs};

/// When the write-ahead log is fsynced (Redis's naming).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every acknowledged write is fsynced first; concurrent writers share one fsync (group commit).
    #[default]
    Always,
    /// A background thread fsyncs about once a second; a crash loses at most about a second of writes.
    EverySec,
    /// Never fsync explicitly; the OS decides. A process crash loses nothing, power loss may.
    No,
}

/// Block compression for SSTables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BlockCompression {
    /// Blocks are stored as is.
    None,
    /// Blocks are compressed with LZ4 when that saves space.
    #[default]
    Lz4,
}

/// How the engine's background threads (flush, compaction, and those the layers above start with
/// [`crate::flush::background_priority`], as strata-kv's active expiry) are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackgroundPriority {
    /// Linux's `SCHED_IDLE`: they run on CPU time no other thread wants, and a thread serving requests
    /// (or a client on the same machine) that wakes takes its core from them at once. At nice 10, the
    /// scheduler (EEVDF) let a busy background thread finish its time slice first: one such thread
    /// beside a 50-connection XADD run halved its throughput, one at `SCHED_IDLE` cost nothing
    /// measurable (session 26, docs/benchmarks.md). The engine's own work cannot starve them: a writer
    /// that must wait for a flush or compaction blocks, leaving its core to them. Other programs
    /// keeping every core busy can, and writes then stall until they stop; choose `Low` there.
    #[default]
    Idle,
    /// nice 10: a lower share of the CPU than the threads serving requests, but always a share.
    Low,
}

/// Options for [`crate::Db::open`]. `Options::default()` works on a laptop.
#[derive(Clone)]
pub struct Options {
    /// WAL durability policy.
    pub fsync: FsyncPolicy,
    /// Size at which the active memtable is frozen and a new one started.
    pub memtable_size_bytes: usize,
    /// Frozen memtables waiting for flush before writers stall.
    pub max_immutable_memtables: usize,
    /// Bytes of decoded SST blocks kept in memory.
    pub block_cache_bytes: u64,
    /// Bloom filter bits per key (0 disables filters).
    pub bloom_bits_per_key: u32,
    /// SST block compression.
    pub compression: BlockCompression,
    /// Uncompressed SST block size.
    pub block_size_bytes: usize,
    /// Number of L0 files that triggers an L0 → L1 compaction.
    pub l0_compaction_trigger: usize,
    /// Number of L0 files at which writes stall until compaction catches up.
    pub l0_stall_files: usize,
    /// Target total size of L1; each deeper level is `level_size_multiplier` times larger.
    pub level1_target_bytes: u64,
    /// Growth factor between levels.
    pub level_size_multiplier: u64,
    /// Number of levels including L0.
    pub max_levels: usize,
    /// Size at which compaction output files are split.
    pub target_file_size_bytes: u64,
    /// Size at which a log segment is closed and a new one started.
    pub log_segment_bytes: u64,
    /// Largest accepted write batch (encoded), also the largest WAL record.
    pub max_batch_bytes: usize,
    /// Largest accepted key.
    pub max_key_bytes: usize,
    /// Largest accepted value or log entry.
    pub max_value_bytes: usize,
    /// Bytes of encoded writes queued behind the current group-commit leader before new writers block.
    pub max_pending_write_bytes: usize,
    /// Whether background compaction runs. When off, call [`crate::Db::compact_once`] yourself: writes
    /// stall once `l0_stall_files` L0 files accumulate.
    pub background_compaction: bool,
    /// How the background threads are scheduled.
    pub background_priority: BackgroundPriority,
    /// The file layer; tests pass a fault-injecting one.
    pub fs: Arc<dyn FileSystem>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fsync: FsyncPolicy::Always,
            memtable_size_bytes: 64 << 20,
            max_immutable_memtables: 4,
            block_cache_bytes: 256 << 20,
            bloom_bits_per_key: 10,
            compression: BlockCompression::Lz4,
            block_size_bytes: 4096,
            l0_compaction_trigger: 4,
            l0_stall_files: 20,
            level1_target_bytes: 256 << 20,
            level_size_multiplier: 10,
            max_levels: 7,
            target_file_size_bytes: 64 << 20,
            log_segment_bytes: 64 << 20,
            // A batch holds at least one value of the largest size.
            max_batch_bytes: 1 << 30,
            max_key_bytes: 64 << 10,
            // Redis's largest string (proto-max-bulk-len).
            max_value_bytes: 512 << 20,
            max_pending_write_bytes: 64 << 20,
            background_compaction: true,
            background_priority: BackgroundPriority::Idle,
            fs: Arc::new(OsFs),
        }
    }
}

impl Options {
    /// Checks that the options are usable; [`crate::Db::open`] calls this.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |what: &str| Err(crate::StorageError::InvalidArgument(what.to_string()));
        if self.memtable_size_bytes < 1024 {
            return bad("memtable_size_bytes must be at least 1024");
        }
        if self.max_immutable_memtables == 0 {
            return bad("max_immutable_memtables must be at least 1");
        }
        if self.block_size_bytes < 256 || self.block_size_bytes > (16 << 20) {
            return bad("block_size_bytes must be within 256 B..=16 MiB");
        }
        if self.l0_compaction_trigger == 0 || self.l0_stall_files <= self.l0_compaction_trigger {
            return bad("need 1 <= l0_compaction_trigger < l0_stall_files");
        }
        if self.max_levels < 2 || self.level_size_multiplier < 2 {
            return bad("need max_levels >= 2 and level_size_multiplier >= 2");
        }
        if self.log_segment_bytes < 64 {
            return bad("log_segment_bytes must be at least 64");
        }
        if self.max_batch_bytes > (1 << 30) || self.max_pending_write_bytes > (1 << 30) {
            return bad("max_batch_bytes and max_pending_write_bytes must be at most 1 GiB");
        }
        if self.max_value_bytes > self.max_batch_bytes {
            return bad("max_value_bytes must not exceed max_batch_bytes");
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > (1 << 20) {
            return bad("max_key_bytes must be within 1..=1 MiB");
        }
        Ok(())
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("fsync", &self.fsync)
            .field("memtable_size_bytes", &self.memtable_size_bytes)
            .field("max_immutable_memtables", &self.max_immutable_memtables)
            .field("block_cache_bytes", &self.block_cache_bytes)
            .field("bloom_bits_per_key", &self.bloom_bits_per_key)
            .field("compression", &self.compression)
            .field("l0_compaction_trigger", &self.l0_compaction_trigger)
            .field("level1_target_bytes", &self.level1_target_bytes)
            .field("max_levels", &self.max_levels)
            .field("log_segment_bytes", &self.log_segment_bytes)
            .field("fs", &self.fs)
            .finish_non_exhaustive()
    }
}
