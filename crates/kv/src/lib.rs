//! strata-kv: the Redis-compatible key-value service.
//!
//! [`serve`] accepts connections on a listener until its shutdown token is cancelled. Each connection reads
//! requests with [`strata_resp::RequestParser`], runs every command it has buffered (so a pipeline of N
//! commands costs one read and one write, not N), and writes the replies in one go.
//!
//! Commands live one per module under `cmd/` (mini-redis's layout): a table entry gives the name, the arity
//! in Redis's convention (positive: exact; negative: at least) and the function that runs it. Errors are
//! Redis's exact strings, since clients and test suites match on them.
//!
//! This crate knows nothing of flags or config files: the server builds a [`KvConfig`] and hands it in.
//!
//! Besides the data ([`keyspace`]), [`Shared`] holds what connections see of each other: the registry of
//! live clients ([`clients`]), blocked clients waiting for keys ([`blocking`]), pub/sub subscriptions
//! ([`pubsub`]) and the per-command statistics and slow log ([`stats`]).

pub mod acl;
pub mod blocking;
pub mod clients;
pub mod cmd;
mod connection;
pub mod evict;
pub mod keyspace;
pub mod latency;
mod lookahead;
pub mod notify;
pub mod pubsub;
pub mod script;
mod session;
pub mod stats;
pub mod tracking;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use strata_resp::Limits;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use keyspace::{Clock, Keyspace, ManualClock, SystemClock};
pub use session::Session;

/// What the key-value service is configured with.
#[derive(Debug, Clone)]
pub struct KvConfig {
    /// The password `AUTH` must present; `None` means every connection starts authenticated.
    pub requirepass: Option<String>,
    /// Number of logical databases (`SELECT 0..n`), Redis's default 16.
    pub databases: usize,
    /// Most simultaneous clients (`maxclients`, Redis's default 10000); past it a new connection gets
    /// `-ERR max number of clients reached` and is closed.
    pub max_clients: usize,
    /// Request size limits.
    pub limits: Limits,
    /// Cancelled by the `SHUTDOWN` command: whoever runs the process watches it and stops the whole
    /// node as on SIGTERM (draining connections, syncing storage).
    pub shutdown_request: CancellationToken,
    /// `maxmemory` at start, in bytes (0: none); CONFIG SET changes it.
    pub maxmemory: u64,
    /// `maxmemory-policy` at start; CONFIG SET changes it.
    pub maxmemory_policy: String,
    /// `enable-debug-command`: `no` (Redis's default), `yes`, or `local` (loopback clients only).
    pub enable_debug_command: String,
    /// Bytes the process's allocator has handed out, when the server can tell (INFO's
    /// `allocator_allocated`); see [`evict`] for why eviction does not use it.
    pub allocated_bytes: Option<fn() -> u64>,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            requirepass: None,
            databases: 16,
            max_clients: 10_000,
            limits: Limits::default(),
            shutdown_request: CancellationToken::new(),
            maxmemory: 0,
            maxmemory_policy: "noeviction".to_owned(),
            enable_debug_command: "no".to_owned(),
            allocated_bytes: None,
        }
    }
}

