//! Pub/sub: delivery, patterns, RESP2 subscribed mode, RESP3 push frames, slow subscribers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use common::Server;
use strata_kv::KvConfig;
use strata_resp::Frame;
use support::{Raw, bulk, info_field, wait_until};

fn reply(kind: &str, name: &str, count: i64) -> Frame {
    Frame::Array(vec![bulk(kind), bulk(name), Frame::Integer(count)])
}

fn publish(con: &mut redis::Connection, channel: &str, message: &str) -> i64 {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query(con)
        .unwrap()
}

#[test]
fn resp2_subscribe_publish_and_patterns() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let mut sub = Raw::connect(server.addr());
    sub.send(&["SUBSCRIBE", "news", "sport"]);
    assert_eq!(sub.read(), reply("subscribe", "news", 1));
    assert_eq!(sub.read(), reply("subscribe", "sport", 2));
    assert_eq!(publish(&mut con, "news", "hello"), 1);
    assert_eq!(
        sub.read(),
        Frame::Array(vec![bulk("message"), bulk("news"), bulk("hello")])
    );
    assert_eq!(
        sub.call(&["PSUBSCRIBE", "n?ws*"]),
        reply("psubscribe", "n?ws*", 3)
    );
    // One delivery for the channel, one for the pattern.
    assert_eq!(publish(&mut con, "news", "again"), 2);
    assert_eq!(
        sub.read(),
        Frame::Array(vec![bulk("message"), bulk("news"), bulk("again")])
    );
    assert_eq!(
        sub.read(),
        Frame::Array(vec![
            bulk("pmessage"),
            bulk("n?ws*"),
            bulk("news"),
            bulk("again")
        ])
    );
    assert_eq!(publish(&mut con, "nowsy", "p"), 1);
    assert_eq!(publish(&mut con, "other", "nobody"), 0);
    assert_eq!(
        sub.read(),
        Frame::Array(vec![
            bulk("pmessage"),
            bulk("n?ws*"),
            bulk("nowsy"),
            bulk("p")
        ])
    );

    // Subscribed RESP2 mode: only pub/sub commands, PING answers in pub/sub shape.
    assert_eq!(
        sub.call(&["GET", "k"]),
        Frame::error(
            "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are \
             allowed in this context"
        )
    );
    assert_eq!(
        sub.call(&["PING"]),
        Frame::Array(vec![bulk("pong"), bulk("")])
    );
    assert_eq!(
        sub.call(&["PING", "hi"]),
        Frame::Array(vec![bulk("pong"), bulk("hi")])
    );

    // PUBSUB introspection.
    let mut channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query(&mut con)
        .unwrap();
    channels.sort();
    assert_eq!(channels, vec!["news", "sport"]);
    let numsub: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("news")
        .arg("none")
        .query(&mut con)
        .unwrap();
    assert_eq!(numsub.len(), 4);
    assert_eq!(numsub[1], redis::Value::Int(1));
    assert_eq!(numsub[3], redis::Value::Int(0));
    let numpat: i64 = redis::cmd("PUBSUB").arg("NUMPAT").query(&mut con).unwrap();
    assert_eq!(numpat, 1);
    assert_eq!(info_field(&mut con, "clients", "pubsub_clients"), 1);

    // Unsubscribing from everything leaves subscribed mode.
    sub.send(&["UNSUBSCRIBE"]);
    assert_eq!(sub.read(), reply("unsubscribe", "news", 2));
    assert_eq!(sub.read(), reply("unsubscribe", "sport", 1));
    assert_eq!(
        sub.call(&["PUNSUBSCRIBE", "n?ws*"]),
        reply("punsubscribe", "n?ws*", 0)
    );
    assert_eq!(
        sub.call(&["UNSUBSCRIBE"]),
        Frame::Array(vec![bulk("unsubscribe"), Frame::Null, Frame::Integer(0)])
    );
    assert_eq!(sub.call(&["GET", "k"]), Frame::Null);
    assert_eq!(publish(&mut con, "news", "gone"), 0);
}

