//! A publish / consume / confirm round trip through lapin, mandatory returns, and basic.get.

mod common;

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_confirm_consume_ack() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
    assert!(q.name().as_str().starts_with("amq.gen-"), "{}", q.name());
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for i in 0..100u32 {
        let confirm = ch
            .basic_publish(
                "".into(),
                q.name().clone(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        if i == 99 {
            assert!(confirm.await.expect("confirm").is_ack());
        }
    }
    assert!(ch.wait_for_confirms().await.expect("confirms").is_empty());
    let mut consumer = ch
        .basic_consume(
            q.name().clone(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for i in 0..100u32 {
        let d = consumer.next().await.expect("delivery").expect("ok");
        assert_eq!(d.data, i.to_be_bytes());
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
    conn.close(200, "bye".into()).await.expect("close");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_unroutable_is_returned_then_acked() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let confirm = ch
        .basic_publish(
            "".into(),
            "nowhere".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirm.is_ack());
    let returned = confirm.take_message().expect("returned message");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.delivery.data, b"lost");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_and_large_messages_split_by_frame_max() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "big".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    ch.basic_publish(
        "".into(),
        "big".into(),
        BasicPublishOptions::default(),
        &body,
        BasicProperties::default().with_content_type("application/octet-stream".into()),
    )
    .await
    .expect("publish");
    let got = loop {
        if let Some(m) = ch
            .basic_get("big".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            break m;
        }
    };
    assert_eq!(got.delivery.data.len(), body.len());
    assert!(got.delivery.data == body);
    assert_eq!(
        got.delivery
            .properties
            .content_type()
            .as_ref()
            .map(|s| s.as_str()),
        Some("application/octet-stream")
    );
    assert!(
        ch.basic_get("big".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .is_none()
    );
    b.stop().await;
}
