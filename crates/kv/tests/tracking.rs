//! Client-side caching: CLIENT TRACKING in default and BCAST modes, invalidations on RESP3 push frames and
//! on `__redis__:invalidate` for RESP2 (REDIRECT), OPTIN/OPTOUT with CLIENT CACHING, NOLOOP, FLUSHALL,
//! the tracking table's limit, broken redirects, GETREDIR and TRACKINGINFO.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use common::Server;
use strata_kv::KvConfig;
use strata_resp::Frame;
use support::{Raw, bulk, info_field};

fn ok() -> Frame {
    Frame::Simple(bytes::Bytes::from_static(b"OK"))
}

/// A RESP2 connection subscribed to `__redis__:invalidate`; returns it with its client id.
fn redirect_target(server: &Server) -> (Raw, String) {
    let mut r = Raw::connect(server.addr());
    let Frame::Integer(id) = r.call(&["CLIENT", "ID"]) else {
        panic!("CLIENT ID is an integer")
    };
    r.call(&["SUBSCRIBE", "__redis__:invalidate"]);
    (r, id.to_string())
}

/// The keys of a RESP2 invalidation message.
fn message_keys(frame: Frame) -> Vec<String> {
    let Frame::Array(parts) = frame else {
        panic!("not a message: {frame:?}")
    };
    assert_eq!(parts[0], bulk("message"));
    assert_eq!(parts[1], bulk("__redis__:invalidate"));
    keys_of(&parts[2])
}

fn keys_of(list: &Frame) -> Vec<String> {
    let Frame::Array(keys) = list else {
        panic!("not a key list: {list:?}")
    };
    let mut keys: Vec<String> = keys
        .iter()
        .map(|k| match k {
            Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("not a key: {other:?}"),
        })
        .collect();
    keys.sort();
    keys
}

fn push_invalidate(keys: &[&str]) -> Frame {
    Frame::Push(vec![
        bulk("invalidate"),
        Frame::Array(keys.iter().map(|k| bulk(k)).collect()),
    ])
}

/// A subscribed RESP2 connection's PING reply, proving no further message was queued before it.
fn assert_nothing_more(target: &mut Raw) {
    assert_eq!(
        target.call(&["PING"]),
        Frame::Array(vec![bulk("pong"), bulk("")])
    );
}

#[test]
fn resp2_invalidations_are_redirected_to_a_subscribed_connection() {
    let server = Server::start(KvConfig::default());
    let (mut target, id) = redirect_target(&server);
    let mut r = Raw::connect(server.addr());
    assert_eq!(r.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]), ok());
    r.call(&["SET", "a", "1"]);
    r.call(&["SET", "b", "1"]);
    r.call(&["GET", "a"]);
    // b was not read, so its change is not announced.
    r.call(&["INCR", "b"]);
    r.call(&["INCR", "a"]);
    assert_eq!(message_keys(target.read()), vec!["a"]);
    // Once invalidated, a key is forgotten until read again.
    r.call(&["INCR", "a"]);
    assert_nothing_more(&mut target);
    assert_eq!(
        r.call(&["CLIENT", "GETREDIR"]),
        Frame::Integer(id.parse().unwrap())
    );
    r.call(&["CLIENT", "TRACKING", "off"]);
    assert_eq!(r.call(&["CLIENT", "GETREDIR"]), Frame::Integer(-1));
}

#[test]
fn resp3_invalidations_arrive_as_push_frames_after_the_reply() {
    let server = Server::start(KvConfig::default());
    let mut other = server.client();
    let mut r = Raw::connect(server.addr());
    r.call(&["HELLO", "3"]);
    assert_eq!(r.call(&["CLIENT", "TRACKING", "on"]), ok());
    assert_eq!(r.call(&["CLIENT", "GETREDIR"]), Frame::Integer(0));
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("1")
        .query(&mut other)
        .unwrap();
    assert_eq!(r.call(&["GET", "k"]), bulk("1"));
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("2")
        .query(&mut other)
        .unwrap();
    assert_eq!(r.read(), push_invalidate(&["k"]));
    // Its own write: the reply first, then the invalidation.
    r.call(&["HSET", "h", "f", "1"]);
    r.call(&["HGET", "h", "f"]);
    assert_eq!(r.call(&["HDEL", "h", "f"]), Frame::Integer(1));
    assert_eq!(r.read(), push_invalidate(&["h"]));
    // A transaction's invalidations follow EXEC's reply.
    r.call(&["MSET", "x", "1", "y", "2"]);
    r.call(&["GET", "x"]);
    r.call(&["MULTI"]);
    r.call(&["INCR", "x"]);
    r.call(&["GET", "y"]);
    assert_eq!(
        r.call(&["EXEC"]),
        Frame::Array(vec![Frame::Integer(2), bulk("2")])
    );
    assert_eq!(r.read(), push_invalidate(&["x"]));
    assert_eq!(info_field(&mut other, "clients", "tracking_clients"), 1);
}

