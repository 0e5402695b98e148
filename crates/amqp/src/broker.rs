//! The broker: configuration, virtual hosts, recovery from storage, the accept loop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use strata_auth::UserStore;
use strata_storage::Db;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::AmqpError;
use crate::exchange::{Binding, Exchange};
use crate::paging::Pager;
use crate::queue::{Consumer, Entry, Queue};
use crate::registry::{ConnectionInfo, QueueCounters, RATE_INTERVAL};
use crate::store::{Store, VHostDef};
use crate::vhost::{VHost, VHostMeta};

/// Recovered messages are queued in chunks of this many (so paging applies while recovering).
const RECOVERY_CHUNK: usize = 1024;

/// How often expired messages and unused `x-expires` queues are looked for.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(50);

/// The broker's limits and negotiation defaults. `AmqpConfig::default()` matches RabbitMQ's defaults where
/// RabbitMQ has one.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// Most simultaneous connections; more are closed at accept.
    pub max_connections: usize,
    /// Highest channel number offered in connection.tune.
    pub channel_max: u16,
    /// Largest frame offered in connection.tune (bytes, including framing).
    pub frame_max: u32,
    /// Heartbeat interval offered in connection.tune (seconds; 0 disables).
    pub heartbeat_secs: u16,
    /// Largest message body accepted.
    pub max_message_bytes: u64,
    /// How long a client may take from TCP connect to connection.open.
    pub handshake_timeout: Duration,
    /// Consumers per channel.
    pub max_consumers_per_channel: usize,
    /// Bytes of ready messages (routing data, headers, bodies) held in memory across all queues; past it,
    /// the bodies of newly queued messages are paged out to storage ([`crate::paging`]) and read back when
    /// consumers reach them.
    pub memory_budget_bytes: u64,
    /// The last-resort high watermark (RabbitMQ's `vm_memory_high_watermark`): when ready messages still
    /// hold more than this in memory (what paging cannot move: routing data and headers of very deep
    /// queues), publishing connections are blocked (`connection.blocked`) and not read until the queues
    /// drain below 90% of it.
    pub max_ready_bytes: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            max_connections: 10_000,
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat_secs: 60,
            // RabbitMQ's default `max_message_size` (128 MiB).
            max_message_bytes: 128 << 20,
            handshake_timeout: Duration::from_secs(10),
            max_consumers_per_channel: 10_000,
            memory_budget_bytes: 1 << 30,
            max_ready_bytes: 2 << 30,
        }
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Open connections.
    pub connections: AtomicUsize,
    /// Messages published.
    pub published: AtomicU64,
    /// Messages acknowledged by consumers.
    pub acked: AtomicU64,
    /// Bytes of ready messages held in memory in all queues at the last sweep.
    pub ready_bytes: AtomicU64,
    /// Ready messages whose body is paged out to storage, at the last sweep.
    pub paged_messages: AtomicU64,
    /// Body bytes of those messages.
    pub paged_bytes: AtomicU64,
}

/// One queue's numbers (see [`Broker::queue_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Virtual host.
    pub vhost: String,
    /// Queue name.
    pub name: String,
    /// Ready messages.
    pub ready: u32,
    /// Consumers.
    pub consumers: u32,
    /// Ready messages whose body is paged out to storage.
    pub paged_messages: u64,
    /// Body bytes of those messages.
    pub paged_bytes: u64,
    /// Ready messages spilled whole to storage (routing data and header too).
    pub spilled_messages: u64,
}

/// Why a virtual host could not be created.
#[derive(Debug, thiserror::Error)]
pub enum VHostError {
    /// Empty, longer than 255 bytes, or with a zero byte.
    #[error("invalid virtual host name {0:?}")]
    InvalidName(String),
    /// Storing it failed.
    #[error(transparent)]
    Storage(#[from] AmqpError),
}

/// A running broker. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Broker {
    /// Its configuration.
    pub config: AmqpConfig,
    /// The node's users.
    pub users: UserStore,
    /// Federation definitions and links (see [`crate::federation`]).
    pub(crate) federation: crate::federation::Federation,
    /// Durable state.
    pub store: Store,
    /// Counters.
    pub stats: BrokerStats,
    /// The memory budget and paging.
    pub pager: Arc<Pager>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    next_conn_id: AtomicU64,
    alarm: AtomicBool,
    alarm_cleared: tokio::sync::Notify,
    alarm_raised: tokio::sync::Notify,
    reply_to: Mutex<HashMap<String, Weak<Consumer>>>,
    next_queue_id: Arc<AtomicU64>,
    connections: RwLock<HashMap<u64, Arc<ConnectionInfo>>>,
    queue_counters: RwLock<HashMap<u64, Arc<QueueCounters>>>,
    last_sample: Mutex<std::time::Instant>,
}

