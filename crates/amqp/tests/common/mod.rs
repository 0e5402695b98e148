//! A broker on an ephemeral loopback port with a temporary data directory, and helpers to talk to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};
use strata_amqp::{AmqpConfig, Broker};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running in-process broker.
pub struct TestBroker {
    pub addr: SocketAddr,
    pub broker: Option<Arc<Broker>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    _dir: Option<tempfile::TempDir>,
}

/// Starts a broker in a fresh temporary directory.
pub async fn start() -> TestBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut b = start_in(dir.path(), AmqpConfig::default()).await;
    b._dir = Some(dir);
    b
}

/// Starts a broker on the data in `dir`.
pub async fn start_in(dir: &Path, config: AmqpConfig) -> TestBroker {
    start_at(dir, config, "127.0.0.1:0".parse().expect("addr")).await
}

/// Starts a broker on the data in `dir`, listening on `addr` (to restart one on the port it had).
pub async fn start_at(dir: &Path, config: AmqpConfig, addr: SocketAddr) -> TestBroker {
    let opts = strata_storage::Options {
        fsync: strata_storage::FsyncPolicy::Always,
        memtable_size_bytes: 4 << 20,
        block_cache_bytes: 8 << 20,
        ..strata_storage::Options::default()
    };
    let path = dir.to_path_buf();
    let db = tokio::task::spawn_blocking(move || strata_storage::Db::open(path, opts))
        .await
        .expect("open task")
        .expect("open storage");
    let users = strata_auth::UserStore::open(&db).expect("users");
    let broker = Broker::open(&db, users, config).expect("broker");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(strata_amqp::serve(
        listener,
        broker.clone(),
        shutdown.clone(),
        tracker.clone(),
    ));
    TestBroker {
        addr,
        broker: Some(broker),
        shutdown,
        tracker,
        _dir: None,
    }
}

impl TestBroker {
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.uri(), ConnectionProperties::default())
            .await
            .expect("connect")
    }

    /// Stops accepting, closes connections (320) and waits for every task; the storage closes when the
    /// last handle goes.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("broker tasks stop");
        self.broker.take();
    }
}

/// Polls `f` until it returns true or `deadline` passes.
pub async fn eventually(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
