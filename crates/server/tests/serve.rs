//! End-to-end tests of `strata serve`: they spawn the real binary on port 0 with a temporary data directory
//! and talk to it over 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// A `strata serve` child process, killed on drop if still running.
struct Node {
    child: Child,
    dir: PathBuf,
}

fn strata() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    // The tests must not pick up the developer's own configuration.
    for (key, _) in std::env::vars() {
        if key.starts_with("STRATA_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

impl Node {
    /// Starts a node on `dir` with every port 0 and waits until ports.json exists.
    fn start(dir: &Path, extra: &[&str]) -> Node {
        let child = Self::spawn(dir, extra);
        let node = Node {
            child,
            dir: dir.to_owned(),
        };
        node.wait_for_ports();
        node
    }

    fn spawn(dir: &Path, extra: &[&str]) -> Child {
        strata()
            .current_dir(dir.parent().unwrap())
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--http-port", "0", "--resp-port", "0", "--amqp-port", "0"])
            .args(["--gateway-port", "0", "--shutdown-timeout", "5s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn ports_path(&self) -> PathBuf {
        self.dir.join("ports.json")
    }

    fn wait_for_ports(&self) {
        let start = Instant::now();
        while !self.ports_path().exists() {
            assert!(start.elapsed() < DEADLINE, "ports.json never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ports(&self) -> BTreeMap<String, u16> {
        serde_json::from_str(&std::fs::read_to_string(self.ports_path()).unwrap()).unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports()["http"])
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Waits for the process to exit, failing past the deadline.
    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "strata did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Polls `url` until it answers `status`.
fn wait_status(url: &str, status: u16) {
    let start = Instant::now();
    loop {
        if let Ok(r) = client().get(url).send()
            && r.status().as_u16() == status
        {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{url} never answered {status}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn serves_probes_and_metrics_then_shuts_down_cleanly_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = Node::start(&dir, &[]);

    let ports = node.ports();
    assert!(ports.contains_key("http"), "{ports:?}");
    assert!(ports.values().all(|&p| p != 0), "{ports:?}");

    let health = client().get(node.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    wait_status(&node.url("/readyz"), 200);

    let version: serde_json::Value = client()
        .get(node.url("/version"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(version["name"], "strata");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));

    node.signal(rustix::process::Signal::TERM);
    let status = node.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(!node.ports_path().exists(), "ports.json left behind");
    // The lock is released: we can take it ourselves.
    let lock = File::options()
        .read(true)
        .write(true)
        .open(dir.join("LOCK"))
        .unwrap();
    lock.try_lock().expect("LOCK still held after exit");
}

#[test]
fn sigint_also_shuts_down_with_exit_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = Node::start(&dir, &[]);
    wait_status(&node.url("/readyz"), 200);
    node.signal(rustix::process::Signal::INT);
    assert!(node.wait_exit().success());
    assert!(!node.ports_path().exists());
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"), &[]);
    let response = client().get(node.url("/metrics")).send().unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let body = response.text().unwrap();

    // Every line must be something the parser understands: a sample, HELP, TYPE, or the OpenMetrics-only
    // `# UNIT` / `# EOF` lines, which the Prometheus text parser treats as comments.
    for line in body.lines() {
        let info = prometheus_parse::LineInfo::parse(line);
        let understood = !matches!(info, prometheus_parse::LineInfo::Ignored)
            || line == "# EOF"
            || line.starts_with("# UNIT ");
        assert!(understood, "unparseable metrics line: {line:?}");
    }
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let names: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for expected in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "strata_uptime_seconds",
        "strata_build_info",
        "strata_storage_writes_total",
        "strata_storage_write_amplification",
        "strata_storage_compaction_debt_bytes",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let rss = scrape
        .samples
        .iter()
        .find(|s| s.metric == "process_resident_memory_bytes")
        .unwrap();
    match rss.value {
        prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => assert!(v > 0.0),
        ref other => panic!("unexpected value {other:?}"),
    }
}

#[test]
fn a_second_instance_on_the_same_dir_is_refused_while_the_first_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = Node::start(&dir, &[]);
    let ports_before = std::fs::read(first.ports_path()).unwrap();

    let second = Node::spawn(&dir, &[]).wait_with_output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
    assert!(
        stderr.contains(&first.child.id().to_string()),
        "holder pid missing: {stderr}"
    );

    assert_eq!(std::fs::read(first.ports_path()).unwrap(), ports_before);
    let health = client().get(first.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
}

#[test]
fn bad_values_and_unknown_keys_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    let out = run(strata()
        .current_dir(tmp.path())
        .args(["serve", "--resp-port", "70000"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resp_port") && stderr.contains("70000"),
        "{stderr}"
    );
    assert!(
        stderr.contains("port number"),
        "allowed values missing: {stderr}"
    );

    let out = run(strata()
        .current_dir(tmp.path())
        .env("STRATA_FSYNC", "sometimes")
        .args(["serve", "--data-dir"])
        .arg(&dir));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fsync") && stderr.contains("sometimes"),
        "{stderr}"
    );
    assert!(stderr.contains("STRATA_FSYNC"), "{stderr}");

    let config = tmp.path().join("strata.toml");
    std::fs::write(&config, "resp_port = 7000\nfsync_policy = \"always\"\n").unwrap();
    let out = run(strata()
        .current_dir(tmp.path())
        .args(["serve", "--data-dir"])
        .arg(&dir));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fsync_policy"), "{stderr}");
    assert!(stderr.contains("strata.toml"), "{stderr}");

    let out = run(strata()
        .current_dir(tmp.path())
        .env("STRATA_NO_SUCH_KEY", "1")
        .args(["config", "print", "--config", "/dev/null"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("STRATA_NO_SUCH_KEY"));

    assert!(
        !dir.exists(),
        "a refused start must not create the data directory"
    );
}

#[test]
fn non_loopback_bind_without_auth_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = run(strata()
        .current_dir(tmp.path())
        .args(["serve", "--bind", "0.0.0.0", "--data-dir"])
        .arg(&dir));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without authentication"), "{stderr}");
    assert!(stderr.contains("STRATA_REQUIREPASS"), "{stderr}");
    assert!(!dir.exists());
}

#[test]
fn requirepass_protects_everything_but_the_probes_and_never_leaks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = Node::start(&dir, &["--requirepass", "pa55word", "--log-level", "debug"]);
    wait_status(&node.url("/readyz"), 200);
    assert_eq!(
        client().get(node.url("/healthz")).send().unwrap().status(),
        200
    );
    assert_eq!(
        client().get(node.url("/metrics")).send().unwrap().status(),
        401
    );
    let wrong = client()
        .get(node.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = client()
        .get(node.url("/metrics"))
        .bearer_auth("pa55word")
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let basic = client()
        .get(node.url("/version"))
        .basic_auth("anyone", Some("pa55word"))
        .send()
        .unwrap();
    assert_eq!(basic.status(), 200);

    node.signal(rustix::process::Signal::TERM);
    assert!(node.wait_exit().success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(node.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("listening"), "logs missing: {stderr}");
    assert!(
        !stderr.contains("pa55word"),
        "password leaked into logs: {stderr}"
    );
}

#[test]
fn config_print_shows_the_layers_merged() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("strata.toml"),
        "resp_port = 7001\namqp_port = 7002\n",
    )
    .unwrap();
    let out = run(strata()
        .current_dir(tmp.path())
        .env("STRATA_AMQP_PORT", "7003")
        .env("STRATA_REQUIREPASS", "hunter2")
        .args(["config", "print", "--fsync", "always"]));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(table["resp_port"].as_integer(), Some(7001));
    assert_eq!(table["amqp_port"].as_integer(), Some(7003));
    assert_eq!(table["fsync"].as_str(), Some("always"));
    assert_eq!(table["http_port"].as_integer(), Some(8080));
    assert!(!text.contains("hunter2"));
}

#[test]
fn help_documents_every_flag() {
    let out = run(strata().args(["serve", "--help"]));
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--data-dir",
        "--bind",
        "--resp-port",
        "--fsync",
        "--shutdown-timeout",
        "--services",
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
    assert!(help.contains("[default: 6379]"), "{help}");
    let out = run(strata().arg("--help"));
    assert!(String::from_utf8(out.stdout).unwrap().contains("serve"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(&tmp.path().join("data"), &["--log-format", "json"]);
    node.signal(rustix::process::Signal::TERM);
    assert!(node.wait_exit().success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(node.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 3, "{stderr}");
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).expect(line);
        assert!(event["level"].is_string(), "{line}");
    }
}

fn redis_client(node: &Node) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{}", node.ports()["resp"]))
        .unwrap()
        .get_connection()
        .unwrap()
}

#[test]
fn kv_data_survives_a_clean_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = Node::start(&dir, &[]);
    wait_status(&node.url("/readyz"), 200);
    let mut c = redis_client(&node);
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("ttl")
        .arg("v")
        .arg("EX")
        .arg(1000)
        .query(&mut c)
        .unwrap();
    drop(c);
    node.signal(rustix::process::Signal::TERM);
    assert!(node.wait_exit().success());
    drop(node);

    let node = Node::start(&dir, &[]);
    let mut c = redis_client(&node);
    for i in 0..200 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
    let ttl: i64 = redis::cmd("TTL").arg("ttl").query(&mut c).unwrap();
    assert!((990..=1000).contains(&ttl), "{ttl}");
}

#[test]
fn kv_acknowledged_writes_survive_kill_9_with_fsync_always() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut node = Node::start(&dir, &["--fsync", "always"]);
    let mut c = redis_client(&node);
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    node.signal(rustix::process::Signal::KILL);
    assert!(!node.wait_exit().success());
    drop(node);
    // ports.json of the killed node is stale; the new node overwrites it once listening.
    std::fs::remove_file(dir.join("ports.json")).unwrap();

    let node = Node::start(&dir, &["--fsync", "always"]);
    let mut c = redis_client(&node);
    for i in 0..100 {
        let v: i64 = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(v, i);
    }
}

/// `--fsync no` with `--maxmemory` and a policy: a Redis-style cache, whose INFO also shows what the
/// allocator holds.
#[test]
fn kv_runs_as_a_cache_with_maxmemory_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = Node::start(
        &dir,
        &[
            "--fsync",
            "no",
            "--maxmemory",
            "100kb",
            "--maxmemory-policy",
            "allkeys-lru",
        ],
    );
    wait_status(&node.url("/readyz"), 200);
    let mut c = redis_client(&node);
    let value = "x".repeat(1000);
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query(&mut c)
            .unwrap();
    }
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in INFO"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(field("maxmemory"), 100 * 1024);
    assert!(field("evicted_keys") > 300, "{info}");
    assert!(field("used_memory") <= 100 * 1024 + 2000, "{info}");
    assert!(field("allocator_allocated") > 0, "{info}");
    let policy: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(&mut c)
        .unwrap();
    assert_eq!(policy, vec!["maxmemory-policy", "allkeys-lru"]);
}
