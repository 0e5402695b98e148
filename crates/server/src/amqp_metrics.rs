//! Exports the AMQP broker's counters and queue depths on `/metrics` as `strata_amqp_*`, read at scrape time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use strata_amqp::Broker;

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
        let queues = self.broker.queue_stats();
        let mut family = encoder.encode_descriptor(
            "strata_amqp_queue_messages_ready",
            "Messages ready for delivery, by queue",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for q in &queues {
            let metric = ConstGauge::new(i64::from(q.ready));
            metric.encode(
                family.encode_family(&[("vhost", q.vhost.as_str()), ("queue", q.name.as_str())])?,
            )?;
        }
        let mut family = encoder.encode_descriptor(
            "strata_amqp_queue_consumers",
            "Consumers, by queue",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for q in &queues {
            let metric = ConstGauge::new(i64::from(q.consumers));
            metric.encode(
                family.encode_family(&[("vhost", q.vhost.as_str()), ("queue", q.name.as_str())])?,
            )?;
        }
        Ok(())
    }
}
