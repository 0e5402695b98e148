//! `strata-bench kv`: the key-value server against redis-server, both driven by `redis-benchmark`.
//!
//! Both servers run side by side for the whole suite with the same durability: redis-server with
//! `appendonly yes`, `appendfsync everysec` and no RDB snapshots; strata with `--fsync everysec`. For every
//! test (SET, GET, INCR, LPUSH, RPOP, SADD, HSET, ZADD, LRANGE_100, MSET of 10 keys), with 50 clients and
//! with and without a pipeline of 16, the two servers are measured one after the other, the order
//! alternating between rounds, and the median round is reported with redis-benchmark's own p50 and p99.
//! Each row's notes also give every round's ops/s in round order (`rounds`), since the machine is shared
//! and one slow round says more than a median hides, and the server process's CPU time per request
//! (`server_cpu_us_per_req`, the median over the rounds; all of its threads, so background flushes,
//! compactions and key expiry count: what a server spends beside the measured commands shows there).
//!
//! Beyond redis-benchmark's built-in tests, the suite runs custom commands (the same on both servers unless
//! said otherwise): XADD to a capped stream; XREADGROUP (COUNT 1, `>`) on a stream preloaded with explicit
//! IDs `0-1`..`(N-1)-1` and a fresh consumer group, followed by a separate timed run of XACK on random IDs
//! of those now-pending entries (the two form one pair: naming either in `BENCH_KV_CASES` runs both); EVALSHA of a 3-command script (INCR, EXPIRE, GET); PFADD of random elements;
//! and CL.THROTTLE, native on strata and the same GCRA as a Lua script (`bench/gcra.lua`, via EVALSHA) on
//! redis-server, since redis-cell is not packaged. Each custom command is sent once before its first run
//! and must not fail, since redis-benchmark would count error replies as requests.
//!
//! Before the timed rounds every case runs once untimed on each server with a quarter of its requests
//! (a warm-up: keys created, caches and code paths in use), so no server's first round pays for that.
//!
//! strata runs with `--worker-threads 1` (`BENCH_KV_WORKERS=N` changes it; 0 is one per core): the same
//! one command thread redis-server has, with redis-benchmark on the machine's other core.
//!
//! `BENCH_KV_CASES=XADD,PFADD,...` runs only the named cases (labels as in the report, without the
//! `-c50`/`-P16` suffix, case-insensitive; `memory` is the memory case) and `BENCH_KV_SKIP=...`
//! leaves the named ones out.
//!
//! Memory: each server is restarted empty, loaded with the same 1M distinct keys holding 100-byte values
//! (pipelined `SET`s over one connection), and its resident set size is read from `/proc/<pid>/status`.
//!
//! The peer comes from Debian (`apt-get install redis-server redis-tools`); when the tools are missing and
//! the suite runs as root it installs them. strata is the release binary next to this one
//! (`cargo build --release -p strata`), built on demand.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::SuiteOptions;
use crate::report::{Record, median};

/// redis-benchmark's test names, and how the report names them.
const TESTS: &[(&str, &str)] = &[
    ("set", "SET"),
    ("get", "GET"),
    ("incr", "INCR"),
    ("lpush", "LPUSH"),
    ("rpop", "RPOP"),
    ("sadd", "SADD"),
    ("hset", "HSET"),
    ("zadd", "ZADD"),
    ("lrange_100", "LRANGE_100"),
    ("mset", "MSET"),
];
/// The EVALSHA case's script: three commands on one key.
const EVAL_SCRIPT: &str = "redis.call('INCR', KEYS[1]) redis.call('EXPIRE', KEYS[1], 60) return redis.call('GET', KEYS[1])";
/// CL.THROTTLE's GCRA as a Lua script, for redis-server.
const GCRA_SCRIPT: &str = include_str!("../gcra.lua");
/// CL.THROTTLE's arguments after the key: max_burst, count, period (s), quantity.
const THROTTLE_ARGS: [&str; 4] = ["15", "30", "60", "1"];
/// The stream XREADGROUP and XACK use, its group and consumer.
const GROUP_STREAM: &str = "bench:group";
/// Concurrent clients of every run.
const CLIENTS: u32 = 50;
/// Pipeline depth of the pipelined runs.
const PIPELINE: u32 = 16;
/// Keys of the memory case, and their value size.
const MEMORY_KEYS: u64 = 1_000_000;
const MEMORY_VALUE_BYTES: usize = 100;

