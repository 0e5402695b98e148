//! A running node: the shared handles every service receives, and the serve lifecycle.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use parking_lot::Mutex;
use strata_telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BackgroundPriority, Config, FsyncPolicy, ServiceKind};
use crate::datadir::{DataDir, Ports};

/// Which enabled services accept connections, and whether the node is draining.
///
/// `/readyz` answers 200 only when every enabled service has reported ready and the node is not shutting
/// down, so a load balancer stops sending traffic before listeners close.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

#[derive(Debug, Default)]
struct ReadinessInner {
    services: Mutex<BTreeMap<ServiceKind, bool>>,
    draining: AtomicBool,
}

impl Readiness {
    /// A readiness registry expecting the given services.
    pub fn expecting(services: &[ServiceKind]) -> Self {
        let r = Self::default();
        r.inner
            .services
            .lock()
            .extend(services.iter().map(|&s| (s, false)));
        r
    }

    /// Marks a service as accepting connections.
    pub fn set_ready(&self, service: ServiceKind) {
        self.inner.services.lock().insert(service, true);
    }

    /// Marks the node as shutting down: not ready from now on.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the node is shutting down.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// The enabled services not yet accepting connections; empty when ready.
    pub fn not_ready(&self) -> Vec<ServiceKind> {
        self.inner
            .services
            .lock()
            .iter()
            .filter(|&(_, &ready)| !ready)
            .map(|(&s, _)| s)
            .collect()
    }
}

/// What every service receives from the node.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// The effective configuration (read-only).
    pub config: Arc<Config>,
    /// Cancelled when the node starts shutting down: stop accepting, finish in-flight work.
    pub shutdown: CancellationToken,
    /// Every task doing in-flight work is spawned here so shutdown can wait for it, bounded by
    /// `shutdown_timeout`.
    pub tracker: TaskTracker,
    /// The node's metrics registry.
    pub metrics: Metrics,
    /// The node's readiness registry.
    pub readiness: Readiness,
    /// The node's storage engine (`<data-dir>/storage`); every durable byte goes through it.
    pub storage: strata_storage::Db,
    /// The node's identity store (users); every service that needs a login asks it.
    pub users: strata_auth::UserStore,
    /// The AMQP broker once the AMQP service started (the management API reads it).
    pub amqp: Arc<std::sync::OnceLock<Arc<strata_amqp::Broker>>>,
}

/// Stack of each runtime thread (see [`serve`]).
const SCRIPT_THREAD_STACK_BYTES: usize = 8 << 20;

/// Runs a node until SIGINT, SIGTERM or the key-value SHUTDOWN command, then shuts it down in order. Blocks the calling thread.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = builder
        .enable_all()
        // A main thread's 8 MiB rather than tokio's 2: scripts run on these threads, and cjson, cmsgpack
        // and the reply conversion each recurse once per nesting level up to Redis's limit of 1000;
        // only the pages touched are ever committed.
        .thread_stack_size(SCRIPT_THREAD_STACK_BYTES)
        .thread_name("strata-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_async(config))
}

