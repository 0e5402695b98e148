//! Routing of every exchange type, table-driven: each case declares an exchange, binds queues, publishes
//! with a routing key (and headers) and checks which queues got the message.

mod common;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

/// (queue, binding key, binding arguments)
type BindingSpec = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

struct Case {
    kind: ExchangeKind,
    /// (queue, binding key, binding arguments)
    bindings: &'static [BindingSpec],
    routing_key: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: &'static [&'static str],
}

fn table(pairs: &[(&str, &str)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(
            (*k).into(),
            AMQPValue::LongString(LongString::from(v.as_bytes())),
        );
    }
    t
}

async fn got_message(ch: &Channel, queue: &str) -> bool {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exchange_type_routes_as_rabbitmq() {
    let cases = [
        Case {
            kind: ExchangeKind::Direct,
            bindings: &[("a", "k1", &[]), ("b", "k2", &[]), ("c", "k1", &[])],
            routing_key: "k1",
            headers: &[],
            expect: &["a", "c"],
        },
        Case {
            kind: ExchangeKind::Direct,
            bindings: &[("a", "k1", &[])],
            routing_key: "K1",
            headers: &[],
            expect: &[],
        },
        Case {
            kind: ExchangeKind::Fanout,
            bindings: &[("a", "x", &[]), ("b", "", &[])],
            routing_key: "anything",
            headers: &[],
            expect: &["a", "b"],
        },
        Case {
            kind: ExchangeKind::Topic,
            bindings: &[
                ("a", "*.orange.*", &[]),
                ("b", "*.*.rabbit", &[]),
                ("c", "lazy.#", &[]),
            ],
            routing_key: "quick.orange.rabbit",
            headers: &[],
            expect: &["a", "b"],
        },
        Case {
            kind: ExchangeKind::Topic,
            bindings: &[
                ("a", "*.orange.*", &[]),
                ("b", "*.*.rabbit", &[]),
                ("c", "lazy.#", &[]),
            ],
            routing_key: "lazy.pink.rabbit",
            headers: &[],
            expect: &["b", "c"],
        },
        Case {
            kind: ExchangeKind::Topic,
            bindings: &[("a", "*.orange.*", &[]), ("c", "lazy.#", &[])],
            routing_key: "lazy",
            headers: &[],
            expect: &["c"],
        },
        Case {
            kind: ExchangeKind::Topic,
            bindings: &[("a", "#", &[])],
            routing_key: "",
            headers: &[],
            expect: &["a"],
        },
        Case {
            kind: ExchangeKind::Headers,
            bindings: &[
                (
                    "a",
                    "",
                    &[("x-match", "all"), ("f", "pdf"), ("t", "report")],
                ),
                (
                    "b",
                    "",
                    &[("x-match", "any"), ("f", "zip"), ("t", "report")],
                ),
            ],
            routing_key: "",
            headers: &[("f", "pdf"), ("t", "report")],
            expect: &["a", "b"],
        },
        Case {
            kind: ExchangeKind::Headers,
            bindings: &[
                ("a", "", &[("x-match", "all"), ("f", "pdf"), ("t", "log")]),
                ("b", "", &[("x-match", "any"), ("f", "zip")]),
            ],
            routing_key: "",
            headers: &[("f", "pdf"), ("t", "report")],
            expect: &[],
        },
        Case {
            kind: ExchangeKind::Headers,
            bindings: &[
                ("a", "", &[("x-match", "all-with-x"), ("x-k", "v")]),
                ("b", "", &[("x-match", "all"), ("x-k", "other")]),
            ],
            routing_key: "",
            headers: &[("x-k", "v")],
            expect: &["a", "b"],
        },
        Case {
            kind: ExchangeKind::Headers,
            bindings: &[("a", "", &[("x-match", "any-with-x"), ("x-k", "w")])],
            routing_key: "",
            headers: &[("x-k", "v")],
            expect: &[],
        },
    ];
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    for (i, case) in cases.iter().enumerate() {
        let ex = format!("ex{i}");
        ch.exchange_declare(
            ex.as_str().into(),
            case.kind.clone(),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("exchange");
        let mut queues: Vec<&str> = Vec::new();
        for (q, key, args) in case.bindings {
            let qn = format!("{ex}.{q}");
            if !queues.contains(q) {
                ch.queue_declare(
                    qn.as_str().into(),
                    QueueDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("queue");
                queues.push(q);
            }
            ch.queue_bind(
                qn.as_str().into(),
                ex.as_str().into(),
                (*key).into(),
                QueueBindOptions::default(),
                table(args),
            )
            .await
            .expect("bind");
        }
        let props = if case.headers.is_empty() {
            BasicProperties::default()
        } else {
            BasicProperties::default().with_headers(table(case.headers))
        };
        ch.basic_publish(
            ex.as_str().into(),
            case.routing_key.into(),
            BasicPublishOptions::default(),
            b"m",
            props,
        )
        .await
        .expect("publish");
        for q in &queues {
            let qn = format!("{ex}.{q}");
            let got = got_message(&ch, &qn).await;
            assert_eq!(got, case.expect.contains(q), "case {i}: queue {q}");
        }
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_and_alternate_exchange() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let decl = |name: &'static str, kind: ExchangeKind, args: FieldTable| {
        let ch = ch.clone();
        async move {
            ch.exchange_declare(name.into(), kind, ExchangeDeclareOptions::default(), args)
                .await
                .expect("exchange")
        }
    };
    decl("unrouted", ExchangeKind::Fanout, FieldTable::default()).await;
    decl(
        "front",
        ExchangeKind::Direct,
        table(&[("alternate-exchange", "unrouted")]),
    )
    .await;
    decl("inner", ExchangeKind::Topic, FieldTable::default()).await;
    for q in ["lost", "inner-q"] {
        ch.queue_declare(
            q.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("queue");
    }
    ch.queue_bind(
        "lost".into(),
        "unrouted".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    ch.exchange_bind(
        "inner".into(),
        "front".into(),
        "k".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("e2e bind");
    ch.queue_bind(
        "inner-q".into(),
        "inner".into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    for key in ["k", "other"] {
        ch.basic_publish(
            "front".into(),
            key.into(),
            BasicPublishOptions::default(),
            key.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    }
    let inner = ch
        .basic_get("inner-q".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("routed through e2e");
    assert_eq!(inner.delivery.data, b"k");
    let lost = ch
        .basic_get("lost".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("alternate");
    assert_eq!(lost.delivery.data, b"other");
    assert!(!got_message(&ch, "inner-q").await);

    // Unbinding the exchange stops the flow; the alternate exchange then takes "k" too.
    ch.exchange_unbind(
        "inner".into(),
        "front".into(),
        "k".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    ch.basic_publish(
        "front".into(),
        "k".into(),
        BasicPublishOptions::default(),
        b"k2",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    assert!(got_message(&ch, "lost").await);
    b.stop().await;
}
