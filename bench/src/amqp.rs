//! `strata-bench amqp`: the AMQP 0-9-1 broker against rabbitmq-server, both driven by one lapin load
//! generator that does not know which broker it talks to.
//!
//! Both brokers run side by side for the throughput and latency cases; every case is measured on one and
//! then the other, the order alternating between rounds, and the median round is reported. The cases
//! (issue 6):
//!
//! - `1p1c 16B transient auto-ack`: one publisher, one consumer on one queue.
//! - `1p1c 1KiB persistent confirm256 ack100`: a durable queue, delivery-mode 2, publisher confirms with at
//!   most 256 unconfirmed messages, a consumer with prefetch 500 acking `multiple` every 100th delivery.
//! - `fanout x10 16B`: one publisher into a fanout exchange bound to 10 queues, one consumer per queue;
//!   ops/s counts deliveries (10 per publish).
//! - `100 queues 100p100c 16B`: 100 queues, each with its own publisher and consumer (channels spread over
//!   10 publisher and 10 consumer connections).
//! - `latency 16B @10k/s`: one publisher paced at a fixed rate (default 10,000 msg/s) writing its send
//!   time into the payload; the consumer records receive − send in a histogram (p50 / p99).
//! - `memory 1M x 100B transient`: a fresh broker of each kind, 1M 100-byte transient messages published
//!   with confirms into one queue that has no consumer, then the resident set size of the server process.
//!
//! Each throughput case runs a warm-up and then a measured window; ops/s is deliveries received by the
//! consumers during the window per second (the publishers run flat out, so this is the sustained end-to-end
//! rate), and `pub_per_sec` notes the publish rate of the same window. Publishers and consumers use separate
//! connections (each lapin connection has its own I/O thread), and the generator runs on a tokio runtime with
//! one worker per core.
//!
//! Durability: RabbitMQ confirms a persistent message only after its message store has fsynced it; strata
//! runs with `--fsync always` (group commit) so its confirms carry the same promise. Transient messages are
//! unaffected on both.
//!
//! The peer is Debian's rabbitmq-server (classic queues, default settings, no plugins), started as a child
//! of this process with its own node name, ports, data and log directories and its own `epmd`, and stopped
//! (SIGTERM, then SIGKILL after a deadline) when the suite ends or fails. strata is the release binary next
//! to this one, started with `--services amqp --amqp-port <port>`. `--only rabbitmq` (or `strata`) measures
//! one broker alone; without it both must start or the suite fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::SuiteOptions;
use crate::kv::{free_port, strata_binary};
use crate::report::{Record, median};

/// Debian's server script under the `su rabbitmq` wrapper in /usr/sbin (which would drop our environment).
const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// strata's fsync policy: RabbitMQ fsyncs a persistent message before confirming it.
const STRATA_FSYNC: &str = "always";
/// Unwritten publishes one publisher keeps in flight when it does not use confirms.
const PUBLISH_PIPELINE: usize = 128;
/// Unconfirmed messages a confirming publisher keeps in flight.
const CONFIRM_WINDOW: usize = 256;
/// Manual-ack consumers ack `multiple` every this many deliveries.
const ACK_EVERY: u64 = 100;
/// Publishers pause while this many deliveries are owed (published but not yet received), so queues stay
/// short and a case measures the sustained rate rather than how fast a backlog grows.
const BACKLOG_LIMIT: u64 = 20_000;
/// A flat-out publisher yields to the scheduler every this many messages.
const YIELD_EVERY: u64 = 32;
/// Prefetch of manual-ack consumers (must exceed `ACK_EVERY`).
const PREFETCH: u16 = 500;
/// Most connections opened for one side (publishers or consumers) of a case; channels share them.
const MAX_CONNECTIONS: usize = 10;
/// How long a broker may take to accept its first AMQP connection.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a broker may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the server's RSS to settle after the memory load.
const RSS_SETTLE_MAX: Duration = Duration::from_secs(15);
/// Message size of the memory case.
const MEMORY_MESSAGE_BYTES: usize = 100;

/// The brokers this suite knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// strata's broker (`strata serve --amqp-port`).
    Strata,
    /// rabbitmq-server from Debian.
    Rabbitmq,
}

impl System {
    /// The name in the report's `system` column.
    fn name(self) -> &'static str {
        match self {
            System::Strata => "strata",
            System::Rabbitmq => "rabbitmq",
        }
    }
}

/// Options of `strata-bench amqp`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Measure only this broker (no ratio then). Without it both run and both must start.
    #[arg(long, value_enum)]
    pub only: Option<System>,
    /// Seconds of each measured window [default: 10, or 3 with --quick].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Seconds of warm-up before each measured window [default: 2, or 1 with --quick].
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,
    /// Messages queued in the memory case.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub memory_messages: u64,
    /// Publish rate of the latency case, messages per second.
    #[arg(long, value_name = "MSGS", default_value_t = 10_000)]
    pub latency_rate: u64,
    /// Run only these cases: direct, confirm, fanout, many, latency, memory [default: all].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub cases: Vec<String>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            only: None,
            duration: None,
            warmup: None,
            memory_messages: 1_000_000,
            latency_rate: 10_000,
            cases: Vec::new(),
        }
    }
}