async fn serve_async(config: Config) -> anyhow::Result<()> {
    // Signals first: a SIGTERM that arrives while we are still starting must shut down cleanly, not kill the
    // process with the lock held and ports.json half-written.
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut sigint =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;

    let data_dir = DataDir::open(&config.data_dir)?;
    let storage_dir = config.data_dir.join("storage");
    let storage_options = strata_storage::Options {
        fsync: match config.fsync {
            FsyncPolicy::Always => strata_storage::FsyncPolicy::Always,
            FsyncPolicy::Everysec => strata_storage::FsyncPolicy::EverySec,
            FsyncPolicy::No => strata_storage::FsyncPolicy::No,
        },
        memtable_size_bytes: usize::try_from(config.memtable_size).unwrap_or(usize::MAX),
        background_priority: match config.background_priority {
            BackgroundPriority::Idle => strata_storage::BackgroundPriority::Idle,
            BackgroundPriority::Low => strata_storage::BackgroundPriority::Low,
        },
        ..strata_storage::Options::default()
    };
    // Recovery replays the WAL and may read for a while: keep it off the async worker threads.
    let storage = tokio::task::spawn_blocking(move || {
        strata_storage::Db::open(&storage_dir, storage_options)
    })
    .await
    .context("storage open task failed")?
    .with_context(|| {
        format!(
            "cannot open storage in {}",
            config.data_dir.join("storage").display()
        )
    })?;
    let users = strata_auth::UserStore::open(&storage).context("cannot open the user store")?;
    let config = Arc::new(config);
    let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    metrics.register_collector(Box::new(crate::storage_metrics::StorageCollector::new(
        storage.clone(),
    )));
    let readiness = Readiness::expecting(&config.services);
    // Cancelled by the key-value service's SHUTDOWN command: the same orderly stop as SIGTERM.
    let shutdown_command = CancellationToken::new();
    let ctx = ServiceContext {
        config: config.clone(),
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        metrics,
        readiness: readiness.clone(),
        storage,
        users,
        amqp: Arc::default(),
    };

    // Bind every listener before starting any service, so a port conflict fails the start as a whole.
    let mut listeners = Vec::new();
    let mut ports = Ports::new();
    for &service in &config.services {
        let addr = SocketAddr::new(config.bind, config.port(service));
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for the {} service", service.name())
        })?;
        let local = listener.local_addr().context("listener address")?;
        ports.insert(service.port_key(), local.port());
        listeners.push((service, listener, local));
    }

    for (service, listener, local) in listeners {
        match service {
            ServiceKind::Http => {
                let ctx = ctx.clone();
                ctx.tracker
                    .clone()
                    .spawn(async move { crate::admin::run(listener, ctx).await });
            }
            ServiceKind::Kv => {
                let kv_config = strata_kv::KvConfig {
                    requirepass: config.requirepass.as_ref().map(|p| p.expose().to_owned()),
                    shutdown_request: shutdown_command.clone(),
                    maxmemory: config.maxmemory,
                    maxmemory_policy: config.maxmemory_policy.clone(),
                    enable_debug_command: config.enable_debug_command.clone(),
                    allocated_bytes: Some(allocated_bytes),
                    ..strata_kv::KvConfig::default()
                };
                let keyspace = strata_kv::Keyspace::open(
                    ctx.storage.clone(),
                    kv_config.databases,
                    std::sync::Arc::new(strata_kv::SystemClock),
                )
                .context("cannot open the key-value keyspace")?;
                let shared = strata_kv::Shared::new(kv_config, keyspace);
                ctx.metrics
                    .register_collector(Box::new(crate::kv_metrics::KvCollector::new(
                        shared.clone(),
                    )));
                let (shutdown, tracker) = (ctx.shutdown.clone(), ctx.tracker.clone());
                ctx.tracker.spawn(async move {
                    strata_kv::serve(listener, shared, shutdown, tracker).await
                });
            }
            ServiceKind::Amqp => {
                // Recovery reads every stored message: keep it off the async worker threads.
                let (storage, users) = (ctx.storage.clone(), ctx.users.clone());
                let amqp_config = strata_amqp::AmqpConfig {
                    memory_budget_bytes: config.amqp_memory_budget,
                    ..strata_amqp::AmqpConfig::default()
                };
                let broker = tokio::task::spawn_blocking(move || {
                    strata_amqp::Broker::open(&storage, users, amqp_config)
                })
                .await
                .context("AMQP broker open task failed")?
                .context("cannot open the AMQP broker")?;
                ctx.metrics
                    .register_collector(Box::new(crate::amqp_metrics::AmqpCollector::new(
                        broker.clone(),
                    )));
                let _ = ctx.amqp.set(broker.clone());
                let (shutdown, tracker) = (ctx.shutdown.clone(), ctx.tracker.clone());
                ctx.tracker.spawn(async move {
                    strata_amqp::serve(listener, broker, shutdown, tracker).await
                });
            }
            // `--services` only accepts built services, so this is unreachable from configuration.
            other => anyhow::bail!("the {} service is not built into this binary", other.name()),
        }
        readiness.set_ready(service);
        tracing::info!(service = service.name(), %local, "listening");
    }
    data_dir.write_ports(&ports)?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        fsync = config.fsync.name(),
        pid = std::process::id(),
        "strata is ready"
    );

    let first = tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
        () = shutdown_command.cancelled() => "SHUTDOWN command",
    };
    tracing::info!(
        signal = first,
        timeout = ?config.shutdown_timeout,
        "shutting down: draining in-flight work (send the signal again to exit at once)"
    );
    readiness.set_draining();
    ctx.shutdown.cancel();
    ctx.tracker.close();

    let drained = tokio::select! {
        () = ctx.tracker.wait() => true,
        () = tokio::time::sleep(config.shutdown_timeout) => false,
        _ = sigterm.recv() => exit_at_once(&data_dir),
        _ = sigint.recv() => exit_at_once(&data_dir),
    };
    if !drained {
        tracing::warn!(
            timeout = ?config.shutdown_timeout,
            "in-flight work did not finish within the shutdown timeout; closing anyway"
        );
    }
    // Acknowledged writes are already durable under the fsync policy; a final WAL fsync makes the ones
    // acknowledged under `everysec`/`no` durable too before the process goes.
    let storage = ctx.storage.clone();
    drop(ctx);
    let synced = tokio::task::spawn_blocking(move || {
        let result = if storage.is_poisoned() {
            Ok(())
        } else {
            storage.sync_wal()
        };
        drop(storage);
        result
    })
    .await
    .context("storage close task failed")?;
    if let Err(e) = synced {
        tracing::error!(error = %e, "final storage fsync failed");
    }
    data_dir.remove_ports();
    data_dir.release();
    tracing::info!("stopped");
    Ok(())
}

/// The second signal: no more waiting. Acknowledged writes are already durable under the fsync policy, so
/// exiting without draining loses only in-flight requests.
fn exit_at_once(data_dir: &DataDir) -> ! {
    tracing::warn!("second signal: exiting at once");
    data_dir.remove_ports();
    std::process::exit(130);
}

/// Bytes jemalloc (the binary's global allocator) has handed out and not taken back, for INFO's
/// `allocator_allocated`; 0 if the statistics cannot be read.
fn allocated_bytes() -> u64 {
    // jemalloc's statistics are a snapshot refreshed by advancing its epoch.
    let _ = tikv_jemalloc_ctl::epoch::advance();
    tikv_jemalloc_ctl::stats::allocated::read().map_or(0, |n| n as u64)
}
