//! Durability: durable exchanges, queues, bindings and confirmed persistent messages survive a restart of the
//! broker (unacknowledged ones come back redelivered); transient messages and queues do not.

mod common;

use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use strata_amqp::AmqpConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_persistent_messages_and_definitions_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let b = common::start_in(dir.path(), AmqpConfig::default()).await;
        let conn = b.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.exchange_declare(
            "orders".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
        for (q, durable) in [("keep", true), ("gone", false)] {
            ch.queue_declare(
                q.into(),
                QueueDeclareOptions {
                    durable,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
            ch.queue_bind(
                q.into(),
                "orders".into(),
                "order.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        }
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm");
        for i in 0..50u32 {
            let props = if i % 5 == 4 {
                BasicProperties::default() // transient: lost on restart
            } else {
                BasicProperties::default().with_delivery_mode(2)
            };
            ch.basic_publish(
                "orders".into(),
                "order.new".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                props,
            )
            .await
            .expect("publish");
        }
        assert!(ch.wait_for_confirms().await.expect("confirms").is_empty());
        // Consume and ack the first 10, leave 5 more delivered but unacked.
        let c = conn.create_channel().await.expect("channel");
        c.basic_qos(15, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = c
            .basic_consume(
                "keep".into(),
                "c".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut last = None;
        for _ in 0..15 {
            last = Some(consumer.next().await.expect("delivery").expect("ok"));
            if last.as_ref().map(|d| d.delivery_tag) == Some(10) {
                last.as_ref()
                    .expect("delivery")
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .expect("ack");
            }
        }
        drop(last);
        // Make sure the acks were processed before stopping: a synchronous round trip on the channel.
        c.basic_qos(15, BasicQosOptions::default())
            .await
            .expect("qos");
        b.stop().await;
    }
    let b = common::start_in(dir.path(), AmqpConfig::default()).await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let keep = ch
        .queue_declare("keep".into(), passive, FieldTable::default())
        .await
        .expect("keep survives");
    // Every fifth message was transient; messages 0..10 were acked; 10..15 were delivered but not acked.
    let expected: Vec<u32> = (10..50u32).filter(|i| i % 5 != 4).collect();
    assert_eq!(keep.message_count() as usize, expected.len());
    let err = ch
        .queue_declare("gone".into(), passive, FieldTable::default())
        .await;
    assert!(err.is_err(), "transient queue is gone");
    let ch = conn.create_channel().await.expect("channel");
    // The binding survived: a new persistent message still reaches "keep".
    ch.basic_publish(
        "orders".into(),
        "order.x".into(),
        BasicPublishOptions::default(),
        b"after",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let mut consumer = ch
        .basic_consume(
            "keep".into(),
            "c2".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for want in &expected {
        let d = consumer.next().await.expect("delivery").expect("ok");
        assert_eq!(d.data, want.to_be_bytes());
        assert!(d.redelivered);
    }
    let d = consumer.next().await.expect("delivery").expect("ok");
    assert_eq!(d.data, b"after");
    b.stop().await;
}

/// A persistent message longer than one storage value (strata-storage's 32 MiB; RabbitMQ accepts up to
/// 128 MiB) is stored in pieces, comes back whole after a restart, and its ack deletes every piece.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_message_larger_than_a_storage_value_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
    {
        let b = common::start_in(dir.path(), AmqpConfig::default()).await;
        let conn = b.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(
            "big".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm");
        for body in [&big[..], b"small"] {
            ch.basic_publish(
                "".into(),
                "big".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish");
        }
        assert!(ch.wait_for_confirms().await.expect("confirms").is_empty());
        b.stop().await;
    }
    let b = common::start_in(dir.path(), AmqpConfig::default()).await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let mut consumer = ch
        .basic_consume(
            "big".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for want in [&big[..], b"small"] {
        let d = consumer.next().await.expect("delivery").expect("ok");
        assert!(d.data == want, "body of {} bytes", want.len());
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let broker = b.broker.clone().expect("broker");
    common::eventually(
        "every piece deleted",
        std::time::Duration::from_secs(10),
        || broker.store.msgs.iter().count() == 0,
    )
    .await;
    drop(broker);
    b.stop().await;
}