impl Broker {
    /// Opens the broker on `db`: creates the default virtual host `/` and recovers durable exchanges,
    /// queues, bindings and persistent messages (which come back marked redelivered).
    pub fn open(db: &Db, users: UserStore, config: AmqpConfig) -> Result<Arc<Broker>, AmqpError> {
        let store = Store::open(db)?;
        // Pages hold the previous run's in-memory messages: they died with it.
        store.clear_pages()?;
        let pager = Arc::new(Pager::new(store.clone(), config.memory_budget_bytes));
        let recovered = store.recover()?;
        let next_queue_id = Arc::new(AtomicU64::new(
            recovered.queues.iter().map(|q| q.id).max().unwrap_or(0) + 1,
        ));
        let federation = crate::federation::Federation::open(&store)?;
        let mut vhosts: HashMap<String, Arc<VHost>> = HashMap::new();
        let make_vhost = |def: &VHostDef| {
            let v = Arc::new(
                VHost::new(&def.name, store.clone(), next_queue_id.clone())
                    .with_pager(pager.clone()),
            );
            v.set_self();
            v.set_binding_hook(federation.binding_hook());
            *v.meta.write() = VHostMeta {
                description: def.description.clone(),
                tags: def.tags.clone(),
            };
            v
        };
        for def in store.recover_vhosts()? {
            vhosts.insert(def.name.clone(), make_vhost(&def));
        }
        // Objects of a virtual host without a record (cannot happen unless the record was lost): bring the
        // virtual host back rather than drop its data.
        let mut get_vhost = |name: &str| -> Result<Arc<VHost>, AmqpError> {
            if let Some(v) = vhosts.get(name) {
                return Ok(v.clone());
            }
            let def = VHostDef {
                name: name.to_owned(),
                description: String::new(),
                tags: Vec::new(),
            };
            store.put_vhost(&def)?;
            let v = make_vhost(&def);
            vhosts.insert(name.to_owned(), v.clone());
            Ok(v)
        };
        // Policies first, so recovered queues get their effective limits before their messages return.
        for (kind, p) in recovered.policies {
            let v = get_vhost(&p.vhost)?;
            match crate::policy::Compiled::new(p, kind) {
                Ok(c) => v.set_policy(kind, c),
                Err(e) => tracing::error!(error = %e, "stored policy no longer valid; ignored"),
            }
        }
        for e in recovered.exchanges {
            get_vhost(&e.vhost)?.insert_exchange(Exchange::new(
                &e.name,
                e.kind,
                true,
                e.auto_delete,
                e.internal,
                e.arguments,
            ));
        }
        let mut by_id = HashMap::new();
        for q in recovered.queues {
            let v = get_vhost(&q.vhost)?;
            let queue = v.make_queue(&q.name, q.id, true, None, q.auto_delete, q.arguments);
            by_id.insert(q.id, queue.clone());
            v.insert_queue(queue);
        }
        for b in recovered.bindings {
            if let Some(v) = vhosts.get(&b.vhost)
                && let Ok(src) = v.exchange(&b.source)
            {
                src.bind(Binding {
                    destination: b.destination,
                    routing_key: b.routing_key,
                    arguments: b.arguments,
                });
            }
        }
        let mut orphans: HashMap<u64, Vec<u64>> = HashMap::new();
        // Messages come in key order, so one queue's in a row: they are pushed in chunks as they are read,
        // and past the memory budget their bodies stay in storage (paged: the stored copy is the page).
        let mut chunk: Vec<Entry> = Vec::new();
        let mut chunk_queue: Option<Arc<Queue>> = None;
        let mut counts: HashMap<u64, usize> = HashMap::new();
        store.recover_messages(|qid, seq, msg| {
            let Some(q) = by_id.get(&qid) else {
                orphans.entry(qid).or_default().push(seq);
                return;
            };
            if (chunk.len() >= RECOVERY_CHUNK
                || chunk_queue.as_ref().is_some_and(|c| !Arc::ptr_eq(c, q)))
                && let Some(c) = &chunk_queue
            {
                c.push(std::mem::take(&mut chunk));
            }
            chunk_queue = Some(q.clone());
            let mut entry = Entry::new(Arc::new(msg), Some(seq));
            // Whether it was delivered before the restart is not recorded: flag it, as the flag means
            // "may have been delivered before".
            entry.redelivered = true;
            chunk.push(entry);
            *counts.entry(qid).or_default() += 1;
        })?;
        if let Some(c) = &chunk_queue {
            c.push(chunk);
        }
        for (qid, n) in counts {
            if let Some(q) = by_id.get(&qid) {
                tracing::info!(queue = %q.name, messages = n, "recovered queue");
            }
        }
        for (qid, seqs) in orphans {
            store.forget(qid, &seqs);
        }
        for v in vhosts.values() {
            v.reapply_policies();
        }
        Ok(Arc::new(Broker {
            config,
            users,
            federation,
            store,
            stats: BrokerStats::default(),
            pager,
            vhosts: RwLock::new(vhosts),
            next_conn_id: AtomicU64::new(1),
            alarm: AtomicBool::new(false),
            alarm_cleared: tokio::sync::Notify::new(),
            alarm_raised: tokio::sync::Notify::new(),
            reply_to: Mutex::new(HashMap::new()),
            next_queue_id,
            connections: RwLock::new(HashMap::new()),
            queue_counters: RwLock::new(HashMap::new()),
            last_sample: Mutex::new(std::time::Instant::now()),
        }))
    }

