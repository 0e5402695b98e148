//! Policies and operator policies: set through the broker's API (as the management API does), observed through
//! lapin — TTL, length limits on existing queues, dead-lettering, precedence against queue arguments,
//! priorities, apply-to, clearing, persistence and validation.

mod common;

use std::sync::Arc;
use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::{Value, json};
use strata_amqp::{AmqpConfig, ApplyTo, Broker, Policy, PolicyError};

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

fn policy(name: &str, pattern: &str, apply_to: ApplyTo, priority: i32, def: Value) -> Policy {
    Policy {
        vhost: "/".into(),
        name: name.into(),
        pattern: pattern.into(),
        apply_to,
        priority,
        definition: def.as_object().cloned().expect("definition object"),
    }
}

fn broker(b: &common::TestBroker) -> Arc<Broker> {
    b.broker.clone().expect("running broker")
}

async fn declare(ch: &Channel, name: &str, a: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), a)
        .await
        .expect("declare");
}

/// Publishes to the default exchange on a confirm channel and waits for the confirm (so the message is
/// enqueued when this returns); returns whether it was acked.
async fn publish(ch: &Channel, queue: &str, body: &[u8]) -> bool {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm")
    .is_ack()
}

async fn confirm_channel(conn: &lapin::Connection) -> Channel {
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    ch
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

async fn get(ch: &Channel, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
}

/// Polls basic.get until a message arrives (bounded).
async fn get_eventually(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    for _ in 0..500 {
        if let Some(m) = get(ch, queue).await {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no message arrived in {queue}");
}

/// Polls the queue's depth until it is `want` (bounded).
async fn count_eventually(ch: &Channel, q: &str, want: u32) {
    let mut last = 0;
    for _ in 0..500 {
        last = count(ch, q).await;
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("queue {q} has {last} messages, expected {want}");
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
async fn policy_message_ttl_expires_messages_of_queues_declared_later() {
    let b = common::start().await;
    let br = broker(&b);
    br.set_policy(policy(
        "ttl",
        "^ttl\\.",
        ApplyTo::Queues,
        0,
        json!({"message-ttl": 30}),
    ))
    .expect("set policy");
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "ttl.q", FieldTable::default()).await;
    declare(&ch, "other", FieldTable::default()).await;
    assert_eq!(br.queue_policy("/", "ttl.q").as_deref(), Some("ttl"));
    assert_eq!(br.queue_policy("/", "other"), None);
    assert!(publish(&ch, "ttl.q", b"gone soon").await);
    assert!(publish(&ch, "other", b"stays").await);
    count_eventually(&ch, "ttl.q", 0).await;
    assert_eq!(count(&ch, "other").await, 1);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_on_an_existing_queue_drops_head_at_once_and_dead_letters() {
    let b = common::start().await;
    let br = broker(&b);
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "dlq", FieldTable::default()).await;
    declare(&ch, "long", FieldTable::default()).await;
    for i in 0..5u8 {
        assert!(publish(&ch, "long", &[b'0' + i]).await);
    }
    assert_eq!(count(&ch, "long").await, 5);
    br.set_policy(policy(
        "cap",
        "^long$",
        ApplyTo::All,
        0,
        json!({"max-length": 2, "dead-letter-exchange": "", "dead-letter-routing-key": "dlq"}),
    ))
    .expect("set policy");
    // Applied when set_policy returns: no new publish needed.
    assert_eq!(count(&ch, "long").await, 2);
    assert_eq!(get(&ch, "long").await.expect("head").delivery.data, b"3");
    assert_eq!(get(&ch, "long").await.expect("next").delivery.data, b"4");
    // The three dropped messages were dead-lettered with reason maxlen, oldest first.
    for want in [b"0", b"1", b"2"] {
        let m = get_eventually(&ch, "dlq").await;
        assert_eq!(m.delivery.data, want);
        let d = x_death(&m.delivery.properties);
        assert_eq!(field(&d[0], "reason"), "maxlen");
        assert_eq!(field(&d[0], "queue"), "long");
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_dead_letter_exchange_dead_letters_rejected_messages_with_x_death() {
    let b = common::start().await;
    let br = broker(&b);
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    ch.exchange_declare(
        "dlx".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("dlx");
    declare(&ch, "dead", FieldTable::default()).await;
    ch.queue_bind(
        "dead".into(),
        "dlx".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    declare(&ch, "work", FieldTable::default()).await;
    br.set_policy(policy(
        "dl",
        "^work$",
        ApplyTo::Queues,
        0,
        json!({"dead-letter-exchange": "dlx"}),
    ))
    .expect("set policy");
    assert!(publish(&ch, "work", b"poison").await);
    let m = ch
        .basic_get("work".into(), BasicGetOptions { no_ack: false })
        .await
        .expect("get")
        .expect("message");
    ch.basic_reject(
        m.delivery.delivery_tag,
        BasicRejectOptions { requeue: false },
    )
    .await
    .expect("reject");
    let dead = get_eventually(&ch, "dead").await;
    assert_eq!(dead.delivery.data, b"poison");
    let d = x_death(&dead.delivery.properties);
    assert_eq!(d.len(), 1);
    assert_eq!(field(&d[0], "reason"), "rejected");
    assert_eq!(field(&d[0], "queue"), "work");
    assert_eq!(field(&d[0], "count"), "1");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_and_policy_combine_as_rabbitmq_does() {
    let b = common::start().await;
    let br = broker(&b);
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    br.set_policy(policy(
        "all",
        "^prec\\.",
        ApplyTo::Queues,
        0,
        json!({"max-length": 3, "message-ttl": 60000, "expires": 3600000, "delivery-limit": 4,
               "max-length-bytes": 1000, "dead-letter-exchange": "pol-dlx",
               "dead-letter-routing-key": "pol-key", "overflow": "reject-publish"}),
    ))
    .expect("set policy");
    let int = |i: i32| AMQPValue::LongInt(i);
    // (queue, arguments, check of the effective settings)
    type Check = fn(&strata_amqp::queue::QueueArgs);
    let cases: Vec<(&str, FieldTable, Check)> = vec![
        ("prec.none", FieldTable::default(), |a| {
            assert_eq!(a.max_length, Some(3));
            assert_eq!(a.message_ttl_ms, Some(60000));
            assert_eq!(a.expires_ms, Some(3600000));
            assert_eq!(a.delivery_limit, Some(4));
            assert_eq!(a.max_length_bytes, Some(1000));
            assert_eq!(a.dead_letter_exchange.as_deref(), Some("pol-dlx"));
            assert_eq!(a.dead_letter_routing_key.as_deref(), Some("pol-key"));
            assert_eq!(a.overflow, strata_amqp::queue::Overflow::RejectPublish);
        }),
        (
            "prec.lower-args",
            args(&[
                ("x-max-length", int(1)),
                ("x-message-ttl", int(5)),
                ("x-expires", int(1000)),
                ("x-delivery-limit", int(2)),
                ("x-max-length-bytes", int(500)),
            ]),
            |a| {
                assert_eq!(a.max_length, Some(1));
                assert_eq!(a.message_ttl_ms, Some(5));
                assert_eq!(a.expires_ms, Some(1000));
                assert_eq!(a.delivery_limit, Some(2));
                assert_eq!(a.max_length_bytes, Some(500));
            },
        ),
        (
            "prec.higher-args",
            args(&[
                ("x-max-length", int(100)),
                ("x-message-ttl", int(999_999)),
                ("x-expires", int(99_999_999)),
                ("x-delivery-limit", int(50)),
                ("x-max-length-bytes", int(1_000_000)),
            ]),
            |a| {
                assert_eq!(a.max_length, Some(3));
                assert_eq!(a.message_ttl_ms, Some(60000));
                assert_eq!(a.expires_ms, Some(3600000));
                assert_eq!(a.delivery_limit, Some(4));
                assert_eq!(a.max_length_bytes, Some(1000));
            },
        ),
        (
            "prec.arg-wins",
            args(&[
                ("x-dead-letter-exchange", s("arg-dlx")),
                ("x-dead-letter-routing-key", s("arg-key")),
                ("x-overflow", s("drop-head")),
            ]),
            |a| {
                assert_eq!(a.dead_letter_exchange.as_deref(), Some("arg-dlx"));
                assert_eq!(a.dead_letter_routing_key.as_deref(), Some("arg-key"));
                assert_eq!(a.overflow, strata_amqp::queue::Overflow::DropHead);
            },
        ),
        (
            "prec.dlx-only",
            args(&[("x-dead-letter-exchange", s("arg-dlx"))]),
            |a| {
                // Each key on its own: the argument's exchange, the policy's routing key.
                assert_eq!(a.dead_letter_exchange.as_deref(), Some("arg-dlx"));
                assert_eq!(a.dead_letter_routing_key.as_deref(), Some("pol-key"));
            },
        ),
    ];
    let vhost = br.vhost("/").expect("vhost");
    for (name, a, check) in &cases {
        declare(&ch, name, a.clone()).await;
        let q = vhost.find_queue(name).expect("queue");
        check(&q.effective().args);
        assert_eq!(br.queue_policy("/", name).as_deref(), Some("all"));
    }
    // And in behaviour: x-max-length 1 under a policy of 3 keeps one message; reject-publish comes from the
    // policy where the arguments leave overflow open.
    assert!(publish(&ch, "prec.lower-args", b"a").await);
    assert!(!publish(&ch, "prec.lower-args", b"b").await, "nacked");
    assert_eq!(count(&ch, "prec.lower-args").await, 1);
    for body in [b"1", b"2", b"3", b"4"] {
        publish(&ch, "prec.arg-wins", body).await;
    }
    assert_eq!(count(&ch, "prec.arg-wins").await, 3, "drop-head keeps 3");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_highest_priority_policy_applies_alone() {
    let b = common::start().await;
    let br = broker(&b);
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    br.set_policy(policy(
        "broad",
        ".*",
        ApplyTo::Queues,
        1,
        json!({"max-length": 10, "message-ttl": 600000}),
    ))
    .expect("broad");
    br.set_policy(policy(
        "narrow",
        "^p\\.",
        ApplyTo::Queues,
        5,
        json!({"max-length": 1}),
    ))
    .expect("narrow");
    declare(&ch, "p.q", FieldTable::default()).await;
    declare(&ch, "z", FieldTable::default()).await;
    assert_eq!(br.queue_policy("/", "p.q").as_deref(), Some("narrow"));
    assert_eq!(br.queue_policy("/", "z").as_deref(), Some("broad"));
    let q = br
        .vhost("/")
        .and_then(|v| v.find_queue("p.q"))
        .expect("p.q");
    // Only one policy applies: the broad one's TTL does not leak into p.q.
    assert_eq!(q.effective().args.message_ttl_ms, None);
    assert_eq!(q.effective().args.max_length, Some(1));
    for body in [b"1", b"2", b"3"] {
        publish(&ch, "p.q", body).await;
    }
    assert_eq!(count(&ch, "p.q").await, 1);
    // Raising the broad policy above the narrow one moves p.q over at once.
    br.set_policy(policy(
        "broad",
        ".*",
        ApplyTo::Queues,
        9,
        json!({"max-length": 10, "message-ttl": 600000}),
    ))
    .expect("raise broad");
    assert_eq!(br.queue_policy("/", "p.q").as_deref(), Some("broad"));
    assert_eq!(q.effective().args.message_ttl_ms, Some(600000));
    // Equal priorities: the name that sorts first.
    br.set_policy(policy(
        "aaa",
        "^p\\.",
        ApplyTo::Queues,
        9,
        json!({"max-length": 7}),
    ))
    .expect("tie");
    assert_eq!(br.queue_policy("/", "p.q").as_deref(), Some("aaa"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_separates_exchanges_from_queues() {
    let b = common::start().await;
    let br = broker(&b);
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    for (name, kind, a) in [
        ("src", ExchangeKind::Direct, FieldTable::default()),
        ("ae", ExchangeKind::Fanout, FieldTable::default()),
        ("ae2", ExchangeKind::Fanout, FieldTable::default()),
        (
            "src-arg",
            ExchangeKind::Direct,
            args(&[("alternate-exchange", s("ae2"))]),
        ),
    ] {
        ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), a)
            .await
            .expect("exchange");
    }
    for (q, ex) in [("unrouted", "ae"), ("unrouted2", "ae2")] {
        declare(&ch, q, FieldTable::default()).await;
        ch.queue_bind(
            q.into(),
            ex.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    }
    declare(&ch, "src", FieldTable::default()).await;
    let send = |ex: &'static str| {
        let ch = ch.clone();
        async move {
            ch.basic_publish(
                ex.into(),
                "nowhere".into(),
                BasicPublishOptions::default(),
                b"m",
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        }
    };
    // A queues-only policy leaves the exchange named `src` alone (and applies to the queue `src`).
    br.set_policy(policy(
        "ae-pol",
        "^src",
        ApplyTo::Queues,
        0,
        json!({"alternate-exchange": "ae", "max-length": 100}),
    ))
    .expect("queues policy");
    send("src").await;
    assert_eq!(count(&ch, "unrouted").await, 0);
    assert_eq!(br.effective_exchange_policy("/", "src"), None);
    assert_eq!(br.queue_policy("/", "src").as_deref(), Some("ae-pol"));
    // The same as an exchanges policy: unroutable messages now go to `ae`; the queue loses it.
    br.set_policy(policy(
        "ae-pol",
        "^src",
        ApplyTo::Exchanges,
        0,
        json!({"alternate-exchange": "ae", "federation-upstream-set": "all"}),
    ))
    .expect("exchanges policy");
    send("src").await;
    assert_eq!(count(&ch, "unrouted").await, 1);
    assert_eq!(br.queue_policy("/", "src"), None);
    let p = br
        .effective_exchange_policy("/", "src")
        .expect("exchange policy");
    assert_eq!(p.name, "ae-pol");
    assert_eq!(p.definition["federation-upstream-set"], json!("all"));
    // The exchange's own alternate-exchange argument wins over the policy's.
    send("src-arg").await;
    assert_eq!(count(&ch, "unrouted").await, 1);
    assert_eq!(count(&ch, "unrouted2").await, 1);
    // Clearing it stops the alternate routing at once.
    assert!(br.clear_policy("/", "ae-pol").expect("clear"));
    send("src").await;
    assert_eq!(count(&ch, "unrouted").await, 1);
    assert_eq!(br.effective_exchange_policy("/", "src"), None);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_a_policy_restores_the_arguments_behaviour() {
    let b = common::start().await;
    let br = broker(&b);
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "cq", args(&[("x-max-length", AMQPValue::LongInt(3))])).await;
    br.set_policy(policy(
        "tight",
        "^cq$",
        ApplyTo::All,
        0,
        json!({"max-length": 1, "overflow": "reject-publish"}),
    ))
    .expect("set");
    assert!(publish(&ch, "cq", b"1").await);
    assert!(
        !publish(&ch, "cq", b"2").await,
        "reject-publish from the policy"
    );
    assert_eq!(count(&ch, "cq").await, 1);
    assert!(br.clear_policy("/", "tight").expect("clear"));
    assert!(!br.clear_policy("/", "tight").expect("clear again"));
    assert_eq!(br.queue_policy("/", "cq"), None);
    // Back to x-max-length 3 with the default drop-head.
    for body in [b"3", b"4", b"5"] {
        assert!(publish(&ch, "cq", body).await);
    }
    assert_eq!(count(&ch, "cq").await, 3);
    assert_eq!(get(&ch, "cq").await.expect("head").delivery.data, b"3");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_policy_combines_as_the_stricter() {
    let b = common::start().await;
    let br = broker(&b);
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "op", args(&[("x-max-length", AMQPValue::LongInt(10))])).await;
    br.set_policy(policy(
        "user",
        "^op$",
        ApplyTo::Queues,
        0,
        json!({"max-length": 5, "dead-letter-exchange": "x"}),
    ))
    .expect("user policy");
    br.set_operator_policy(policy(
        "cap",
        ".*",
        ApplyTo::Queues,
        0,
        json!({"max-length": 2, "message-ttl": 600000}),
    ))
    .expect("operator policy");
    let q = br.vhost("/").and_then(|v| v.find_queue("op")).expect("op");
    assert_eq!(q.effective().args.max_length, Some(2));
    assert_eq!(q.effective().args.message_ttl_ms, Some(600000));
    assert_eq!(
        q.effective().args.dead_letter_exchange.as_deref(),
        Some("x")
    );
    assert_eq!(br.queue_policy("/", "op").as_deref(), Some("user"));
    assert_eq!(br.queue_operator_policy("/", "op").as_deref(), Some("cap"));
    assert_eq!(
        br.queue_effective_policy_definition("/", "op")
            .map(Value::Object),
        Some(json!({"max-length": 2, "message-ttl": 600000, "dead-letter-exchange": "x"}))
    );
    for body in [b"1", b"2", b"3"] {
        publish(&ch, "op", body).await;
    }
    assert_eq!(count(&ch, "op").await, 2);
    // A looser operator limit does not loosen the user policy's.
    br.set_operator_policy(policy(
        "cap",
        ".*",
        ApplyTo::Queues,
        0,
        json!({"max-length": 50}),
    ))
    .expect("operator policy");
    assert_eq!(q.effective().args.max_length, Some(5));
    assert_eq!(br.operator_policies(Some("/")).len(), 1);
    assert_eq!(br.policies(Some("/")).len(), 1);
    // Operator policies take limits only.
    let err = br
        .set_operator_policy(policy(
            "bad",
            ".*",
            ApplyTo::Queues,
            0,
            json!({"dead-letter-exchange": "x"}),
        ))
        .expect_err("not an operator key");
    assert_eq!(
        err.to_string(),
        "Validation failed\n\n[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings\n"
    );
    assert!(br.clear_operator_policy("/", "cap").expect("clear"));
    assert_eq!(q.effective().args.max_length, Some(5));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let b = common::start_in(dir.path(), AmqpConfig::default()).await;
        let br = broker(&b);
        br.set_policy(policy(
            "keep",
            "^durable\\.",
            ApplyTo::Queues,
            3,
            json!({"max-length": 2}),
        ))
        .expect("policy");
        br.set_policy(policy(
            "gone",
            ".*",
            ApplyTo::All,
            0,
            json!({"max-length": 9}),
        ))
        .expect("policy");
        assert!(br.clear_policy("/", "gone").expect("clear"));
        br.set_operator_policy(policy(
            "op",
            ".*",
            ApplyTo::Queues,
            0,
            json!({"message-ttl": 600000}),
        ))
        .expect("operator policy");
        let conn = b.connect().await;
        let ch = confirm_channel(&conn).await;
        ch.queue_declare(
            "durable.q".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
        drop(conn);
        b.stop().await;
    }
    let b = common::start_in(dir.path(), AmqpConfig::default()).await;
    let br = broker(&b);
    let names: Vec<String> = br.policies(None).into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["keep"]);
    let keep = &br.policies(Some("/"))[0];
    assert_eq!(keep.pattern, "^durable\\.");
    assert_eq!(keep.apply_to, ApplyTo::Queues);
    assert_eq!(keep.priority, 3);
    assert_eq!(keep.definition["max-length"], json!(2));
    assert_eq!(br.operator_policies(None).len(), 1);
    assert_eq!(br.queue_policy("/", "durable.q").as_deref(), Some("keep"));
    assert_eq!(
        br.queue_operator_policy("/", "durable.q").as_deref(),
        Some("op")
    );
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    for body in [b"1", b"2", b"3"] {
        publish(&ch, "durable.q", body).await;
    }
    assert_eq!(count(&ch, "durable.q").await, 2);
    drop(conn);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_policies_are_refused_with_rabbitmqs_messages() {
    let b = common::start().await;
    let br = broker(&b);
    let cases: &[(Value, &str)] = &[
        (
            json!({"max-priority": 10}),
            "[{<<\"max-priority\">>,10}] are not recognised policy settings",
        ),
        (
            json!({"single-active-consumer": true}),
            "[{<<\"single-active-consumer\">>,true}] are not recognised policy settings",
        ),
        (
            json!({"message-ttl": "1s"}),
            "<<\"1s\">> is not a valid message TTL",
        ),
        (
            json!({"max-length-bytes": 1.5}),
            "1.5 is not a valid maximum length in bytes",
        ),
        (
            json!({"overflow": "drop-tail"}),
            "<<\"drop-tail\">> is not a valid overflow value",
        ),
        (json!({}), "no policy provided"),
    ];
    for (def, msg) in cases {
        let err = br
            .set_policy(policy("bad", ".*", ApplyTo::All, 0, def.clone()))
            .expect_err("invalid");
        assert_eq!(err, PolicyError::Invalid((*msg).to_owned()), "{def}");
        assert_eq!(err.http_status(), 400);
    }
    let err = br
        .set_policy(policy(
            "bad",
            "([a-z",
            ApplyTo::All,
            0,
            json!({"max-length": 1}),
        ))
        .expect_err("bad regex");
    assert!(
        err.to_string().starts_with(
            "Validation failed\n\npattern should be regular expression but is invalid"
        ),
        "{err}"
    );
    let mut elsewhere = policy("p", ".*", ApplyTo::All, 0, json!({"max-length": 1}));
    elsewhere.vhost = "nope".into();
    let err = br.set_policy(elsewhere).expect_err("no vhost");
    assert_eq!(err, PolicyError::NoSuchVhost("nope".into()));
    assert_eq!(err.http_status(), 404);
    assert_eq!(
        br.clear_policy("nope", "p"),
        Err(PolicyError::NoSuchVhost("nope".into()))
    );
    assert!(br.policies(None).is_empty(), "nothing was stored");
    assert!(br.policies(Some("nope")).is_empty());
    // Accepted for compatibility (no effect): queue-mode, ha-*.
    br.set_policy(policy(
        "compat",
        ".*",
        ApplyTo::All,
        0,
        json!({"queue-mode": "lazy", "ha-mode": "all", "ha-sync-mode": "automatic"}),
    ))
    .expect("compat keys");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_expires_and_delivery_limit_apply_to_existing_queues() {
    let b = common::start().await;
    let br = broker(&b);
    let conn = b.connect().await;
    let ch = confirm_channel(&conn).await;
    declare(&ch, "idle", FieldTable::default()).await;
    declare(&ch, "dlq", FieldTable::default()).await;
    declare(&ch, "retry", FieldTable::default()).await;
    br.set_policy(policy(
        "exp",
        "^idle$",
        ApplyTo::Queues,
        0,
        json!({"expires": 200}),
    ))
    .expect("expires");
    // Counted from the policy change, then the unused queue goes.
    assert!(br.vhost("/").and_then(|v| v.find_queue("idle")).is_some());
    common::eventually("idle queue expires", Duration::from_secs(5), || {
        br.vhost("/").and_then(|v| v.find_queue("idle")).is_none()
    })
    .await;
    br.set_policy(policy(
        "limit",
        "^retry$",
        ApplyTo::Queues,
        0,
        json!({"delivery-limit": 1, "dead-letter-exchange": "", "dead-letter-routing-key": "dlq"}),
    ))
    .expect("delivery limit");
    assert!(publish(&ch, "retry", b"poison").await);
    for _ in 0..2 {
        let mut got = None;
        for _ in 0..500 {
            got = ch
                .basic_get("retry".into(), BasicGetOptions { no_ack: false })
                .await
                .expect("get");
            if got.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let m = got.expect("requeued message");
        ch.basic_nack(
            m.delivery.delivery_tag,
            BasicNackOptions {
                requeue: true,
                ..Default::default()
            },
        )
        .await
        .expect("nack");
    }
    let dead = get_eventually(&ch, "dlq").await;
    assert_eq!(dead.delivery.data, b"poison");
    assert_eq!(
        field(&x_death(&dead.delivery.properties)[0], "reason"),
        "delivery_limit"
    );
    b.stop().await;
}
