//! A key-value service on its own runtime, for integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use strata_kv::{Clock, Keyspace, KvConfig, Shared, SystemClock, serve};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A key-value service on 127.0.0.1:0, on its own runtime, stopped on drop.
pub struct Server {
    _dir: Option<tempfile::TempDir>,
    addr: SocketAddr,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(config: KvConfig) -> Server {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    pub fn start_with_clock(config: KvConfig, clock: Arc<dyn Clock>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_in(dir.path(), config, clock);
        server._dir = Some(dir);
        server
    }

    /// A server on the data directory `dir`, which the caller owns: stopping it (drop) and starting
    /// another on the same directory is a restart.
    pub fn start_in(dir: &std::path::Path, config: KvConfig, clock: Arc<dyn Clock>) -> Server {
        Self::start_in_with(dir, config, clock, strata_storage::Options::default())
    }

    /// A server whose storage does not fsync: for tests writing many keys, where fsync=always (the
    /// default) would make each write wait for the disk.
    pub fn start_without_fsync(config: KvConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let options = strata_storage::Options {
            fsync: strata_storage::FsyncPolicy::No,
            ..strata_storage::Options::default()
        };
        let mut server = Self::start_in_with(dir.path(), config, Arc::new(SystemClock), options);
        server._dir = Some(dir);
        server
    }

    /// A server on `dir` with storage `options`.
    pub fn start_in_with(
        dir: &std::path::Path,
        config: KvConfig,
        clock: Arc<dyn Clock>,
        options: strata_storage::Options,
    ) -> Server {
        let db = strata_storage::Db::open(dir, options).unwrap();
        let keyspace = Keyspace::open(db, config.databases, clock).unwrap();
        let shutdown = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                // As the server's runtime: scripts' libraries recurse up to 1000 levels.
                .thread_stack_size(8 << 20)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let tracker = TaskTracker::new();
                serve(
                    listener,
                    Shared::new(config, keyspace),
                    token,
                    tracker.clone(),
                )
                .await;
                tracker.close();
                tracker.wait().await;
            });
        });
        let addr = rx.recv().unwrap();
        Server {
            _dir: None,
            addr,
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}", self.addr))
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// Starts the server's shutdown without waiting for it (dropping the server waits).
    #[allow(dead_code)]
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        // The server closes after a protocol error or QUIT, so read to the end.
        s.read_to_end(&mut out).unwrap();
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// Sends a command given as strings.
#[allow(dead_code)]
pub fn run(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c)
}

/// The error line a command gets (code and detail); panics if it succeeds.
#[allow(dead_code)]
pub fn err(c: &mut redis::Connection, args: &[&str]) -> String {
    match run(c, args) {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        Ok(v) => panic!("{args:?}: expected an error, got {v:?}"),
    }
}