/// One throughput or latency case: what is declared, published and consumed.
#[derive(Debug, Clone, Copy)]
struct Flow {
    /// Report label.
    label: &'static str,
    /// Short name used in queue names.
    tag: &'static str,
    /// Queues, each with one consumer.
    queues: usize,
    /// Publishers; with `fanout` they publish to the exchange, else publisher i to queue i.
    publishers: usize,
    /// One fanout exchange bound to every queue.
    fanout: bool,
    /// Payload bytes.
    size: usize,
    /// Durable queues and delivery-mode 2.
    persistent: bool,
    /// Publisher confirms with a window of `CONFIRM_WINDOW`.
    confirms: bool,
    /// Manual acks (multiple, every `ACK_EVERY`) with prefetch `PREFETCH`; else auto-ack.
    manual_ack: bool,
    /// Total publish rate, spread over the publishers; `None` publishes flat out.
    rate: Option<u64>,
    /// Send time in the payload, receive − send recorded.
    latency: bool,
}

const FLOW: Flow = Flow {
    label: "",
    tag: "",
    queues: 1,
    publishers: 1,
    fanout: false,
    size: 16,
    persistent: false,
    confirms: false,
    manual_ack: false,
    rate: None,
    latency: false,
};

/// The cases in report order.
fn flows(latency_rate: u64) -> Vec<Flow> {
    vec![
        Flow {
            label: "1p1c 16B transient auto-ack",
            tag: "direct",
            ..FLOW
        },
        Flow {
            label: "1p1c 1KiB persistent confirm256 ack100",
            tag: "confirm",
            size: 1024,
            persistent: true,
            confirms: true,
            manual_ack: true,
            ..FLOW
        },
        Flow {
            label: "fanout x10 16B",
            tag: "fanout",
            queues: 10,
            fanout: true,
            ..FLOW
        },
        Flow {
            label: "100 queues 100p100c 16B",
            tag: "many",
            queues: 100,
            publishers: 100,
            ..FLOW
        },
        Flow {
            label: if latency_rate == 10_000 {
                "latency 16B @10k/s"
            } else {
                "latency 16B @fixed rate"
            },
            tag: "latency",
            rate: Some(latency_rate),
            latency: true,
            ..FLOW
        },
    ]
}

/// One broker under test.
struct Broker {
    system: System,
    port: u16,
    child: Option<Child>,
    /// RabbitMQ's own epmd (Erlang's port mapper) on a private port.
    epmd: Option<Child>,
    dir: PathBuf,
}

impl Broker {
    fn start(system: System, root: &Path, rt: &Runtime) -> anyhow::Result<Broker> {
        let port = free_port()?;
        let dir = root.join(format!("{}-{port}", system.name()));
        std::fs::create_dir_all(&dir)?;
        let mut broker = Broker {
            system,
            port,
            child: None,
            epmd: None,
            dir,
        };
        match system {
            System::Strata => broker.spawn_strata()?,
            System::Rabbitmq => broker.spawn_rabbitmq()?,
        }
        // On error `broker` is dropped here, which stops whatever was started.
        broker.wait_ready(rt)?;
        Ok(broker)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn spawn_strata(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.log_path())?;
        // STRATA_BENCH_STRATA runs another strata build (e.g. a branch's) instead of the one beside us.
        let binary = match std::env::var_os("STRATA_BENCH_STRATA") {
            Some(path) => PathBuf::from(path),
            None => strata_binary()?,
        };
        let child = Command::new(&binary)
            .args(["serve", "--data-dir"])
            .arg(self.dir.join("data"))
            .args(["--services", "amqp", "--amqp-port", &self.port.to_string()])
            .args(["--fsync", STRATA_FSYNC, "--log-level", "warn"])
            // strata refuses STRATA_* variables it does not know; these two are ours.
            .env_remove("STRATA_BENCH_STRATA")
            .env_remove("STRATA_BENCH_TRACE")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        register_child(child.id(), false);
        self.child = Some(child);
        Ok(())
    }

