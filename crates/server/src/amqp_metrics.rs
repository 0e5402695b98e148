//! Exports the AMQP broker's counters and queue depths on `/metrics` as `strata_amqp_*`, read at scrape time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use strata_amqp::Broker;

type VHostCounter = fn(&strata_amqp::registry::VHostCounters) -> u64;
type QueueGauge = fn(&QueueRow) -> u32;
type PagedStat = fn(&strata_amqp::broker::QueueStats) -> u64;
type QueueCount = fn(&QueueRow) -> u64;

/// One queue's numbers at scrape time.
struct QueueRow {
    vhost: String,
    name: String,
    ready: u32,
    unacked: u32,
    consumers: u32,
    published: u64,
    delivered: u64,
    acked: u64,
}

/// Reads the broker's statistics on every scrape.
#[derive(Debug)]
pub struct AmqpCollector {
    broker: Arc<Broker>,
}

impl AmqpCollector {
    /// A collector for one broker.
    pub fn new(broker: Arc<Broker>) -> Self {
        Self { broker }
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

impl Collector for AmqpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let stats = &self.broker.stats;
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let connections = ConstGauge::new(as_i64(stats.connections.load(Ordering::Relaxed)));
        connections.encode(encoder.encode_descriptor(
            "strata_amqp_connections",
            "Open AMQP connections",
            None,
            connections.metric_type(),
        )?)?;
        counter(
            &mut encoder,
            "strata_amqp_published",
            "Messages published to the AMQP broker",
            stats.published.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "strata_amqp_acknowledged",
            "Deliveries acknowledged by AMQP consumers",
            stats.acked.load(Ordering::Relaxed),
        )?;
        let unacked = self.broker.unacked_by_queue();
        let mut rows = Vec::new();
        for v in self.broker.vhosts() {
            let mut queues = v.queues();
            queues.sort_by(|a, b| a.name.cmp(&b.name));
            for q in queues {
                let c = self.broker.queue_counters(q.id);
                rows.push(QueueRow {
                    vhost: v.name.clone(),
                    name: q.name.to_string(),
                    ready: q.message_count(),
                    unacked: unacked.get(&q.id).copied().unwrap_or(0),
                    consumers: q.consumer_count(),
                    published: c.publish.get(),
                    delivered: q.delivered_total.load(Ordering::Relaxed),
                    acked: c.ack.get(),
                });
            }
        }
        let gauges: [(&str, &str, QueueGauge); 3] = [
            (
                "strata_amqp_queue_messages_ready",
                "Messages ready for delivery, by queue",
                |r| r.ready,
            ),
            (
                "strata_amqp_queue_messages_unacknowledged",
                "Messages delivered and not yet acknowledged, by queue",
                |r| r.unacked,
            ),
            ("strata_amqp_queue_consumers", "Consumers, by queue", |r| {
                r.consumers
            }),
        ];
        for (name, help, get) in gauges {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for r in &rows {
                let metric = ConstGauge::new(i64::from(get(r)));
                metric.encode(
                    family.encode_family(&[
                        ("vhost", r.vhost.as_str()),
                        ("queue", r.name.as_str()),
                    ])?,
                )?;
            }
        }
        let counters: [(&str, &str, QueueCount); 3] = [
            (
                "strata_amqp_queue_published",
                "Messages routed into the queue by publishers",
                |r| r.published,
            ),
            (
                "strata_amqp_queue_delivered",
                "Messages delivered to consumers or fetched with basic.get, by queue",
                |r| r.delivered,
            ),
            (
                "strata_amqp_queue_acknowledged",
                "Deliveries acknowledged, by queue",
                |r| r.acked,
            ),
        ];
        for (name, help, get) in counters {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for r in &rows {
                let metric = ConstCounter::new(get(r));
                metric.encode(
                    family.encode_family(&[
                        ("vhost", r.vhost.as_str()),
                        ("queue", r.name.as_str()),
                    ])?,
                )?;
            }
        }
        // Paging: per queue from the broker's queue statistics, broker-wide from its counters.
        let paging: [(&str, &str, PagedStat); 3] = [
            (
                "strata_amqp_queue_messages_paged",
                "Ready messages whose body is paged out to storage, by queue",
                |q| q.paged_messages,
            ),
            (
                "strata_amqp_queue_paged_bytes",
                "Body bytes paged out to storage, by queue",
                |q| q.paged_bytes,
            ),
            (
                "strata_amqp_queue_messages_spilled",
                "Ready messages spilled whole to storage, by queue",
                |q| q.spilled_messages,
            ),
        ];
        let stats = self.broker.queue_stats();
        for (name, help, get) in paging {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for q in &stats {
                let metric = ConstGauge::new(i64::try_from(get(q)).unwrap_or(i64::MAX));
                metric.encode(
                    family.encode_family(&[
                        ("vhost", q.vhost.as_str()),
                        ("queue", q.name.as_str()),
                    ])?,
                )?;
            }
        }
        for (name, help, value) in [
            (
                "strata_amqp_paged_messages",
                "Ready messages whose body is paged out to storage, all queues (at the last sweep)",
                self.broker.stats.paged_messages.load(Ordering::Relaxed),
            ),
            (
                "strata_amqp_paged_bytes",
                "Body bytes paged out to storage, all queues (at the last sweep)",
                self.broker.stats.paged_bytes.load(Ordering::Relaxed),
            ),
        ] {
            let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        let vhosts = self.broker.vhosts();
        let per_vhost: [(&str, &str, VHostCounter); 3] = [
            (
                "strata_amqp_vhost_published",
                "Messages published, by virtual host",
                |c| c.publish.get(),
            ),
            (
                "strata_amqp_vhost_delivered",
                "Messages delivered or fetched, by virtual host (advanced every 5 s)",
                |c| c.deliver_get.get(),
            ),
            (
                "strata_amqp_vhost_acknowledged",
                "Deliveries acknowledged, by virtual host",
                |c| c.ack.get(),
            ),
        ];
        for (name, help, get) in per_vhost {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for v in &vhosts {
                let metric = ConstCounter::new(get(&v.counters));
                metric.encode(family.encode_family(&[("vhost", v.name.as_str())])?)?;
            }
        }
        Ok(())
    }
}
