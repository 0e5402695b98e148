//! Raw bytes on the socket: wrong protocol headers, malformed and unexpected frames, and bad logins get the
//! reply codes RabbitMQ sends (connection.close 501/502/503/504/505/530/540, 403).

mod common;

use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, basic, channel, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::BytesMut;
use strata_amqp::codec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Raw {
    s: TcpStream,
    buf: BytesMut,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Raw {
        Raw {
            s: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
    }

    async fn send_method(&mut self, ch: u16, class: AMQPClass) {
        let mut b = BytesMut::new();
        codec::put_method(&mut b, ch, class);
        self.send(&b).await;
    }

    /// The next frame, or None at EOF.
    async fn frame(&mut self) -> Option<codec::RawFrame> {
        loop {
            if let Some(f) =
                codec::next_frame(&mut self.buf, 1 << 20).expect("server frames are valid")
            {
                if f.kind == codec::FRAME_HEARTBEAT {
                    continue;
                }
                return Some(f);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.s.read_buf(&mut self.buf))
                .await
                .expect("server answers in time")
                .expect("read");
            if n == 0 {
                return None;
            }
        }
    }

    async fn method(&mut self) -> Option<AMQPClass> {
        loop {
            let f = self.frame().await?;
            if f.kind == codec::FRAME_METHOD {
                return Some(
                    amq_protocol::protocol::parse_class(&f.payload[..])
                        .expect("method")
                        .1,
                );
            }
        }
    }

    async fn login(&mut self, user: &str, password: &str, vhost: &str) -> Option<AMQPClass> {
        self.login_with(user, password, vhost, 0).await
    }

    async fn login_with(
        &mut self,
        user: &str,
        password: &str,
        vhost: &str,
        heartbeat: u16,
    ) -> Option<AMQPClass> {
        self.send(codec::PROTOCOL_HEADER).await;
        assert!(matches!(
            self.method().await,
            Some(AMQPClass::Connection(connection::AMQPMethod::Start(_)))
        ));
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: FieldTable::default(),
                mechanism: "PLAIN".into(),
                response: LongString::from(format!("\0{user}\0{password}").into_bytes()),
                locale: "en_US".into(),
            })),
        )
        .await;
        match self.method().await? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(_)) => {}
            other => return Some(other),
        }
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: 16,
                frame_max: 131_072,
                heartbeat,
            })),
        )
        .await;
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: vhost.into(),
            })),
        )
        .await;
        self.method().await
    }

    async fn open(addr: std::net::SocketAddr) -> Raw {
        let mut r = Raw::connect(addr).await;
        let ok = r.login("guest", "guest", "/").await;
        assert!(matches!(
            ok,
            Some(AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
        ));
        r
    }

    /// Expects connection.close with `code` next, answers close-ok, and expects EOF.
    async fn expect_close(&mut self, code: u16) -> String {
        match self.method().await {
            Some(AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                assert_eq!(c.reply_code, code, "{}", c.reply_text);
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                )
                .await;
                assert!(self.frame().await.is_none(), "socket closed after close-ok");
                c.reply_text.to_string()
            }
            other => panic!("expected connection.close {code}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_header_gets_ours_then_close() {
    let b = common::start().await;
    let mut r = Raw::connect(b.addr).await;
    r.send(b"AMQP\x01\x01\x00\x0a").await;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), r.s.read_to_end(&mut got))
        .await
        .expect("closed in time")
        .expect("read");
    assert_eq!(&got, codec::PROTOCOL_HEADER);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_logins_and_vhosts() {
    let b = common::start().await;
    let mut r = Raw::connect(b.addr).await;
    match r.login("guest", "wrong", "/").await {
        Some(AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
            assert_eq!(c.reply_code, 403);
            assert!(
                c.reply_text
                    .as_str()
                    .starts_with("ACCESS_REFUSED - Login was refused"),
                "{}",
                c.reply_text
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let mut r = Raw::connect(b.addr).await;
    match r.login("guest", "guest", "nope").await {
        Some(AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
            assert_eq!(c.reply_code, 530, "{}", c.reply_text);
        }
        other => panic!("expected 530, got {other:?}"),
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_the_right_close_codes() {
    let b = common::start().await;
    let open_channel = |_ch: u16| AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));

    // 501: bad frame-end octet.
    let mut r = Raw::open(b.addr).await;
    r.send(&[codec::FRAME_METHOD, 0, 1, 0, 0, 0, 1, 0, 0x00])
        .await;
    r.expect_close(501).await;

    // 501: unknown frame type.
    let mut r = Raw::open(b.addr).await;
    r.send(&[7, 0, 0, 0, 0, 0, 0, codec::FRAME_END]).await;
    r.expect_close(501).await;

    // 501: frame larger than frame_max.
    let mut r = Raw::open(b.addr).await;
    r.send(&[codec::FRAME_BODY, 0, 1, 0x10, 0, 0, 0]).await;
    r.expect_close(501).await;

    // 502: a method payload that does not parse.
    let mut r = Raw::open(b.addr).await;
    r.send(&[
        codec::FRAME_METHOD,
        0,
        1,
        0,
        0,
        0,
        5,
        0,
        50,
        0,
        10,
        0,
        codec::FRAME_END,
    ])
    .await;
    r.expect_close(502).await;

    // 540: an unknown class.
    let mut r = Raw::open(b.addr).await;
    r.send(&[
        codec::FRAME_METHOD,
        0,
        1,
        0,
        0,
        0,
        4,
        0x0F,
        0xFF,
        0,
        1,
        codec::FRAME_END,
    ])
    .await;
    r.expect_close(540).await;

    // 504: a method on a channel that was never opened.
    let mut r = Raw::open(b.addr).await;
    r.send_method(
        3,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    )
    .await;
    r.expect_close(504).await;

    // 504: channel number above channel_max (16).
    let mut r = Raw::open(b.addr).await;
    r.send_method(100, open_channel(100)).await;
    r.expect_close(504).await;

    // 505: a content body without a publish.
    let mut r = Raw::open(b.addr).await;
    r.send_method(1, open_channel(1)).await;
    assert!(matches!(
        r.method().await,
        Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
    ));
    r.send(&[codec::FRAME_BODY, 0, 1, 0, 0, 0, 1, b'x', codec::FRAME_END])
        .await;
    r.expect_close(505).await;

    // 505: a method while a publish awaits its content header.
    let mut r = Raw::open(b.addr).await;
    r.send_method(1, open_channel(1)).await;
    r.method().await;
    r.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            routing_key: "q".into(),
            ..Default::default()
        })),
    )
    .await;
    r.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    )
    .await;
    r.expect_close(505).await;

    // 503: a server-only connection method after the handshake.
    let mut r = Raw::open(b.addr).await;
    r.send_method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max: 1,
            frame_max: 4096,
            heartbeat: 0,
        })),
    )
    .await;
    r.expect_close(503).await;

    // 502: a field table nested deeper than the limit.
    let mut r = Raw::open(b.addr).await;
    r.send_method(1, open_channel(1)).await;
    r.method().await;
    let mut deep = AMQPValue::Boolean(true);
    for _ in 0..200 {
        let mut t = FieldTable::default();
        t.insert("k".into(), deep);
        deep = AMQPValue::FieldTable(t);
    }
    let mut args = FieldTable::default();
    args.insert("x".into(), deep);
    r.send_method(
        1,
        AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
            amq_protocol::protocol::queue::Declare {
                queue: "q".into(),
                arguments: args,
                ..Default::default()
            },
        )),
    )
    .await;
    r.expect_close(502).await;

    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_errors_close_only_the_channel_with_rabbitmq_texts() {
    let b = common::start().await;
    let mut r = Raw::open(b.addr).await;
    let expect_channel_close = |code: u16, text: &'static str| (code, text);
    let cases: Vec<(AMQPClass, (u16, &str))> = vec![
        (
            AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
                amq_protocol::protocol::queue::Declare {
                    queue: "missing".into(),
                    passive: true,
                    ..Default::default()
                },
            )),
            expect_channel_close(404, "NOT_FOUND - no queue 'missing' in vhost '/'"),
        ),
        (
            AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
                amq_protocol::protocol::queue::Declare {
                    queue: "x".into(),
                    durable: true,
                    ..Default::default()
                },
            )),
            expect_channel_close(
                406,
                "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'x' in vhost '/': received 'true' but current is 'false'",
            ),
        ),
        (
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "nope".into(),
                ..Default::default()
            })),
            expect_channel_close(404, "NOT_FOUND - no exchange 'nope' in vhost '/'"),
        ),
        (
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: 42,
                multiple: false,
            })),
            expect_channel_close(406, "PRECONDITION_FAILED - unknown delivery tag 42"),
        ),
        (
            AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
                amq_protocol::protocol::queue::Declare {
                    queue: "amq.bad".into(),
                    ..Default::default()
                },
            )),
            expect_channel_close(
                403,
                "ACCESS_REFUSED - queue name 'amq.bad' contains reserved prefix 'amq.*'",
            ),
        ),
    ];
    // Queue "x" exists transient for the inequivalence case.
    r.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    r.method().await;
    r.send_method(
        1,
        AMQPClass::Queue(amq_protocol::protocol::queue::AMQPMethod::Declare(
            amq_protocol::protocol::queue::Declare {
                queue: "x".into(),
                ..Default::default()
            },
        )),
    )
    .await;
    r.method().await;
    for (i, (method, (code, text))) in cases.into_iter().enumerate() {
        let ch = 2 + i as u16;
        r.send_method(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await;
        assert!(matches!(
            r.method().await,
            Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
        ));
        let is_publish = matches!(method, AMQPClass::Basic(basic::AMQPMethod::Publish(_)));
        r.send_method(ch, method).await;
        if is_publish {
            // Header and empty body complete the publish.
            let header = codec::encode_content_header(
                0,
                &amq_protocol::protocol::basic::AMQPProperties::default(),
            );
            let mut b = BytesMut::new();
            codec::put_content(&mut b, ch, &header, &[], 4096);
            r.send(&b).await;
        }
        match r.method().await {
            Some(AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
                assert_eq!((c.reply_code, c.reply_text.as_str()), (code, text));
            }
            other => panic!("case {i}: expected channel.close, got {other:?}"),
        }
        r.send_method(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
        )
        .await;
    }
    // The connection still works.
    r.send_method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 5,
            global: false,
        })),
    )
    .await;
    assert!(matches!(
        r.method().await,
        Some(AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))
    ));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_sent_and_a_silent_client_is_dropped() {
    let b = common::start().await;
    let mut r = Raw::connect(b.addr).await;
    let ok = r.login_with("guest", "guest", "/", 1).await;
    assert!(matches!(
        ok,
        Some(AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
    ));
    // The broker sends a heartbeat after half a second of silence...
    let started = std::time::Instant::now();
    let mut saw_heartbeat = false;
    loop {
        if let Some(f) = codec::next_frame(&mut r.buf, 1 << 20).expect("valid") {
            if f.kind == codec::FRAME_HEARTBEAT {
                saw_heartbeat = true;
            }
            continue;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), r.s.read_buf(&mut r.buf))
            .await
            .expect("the broker closes a silent connection in time")
            .expect("read");
        if n == 0 {
            break;
        }
    }
    // ...and closes the socket after two intervals without hearing from the client.
    assert!(saw_heartbeat, "no heartbeat from the broker");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed too early"
    );
    b.stop().await;
}