    fn spawn_rabbitmq(&mut self) -> anyhow::Result<()> {
        let dir = &self.dir;
        // Distinct private ports for epmd and Erlang distribution (the default, node port + 20000, can pass
        // 65535 for an ephemeral node port).
        let epmd_port = free_port()?;
        let mut dist_port = free_port()?;
        while dist_port == epmd_port || dist_port == self.port {
            dist_port = free_port()?;
        }
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            "# strata-bench: RabbitMQ's defaults\n",
        )?;
        std::fs::write(dir.join("rabbitmq-env.conf"), "")?;
        let epmd_log = std::fs::File::create(dir.join("epmd.log"))?;
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string(), "-address", "127.0.0.1"])
            .stdout(epmd_log.try_clone()?)
            .stderr(epmd_log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting epmd (Debian package erlang-base)")?;
        register_child(epmd.id(), true);
        self.epmd = Some(epmd);
        wait_tcp(epmd_port, Duration::from_secs(10)).context("epmd did not listen")?;

        let log = std::fs::File::create(self.log_path())?;
        let child = Command::new(RABBITMQ_SERVER)
            .env("HOME", dir)
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env(
                "RABBITMQ_NODENAME",
                format!(
                    "strata-bench-{}-{}@localhost",
                    std::process::id(),
                    self.port
                ),
            )
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {RABBITMQ_SERVER}"))?;
        register_child(child.id(), false);
        self.child = Some(child);
        Ok(())
    }

    /// Polls an AMQP connection until one opens, the broker exits, or `READY_TIMEOUT` passes.
    fn wait_ready(&mut self, rt: &Runtime) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let uri = self.uri();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited ({status}) before accepting AMQP connections on port {}; its log ends:\n{}",
                    self.system.name(),
                    self.port,
                    log_tail(&self.log_path(), 15)
                );
            }
            let attempt = rt.block_on(async {
                let conn = tokio::time::timeout(
                    Duration::from_secs(5),
                    Connection::connect(&uri, ConnectionProperties::default()),
                )
                .await;
                match conn {
                    Ok(Ok(conn)) => {
                        close_connection(&conn).await;
                        true
                    }
                    _ => false,
                }
            });
            if attempt {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not accept an AMQP connection on port {} within {}s; its log ends:\n{}",
                    self.system.name(),
                    self.port,
                    READY_TIMEOUT.as_secs(),
                    log_tail(&self.log_path(), 15)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The server process: the largest process in the child's tree (beam.smp for RabbitMQ, whose child is
    /// a shell script; strata itself).
    fn server_pid(&self) -> anyhow::Result<u32> {
        let child = self.child.as_ref().context("broker not running")?;
        let mut pids = vec![child.id()];
        pids.extend(descendants(child.id()));
        pids.into_iter()
            .filter_map(|p| rss_of(p).ok().map(|rss| (rss, p)))
            .max()
            .map(|(_, p)| p)
            .context("no VmRSS for the broker's processes")
    }

    /// Resident set size of the server process.
    fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_of(self.server_pid()?)
    }

    fn stop(mut self) {
        self.shutdown();
    }

    /// SIGTERM, wait up to `STOP_TIMEOUT`, then SIGKILL the whole tree; then epmd; then the directory.
    fn shutdown(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                signal_pid(child.id(), rustix::process::Signal::TERM);
                let deadline = Instant::now() + STOP_TIMEOUT;
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if matches!(child.try_wait(), Ok(None)) {
                    eprintln!(
                        "{} did not stop within {}s of SIGTERM; killing it",
                        self.system.name(),
                        STOP_TIMEOUT.as_secs()
                    );
                    for pid in descendants(child.id()) {
                        signal_pid(pid, rustix::process::Signal::KILL);
                    }
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
            unregister_child(child.id());
        }
        if let Some(mut epmd) = self.epmd.take() {
            let _ = epmd.kill();
            let _ = epmd.wait();
            unregister_child(epmd.id());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Processes this suite started and has not yet stopped: (pid, is epmd). The signal handler stops them.
static CHILDREN: Mutex<Vec<(u32, bool)>> = Mutex::new(Vec::new());

fn register_child(pid: u32, epmd: bool) {
    if let Ok(mut c) = CHILDREN.lock() {
        c.push((pid, epmd));
    }
}

fn unregister_child(pid: u32) {
    if let Ok(mut c) = CHILDREN.lock() {
        c.retain(|&(p, _)| p != pid);
    }
}

/// Whether a child has exited (a zombie until waited for, or gone).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}

fn signal_pid(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: stops the brokers as `Broker::shutdown` would (the suite's own code is
/// blocked mid-case), removes the temporary directory and exits.
async fn stop_children_on_signal(root: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = hup.recv() => "SIGHUP",
    };
    let children = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
    eprintln!(
        "amqp: {name}: stopping {} broker process(es)",
        children.len()
    );
    let servers: Vec<u32> = children.iter().filter(|c| !c.1).map(|c| c.0).collect();
    let mut trees: Vec<u32> = servers.iter().flat_map(|&p| descendants(p)).collect();
    trees.extend(&servers);
    for &pid in &servers {
        signal_pid(pid, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !servers.iter().all(|&p| exited(p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for &pid in trees.iter().filter(|&&p| !exited(p)) {
        signal_pid(pid, rustix::process::Signal::KILL);
    }
    for &(pid, _) in children.iter().filter(|c| c.1) {
        signal_pid(pid, rustix::process::Signal::KILL);
    }
    let _ = std::fs::remove_dir_all(&root);
    std::process::exit(130);
}

/// Polls a TCP connect to 127.0.0.1:`port` until it succeeds or `timeout` passes.
fn wait_tcp(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The last `lines` lines of a log file.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// VmRSS of a process, bytes.
fn rss_of(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(kib * 1024)
}

/// User + system CPU seconds a process has used so far (0 when it cannot be read).
fn cpu_secs(pid: u32) -> f64 {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_cpu_ticks(&s))
        .unwrap_or(0);
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks.
fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The parent pid in a `/proc/<pid>/stat` line (the command name in parentheses may hold anything).
fn stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every live descendant of `root`, from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|s| stat_ppid(&s))
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parent_of {
            if parent == p && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Nanoseconds since the first call in this process; publisher and consumer share the clock.
fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A connection with the generator's settings.
async fn connect(uri: &str) -> anyhow::Result<Connection> {
    Connection::connect(uri, ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to {uri}"))
}

/// Closes a connection, giving up after a few seconds.
async fn close_connection(conn: &Connection) {
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        conn.close(200, "strata-bench done".into()),
    )
    .await;
}

/// Receive − send times of the latency case, recorded only inside the measured window.
struct LatencyRecorder {
    recording: AtomicBool,
    histogram: Mutex<Histogram<u64>>,
}

impl LatencyRecorder {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            recording: AtomicBool::new(false),
            histogram: Mutex::new(Histogram::new_with_bounds(1, 60_000_000_000, 3)?),
        })
    }

    fn record(&self, payload: &[u8]) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        let Some(sent) = payload
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
        else {
            return;
        };
        let elapsed = now_ns().saturating_sub(sent).max(1);
        if let Ok(mut h) = self.histogram.lock() {
            h.saturating_record(elapsed);
        }
    }

    /// (p50, p99) in microseconds.
    fn percentiles_us(&self) -> Option<(f64, f64)> {
        let h = self.histogram.lock().ok()?;
        (!h.is_empty()).then(|| {
            (
                h.value_at_quantile(0.50) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
            )
        })
    }
}

/// What the publishers and consumers of one case share.
#[derive(Debug, Default)]
struct Counters {
    /// Messages published (one per basic.publish).
    published: AtomicU64,
    /// Deliveries received by the consumers.
    consumed: AtomicU64,
    /// Deliveries one publish makes (the queue count for fanout, else 1).
    copies: u64,
    /// Set when the measured window is over.
    stop: AtomicBool,
}

impl Counters {
    /// Deliveries owed: published copies not yet received.
    fn backlog(&self) -> u64 {
        (self.published.load(Ordering::Relaxed) * self.copies)
            .saturating_sub(self.consumed.load(Ordering::Relaxed))
    }
}

/// One measured window of one flow on one broker.
#[derive(Debug, Clone, Copy)]
struct Sample {
    delivered_per_sec: f64,
    published_per_sec: f64,
    latency_us: Option<(f64, f64)>,
    /// Cores the server process used on average during the window.
    server_cores: f64,
    /// Cores this load generator used on average during the window.
    generator_cores: f64,
}

/// Publishes until aborted (or stopped), keeping a pipeline of in-flight publishes (or confirms).
async fn publish_loop(
    channel: Channel,
    exchange: String,
    routing_key: String,
    flow: Flow,
    rate: Option<f64>,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let properties =
        BasicProperties::default().with_delivery_mode(if flow.persistent { 2 } else { 1 });
    let depth = if flow.confirms {
        CONFIRM_WINDOW
    } else {
        PUBLISH_PIPELINE
    };
    let template = vec![b'x'; flow.size];
    let channel = &channel;
    let mut inflight = FuturesUnordered::new();
    let start = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    while !counters.stop.load(Ordering::Relaxed) {
        while counters.backlog() > BACKLOG_LIMIT && !counters.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        while inflight.len() >= depth {
            if let Some(done) = inflight.next().await {
                done?;
            }
        }
        let mut payload = template.clone();
        if flow.latency && payload.len() >= 8 {
            payload[..8].copy_from_slice(&now_ns().to_le_bytes());
        }
        let (exchange, routing_key, properties) =
            (exchange.as_str(), routing_key.as_str(), properties.clone());
        inflight.push(async move {
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    &payload,
                    properties,
                )
                .await?;
            if flow.confirms && !confirm.await?.is_ack() {
                bail!("the broker nacked a published message");
            }
            anyhow::Ok(())
        });
        sent += 1;
        counters.published.fetch_add(1, Ordering::Relaxed);
        // Poll once so this publish's frames are queued now, and reap the finished ones.
        while let Some(Some(done)) = inflight.next().now_or_never() {
            done?;
        }
        // A publisher whose pipeline never fills would otherwise keep its worker thread forever.
        if sent.is_multiple_of(YIELD_EVERY) {
            tokio::task::yield_now().await;
        }
    }
    Ok(())
}

/// Counts deliveries until the consumer ends or the task is aborted.
async fn consume_loop(
    mut consumer: Consumer,
    manual_ack: bool,
    counters: Arc<Counters>,
    latency: Option<Arc<LatencyRecorder>>,
) -> anyhow::Result<()> {
    let mut n: u64 = 0;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        n += 1;
        counters.consumed.fetch_add(1, Ordering::Relaxed);
        if let Some(latency) = &latency {
            latency.record(&delivery.data);
        }
        if manual_ack && n.is_multiple_of(ACK_EVERY) {
            delivery
                .ack(BasicAckOptions { multiple: true })
                .await
                .context("basic.ack")?;
        }
    }
    Ok(())
}

/// Aborts the tasks still running and returns the first error of one that already ended.
async fn reap(tasks: Vec<JoinHandle<anyhow::Result<()>>>, role: &str) -> anyhow::Result<()> {
    let mut first_error = None;
    for task in tasks {
        if task.is_finished() {
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("task failed: {e}")),
            };
            if let Err(e) = result
                && first_error.is_none()
            {
                first_error = Some(e.context(format!("a {role} stopped")));
            }
        } else {
            task.abort();
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Opens `n` connections.
async fn open_connections(uri: &str, n: usize) -> anyhow::Result<Vec<Connection>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(connect(uri).await?);
    }
    Ok(conns)
}

/// Runs one flow on one broker: declares, warms up, measures one window, tears down.
async fn run_flow(
    uri: &str,
    server_pid: u32,
    flow: Flow,
    round: usize,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Sample> {
    let admin_conn = connect(uri).await?;
    let admin = admin_conn.create_channel().await?;
    let prefix = format!("strata-bench-{}-{}-{round}", flow.tag, std::process::id());
    let queues: Vec<String> = (0..flow.queues).map(|i| format!("{prefix}-q{i}")).collect();
    let exchange = if flow.fanout {
        format!("{prefix}-fanout")
    } else {
        String::new()
    };
    let result = async {
        let declare = QueueDeclareOptions {
            durable: flow.persistent,
            ..QueueDeclareOptions::default()
        };
        for q in &queues {
            admin
                .queue_declare(q.as_str().into(), declare, FieldTable::default())
                .await
                .with_context(|| format!("queue.declare {q}"))?;
        }
        if flow.fanout {
            admin
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Fanout,
                    ExchangeDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
                .context("exchange.declare")?;
            for q in &queues {
                admin
                    .queue_bind(
                        q.as_str().into(),
                        exchange.as_str().into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .context("queue.bind")?;
            }
        }
        measure(uri, server_pid, flow, &queues, &exchange, warmup, window).await
    }
    .await;
    trace(format_args!("{}: deleting queues", flow.tag));
    // Tear down whatever was declared, even after an error.
    for q in &queues {
        let _ = admin
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    if flow.fanout {
        let _ = admin
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    close_connection(&admin_conn).await;
    result
}

async fn measure(
    uri: &str,
    server_pid: u32,
    flow: Flow,
    queues: &[String],
    exchange: &str,
    warmup: Duration,
    window: Duration,
) -> anyhow::Result<Sample> {
    let counters = Arc::new(Counters {
        copies: if flow.fanout { flow.queues as u64 } else { 1 },
        ..Counters::default()
    });
    let latency = if flow.latency {
        Some(Arc::new(LatencyRecorder::new()?))
    } else {
        None
    };
    trace(format_args!("{}: opening connections", flow.tag));
    let consumer_conns = open_connections(uri, flow.queues.min(MAX_CONNECTIONS)).await?;
    let publisher_conns = open_connections(uri, flow.publishers.min(MAX_CONNECTIONS)).await?;
    let mut consumers = Vec::new();
    let mut publishers = Vec::new();
    let result = async {
        for (i, q) in queues.iter().enumerate() {
            let channel = consumer_conns[i % consumer_conns.len()]
                .create_channel()
                .await?;
            if flow.manual_ack {
                channel
                    .basic_qos(PREFETCH, BasicQosOptions::default())
                    .await
                    .context("basic.qos")?;
            }
            let consumer = channel
                .basic_consume(
                    q.as_str().into(),
                    format!("strata-bench-c{i}").into(),
                    BasicConsumeOptions {
                        no_ack: !flow.manual_ack,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("basic.consume {q}"))?;
            consumers.push(tokio::spawn(consume_loop(
                consumer,
                flow.manual_ack,
                counters.clone(),
                latency.clone(),
            )));
        }
        trace(format_args!(
            "{}: {} consumers started",
            flow.tag,
            consumers.len()
        ));
        let per_publisher_rate = flow.rate.map(|r| r as f64 / flow.publishers as f64);
        // Every channel first: a channel.open queued behind a flow-controlled publisher's frames can wait
        // for a long time.
        let mut channels = Vec::with_capacity(flow.publishers);
        for j in 0..flow.publishers {
            let channel = publisher_conns[j % publisher_conns.len()]
                .create_channel()
                .await?;
            if flow.confirms {
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .context("confirm.select")?;
            }
            channels.push(channel);
        }
        for (j, channel) in channels.into_iter().enumerate() {
            let routing_key = if flow.fanout {
                String::new()
            } else {
                queues[j % queues.len()].clone()
            };
            publishers.push(tokio::spawn(publish_loop(
                channel,
                exchange.to_owned(),
                routing_key,
                flow,
                per_publisher_rate,
                counters.clone(),
            )));
        }
        trace(format_args!(
            "{}: {} publishers started",
            flow.tag,
            publishers.len()
        ));
        tokio::time::sleep(warmup).await;
        trace(format_args!("{}: window starts", flow.tag));
        let (c0, p0, t0) = (
            counters.consumed.load(Ordering::Relaxed),
            counters.published.load(Ordering::Relaxed),
            Instant::now(),
        );
        let (server_cpu0, generator_cpu0) = (cpu_secs(server_pid), cpu_secs(std::process::id()));
        if let Some(l) = &latency {
            l.recording.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(window).await;
        let (c1, p1, secs) = (
            counters.consumed.load(Ordering::Relaxed),
            counters.published.load(Ordering::Relaxed),
            t0.elapsed().as_secs_f64(),
        );
        let (server_cpu1, generator_cpu1) = (cpu_secs(server_pid), cpu_secs(std::process::id()));
        if let Some(l) = &latency {
            l.recording.store(false, Ordering::Relaxed);
        }
        anyhow::Ok(Sample {
            delivered_per_sec: (c1 - c0) as f64 / secs,
            published_per_sec: (p1 - p0) as f64 / secs,
            latency_us: latency.as_ref().and_then(|l| l.percentiles_us()),
            server_cores: (server_cpu1 - server_cpu0) / secs,
            generator_cores: (generator_cpu1 - generator_cpu0) / secs,
        })
    }
    .await;
    trace(format_args!("{}: window over, stopping", flow.tag));
    counters.stop.store(true, Ordering::Relaxed);
    let published_ok = reap(publishers, "publisher").await;
    let consumed_ok = reap(consumers, "consumer").await;
    futures_util::future::join_all(
        publisher_conns
            .iter()
            .chain(&consumer_conns)
            .map(close_connection),
    )
    .await;
    trace(format_args!("{}: connections closed", flow.tag));
    let sample = result?;
    published_ok?;
    consumed_ok?;
    if sample.delivered_per_sec <= 0.0 {
        bail!("no message was delivered in the measured window");
    }
    Ok(sample)
}

/// Memory case: `n` transient messages published with confirms into one queue without consumers.
/// Returns the load time in seconds.
async fn fill_queue(uri: &str, n: u64) -> anyhow::Result<f64> {
    let conn = connect(uri).await?;
    let result = async {
        let channel = conn.create_channel().await?;
        let queue = format!("strata-bench-memory-{}", std::process::id());
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .context("queue.declare")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("confirm.select")?;
        let payload = vec![b'm'; MEMORY_MESSAGE_BYTES];
        let properties = BasicProperties::default().with_delivery_mode(1);
        let started = Instant::now();
        let mut inflight = FuturesUnordered::new();
        let channel_ref = &channel;
        for _ in 0..n {
            while inflight.len() >= CONFIRM_WINDOW {
                if let Some(done) = inflight.next().await {
                    done?;
                }
            }
            let (queue, payload, properties) = (queue.as_str(), &payload, properties.clone());
            inflight.push(async move {
                let confirm = channel_ref
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        payload,
                        properties,
                    )
                    .await?;
                if !confirm.await?.is_ack() {
                    bail!("the broker nacked a message of the memory load");
                }
                anyhow::Ok(())
            });
            while let Some(Some(done)) = inflight.next().now_or_never() {
                done?;
            }
        }
        while let Some(done) = inflight.next().await {
            done?;
        }
        let load_secs = started.elapsed().as_secs_f64();
        // Every message is confirmed; the queue must hold them all.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let q = channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .context("passive queue.declare")?;
            if u64::from(q.message_count()) == n {
                break;
            }
            if Instant::now() > deadline {
                bail!("the queue holds {} messages, not {n}", q.message_count());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(load_secs)
    }
    .await;
    close_connection(&conn).await;
    result
}

/// The server's RSS once it has settled after the load (garbage collection, allocator caches): sampled
/// every half second until two samples differ by under 1%, for at most `RSS_SETTLE_MAX`.
fn settled_rss(broker: &Broker) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let mut last = broker.rss_bytes()?;
    while started.elapsed() < RSS_SETTLE_MAX {
        std::thread::sleep(Duration::from_millis(500));
        let now = broker.rss_bytes()?;
        let settled = now.abs_diff(last) * 100 < last;
        last = now;
        if settled {
            break;
        }
    }
    Ok((last, started.elapsed()))
}

/// Makes sure rabbitmq-server and epmd exist, installing Debian's package when possible.
fn ensure_rabbitmq() -> anyhow::Result<()> {
    let have = || {
        Path::new(RABBITMQ_SERVER).exists()
            && Command::new("epmd")
                .arg("-help")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
    };
    if have() {
        return Ok(());
    }
    eprintln!("rabbitmq-server missing; trying apt-get install rabbitmq-server");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "rabbitmq-server"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    // Debian may start a system broker on 5672; the suite runs its own.
    let _ = Command::new("systemctl")
        .args(["stop", "rabbitmq-server"])
        .status();
    if have() {
        Ok(())
    } else {
        bail!("the amqp suite needs rabbitmq-server (apt-get install rabbitmq-server)")
    }
}

/// The installed Debian version of rabbitmq-server, for the setup line.
fn rabbitmq_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "rabbitmq-server"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// With `STRATA_BENCH_TRACE` set, a timestamped line on stderr per step of a case (for finding a stall).
fn trace(what: impl std::fmt::Display) {
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("STRATA_BENCH_TRACE").is_some()) {
        eprintln!("[{:>10.3}s] {what}", now_ns() as f64 / 1e9);
    }
}

/// What to do when a broker does not start.
fn start_hint(system: System) -> &'static str {
    match system {
        System::Strata => {
            "strata's AMQP broker did not start (a strata without `--services amqp` cannot run this \
             suite; `--only rabbitmq` measures the peer alone)"
        }
        System::Rabbitmq => {
            "rabbitmq-server did not start (`--only strata` measures strata alone, with no ratio)"
        }
    }
}

/// A progress line on stderr, shown whether or not stderr is a terminal (the bar hides itself when not).
fn say(bar: &indicatif::ProgressBar, line: String) {
    bar.suspend(|| eprintln!("{line}"));
}

/// Runs the suite.
pub fn run(opts: &SuiteOptions, args: &Args) -> anyhow::Result<Vec<Record>> {
    let known: Vec<&str> = flows(args.latency_rate)
        .iter()
        .map(|f| f.tag)
        .chain(["memory"])
        .collect();
    if let Some(unknown) = args.cases.iter().find(|c| !known.contains(&c.as_str())) {
        bail!(
            "unknown amqp case {unknown:?}; the cases are {}",
            known.join(", ")
        );
    }
    let systems: Vec<System> = match args.only {
        Some(s) => vec![s],
        None => vec![System::Strata, System::Rabbitmq],
    };
    if systems.contains(&System::Rabbitmq) {
        ensure_rabbitmq()?;
    }
    let root = std::env::temp_dir().join(format!("strata-bench-amqp-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .enable_all()
        .build()?;
    rt.spawn(stop_children_on_signal(root.clone()));
    let result = run_in(opts, args, &systems, &root, &rt);
    rt.shutdown_timeout(Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn run_in(
    opts: &SuiteOptions,
    args: &Args,
    systems: &[System],
    root: &Path,
    rt: &Runtime,
) -> anyhow::Result<Vec<Record>> {
    let window = Duration::from_secs_f64(
        args.duration
            .unwrap_or(if opts.quick { 3.0 } else { 10.0 })
            .max(0.1),
    );
    let warmup = Duration::from_secs_f64(
        args.warmup
            .unwrap_or(if opts.quick { 1.0 } else { 2.0 })
            .max(0.0),
    );
    println!(
        "amqp: rabbitmq-server {} (Debian; classic queues, defaults, no plugins); strata `serve --services \
         amqp --fsync {STRATA_FSYNC}`; lapin generator, warm-up {:.1}s, window {:.1}s, {} round(s){}",
        rabbitmq_version(),
        warmup.as_secs_f64(),
        window.as_secs_f64(),
        opts.rounds,
        args.only
            .map(|s| format!(", only {}", s.name()))
            .unwrap_or_default()
    );
    let wanted = |tag: &str| args.cases.is_empty() || args.cases.iter().any(|c| c == tag);
    let flows: Vec<Flow> = flows(args.latency_rate)
        .into_iter()
        .filter(|f| wanted(f.tag))
        .collect();
    let mut brokers = Vec::new();
    for &system in systems.iter().filter(|_| !flows.is_empty()) {
        brokers.push(Broker::start(system, root, rt).with_context(|| start_hint(system))?);
    }
    let bar = opts.progress(
        (flows.len() * opts.rounds * brokers.len()) as u64,
        "amqp: lapin load",
    );
    // samples[flow][broker]: one per round, or the error that ended it.
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); brokers.len()]; flows.len()];
    let mut errors: Vec<Vec<Option<String>>> = vec![vec![None; brokers.len()]; flows.len()];
    for round in 0..opts.rounds {
        for (f, &flow) in flows.iter().enumerate() {
            let order: Vec<usize> = if (round + f) % 2 == 0 {
                (0..brokers.len()).collect()
            } else {
                (0..brokers.len()).rev().collect()
            };
            for b in order {
                if errors[f][b].is_some() {
                    bar.inc(1);
                    continue;
                }
                let uri = brokers[b].uri();
                let server_pid = brokers[b].server_pid()?;
                let name = brokers[b].system.name();
                let started = Instant::now();
                match rt.block_on(run_flow(&uri, server_pid, flow, round, warmup, window)) {
                    Ok(sample) => {
                        say(
                            &bar,
                            format!(
                                "amqp: {} on {name}: {:.0} msg/s delivered, {:.0} published ({:.1}s)",
                                flow.label,
                                sample.delivered_per_sec,
                                sample.published_per_sec,
                                started.elapsed().as_secs_f64()
                            ),
                        );
                        samples[f][b].push(sample);
                    }
                    Err(e) => {
                        say(
                            &bar,
                            format!("amqp: {} failed on {name}: {e:#}", flow.label),
                        );
                        errors[f][b] = Some(format!("{e:#}"));
                    }
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let mut records = Vec::new();
    for (f, flow) in flows.iter().enumerate() {
        for (b, broker) in brokers.iter().enumerate() {
            let name = broker.system.name();
            let mut record = Record::new("amqp", flow.label, name);
            if let Some(e) = &errors[f][b] {
                records.push(record.note("failed", e.replace('\n', " ")));
                continue;
            }
            let mut delivered: Vec<f64> =
                samples[f][b].iter().map(|s| s.delivered_per_sec).collect();
            let mut publish: Vec<f64> = samples[f][b].iter().map(|s| s.published_per_sec).collect();
            record = record.ops(median(&mut delivered).unwrap_or(0.0));
            let mut p50: Vec<f64> = samples[f][b]
                .iter()
                .filter_map(|s| s.latency_us.map(|l| l.0))
                .collect();
            let mut p99: Vec<f64> = samples[f][b]
                .iter()
                .filter_map(|s| s.latency_us.map(|l| l.1))
                .collect();
            if let (Some(p50), Some(p99)) = (median(&mut p50), median(&mut p99)) {
                record = record.latency_us(p50, p99);
            }
            let mut server_cores: Vec<f64> = samples[f][b].iter().map(|s| s.server_cores).collect();
            let mut generator_cores: Vec<f64> =
                samples[f][b].iter().map(|s| s.generator_cores).collect();
            let mut server_us: Vec<f64> = samples[f][b]
                .iter()
                .map(|s| s.server_cores * 1e6 / s.delivered_per_sec)
                .collect();
            record = record
                .note(
                    "pub_per_sec",
                    format!("{:.0}", median(&mut publish).unwrap_or(0.0)),
                )
                .note(
                    "srv_cpu",
                    format!("{:.2}", median(&mut server_cores).unwrap_or(0.0)),
                )
                .note(
                    "srv_us_per_msg",
                    format!("{:.1}", median(&mut server_us).unwrap_or(0.0)),
                )
                .note(
                    "gen_cpu",
                    format!("{:.2}", median(&mut generator_cores).unwrap_or(0.0)),
                );
            if let Some(rate) = flow.rate {
                record = record.note("target_per_sec", rate);
            }
            if flow.persistent {
                record = record.note(
                    "fsync",
                    if broker.system == System::Strata {
                        STRATA_FSYNC
                    } else {
                        "before-confirm"
                    },
                );
            }
            records.push(record);
        }
    }

    // Memory: fresh brokers, the same messages queued in each.
    for broker in brokers.drain(..) {
        broker.stop();
    }
    if !wanted("memory") {
        return Ok(records);
    }
    let n = args.memory_messages.max(1);
    let label = if n == 1_000_000 {
        "memory 1M x 100B transient".to_owned()
    } else {
        format!("memory {n} x 100B transient")
    };
    let bar = opts.progress(systems.len() as u64, "amqp: memory");
    for &system in systems {
        let broker = Broker::start(system, root, rt).with_context(|| start_hint(system))?;
        let before = broker.rss_bytes()?;
        let record = match rt.block_on(fill_queue(&broker.uri(), n)) {
            Ok(load_secs) => {
                let (rss, settle) = settled_rss(&broker)?;
                Record::new("amqp", &label, system.name())
                    .ops(n as f64 / load_secs)
                    .note("rss_mib", format!("{:.1}", rss as f64 / (1 << 20) as f64))
                    .note(
                        "rss_empty_mib",
                        format!("{:.1}", before as f64 / (1 << 20) as f64),
                    )
                    .note(
                        "bytes_per_msg",
                        format!("{:.0}", rss.saturating_sub(before) as f64 / n as f64),
                    )
                    .note("messages", n)
                    .note("settled_after_s", format!("{:.1}", settle.as_secs_f64()))
            }
            Err(e) => {
                say(
                    &bar,
                    format!("amqp: {label} failed on {}: {e:#}", system.name()),
                );
                Record::new("amqp", &label, system.name())
                    .note("failed", format!("{e:#}").replace('\n', " "))
            }
        };
        records.push(record);
        broker.stop();
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_from_a_stat_line_with_odd_command_names() {
        assert_eq!(stat_ppid("42 (beam.smp) S 17 42 17 0 -1"), Some(17));
        assert_eq!(stat_ppid("42 (a ) b) R 9 42"), Some(9));
        assert_eq!(stat_ppid("garbage"), None);
    }

    #[test]
    fn cpu_ticks_from_a_stat_line() {
        let line = "7 (a b) S 1 7 7 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0";
        assert_eq!(stat_cpu_ticks(line), Some(300));
        assert_eq!(stat_cpu_ticks("7 (x) S 1"), None);
        assert!(cpu_secs(std::process::id()) >= 0.0);
    }

    #[test]
    fn own_process_has_a_resident_size_and_no_stray_children() {
        assert!(rss_of(std::process::id()).expect("rss") > 0);
        assert!(descendants(u32::MAX - 1).is_empty());
    }

    #[test]
    fn latency_recorder_only_records_inside_the_window() {
        let rec = LatencyRecorder::new().expect("histogram");
        let payload = now_ns().to_le_bytes();
        rec.record(&payload);
        assert!(rec.percentiles_us().is_none());
        rec.recording.store(true, Ordering::Relaxed);
        rec.record(&payload);
        rec.record(b"short");
        let (p50, p99) = rec.percentiles_us().expect("one sample");
        assert!(p50 > 0.0 && p99 >= p50);
    }

    #[test]
    fn flows_cover_the_issue_scenarios() {
        let flows = flows(10_000);
        assert_eq!(flows.len(), 5);
        assert!(
            flows
                .iter()
                .all(|f| !f.manual_ack || PREFETCH as u64 > ACK_EVERY)
        );
        assert!(flows.iter().any(|f| f.fanout && f.queues == 10));
        assert!(flows.iter().any(|f| f.queues == 100 && f.publishers == 100));
        assert!(
            flows
                .iter()
                .any(|f| f.confirms && f.persistent && f.size == 1024)
        );
        assert_eq!(flows[4].label, "latency 16B @10k/s");
    }
}
