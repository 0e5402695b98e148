//! Queue arguments: TTLs and dead-letter chains with `x-death`, length limits and overflow, priorities,
//! single active consumer, delivery limits, queue expiry, and retry with back-off through TTL + DLX.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes()))
}

async fn declare(ch: &Channel, name: &str, a: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), a)
        .await
        .expect("declare");
}

async fn publish(ch: &Channel, queue: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .expect("publish");
}

/// Polls basic.get until a message arrives (bounded).
async fn get_eventually(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    for _ in 0..500 {
        if let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no message arrived in {queue}");
}

async fn count(ch: &Channel, q: &str) -> u32 {
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

fn x_death(props: &BasicProperties) -> Vec<FieldTable> {
    let headers = props.headers().clone().expect("headers");
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry {other:?}"),
            })
            .collect(),
        other => panic!("x-death missing: {other:?}"),
    }
}

fn field(t: &FieldTable, k: &str) -> String {
    match t.inner().get(k) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::LongLongInt(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_dead_letters_with_x_death() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch, "dead", FieldTable::default()).await;
    declare(
        &ch,
        "short",
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(30)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dead")),
        ]),
    )
    .await;
    publish(&ch, "short", b"m1", BasicProperties::default()).await;
    // Per-message expiration below the queue's TTL wins; it is removed and recorded on dead-lettering.
    declare(
        &ch,
        "plain",
        args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dead")),
        ]),
    )
    .await;
    publish(
        &ch,
        "plain",
        b"m2",
        BasicProperties::default().with_expiration("20".into()),
    )
    .await;
    let mut got = [
        get_eventually(&ch, "dead").await,
        get_eventually(&ch, "dead").await,
    ];
    got.sort_by(|a, b| a.delivery.data.cmp(&b.delivery.data));
    assert_eq!(got[0].delivery.data, b"m1");
    assert_eq!(got[0].delivery.routing_key.as_str(), "dead");
    let d = x_death(&got[0].delivery.properties);
    assert_eq!(d.len(), 1);
    assert_eq!(field(&d[0], "reason"), "expired");
    assert_eq!(field(&d[0], "queue"), "short");
    assert_eq!(field(&d[0], "count"), "1");
    assert_eq!(field(&d[0], "exchange"), "");
    let d2 = x_death(&got[1].delivery.properties);
    assert_eq!(field(&d2[0], "original-expiration"), "20");
    assert!(got[1].delivery.properties.expiration().is_none());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_with_backoff_counts_deaths() {
    // work --reject--> retry (TTL 20ms) --expired--> work: the classic retry loop; x-death counts grow.
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    declare(
        &ch,
        "work",
        args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("retry")),
        ]),
    )
    .await;
    declare(
        &ch,
        "retry",
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(20)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("work")),
        ]),
    )
    .await;
    publish(&ch, "work", b"job", BasicProperties::default()).await;
    let mut consumer = ch
        .basic_consume(
            "work".into(),
            "w".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for attempt in 1..=3u32 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("in time")
            .expect("delivery")
            .expect("ok");
        if attempt > 1 {
            let deaths = x_death(&d.properties);
            let rejected = deaths
                .iter()
                .find(|t| field(t, "reason") == "rejected")
                .expect("rejected entry");
            assert_eq!(field(rejected, "count"), (attempt - 1).to_string());
            assert_eq!(field(rejected, "queue"), "work");
        }
        if attempt < 3 {
            d.reject(BasicRejectOptions { requeue: false })
                .await
                .expect("reject");
        } else {
            d.ack(BasicAckOptions::default()).await.expect("ack");
        }
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_overflow_modes() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch, "overflowed", FieldTable::default()).await;
    declare(
        &ch,
        "head",
        args(&[
            ("x-max-length", AMQPValue::LongInt(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("overflowed")),
        ]),
    )
    .await;
    for i in 0..4u8 {
        publish(&ch, "head", &[i], BasicProperties::default()).await;
    }
    let first = get_eventually(&ch, "head").await;
    assert_eq!(first.delivery.data, [2], "oldest dropped");
    assert_eq!(count(&ch, "overflowed").await, 2);
    let dl = get_eventually(&ch, "overflowed").await;
    assert_eq!(
        field(&x_death(&dl.delivery.properties)[0], "reason"),
        "maxlen"
    );

    declare(
        &ch,
        "reject",
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", s("reject-publish")),
        ]),
    )
    .await;
    let pc = conn.create_channel().await.expect("channel");
    pc.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let c1 = pc
        .basic_publish(
            "".into(),
            "reject".into(),
            BasicPublishOptions::default(),
            b"a",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(c1.is_ack());
    let c2 = pc
        .basic_publish(
            "".into(),
            "reject".into(),
            BasicPublishOptions::default(),
            b"b",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(c2.is_nack(), "full reject-publish queue nacks");
    assert_eq!(count(&ch, "reject").await, 1);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_queue_delivers_highest_first() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    declare(
        &ch,
        "prio",
        args(&[("x-max-priority", AMQPValue::ShortShortUInt(10))]),
    )
    .await;
    for p in [1u8, 9, 5, 0, 200] {
        publish(
            &ch,
            "prio",
            &[p],
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    let mut order = Vec::new();
    for _ in 0..5 {
        order.push(get_eventually(&ch, "prio").await.delivery.data[0]);
    }
    // 200 is capped at the queue's maximum (10), so it comes first; then FIFO within a level.
    assert_eq!(order, vec![200, 9, 5, 1, 0]);
    let err = ch
        .queue_declare(
            "badprio".into(),
            QueueDeclareOptions::default(),
            args(&[("x-max-priority", AMQPValue::LongInt(300))]),
        )
        .await;
    assert!(err.is_err(), "x-max-priority above 255 refused");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_hands_over_on_cancel() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    declare(
        &ch,
        "sac",
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let c1 = conn.create_channel().await.expect("channel");
    let c2 = conn.create_channel().await.expect("channel");
    let mut first = c1
        .basic_consume(
            "sac".into(),
            "one".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut second = c2
        .basic_consume(
            "sac".into(),
            "two".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 0..4u8 {
        publish(&ch, "sac", &[i], BasicProperties::default()).await;
    }
    for _ in 0..4 {
        first.next().await.expect("delivery").expect("ok");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), second.next())
            .await
            .is_err()
    );
    c1.basic_cancel("one".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    publish(&ch, "sac", b"x", BasicProperties::default()).await;
    let d = tokio::time::timeout(Duration::from_secs(5), second.next())
        .await
        .expect("takes over");
    assert_eq!(d.expect("delivery").expect("ok").data, b"x");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_limit_dead_letters_poison_messages() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch, "poison-dlq", FieldTable::default()).await;
    declare(
        &ch,
        "limited",
        args(&[
            ("x-delivery-limit", AMQPValue::LongInt(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("poison-dlq")),
        ]),
    )
    .await;
    publish(&ch, "limited", b"poison", BasicProperties::default()).await;
    let mut consumer = ch
        .basic_consume(
            "limited".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    // Delivered three times (two returns allowed), the third return dead-letters it.
    for _ in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .expect("in time")
            .expect("delivery")
            .expect("ok");
        d.nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .expect("nack");
    }
    let dl = get_eventually(&ch, "poison-dlq").await;
    assert_eq!(dl.delivery.data, b"poison");
    assert_eq!(
        field(&x_death(&dl.delivery.properties)[0], "reason"),
        "delivery_limit"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_queue_expires() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch, "temp", args(&[("x-expires", AMQPValue::LongInt(50))])).await;
    let mut gone = false;
    for _ in 0..300 {
        let c = conn.create_channel().await.expect("channel");
        if c.queue_declare(
            "temp".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .is_err()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "x-expires queue deleted");
    b.stop().await;
}

/// RabbitMQ's dead-letter cycle rule: a message is not dead-lettered into a queue it already died in when
/// every death since (that one included) was automatic (expired, maxlen, ...), so a TTL loop through two
/// queues ends; a copy routed elsewhere still arrives. A rejection in the loop makes it a retry, which
/// continues (see `retry_with_backoff_counts_deaths`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_cycles_through_several_queues_are_dropped() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.exchange_declare(
        "cycle.fan".into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    // a --expired--> b --expired--> cycle.fan --> {a (a cycle: dropped), witness}
    declare(
        &ch,
        "cyc.a",
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(10)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("cyc.b")),
        ]),
    )
    .await;
    declare(
        &ch,
        "cyc.b",
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(10)),
            ("x-dead-letter-exchange", s("cycle.fan")),
        ]),
    )
    .await;
    declare(&ch, "cyc.witness", FieldTable::default()).await;
    for q in ["cyc.a", "cyc.witness"] {
        ch.queue_bind(
            q.into(),
            "cycle.fan".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    }
    publish(&ch, "cyc.a", b"loop", BasicProperties::default()).await;
    let got = get_eventually(&ch, "cyc.witness").await;
    assert_eq!(got.delivery.data, b"loop");
    let d = x_death(&got.delivery.properties);
    let path: Vec<(String, String)> = d
        .iter()
        .map(|t| (field(t, "queue"), field(t, "reason")))
        .collect();
    assert_eq!(
        path,
        [
            ("cyc.b".to_owned(), "expired".to_owned()),
            ("cyc.a".to_owned(), "expired".to_owned())
        ]
    );
    // The copy for cyc.a was dropped in the same step as the witness's was queued.
    assert_eq!(count(&ch, "cyc.a").await, 0);
    assert_eq!(count(&ch, "cyc.b").await, 0);
    b.stop().await;
}