/// State shared by every connection of one service.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: KvConfig,
    /// The data.
    pub keyspace: Keyspace,
    next_client_id: AtomicU64,
    client_count: AtomicUsize,
    /// When the service started.
    pub started: std::time::Instant,
    /// Counters INFO reports.
    pub stats: ServerStats,
    /// Parameters set with CONFIG SET that strata accepts but does not act on (encodings, tuning knobs
    /// of Redis's own data structures), so CONFIG GET returns what was set, as clients expect.
    pub config_params: parking_lot::Mutex<std::collections::BTreeMap<String, String>>,
    /// Held shared by every command and exclusively by EXEC, so a transaction runs with nothing
    /// interleaved (Redis's isolation).
    pub exec_lock: parking_lot::RwLock<()>,
    /// Where each outstanding SCAN cursor stopped.
    pub scan_cursors: parking_lot::Mutex<cmd::ScanCursors>,
    /// SAVE/BGSAVE progress and results (INFO persistence, LASTSAVE).
    pub save_state: Arc<cmd::SaveState>,
    /// BGREWRITEAOF progress (INFO persistence).
    pub log_rewrite: Arc<cmd::LogRewrite>,
    /// Every live connection.
    pub clients: clients::ClientRegistry,
    /// Clients blocked on keys.
    pub blocking: blocking::Blocking,
    /// Pub/sub subscriptions.
    pub pubsub: pubsub::PubSub,
    /// `CLIENT PAUSE`.
    pub pause: clients::Pause,
    /// Per-command counters, indexed like [`cmd::commands`].
    pub command_stats: stats::CommandStats,
    /// The slow log.
    pub slowlog: stats::SlowLog,
    /// Samples for `instantaneous_ops_per_sec`.
    pub ops: stats::OpsSampler,
    /// `maxclients` (starts as `config.max_clients`; CONFIG SET changes it).
    pub max_clients: AtomicUsize,
    /// The default user's password (starts as `config.requirepass`; CONFIG SET changes it).
    pub password: Password,
    /// ACL users (`ACL SETUSER`, `AUTH <user> <password>`), their permissions and the ACL log.
    pub acl: acl::Acl,
    /// Whether connections must authenticate (the default user's state, cached).
    pub auth: AuthRequired,
    /// `client-output-buffer-limit normal`: a client whose unsent replies pass the hard limit is
    /// disconnected, as in Redis (the soft limit is accepted and not enforced for this class).
    pub normal_limits: pubsub::OutputLimits,
    /// `client-output-buffer-limit replica` (shown by CONFIG GET; strata has no replica clients).
    pub replica_limits: pubsub::OutputLimits,
    /// `maxmemory` and `maxmemory-policy`.
    pub memory: stats::MemoryLimit,
    /// `notify-keyspace-events`.
    pub notify: notify::Notifier,
    /// The address the service listens on (set by [`serve`]).
    pub local_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Cancelled once the listener is closed at shutdown: the client that sent SHUTDOWN keeps its
    /// connection until then, so, as with Redis (whose process is gone by then), whoever sees that
    /// connection close is refused on connecting again.
    pub listener_closed: CancellationToken,
    /// Clients that ran MONITOR.
    pub monitors: clients::Monitors,
    /// The latency monitor (`LATENCY`).
    pub latency: latency::LatencyMonitor,
    /// Cache mode: the key table behind eviction and `OBJECT FREQ`/`IDLETIME`.
    pub evict: evict::Eviction,
    /// Bytes in the clients' buffers (query buffers and unsent output), kept by each
    /// [`clients::ClientHandle`]: part of the memory `maxmemory` bounds, and what client eviction trims.
    pub client_memory: Arc<clients::ClientMemory>,
    /// Client-side caching.
    pub tracking: tracking::Tracking,
    /// Lua scripting: the EVAL script cache, FUNCTION libraries, the running script.
    pub scripting: script::Scripting,
    /// `min-replicas-to-write` and `min-replicas-max-lag` both non-zero: strata has no replicas, so writes
    /// are refused with `-NOREPLICAS`, as Redis refuses them without enough good replicas.
    pub replicas_required: std::sync::atomic::AtomicBool,
    /// The client that last wrote replies (see `connection::serve_client`: whether others are active).
    pub last_replier: AtomicU64,
    /// `stream-node-max-entries` and `stream-node-max-bytes`, read by every XADD.
    pub(crate) stream_nodes: cmd::streams::NodeLimits,
    /// This value's own `Arc` (scripts keep a strong reference while they run).
    me: std::sync::Weak<Shared>,
}

/// Counters of the whole service, for INFO.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Commands run.
    pub commands: stats::Counter,
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused at `max_clients`.
    pub rejected_connections: AtomicU64,
    /// Unix seconds of the last successful SAVE.
    pub last_save_unix: AtomicU64,
}

/// `requirepass` as last configured (what CONFIG GET shows); setting it sets the default ACL user's
/// password, which is what AUTH checks.
#[derive(Debug)]
pub struct Password {
    value: parking_lot::RwLock<Option<String>>,
}

impl Password {
    fn new(value: Option<String>) -> Self {
        Password {
            value: parking_lot::RwLock::new(value),
        }
    }

    /// The password, if any.
    pub fn get(&self) -> Option<String> {
        self.value.read().clone()
    }

    /// Sets the password; `None` (or CONFIG SET's empty string) removes it. The default user's password
    /// follows: `acl` is the service's user table.
    pub fn set(&self, value: Option<String>, acl: &acl::Acl) {
        let mut guard = self.value.write();
        acl.set_default_password(value.as_deref().map(str::as_bytes));
        *guard = value;
    }
}

/// Whether a new connection must authenticate, cached per version of the user table: it must unless
/// the default user is on and needs no password (`nopass`), as in Redis.
#[derive(Debug)]
pub struct AuthRequired {
    /// `generation << 1 | required`, or `u64::MAX` before the first look.
    cached: AtomicU64,
}

impl Default for AuthRequired {
    fn default() -> Self {
        AuthRequired {
            cached: AtomicU64::new(u64::MAX),
        }
    }
}

impl AuthRequired {
    /// Whether connections must authenticate now.
    pub fn get(&self, acl: &acl::Acl) -> bool {
        let generation = acl.generation();
        let cached = self.cached.load(Ordering::Acquire);
        if cached != u64::MAX && cached >> 1 == generation {
            return cached & 1 == 1;
        }
        let user = acl.default_user();
        let required = !(user.enabled() && user.nopass());
        self.cached
            .store(generation << 1 | u64::from(required), Ordering::Release);
        required
    }
}

