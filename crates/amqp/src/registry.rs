//! What the management API and metrics read about the running broker: open connections with their channels
//! and consumers, and message counters with their rates (per queue and per virtual host).
//!
//! Connections register at `connection.open` and leave when they end; everything here is either immutable
//! after registration or an atomic / short lock, so reading it never slows the connection's own work.
//! Rates are sampled by the broker's sweeper every [`RATE_INTERVAL`] (RabbitMQ's default statistics
//! interval), not on the hot path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::queue::{ChannelShared, Consumer};

/// How often rates are sampled.
pub const RATE_INTERVAL: Duration = Duration::from_secs(5);

/// A monotonically growing count with its rate over the last sampling interval.
#[derive(Debug, Default)]
pub struct Counter {
    total: AtomicU64,
    sampled: AtomicU64,
    rate_bits: AtomicU64,
}

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Per second over the last sampling interval.
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.rate_bits.load(Ordering::Relaxed))
    }

    /// Takes a sample `secs` after the previous one.
    pub fn sample(&self, secs: f64) {
        let now = self.get();
        let before = self.sampled.swap(now, Ordering::Relaxed);
        let rate = if secs > 0.0 {
            now.saturating_sub(before) as f64 / secs
        } else {
            0.0
        };
        self.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Sets the count to an externally kept total (for counts another structure owns).
    pub fn set(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
}

/// Message counters of a queue.
#[derive(Debug, Default)]
pub struct QueueCounters {
    /// Messages routed into the queue by publishers.
    pub publish: Counter,
    /// Deliveries and gets (mirrors the queue's own `delivered_total` at each sample, for the rate).
    pub deliver_get: Counter,
    /// Acknowledgements.
    pub ack: Counter,
}

/// Message counters of a virtual host.
#[derive(Debug, Default)]
pub struct VHostCounters {
    /// Messages published into the virtual host.
    pub publish: Counter,
    /// Deliveries and gets from its queues (advanced at each sample).
    pub deliver_get: Counter,
    /// Acknowledgements.
    pub ack: Counter,
}

impl VHostCounters {
    /// Samples every counter.
    pub fn sample(&self, secs: f64) {
        self.publish.sample(secs);
        self.deliver_get.sample(secs);
        self.ack.sample(secs);
    }
}

impl QueueCounters {
    /// Samples every counter.
    pub fn sample(&self, secs: f64) {
        self.publish.sample(secs);
        self.deliver_get.sample(secs);
        self.ack.sample(secs);
    }
}

/// A consumer as listed by the management API.
#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    /// Its tag.
    pub tag: String,
    /// Its queue's name (`amq.rabbitmq.reply-to` for direct reply-to).
    pub queue: String,
    /// The consumer itself (flags, credit, unacknowledged count).
    pub consumer: Arc<Consumer>,
    /// Consumer arguments.
    pub arguments: FieldTable,
}

/// An open channel.
#[derive(Debug)]
pub struct ChannelInfo {
    /// Channel number.
    pub number: u16,
    /// State shared with its queues (unacknowledged deliveries, prefetch).
    pub shared: Arc<ChannelShared>,
    /// Publisher confirms on.
    pub confirm: AtomicBool,
    /// Transactional.
    pub transactional: AtomicBool,
    /// Per-consumer prefetch (basic.qos global=false).
    pub prefetch: AtomicU32,
    /// Its consumers.
    pub consumers: Mutex<Vec<ConsumerInfo>>,
    /// Messages published on it.
    pub published: Counter,
}

impl ChannelInfo {
    /// A freshly opened channel.
    pub fn new(number: u16, shared: Arc<ChannelShared>) -> Arc<ChannelInfo> {
        Arc::new(ChannelInfo {
            number,
            shared,
            confirm: AtomicBool::new(false),
            transactional: AtomicBool::new(false),
            prefetch: AtomicU32::new(0),
            consumers: Mutex::new(Vec::new()),
            published: Counter::default(),
        })
    }
}

/// An open connection.
#[derive(Debug)]
pub struct ConnectionInfo {
    /// Broker-wide id.
    pub id: u64,
    /// RabbitMQ's connection name: `peer -> local`.
    pub name: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The broker's address.
    pub local: SocketAddr,
    /// The user who logged in.
    pub user: String,
    /// The virtual host.
    pub vhost: String,
    /// SASL mechanism used.
    pub auth_mechanism: String,
    /// The client's `connection.start-ok` properties.
    pub client_properties: FieldTable,
    /// Opened at (Unix ms).
    pub connected_at_ms: u64,
    /// Negotiated channel_max.
    pub channel_max: u16,
    /// Negotiated frame_max.
    pub frame_max: u32,
    /// Negotiated heartbeat (seconds).
    pub heartbeat: u16,
    /// Open channels.
    pub channels: Mutex<BTreeMap<u16, Arc<ChannelInfo>>>,
    kill: CancellationToken,
    kill_reason: Mutex<Option<String>>,
}

impl ConnectionInfo {
    /// A connection record (`kill` is what [`ConnectionInfo::close`] cancels).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        peer: SocketAddr,
        local: SocketAddr,
        user: String,
        vhost: String,
        auth_mechanism: String,
        client_properties: FieldTable,
        tune: (u16, u32, u16),
        kill: CancellationToken,
    ) -> ConnectionInfo {
        ConnectionInfo {
            id,
            name: format!("{peer} -> {local}"),
            peer,
            local,
            user,
            vhost,
            auth_mechanism,
            client_properties,
            connected_at_ms: crate::queue::now_ms(),
            channel_max: tune.0,
            frame_max: tune.1,
            heartbeat: tune.2,
            channels: Mutex::new(BTreeMap::new()),
            kill,
            kill_reason: Mutex::new(None),
        }
    }

    /// Asks the connection to close with `connection.close` 320 (CONNECTION_FORCED) and `reason`.
    pub fn close(&self, reason: &str) {
        self.kill_reason
            .lock()
            .get_or_insert_with(|| reason.to_owned());
        self.kill.cancel();
    }

    /// Why it was asked to close.
    pub fn close_reason(&self) -> Option<String> {
        self.kill_reason.lock().clone()
    }

    /// Every channel, in number order.
    pub fn channel_list(&self) -> Vec<Arc<ChannelInfo>> {
        self.channels.lock().values().cloned().collect()
    }
}
