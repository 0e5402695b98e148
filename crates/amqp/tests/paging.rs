//! Paging: past the memory budget, message bodies go to storage instead of publishers being blocked, and
//! come back in order when consumers reach them — with their properties, redelivered flags, priorities and
//! TTLs intact; purge, delete, ack and restart free the paged storage.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use strata_amqp::{AmqpConfig, Broker};

/// A 1 MiB budget: a few hundred 4 KiB messages are enough to page.
fn tiny_budget() -> AmqpConfig {
    AmqpConfig {
        memory_budget_bytes: 1 << 20,
        ..AmqpConfig::default()
    }
}

const BODY: usize = 4096;

/// Message `i`'s body: its number, then filler that depends on it (so a mixed-up body is caught).
fn body(i: u32) -> Vec<u8> {
    let mut b = i.to_be_bytes().to_vec();
    b.extend((0..BODY - 4).map(|j| (j as u32).wrapping_mul(31).wrapping_add(i) as u8));
    b
}

fn number(data: &[u8]) -> u32 {
    u32::from_be_bytes(data[..4].try_into().expect("4 bytes"))
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn broker(b: &common::TestBroker) -> &Broker {
    b.broker.as_deref().expect("running broker")
}

fn paged(b: &Broker, queue: &str) -> (u64, u64) {
    b.queue_stats()
        .into_iter()
        .find(|s| s.name == queue)
        .map(|s| (s.paged_messages, s.paged_bytes))
        .unwrap_or_default()
}

fn pages_stored(b: &Broker) -> usize {
    b.store.pages.iter().count()
}

async fn declare(ch: &Channel, name: &str, durable: bool, a: FieldTable) {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        a,
    )
    .await
    .expect("declare");
}

/// Publishes messages `range` to `queue` with confirms and waits for them all.
async fn publish_all(
    ch: &Channel,
    queue: &str,
    range: std::ops::Range<u32>,
    props: impl Fn(u32) -> BasicProperties,
) {
    for i in range {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body(i),
            props(i),
        )
        .await
        .expect("publish");
    }
    assert!(
        ch.wait_for_confirms().await.expect("confirms").is_empty(),
        "every publish confirmed"
    );
}

async fn confirm_channel(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm");
    ch
}

/// Consumes `n` messages from `queue` (acking each), returning them.
async fn consume(conn: &Connection, queue: &str, n: usize) -> Vec<lapin::message::Delivery> {
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_qos(100, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("a delivery in time")
            .expect("stream open")
            .expect("delivery");
        d.ack(BasicAckOptions::default()).await.expect("ack");
        out.push(d);
    }
    ch.close(200, "done".into()).await.expect("close");
    out
}

