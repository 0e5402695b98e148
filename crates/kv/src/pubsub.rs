//! Pub/sub: who is subscribed to which channel and pattern, and delivery into each subscriber's queue.
//!
//! PUBLISH runs synchronously inside command execution: it appends the message to each subscriber's
//! unbounded queue and adds its size to the subscriber's `omem`. The subscriber's connection task moves
//! queued messages to its socket and subtracts what it wrote. A subscriber that does not read keeps
//! growing `omem`; past the hard limit, or above the soft limit for longer than the soft period
//! (Redis's `client-output-buffer-limit pubsub 32mb 8mb 60`), it is disconnected — the bound on memory
//! a slow subscriber can cost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;
use strata_resp::Frame;

use crate::clients::ClientHandle;

/// A message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    /// The pattern that matched, for `pmessage`.
    pub pattern: Option<Bytes>,
    /// The channel it was published to.
    pub channel: Bytes,
    /// The payload.
    pub payload: Bytes,
    /// Published with SPUBLISH (`smessage`).
    pub shard: bool,
    /// A MONITOR line (in `payload`), sent as a simple string.
    pub monitor: bool,
    /// A ready-made frame sent as it is (client-side caching invalidations), ignoring the fields above.
    pub frame: Option<Frame>,
}

impl Message {
    /// The frame the subscriber receives: a RESP3 push, an array in RESP2.
    pub fn to_frame(&self) -> Frame {
        if let Some(f) = &self.frame {
            return f.clone();
        }
        if self.monitor {
            return Frame::Simple(self.payload.clone());
        }
        match &self.pattern {
            Some(p) => Frame::Push(vec![
                Frame::bulk("pmessage"),
                Frame::Bulk(p.clone()),
                Frame::Bulk(self.channel.clone()),
                Frame::Bulk(self.payload.clone()),
            ]),
            None => Frame::Push(vec![
                Frame::bulk(if self.shard { "smessage" } else { "message" }),
                Frame::Bulk(self.channel.clone()),
                Frame::Bulk(self.payload.clone()),
            ]),
        }
    }

    /// A message that is the ready-made `frame`.
    pub fn frame(frame: Frame) -> Message {
        Message {
            pattern: None,
            channel: Bytes::new(),
            payload: Bytes::new(),
            shard: false,
            monitor: false,
            frame: Some(frame),
        }
    }

    /// Bytes the message counts against the output buffer limit (about its encoded size).
    pub fn size(&self) -> usize {
        self.pattern.as_ref().map_or(0, |p| p.len() + 16)
            + self.channel.len()
            + self.payload.len()
            + 40
    }
}

/// The output buffer limits of one client class, `client-output-buffer-limit <class> <hard> <soft>
/// <seconds>` (the pub/sub class's defaults; the normal class has none unless set).
#[derive(Debug)]
pub struct OutputLimits {
    /// Bytes past which a subscriber is disconnected at once (0: no limit).
    pub hard: AtomicU64,
    /// Bytes a subscriber may stay above for at most `soft_seconds` (0: no limit).
    pub soft: AtomicU64,
    /// See `soft`.
    pub soft_seconds: AtomicU64,
}

impl OutputLimits {
    /// Limits of `hard` and `soft` bytes, the soft one for `soft_seconds`.
    pub fn new(hard: u64, soft: u64, soft_seconds: u64) -> Self {
        OutputLimits {
            hard: AtomicU64::new(hard),
            soft: AtomicU64::new(soft),
            soft_seconds: AtomicU64::new(soft_seconds),
        }
    }

