//! Connection commands through a real Redis client, and malformed input as raw bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use common::Server;
use strata_kv::KvConfig;
use strata_resp::Frame;
use support::Raw;

#[test]
fn ping_echo_select_and_errors() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
    let hi: String = redis::cmd("PING").arg("hi").query(&mut c).unwrap();
    assert_eq!(hi, "hi");
    let echoed: Vec<u8> = redis::cmd("ECHO")
        .arg(&b"bin\0\r\n"[..])
        .query(&mut c)
        .unwrap();
    assert_eq!(echoed, b"bin\0\r\n");
    let _: () = redis::cmd("SELECT").arg(15).query(&mut c).unwrap();
    let err = redis::cmd("SELECT")
        .arg(16)
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string().contains("DB index is out of range"),
        "{err}"
    );
    let err = redis::cmd("ECHO").query::<()>(&mut c).unwrap_err();
    assert!(
        err.to_string()
            .contains("wrong number of arguments for 'echo' command"),
        "{err}"
    );
    let err = redis::cmd("NOSUCH")
        .arg("a")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown command 'NOSUCH'"),
        "{err}"
    );
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut c).unwrap();
    assert!(id > 0);
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("worker-1")
        .query(&mut c)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, "worker-1");
    let err = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("a b")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("cannot contain spaces"), "{err}");
}

#[test]
fn pipelines_answer_in_order() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("ECHO").arg(i);
    }
    let replies: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(replies, (0..1000).collect::<Vec<_>>());
}

#[test]
fn hello_switches_protocol_and_auth_is_enforced() {
    let server = Server::start(KvConfig {
        requirepass: Some("s3cret".into()),
        ..KvConfig::default()
    });
    let out = server.raw(b"PING\r\nAUTH wrong\r\nAUTH s3cret\r\nHELLO 3\r\nPING\r\nQUIT\r\n");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("-NOAUTH Authentication required.\r\n-WRONGPASS"),
        "{text}"
    );
    assert!(
        text.contains("+OK\r\n%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{text}"
    );
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    assert!(text.ends_with("+PONG\r\n+OK\r\n"), "{text}");
    let out = server.raw(b"HELLO 4\r\nHELLO 3 AUTH default s3cret\r\nQUIT\r\n");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("-NOPROTO unsupported protocol version\r\n%7"),
        "{text}"
    );
}

#[test]
fn config_set_requirepass_takes_effect_at_once() {
    let server = Server::start(KvConfig::default());
    // Made before a password exists: stays authenticated, as in Redis.
    let mut early = Raw::connect(server.addr());
    assert_eq!(
        early.call(&["PING"]),
        Frame::Simple(bytes::Bytes::from_static(b"PONG"))
    );
    let out = server.raw(b"CONFIG SET requirepass foobar\r\nCONFIG GET requirepass\r\nQUIT\r\n");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+OK\r\n*2\r\n$11\r\nrequirepass\r\n$6\r\nfoobar\r\n+OK\r\n"
    );
    let out = server.raw(b"GET k\r\nAUTH nope\r\nAUTH foobar\r\nGET k\r\nQUIT\r\n");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "-NOAUTH Authentication required.\r\n\
         -WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n$-1\r\n+OK\r\n"
    );
    assert_eq!(early.call(&["GET", "k"]), Frame::Null);
    // Before AUTH, requests are held to Redis's small limits and refused at the header.
    for (input, error) in [
        (&b"*100\r\n"[..], "multibulk"),
        (b"*1\r\n$100000000\r\n", "bulk"),
    ] {
        assert_eq!(
            String::from_utf8_lossy(&server.raw(input)),
            format!("-ERR Protocol error: unauthenticated {error} length\r\n")
        );
    }
    // Cleared: every connection is let in again.
    assert_eq!(
        early.call(&["CONFIG", "SET", "requirepass", ""]),
        Frame::Simple(bytes::Bytes::from_static(b"OK"))
    );
    let out = server.raw(b"GET k\r\nQUIT\r\n");
    assert_eq!(String::from_utf8_lossy(&out), "$-1\r\n+OK\r\n");
}

#[test]
fn protocol_errors_reply_then_close() {
    let server = Server::start(KvConfig::default());
    let table: &[(&[u8], &str)] = &[
        (
            b"*1\r\n$4\r\nPING\r\n*x\r\n",
            "+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$-5\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n+PING\r\n",
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            b"ECHO \"unterminated\r\n",
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (input, expected) in table {
        let out = server.raw(input);
        assert_eq!(String::from_utf8_lossy(&out), *expected);
    }
}

#[test]
fn a_reply_past_the_normal_output_buffer_limit_closes_the_client() {
    let server = Server::start(KvConfig::default());
    let mut admin = Raw::connect(server.addr());
    // Sets the limits, then returns them as CONFIG GET shows them.
    let mut limits = |value: &str| -> String {
        assert_eq!(
            admin.call(&["CONFIG", "SET", "client-output-buffer-limit", value]),
            Frame::Simple(bytes::Bytes::from_static(b"OK"))
        );
        match admin.call(&["CONFIG", "GET", "client-output-buffer-limit"]) {
            Frame::Array(got) => match &got[1] {
                Frame::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
                other => panic!("not a bulk string: {other:?}"),
            },
            other => panic!("CONFIG GET replies with an array: {other:?}"),
        }
    };
    assert_eq!(
        limits("normal 100000 0 0"),
        "normal 100000 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
    );
    assert_eq!(
        limits("replica 3mb 4mb 70 normal 100000 0 0"),
        "normal 100000 0 0 slave 3145728 4194304 70 pubsub 33554432 8388608 60"
    );
    let item = "x".repeat(1000);
    for _ in 0..150 {
        admin.call(&["RPUSH", "big", &item]);
    }
    admin.call(&["HSET", "h", "a", "b"]);
    admin.call(&["SADD", "s", "a"]);
    admin.call(&["ZADD", "z", "1", "a"]);
    // Small replies go out; the 150 KB one closes the connection without a byte of it, or of the
    // replies still unsent before it (as in Redis, which frees the client before writing them).
    assert_eq!(server.raw(b"GET nothing\r\nQUIT\r\n"), b"$-1\r\n+OK\r\n");
    let out = server.raw(b"GET nothing\r\nLRANGE big 0 -1\r\nPING\r\n");
    assert_eq!(String::from_utf8_lossy(&out), "");
    // Random members with repetition: refused before a reply of a billion elements is built.
    for command in [
        &b"HRANDFIELD h -999999999\r\n"[..],
        b"HRANDFIELD h -999999999 WITHVALUES\r\n",
        b"SRANDMEMBER s -999999999\r\n",
        b"ZRANDMEMBER z -999999999\r\n",
    ] {
        assert!(server.raw(command).is_empty(), "{command:?}");
    }
    assert_eq!(admin.call(&["LLEN", "big"]), Frame::Integer(150));
    // Without the limit, the same reply is sent; a billion random members still close the client
    // (strata's cap on replies whose size does not follow from the data), and nothing else.
    admin.call(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "normal 0 0 0",
    ]);
    assert!(server.raw(b"LRANGE big 0 -1\r\nQUIT\r\n").len() > 150_000);
    assert!(server.raw(b"HRANDFIELD h -999999999\r\n").is_empty());
    assert_eq!(
        server.raw(b"HRANDFIELD h -3\r\nQUIT\r\n"),
        b"*3\r\n$1\r\na\r\n$1\r\na\r\n$1\r\na\r\n+OK\r\n"
    );
}
