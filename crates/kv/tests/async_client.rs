//! The `redis` crate's async (tokio) API against the server: multiplexed connections with pipelines and
//! transactions, the async PubSub, and a BLPOP woken by a push on another async connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Server;
use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;
use strata_kv::KvConfig;

/// Generous per-step limit: a test that hangs fails instead.
const STEP: Duration = Duration::from_secs(10);

async fn connect(client: &redis::Client) -> MultiplexedConnection {
    // No response timeout: BLPOP below waits on purpose.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn client(server: &Server) -> redis::Client {
    redis::Client::open(format!("redis://{}", server.addr())).unwrap()
}

#[test]
fn pipelines_and_transactions() {
    let server = Server::start_without_fsync(KvConfig::default());
    let client = client(&server);
    runtime().block_on(async {
        let mut con = connect(&client).await;
        // A pipeline of 1000 writes and reads in one round trip, replies in order.
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.set(format!("k{i}"), i).ignore();
        }
        for i in (0..1000).step_by(100) {
            pipe.get(format!("k{i}"));
        }
        pipe.incr("k1", 10)
            .rpush("list", &["a", "b"])
            .zadd("z", "m", 2.5);
        let (gets, incr, len, added): (Vec<i64>, i64, i64, i64) = {
            let mut all: Vec<redis::Value> = pipe.query_async(&mut con).await.unwrap();
            let added = redis::from_redis_value(all.pop().unwrap()).unwrap();
            let len = redis::from_redis_value(all.pop().unwrap()).unwrap();
            let incr = redis::from_redis_value(all.pop().unwrap()).unwrap();
            let gets = all
                .into_iter()
                .map(|v| redis::from_redis_value(v).unwrap())
                .collect();
            (gets, incr, len, added)
        };
        assert_eq!(gets, (0..1000).step_by(100).collect::<Vec<i64>>());
        assert_eq!((incr, len, added), (11, 2, 1));
        let size: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
        assert_eq!(size, 1002);

        // An atomic pipeline is MULTI/EXEC; an error inside does not stop the others.
        let (a, b): (i64, i64) = redis::pipe()
            .atomic()
            .incr("counter", 1)
            .incr("counter", 1)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!((a, b), (1, 2));
        let err = redis::pipe()
            .atomic()
            .incr("counter", 1)
            .lpush("counter", "x")
            .query_async::<(i64, i64)>(&mut con)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("WRONGTYPE"), "{err}");
        assert_eq!(con.get::<_, i64>("counter").await.unwrap(), 3);

        // Many tasks sharing one multiplexed connection each get their own replies.
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let mut con = con.clone();
                tokio::spawn(async move {
                    for i in 0..50 {
                        let key = format!("t{t}:{i}");
                        let _: () = con.set(&key, t * 1000 + i).await.unwrap();
                        let v: i64 = con.get(&key).await.unwrap();
                        assert_eq!(v, t * 1000 + i);
                    }
                })
            })
            .collect();
        for t in tasks {
            tokio::time::timeout(STEP, t).await.unwrap().unwrap();
        }
    });
}

#[test]
fn async_pubsub_receives_channel_and_pattern_messages() {
    let server = Server::start_without_fsync(KvConfig::default());
    let client = client(&server);
    runtime().block_on(async {
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("news").await.unwrap();
        pubsub.psubscribe("ev.*").await.unwrap();
        let mut publisher = connect(&client).await;
        let n: i64 = publisher.publish("news", "hello").await.unwrap();
        assert_eq!(n, 1);
        let n: i64 = publisher.publish("ev.login", "alice").await.unwrap();
        assert_eq!(n, 1);
        let n: i64 = publisher.publish("other", "nobody").await.unwrap();
        assert_eq!(n, 0);
        let mut received = Vec::new();
        {
            let mut stream = pubsub.on_message();
            for _ in 0..2 {
                let msg = tokio::time::timeout(STEP, stream.next())
                    .await
                    .unwrap()
                    .unwrap();
                let pattern: Option<String> = msg.get_pattern().unwrap();
                received.push((
                    msg.get_channel_name().to_owned(),
                    pattern,
                    msg.get_payload::<String>().unwrap(),
                ));
            }
        }
        assert_eq!(
            received,
            [
                ("news".to_owned(), None, "hello".to_owned()),
                (
                    "ev.login".to_owned(),
                    Some("ev.*".to_owned()),
                    "alice".to_owned()
                ),
            ]
        );
        // After unsubscribing, the publisher sees no receivers.
        pubsub.unsubscribe("news").await.unwrap();
        pubsub.punsubscribe("ev.*").await.unwrap();
        let n: i64 = publisher.publish("news", "again").await.unwrap();
        assert_eq!(n, 0);
        // The subscriber connection can still ping.
        let pong: String = pubsub.ping().await.unwrap();
        assert_eq!(pong, "PONG");
    });
}

#[test]
fn blpop_is_woken_by_a_push_from_another_async_connection() {
    let server = Server::start_without_fsync(KvConfig::default());
    let client = client(&server);
    runtime().block_on(async {
        let mut waiter = connect(&client).await;
        let mut pusher = connect(&client).await;
        let blocked = tokio::spawn(async move {
            let got: Option<(String, String)> = waiter.blpop(&["q1", "q2"], 0.0).await.unwrap();
            got
        });
        // Wait (with a deadline) until the server reports the client blocked, then push.
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .query_async(&mut pusher)
                .await
                .unwrap();
            if info.contains("blocked_clients:1") {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "never blocked");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let len: i64 = pusher.rpush("q2", &["first", "second"]).await.unwrap();
        assert_eq!(len, 2);
        let got = tokio::time::timeout(STEP, blocked).await.unwrap().unwrap();
        assert_eq!(got, Some(("q2".to_owned(), "first".to_owned())));
        let rest: Vec<String> = pusher.lrange("q2", 0, -1).await.unwrap();
        assert_eq!(rest, ["second"]);

        // A timeout answers nil without anyone pushing.
        let got: Option<(String, String)> = pusher.blpop("empty", 0.05).await.unwrap();
        assert_eq!(got, None);
    });
}
