//! `strata-bench kv`: the key-value server against redis-server, both driven by `redis-benchmark`.
//!
//! Both servers run side by side for the whole suite with the same durability: redis-server with
//! `appendonly yes`, `appendfsync everysec` and no RDB snapshots; strata with `--fsync everysec`. For every
//! test (SET, GET, INCR, LPUSH, RPOP, SADD, HSET, ZADD, LRANGE_100, MSET of 10 keys), with 50 clients and
//! with and without a pipeline of 16, the two servers are measured one after the other, the order
//! alternating between rounds, and the median round is reported with redis-benchmark's own p50 and p99.
//!
//! Memory: each server is restarted empty, loaded with the same 1M distinct keys holding 100-byte values
//! (pipelined `SET`s over one connection), and its resident set size is read from `/proc/<pid>/status`.
//!
//! The peer comes from Debian (`apt-get install redis-server redis-tools`); when the tools are missing and
//! the suite runs as root it installs them. strata is the release binary next to this one
//! (`cargo build --release -p strata`), built on demand.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
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
                .args(["--fsync", "everysec", "--log-level", "warn"]);
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
                bail!("{} did not answer PING on port {}", self.name, self.port);
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

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
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

    fn stop(mut self) {
        let _ = self.command(&["SHUTDOWN", "NOSAVE"]);
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

/// One redis-benchmark result.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs redis-benchmark for one test against `port`.
fn run_benchmark(port: u16, test: &str, requests: u64, pipeline: u32) -> anyhow::Result<Sample> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", test, "-n", &requests.to_string()])
        .args(["-c", &CLIENTS.to_string(), "-P", &pipeline.to_string()])
        .args(["-r", "100000", "-d", "100", "--csv"])
        .stderr(Stdio::null())
        .output()
        .context("running redis-benchmark")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    parse_csv(&stdout, test)
        .with_context(|| format!("redis-benchmark -t {test} printed no result: {stdout}"))
}

/// Picks the row of `test` out of redis-benchmark's CSV (LRANGE runs an LPUSH first, which is skipped).
fn parse_csv(csv: &str, test: &str) -> Option<Sample> {
    let wanted = test.to_ascii_uppercase();
    for line in csv.lines() {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
        let Some(name) = fields.first() else { continue };
        let name = name.split_whitespace().next().unwrap_or_default();
        if name != wanted || fields.len() < 7 {
            continue;
        }
        let num = |i: usize| fields[i].parse::<f64>().ok();
        return Some(Sample {
            rps: num(1)?,
            p50_ms: num(4)?,
            p99_ms: num(6)?,
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
    let cases: Vec<(&str, &str, u32, u64)> = TESTS
        .iter()
        .flat_map(|&(test, label)| {
            [
                (test, label, 1, plain_requests),
                (test, label, PIPELINE, pipelined_requests),
            ]
        })
        .collect();
    let bar = opts.progress(
        (cases.len() * opts.rounds * servers.len()) as u64,
        "kv: redis-benchmark",
    );
    let mut samples: Vec<Vec<Vec<Sample>>> = vec![vec![Vec::new(); servers.len()]; cases.len()];
    for round in 0..opts.rounds {
        for (c, &(test, _, pipeline, requests)) in cases.iter().enumerate() {
            let order: Vec<usize> = if (round + c) % 2 == 0 {
                (0..servers.len()).collect()
            } else {
                (0..servers.len()).rev().collect()
            };
            for s in order {
                let sample = run_benchmark(servers[s].port, test, requests, pipeline)?;
                samples[c][s].push(sample);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    for (c, &(_, label, pipeline, requests)) in cases.iter().enumerate() {
        let case = if pipeline == 1 {
            format!("{label} -c{CLIENTS}")
        } else {
            format!("{label} -c{CLIENTS} -P{pipeline}")
        };
        for (s, server) in servers.iter().enumerate() {
            let mut rps: Vec<f64> = samples[c][s].iter().map(|x| x.rps).collect();
            let mut p50: Vec<f64> = samples[c][s].iter().map(|x| x.p50_ms * 1000.0).collect();
            let mut p99: Vec<f64> = samples[c][s].iter().map(|x| x.p99_ms * 1000.0).collect();
            let mut record = Record::new("kv", &case, server.name)
                .ops(median(&mut rps).unwrap_or(0.0))
                .latency_us(
                    median(&mut p50).unwrap_or(0.0),
                    median(&mut p99).unwrap_or(0.0),
                )
                .note("requests", requests);
            if !server.is_strata {
                record = record.note("fsync", "appendfsync everysec");
            } else {
                record = record.note("fsync", "everysec");
            }
            records.push(record);
        }
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
        let s = parse_csv(csv, "lrange_100").expect("row");
        assert!((s.rps - 7490.64).abs() < 1e-9);
        assert!((s.p50_ms - 4.423).abs() < 1e-9);
        assert!((s.p99_ms - 15.879).abs() < 1e-9);
        assert!(parse_csv(csv, "lpush").is_some());
        assert!(parse_csv(csv, "set").is_none());
    }
}