#[test]
fn bcast_sends_one_message_per_prefix_with_the_changed_keys() {
    let server = Server::start(KvConfig::default());
    let (mut target, id) = redirect_target(&server);
    let mut r = Raw::connect(server.addr());
    assert_eq!(
        r.call(&[
            "CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", &id, "PREFIX", "a:", "PREFIX", "b:"
        ]),
        ok()
    );
    r.call(&["MULTI"]);
    for k in ["a:1", "a:2", "b:1", "c:1"] {
        r.call(&["INCR", k]);
    }
    r.call(&["EXEC"]);
    let mut got = vec![message_keys(target.read()), message_keys(target.read())];
    got.sort();
    assert_eq!(got, vec![vec!["a:1", "a:2"], vec!["b:1"]]);
    assert_nothing_more(&mut target);
    // More prefixes may be added; overlapping ones are refused.
    assert_eq!(
        r.call(&[
            "CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", &id, "PREFIX", "c:"
        ]),
        ok()
    );
    r.call(&["INCR", "c:1234"]);
    assert_eq!(message_keys(target.read()), vec!["c:1234"]);
    let Frame::Error(e) = r.call(&["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a"]) else {
        panic!("overlap accepted")
    };
    assert!(
        String::from_utf8_lossy(&e)
            .starts_with("ERR Prefix 'a' overlaps with an existing prefix 'a:'"),
        "{e:?}"
    );
    let mut info = server.client();
    assert_eq!(info_field(&mut info, "stats", "tracking_total_prefixes"), 3);
    // A plain MSET under the empty prefix is one message with every key.
    r.call(&["CLIENT", "TRACKING", "off"]);
    assert_eq!(info_field(&mut info, "stats", "tracking_total_prefixes"), 0);
    r.call(&["CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", &id]);
    r.call(&["MSET", "p", "1", "q", "2", "s", "3"]);
    assert_eq!(message_keys(target.read()), vec!["p", "q", "s"]);
}

#[test]
fn noloop_leaves_out_the_clients_own_writes() {
    let server = Server::start(KvConfig::default());
    let (mut target, id) = redirect_target(&server);
    let mut other = server.client();
    let mut r = Raw::connect(server.addr());
    r.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id, "NOLOOP"]);
    r.call(&["MGET", "k1", "loop", "k2"]);
    let _: () = redis::cmd("SET")
        .arg("k1")
        .arg("1")
        .query(&mut other)
        .unwrap();
    r.call(&["SET", "loop", "1"]);
    // A script's writes are its caller's: NOLOOP leaves them out too.
    r.call(&[
        "EVAL",
        "return redis.call('set', KEYS[1], '2')",
        "1",
        "loop",
    ]);
    let _: () = redis::cmd("SET")
        .arg("k2")
        .arg("1")
        .query(&mut other)
        .unwrap();
    assert_eq!(message_keys(target.read()), vec!["k1"]);
    assert_eq!(message_keys(target.read()), vec!["k2"]);
    assert_nothing_more(&mut target);
    // The same in BCAST mode.
    r.call(&["CLIENT", "TRACKING", "off"]);
    r.call(&[
        "CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", &id, "NOLOOP",
    ]);
    let _: () = redis::cmd("SET")
        .arg("o1")
        .arg("1")
        .query(&mut other)
        .unwrap();
    r.call(&["SET", "loop", "2"]);
    let _: () = redis::cmd("SET")
        .arg("o2")
        .arg("1")
        .query(&mut other)
        .unwrap();
    assert_eq!(message_keys(target.read()), vec!["o1"]);
    assert_eq!(message_keys(target.read()), vec!["o2"]);
    assert_nothing_more(&mut target);
}