/// One server under test.
struct Server {
    name: &'static str,
    is_strata: bool,
    port: u16,
    child: Child,
    dir: PathBuf,
}

/// strata's `--worker-threads`: `BENCH_KV_WORKERS`, else 1. redis-server runs every command on one thread;
/// one worker gives strata the same (its flush, compaction and fsync threads run beside it, as Redis's
/// background threads do). On a two-core machine whose other core runs redis-benchmark, a second worker
/// mostly adds lock hand-offs between cores on the hot keys these cases use (`0` measures that: one worker
/// per core).
fn strata_workers() -> String {
    std::env::var("BENCH_KV_WORKERS").unwrap_or_else(|_| "1".to_owned())
}

impl Server {
    fn start(name: &'static str, root: &Path) -> anyhow::Result<Server> {
        let port = free_port()?;
        let dir = root.join(format!("{name}-{port}"));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut cmd = if name == "strata" {
            let mut c = Command::new(strata_binary()?);
            c.args(["serve", "--data-dir"])
                .arg(dir.join("data"))
                .args(["--resp-port", &port.to_string(), "--http-port", "0"])
                .args(["--fsync", "everysec", "--log-level", "warn"])
                .args(["--worker-threads", &strata_workers()]);
            c
        } else {
            let mut c = Command::new("redis-server");
            c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--appendonly", "yes", "--appendfsync", "everysec"])
                .args(["--save", "", "--daemonize", "no", "--dir"])
                .arg(&dir);
            c
        };
        let child = cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let server = Server {
            name,
            is_strata: name == "strata",
            port,
            child,
            dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Polls PING until the server answers (or 30 s pass).
    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self
                .command(&["PING"])
                .is_ok_and(|reply| reply.starts_with("+PONG"))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                bail!(
                    "{} did not answer PING on port {}; its log:\n{log}",
                    self.name,
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one command and returns its reply's first line.
    fn command(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(self.addr())?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.write_all(&encode(args.iter().map(|a| a.as_bytes())))?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line)
    }

    /// Sends one command and returns its whole reply (simple, integer, error or bulk string); errors fail.
    fn request(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(self.addr())?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        stream.write_all(&encode(args.iter().map(|a| a.as_bytes())))?;
        let reply = read_reply(&mut BufReader::new(stream))?;
        reply.map_err(|e| anyhow::anyhow!("{}: {} replied {e}", self.name, args[0]))
    }

    /// Sends many commands over one connection, `CHUNK` at a time, and fails on any error reply.
    fn pipeline(&self, commands: impl Iterator<Item = Vec<String>>) -> anyhow::Result<()> {
        const CHUNK: usize = 5_000;
        let mut stream = TcpStream::connect(self.addr())?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut commands = commands.peekable();
        while commands.peek().is_some() {
            let mut out = Vec::new();
            let mut sent = 0;
            for cmd in commands.by_ref().take(CHUNK) {
                out.extend_from_slice(&encode(cmd.iter().map(|a| a.as_bytes())));
                sent += 1;
            }
            stream.write_all(&out)?;
            for _ in 0..sent {
                if let Err(e) = read_reply(&mut reader)? {
                    bail!("{}: preload command replied {e}", self.name);
                }
            }
        }
        Ok(())
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// CPU time the server process has used so far (user and system, all its threads, not its children:
    /// a redis-server AOF rewrite runs in a forked child), in seconds.
    fn cpu_secs(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let mut fields = rest.split_whitespace().skip(11);
        let utime: f64 = fields.next()?.parse().ok()?;
        let stime: f64 = fields.next()?.parse().ok()?;
        let ticks = rustix::param::clock_ticks_per_second();
        (ticks > 0).then(|| (utime + stime) / ticks as f64)
    }

    /// Resident set size in bytes.
    fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kib * 1024)
    }

    /// Asks the server to shut down, then makes sure it is gone (see `Drop`).
    fn stop(self) {
        let _ = self.command(&["SHUTDOWN", "NOSAVE"]);
    }
}

impl Drop for Server {
    /// Kills the server and removes its directory, also when the suite fails part-way.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The strata binary beside this one, built first when it is missing.
pub(crate) fn strata_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("strata");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "strata"])
            .status()
            .context("building strata")?;
        if !status.success() || !path.exists() {
            bail!("could not build strata at {}", path.display());
        }
    }
    Ok(path)
}

