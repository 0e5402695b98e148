//! The AMQP broker in the real `strata` binary: `--amqp-port 0` serves lapin, and confirmed persistent
//! messages in a durable queue survive `kill -9` under fsync=always and a SIGTERM stop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

const DEADLINE: Duration = Duration::from_secs(30);

/// A `strata serve` child process, killed on drop if still running.
struct Node {
    child: Child,
    dir: PathBuf,
}

impl Node {
    fn start(dir: &Path, extra: &[&str]) -> Node {
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
            .args(["--shutdown-timeout", "5s"])
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

    async fn connect(&self) -> Connection {
        let ports: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.join("ports.json")).unwrap())
                .unwrap();
        let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", ports["amqp"]);
        Connection::connect(&uri, ConnectionProperties::default())
            .await
            .unwrap()
    }

    fn stop(mut self, sig: rustix::process::Signal) -> std::process::ExitStatus {
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

async fn publish_confirmed(node: &Node, n: u32) {
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "jobs".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..n {
        ch.basic_publish(
            "".into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            &i.to_be_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    }
    assert!(ch.wait_for_confirms().await.unwrap().is_empty());
}

async fn consume_all(node: &Node, n: u32) {
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "jobs".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..n {
        let d = tokio::time::timeout(DEADLINE, consumer.next())
            .await
            .expect("delivery in time")
            .unwrap()
            .unwrap();
        assert_eq!(d.data, i.to_be_bytes());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_persistent_messages_survive_kill_9_with_fsync_always() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = Node::start(&dir, &["--fsync", "always"]);
    publish_confirmed(&node, 200).await;
    node.stop(rustix::process::Signal::KILL);
    let node = Node::start(&dir, &["--fsync", "always"]);
    consume_all(&node, 200).await;
    assert!(node.stop(rustix::process::Signal::TERM).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_survive_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = Node::start(&dir, &[]);
    publish_confirmed(&node, 50).await;
    assert!(node.stop(rustix::process::Signal::TERM).success());
    let node = Node::start(&dir, &[]);
    consume_all(&node, 50).await;
}