#[test]
fn resp3_gets_push_frames_and_may_run_any_command() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let mut sub = Raw::connect(server.addr());
    assert!(matches!(sub.call(&["HELLO", "3"]), Frame::Map(_)));
    assert_eq!(
        sub.call(&["SUBSCRIBE", "ch"]),
        Frame::Push(vec![bulk("subscribe"), bulk("ch"), Frame::Integer(1)])
    );
    assert_eq!(sub.call(&["SET", "k", "v"]), Frame::ok());
    assert_eq!(sub.call(&["PING"]), Frame::simple("PONG"));
    assert_eq!(publish(&mut con, "ch", "m"), 1);
    assert_eq!(
        sub.read(),
        Frame::Push(vec![bulk("message"), bulk("ch"), bulk("m")])
    );
    assert_eq!(sub.call(&["RESET"]), Frame::simple("RESET"));
    assert_eq!(publish(&mut con, "ch", "m"), 0);
}

#[test]
fn shard_channels() {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let mut sub = Raw::connect(server.addr());
    assert_eq!(
        sub.call(&["SSUBSCRIBE", "s1"]),
        reply("ssubscribe", "s1", 1)
    );
    let n: i64 = redis::cmd("SPUBLISH")
        .arg("s1")
        .arg("x")
        .query(&mut con)
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        sub.read(),
        Frame::Array(vec![bulk("smessage"), bulk("s1"), bulk("x")])
    );
    // A plain PUBLISH does not reach shard subscribers.
    assert_eq!(publish(&mut con, "s1", "y"), 0);
    let numsub: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg("s1")
        .query(&mut con)
        .unwrap();
    assert_eq!(numsub[1], redis::Value::Int(1));
}

/// A server whose `client-output-buffer-limit` is `limits`, and a connection to it.
fn with_output_limits(limits: &str) -> (Server, redis::Connection) {
    let server = Server::start(KvConfig::default());
    let mut con = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg(limits)
        .query(&mut con)
        .unwrap();
    (server, con)
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected_past_the_output_limit() {
    let (server, mut con) = with_output_limits("pubsub 256kb 128kb 60");
    let limits: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-output-buffer-limit")
        .query(&mut con)
        .unwrap();
    assert!(limits[1].ends_with("pubsub 262144 131072 60"), "{limits:?}");
    let mut sub = Raw::connect(server.addr());
    assert_eq!(
        sub.call(&["SUBSCRIBE", "firehose"]),
        reply("subscribe", "firehose", 1)
    );
    // The subscriber never reads again: its socket buffers fill, then its queue passes the limit.
    let payload = "x".repeat(64 * 1024);
    let mut published = 0;
    wait_until("the slow subscriber to be disconnected", || {
        published += 1;
        assert!(published < 10_000, "never disconnected");
        publish(&mut con, "firehose", &payload) == 0
    });
    assert_eq!(
        info_field(
            &mut con,
            "stats",
            "client_output_buffer_limit_disconnections"
        ),
        1
    );
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut con)
        .unwrap();
    assert_eq!(list, "");
    drop(sub);
}

/// A subscriber over the soft output limit is disconnected once the limit's time has passed even when
/// nothing more is published (checked periodically, as Redis's cron does).
#[test]
fn the_soft_output_limit_is_enforced_without_traffic() {
    let (server, mut con) = with_output_limits("pubsub 0 100kb 1");
    let mut sub = Raw::connect(server.addr());
    assert_eq!(
        sub.call(&["SUBSCRIBE", "firehose"]),
        reply("subscribe", "firehose", 1)
    );
    let omem = |con: &mut redis::Connection| -> Option<i64> {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query(con)
            .unwrap();
        let field = list.split(' ').find_map(|f| f.strip_prefix("omem="))?;
        Some(field.parse().unwrap())
    };
    let payload = "x".repeat(16 * 1024);
    wait_until("the subscriber's output to pass the soft limit", || {
        publish(&mut con, "firehose", &payload);
        omem(&mut con).unwrap() > 100 * 1024
    });
    // Nothing is published from here on.
    wait_until("the subscriber to be disconnected", || {
        omem(&mut con).is_none()
    });
    assert_eq!(
        info_field(
            &mut con,
            "stats",
            "client_output_buffer_limit_disconnections"
        ),
        1
    );
}