/// Makes sure redis-server and redis-benchmark exist, installing Debian's packages when possible.
fn ensure_peer_tools() -> anyhow::Result<()> {
    let have = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if have("redis-server") && have("redis-benchmark") {
        return Ok(());
    }
    eprintln!(
        "redis-server or redis-benchmark missing; trying apt-get install redis-server redis-tools"
    );
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "redis-server", "redis-tools"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    // Debian starts a system redis-server on 6379; the suite runs its own.
    let _ = Command::new("systemctl")
        .args(["stop", "redis-server"])
        .status();
    if have("redis-server") && have("redis-benchmark") {
        Ok(())
    } else {
        bail!(
            "the kv suite needs redis-server and redis-benchmark (apt-get install redis-server redis-tools)"
        )
    }
}

/// A port nothing listens on right now (the OS's pick).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A RESP array of bulk strings.
fn encode<'a>(args: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one RESP reply: `Ok(text)` for simple strings, integers and bulk strings (arrays are read and
/// summarised as `array`), `Err(message)` for error replies.
fn read_reply(reader: &mut impl BufRead) -> anyhow::Result<Result<String, String>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        bail!("connection closed before a reply");
    }
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => Ok(Ok(rest.to_owned())),
        "-" => Ok(Err(rest.to_owned())),
        "$" => {
            let len: i64 = rest.parse().context("bad bulk length")?;
            if len < 0 {
                return Ok(Ok(String::new()));
            }
            let mut buf = vec![0u8; len as usize + 2];
            reader.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(Ok(String::from_utf8_lossy(&buf).into_owned()))
        }
        "*" => {
            let len: i64 = rest.parse().context("bad array length")?;
            for _ in 0..len.max(0) {
                if let Err(e) = read_reply(reader)? {
                    return Ok(Err(e));
                }
            }
            Ok(Ok("array".to_owned()))
        }
        _ => bail!("unexpected reply line {line:?}"),
    }
}

/// What one case runs.
#[derive(Debug, Clone)]
enum Workload {
    /// A redis-benchmark built-in test (`-t`).
    Builtin(&'static str),
    /// A custom command line, one per server (same order as the servers), with `-r` for `__rand_int__`.
    Custom {
        args: Vec<Vec<String>>,
        random: u64,
        setup: Setup,
    },
}

/// State a custom case needs before each timed run.
#[derive(Debug, Clone, Copy)]
enum Setup {
    None,
    /// A fresh `GROUP_STREAM` with entries `0-1`..`(n-1)-1` and a consumer group `g` at the start.
    StreamGroup(u64),
}

/// One row pair of the report.
#[derive(Debug, Clone)]
struct Case {
    label: &'static str,
    pipeline: u32,
    requests: u64,
    workload: Workload,
    /// What was measured on each server, for the notes column (custom cases; empty for built-ins).
    measured: Vec<String>,
}

/// Whether `label` passes `BENCH_KV_CASES` / `BENCH_KV_SKIP`.
fn selected(label: &str) -> bool {
    let listed = |var: &str| {
        std::env::var(var).ok().map(|v| {
            v.split(',')
                .any(|name| name.trim().eq_ignore_ascii_case(label))
        })
    };
    listed("BENCH_KV_CASES").unwrap_or(true) && !listed("BENCH_KV_SKIP").unwrap_or(false)
}

/// Prepares `server` for a run of `setup`.
fn prepare(server: &Server, setup: Setup) -> anyhow::Result<()> {
    match setup {
        Setup::None => Ok(()),
        Setup::StreamGroup(entries) => {
            server.request(&["DEL", GROUP_STREAM])?;
            server.pipeline((0..entries).map(|i| {
                ["XADD", GROUP_STREAM, &format!("{i}-1"), "field", "value"]
                    .map(str::to_owned)
                    .to_vec()
            }))?;
            server.request(&["XGROUP", "CREATE", GROUP_STREAM, "g", "0"])?;
            Ok(())
        }
    }
}

/// One redis-benchmark result.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The server process's CPU time (all its threads) during the run, per request, in µs; `None`
    /// where `/proc` cannot tell.
    cpu_us: Option<f64>,
}