    /// Every virtual host, sorted by name.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut all: Vec<Arc<VHost>> = self.vhosts.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Creates virtual host `name` with the standard exchanges, or updates its description and tags if it
    /// exists. Returns whether it was created.
    pub fn add_vhost(
        &self,
        name: &str,
        description: &str,
        tags: &[String],
    ) -> Result<bool, VHostError> {
        if name.is_empty() || name.len() > 255 || name.contains('\0') {
            return Err(VHostError::InvalidName(name.to_owned()));
        }
        let def = VHostDef {
            name: name.to_owned(),
            description: description.to_owned(),
            tags: tags.to_vec(),
        };
        let meta = VHostMeta {
            description: def.description.clone(),
            tags: def.tags.clone(),
        };
        if let Some(v) = self.vhost(name) {
            self.store.put_vhost(&def)?;
            *v.meta.write() = meta;
            return Ok(false);
        }
        self.store.put_vhost(&def)?;
        let v = Arc::new(
            VHost::new(name, self.store.clone(), self.next_queue_id.clone())
                .with_pager(self.pager.clone()),
        );
        v.set_self();
        v.set_binding_hook(self.federation.binding_hook());
        *v.meta.write() = meta;
        let mut vhosts = self.vhosts.write();
        if vhosts.contains_key(name) {
            return Ok(false);
        }
        vhosts.insert(name.to_owned(), v);
        tracing::info!(vhost = %name, "virtual host created");
        Ok(true)
    }

    /// Deletes virtual host `name`: closes its connections (320 CONNECTION_FORCED), deletes its queues (and
    /// their messages), exchanges, bindings, policies, federation definitions and permissions. Returns whether it existed.
    pub fn delete_vhost(self: &Arc<Self>, name: &str) -> Result<bool, AmqpError> {
        if self.vhost(name).is_none() {
            return Ok(false);
        }
        // Its federation definitions go with it (their links stop).
        for (vhost, exchange, _) in self.federated_exchanges() {
            if vhost == name
                && let Err(e) = self.unfederate_exchange(name, &exchange)
            {
                tracing::error!(error = %e, vhost = %name, %exchange, "cannot unfederate exchange");
            }
        }
        for (set, _) in self.upstream_sets(name) {
            if let Err(e) = self.clear_upstream_set(name, &set) {
                tracing::error!(error = %e, vhost = %name, %set, "cannot delete upstream set");
            }
        }
        for (upstream, _) in self.upstreams(name) {
            if let Err(e) = self.clear_upstream(name, &upstream) {
                tracing::error!(error = %e, vhost = %name, %upstream, "cannot delete upstream");
            }
        }
        // Its stored policies go with it.
        for (kind, policies) in [
            (crate::policy::PolicyKind::User, self.policies(Some(name))),
            (
                crate::policy::PolicyKind::Operator,
                self.operator_policies(Some(name)),
            ),
        ] {
            for p in policies {
                if let Err(e) = self.store.delete_policy(kind, name, &p.name) {
                    tracing::error!(error = %e, vhost = %name, policy = %p.name, "cannot delete policy");
                }
            }
        }
        let Some(v) = self.vhosts.write().remove(name) else {
            return Ok(false);
        };
        self.store.delete_vhost(name)?;
        for c in self.connections() {
            if c.vhost == name {
                c.close(&format!("vhost '{name}' is deleted"));
            }
        }
        v.delete_all();
        if let Err(e) = self.users.clear_vhost_permissions(name) {
            tracing::error!(error = %e, vhost = %name, "cannot delete the permissions of a deleted vhost");
        }
        tracing::info!(vhost = %name, "virtual host deleted");
        Ok(true)
    }

