//! Exports the storage engine's counters on `/metrics` as `strata_storage_*`, read at scrape time.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use strata_storage::Db;

/// Reads [`Db::stats`] on every scrape.
#[derive(Debug)]
pub struct StorageCollector {
    db: Db,
}

impl StorageCollector {
    /// A collector for `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge<N>(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> std::fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for StorageCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = self.db.stats();
        let counters: [(&str, &str, u64); 17] = [
            (
                "strata_storage_user_written_bytes",
                "Key and value bytes written by users",
                s.user_bytes_written,
            ),
            (
                "strata_storage_wal_written_bytes",
                "Bytes appended to the write-ahead log",
                s.wal_bytes_written,
            ),
            (
                "strata_storage_wal_syncs",
                "Write-ahead log fsyncs",
                s.wal_syncs,
            ),
            (
                "strata_storage_commit_groups",
                "Group commits (one WAL write each)",
                s.commit_groups,
            ),
            ("strata_storage_writes", "Write batches committed", s.writes),
            (
                "strata_storage_flush_written_bytes",
                "SSTable bytes written by memtable flushes",
                s.flush_bytes_written,
            ),
            (
                "strata_storage_compaction_written_bytes",
                "SSTable bytes written by compactions",
                s.compaction_bytes_written,
            ),
            (
                "strata_storage_compaction_read_bytes",
                "SSTable bytes read by compactions",
                s.compaction_bytes_read,
            ),
            ("strata_storage_flushes", "Memtable flushes", s.flushes),
            (
                "strata_storage_compactions",
                "Compactions run",
                s.compactions,
            ),
            (
                "strata_storage_stall_microseconds",
                "Time writers spent stalled waiting for flush or compaction",
                s.stall_micros,
            ),
            ("strata_storage_stalls", "Write stalls", s.stalls),
            (
                "strata_storage_compaction_filter_removed",
                "Entries compaction filters removed (expired or dead records)",
                s.compaction_filter_removed,
            ),
            (
                "strata_storage_block_cache_hits",
                "Block cache hits",
                s.cache_hits,
            ),
            (
                "strata_storage_block_cache_misses",
                "Block cache misses",
                s.cache_misses,
            ),
            ("strata_storage_gets", "Point lookups", s.gets),
            (
                "strata_storage_read_bytes",
                "Value bytes returned by reads",
                s.bytes_read,
            ),
        ];
        for (name, help, value) in counters {
            counter(&mut encoder, name, help, value)?;
        }
        gauge(
            &mut encoder,
            "strata_storage_write_amplification",
            "Bytes written to disk (WAL, flushes, compactions) per user byte written",
            s.write_amplification(),
        )?;
        gauge(
            &mut encoder,
            "strata_storage_compaction_debt_bytes",
            "Bytes compaction must still rewrite to bring every level within its target",
            i64::try_from(s.compaction_debt_bytes).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "strata_storage_poisoned",
            "1 when an I/O error has poisoned the engine and writes are refused",
            i64::from(self.db.is_poisoned()),
        )?;
        Ok(())
    }
}