/// Runs redis-benchmark for one case against server number `s`.
fn run_benchmark(port: u16, s: usize, case: &Case) -> anyhow::Result<Sample> {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-n", &case.requests.to_string()])
        .args(["-c", &CLIENTS.to_string(), "-P", &case.pipeline.to_string()])
        .args(["-d", "100", "--csv"]);
    match &case.workload {
        Workload::Builtin(test) => {
            cmd.args(["-r", "100000", "-t", test]);
        }
        Workload::Custom { args, random, .. } => {
            cmd.args(["-r", &random.to_string()]).args(&args[s]);
        }
    }
    let output = cmd
        .stderr(Stdio::null())
        .output()
        .context("running redis-benchmark")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let test = match &case.workload {
        Workload::Builtin(test) => Some(*test),
        Workload::Custom { .. } => None,
    };
    parse_csv(&stdout, test)
        .with_context(|| format!("redis-benchmark {} printed no result: {stdout}", case.label))
}

/// Picks the row of `test` out of redis-benchmark's CSV (LRANGE runs an LPUSH first, which is skipped);
/// with `None` (a custom command, whose row is named after its command line) the first data row.
fn parse_csv(csv: &str, test: Option<&str>) -> Option<Sample> {
    let wanted = test.map(str::to_ascii_uppercase);
    for line in csv.lines() {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
        let Some(name) = fields.first() else { continue };
        let name = name.split_whitespace().next().unwrap_or_default();
        if wanted.as_deref().is_some_and(|w| w != name) || fields.len() < 7 {
            continue;
        }
        let num = |i: usize| fields[i].parse::<f64>().ok();
        let (Some(rps), Some(p50_ms), Some(p99_ms)) = (num(1), num(4), num(6)) else {
            continue;
        };
        return Some(Sample {
            rps,
            p50_ms,
            p99_ms,
            cpu_us: None,
        });
    }
    None
}

/// Loads `MEMORY_KEYS` distinct keys with 100-byte values over one pipelined connection.
fn load_keys(server: &Server) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(server.addr())?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let value = vec![b'v'; MEMORY_VALUE_BYTES];
    const CHUNK: u64 = 10_000;
    let mut line = String::new();
    for start in (0..MEMORY_KEYS).step_by(CHUNK as usize) {
        let mut out = Vec::with_capacity(CHUNK as usize * 150);
        let end = (start + CHUNK).min(MEMORY_KEYS);
        for i in start..end {
            let key = format!("key:{i:012}");
            out.extend_from_slice(&encode([&b"SET"[..], key.as_bytes(), &value].into_iter()));
        }
        stream.write_all(&out)?;
        for _ in start..end {
            line.clear();
            reader.read_line(&mut line)?;
            if !line.starts_with("+OK") {
                bail!("{}: SET replied {line:?}", server.name);
            }
        }
    }
    let dbsize = server.command(&["DBSIZE"])?;
    if dbsize.trim() != format!(":{MEMORY_KEYS}") {
        bail!("{}: DBSIZE is {dbsize:?} after the load", server.name);
    }
    // Drain anything left so the connection closes cleanly.
    let _ = reader.get_mut().set_nonblocking(true);
    let _ = reader.read(&mut [0u8; 64]);
    Ok(())
}

