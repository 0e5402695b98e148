//! RabbitMQ's management HTTP API on the admin port of a real `strata` node: every endpoint group, its
//! authentication (401, tags), virtual host and permission lifecycles seen from AMQP clients (403, 530, 320),
//! and a definitions export → import round trip into a second node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod support;

use support::{DEADLINE, Node};

/// An HTTP client for `node`'s admin port.
struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(node: &Node) -> Api {
        Api {
            base: format!("http://127.0.0.1:{}", node.port("http")),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<(&str, &str)>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call(Method::GET, path, GUEST, None).await;
        assert_eq!(s, StatusCode::OK, "GET {path}: {v}");
        v
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, GUEST, body).await
    }
}

const GUEST: Option<(&str, &str)> = Some(("guest", "guest"));

async fn connect(node: &Node, user: &str, pass: &str, vhost: &str) -> lapin::Result<Connection> {
    let vhost = vhost.replace('/', "%2f");
    let uri = format!(
        "amqp://{user}:{pass}@127.0.0.1:{}/{vhost}",
        node.port("amqp")
    );
    Connection::connect(&uri, ConnectionProperties::default()).await
}

/// Polls `f` until it is true or the deadline passes.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut f: F) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"), &[]);
    let api = Api::new(&node);

    let (s, v) = api.call(Method::GET, "/api/overview", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"], "not_authorised");
    let (s, v) = api
        .call(Method::GET, "/api/overview", Some(("guest", "nope")), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");

    let overview = api.get("/api/overview").await;
    assert_eq!(overview["product_name"], "strata");
    assert!(overview["object_totals"]["exchanges"].as_u64().unwrap() >= 6);
    let who = api.get("/api/whoami").await;
    assert_eq!(who, json!({"name": "guest", "tags": ["administrator"]}));

    // A user without a management tag cannot use the API.
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/users/plain",
            Some(json!({"password": "pw", "tags": ""})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = api
        .call(Method::GET, "/api/overview", Some(("plain", "pw")), None)
        .await;
    assert_eq!(
        (s, v["reason"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Not management user"))
    );

    // A monitoring user reads everything but changes nothing.
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/users/watcher",
            Some(json!({"password": "pw", "tags": ["monitoring"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let watcher = Some(("watcher", "pw"));
    let (s, v) = api.call(Method::GET, "/api/queues", watcher, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api.call(Method::GET, "/api/users", watcher, None).await;
    assert_eq!(
        (s, v["reason"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Not administrator user"))
    );
    let (s, _) = api
        .call(Method::PUT, "/api/vhosts/x", watcher, Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = api
        .call(Method::PUT, "/api/queues/%2F/q", watcher, Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A management user sees only the virtual hosts it has a grant on and changes what its grant allows.
    api.send(Method::PUT, "/api/vhosts/team", None).await;
    api.send(
        Method::PUT,
        "/api/users/dev",
        Some(json!({"password": "pw", "tags": "management"})),
    )
    .await;
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/permissions/team/dev",
            Some(json!({"configure": "^dev-", "write": ".*", "read": ".*"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let dev = Some(("dev", "pw"));
    let (_, vhosts) = api.call(Method::GET, "/api/vhosts", dev, None).await;
    let names: Vec<&str> = vhosts
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team"]);
    let (s, _) = api
        .call(
            Method::PUT,
            "/api/queues/team/dev-jobs",
            dev,
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = api
        .call(Method::PUT, "/api/queues/team/other", dev, Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        v["reason"],
        "access to queue 'other' in vhost 'team' refused for user 'dev'"
    );
    let (s, _) = api.call(Method::GET, "/api/queues/%2F", dev, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Errors have RabbitMQ's shapes.
    let (s, v) = api.send(Method::GET, "/api/queues/%2F/missing", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"error": "Object Not Found", "reason": "Not Found"})
    );
    let (s, v) = api
        .send(
            Method::PUT,
            "/api/permissions/%2F/dev",
            Some(json!({"configure": "("})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = api
        .send(
            Method::PUT,
            "/api/exchanges/%2F/e",
            Some(json!({"type": "nope"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/users/u",
            Some(json!({"password_hash": "not-a-hash"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_vhosts_over_amqp() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"), &[]);
    let api = Api::new(&node);

    let (s, _) = api
        .send(
            Method::PUT,
            "/api/vhosts/dev",
            Some(json!({"description": "for alice", "tags": "a,b"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/vhosts/dev",
            Some(json!({"description": "again"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let v = api.get("/api/vhosts/dev").await;
    assert_eq!(v["description"], "again");
    api.send(
        Method::PUT,
        "/api/users/alice",
        Some(json!({"password": "pw", "tags": ""})),
    )
    .await;

    // No grant on the vhost: 530 at connection.open; unknown vhost: 530 too.
    let err = connect(&node, "alice", "pw", "dev").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("access to vhost 'dev' refused for user 'alice'"),
        "{err}"
    );
    let err = connect(&node, "guest", "guest", "nope").await.unwrap_err();
    assert!(err.to_string().contains("vhost nope not found"), "{err}");

    api.send(
        Method::PUT,
        "/api/permissions/dev/alice",
        Some(json!({"configure": "^a-", "write": "^(a-.*|amq\\.default)$", "read": "^a-"})),
    )
    .await;
    let perms = api.get("/api/permissions/dev/alice").await;
    assert_eq!(perms["configure"], "^a-");
    let conn = connect(&node, "alice", "pw", "dev").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "a-q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "".into(),
            "a-q".into(),
            BasicPublishOptions::default(),
            b"hi",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let err = ch
        .queue_declare(
            "b-q".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("access to queue 'b-q' in vhost 'dev' refused for user 'alice'"),
        "{err}"
    );
    // Publishing to an exchange without write access closes the channel with 403.
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let outcome = ch
        .basic_publish(
            "amq.fanout".into(),
            "".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await;
    let err = match outcome {
        Ok(confirm) => confirm.await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        err.to_string()
            .contains("access to exchange 'amq.fanout' in vhost 'dev' refused for user 'alice'"),
        "{err}"
    );
    // Consuming needs read access.
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .basic_get("not-mine".into(), BasicGetOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ACCESS_REFUSED"), "{err}");

    // The connection is listed, then deleting the vhost closes it (320) and removes its queues.
    let conns = api.get("/api/connections").await;
    let mine = conns
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["user"] == "alice")
        .expect("alice's connection");
    assert_eq!(mine["vhost"], "dev");
    assert!(mine["name"].as_str().unwrap().contains(" -> 127.0.0.1:"));
    let (s, _) = api.send(Method::DELETE, "/api/vhosts/dev", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    eventually("the vhost's connection to close", async || {
        !conn.status().connected()
    })
    .await;
    let (s, _) = api.send(Method::GET, "/api/queues/dev/a-q", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api
        .send(Method::GET, "/api/permissions/dev/alice", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.send(Method::DELETE, "/api/vhosts/dev", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Vhosts survive a restart; a deleted one stays deleted.
    api.send(
        Method::PUT,
        "/api/vhosts/kept",
        Some(json!({"description": "d"})),
    )
    .await;
    api.send(
        Method::PUT,
        "/api/queues/kept/q",
        Some(json!({"durable": true})),
    )
    .await;
    let dir = node.dir.clone();
    assert!(node.stop(rustix::process::Signal::TERM).success());
    let node = Node::start(&dir, &[]);
    let api = Api::new(&node);
    let names: Vec<String> = api
        .get("/api/vhosts")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["/", "kept"]);
    assert_eq!(api.get("/api/vhosts/kept").await["description"], "d");
    assert_eq!(api.get("/api/queues/kept/q").await["durable"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_exchanges_bindings_connections_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"), &[]);
    let api = Api::new(&node);

    // Queues: declare, inequivalent redeclare, publish, inspect, get, purge, delete.
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/queues/%2F/jobs",
            Some(json!({"durable": true, "arguments": {"x-max-length": 100}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/queues/%2F/jobs",
            Some(json!({"durable": true, "arguments": {"x-max-length": 100}})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = api
        .send(
            Method::PUT,
            "/api/queues/%2F/jobs",
            Some(json!({"durable": false})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("inequivalent arg 'durable'"),
        "{v}"
    );
    for i in 0..3 {
        let (s, v) = api
            .send(
                Method::POST,
                "/api/exchanges/%2F/amq.default/publish",
                Some(json!({
                    "properties": {"delivery_mode": 2, "headers": {"n": i}, "content_type": "text/plain"},
                    "routing_key": "jobs",
                    "payload": format!("hello {i}"),
                    "payload_encoding": "string",
                })),
            )
            .await;
        assert_eq!((s, &v), (StatusCode::OK, &json!({"routed": true})));
    }
    let q = api.get("/api/queues/%2F/jobs").await;
    assert_eq!(q["messages_ready"], 3);
    assert_eq!(q["durable"], true);
    assert_eq!(q["arguments"]["x-max-length"], 100);
    assert_eq!(q["message_stats"]["publish"], 3);
    assert!(q["policy"].is_null());
    let (s, got) = api
        .send(
            Method::POST,
            "/api/queues/%2F/jobs/get",
            Some(json!({"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got.as_array().unwrap().len(), 2);
    assert_eq!(got[0]["payload"], "hello 0");
    assert_eq!(got[0]["payload_encoding"], "string");
    assert_eq!(got[0]["properties"]["headers"]["n"], 0);
    assert_eq!(got[0]["properties"]["delivery_mode"], 2);
    assert_eq!(got[1]["message_count"], 1);
    assert_eq!(api.get("/api/queues/%2F/jobs").await["messages_ready"], 3);
    let (_, got) = api
        .send(
            Method::POST,
            "/api/queues/%2F/jobs/get",
            Some(json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "base64"})),
        )
        .await;
    assert_eq!(got[0]["redelivered"], true);
    assert_eq!(got[0]["payload_encoding"], "base64");
    assert_eq!(api.get("/api/queues/%2F/jobs").await["messages_ready"], 2);
    let (s, v) = api
        .send(Method::DELETE, "/api/queues/%2F/jobs?if-empty=true", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = api
        .send(Method::DELETE, "/api/queues/%2F/jobs/contents", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/api/queues/%2F/jobs").await["messages_ready"], 0);

    // Exchanges and bindings.
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/exchanges/%2F/events",
            Some(json!({"type": "topic", "durable": true})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let e = api.get("/api/exchanges/%2F/events").await;
    assert_eq!(
        (e["type"].as_str(), e["durable"].as_bool()),
        (Some("topic"), Some(true))
    );
    assert_eq!(api.get("/api/exchanges/%2F/amq.default").await["name"], "");
    let all = api.get("/api/exchanges/%2F").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "amq.topic")
    );
    let resp = api
        .http
        .post(format!("{}/api/bindings/%2F/e/events/q/jobs", api.base))
        .basic_auth("guest", Some("guest"))
        .json(&json!({"routing_key": "order.#", "arguments": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/api/bindings/%2F/e/events/q/jobs/order.%23");
    let pair = api.get("/api/bindings/%2F/e/events/q/jobs").await;
    assert_eq!(pair[0]["routing_key"], "order.#");
    assert_eq!(pair[0]["properties_key"], "order.#");
    let all = api.get("/api/bindings/%2F").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|b| b["source"] == "" && b["destination"] == "jobs")
    );
    assert_eq!(
        api.get("/api/queues/%2F/jobs/bindings")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        api.get("/api/exchanges/%2F/events/bindings/source")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (_, v) = api
        .send(
            Method::POST,
            "/api/exchanges/%2F/events/publish",
            Some(json!({"properties": {}, "routing_key": "order.created", "payload": "o", "payload_encoding": "string"})),
        )
        .await;
    assert_eq!(v["routed"], true);
    let (_, v) = api
        .send(
            Method::POST,
            "/api/exchanges/%2F/events/publish",
            Some(json!({"properties": {}, "routing_key": "user.created", "payload": "u", "payload_encoding": "string"})),
        )
        .await;
    assert_eq!(v["routed"], false);
    let (s, _) = api.send(Method::DELETE, &location, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        api.get("/api/bindings/%2F/e/events/q/jobs")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (s, _) = api
        .send(Method::DELETE, "/api/exchanges/%2F/events", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    // Connections, channels, consumers and unacknowledged counts.
    let conn = connect(&node, "guest", "guest", "/").await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(5, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "jobs".into(),
            "watcher".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(DEADLINE, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&delivery.data[..], b"o");
    let q = api.get("/api/queues/%2F/jobs").await;
    assert_eq!(
        (
            q["messages_unacknowledged"].as_u64(),
            q["consumers"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(q["consumer_details"][0]["consumer_tag"], "watcher");
    let channels = api.get("/api/channels").await;
    assert_eq!(channels[0]["consumer_count"], 1);
    assert_eq!(channels[0]["messages_unacknowledged"], 1);
    assert_eq!(channels[0]["prefetch_count"], 5);
    let consumers = api.get("/api/consumers/%2F").await;
    assert_eq!(consumers[0]["queue"]["name"], "jobs");
    assert_eq!(consumers[0]["ack_required"], true);
    let overview = api.get("/api/overview").await;
    assert_eq!(overview["queue_totals"]["messages_unacknowledged"], 1);
    assert_eq!(overview["object_totals"]["connections"], 1);

    // /metrics carries the per-queue depths and counters.
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "strata_amqp_queue_messages_unacknowledged{vhost=\"/\",queue=\"jobs\"} 1",
        "strata_amqp_queue_messages_ready{vhost=\"/\",queue=\"jobs\"} 0",
        "strata_amqp_queue_published_total{vhost=\"/\",queue=\"jobs\"} 4",
        "strata_amqp_vhost_published_total{vhost=\"/\"} 5",
        "strata_amqp_queue_messages_paged{vhost=\"/\",queue=\"jobs\"} 0",
        "strata_amqp_paged_bytes 0",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    // The earlier ack_requeue_false get counts as an acknowledgement too.
    eventually("the ack to count", async || {
        api.get("/api/queues/%2F/jobs").await["message_stats"]["ack"] == 2
    })
    .await;

    let conns = api.get("/api/connections").await;
    let name = conns[0]["name"].as_str().unwrap().to_owned();
    assert_eq!(conns[0]["user"], "guest");
    assert_eq!(conns[0]["channels"], 1);
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert_eq!(
        api.get(&format!("/api/connections/{encoded}")).await["name"],
        name
    );
    assert_eq!(
        api.get(&format!("/api/connections/{encoded}/channels"))
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (s, _) = api
        .send(Method::DELETE, &format!("/api/connections/{encoded}"), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    eventually("the connection to close", async || {
        !conn.status().connected()
    })
    .await;
    eventually("the connection to leave the list", async || {
        api.get("/api/connections")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    })
    .await;

    // Aliveness, health checks, nodes.
    assert_eq!(
        api.get("/api/aliveness-test/%2F").await,
        json!({"status": "ok"})
    );
    assert_eq!(
        api.get("/api/health/checks/alarms").await,
        json!({"status": "ok"})
    );
    assert_eq!(
        api.get("/api/health/checks/virtual-hosts").await,
        json!({"status": "ok"})
    );
    assert_eq!(api.get("/api/federation-links").await, json!([]));
    assert_eq!(api.get("/api/federation-links/%2F").await, json!([]));
    let nodes = api.get("/api/nodes").await;
    assert_eq!(
        (
            nodes[0]["running"].as_bool(),
            nodes[0]["mem_alarm"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(
        api.get("/api/nodes/strata@localhost").await["name"],
        "strata@localhost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("a"), &[]);
    let api = Api::new(&node);
    api.send(
        Method::PUT,
        "/api/vhosts/shop",
        Some(json!({"description": "the shop", "tags": ["prod"]})),
    )
    .await;
    api.send(
        Method::PUT,
        "/api/users/carol",
        Some(json!({"password": "c4rol", "tags": "management"})),
    )
    .await;
    api.send(
        Method::PUT,
        "/api/permissions/shop/carol",
        Some(json!({"configure": "", "write": "orders", "read": ".*"})),
    )
    .await;
    api.send(
        Method::PUT,
        "/api/exchanges/shop/orders",
        Some(json!({"type": "direct", "durable": true})),
    )
    .await;
    api.send(
        Method::PUT,
        "/api/queues/shop/billing",
        Some(json!({"durable": true, "arguments": {"x-message-ttl": 60000, "x-dead-letter-exchange": "orders"}})),
    )
    .await;
    api.send(
        Method::PUT,
        "/api/queues/shop/scratch",
        Some(json!({"durable": false})),
    )
    .await;
    api.send(
        Method::POST,
        "/api/bindings/shop/e/orders/q/billing",
        Some(json!({"routing_key": "paid", "arguments": {"x-tag": "v"}})),
    )
    .await;
    let (s, v) = api
        .send(
            Method::PUT,
            "/api/policies/shop/ttl",
            Some(json!({"pattern": "^bill", "definition": {"message-ttl": 1000}, "apply-to": "queues", "priority": 3})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let exported = api.get("/api/definitions").await;
    assert_eq!(
        exported["queues"].as_array().unwrap().len(),
        1,
        "transient queues are not exported"
    );
    assert_eq!(exported["bindings"][0]["arguments"]["x-tag"], "v");

    let other = Node::start(&tmp.path().join("b"), &[]);
    let api_b = Api::new(&other);
    let (s, v) = api_b
        .send(Method::POST, "/api/definitions", Some(exported.clone()))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let imported = api_b.get("/api/definitions").await;
    assert_eq!(exported["policies"][0]["name"], "ttl");
    for key in [
        "vhosts",
        "permissions",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ] {
        assert_eq!(imported[key], exported[key], "{key}");
    }
    let names = |d: &Value| -> Vec<(String, Value)> {
        d["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (u["name"].as_str().unwrap().to_owned(), u["tags"].clone()))
            .collect()
    };
    assert_eq!(names(&imported), names(&exported));
    // The imported hash verifies carol's password on the second node.
    let conn = connect(&other, "carol", "c4rol", "shop").await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();

    // A RabbitMQ export imports whole: a user with a SHA-256 hash comes over without a password (it cannot
    // log in until given one), with its tags and permissions.
    let (s, v) = api_b
        .send(
            Method::POST,
            "/api/definitions",
            Some(json!({
                "users": [{"name": "r", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["management"]}],
                "permissions": [{"user": "r", "vhost": "shop", "configure": "", "write": "", "read": ".*"}],
            })),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let r = api_b.get("/api/users/r").await;
    assert_eq!(
        (r["password_hash"].as_str(), r["tags"].clone()),
        (Some(""), json!(["management"]))
    );
    assert!(connect(&other, "r", "", "shop").await.is_err());
    assert_eq!(api_b.get("/api/permissions/shop/r").await["read"], ".*");

    // One virtual host's definitions (no vhost fields) import into another virtual host.
    let shop = api.get("/api/definitions/shop").await;
    assert!(shop.get("users").is_none());
    assert!(shop["queues"][0].get("vhost").is_none());
    api_b.send(Method::PUT, "/api/vhosts/shop2", None).await;
    let (s, v) = api_b
        .send(Method::POST, "/api/definitions/shop2", Some(shop))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    assert_eq!(
        api_b.get("/api/queues/shop2/billing").await["durable"],
        true
    );
    assert_eq!(
        api_b.get("/api/bindings/shop2/e/orders/q/billing").await[0]["routing_key"],
        "paid"
    );
}

/// Runs `strata <args>` against `node`'s management API; returns (success, stdout, stderr).
fn strata_cli(node: &Node, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .args(["--api", &format!("http://127.0.0.1:{}", node.port("http"))])
        .env_remove("STRATA_API_URL")
        .env_remove("STRATA_API_USER")
        .env("STRATA_API_PASSWORD", "guest")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_vhost_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"), &[]);
    let ok = |args: &[&str]| {
        let (success, out, err) = strata_cli(&node, args);
        assert!(success, "strata {args:?}: {err}");
        out
    };
    ok(&["vhost", "add", "orders", "--description", "order flow"]);
    assert!(ok(&["vhost", "list"]).contains("orders\torder flow"));
    ok(&["user", "add", "erin", "s3cret", "--tags", "monitoring"]);
    ok(&["user", "set-tags", "erin", "management", "policymaker"]);
    ok(&[
        "user",
        "set-permissions",
        "erin",
        "-p",
        "orders",
        "^erin-",
        ".*",
        ".*",
    ]);
    assert!(ok(&["user", "list"]).contains("erin\t[management,policymaker]"));
    assert!(ok(&["user", "list-permissions"]).contains("orders\terin\t^erin-\t.*\t.*"));
    let conn = connect(&node, "erin", "s3cret", "orders").await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    ok(&["user", "clear-permissions", "erin", "-p", "orders"]);
    assert!(connect(&node, "erin", "s3cret", "orders").await.is_err());
    ok(&["user", "delete", "erin"]);
    let (success, _, err) = strata_cli(&node, &["user", "delete", "erin"]);
    assert!(!success);
    assert!(err.contains("HTTP 404"), "{err}");
    ok(&["vhost", "delete", "orders"]);
    assert!(!ok(&["vhost", "list"]).contains("orders"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_operator_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&tmp.path().join("data"), &[]);
    let api = Api::new(&node);
    api.send(
        Method::PUT,
        "/api/queues/%2F/jobs",
        Some(json!({"durable": true})),
    )
    .await;
    let (s, v) = api
        .send(
            Method::PUT,
            "/api/policies/%2F/cap",
            Some(
                json!({"pattern": "^jobs$", "definition": {"max-length": 2}, "apply-to": "queues"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/policies/%2F/cap",
            Some(
                json!({"pattern": "^jobs$", "definition": {"max-length": 1}, "apply-to": "queues"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let p = api.get("/api/policies/%2F/cap").await;
    assert_eq!(
        (
            p["apply-to"].as_str(),
            p["priority"].as_i64(),
            p["definition"]["max-length"].as_u64()
        ),
        (Some("queues"), Some(0), Some(1))
    );
    assert_eq!(api.get("/api/policies").await.as_array().unwrap().len(), 1);
    for i in 0..3 {
        api.send(
            Method::POST,
            "/api/exchanges/%2F/amq.default/publish",
            Some(json!({"properties": {}, "routing_key": "jobs", "payload": format!("{i}"), "payload_encoding": "string"})),
        )
        .await;
    }
    let q = api.get("/api/queues/%2F/jobs").await;
    assert_eq!(q["policy"], "cap");
    assert_eq!(q["effective_policy_definition"]["max-length"], 1);
    assert_eq!(q["messages_ready"], 1);

    // Validation errors are RabbitMQ's texts; a missing virtual host is 404.
    let (s, v) = api
        .send(
            Method::PUT,
            "/api/policies/%2F/bad",
            Some(json!({"pattern": ".*", "definition": {"max-priority": 10}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("are not recognised policy settings"),
        "{v}"
    );
    let (s, _) = api
        .send(
            Method::PUT,
            "/api/policies/nope/x",
            Some(json!({"pattern": ".*", "definition": {"max-length": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Operator policies: administrators only; a policymaker manages policies of its virtual hosts.
    api.send(
        Method::PUT,
        "/api/users/pm",
        Some(json!({"password": "pw", "tags": "policymaker"})),
    )
    .await;
    api.send(
        Method::PUT,
        "/api/permissions/%2F/pm",
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    )
    .await;
    let pm = Some(("pm", "pw"));
    let body = json!({"pattern": "^jobs$", "definition": {"max-length": 5}, "apply-to": "queues"});
    let (s, _) = api
        .call(
            Method::PUT,
            "/api/operator-policies/%2F/ops",
            pm,
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = api
        .call(
            Method::PUT,
            "/api/policies/%2F/pm-policy",
            pm,
            Some(json!({"pattern": "^x$", "definition": {"expires": 60000}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = api
        .send(Method::PUT, "/api/operator-policies/%2F/ops", Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        api.get("/api/operator-policies/%2F").await[0]["name"],
        "ops"
    );
    assert_eq!(
        api.get("/api/queues/%2F/jobs").await["operator_policy"],
        "ops"
    );

    let (s, _) = api
        .send(Method::DELETE, "/api/policies/%2F/cap", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api
        .send(Method::DELETE, "/api/policies/%2F/cap", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(api.get("/api/queues/%2F/jobs").await["policy"].is_null());
    let (s, _) = api
        .send(Method::DELETE, "/api/operator-policies/%2F/ops", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}