async fn ready(ch: &Channel, q: &str) -> u32 {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("passive declare")
    .message_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_bodies_page_out_and_come_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), tiny_budget()).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "deep", false, FieldTable::default()).await;
    // 8 MiB of bodies through a 1 MiB budget, no consumer.
    let n = 2000u32;
    publish_all(&ch, "deep", 0..n, |i| {
        BasicProperties::default()
            .with_message_id(ShortString::from(format!("m{i}")))
            .with_content_type("application/octet-stream".into())
    })
    .await;
    assert!(!conn.status().blocked(), "paging, not blocking");
    assert!(!broker(&b).memory_alarm());
    let (pm, pb) = paged(broker(&b), "deep");
    assert!(pm >= u64::from(n) * 3 / 4, "most messages paged: {pm}");
    assert!(pb >= pm * BODY as u64, "paged bytes {pb}");
    assert!(broker(&b).pager.resident() <= (1 << 20) + (1 << 20) / 2);
    broker(&b).sweep();
    assert_eq!(
        broker(&b)
            .stats
            .paged_messages
            .load(std::sync::atomic::Ordering::Relaxed),
        pm
    );
    // Page writes join the next group commit: they may become visible just after the confirms.
    common::eventually("pages written", Duration::from_secs(10), || {
        pages_stored(broker(&b)) >= pm as usize
    })
    .await;

    let got = consume(&conn, "deep", n as usize).await;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(number(&d.data), i as u32, "delivery order");
        assert_eq!(d.data, body(i as u32), "body of {i}");
        assert!(!d.redelivered);
        assert_eq!(
            d.properties.message_id().as_ref().map(|s| s.as_str()),
            Some(format!("m{i}").as_str())
        );
        assert_eq!(
            d.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("application/octet-stream")
        );
    }
    assert_eq!(paged(broker(&b), "deep"), (0, 0));
    common::eventually("pages deleted after acks", Duration::from_secs(10), || {
        pages_stored(broker(&b)) == 0
    })
    .await;
    assert_eq!(broker(&b).pager.resident(), 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_persistent_and_transient_in_a_durable_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), tiny_budget()).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "mixed", true, FieldTable::default()).await;
    let n = 1200u32;
    publish_all(&ch, "mixed", 0..n, |i| {
        BasicProperties::default().with_delivery_mode(if i % 2 == 0 { 2 } else { 1 })
    })
    .await;
    let (pm, _) = paged(broker(&b), "mixed");
    assert!(pm > u64::from(n) / 2, "paged: {pm}");
    // Persistent messages reference their durable copy: only transient ones were written as pages.
    common::eventually("pages written", Duration::from_secs(10), || {
        pages_stored(broker(&b)) > 0
    })
    .await;
    let pages = pages_stored(broker(&b));
    assert!(pages <= pm as usize / 2 + 1, "pages {pages} of {pm}");
    let got = consume(&conn, "mixed", n as usize).await;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.data, body(i as u32), "body of {i}");
        assert_eq!(
            *d.properties.delivery_mode(),
            Some(if i % 2 == 0 { 2 } else { 1 })
        );
    }
    common::eventually(
        "stored copies and pages deleted",
        Duration::from_secs(10),
        || pages_stored(broker(&b)) == 0 && broker(&b).store.msgs.iter().count() == 0,
    )
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_paged_messages_keep_their_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), tiny_budget()).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "rq", false, FieldTable::default()).await;
    let n = 1000u32;
    publish_all(&ch, "rq", 0..n, |_| BasicProperties::default()).await;
    assert!(paged(broker(&b), "rq").0 > 0);

    // Take 300 (many of them paged) without acking, then nack them all back.
    let c = conn.create_channel().await.expect("channel");
    c.basic_qos(300, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = c
        .basic_consume(
            "rq".into(),
            "first".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut last = None;
    for i in 0..300u32 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("delivery in time")
            .expect("open")
            .expect("delivery");
        assert_eq!(number(&d.data), i);
        last = Some(d.delivery_tag);
    }
    c.basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    c.basic_nack(
        last.expect("a tag"),
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .expect("nack");

    // As RabbitMQ: requeued messages return to the head in their order, flagged redelivered.
    let got = consume(&conn, "rq", n as usize).await;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.data, body(i as u32), "body of {i}");
        assert_eq!(d.redelivered, i < 300, "redelivered flag of {i}");
    }
    common::eventually("pages deleted", Duration::from_secs(10), || {
        pages_stored(broker(&b)) == 0
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_and_delete_free_paged_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), tiny_budget()).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    for q in ["p1", "p2"] {
        declare(&ch, q, false, FieldTable::default()).await;
        publish_all(&ch, q, 0..600, |_| BasicProperties::default()).await;
    }
    common::eventually("pages written", Duration::from_secs(10), || {
        pages_stored(broker(&b)) > 0
    })
    .await;
    let purged = ch
        .queue_purge("p1".into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    assert_eq!(purged, 600);
    assert_eq!(paged(broker(&b), "p1"), (0, 0));
    let deleted = ch
        .queue_delete("p2".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(deleted, 600);
    common::eventually("pages deleted", Duration::from_secs(10), || {
        pages_stored(broker(&b)) == 0
    })
    .await;
    broker(&b).sweep();
    assert_eq!(
        broker(&b)
            .stats
            .paged_messages
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(broker(&b).pager.resident(), 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_drops_transient_paged_messages_and_keeps_persistent_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 800u32;
    {
        let b = common::start_in(dir.path(), tiny_budget()).await;
        let conn = b.connect().await;
        let ch = confirm_channel(&conn).await;
        declare(&ch, "keep", true, FieldTable::default()).await;
        declare(&ch, "lose", true, FieldTable::default()).await;
        publish_all(&ch, "lose", 0..n, |_| BasicProperties::default()).await;
        publish_all(&ch, "keep", 0..n, |_| {
            BasicProperties::default().with_delivery_mode(2)
        })
        .await;
        assert!(paged(broker(&b), "lose").0 > 0 || paged(broker(&b), "keep").0 > 0);
        common::eventually("pages written", Duration::from_secs(10), || {
            pages_stored(broker(&b)) > 0
        })
        .await;
        b.stop().await;
    }
    let b = common::start_in(dir.path(), tiny_budget()).await;
    assert_eq!(pages_stored(broker(&b)), 0, "pages wiped at open");
    // Recovery pages too: the durable copies stand in for the bodies past the budget.
    assert!(paged(broker(&b), "keep").0 > 0);
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(ready(&ch, "lose").await, 0);
    assert_eq!(ready(&ch, "keep").await, n);
    let got = consume(&conn, "keep", n as usize).await;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.data, body(i as u32), "body of {i}");
        assert!(d.redelivered, "recovered messages are flagged redelivered");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_hold_on_paged_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), tiny_budget()).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(
        &ch,
        "prio",
        false,
        args(&[("x-max-priority", AMQPValue::ShortShortUInt(5))]),
    )
    .await;
    let n = 900u32;
    publish_all(&ch, "prio", 0..n, |i| {
        BasicProperties::default().with_priority((i % 3) as u8)
    })
    .await;
    assert!(paged(broker(&b), "prio").0 > 0);
    let got = consume(&conn, "prio", n as usize).await;
    let expected: Vec<u32> = (0..3)
        .rev()
        .flat_map(|p| (0..n).filter(move |i| i % 3 == p))
        .collect();
    let numbers: Vec<u32> = got.iter().map(|d| number(&d.data)).collect();
    assert_eq!(
        numbers, expected,
        "highest priority first, FIFO within a level"
    );
    for d in &got {
        assert_eq!(d.data, body(number(&d.data)));
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_and_dead_lettering_hold_on_paged_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), tiny_budget()).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "dlq", false, FieldTable::default()).await;
    declare(
        &ch,
        "short",
        false,
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(100)),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString(LongString::from("")),
            ),
            (
                "x-dead-letter-routing-key",
                AMQPValue::LongString(LongString::from("dlq")),
            ),
        ]),
    )
    .await;
    let n = 600u32;
    publish_all(&ch, "short", 0..n, |_| BasicProperties::default()).await;
    // They expire from the head and are dead-lettered with their (paged) bodies.
    let probe = conn.create_channel().await.expect("channel");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while ready(&probe, "dlq").await < n {
        assert!(std::time::Instant::now() < end, "dead-lettered in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready(&probe, "short").await, 0);
    let got = consume(&conn, "dlq", n as usize).await;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.data, body(i as u32), "body of {i}");
        let death = d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-first-death-reason").cloned());
        assert_eq!(
            death,
            Some(AMQPValue::LongString(LongString::from("expired")))
        );
    }
    common::eventually("pages deleted", Duration::from_secs(10), || {
        pages_stored(broker(&b)) == 0
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_with_consumers_keeps_a_window_in_memory_past_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), tiny_budget()).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "hog", false, FieldTable::default()).await;
    declare(&ch, "live", true, FieldTable::default()).await;
    publish_all(&ch, "hog", 0..600, |_| BasicProperties::default()).await;
    assert!(paged(broker(&b), "hog").0 > 0, "the budget is used up");
    // A consumer that takes one message and holds it: the rest wait in the queue, in memory (what the
    // consumers take next is not worth a write and a read), persistent or not.
    let c = conn.create_channel().await.expect("channel");
    c.basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let _consumer = c
        .basic_consume(
            "live".into(),
            "holder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    publish_all(&ch, "live", 0..100, |i| {
        BasicProperties::default().with_delivery_mode(if i % 2 == 0 { 2 } else { 1 })
    })
    .await;
    assert_eq!(paged(broker(&b), "live"), (0, 0));
    // Past the window (2 MiB), it pages like any other queue.
    publish_all(&ch, "live", 100..700, |_| BasicProperties::default()).await;
    assert!(paged(broker(&b), "live").0 > 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_reads_paged_messages_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = common::start_in(dir.path(), tiny_budget()).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "polled", false, FieldTable::default()).await;
    let n = 600u32;
    publish_all(&ch, "polled", 0..n, |_| BasicProperties::default()).await;
    assert!(paged(broker(&b), "polled").0 > 0);
    let getter = conn.create_channel().await.expect("channel");
    for i in 0..n {
        let m = getter
            .basic_get("polled".into(), BasicGetOptions { no_ack: i % 2 == 0 })
            .await
            .expect("get")
            .expect("a message");
        assert_eq!(m.delivery.data, body(i), "body of {i}");
        assert_eq!(m.message_count, n - 1 - i);
        if i % 2 == 1 {
            m.delivery
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
        }
    }
    assert!(
        getter
            .basic_get("polled".into(), BasicGetOptions::default())
            .await
            .expect("get")
            .is_none()
    );
    common::eventually("pages deleted", Duration::from_secs(10), || {
        pages_stored(broker(&b)) == 0
    })
    .await;
    b.stop().await;
}