    /// Whether `client`, holding `omem` bytes of unsent output, must be closed: at or past the hard
    /// limit, or past the soft one for longer than allowed (as Redis's `checkClientOutputBufferLimits`;
    /// the time over the soft limit is kept in the client).
    pub fn exceeded(&self, client: &ClientHandle, omem: u64) -> bool {
        let hard = self.hard.load(Ordering::Relaxed);
        if hard > 0 && omem >= hard {
            return true;
        }
        let soft = self.soft.load(Ordering::Relaxed);
        if soft == 0 || omem < soft {
            if client.soft_limit_since_us.load(Ordering::Relaxed) != 0 {
                client.soft_limit_since_us.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let now = client.age_us() + 1;
        match client.soft_limit_since_us.load(Ordering::Relaxed) {
            0 => {
                client.soft_limit_since_us.store(now, Ordering::Relaxed);
                false
            }
            since => now - since.min(now) > self.soft_seconds.load(Ordering::Relaxed) * 1_000_000,
        }
    }
}

impl Default for OutputLimits {
    /// Redis's pub/sub class defaults.
    fn default() -> Self {
        OutputLimits::new(32 << 20, 8 << 20, 60)
    }
}

type Subscribers = HashMap<Bytes, Vec<Arc<ClientHandle>>>;

/// Subscriptions of every connection.
#[derive(Debug, Default)]
pub struct PubSub {
    channels: RwLock<Subscribers>,
    patterns: RwLock<Subscribers>,
    shard_channels: RwLock<Subscribers>,
    /// Output buffer limits for subscribers.
    pub limits: OutputLimits,
    /// Clients disconnected for exceeding an output buffer limit, of any class (INFO's
    /// `client_output_buffer_limit_disconnections`).
    pub disconnections: AtomicU64,
}

/// Which kind of subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SUBSCRIBE.
    Channel,
    /// PSUBSCRIBE.
    Pattern,
    /// SSUBSCRIBE.
    Shard,
}

impl PubSub {
    fn map(&self, kind: Kind) -> &RwLock<Subscribers> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard_channels,
        }
    }

    /// Adds a subscription (the caller knows it is new for this client).
    pub fn subscribe(&self, kind: Kind, name: &Bytes, client: &Arc<ClientHandle>) {
        self.map(kind)
            .write()
            .entry(name.clone())
            .or_default()
            .push(client.clone());
    }

    /// Removes a subscription.
    pub fn unsubscribe(&self, kind: Kind, name: &[u8], client_id: u64) {
        let mut map = self.map(kind).write();
        if let Some(subs) = map.get_mut(name) {
            subs.retain(|c| c.id != client_id);
            if subs.is_empty() {
                map.remove(name);
            }
        }
    }

    /// Sends `payload` to the subscribers of `channel` and of every matching pattern; returns how many
    /// received it.
    pub fn publish(&self, channel: &Bytes, payload: &Bytes, shard: bool) -> usize {
        let mut receivers = 0;
        let kind = if shard { Kind::Shard } else { Kind::Channel };
        if let Some(subs) = self.map(kind).read().get(channel) {
            let msg = Message {
                pattern: None,
                channel: channel.clone(),
                payload: payload.clone(),
                shard,
                monitor: false,
                frame: None,
            };
            for c in subs {
                self.deliver(c, msg.clone());
                receivers += 1;
            }
        }
        if shard {
            return receivers;
        }
        let patterns = self.patterns.read();
        for (pattern, subs) in patterns.iter() {
            if !crate::cmd::glob_match(pattern, channel, false) {
                continue;
            }
            let msg = Message {
                pattern: Some(pattern.clone()),
                channel: channel.clone(),
                payload: payload.clone(),
                shard: false,
                monitor: false,
                frame: None,
            };
            for c in subs {
                self.deliver(c, msg.clone());
                receivers += 1;
            }
        }
        receivers
    }

    /// Queues one message for a subscriber, or disconnects it when the message takes its output
    /// buffer past the limits.
    /// Queues a message for one client, closing it if that breaks the output buffer limits.
    pub fn deliver(&self, client: &ClientHandle, msg: Message) {
        if client.is_killed() {
            return;
        }
        let size = msg.size();
        let omem = client.add_output(size) as u64;
        if self.limits.exceeded(client, omem) {
            tracing::warn!(
                client = client.id,
                addr = %client.peer,
                omem,
                "closing pub/sub client for overcoming of output buffer limits"
            );
            self.disconnections.fetch_add(1, Ordering::Relaxed);
            client.close();
            return;
        }
        // A closed receiver means the connection is ending; nothing to do.
        let _ = client.messages.send(msg);
    }

    /// Active channels (with at least one subscriber) matching `pattern`, or all.
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.map(kind)
            .read()
            .keys()
            .filter(|c| pattern.is_none_or(|p| crate::cmd::glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    /// Subscribers of one channel.
    pub fn numsub(&self, kind: Kind, channel: &[u8]) -> usize {
        self.map(kind).read().get(channel).map_or(0, Vec::len)
    }

    /// Number of distinct patterns subscribed to.
    pub fn numpat(&self) -> usize {
        self.patterns.read().len()
    }

    /// The subscriptions of the clients `wanted` selects, by client id: what an ACL change of their user
    /// checks again. Walks every subscription, so for rare events only.
    pub fn subscriptions_where(
        &self,
        wanted: impl Fn(&ClientHandle) -> bool,
    ) -> HashMap<u64, Vec<(Kind, Bytes)>> {
        let mut found: HashMap<u64, Vec<(Kind, Bytes)>> = HashMap::new();
        for kind in [Kind::Channel, Kind::Pattern, Kind::Shard] {
            for (name, subs) in self.map(kind).read().iter() {
                for client in subs.iter().filter(|c| wanted(c)) {
                    found
                        .entry(client.id)
                        .or_default()
                        .push((kind, name.clone()));
                }
            }
        }
        found
    }
}
