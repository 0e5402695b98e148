//! A `strata serve` child process for the restart tests, shared by the service test files.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to start or stop.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A `strata serve` child process on ephemeral ports, killed on drop if still running.
pub struct Node {
    /// The process.
    pub child: Child,
    /// Its data directory.
    pub dir: PathBuf,
}

impl Node {
    /// Starts a node on `dir` with `extra` flags and waits until it has written `ports.json`.
    pub fn start(dir: &Path, extra: &[&str]) -> Node {
        // A killed node leaves a stale ports.json; the new node writes it once listening.
        let _ = std::fs::remove_file(dir.join("ports.json"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        for (key, _) in std::env::vars() {
            if key.starts_with("STRATA_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .env_remove("RUST_LOG")
            .current_dir(dir.parent().unwrap())
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--http-port", "0", "--resp-port", "0", "--amqp-port", "0"])
            .args(["--gateway-port", "0", "--shutdown-timeout", "5s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let node = Node {
            child,
            dir: dir.to_owned(),
        };
        let start = Instant::now();
        while !node.dir.join("ports.json").exists() {
            assert!(start.elapsed() < DEADLINE, "ports.json never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        node
    }

    /// The port the node's `service` listens on, from `ports.json`.
    pub fn port(&self, service: &str) -> u64 {
        let ports: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.join("ports.json")).unwrap())
                .unwrap();
        ports[service].as_u64().expect("port in ports.json")
    }

    /// Sends `sig` and waits for the process to exit.
    pub fn stop(mut self, sig: rustix::process::Signal) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
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