#[test]
fn optin_and_optout_follow_client_caching() {
    let server = Server::start(KvConfig::default());
    let (mut target, id) = redirect_target(&server);
    let mut other = server.client();
    let mut r = Raw::connect(server.addr());
    let set = |con: &mut redis::Connection, k: &str| {
        let _: () = redis::cmd("SET").arg(k).arg("v").query(con).unwrap();
    };
    let Frame::Error(_) = r.call(&["CLIENT", "CACHING", "yes"]) else {
        panic!("CACHING without tracking accepted")
    };
    r.call(&["CLIENT", "TRACKING", "on", "OPTIN", "REDIRECT", &id]);
    let Frame::Error(_) = r.call(&["CLIENT", "CACHING", "no"]) else {
        panic!("CACHING no accepted in OPTIN mode")
    };
    r.call(&["GET", "untracked"]);
    assert_eq!(r.call(&["CLIENT", "CACHING", "yes"]), ok());
    r.call(&["GET", "tracked"]);
    // Only the command right after CLIENT CACHING yes counted.
    r.call(&["GET", "untracked2"]);
    for k in ["untracked", "untracked2", "tracked"] {
        set(&mut other, k);
    }
    assert_eq!(message_keys(target.read()), vec!["tracked"]);
    assert_nothing_more(&mut target);

    r.call(&["CLIENT", "TRACKING", "off"]);
    r.call(&["CLIENT", "TRACKING", "on", "OPTOUT", "REDIRECT", &id]);
    assert_eq!(r.call(&["CLIENT", "CACHING", "no"]), ok());
    assert_eq!(
        r.call(&["CLIENT", "TRACKINGINFO"]),
        Frame::Array(vec![
            bulk("flags"),
            Frame::Array(vec![bulk("on"), bulk("optout"), bulk("caching-no")]),
            bulk("redirect"),
            Frame::Integer(id.parse().unwrap()),
            bulk("prefixes"),
            Frame::Array(vec![]),
        ])
    );
    r.call(&["GET", "skipped"]);
    r.call(&["GET", "kept"]);
    set(&mut other, "skipped");
    set(&mut other, "kept");
    assert_eq!(message_keys(target.read()), vec!["kept"]);
    assert_nothing_more(&mut target);
}

#[test]
fn flushall_sends_a_null_invalidation_and_empties_the_table() {
    let server = Server::start(KvConfig::default());
    let (mut target, id) = redirect_target(&server);
    let mut other = server.client();
    let mut r = Raw::connect(server.addr());
    r.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]);
    r.call(&["GET", "k1"]);
    r.call(&["GET", "k2"]);
    assert_eq!(info_field(&mut other, "stats", "tracking_total_keys"), 2);
    let _: () = redis::cmd("FLUSHALL").query(&mut other).unwrap();
    assert_eq!(info_field(&mut other, "stats", "tracking_total_keys"), 0);
    assert_eq!(
        target.read(),
        Frame::Array(vec![
            bulk("message"),
            bulk("__redis__:invalidate"),
            Frame::Null
        ])
    );
}

#[test]
fn the_table_keeps_within_tracking_table_max_keys() {
    let server = Server::start(KvConfig::default());
    let (mut target, id) = redirect_target(&server);
    let mut other = server.client();
    let mut r = Raw::connect(server.addr());
    r.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]);
    for i in 0..250 {
        r.call(&["GET", &format!("key{i}")]);
    }
    assert_eq!(info_field(&mut other, "stats", "tracking_total_keys"), 250);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tracking-table-max-keys")
        .arg("1")
        .query(&mut other)
        .unwrap();
    for _ in 0..249 {
        assert_eq!(message_keys(target.read()).len(), 1);
    }
    assert_nothing_more(&mut target);
    assert_eq!(info_field(&mut other, "stats", "tracking_total_keys"), 1);
}

#[test]
fn a_client_whose_redirect_target_left_hears_tracking_redir_broken() {
    let server = Server::start(KvConfig::default());
    let (mut target, id) = redirect_target(&server);
    let mut other = server.client();
    let mut r = Raw::connect(server.addr());
    r.call(&["HELLO", "3"]);
    r.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]);
    r.call(&["GET", "k"]);
    assert_eq!(target.call(&["QUIT"]), ok());
    support::wait_until("the target to disconnect", || {
        info_field(&mut other, "clients", "connected_clients") == 2
    });
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("1")
        .query(&mut other)
        .unwrap();
    assert_eq!(
        r.read(),
        Frame::Push(vec![
            bulk("tracking-redir-broken"),
            Frame::Integer(id.parse().unwrap())
        ])
    );
    let Frame::Map(info) = r.call(&["CLIENT", "TRACKINGINFO"]) else {
        panic!("TRACKINGINFO is a map in RESP3")
    };
    assert_eq!(
        info[0].1,
        Frame::Array(vec![bulk("on"), bulk("broken_redirect")])
    );
}

