//! Transactions, direct reply-to RPC, exclusive and auto-delete queues, and channel.flow.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;

async fn count(ch: &lapin::Channel, q: &str) -> u32 {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive")
    .message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_commit_publishes_and_rollback_discards() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "txq".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.tx_select().await.expect("tx.select");
    for _ in 0..3 {
        ch.basic_publish(
            "".into(),
            "txq".into(),
            BasicPublishOptions::default(),
            b"t",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let other = conn.create_channel().await.expect("channel");
    assert_eq!(count(&other, "txq").await, 0, "nothing before commit");
    ch.tx_commit().await.expect("commit");
    assert_eq!(count(&other, "txq").await, 3);
    ch.basic_publish(
        "".into(),
        "txq".into(),
        BasicPublishOptions::default(),
        b"r",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    ch.tx_rollback().await.expect("rollback");
    ch.tx_commit().await.expect("commit");
    assert_eq!(
        count(&other, "txq").await,
        3,
        "rolled back publish never lands"
    );
    let err = other.confirm_select(ConfirmSelectOptions::default()).await;
    assert!(err.is_ok());
    let err = other.tx_select().await;
    assert!(err.is_err(), "confirm → tx is refused with 406");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_reply_to_rpc() {
    let b = common::start().await;
    let server_conn = b.connect().await;
    let server = server_conn.create_channel().await.expect("channel");
    server
        .queue_declare(
            "rpc".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let mut requests = server
        .basic_consume(
            "rpc".into(),
            "srv".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let client_conn = b.connect().await;
    let client = client_conn.create_channel().await.expect("channel");
    let mut replies = client
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "cli".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("reply consumer");
    client
        .basic_publish(
            "".into(),
            "rpc".into(),
            BasicPublishOptions::default(),
            b"2+2",
            BasicProperties::default()
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_correlation_id("c1".into()),
        )
        .await
        .expect("request");
    let req = requests.next().await.expect("request").expect("ok");
    let reply_to = req.properties.reply_to().clone().expect("reply_to set");
    assert!(
        reply_to.as_str().starts_with("amq.rabbitmq.reply-to."),
        "{reply_to}"
    );
    server
        .basic_publish(
            "".into(),
            reply_to,
            BasicPublishOptions::default(),
            b"4",
            BasicProperties::default().with_correlation_id("c1".into()),
        )
        .await
        .expect("reply");
    let rep = replies.next().await.expect("reply").expect("ok");
    assert_eq!(rep.data, b"4");
    assert_eq!(
        rep.properties.correlation_id().as_ref().map(|s| s.as_str()),
        Some("c1")
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_is_locked_to_its_connection_and_dies_with_it() {
    let b = common::start().await;
    let owner = b.connect().await;
    let ch = owner.create_channel().await.expect("channel");
    ch.queue_declare(
        "mine".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let other = b.connect().await;
    let och = other.create_channel().await.expect("channel");
    let err = och
        .basic_consume(
            "mine".into(),
            "x".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("locked");
    assert!(
        err.to_string().contains("RESOURCE_LOCKED") || err.to_string().contains("405"),
        "{err}"
    );
    owner.close(200, "bye".into()).await.expect("close");
    let och = other.create_channel().await.expect("channel");
    let mut gone = false;
    for _ in 0..200 {
        let r = och
            .queue_declare(
                "mine".into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        if r.is_err() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "exclusive queue deleted with its connection");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_queue_goes_with_its_last_consumer() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "ad".into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    ch.basic_consume(
        "ad".into(),
        "c".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("consume");
    ch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    let ch2 = conn.create_channel().await.expect("channel");
    let r = ch2
        .queue_declare(
            "ad".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(r.is_err(), "auto-delete queue removed");
    b.stop().await;
}