/// The next method must be channel.close with `code` and `text`.
async fn expect_channel_refusal(r: &mut Raw, code: u16, text: &str) {
    match r.method().await {
        Some(AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
            assert_eq!((c.reply_code, c.reply_text.as_str()), (code, text));
        }
        other => panic!("expected channel.close {code}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_and_vhost_deletion_reply_codes() {
    use amq_protocol::protocol::queue;
    let b = common::start().await;
    let broker = b.broker.clone().expect("broker");
    assert!(broker.add_vhost("v", "", &[]).expect("add vhost"));
    broker.users.put_user("u", b"p", &[]).expect("user");
    // No grant on the vhost: 530 at connection.open.
    let mut r = Raw::connect(b.addr).await;
    match r.login("u", "p", "v").await {
        Some(AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
            assert_eq!(c.reply_code, 530);
            assert_eq!(
                c.reply_text.as_str(),
                "NOT_ALLOWED - access to vhost 'v' refused for user 'u'"
            );
        }
        other => panic!("expected 530, got {other:?}"),
    }
    broker
        .users
        .set_permissions("v", "u", "^mine$", "^(mine|amq\\.default)$", "^mine$")
        .expect("grant");
    let mut r = Raw::connect(b.addr).await;
    assert!(matches!(
        r.login("u", "p", "v").await,
        Some(AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)))
    ));
    let open = |n: u16| {
        (
            n,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
    };
    let declare = |name: &str| {
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(),
            durable: true,
            ..Default::default()
        }))
    };
    let (n, m) = open(1);
    r.send_method(n, m).await;
    assert!(matches!(
        r.method().await,
        Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
    ));
    r.send_method(1, declare("mine")).await;
    assert!(matches!(
        r.method().await,
        Some(AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))
    ));
    r.send_method(1, declare("theirs")).await;
    expect_channel_refusal(
        &mut r,
        403,
        "ACCESS_REFUSED - access to queue 'theirs' in vhost 'v' refused for user 'u'",
    )
    .await;
    r.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
    )
    .await;
    // queue.bind needs read on the exchange.
    let (n, m) = open(2);
    r.send_method(n, m).await;
    assert!(matches!(
        r.method().await,
        Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
    ));
    r.send_method(
        2,
        AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
            queue: "mine".into(),
            exchange: "amq.direct".into(),
            routing_key: "k".into(),
            ..Default::default()
        })),
    )
    .await;
    expect_channel_refusal(
        &mut r,
        403,
        "ACCESS_REFUSED - access to exchange 'amq.direct' in vhost 'v' refused for user 'u'",
    )
    .await;
    r.send_method(
        2,
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
    )
    .await;
    // Publishing: allowed to the default exchange until the grant changes (the cached decision is redone).
    let (n, m) = open(3);
    r.send_method(n, m).await;
    assert!(matches!(
        r.method().await,
        Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
    ));
    let publish = AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: "".into(),
        routing_key: "mine".into(),
        ..Default::default()
    }));
    r.send_method(3, publish.clone()).await;
    let mut content = BytesMut::new();
    codec::put_content(
        &mut content,
        3,
        &codec::encode_content_header(1, &amq_protocol::protocol::basic::AMQPProperties::default()),
        b"x",
        131_072,
    );
    r.send(&content).await;
    broker
        .users
        .set_permissions("v", "u", "^mine$", "", "^mine$")
        .expect("revoke write");
    r.send_method(3, publish).await;
    r.send(&content).await;
    expect_channel_refusal(
        &mut r,
        403,
        "ACCESS_REFUSED - access to exchange 'amq.default' in vhost 'v' refused for user 'u'",
    )
    .await;
    let v = broker.vhost("v").expect("vhost");
    assert_eq!(v.find_queue("mine").expect("mine").message_count(), 1);
    // Deleting the vhost closes its connections with 320 and deletes its queues and grants.
    assert!(broker.delete_vhost("v").expect("delete"));
    let text = r.expect_close(320).await;
    assert_eq!(text, "CONNECTION_FORCED - vhost 'v' is deleted");
    assert!(v.find_queue("mine").is_none());
    assert!(broker.users.permission("v", "u").is_none());
    assert!(broker.vhost("v").is_none());
    b.stop().await;
}

