//! Exchange federation between two (or three) strata brokers in one process: messages published to the
//! upstream exchange reach queues bound to the federated downstream exchange with `x-received-from`; the
//! upstream queue's binding keys follow the downstream bindings; cycles and long chains stop at max-hops or at
//! the broker they started from; a link reconnects after its upstream restarts; definitions persist.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use strata_amqp::federation::{
    AckMode, FederationError, LinkState, LinkStatus, Upstream, UpstreamSelector,
};
use strata_amqp::{AmqpConfig, Broker};

const DEADLINE: Duration = Duration::from_secs(20);

fn broker(b: &common::TestBroker) -> &Arc<Broker> {
    b.broker.as_ref().expect("running broker")
}

fn upstream(to: &common::TestBroker) -> Upstream {
    let mut u = Upstream::new(to.uri());
    u.reconnect_delay = Duration::from_millis(50);
    u
}

async fn declare_exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
}

async fn declare_bound_queue(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.bind");
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
}

/// Polls basic.get on `queue` until a message arrives.
async fn get(ch: &Channel, queue: &str) -> lapin::message::BasicGetMessage {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(m) = ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
        {
            return m;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for a message on {queue}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn link(b: &Arc<Broker>, exchange: &str) -> Option<LinkStatus> {
    b.federation_links()
        .into_iter()
        .find(|l| l.exchange == exchange)
}

/// Waits until the link of `exchange` runs and the upstream's exchange has exactly `keys` bound to the
/// link's queue.
async fn wait_bound(down: &Arc<Broker>, up: &Arc<Broker>, exchange: &str, keys: &[&str]) {
    let mut want: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    want.sort();
    common::eventually(
        &format!("link of {exchange} running with keys {keys:?}"),
        DEADLINE,
        || {
            let Some(l) = link(down, exchange) else {
                return false;
            };
            if l.status != LinkState::Running {
                return false;
            }
            let Ok(x) = up.vhost("/").expect("vhost").exchange(&l.upstream_exchange) else {
                return false;
            };
            let mut got: Vec<String> = x
                .bindings()
                .into_iter()
                .filter(|b| b.destination.name() == l.queue)
                .map(|b| b.routing_key)
                .collect();
            got.sort();
            got == want
        },
    )
    .await;
}

fn hops(m: &lapin::message::BasicGetMessage) -> Vec<FieldTable> {
    let headers = m.delivery.properties.headers().clone().unwrap_or_default();
    match headers.inner().get("x-received-from") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .filter_map(|v| match v {
                AMQPValue::FieldTable(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn text(t: &FieldTable, key: &str) -> Option<String> {
    match t.inner().get(key) {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_upstream_arrives_downstream_with_received_from_in_every_ack_mode() {
    let up = common::start().await;
    let down = common::start().await;
    let (ub, db) = (broker(&up).clone(), broker(&down).clone());
    ub.set_cluster_name("up").expect("name");
    db.set_cluster_name("down").expect("name");
    let uconn = up.connect().await;
    let uch = uconn.create_channel().await.expect("channel");
    uch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let dconn = down.connect().await;
    let dch = dconn.create_channel().await.expect("channel");
    for (i, mode) in [AckMode::OnConfirm, AckMode::OnPublish, AckMode::NoAck]
        .into_iter()
        .enumerate()
    {
        let x = format!("fed.{}", mode.name());
        declare_exchange(&uch, &x, ExchangeKind::Topic).await;
        declare_exchange(&dch, &x, ExchangeKind::Topic).await;
        let q = format!("q{i}");
        declare_bound_queue(&dch, &q, &x, "orders.#").await;
        let mut u = upstream(&up);
        u.ack_mode = mode;
        u.prefetch_count = 10;
        let name = format!("up-{}", mode.name());
        db.set_upstream("/", &name, u).expect("set_upstream");
        db.federate_exchange("/", &x, UpstreamSelector::Upstream(name.clone()))
            .expect("federate");
        wait_bound(&db, &ub, &x, &["orders.#"]).await;

        for n in 0..20u32 {
            publish(&uch, &x, "orders.eu", format!("m{n}").as_bytes()).await;
        }
        publish(&uch, &x, "other", b"not bound").await;
        for n in 0..20u32 {
            let m = get(&dch, &q).await;
            assert_eq!(m.delivery.data, format!("m{n}").as_bytes(), "{mode:?}");
            assert_eq!(m.delivery.routing_key.as_str(), "orders.eu");
            assert_eq!(m.delivery.exchange.as_str(), x);
            assert_eq!(m.delivery.properties.delivery_mode(), &Some(2));
            let h = hops(&m);
            assert_eq!(h.len(), 1, "{h:?}");
            assert_eq!(text(&h[0], "cluster-name").as_deref(), Some("up"));
            assert_eq!(text(&h[0], "exchange").as_deref(), Some(x.as_str()));
            assert_eq!(text(&h[0], "uri"), Some(format!("amqp://{}/%2f", up.addr)));
            assert_eq!(text(&h[0], "vhost").as_deref(), Some("/"));
            assert_eq!(
                h[0].inner().get("redelivered"),
                Some(&AMQPValue::Boolean(false))
            );
        }
        let l = link(&db, &x).expect("link");
        assert_eq!((l.upstream.as_str(), l.forwarded), (name.as_str(), 20));
        assert_eq!(l.queue, "federation: ".to_owned() + &x + " -> down");
        // Acknowledged upstream in every mode: the upstream queue drains.
        common::eventually("upstream queue drained", DEADLINE, || {
            ub.queue_stats()
                .iter()
                .any(|s| s.name == l.queue && s.ready == 0 && s.consumers == 1)
        })
        .await;
    }
    assert_eq!(db.federation_links().len(), 3);
    // on-confirm and on-publish acknowledged their 20 each upstream (no-ack consumed without acks).
    common::eventually("40 upstream acks", DEADLINE, || {
        ub.stats.acked.load(std::sync::atomic::Ordering::Relaxed) == 40
    })
    .await;
    // A burst: acknowledgements are settled in batches (`multiple`), every message exactly once.
    let mut confirms = Vec::new();
    for n in 0..300u32 {
        confirms.push(
            uch.basic_publish(
                "fed.on-confirm".into(),
                "orders.burst".into(),
                BasicPublishOptions::default(),
                &n.to_be_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish"),
        );
    }
    for c in confirms {
        c.await.expect("confirm");
    }
    for n in 0..300u32 {
        assert_eq!(get(&dch, "q0").await.delivery.data, n.to_be_bytes());
    }
    common::eventually("340 upstream acks", DEADLINE, || {
        ub.stats.acked.load(std::sync::atomic::Ordering::Relaxed) == 340
    })
    .await;

    // Unfederating stops the link and deletes its upstream queue.
    assert!(
        db.unfederate_exchange("/", "fed.no-ack")
            .expect("unfederate")
    );
    assert!(link(&db, "fed.no-ack").is_none());
    common::eventually("upstream queue deleted", DEADLINE, || {
        !ub.queue_stats()
            .iter()
            .any(|s| s.name == "federation: fed.no-ack -> down")
    })
    .await;
    // So does clearing the upstream.
    assert!(db.clear_upstream("/", "up-on-publish").expect("clear"));
    assert!(link(&db, "fed.on-publish").is_none());
    assert_eq!(db.federation_links().len(), 1);
    drop((uconn, dconn));
    down.stop().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_binding_keys_follow_downstream_bindings() {
    let up = common::start().await;
    let down = common::start().await;
    let (ub, db) = (broker(&up).clone(), broker(&down).clone());
    let uconn = up.connect().await;
    let uch = uconn.create_channel().await.expect("channel");
    let dconn = down.connect().await;
    let dch = dconn.create_channel().await.expect("channel");
    declare_exchange(&uch, "logs", ExchangeKind::Topic).await;
    declare_exchange(&dch, "logs", ExchangeKind::Topic).await;
    db.set_upstream("/", "u", upstream(&up)).expect("upstream");
    db.federate_exchange("/", "logs", UpstreamSelector::All)
        .expect("federate");
    wait_bound(&db, &ub, "logs", &[]).await;

    declare_bound_queue(&dch, "errors", "logs", "*.error").await;
    wait_bound(&db, &ub, "logs", &["*.error"]).await;
    declare_bound_queue(&dch, "kernel", "logs", "kernel.#").await;
    // The same key twice downstream is one upstream binding.
    declare_bound_queue(&dch, "errors2", "logs", "*.error").await;
    wait_bound(&db, &ub, "logs", &["*.error", "kernel.#"]).await;

    publish_plain(&uch, "logs", "kernel.error").await;
    publish_plain(&uch, "logs", "app.info").await;
    for q in ["errors", "kernel", "errors2"] {
        assert_eq!(&get(&dch, q).await.delivery.data[..], b"kernel.error");
    }

    dch.queue_unbind(
        "kernel".into(),
        "logs".into(),
        "kernel.#".into(),
        FieldTable::default(),
    )
    .await
    .expect("unbind");
    wait_bound(&db, &ub, "logs", &["*.error"]).await;
    // Deleting one of two queues with the key keeps it; deleting the other removes it.
    dch.queue_delete("errors".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    wait_bound(&db, &ub, "logs", &["*.error"]).await;
    dch.queue_delete("errors2".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    wait_bound(&db, &ub, "logs", &[]).await;
    // The federated exchange deleted and declared again: the link follows its new bindings.
    declare_bound_queue(&dch, "gone", "logs", "gone.*").await;
    wait_bound(&db, &ub, "logs", &["gone.*"]).await;
    dch.exchange_delete("logs".into(), ExchangeDeleteOptions::default())
        .await
        .expect("exchange.delete");
    wait_bound(&db, &ub, "logs", &[]).await;
    declare_exchange(&dch, "logs", ExchangeKind::Topic).await;
    declare_bound_queue(&dch, "again", "logs", "x.y").await;
    wait_bound(&db, &ub, "logs", &["x.y"]).await;
    publish_plain(&uch, "logs", "x.y").await;
    assert_eq!(&get(&dch, "again").await.delivery.data[..], b"x.y");
    drop((uconn, dconn));
    down.stop().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_upstream_bindings_go_after_a_downstream_restart() {
    let up = common::start().await;
    let ub = broker(&up).clone();
    let uconn = up.connect().await;
    let uch = uconn.create_channel().await.expect("channel");
    declare_exchange(&uch, "metrics", ExchangeKind::Topic).await;
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let down = common::start_in(dir.path(), AmqpConfig::default()).await;
        let db = broker(&down).clone();
        let conn = down.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        declare_exchange(&ch, "metrics", ExchangeKind::Topic).await;
        ch.queue_declare(
            "durable".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue.declare");
        ch.queue_bind(
            "durable".into(),
            "metrics".into(),
            "keep.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
        // A transient queue's binding does not survive the restart.
        declare_bound_queue(&ch, "transient", "metrics", "temp.#").await;
        db.set_upstream("/", "u", upstream(&up)).expect("upstream");
        db.federate_exchange("/", "metrics", UpstreamSelector::All)
            .expect("federate");
        wait_bound(&db, &ub, "metrics", &["keep.#", "temp.#"]).await;
        drop(conn);
        down.stop().await;
    }
    let down = common::start_in(dir.path(), AmqpConfig::default()).await;
    let db = broker(&down).clone();
    wait_bound(&db, &ub, "metrics", &["keep.#"]).await;
    publish_plain(&uch, "metrics", "keep.cpu").await;
    let conn = down.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    assert_eq!(&get(&ch, "durable").await.delivery.data[..], b"keep.cpu");
    drop((conn, uconn));
    down.stop().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_resolver_federates_matching_exchanges() {
    let up = common::start().await;
    let down = common::start().await;
    let (ub, db) = (broker(&up).clone(), broker(&down).clone());
    db.set_cluster_name("down").expect("name");
    let uconn = up.connect().await;
    let uch = uconn.create_channel().await.expect("channel");
    declare_exchange(&uch, "pol.orders", ExchangeKind::Fanout).await;
    db.set_upstream("/", "u", upstream(&up)).expect("upstream");
    // What the policy module will do: read `federation-upstream(-set)` from the effective policy.
    db.set_federation_policy_resolver(Arc::new(|_b: &Broker, _vhost: &str, exchange: &str| {
        let set = exchange.starts_with("pol.").then_some("all");
        strata_amqp::federation::selector_from_policy(None, set)
    }));
    assert!(db.federation_links().is_empty());
    let dconn = down.connect().await;
    let dch = dconn.create_channel().await.expect("channel");
    // Declaring a matching exchange starts its link.
    declare_exchange(&dch, "pol.orders", ExchangeKind::Fanout).await;
    declare_exchange(&dch, "other", ExchangeKind::Fanout).await;
    declare_bound_queue(&dch, "orders", "pol.orders", "").await;
    wait_bound(&db, &ub, "pol.orders", &[""]).await;
    assert!(link(&db, "other").is_none());
    publish_plain(&uch, "pol.orders", "o1").await;
    assert_eq!(&get(&dch, "orders").await.delivery.data[..], b"o1");
    // Deleting it stops the link, which deletes its upstream queue.
    dch.exchange_delete("pol.orders".into(), ExchangeDeleteOptions::default())
        .await
        .expect("delete");
    assert!(link(&db, "pol.orders").is_none());
    common::eventually("upstream queue deleted", DEADLINE, || {
        !ub.queue_stats()
            .iter()
            .any(|s| s.name == "federation: pol.orders -> down")
    })
    .await;
    // A policy change is picked up on refresh.
    db.set_federation_policy_resolver(Arc::new(|_b: &Broker, _vhost: &str, exchange: &str| {
        strata_amqp::federation::selector_from_policy((exchange == "other").then_some("u"), None)
    }));
    db.refresh_federation();
    assert_eq!(link(&db, "other").map(|l| l.upstream), Some("u".to_owned()));
    drop((uconn, dconn));
    down.stop().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_federate_exchanges_as_in_rabbitmq() {
    use strata_amqp::policy::Policy;
    let up = common::start().await;
    let ub = broker(&up).clone();
    let uconn = up.connect().await;
    let uch = uconn.create_channel().await.expect("channel");
    for x in ["fed.a", "fed.b", "single"] {
        declare_exchange(&uch, x, ExchangeKind::Direct).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let down = common::start_in(dir.path(), AmqpConfig::default()).await;
        let db = broker(&down).clone();
        db.set_cluster_name("down").expect("name");
        db.set_upstream("/", "u", upstream(&up)).expect("upstream");
        let conn = down.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        // Declared before the policy exists.
        declare_exchange(&ch, "fed.b", ExchangeKind::Direct).await;
        declare_bound_queue(&ch, "qb", "fed.b", "k").await;
        let policy = |name: &str, pattern: &str, def: serde_json::Value| {
            Policy::from_json(
                "/",
                name,
                &serde_json::json!({"pattern": pattern, "apply-to": "exchanges", "definition": def}),
            )
            .expect("policy")
        };
        db.set_policy(policy(
            "federate-me",
            "^fed\\.",
            serde_json::json!({"federation-upstream-set": "all"}),
        ))
        .expect("set_policy");
        db.set_policy(policy(
            "one",
            "^single$",
            serde_json::json!({"federation-upstream": "u"}),
        ))
        .expect("set_policy");
        wait_bound(&db, &ub, "fed.b", &["k"]).await;
        // Declared after: its link starts with it.
        declare_exchange(&ch, "fed.a", ExchangeKind::Direct).await;
        declare_bound_queue(&ch, "qa", "fed.a", "k").await;
        wait_bound(&db, &ub, "fed.a", &["k"]).await;
        declare_exchange(&ch, "single", ExchangeKind::Direct).await;
        wait_bound(&db, &ub, "single", &[]).await;
        publish_plain(&uch, "fed.a", "k").await;
        assert_eq!(&get(&ch, "qa").await.delivery.data[..], b"k");
        // Not in the explicit list: the policy is what federates them.
        assert!(db.federated_exchanges().is_empty());
        drop(conn);
        down.stop().await;
    }
    // Policies and upstreams are stored: the links come back with the broker.
    let down = common::start_in(dir.path(), AmqpConfig::default()).await;
    let db = broker(&down).clone();
    // (The transient queues and their bindings did not survive: no keys upstream any more.)
    wait_bound(&db, &ub, "fed.a", &[]).await;
    wait_bound(&db, &ub, "fed.b", &[]).await;
    let conn = down.connect().await;
    let ch = conn.create_channel().await.expect("channel");
    declare_bound_queue(&ch, "qb", "fed.b", "k").await;
    wait_bound(&db, &ub, "fed.b", &["k"]).await;
    publish_plain(&uch, "fed.b", "k").await;
    assert_eq!(&get(&ch, "qb").await.delivery.data[..], b"k");
    // Clearing the policy stops the links it made, which delete their upstream queues.
    assert!(db.clear_policy("/", "federate-me").expect("clear"));
    assert!(link(&db, "fed.a").is_none() && link(&db, "fed.b").is_none());
    assert!(link(&db, "single").is_some());
    common::eventually("upstream queues deleted", DEADLINE, || {
        !ub.queue_stats()
            .iter()
            .any(|s| s.name.starts_with("federation: fed."))
    })
    .await;
    drop((conn, uconn));
    down.stop().await;
    up.stop().await;
}

async fn publish_plain(ch: &Channel, exchange: &str, key: &str) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        key.as_bytes(),
        BasicProperties::default(),
    )
    .await
    .expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_federating_each_other_do_not_loop() {
    let a = common::start().await;
    let b = common::start().await;
    let (ab, bb) = (broker(&a).clone(), broker(&b).clone());
    ab.set_cluster_name("a").expect("name");
    bb.set_cluster_name("b").expect("name");
    let aconn = a.connect().await;
    let ach = aconn.create_channel().await.expect("channel");
    ach.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let bconn = b.connect().await;
    let bch = bconn.create_channel().await.expect("channel");
    for (ch, q) in [(&ach, "qa"), (&bch, "qb")] {
        declare_exchange(ch, "ring", ExchangeKind::Fanout).await;
        declare_bound_queue(ch, q, "ring", "").await;
    }
    // A generous max-hops: the loop is stopped because a message comes back to the broker it passed.
    let mut to_b = upstream(&b);
    to_b.max_hops = 5;
    let mut to_a = upstream(&a);
    to_a.max_hops = 5;
    ab.set_upstream("/", "b", to_b).expect("upstream");
    bb.set_upstream("/", "a", to_a).expect("upstream");
    ab.federate_exchange("/", "ring", UpstreamSelector::All)
        .expect("federate");
    bb.federate_exchange("/", "ring", UpstreamSelector::All)
        .expect("federate");
    wait_bound(&ab, &bb, "ring", &[""]).await;
    wait_bound(&bb, &ab, "ring", &[""]).await;

    publish(&ach, "ring", "", b"hello").await;
    let m = get(&bch, "qb").await;
    assert_eq!(&m.delivery.data[..], b"hello");
    assert_eq!(hops(&m).len(), 1);
    assert_eq!(text(&hops(&m)[0], "cluster-name").as_deref(), Some("a"));
    assert_eq!(&get(&ach, "qa").await.delivery.data[..], b"hello");
    // B's copy travels back to A, where the link drops it (A is in its x-received-from).
    common::eventually("copy dropped at a", DEADLINE, || {
        link(&ab, "ring").is_some_and(|l| l.dropped == 1)
    })
    .await;
    assert_eq!(link(&ab, "ring").map(|l| l.forwarded), Some(0));
    assert_eq!(link(&bb, "ring").map(|l| l.forwarded), Some(1));
    let stats = |br: &Arc<Broker>, q: &str| {
        br.queue_stats()
            .into_iter()
            .find(|s| s.name == q)
            .map(|s| s.ready)
    };
    assert_eq!(stats(&ab, "qa"), Some(0));
    assert_eq!(stats(&bb, "qb"), Some(0));
    drop((aconn, bconn));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_hops_ends_a_chain() {
    // a -> b -> c: c's link from b allows one hop, so what was published on a stops at b.
    let a = common::start().await;
    let b = common::start().await;
    let c = common::start().await;
    for (br, n) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        broker(br).set_cluster_name(n).expect("name");
    }
    let conns = [a.connect().await, b.connect().await, c.connect().await];
    let mut chans = Vec::new();
    for (i, conn) in conns.iter().enumerate() {
        let ch = conn.create_channel().await.expect("channel");
        // c's exchange is internal: clients cannot publish to it, its federation link can.
        ch.exchange_declare(
            "chain".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                internal: i == 2,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange.declare");
        chans.push(ch);
    }
    declare_bound_queue(&chans[1], "qb", "chain", "k").await;
    declare_bound_queue(&chans[2], "qc", "chain", "k").await;
    let (bb, cb) = (broker(&b).clone(), broker(&c).clone());
    let mut from_a = upstream(&a);
    from_a.max_hops = 2;
    bb.set_upstream("/", "a", from_a).expect("upstream");
    bb.federate_exchange("/", "chain", UpstreamSelector::Upstream("a".into()))
        .expect("federate");
    cb.set_upstream("/", "b", upstream(&b)).expect("upstream");
    cb.set_upstream_set("/", "mine", vec!["b".into(), "not-defined-yet".into()])
        .expect("set");
    cb.federate_exchange("/", "chain", UpstreamSelector::Set("mine".into()))
        .expect("federate");
    wait_bound(&cb, &bb, "chain", &["k"]).await;
    // b's exchange is bound to c's link queue and to qb: both keys are "k".
    wait_bound(&bb, broker(&a), "chain", &["k"]).await;

    publish_plain(&chans[0], "chain", "k").await;
    assert_eq!(&get(&chans[1], "qb").await.delivery.data[..], b"k");
    common::eventually("dropped at c", DEADLINE, || {
        link(&cb, "chain").is_some_and(|l| l.dropped == 1 && l.forwarded == 0)
    })
    .await;
    // Published on b itself: one hop, so it reaches c.
    publish_plain(&chans[1], "chain", "k").await;
    let m = get(&chans[2], "qc").await;
    assert_eq!(text(&hops(&m)[0], "cluster-name").as_deref(), Some("b"));
    drop(conns);
    for br in [a, b, c] {
        br.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_reconnects_when_the_upstream_restarts_on_its_port() {
    let up_dir = tempfile::tempdir().expect("tempdir");
    let up = common::start_in(up_dir.path(), AmqpConfig::default()).await;
    let addr = up.addr;
    let down = common::start().await;
    let db = broker(&down).clone();
    {
        let conn = up.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        declare_exchange(&ch, "events", ExchangeKind::Direct).await;
    }
    let dconn = down.connect().await;
    let dch = dconn.create_channel().await.expect("channel");
    declare_exchange(&dch, "events", ExchangeKind::Direct).await;
    declare_bound_queue(&dch, "sink", "events", "e").await;
    db.set_upstream("/", "u", upstream(&up)).expect("upstream");
    db.federate_exchange("/", "events", UpstreamSelector::Upstream("u".into()))
        .expect("federate");
    wait_bound(&db, broker(&up), "events", &["e"]).await;
    {
        let conn = up.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        publish(&ch, "events", "e", b"before").await;
    }
    assert_eq!(&get(&dch, "sink").await.delivery.data[..], b"before");

    up.stop().await;
    common::eventually("link in error", DEADLINE, || {
        link(&db, "events").is_some_and(|l| l.status == LinkState::Error && l.error.is_some())
    })
    .await;

    let up = common::start_at(up_dir.path(), AmqpConfig::default(), addr).await;
    common::eventually("link reconnected", DEADLINE, || {
        link(&db, "events").is_some_and(|l| l.status == LinkState::Running && l.connections >= 2)
    })
    .await;
    assert_eq!(link(&db, "events").and_then(|l| l.error), None);
    {
        let conn = up.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        publish(&ch, "events", "e", b"after").await;
    }
    // "before" may come again: if the upstream stopped before its acknowledgement arrived, the stored copy
    // returns (at-least-once), and then its x-received-from says it was redelivered.
    loop {
        let m = get(&dch, "sink").await;
        if m.delivery.data == b"after" {
            break;
        }
        assert_eq!(&m.delivery.data[..], b"before");
        assert_eq!(
            hops(&m)[0].inner().get("redelivered"),
            Some(&AMQPValue::Boolean(true))
        );
    }
    drop(dconn);
    down.stop().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_persist_over_a_reopen_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on port 1: the link stays in error, retrying.
    let mut u = Upstream::new("amqp://guest:secret@127.0.0.1:1/%2f");
    u.exchange = Some("remote".into());
    u.max_hops = 3;
    u.reconnect_delay = Duration::from_millis(100);
    u.prefetch_count = 50;
    u.ack_mode = AckMode::OnPublish;
    u.expires = Some(3_600_000);
    u.message_ttl = Some(60_000);
    u.trust_user_id = true;
    {
        let b = common::start_in(dir.path(), AmqpConfig::default()).await;
        let br = broker(&b).clone();
        let conn = b.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        declare_exchange(&ch, "local", ExchangeKind::Topic).await;
        let default = br.cluster_name();
        assert!(
            default.starts_with("strata-") && default.contains('@'),
            "{default}"
        );
        br.set_cluster_name("node-1").expect("name");
        br.set_upstream("/", "far", u.clone()).expect("upstream");
        br.set_upstream_set("/", "farset", vec!["far".into()])
            .expect("set");
        br.federate_exchange("/", "local", UpstreamSelector::Set("farset".into()))
            .expect("federate");
        common::eventually("link error recorded", DEADLINE, || {
            link(&br, "local").is_some_and(|l| {
                l.status == LinkState::Error
                    && l.error.as_deref().is_some_and(|e| !e.contains("secret"))
            })
        })
        .await;
        let l = link(&br, "local").expect("link");
        assert_eq!(l.uri, "amqp://127.0.0.1:1/%2f");
        assert_eq!(l.upstream_exchange, "remote");
        assert_eq!(l.queue, "federation: remote -> node-1:/:local");

        // Refusals.
        let bad =
            |r: Result<(), FederationError>| matches!(r, Err(FederationError::InvalidParameter(_)));
        assert!(bad(br.set_upstream("/", "x", Upstream::new("http://nope"))));
        let mut zero = Upstream::new("amqp://h");
        zero.max_hops = 0;
        assert!(bad(br.set_upstream("/", "x", zero)));
        assert!(bad(br.set_upstream("/", "", Upstream::new("amqp://h"))));
        assert!(bad(br.set_upstream_set("/", "all", vec![])));
        assert!(bad(br.set_upstream("/", "a\0b", Upstream::new("amqp://h"))));
        assert!(bad(br.set_upstream_set("/", "s", vec!["x\u{1}y".into()])));
        assert!(matches!(
            br.federate_exchange("/", "local", UpstreamSelector::Upstream("a\0".into())),
            Err(FederationError::InvalidParameter(_))
        ));
        assert!(matches!(
            br.set_upstream("nope", "x", Upstream::new("amqp://h")),
            Err(FederationError::NoVhost(_))
        ));
        assert!(matches!(
            br.federate_exchange("/", "missing", UpstreamSelector::All),
            Err(FederationError::NoExchange { .. })
        ));
        assert!(matches!(
            br.federate_exchange("/", "", UpstreamSelector::All),
            Err(FederationError::NoExchange { .. })
        ));
        drop(conn);
        b.stop().await;
    }
    let b = common::start_in(dir.path(), AmqpConfig::default()).await;
    let br = broker(&b).clone();
    assert_eq!(br.cluster_name(), "node-1");
    assert_eq!(br.upstreams("/"), vec![("far".to_owned(), u)]);
    assert_eq!(
        br.upstream_sets("/"),
        vec![("farset".to_owned(), vec!["far".to_owned()])]
    );
    assert_eq!(
        br.federated_exchanges(),
        vec![(
            "/".to_owned(),
            "local".to_owned(),
            UpstreamSelector::Set("farset".into())
        )]
    );
    // The link comes back with the broker.
    common::eventually("link restarted", DEADLINE, || {
        link(&br, "local").is_some_and(|l| l.upstream == "far")
    })
    .await;
    assert!(br.clear_upstream_set("/", "farset").expect("clear"));
    assert!(link(&br, "local").is_none());
    b.stop().await;
}

/// Interoperability with RabbitMQ as the upstream: run with a RabbitMQ listening on loopback, e.g.
/// `STRATA_TEST_RABBITMQ_URI=amqp://guest:guest@127.0.0.1:5673/%2f cargo test -p strata-amqp --test federation
/// -- --ignored rabbitmq`. Skipped (passes) when the variable is unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a RabbitMQ on loopback (STRATA_TEST_RABBITMQ_URI)"]
async fn rabbitmq_upstream() {
    let Ok(uri) = std::env::var("STRATA_TEST_RABBITMQ_URI") else {
        return;
    };
    let rconn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let rch = rconn.create_channel().await.expect("channel");
    rch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    declare_exchange(&rch, "strata.fed", ExchangeKind::Topic).await;
    let down = common::start().await;
    let db = broker(&down).clone();
    db.set_cluster_name("strata-down").expect("name");
    let dconn = down.connect().await;
    let dch = dconn.create_channel().await.expect("channel");
    declare_exchange(&dch, "strata.fed", ExchangeKind::Topic).await;
    declare_bound_queue(&dch, "from-rabbit", "strata.fed", "a.*").await;
    let mut u = Upstream::new(uri.clone());
    u.reconnect_delay = Duration::from_millis(100);
    u.expires = Some(60_000);
    db.set_upstream("/", "rabbit", u).expect("upstream");
    db.federate_exchange("/", "strata.fed", UpstreamSelector::All)
        .expect("federate");
    common::eventually("link running", DEADLINE, || {
        link(&db, "strata.fed").is_some_and(|l| l.status == LinkState::Running)
    })
    .await;
    publish(&rch, "strata.fed", "a.b", b"from rabbitmq").await;
    let m = get(&dch, "from-rabbit").await;
    assert_eq!(&m.delivery.data[..], b"from rabbitmq");
    let h = hops(&m);
    eprintln!("x-received-from from RabbitMQ: {h:?}");
    assert_eq!(h.len(), 1);
    assert!(text(&h[0], "cluster-name").is_some_and(|n| !n.is_empty()));
    // A new downstream binding reaches RabbitMQ too.
    declare_bound_queue(&dch, "from-rabbit-2", "strata.fed", "z.#").await;
    let end = Instant::now() + DEADLINE;
    loop {
        publish(&rch, "strata.fed", "z.1", b"z").await;
        if let Some(m) = dch
            .basic_get("from-rabbit-2".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            assert_eq!(&m.delivery.data[..], b"z");
            break;
        }
        assert!(Instant::now() < end, "binding never reached RabbitMQ");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.unfederate_exchange("/", "strata.fed")
        .expect("unfederate");
    let q = link_queue_name(&db);
    let _ = rch
        .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = rch
        .exchange_delete("strata.fed".into(), ExchangeDeleteOptions::default())
        .await;
    drop((rconn, dconn));
    down.stop().await;
}

fn link_queue_name(b: &Arc<Broker>) -> String {
    format!("federation: strata.fed -> {}", b.cluster_name())
}

/// Interoperability with RabbitMQ as the downstream (its federation plugin enabled): RabbitMQ's link declares
/// an `x-federation-upstream` exchange on strata. Needs `STRATA_TEST_RABBITMQ_URI` and
/// `STRATA_TEST_RABBITMQCTL` (a `rabbitmqctl` for that node); skipped (passes) without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a RabbitMQ with rabbitmq_federation on loopback (STRATA_TEST_RABBITMQ_URI, STRATA_TEST_RABBITMQCTL)"]
async fn rabbitmq_downstream() {
    let (Ok(uri), Ok(ctl)) = (
        std::env::var("STRATA_TEST_RABBITMQ_URI"),
        std::env::var("STRATA_TEST_RABBITMQCTL"),
    ) else {
        return;
    };
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&ctl)
            .args(args)
            .output()
            .expect("run rabbitmqctl");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let up = common::start().await;
    let ub = broker(&up).clone();
    ub.set_cluster_name("strata-up").expect("name");
    let uconn = up.connect().await;
    let uch = uconn.create_channel().await.expect("channel");
    uch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    declare_exchange(&uch, "strata.rev", ExchangeKind::Direct).await;
    let rconn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let rch = rconn.create_channel().await.expect("channel");
    declare_exchange(&rch, "strata.rev", ExchangeKind::Direct).await;
    declare_bound_queue(&rch, "strata-rev-sink", "strata.rev", "k").await;
    let definition = format!(r#"{{"uri":"{}","reconnect-delay":1}}"#, up.uri());
    run(&[
        "set_parameter",
        "federation-upstream",
        "strata-up",
        &definition,
    ]);
    run(&[
        "set_policy",
        "strata-rev",
        "^strata\\.rev$",
        r#"{"federation-upstream":"strata-up"}"#,
        "--apply-to",
        "exchanges",
    ]);
    // RabbitMQ's link declares its helper exchange on strata and binds it with the downstream's key.
    common::eventually("RabbitMQ's helper exchange on strata", DEADLINE, || {
        let v = ub.vhost("/").expect("vhost");
        v.exchange("strata.rev").is_ok_and(|x| {
            x.bindings().iter().any(|b| {
                b.routing_key == "k"
                    && v.exchange(b.destination.name()).is_ok_and(|h| {
                        h.kind == strata_amqp::exchange::ExchangeKind::FederationUpstream
                    })
            })
        })
    })
    .await;
    let end = Instant::now() + DEADLINE;
    let m = loop {
        publish(&uch, "strata.rev", "k", b"to rabbitmq").await;
        if let Some(m) = rch
            .basic_get("strata-rev-sink".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            break m;
        }
        assert!(Instant::now() < end, "nothing reached RabbitMQ");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(&m.delivery.data[..], b"to rabbitmq");
    let h = hops(&m);
    eprintln!("x-received-from written by RabbitMQ: {h:?}");
    assert_eq!(text(&h[0], "cluster-name").as_deref(), Some("strata-up"));

    // Both ways at once: strata also federates the exchange from RabbitMQ. A message published on strata
    // reaches RabbitMQ and comes back to strata's link, which drops it (strata is in its x-received-from).
    declare_bound_queue(&uch, "strata-rev-local", "strata.rev", "k").await;
    let mut from_rabbit = Upstream::new(uri.clone());
    from_rabbit.reconnect_delay = Duration::from_millis(100);
    ub.set_upstream("/", "rabbit", from_rabbit)
        .expect("upstream");
    ub.federate_exchange(
        "/",
        "strata.rev",
        UpstreamSelector::Upstream("rabbit".into()),
    )
    .expect("federate");
    common::eventually("strata's link running", DEADLINE, || {
        link(&ub, "strata.rev").is_some_and(|l| l.status == LinkState::Running)
    })
    .await;
    // Drain what the earlier publishes left in strata's own queue.
    while uch
        .basic_get("strata-rev-local".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .is_some()
    {}
    let end = Instant::now() + DEADLINE;
    loop {
        publish(&uch, "strata.rev", "k", b"round trip").await;
        if link(&ub, "strata.rev").is_some_and(|l| l.dropped > 0) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the copy never came back to be dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(link(&ub, "strata.rev").map(|l| l.forwarded), Some(0));
    ub.unfederate_exchange("/", "strata.rev")
        .expect("unfederate");
    run(&["clear_policy", "strata-rev"]);
    run(&["clear_parameter", "federation-upstream", "strata-up"]);
    let _ = rch
        .queue_delete("strata-rev-sink".into(), QueueDeleteOptions::default())
        .await;
    let _ = rch
        .exchange_delete("strata.rev".into(), ExchangeDeleteOptions::default())
        .await;
    drop((rconn, uconn));
    up.stop().await;
}