/// Runs the suite.
pub fn run(opts: &SuiteOptions) -> anyhow::Result<Vec<Record>> {
    ensure_peer_tools()?;
    let root = std::env::temp_dir().join(format!("strata-bench-kv-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = run_in(opts, &root);
    let _ = std::fs::remove_dir_all(&root);
    result
}

/// The cases that pass the selection, in run order (each XREADGROUP run is followed by its XACK run).
fn build_cases(servers: &[Server], plain: u64, pipelined: u64) -> anyhow::Result<Vec<Case>> {
    let modes = [(1, plain), (PIPELINE, pipelined)];
    let mut cases = Vec::new();
    for &(test, label) in TESTS {
        if selected(label) {
            for (pipeline, requests) in modes {
                cases.push(Case {
                    label,
                    pipeline,
                    requests,
                    workload: Workload::Builtin(test),
                    measured: Vec::new(),
                });
            }
        }
    }
    let owned = |args: &[&str]| {
        args.iter()
            .map(|a| (*a).to_owned())
            .collect::<Vec<String>>()
    };
    let same = |args: &[&str]| vec![owned(args); servers.len()];
    let custom = |label,
                  (pipeline, requests),
                  args: Vec<Vec<String>>,
                  random,
                  setup,
                  measured: Vec<String>| Case {
        label,
        pipeline,
        requests,
        workload: Workload::Custom {
            args,
            random,
            setup,
        },
        measured,
    };
    let quoted = |args: &[String]| format!("\"{}\"", args.join(" "));
    if selected("XADD") {
        let args = same(&[
            "XADD",
            "bench:xadd",
            "MAXLEN",
            "~",
            "100000",
            "*",
            "field",
            "value",
        ]);
        let measured = args.iter().map(|a| quoted(a)).collect::<Vec<_>>();
        for mode in modes {
            cases.push(custom(
                "XADD",
                mode,
                args.clone(),
                100_000,
                Setup::None,
                measured.clone(),
            ));
        }
    }
    // XREADGROUP and XACK are a pair (XACK acknowledges what XREADGROUP delivered): naming either runs both.
    if selected("XREADGROUP") || selected("XACK") {
        for (pipeline, requests) in modes {
            let read = same(&[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "COUNT",
                "1",
                "STREAMS",
                GROUP_STREAM,
                ">",
            ]);
            let measured = vec![
                format!(
                    "{} on {requests} preloaded entries, one new entry per call",
                    quoted(&read[0])
                );
                servers.len()
            ];
            cases.push(custom(
                "XREADGROUP",
                (pipeline, requests),
                read,
                requests,
                Setup::StreamGroup(requests),
                measured,
            ));
            let ack = same(&["XACK", GROUP_STREAM, "g", "__rand_int__-1"]);
            let measured = vec![
                format!(
                    "{} right after XREADGROUP: random IDs among its {requests} pending (repeats ack 0)",
                    quoted(&ack[0])
                );
                servers.len()
            ];
            cases.push(custom(
                "XACK",
                (pipeline, requests),
                ack,
                requests,
                Setup::None,
                measured,
            ));
        }
    }
    if selected("EVALSHA") {
        let mut args = Vec::new();
        for server in servers {
            let sha = server.request(&["SCRIPT", "LOAD", EVAL_SCRIPT])?;
            args.push(owned(&["EVALSHA", &sha, "1", "bench:eval:__rand_int__"]));
        }
        let measured =
            vec!["\"EVALSHA <INCR+EXPIRE+GET> 1 bench:eval:<rand>\"".to_owned(); servers.len()];
        for mode in modes {
            cases.push(custom(
                "EVALSHA",
                mode,
                args.clone(),
                100_000,
                Setup::None,
                measured.clone(),
            ));
        }
    }
    if selected("PFADD") {
        let args = same(&["PFADD", "bench:hll", "__rand_int__"]);
        let measured = args.iter().map(|a| quoted(a)).collect::<Vec<_>>();
        for mode in modes {
            cases.push(custom(
                "PFADD",
                mode,
                args.clone(),
                1_000_000_000,
                Setup::None,
                measured.clone(),
            ));
        }
    }
    if selected("CL.THROTTLE") {
        let key = "bench:throttle:__rand_int__";
        let mut args = Vec::new();
        let mut measured = Vec::new();
        for server in servers {
            let mut a = if server.is_strata {
                measured.push("native \"CL.THROTTLE <key> 15 30 60 1\"".to_owned());
                owned(&["CL.THROTTLE", key])
            } else {
                let sha = server.request(&["SCRIPT", "LOAD", GCRA_SCRIPT])?;
                measured.push(
                    "\"EVALSHA <bench/gcra.lua> 1 <key> 15 30 60 1\" (same GCRA in Lua)".to_owned(),
                );
                owned(&["EVALSHA", &sha, "1", key])
            };
            a.extend(THROTTLE_ARGS.iter().map(|x| (*x).to_owned()));
            args.push(a);
        }
        for mode in modes {
            cases.push(custom(
                "CL.THROTTLE",
                mode,
                args.clone(),
                100_000,
                Setup::None,
                measured.clone(),
            ));
        }
    }
    Ok(cases)
}

/// Requests of a case's warm-up run, as a share of its timed runs'.
const WARM_UP_DIVISOR: u64 = 4;

/// One untimed run of every case on every server, a quarter of a timed run's requests, before the timed
/// rounds: the first run of a case otherwise pays for creating its keys and its code paths' first use on
/// one server in one round. Each custom command is first sent once and must not fail: redis-benchmark
/// counts error replies as requests.
fn warm_up(servers: &[Server], cases: &[Case]) -> anyhow::Result<()> {
    for case in cases {
        let warm = Case {
            requests: (case.requests / WARM_UP_DIVISOR).max(1),
            ..case.clone()
        };
        for (s, server) in servers.iter().enumerate() {
            if let Workload::Custom { args, setup, .. } = &case.workload {
                prepare(server, *setup)?;
                let probe: Vec<String> = args[s]
                    .iter()
                    .map(|a| a.replace("__rand_int__", "000000000000"))
                    .collect();
                let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
                server
                    .request(&probe)
                    .with_context(|| format!("checking {}", case.label))?;
            }
            run_benchmark(server.port, s, &warm)
                .with_context(|| format!("warming up {} on {}", case.label, server.name))?;
        }
    }
    Ok(())
}

fn run_in(opts: &SuiteOptions, root: &Path) -> anyhow::Result<Vec<Record>> {
    let (plain_requests, pipelined_requests) = if opts.quick {
        (20_000, 100_000)
    } else {
        (200_000, 1_000_000)
    };
    let mut servers = vec![
        Server::start("strata", root)?,
        Server::start("redis", root)?,
    ];
    let mut records = Vec::new();
    let cases = build_cases(&servers, plain_requests, pipelined_requests)?;
    let bar = opts.progress(
        (cases.len() * opts.rounds * servers.len()) as u64,
        "kv: redis-benchmark",
    );
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); servers.len()]; cases.len()];
    warm_up(&servers, &cases)?;
    for round in 0..opts.rounds {
        for (c, case) in cases.iter().enumerate() {
            let order: Vec<usize> = if (round + c) % 2 == 0 {
                (0..servers.len()).collect()
            } else {
                (0..servers.len()).rev().collect()
            };
            for s in order {
                if let Workload::Custom { setup, .. } = &case.workload {
                    prepare(&servers[s], *setup)?;
                }
                let cpu_before = servers[s].cpu_secs();
                let mut sample = run_benchmark(servers[s].port, s, case)?;
                sample.cpu_us = cpu_before
                    .zip(servers[s].cpu_secs())
                    .map(|(a, b)| (b - a) * 1e6 / case.requests as f64);
                samples[c][s].push(sample);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    for (c, case) in cases.iter().enumerate() {
        let (label, pipeline, requests) = (case.label, case.pipeline, case.requests);
        let case_name = if pipeline == 1 {
            format!("{label} -c{CLIENTS}")
        } else {
            format!("{label} -c{CLIENTS} -P{pipeline}")
        };
        for (s, server) in servers.iter().enumerate() {
            // Every round's figure in round order, so a slow round (a compaction, the expiry of an
            // earlier case's keys) shows beside the median.
            let rounds = samples[c][s]
                .iter()
                .map(|x| format!("{:.0}", x.rps))
                .collect::<Vec<_>>()
                .join("/");
            let mut cpu: Vec<f64> = samples[c][s].iter().filter_map(|x| x.cpu_us).collect();
            let mut rps: Vec<f64> = samples[c][s].iter().map(|x| x.rps).collect();
            let mut p50: Vec<f64> = samples[c][s].iter().map(|x| x.p50_ms * 1000.0).collect();
            let mut p99: Vec<f64> = samples[c][s].iter().map(|x| x.p99_ms * 1000.0).collect();
            let mut record = Record::new("kv", &case_name, server.name)
                .ops(median(&mut rps).unwrap_or(0.0))
                .latency_us(
                    median(&mut p50).unwrap_or(0.0),
                    median(&mut p99).unwrap_or(0.0),
                )
                .note("requests", requests)
                .note("rounds", rounds);
            if let Some(cpu) = median(&mut cpu) {
                record = record.note("server_cpu_us_per_req", format!("{cpu:.2}"));
            }
            if !server.is_strata {
                record = record.note("fsync", "appendfsync everysec");
            } else {
                record = record
                    .note("fsync", "everysec")
                    .note("worker_threads", strata_workers());
            }
            if let Some(measured) = case.measured.get(s) {
                record = record.note("measured", measured);
            }
            records.push(record);
        }
    }

    if !selected("memory") {
        for server in servers.drain(..) {
            server.stop();
        }
        return Ok(records);
    }
    // Memory: fresh servers, the same 1M keys in each.
    for server in servers.drain(..) {
        server.stop();
    }
    for name in ["strata", "redis"] {
        let server = Server::start(name, root)?;
        let before = server.rss_bytes()?;
        let started = Instant::now();
        load_keys(&server)?;
        let load_secs = started.elapsed().as_secs_f64();
        let rss = server.rss_bytes()?;
        records.push(
            Record::new("kv", "memory 1M keys x 100B", name)
                .ops(MEMORY_KEYS as f64 / load_secs)
                .note("rss_mib", format!("{:.1}", rss as f64 / (1 << 20) as f64))
                .note(
                    "rss_empty_mib",
                    format!("{:.1}", before as f64 / (1 << 20) as f64),
                )
                .note("keys", MEMORY_KEYS),
        );
        server.stop();
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                   \"LPUSH (needed to benchmark LRANGE)\",\"9216.59\",\"3.663\",\"0.144\",\"2.663\",\"11.463\",\"15.951\",\"16.319\"\n\
                   \"LRANGE_100 (first 100 elements)\",\"7490.64\",\"5.049\",\"0.064\",\"4.423\",\"14.375\",\"15.879\",\"16.039\"\n";
        let s = parse_csv(csv, Some("lrange_100")).expect("row");
        assert!((s.rps - 7490.64).abs() < 1e-9);
        assert!((s.p50_ms - 4.423).abs() < 1e-9);
        assert!((s.p99_ms - 15.879).abs() < 1e-9);
        assert!(parse_csv(csv, Some("lpush")).is_some());
        assert!(parse_csv(csv, Some("set")).is_none());
    }
}