fn spilled(b: &Broker, queue: &str) -> u64 {
    b.queue_stats()
        .into_iter()
        .find(|s| s.name == queue)
        .map(|s| s.spilled_messages)
        .unwrap_or_default()
}

fn small(i: u32) -> Vec<u8> {
    let mut b = i.to_be_bytes().to_vec();
    b.extend((0..96u32).map(|j| (j ^ i) as u8));
    b
}

async fn publish_small(ch: &Channel, queue: &str, range: std::ops::Range<u32>, persistent: bool) {
    for i in range {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &small(i),
            BasicProperties::default()
                .with_delivery_mode(if persistent { 2 } else { 1 })
                .with_message_id(ShortString::from(format!("s{i}"))),
        )
        .await
        .expect("publish");
    }
    assert!(ch.wait_for_confirms().await.expect("confirms").is_empty());
}

/// Past the budget, a very deep queue keeps its first entries in memory and spills newer ones whole
/// (routing data and header too) to storage; they come back in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn very_deep_queues_spill_whole_entries_and_read_them_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AmqpConfig {
        memory_budget_bytes: 64 << 10,
        ..AmqpConfig::default()
    };
    let b = common::start_in(dir.path(), config).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "huge", false, FieldTable::default()).await;
    let n = 30_000u32;
    publish_small(&ch, "huge", 0..n, false).await;
    let s = spilled(broker(&b), "huge");
    assert!(s >= u64::from(n) / 3, "spilled {s}");
    assert_eq!(ready(&ch, "huge").await, n);
    // Consume everything: order, bodies, properties, flags.
    let got = consume(&conn, "huge", n as usize).await;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.data, small(i as u32), "body of {i}");
        assert_eq!(
            d.properties.message_id().as_ref().map(|s| s.as_str()),
            Some(format!("s{i}").as_str())
        );
        assert!(!d.redelivered);
    }
    assert_eq!(spilled(broker(&b), "huge"), 0);
    common::eventually("spill and pages deleted", Duration::from_secs(10), || {
        broker(&b).store.spill.iter().count() == 0 && pages_stored(broker(&b)) == 0
    })
    .await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spilled_entries_are_purged_and_persistent_ones_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || AmqpConfig {
        memory_budget_bytes: 64 << 10,
        ..AmqpConfig::default()
    };
    let n = 25_000u32;
    {
        let b = common::start_in(dir.path(), config()).await;
        let conn = b.connect().await;
        let ch = confirm_channel(&conn).await;
        declare(&ch, "gone", false, FieldTable::default()).await;
        publish_small(&ch, "gone", 0..n, false).await;
        assert!(spilled(broker(&b), "gone") > 0);
        let purged = ch
            .queue_purge("gone".into(), QueuePurgeOptions::default())
            .await
            .expect("purge");
        assert_eq!(purged, n);
        common::eventually("spill deleted", Duration::from_secs(10), || {
            broker(&b).store.spill.iter().count() == 0
        })
        .await;
        declare(&ch, "kept", true, FieldTable::default()).await;
        publish_small(&ch, "kept", 0..n, true).await;
        assert!(spilled(broker(&b), "kept") > 0);
        b.stop().await;
    }
    let b = common::start_in(dir.path(), config()).await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(ready(&ch, "kept").await, n);
    let got = consume(&conn, "kept", n as usize).await;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.data, small(i as u32), "body of {i}");
        assert!(d.redelivered);
    }
    common::eventually("stored copies deleted", Duration::from_secs(10), || {
        broker(&b).store.msgs.iter().count() == 0
    })
    .await;
    b.stop().await;
}

