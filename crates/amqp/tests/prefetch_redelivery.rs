//! basic.qos prefetch limits, and redelivery of unacknowledged messages when a consumer's connection drops
//! or its channel recovers or nacks.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;

async fn publish_n(ch: &lapin::Channel, queue: &str, n: u32) {
    for i in 0..n {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &i.to_be_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_caps_unacked_deliveries() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "pf".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    publish_n(&ch, "pf", 10).await;
    let cons = conn.create_channel().await.expect("channel");
    cons.basic_qos(3, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = cons
        .basic_consume(
            "pf".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(consumer.next().await.expect("delivery").expect("ok"));
    }
    // A fourth delivery must not arrive while three are unacked.
    let fourth = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(fourth.is_err(), "prefetch 3 exceeded");
    let q = ch
        .queue_declare(
            "pf".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(q.message_count(), 7);
    // Acking the last with multiple frees all three.
    got[2]
        .ack(BasicAckOptions { multiple: true })
        .await
        .expect("ack");
    for _ in 0..3 {
        let d = consumer.next().await.expect("delivery").expect("ok");
        got.push(d);
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_are_redelivered_after_the_connection_drops() {
    let b = common::start().await;
    let publisher = b.connect().await;
    let ch = publisher.create_channel().await.expect("channel");
    ch.queue_declare(
        "work".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    publish_n(&ch, "work", 5).await;
    {
        let conn = b.connect().await;
        let c = conn.create_channel().await.expect("channel");
        let mut consumer = c
            .basic_consume(
                "work".into(),
                "first".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let d0 = consumer.next().await.expect("delivery").expect("ok");
        d0.ack(BasicAckOptions::default()).await.expect("ack");
        for _ in 1..5 {
            consumer.next().await.expect("delivery").expect("ok");
        }
        // Dropped without acking 1..5: close the connection.
        conn.close(200, "bye".into()).await.expect("close");
    }
    let conn = b.connect().await;
    let c = conn.create_channel().await.expect("channel");
    let mut consumer = c
        .basic_consume(
            "work".into(),
            "second".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 1..5u32 {
        let d = consumer.next().await.expect("delivery").expect("ok");
        assert_eq!(d.data, i.to_be_bytes(), "order kept");
        assert!(d.redelivered, "redelivered flag set");
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_requeue_reject_and_recover() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "nq".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    publish_n(&ch, "nq", 3).await;
    let get = |ch: lapin::Channel| async move {
        loop {
            if let Some(m) = ch
                .basic_get("nq".into(), BasicGetOptions::default())
                .await
                .expect("get")
            {
                return m;
            }
        }
    };
    let m0 = get(ch.clone()).await;
    assert!(!m0.delivery.redelivered);
    m0.delivery
        .nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .expect("nack");
    let again = get(ch.clone()).await;
    assert_eq!(again.delivery.data, 0u32.to_be_bytes());
    assert!(again.delivery.redelivered);
    again
        .delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .expect("reject");
    let m1 = get(ch.clone()).await;
    assert_eq!(m1.delivery.data, 1u32.to_be_bytes());
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover");
    let m1b = get(ch.clone()).await;
    assert_eq!(m1b.delivery.data, 1u32.to_be_bytes());
    assert!(m1b.delivery.redelivered);
    m1b.delivery
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
    let q = ch
        .queue_declare(
            "nq".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive");
    assert_eq!(q.message_count(), 1);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_priorities_and_cancel_notification_on_queue_delete() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "prio".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let mut args = FieldTable::default();
    args.insert("x-priority".into(), lapin::types::AMQPValue::LongInt(10));
    let hi = conn.create_channel().await.expect("channel");
    let lo = conn.create_channel().await.expect("channel");
    let mut hi_c = hi
        .basic_consume(
            "prio".into(),
            "hi".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            args,
        )
        .await
        .expect("consume");
    let mut lo_c = lo
        .basic_consume(
            "prio".into(),
            "lo".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    publish_n(&ch, "prio", 5).await;
    for _ in 0..5 {
        hi_c.next().await.expect("delivery").expect("ok");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), lo_c.next())
            .await
            .is_err()
    );
    ch.queue_delete("prio".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    // The server cancels both consumers: their streams end.
    let end = tokio::time::timeout(Duration::from_secs(5), hi_c.next())
        .await
        .expect("cancelled in time");
    assert!(end.is_none(), "stream ends on basic.cancel");
    b.stop().await;
}
