//! Past the ready-bytes budget, publishing connections get connection.blocked and are not read; draining the
//! queue clears the alarm (connection.unblocked) and publishing resumes.

mod common;

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;
use strata_amqp::AmqpConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_are_blocked_over_budget_and_unblocked_after_drain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AmqpConfig {
        max_ready_bytes: 64 << 10,
        ..AmqpConfig::default()
    };
    let b = common::start_in(dir.path(), config).await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "fill".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let body = vec![7u8; 16 << 10];
    // 80 KiB against a 64 KiB budget: the alarm goes on with at most the last message still unread.
    for _ in 0..5 {
        ch.basic_publish(
            "".into(),
            "fill".into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    // No synchronous round trip on this connection here: once blocked it is not read, so a reply could
    // only come after the drain below (the test hung whenever the alarm beat the round trip's frame).
    common::eventually("connection.blocked", Duration::from_secs(10), || {
        conn.status().blocked()
    })
    .await;

    let other = b.connect().await;
    let drain = other.create_channel().await.expect("channel");
    drain
        .queue_purge("fill".into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    common::eventually("connection.unblocked", Duration::from_secs(10), || {
        !conn.status().blocked()
    })
    .await;
    ch.basic_publish(
        "".into(),
        "fill".into(),
        BasicPublishOptions::default(),
        b"again",
        BasicProperties::default(),
    )
    .await
    .expect("publish after unblock");
    b.stop().await;
}