/// TTLs and dead-lettering reach spilled entries (expiry at the head, read back as the head drains); a
/// requeue into a spilling queue goes back to the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_dead_lettering_and_requeue_hold_on_spilled_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AmqpConfig {
        memory_budget_bytes: 64 << 10,
        ..AmqpConfig::default()
    };
    let b = common::start_in(dir.path(), config).await;
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "spill.dlq", false, FieldTable::default()).await;
    declare(
        &ch,
        "spill.ttl",
        false,
        args(&[
            // Long enough that the last publishes land before the first expire, on a loaded machine
            // too (at 5 s the head had expired and been read back before the check below ran once).
            ("x-message-ttl", AMQPValue::LongInt(10_000)),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString(LongString::from("")),
            ),
            (
                "x-dead-letter-routing-key",
                AMQPValue::LongString(LongString::from("spill.dlq")),
            ),
        ]),
    )
    .await;
    let n = 20_000u32;
    publish_small(&ch, "spill.ttl", 0..n, false).await;
    assert!(spilled(broker(&b), "spill.ttl") > 0);
    let probe = conn.create_channel().await.expect("channel");
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while ready(&probe, "spill.dlq").await < n {
        assert!(std::time::Instant::now() < end, "dead-lettered in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready(&probe, "spill.ttl").await, 0);

    // The dead-letter queue spilled too; take 100 without acking, requeue them, then read all in order.
    assert!(spilled(broker(&b), "spill.dlq") > 0);
    let c = conn.create_channel().await.expect("channel");
    c.basic_qos(100, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = c
        .basic_consume(
            "spill.dlq".into(),
            "first".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut last = None;
    for i in 0..100u32 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("delivery in time")
            .expect("open")
            .expect("delivery");
        assert_eq!(d.data, small(i));
        last = Some(d.delivery_tag);
    }
    c.basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .expect("cancel");
    c.basic_nack(
        last.expect("a tag"),
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .expect("nack");
    let got = consume(&conn, "spill.dlq", n as usize).await;
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.data, small(i as u32), "body of {i}");
        assert_eq!(d.redelivered, i < 100, "redelivered flag of {i}");
    }
    common::eventually("spill and pages deleted", Duration::from_secs(10), || {
        broker(&b).store.spill.iter().count() == 0 && pages_stored(broker(&b)) == 0
    })
    .await;
    b.stop().await;
}