impl Shared {
    /// Whether connections must authenticate now (see [`AuthRequired`]).
    pub fn auth_required(&self) -> bool {
        self.auth.get(&self.acl)
    }

    /// Shared state for a service configured with `config`, serving `keyspace`.
    pub fn new(config: KvConfig, keyspace: Keyspace) -> Arc<Self> {
        let memory = stats::MemoryLimit::default();
        memory.set_limit(config.maxmemory);
        memory.set_policy(&config.maxmemory_policy);
        let shared = Arc::new_cyclic(|me| Shared {
            keyspace,
            next_client_id: AtomicU64::new(1),
            client_count: AtomicUsize::new(0),
            started: std::time::Instant::now(),
            stats: ServerStats::default(),
            config_params: parking_lot::Mutex::new(std::collections::BTreeMap::new()),
            stream_nodes: cmd::streams::NodeLimits::default(),
            exec_lock: parking_lot::RwLock::new(()),
            scan_cursors: parking_lot::Mutex::new(cmd::ScanCursors::default()),
            save_state: Arc::new(cmd::SaveState::default()),
            log_rewrite: Arc::new(cmd::LogRewrite::default()),
            clients: clients::ClientRegistry::default(),
            blocking: blocking::Blocking::default(),
            pubsub: pubsub::PubSub::default(),
            pause: clients::Pause::default(),
            command_stats: stats::CommandStats::new(cmd::stat_names().len()),
            slowlog: stats::SlowLog::default(),
            ops: stats::OpsSampler::default(),
            max_clients: AtomicUsize::new(config.max_clients),
            password: Password::new(config.requirepass.clone()),
            acl: {
                let acl = acl::Acl::new();
                acl.set_default_password(config.requirepass.as_deref().map(str::as_bytes));
                acl
            },
            auth: AuthRequired::default(),
            normal_limits: pubsub::OutputLimits::new(0, 0, 0),
            replica_limits: pubsub::OutputLimits::new(256 << 20, 64 << 20, 60),
            memory,
            evict: evict::Eviction::new(config.databases),
            client_memory: Arc::default(),
            tracking: tracking::Tracking::default(),
            notify: notify::Notifier::default(),
            local_addr: std::sync::OnceLock::new(),
            listener_closed: CancellationToken::new(),
            monitors: clients::Monitors::default(),
            latency: latency::LatencyMonitor::default(),
            scripting: script::Scripting::default(),
            last_replier: AtomicU64::new(0),
            replicas_required: std::sync::atomic::AtomicBool::new(false),
            me: me.clone(),
            config,
        });
        shared.evict.refresh(&shared);
        shared
    }

    /// A strong reference to this value, unless it is being dropped.
    pub fn arc(&self) -> Option<Arc<Shared>> {
        self.me.upgrade()
    }

    /// Number of connected clients.
    pub fn connected_clients(&self) -> usize {
        self.client_count.load(Ordering::Relaxed)
    }
}

/// Accepts connections until `shutdown` is cancelled; each connection runs on `tracker` and finishes the
/// command it is executing before closing.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    if let Ok(addr) = listener.local_addr() {
        let _ = shared.local_addr.set(addr);
    }
    tracker.spawn(keyspace::expire::run(shared.clone(), shutdown.clone()));
    // At shutdown a running script is stopped, whatever it did (as SHUTDOWN NOSAVE would).
    {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            shared.scripting.run.abort();
        });
    }
    tokio::spawn(evict::run(shared.clone(), shutdown.clone()));
    // Samples the command counter for INFO's instantaneous_ops_per_sec, as Redis's cron does.
    {
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => shared.ops.sample(shared.stats.commands.get()),
                }
            }
        });
    }
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => {
                drop(listener);
                shared.listener_closed.cancel();
                return;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and similar: log, back off briefly, keep serving the others.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
        let over_limit = shared.client_count.fetch_add(1, Ordering::AcqRel)
            >= shared.max_clients.load(Ordering::Relaxed);
        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
        if over_limit {
            shared
                .stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
        }
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if over_limit {
                connection::refuse(stream, "ERR max number of clients reached").await;
            } else {
                let local = stream.local_addr().ok();
                let (handle, messages) =
                    clients::ClientHandle::new(id, peer, local, shared.client_memory.clone());
                shared.clients.insert(handle.clone());
                let session = Session::new(
                    handle,
                    !shared.auth_required(),
                    shared.acl.default_user(),
                    shared.acl.generation(),
                );
                connection::run(stream, session, shared.clone(), shutdown, messages).await;
                shared.clients.remove(id);
                shared.monitors.remove(id);
            }
            shared.client_count.fetch_sub(1, Ordering::AcqRel);
        });
    }
}