    /// Every open connection, in id order.
    pub fn connections(&self) -> Vec<Arc<ConnectionInfo>> {
        let mut all: Vec<Arc<ConnectionInfo>> = self.connections.read().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// Closes the connection named `name` (320 CONNECTION_FORCED with `reason`); false if there is none.
    pub fn close_connection(&self, name: &str, reason: &str) -> bool {
        let found = self
            .connections
            .read()
            .values()
            .find(|c| c.name == name)
            .cloned();
        match found {
            Some(c) => {
                c.close(reason);
                true
            }
            None => false,
        }
    }

    pub(crate) fn register_connection(&self, info: Arc<ConnectionInfo>) {
        self.connections.write().insert(info.id, info);
    }

    pub(crate) fn unregister_connection(&self, id: u64) {
        self.connections.write().remove(&id);
    }

    /// The counters of queue `id` (created on first use).
    pub fn queue_counters(&self, id: u64) -> Arc<QueueCounters> {
        if let Some(c) = self.queue_counters.read().get(&id) {
            return c.clone();
        }
        self.queue_counters.write().entry(id).or_default().clone()
    }

    /// Unacknowledged deliveries per queue id, counted over every open channel.
    pub fn unacked_by_queue(&self) -> HashMap<u64, u32> {
        let mut out: HashMap<u64, u32> = HashMap::new();
        for c in self.connections() {
            for ch in c.channel_list() {
                let un = ch.shared.unacked.lock();
                for p in &un.pending {
                    *out.entry(p.queue.id).or_default() += 1;
                }
            }
        }
        out
    }

    /// Samples message rates once per [`RATE_INTERVAL`] (called by the sweeper).
    fn sample_rates(&self) {
        let secs = {
            let mut last = self.last_sample.lock();
            let elapsed = last.elapsed();
            if elapsed < RATE_INTERVAL {
                return;
            }
            *last = std::time::Instant::now();
            elapsed.as_secs_f64()
        };
        let mut live = std::collections::HashSet::new();
        for v in self.vhosts() {
            let mut delivered = 0u64;
            for q in v.queues() {
                live.insert(q.id);
                let qc = self.queue_counters(q.id);
                let total = q.delivered_total.load(Ordering::Relaxed);
                delivered += total.saturating_sub(qc.deliver_get.get());
                qc.deliver_get.set(total);
                qc.sample(secs);
            }
            v.counters.deliver_get.add(delivered);
            v.counters.sample(secs);
        }
        // Counters of deleted queues go, unless a connection still holds them (a queue declared after the
        // scan above may already be counted into).
        self.queue_counters
            .write()
            .retain(|id, c| live.contains(id) || Arc::strong_count(c) > 1);
        for c in self.connections() {
            for ch in c.channel_list() {
                ch.published.sample(secs);
            }
        }
    }

    /// The virtual host named `name`.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// Every virtual host.
    pub(crate) fn all_vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts.read().values().cloned().collect()
    }