#[test]
fn tracking_options_are_checked_as_redis_does() {
    let server = Server::start(KvConfig::default());
    let mut r = Raw::connect(server.addr());
    let err = |f: Frame| match f {
        Frame::Error(e) => String::from_utf8(e.to_vec()).unwrap(),
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(
        err(r.call(&["CLIENT", "TRACKING", "on", "PREFIX", "x"])),
        "ERR PREFIX option requires BCAST mode to be enabled"
    );
    assert_eq!(
        err(r.call(&["CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"])),
        "ERR You can't use both OPTIN and OPTOUT"
    );
    assert_eq!(
        err(r.call(&["CLIENT", "TRACKING", "on", "BCAST", "OPTIN"])),
        "ERR OPTIN and OPTOUT are not compatible with BCAST"
    );
    assert_eq!(
        err(r.call(&["CLIENT", "TRACKING", "on", "REDIRECT", "9999"])),
        "ERR The client ID you want redirect to does not exist"
    );
    assert_eq!(
        err(r.call(&["CLIENT", "TRACKING", "maybe"])),
        "ERR syntax error"
    );
    assert!(
        err(r.call(&[
            "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "FOOBAR", "PREFIX", "FOO"
        ]))
        .starts_with("ERR Prefix 'FOOBAR' overlaps with another provided prefix 'FOO'")
    );
    assert_eq!(r.call(&["CLIENT", "TRACKING", "on", "BCAST"]), ok());
    assert!(
        err(r.call(&["CLIENT", "TRACKING", "on"]))
            .starts_with("ERR You can't switch BCAST mode on/off")
    );
    assert_eq!(
        r.call(&["CLIENT", "TRACKINGINFO"]),
        Frame::Array(vec![
            bulk("flags"),
            Frame::Array(vec![bulk("on"), bulk("bcast")]),
            bulk("redirect"),
            Frame::Integer(0),
            bulk("prefixes"),
            Frame::Array(vec![bulk("")]),
        ])
    );
}

#[test]
fn expired_keys_are_invalidated_even_under_noloop() {
    let server = Server::start(KvConfig::default());
    let (mut target, id) = redirect_target(&server);
    let mut r = Raw::connect(server.addr());
    r.call(&[
        "CLIENT", "TRACKING", "on", "BCAST", "REDIRECT", &id, "NOLOOP",
    ]);
    // The client's own SET is left out; the active expiry cycle's deletion is not.
    r.call(&["SET", "mykey", "v", "PX", "1"]);
    r.call(&["SET", "mykeyother", "v"]);
    assert_eq!(message_keys(target.read()), vec!["mykey"]);
    assert_nothing_more(&mut target);
}

#[test]
fn a_script_that_reads_makes_its_caller_track_every_declared_key() {
    let server = Server::start(KvConfig::default());
    let (mut target, id) = redirect_target(&server);
    let mut r = Raw::connect(server.addr());
    let mut other = Raw::connect(server.addr());
    assert_eq!(r.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]), ok());
    // Only a write: nothing is tracked, whatever the declared keys.
    r.call(&["EVAL", "redis.call('set', 'k3', 'bar')", "2", "k1", "k2"]);
    other.call(&["MSET", "k1", "1", "k2", "1", "k3", "1"]);
    assert_nothing_more(&mut target);
    // A read of another key: the declared keys are tracked, as Redis does (the key read is not).
    r.call(&["EVAL", "redis.call('get', 'k3')", "2", "k1", "k2"]);
    other.call(&["MSET", "k3", "2"]);
    other.call(&["MSET", "k2", "2"]);
    assert_eq!(message_keys(target.read()), vec!["k2"]);
    other.call(&["MSET", "k1", "2"]);
    assert_eq!(message_keys(target.read()), vec!["k1"]);
    // EVAL_RO itself is a read-only command, but only the commands it runs count.
    r.call(&["EVAL_RO", "redis.call('ping')", "1", "k1"]);
    other.call(&["SET", "k1", "3"]);
    assert_nothing_more(&mut target);
    r.call(&["EVAL_RO", "redis.call('get', 'zz')", "1", "k1"]);
    other.call(&["SET", "k1", "4"]);
    assert_eq!(message_keys(target.read()), vec!["k1"]);
    // Functions follow the same rule.
    r.call(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=lib\nredis.register_function('rd', function(keys) return redis.call('get', 'zz') end)",
    ]);
    r.call(&["FCALL", "rd", "1", "k2"]);
    other.call(&["SET", "k2", "3"]);
    assert_eq!(message_keys(target.read()), vec!["k2"]);
}
