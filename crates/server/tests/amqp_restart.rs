//! The AMQP broker in the real `strata` binary: `--amqp-port 0` serves lapin, and confirmed persistent
//! messages in a durable queue survive `kill -9` under fsync=always and a SIGTERM stop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

mod support;

use support::{DEADLINE, Node};

/// An AMQP connection to `node` as guest.
async fn connect(node: &Node) -> Connection {
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", node.port("amqp"));
    Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap()
}

async fn publish_confirmed(node: &Node, n: u32) {
    let conn = connect(node).await;
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
    let conn = connect(node).await;
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