    /// Depth and consumers of every queue, for metrics.
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        let vhosts: Vec<Arc<VHost>> = self.vhosts.read().values().cloned().collect();
        let mut out = Vec::new();
        for v in vhosts {
            for q in v.queues() {
                let (paged, paged_bytes) = q.paged();
                out.push(QueueStats {
                    vhost: v.name.clone(),
                    name: q.name.to_string(),
                    ready: q.message_count(),
                    consumers: q.consumer_count(),
                    paged_messages: paged as u64,
                    paged_bytes: paged_bytes as u64,
                    spilled_messages: q.spilled() as u64,
                });
            }
        }
        out.sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
        out
    }

    /// Expires messages at the heads of queues with TTLs and deletes queues unused past `x-expires`.
    pub fn sweep(&self) {
        let now = crate::queue::now_ms();
        let vhosts: Vec<Arc<VHost>> = self.vhosts.read().values().cloned().collect();
        let (mut ready_bytes, mut paged, mut paged_bytes) = (0u64, 0u64, 0u64);
        for v in vhosts {
            for q in v.queues() {
                q.expire(now);
                ready_bytes += q.resident_bytes() as u64;
                let (n, b) = q.paged();
                paged += n as u64;
                paged_bytes += b as u64;
                if let Some(ttl) = q.effective().args.expires_ms
                    && q.consumer_count() == 0
                    && now.saturating_sub(q.last_used_ms.load(Ordering::Relaxed)) >= ttl
                {
                    tracing::debug!(queue = %q.name, "queue expired (x-expires)");
                    v.remove_queue(&q);
                }
            }
        }
        self.stats.ready_bytes.store(ready_bytes, Ordering::Relaxed);
        self.stats.paged_messages.store(paged, Ordering::Relaxed);
        self.stats.paged_bytes.store(paged_bytes, Ordering::Relaxed);
        self.set_memory(ready_bytes);
        self.sample_rates();
    }

    /// Raises the memory alarm above `max_ready_bytes`, clears it below 90% of it.
    pub fn set_memory(&self, ready_bytes: u64) {
        let max = self.config.max_ready_bytes;
        if ready_bytes > max {
            if !self.alarm.swap(true, Ordering::AcqRel) {
                tracing::warn!(ready_bytes, max, "amqp memory alarm: blocking publishers");
                self.alarm_raised.notify_waiters();
            }
        } else if ready_bytes <= max / 10 * 9 && self.alarm.swap(false, Ordering::AcqRel) {
            tracing::info!(ready_bytes, "amqp memory alarm cleared");
            self.alarm_cleared.notify_waiters();
        }
    }

    /// Whether publishers are blocked.
    pub fn memory_alarm(&self) -> bool {
        self.alarm.load(Ordering::Acquire)
    }

    /// Resolves when the memory alarm is raised (or at once if it is).
    pub async fn alarm_raised(&self) {
        let notified = self.alarm_raised.notified();
        if self.memory_alarm() {
            return;
        }
        notified.await;
    }

    /// Resolves when the memory alarm clears (or at once if it is not raised).
    pub async fn alarm_cleared(&self) {
        let notified = self.alarm_cleared.notified();
        if !self.memory_alarm() {
            return;
        }
        notified.await;
    }

    /// A new connection id.
    pub(crate) fn connection_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a direct reply-to consumer under `token`.
    pub(crate) fn register_reply(&self, token: String, consumer: &Arc<Consumer>) {
        self.reply_to.lock().insert(token, Arc::downgrade(consumer));
    }

    /// Forgets a direct reply-to token.
    pub(crate) fn unregister_reply(&self, token: &str) {
        self.reply_to.lock().remove(token);
    }

    /// The live reply consumer of `token`.
    pub(crate) fn reply_consumer(&self, token: &str) -> Option<Arc<Consumer>> {
        self.reply_to.lock().get(token).and_then(Weak::upgrade)
    }
}

/// Accepts AMQP connections on `listener` until `shutdown` is cancelled; every connection runs on `tracker`
/// and closes with `connection.close` 320 (CONNECTION_FORCED) at shutdown.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    // Federation links run on the same tracker and stop with the same token.
    broker.start_federation(&shutdown, &tracker);
    // One sweeper for every queue's TTL and x-expires (no timer per queue).
    {
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = tick.tick() => broker.sweep(),
                }
            }
        });
    }
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "amqp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if broker.stats.connections.load(Ordering::Relaxed) >= broker.config.max_connections {
            tracing::warn!(%peer, limit = broker.config.max_connections, "amqp connection limit reached");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let broker = broker.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            broker.stats.connections.fetch_add(1, Ordering::Relaxed);
            crate::connection::run(stream, peer, broker.clone(), shutdown).await;
            broker.stats.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
