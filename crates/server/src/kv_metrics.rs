//! Exports the key-value service's per-command counters on `/metrics` as `strata_kv_*`, read at scrape
//! time from the same atomics `INFO commandstats` reads.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use strata_kv::Shared;

/// Reads the service's command statistics on every scrape.
#[derive(Debug)]
pub struct KvCollector {
    shared: Arc<Shared>,
}

impl KvCollector {
    /// A collector for one key-value service.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// One counter family with a `command` label per command that has run.
fn per_command<N>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(&'static str, N)],
) -> std::fmt::Result
where
    ConstCounter<N>: EncodeMetric,
    N: Copy,
{
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for &(command, value) in values {
        let metric = ConstCounter::new(value);
        metric.encode(family.encode_family(&[("command", command)])?)?;
    }
    Ok(())
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for KvCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let sh = &self.shared;
        let names = strata_kv::cmd::stat_names().iter().copied();
        let snapshot = sh.command_stats.snapshot(names);
        let calls: Vec<_> = snapshot.iter().map(|c| (c.name, c.calls)).collect();
        let seconds: Vec<_> = snapshot
            .iter()
            .map(|c| (c.name, c.usec as f64 / 1e6))
            .collect();
        let failed: Vec<_> = snapshot.iter().map(|c| (c.name, c.failed_calls)).collect();
        let rejected: Vec<_> = snapshot
            .iter()
            .map(|c| (c.name, c.rejected_calls))
            .collect();
        per_command(
            &mut encoder,
            "strata_kv_commands",
            "Key-value commands run, by command",
            &calls,
        )?;
        per_command(
            &mut encoder,
            "strata_kv_command_duration_seconds",
            "Time spent running key-value commands, by command",
            &seconds,
        )?;
        per_command(
            &mut encoder,
            "strata_kv_command_errors",
            "Key-value commands that ran and replied with an error, by command",
            &failed,
        )?;
        per_command(
            &mut encoder,
            "strata_kv_command_rejected",
            "Key-value commands refused before running (arity, authentication, ...), by command",
            &rejected,
        )?;
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "strata_kv_connected_clients",
            "Connected key-value clients",
            as_i64(sh.connected_clients()),
        )?;
        gauge(
            &mut encoder,
            "strata_kv_blocked_clients",
            "Key-value clients blocked in BLPOP and similar commands",
            as_i64(sh.blocking.blocked_clients()),
        )?;
        gauge(
            &mut encoder,
            "strata_kv_pubsub_clients",
            "Key-value clients subscribed to pub/sub channels or patterns",
            as_i64(sh.clients.count(|c| c.is_pubsub())),
        )?;
        let disconnections = ConstCounter::new(sh.pubsub.disconnections.load(Ordering::Relaxed));
        disconnections.encode(encoder.encode_descriptor(
            "strata_kv_output_buffer_disconnections",
            "Clients disconnected for exceeding the pub/sub output buffer limits",
            None,
            disconnections.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn per_command_counters_are_labelled_counters() {
        let dir = tempfile::tempdir().unwrap();
        let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
        let config = strata_kv::KvConfig::default();
        let keyspace =
            strata_kv::Keyspace::open(db, config.databases, Arc::new(strata_kv::SystemClock))
                .unwrap();
        let shared = Shared::new(config, keyspace);
        let (get, _) = strata_kv::cmd::lookup_indexed(b"get").unwrap();
        shared
            .command_stats
            .record_call(get, std::time::Duration::from_micros(1500), None);
        shared.command_stats.record_call(
            get,
            std::time::Duration::from_micros(500),
            Some(b"WRONGTYPE x"),
        );
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(KvCollector::new(shared)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("strata_kv_commands_total{command=\"get\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("strata_kv_command_duration_seconds_total{command=\"get\"} 0.002"),
            "{text}"
        );
        assert!(
            text.contains("strata_kv_command_errors_total{command=\"get\"} 1"),
            "{text}"
        );
        assert!(text.contains("strata_kv_blocked_clients 0"), "{text}");
        assert!(text.contains("# TYPE strata_kv_commands counter"), "{text}");
    }
}