/// basic.qos with a non-zero prefetch-size and basic.recover with requeue=false are refused as RabbitMQ
/// refuses them: connection.close 540 NOT_IMPLEMENTED with its texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_size_and_recover_without_requeue_are_not_implemented() {
    let b = common::start().await;
    let open = AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));

    // prefetch-size 0 is fine (what every client sends).
    let mut r = Raw::open(b.addr).await;
    r.send_method(1, open.clone()).await;
    assert!(matches!(
        r.method().await,
        Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
    ));
    let qos = |size: u32| {
        // basic.qos: class 60, method 10, prefetch-size (long), prefetch-count (short), global (bit).
        let mut payload = vec![0, 60, 0, 10];
        payload.extend_from_slice(&size.to_be_bytes());
        payload.extend_from_slice(&10u16.to_be_bytes());
        payload.push(0);
        let mut frame = vec![codec::FRAME_METHOD, 0, 1];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.push(codec::FRAME_END);
        frame
    };
    r.send(&qos(0)).await;
    assert!(matches!(
        r.method().await,
        Some(AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))
    ));
    r.send(&qos(4096)).await;
    let text = r.expect_close(540).await;
    assert_eq!(text, "NOT_IMPLEMENTED - prefetch_size!=0 (4096)");

    for sync in [true, false] {
        let mut r = Raw::open(b.addr).await;
        r.send_method(1, open.clone()).await;
        assert!(matches!(
            r.method().await,
            Some(AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)))
        ));
        // requeue=true works.
        r.send_method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover { requeue: true })),
        )
        .await;
        assert!(matches!(
            r.method().await,
            Some(AMQPClass::Basic(basic::AMQPMethod::RecoverOk(_)))
        ));
        let method = if sync {
            basic::AMQPMethod::Recover(basic::Recover { requeue: false })
        } else {
            basic::AMQPMethod::RecoverAsync(basic::RecoverAsync { requeue: false })
        };
        r.send_method(1, AMQPClass::Basic(method)).await;
        let text = r.expect_close(540).await;
        assert_eq!(text, "NOT_IMPLEMENTED - requeue=false");
    }
    b.stop().await;
}

/// The message size limit is RabbitMQ's default (128 MiB, `max_message_size`) and a message over it closes
/// the channel with 406 and RabbitMQ's text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_the_size_limit_closes_the_channel_with_rabbitmqs_text() {
    assert_eq!(
        strata_amqp::AmqpConfig::default().max_message_bytes,
        128 << 20
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = strata_amqp::AmqpConfig {
        max_message_bytes: 1000,
        ..strata_amqp::AmqpConfig::default()
    };
    let b = common::start_in(dir.path(), config).await;
    let mut r = Raw::open(b.addr).await;
    r.send_method(
        1,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
    .await;
    r.method().await;
    for (size, refused) in [(1000usize, false), (1001, true)] {
        r.send_method(
            1,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                routing_key: "nowhere".into(),
                ..Default::default()
            })),
        )
        .await;
        let header = codec::encode_content_header(
            size as u64,
            &amq_protocol::protocol::BasicProperties::default(),
        );
        let mut frames = BytesMut::new();
        codec::put_content(&mut frames, 1, &header, &vec![1u8; size], 131_072);
        r.send(&frames).await;
        if !refused {
            continue;
        }
        match r.method().await {
            Some(AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
                assert_eq!(c.reply_code, 406);
                assert_eq!(
                    c.reply_text.as_str(),
                    "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000"
                );
            }
            other => panic!("expected channel.close 406, got {other:?}"),
        }
    }
    b.stop().await;
}
