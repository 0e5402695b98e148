//! One client connection: the handshake, the frame loop, channels and their methods.
//!
//! Two tasks per connection. The reader (this module's [`run`]) parses frames and executes methods; replies
//! and deliveries go into the connection's [`Outbound`] buffer, which the writer task flushes with one write
//! whenever it wakes, so a burst of replies or deliveries costs one syscall. Frames are handled in *passes*:
//! everything in the read buffer is processed, then the pass ends — its persistent messages and the
//! deletions of acknowledged ones are submitted to storage as one batch (group commit), its messages are
//! enqueued, and its publisher confirms are sent once that batch is durable under the node's fsync policy
//! (in order with earlier passes). A method whose effect another method could observe (queue.declare,
//! basic.get, ...) first ends the pending pass, so ordering within a channel holds.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use amq_protocol::protocol::{
    AMQPClass, access, basic, channel, confirm, connection, exchange, queue, tx,
};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::{Bytes, BytesMut};
use strata_storage::{CommitFuture, WriteBatch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::codec::{self, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, RawFrame};
use crate::error::{Fault, FaultResult, code};
use crate::exchange::Destination;
use crate::message::{Message, int_arg};
use crate::queue::{
    ChannelShared, ConsumeRefusal, Consumer, Entry, Outbound, Pending, Queue, deliver_direct,
    group_pending, requeue_pending, take_all_pending, take_pending,
};
use crate::registry::{ChannelInfo, ConnectionInfo, ConsumerInfo, QueueCounters};
use crate::vhost::{QueueSpec, VHost};
use strata_auth::Access as Perm;

/// Bytes read from the socket per read call at most (a pass is at most this much input).
const READ_CHUNK_BYTES: usize = 256 << 10;
/// How long the broker waits for connection.close-ok after sending connection.close.
const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(2);
/// The pseudo-queue of direct reply-to.
const REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// Largest output buffer a writer keeps for reuse between flushes.
const SPARE_BUFFER_MAX_BYTES: usize = 4 << 20;
/// Most publisher-confirm passes awaiting their storage commit before the reader stops reading.
const MAX_INFLIGHT_PASSES: usize = 64;

/// Runs a connection to completion.
pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    shutdown: CancellationToken,
) {
    let local = stream
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let (mut rd, wr) = stream.into_split();
    let out = Outbound::new(broker.config.frame_max);
    let heartbeat = Arc::new(AtomicU32::new(0));
    let writer = tokio::spawn(write_loop(wr, out.clone(), heartbeat.clone()));
    let mut conn = Conn {
        id: broker.connection_id(),
        broker,
        peer,
        out: out.clone(),
        vhost: None,
        channel_max: 0,
        frame_max: codec::FRAME_MIN_BYTES,
        heartbeat_secs: 0,
        channels: HashMap::new(),
        pass: Pass::default(),
        inflight: VecDeque::new(),
        closing: false,
        published: false,
        blocked_capable: false,
        next_generation: 0,
        local,
        user: String::new(),
        mechanism: String::new(),
        client_properties: FieldTable::default(),
        info: None,
        kill: CancellationToken::new(),
        access: Access::default(),
        queue_counters: HashMap::new(),
    };
    let mut buf = BytesMut::with_capacity(64 << 10);
    let handshake = tokio::time::timeout(
        conn.broker.config.handshake_timeout,
        conn.handshake(&mut rd, &mut buf, &heartbeat),
    )
    .await;
    let opened = match handshake {
        Ok(Ok(())) => true,
        Ok(Err(HandshakeEnd::Fault(f))) => {
            conn.send_connection_close(&f, 0, 0);
            conn.await_close_ok(&mut rd, &mut buf).await;
            false
        }
        Ok(Err(HandshakeEnd::Quiet)) => false,
        Err(_) => {
            tracing::debug!(peer = %conn.peer, "amqp handshake timed out");
            false
        }
    };
    if opened {
        conn.main_loop(&mut rd, &mut buf, &shutdown).await;
    }
    conn.cleanup();
    out.close();
    let _ = writer.await;
}

/// Flushes the connection's output whenever it has some; sends heartbeats when idle.
async fn write_loop(mut wr: OwnedWriteHalf, out: Arc<Outbound>, heartbeat: Arc<AtomicU32>) {
    let mut chunk = BytesMut::with_capacity(16 << 10);
    loop {
        // Take before waiting: a wake-up that arrived while the previous chunk was being written (or the
        // close) is never lost, since Notify keeps one permit and the buffer is checked first.
        out.take_into(&mut chunk);
        if !chunk.is_empty() {
            if wr.write_all(&chunk).await.is_err() {
                out.close();
                break;
            }
            chunk.clear();
            if chunk.capacity() > SPARE_BUFFER_MAX_BYTES {
                // A huge message grew it: do not keep that much per idle connection.
                chunk = BytesMut::with_capacity(16 << 10);
            }
            out.kick_stalled();
            continue;
        }
        if out.is_closed() {
            break;
        }
        let hb = heartbeat.load(Ordering::Relaxed);
        if hb > 0 {
            // Half the interval: the peer sees traffic at least twice per heartbeat period.
            let idle = Duration::from_millis(u64::from(hb) * 500);
            if tokio::time::timeout(idle, out.wait()).await.is_err() {
                out.write(|b, _| codec::put_heartbeat(b));
            }
        } else {
            out.wait().await;
        }
    }
    let _ = wr.shutdown().await;
}

enum HandshakeEnd {
    /// Close with this error.
    Fault(Fault),
    /// Close the socket without a word (EOF, wrong protocol header).
    Quiet,
}

impl From<Fault> for HandshakeEnd {
    fn from(f: Fault) -> Self {
        HandshakeEnd::Fault(f)
    }
}

/// A basic.publish waiting for its content.
struct Publishing {
    method: basic::Publish,
    header: Option<(Bytes, codec::PropertySummary)>,
    body_size: u64,
    parts: Vec<Bytes>,
    received: u64,
}

/// Work buffered by tx.select until tx.commit.
#[derive(Default)]
struct TxBuffer {
    publishes: Vec<(bool, Arc<Message>)>,
    acks: Vec<TxAck>,
}

enum TxAck {
    Ack(u64, bool),
    Nack(u64, bool, bool),
}

/// A channel as the reader sees it.
struct Channel {
    shared: Arc<ChannelShared>,
    closing: bool,
    publishing: Option<Publishing>,
    confirm_next: Option<u64>,
    tx: Option<TxBuffer>,
    consumers: HashMap<String, (Arc<Consumer>, Option<Arc<Queue>>)>,
    consumer_prefetch: u32,
    reply_token: Option<String>,
    last_queue: String,
    next_tag: u64,
    /// Distinguishes successive channels with the same number.
    generation: u64,
    /// What the management API sees of it.
    info: Arc<ChannelInfo>,
}

/// What a pass produced for storage, queues and confirms.
#[derive(Default)]
struct Pass {
    /// Messages published in the pass.
    published: u64,
    batch: WriteBatch,
    enqueue: Vec<(Arc<Queue>, Entry)>,
    replies: Vec<Reply>,
}

/// A reply that must wait for the pass's storage commit (or for earlier passes).
enum Reply {
    /// basic.ack / basic.nack of publish `seq` on a channel (`generation` tells a reopened channel with the
    /// same number apart: its predecessor's confirms are not sent to it).
    Confirm {
        channel: u16,
        generation: u64,
        seq: u64,
        ack: bool,
    },
    /// A method (tx.commit-ok).
    Method(u16, AMQPClass),
}

struct Inflight {
    commit: Option<CommitFuture>,
    failed: bool,
    replies: Vec<Reply>,
}

struct Conn {
    broker: Arc<Broker>,
    id: u64,
    peer: SocketAddr,
    out: Arc<Outbound>,
    vhost: Option<Arc<VHost>>,
    channel_max: u16,
    frame_max: u32,
    heartbeat_secs: u16,
    channels: HashMap<u16, Channel>,
    pass: Pass,
    inflight: VecDeque<Inflight>,
    /// connection.close sent; waiting for close-ok.
    closing: bool,
    /// The generation the next opened channel gets.
    next_generation: u64,
    /// Whether this connection published (only publishers are blocked by the memory alarm).
    published: bool,
    /// Whether the client understands connection.blocked.
    blocked_capable: bool,
    /// The broker's address of this connection.
    local: SocketAddr,
    /// Who logged in.
    user: String,
    /// The SASL mechanism used.
    mechanism: String,
    /// The client's properties (from start-ok).
    client_properties: FieldTable,
    /// This connection in the broker's registry (once open).
    info: Option<Arc<ConnectionInfo>>,
    /// Cancelled to close the connection with 320 (management API, vhost deletion).
    kill: CancellationToken,
    /// Cached permission decisions.
    access: Access,
    /// Counters of the queues this connection published to or acknowledged from.
    queue_counters: HashMap<u64, Arc<QueueCounters>>,
}

/// Most queues whose counters a connection caches.
const COUNTER_CACHE_MAX: usize = 4096;

/// The user's permission on the connection's virtual host, re-read when the identity store changes, and the
/// publish decisions per exchange (the hot path: one map lookup per publish).
#[derive(Default)]
struct Access {
    generation: u64,
    grant: Option<Arc<strata_auth::Permission>>,
    publish: HashMap<String, bool>,
}

fn ss(s: &str) -> ShortString {
    ShortString::try_new(s).unwrap_or_default()
}

fn server_properties(cluster_name: &str) -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    let s = |v: &str| AMQPValue::LongString(LongString::from(v.as_bytes()));
    props.insert("product".into(), s("strata"));
    props.insert("version".into(), s(env!("CARGO_PKG_VERSION")));
    props.insert("platform".into(), s("Rust"));
    props.insert("cluster_name".into(), s(cluster_name));
    props.insert(
        "information".into(),
        s("strata's AMQP 0-9-1 broker (RabbitMQ-compatible); see docs/amqp.md"),
    );
    props.insert("copyright".into(), s("Apache-2.0"));
    props
}

async fn read_more(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(READ_CHUNK_BYTES.min(buf.len().max(64 << 10)));
    }
    rd.read_buf(buf).await
}

impl Conn {
    fn frame_error(e: &codec::FrameError) -> Fault {
        match e {
            codec::FrameError::UnknownType(t) => {
                Fault::connection(code::FRAME_ERROR, format!("unknown frame type {t}"))
            }
            other => Fault::connection(code::FRAME_ERROR, other.to_string()),
        }
    }

    /// Reads one frame during the handshake.
    async fn read_frame(
        &mut self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        buf: &mut BytesMut,
    ) -> Result<RawFrame, HandshakeEnd> {
        loop {
            match codec::next_frame(buf, self.broker.config.frame_max) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(Self::frame_error(&e).into()),
            }
            match read_more(rd, buf).await {
                Ok(0) | Err(_) => return Err(HandshakeEnd::Quiet),
                Ok(_) => {}
            }
        }
    }

    async fn read_method(
        &mut self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        buf: &mut BytesMut,
        expecting: &str,
    ) -> Result<connection::AMQPMethod, HandshakeEnd> {
        loop {
            let f = self.read_frame(rd, buf).await?;
            match f.kind {
                FRAME_HEARTBEAT => continue,
                FRAME_METHOD => {}
                _ => {
                    return Err(Fault::connection(
                        code::UNEXPECTED_FRAME,
                        format!("expecting '{expecting}', got a non-method frame"),
                    )
                    .into());
                }
            }
            let class = decode(&f.payload)?;
            return match class {
                AMQPClass::Connection(m) if f.channel == 0 => Ok(m),
                other => Err(Fault::connection(
                    code::COMMAND_INVALID,
                    format!(
                        "expecting '{expecting}', got {}.{}",
                        other.get_amqp_class_id(),
                        other.get_amqp_method_id()
                    ),
                )
                .into()),
            };
        }
    }

    async fn handshake(
        &mut self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        buf: &mut BytesMut,
        heartbeat: &AtomicU32,
    ) -> Result<(), HandshakeEnd> {
        while buf.len() < 8 {
            match read_more(rd, buf).await {
                Ok(0) | Err(_) => return Err(HandshakeEnd::Quiet),
                Ok(_) => {}
            }
        }
        if &buf[..8] != codec::PROTOCOL_HEADER {
            // AMQP's rule: answer a header we do not speak with the one we do, then close.
            self.out
                .write(|b, _| b.extend_from_slice(codec::PROTOCOL_HEADER));
            return Err(HandshakeEnd::Quiet);
        }
        let _ = buf.split_to(8);
        self.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
                version_major: 0,
                version_minor: 9,
                server_properties: server_properties(&self.broker.cluster_name()),
                mechanisms: "PLAIN AMQPLAIN".into(),
                locales: "en_US".into(),
            })),
        );
        let start_ok = match self.read_method(rd, buf, "connection.start-ok").await? {
            connection::AMQPMethod::StartOk(s) => s,
            _ => {
                return Err(Fault::connection(
                    code::COMMAND_INVALID,
                    "expecting 'connection.start-ok'",
                )
                .into());
            }
        };
        self.blocked_capable = matches!(
            start_ok.client_properties.inner().get("capabilities"),
            Some(AMQPValue::FieldTable(caps))
                if matches!(caps.inner().get("connection.blocked"), Some(AMQPValue::Boolean(true)))
        );
        let mechanism = start_ok.mechanism.as_str().to_owned();
        self.mechanism.clone_from(&mechanism);
        self.client_properties = start_ok.client_properties.clone();
        let Some((user, password)) = parse_credentials(&mechanism, start_ok.response.as_bytes())?
        else {
            return Err(Fault::connection(
                code::ACCESS_REFUSED,
                format!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the \
                     broker logfile."
                ),
            )
            .into());
        };
        let users = self.broker.users.clone();
        let login = user.clone();
        let verified = tokio::task::spawn_blocking(move || users.verify(&login, &password))
            .await
            .ok()
            .flatten();
        let refused = || {
            Fault::connection(
                code::ACCESS_REFUSED,
                format!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the \
                     broker logfile."
                ),
            )
        };
        match verified {
            None => {
                tracing::warn!(peer = %self.peer, user = %user, "amqp login refused: invalid credentials");
                return Err(refused().into());
            }
            Some(u) if u.name == strata_auth::DEFAULT_USER && !self.peer.ip().is_loopback() => {
                tracing::warn!(peer = %self.peer, "amqp login refused: user 'guest' can only connect via localhost");
                return Err(refused().into());
            }
            Some(_) => {}
        }
        let cfg = self.broker.config.clone();
        self.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Tune(connection::Tune {
                channel_max: cfg.channel_max,
                frame_max: cfg.frame_max,
                heartbeat: cfg.heartbeat_secs,
            })),
        );
        let tune_ok = match self.read_method(rd, buf, "connection.tune-ok").await? {
            connection::AMQPMethod::TuneOk(t) => t,
            _ => {
                return Err(Fault::connection(
                    code::COMMAND_INVALID,
                    "expecting 'connection.tune-ok'",
                )
                .into());
            }
        };
        let frame_max = if tune_ok.frame_max == 0 {
            cfg.frame_max
        } else {
            tune_ok.frame_max
        };
        if frame_max < codec::FRAME_MIN_BYTES {
            return Err(Fault::connection(
                code::NOT_ALLOWED,
                format!(
                    "frame_max={frame_max} < {} min size",
                    codec::FRAME_MIN_BYTES
                ),
            )
            .into());
        }
        if frame_max > cfg.frame_max {
            return Err(Fault::connection(
                code::NOT_ALLOWED,
                format!("frame_max={frame_max} > {} max size", cfg.frame_max),
            )
            .into());
        }
        let channel_max = if tune_ok.channel_max == 0 {
            cfg.channel_max
        } else {
            tune_ok.channel_max
        };
        if channel_max > cfg.channel_max {
            return Err(Fault::connection(
                code::NOT_ALLOWED,
                format!("channel_max={channel_max} > {} max", cfg.channel_max),
            )
            .into());
        }
        self.frame_max = frame_max;
        self.channel_max = channel_max;
        self.heartbeat_secs = tune_ok.heartbeat;
        self.out.set_frame_max(frame_max);
        heartbeat.store(u32::from(tune_ok.heartbeat), Ordering::Relaxed);
        let open = match self.read_method(rd, buf, "connection.open").await? {
            connection::AMQPMethod::Open(o) => o,
            _ => {
                return Err(Fault::connection(
                    code::COMMAND_INVALID,
                    "expecting 'connection.open'",
                )
                .into());
            }
        };
        let Some(vhost) = self.broker.vhost(open.virtual_host.as_str()) else {
            return Err(Fault::connection(
                code::NOT_ALLOWED,
                format!("vhost {} not found", open.virtual_host.as_str()),
            )
            .into());
        };
        // Any grant on the virtual host (even one of empty patterns) lets the user in, as in RabbitMQ.
        if self.broker.users.permission(&vhost.name, &user).is_none() {
            tracing::warn!(peer = %self.peer, user = %user, vhost = %vhost.name, "amqp vhost access refused");
            return Err(Fault::connection(
                code::NOT_ALLOWED,
                format!("access to vhost '{}' refused for user '{user}'", vhost.name),
            )
            .into());
        }
        let info = Arc::new(ConnectionInfo::new(
            self.id,
            self.peer,
            self.local,
            user.clone(),
            vhost.name.clone(),
            self.mechanism.clone(),
            std::mem::take(&mut self.client_properties),
            (self.channel_max, self.frame_max, self.heartbeat_secs),
            self.kill.clone(),
        ));
        self.broker.register_connection(info.clone());
        self.info = Some(info);
        self.user.clone_from(&user);
        self.vhost = Some(vhost);
        self.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
        );
        tracing::debug!(peer = %self.peer, user = %user, "amqp connection open");
        Ok(())
    }

    fn send_connection_close(&mut self, f: &Fault, class_id: u16, method_id: u16) {
        if self.closing {
            return;
        }
        self.closing = true;
        tracing::debug!(peer = %self.peer, code = f.code, text = %f.text, "amqp connection error");
        self.out.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: f.code,
                reply_text: ss(&f.short_text()),
                class_id,
                method_id,
            })),
        );
    }

    /// After sending connection.close: wait (bounded) for close-ok, discarding everything else.
    async fn await_close_ok(
        &mut self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        buf: &mut BytesMut,
    ) {
        let wait = async {
            loop {
                loop {
                    match codec::next_frame(buf, self.broker.config.frame_max) {
                        Ok(Some(f)) => {
                            if f.kind == FRAME_METHOD
                                && f.channel == 0
                                && codec::method_ids(&f.payload) == Some((10, 51))
                            {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                match read_more(rd, buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_OK_TIMEOUT, wait).await;
    }

    async fn main_loop(
        &mut self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        buf: &mut BytesMut,
        shutdown: &CancellationToken,
    ) {
        let read_timeout = (self.heartbeat_secs > 0)
            .then(|| Duration::from_secs(u64::from(self.heartbeat_secs) * 2));
        loop {
            // Frames already buffered first (a pass never exceeds one read's worth).
            match self.process_buffer(buf) {
                Ok(true) => {}
                Ok(false) => return,
                Err((f, class_id, method_id)) => {
                    self.end_pass();
                    self.send_connection_close(&f, class_id, method_id);
                    self.await_close_ok(rd, buf).await;
                    return;
                }
            }
            self.end_pass();
            if self.published && self.broker.memory_alarm() {
                // Memory alarm: a publishing connection is not read until the queues drain.
                if self.blocked_capable {
                    self.reply(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::Blocked(
                            connection::Blocked {
                                reason: "low on memory".into(),
                            },
                        )),
                    );
                }
                // Confirms of what was already published still go out while blocked.
                let cleared = loop {
                    let front_commit = self.inflight.front().is_some_and(|i| i.commit.is_some());
                    tokio::select! {
                        () = shutdown.cancelled() => break false,
                        () = self.broker.alarm_cleared() => break true,
                        () = wait_front(&mut self.inflight), if front_commit => self.release_inflight(),
                    }
                };
                if cleared && self.blocked_capable {
                    self.reply(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::Unblocked(
                            connection::Unblocked {},
                        )),
                    );
                }
            }
            let can_read = self.inflight.len() < MAX_INFLIGHT_PASSES;
            let front_commit = self.inflight.front().is_some_and(|i| i.commit.is_some());
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    let f = Fault::connection(
                        code::CONNECTION_FORCED,
                        "broker forced connection closure with reason 'shutdown'",
                    );
                    self.send_connection_close(&f, 0, 0);
                    self.await_close_ok(rd, buf).await;
                    return;
                }
                () = self.kill.cancelled() => {
                    let reason = self
                        .info
                        .as_ref()
                        .and_then(|i| i.close_reason())
                        .unwrap_or_else(|| "closed by the broker".to_owned());
                    let f = Fault::connection(code::CONNECTION_FORCED, reason);
                    self.end_pass();
                    self.send_connection_close(&f, 0, 0);
                    self.await_close_ok(rd, buf).await;
                    return;
                }
                () = wait_front(&mut self.inflight), if front_commit => {
                    self.release_inflight();
                }
                () = self.broker.alarm_raised(), if self.published => {}
                read = read_with_timeout(rd, buf, read_timeout), if can_read => {
                    match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    /// Handles every whole frame in `buf`. `Ok(false)`: the connection is finished.
    fn process_buffer(&mut self, buf: &mut BytesMut) -> Result<bool, (Fault, u16, u16)> {
        loop {
            let frame = match codec::next_frame(buf, self.frame_max) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(true),
                Err(e) => return Err((Self::frame_error(&e), 0, 0)),
            };
            if self.closing {
                // Only close-ok (or the peer's own close) ends a closing connection.
                if frame.kind == FRAME_METHOD && frame.channel == 0 {
                    match codec::method_ids(&frame.payload) {
                        Some((10, 51)) => return Ok(false),
                        Some((10, 50)) => {
                            self.out.method(
                                0,
                                AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                                    connection::CloseOk {},
                                )),
                            );
                            return Ok(false);
                        }
                        _ => {}
                    }
                }
                continue;
            }
            let ids = if frame.kind == FRAME_METHOD {
                codec::method_ids(&frame.payload).unwrap_or_default()
            } else {
                (0, 0)
            };
            match self.handle_frame(frame) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(f) => return Err((f, ids.0, ids.1)),
            }
        }
    }

    /// One frame. `Ok(false)`: the connection closed cleanly. Soft faults are handled here (channel.close);
    /// hard ones are returned.
    fn handle_frame(&mut self, frame: RawFrame) -> FaultResult<bool> {
        if frame.channel > self.channel_max {
            return Err(Fault::connection(
                code::CHANNEL_ERROR,
                format!(
                    "channel number {} exceeds the negotiated channel_max {}",
                    frame.channel, self.channel_max
                ),
            ));
        }
        match frame.kind {
            FRAME_HEARTBEAT => {
                if frame.channel != 0 {
                    return Err(Fault::connection(
                        code::FRAME_ERROR,
                        "heartbeat frame on a non-zero channel",
                    ));
                }
                Ok(true)
            }
            FRAME_METHOD => {
                // basic.qos's prefetch-size is not decoded by amq-protocol: read it here. RabbitMQ refuses a
                // non-zero one with 540 (it never implemented byte-based prefetch).
                if frame.payload.get(..4) == Some(&[0, 60, 0, 10][..])
                    && self.channels.contains_key(&frame.channel)
                    && let Some(size) = frame
                        .payload
                        .get(4..8)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_be_bytes)
                    && size != 0
                {
                    return Err(Fault::connection(
                        code::NOT_IMPLEMENTED,
                        format!("prefetch_size!=0 ({size})"),
                    ));
                }
                let class = decode(&frame.payload)?;
                if frame.channel == 0 {
                    return self.connection_method(class);
                }
                let (c, m) = (class.get_amqp_class_id(), class.get_amqp_method_id());
                match self.channel_method(frame.channel, class) {
                    Ok(()) => Ok(true),
                    Err(f) if f.hard => Err(f),
                    Err(f) => {
                        self.close_channel_with(frame.channel, &f, c, m);
                        Ok(true)
                    }
                }
            }
            FRAME_HEADER | FRAME_BODY => {
                if frame.channel == 0 {
                    return Err(Fault::connection(
                        code::COMMAND_INVALID,
                        "content frame on channel 0",
                    ));
                }
                match self.content_frame(frame.channel, frame.kind, frame.payload) {
                    Ok(()) => Ok(true),
                    Err(f) if f.hard => Err(f),
                    Err(f) => {
                        self.close_channel_with(frame.channel, &f, 60, 40);
                        Ok(true)
                    }
                }
            }
            other => Err(Fault::connection(
                code::FRAME_ERROR,
                format!("unknown frame type {other}"),
            )),
        }
    }

    fn connection_method(&mut self, class: AMQPClass) -> FaultResult<bool> {
        match class {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                tracing::debug!(peer = %self.peer, code = c.reply_code, "amqp client closed the connection");
                self.end_pass();
                self.cleanup();
                self.out.method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                );
                Ok(false)
            }
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => Ok(false),
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => Err(
                Fault::connection(code::NOT_IMPLEMENTED, "connection.update-secret"),
            ),
            AMQPClass::Connection(_) => Err(Fault::connection(
                code::COMMAND_INVALID,
                "connection method not allowed after the handshake",
            )),
            _ => Err(Fault::connection(
                code::COMMAND_INVALID,
                "only connection methods are allowed on channel 0",
            )),
        }
    }

    fn close_channel_with(&mut self, id: u16, f: &Fault, class_id: u16, method_id: u16) {
        tracing::debug!(peer = %self.peer, channel = id, code = f.code, text = %f.text, "amqp channel error");
        self.end_pass();
        if let Some(ch) = self.channels.get_mut(&id) {
            if ch.closing {
                return;
            }
            ch.closing = true;
            ch.publishing = None;
        }
        self.release_channel(id, false);
        self.out.method(
            id,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: f.code,
                reply_text: ss(&f.short_text()),
                class_id,
                method_id,
            })),
        );
    }

    /// Cancels a channel's consumers and requeues its unacknowledged deliveries; `remove` drops it.
    fn release_channel(&mut self, id: u16, remove: bool) {
        let Some(ch) = self.channels.get_mut(&id) else {
            return;
        };
        ch.shared.closed.store(true, Ordering::Release);
        let consumers: Vec<(Arc<Consumer>, Option<Arc<Queue>>)> =
            ch.consumers.drain().map(|(_, v)| v).collect();
        let token = ch.reply_token.take();
        let shared = ch.shared.clone();
        ch.info.consumers.lock().clear();
        if remove {
            self.remove_channel(id);
        }
        if let Some(t) = token {
            self.broker.unregister_reply(&t);
        }
        for (c, q) in consumers {
            c.cancelled.store(true, Ordering::Release);
            if let Some(q) = q
                && q.remove_consumer(&c)
                && let Some(v) = &self.vhost
            {
                v.remove_queue(&q);
            }
        }
        requeue_pending(take_all_pending(&shared));
    }

    /// Forgets a channel (and its registry entry).
    fn remove_channel(&mut self, id: u16) {
        self.channels.remove(&id);
        if let Some(c) = &self.info {
            c.channels.lock().remove(&id);
        }
    }

    /// Refuses `access` to the queue or exchange (`kind`) `name` unless the user's grant allows it.
    fn check(&mut self, access: Perm, kind: &str, name: &str) -> FaultResult<()> {
        let grant = self.grant();
        if grant.as_ref().is_some_and(|g| g.allows(access, name)) {
            return Ok(());
        }
        Err(self.refusal(kind, name))
    }

    fn refusal(&self, kind: &str, name: &str) -> Fault {
        let vhost = self.vhost.as_ref().map_or("/", |v| v.name.as_str());
        Fault::channel(
            code::ACCESS_REFUSED,
            format!(
                "access to {kind} '{name}' in vhost '{vhost}' refused for user '{}'",
                self.user
            ),
        )
    }

    /// The user's current grant on the virtual host (re-read when the identity store changed).
    fn grant(&mut self) -> Option<Arc<strata_auth::Permission>> {
        let generation = self.broker.users.generation();
        if self.access.generation != generation {
            let vhost = self.vhost.as_ref().map_or("/", |v| v.name.as_str());
            self.access.grant = self.broker.users.permission(vhost, &self.user);
            self.access.publish.clear();
            self.access.generation = generation;
        }
        self.access.grant.clone()
    }

    /// Write access to the exchange a publish names (`""` is RabbitMQ's `amq.default`), cached.
    fn may_publish(&mut self, exchange: &str) -> bool {
        if self.access.generation == self.broker.users.generation()
            && let Some(&ok) = self.access.publish.get(exchange)
        {
            return ok;
        }
        let name = if exchange.is_empty() {
            "amq.default"
        } else {
            exchange
        };
        let ok = self.grant().is_some_and(|g| g.allows(Perm::Write, name));
        if self.access.publish.len() >= COUNTER_CACHE_MAX {
            self.access.publish.clear();
        }
        self.access.publish.insert(exchange.to_owned(), ok);
        ok
    }

    /// The counters of queue `q`, cached per connection.
    fn counters(&mut self, q: &Queue) -> Arc<QueueCounters> {
        if let Some(c) = self.queue_counters.get(&q.id) {
            return c.clone();
        }
        if self.queue_counters.len() >= COUNTER_CACHE_MAX {
            self.queue_counters.clear();
        }
        let c = self.broker.queue_counters(q.id);
        self.queue_counters.insert(q.id, c.clone());
        c
    }

    fn cleanup(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            self.release_channel(id, true);
        }
        if let Some(v) = &self.vhost {
            v.drop_exclusive(self.id);
        }
        if self.info.take().is_some() {
            self.broker.unregister_connection(self.id);
        }
    }

    fn channel(&mut self, id: u16) -> FaultResult<&mut Channel> {
        self.channels.get_mut(&id).ok_or_else(|| {
            Fault::connection(
                code::CHANNEL_ERROR,
                format!("expected 'channel.open' on channel {id}"),
            )
        })
    }

    fn vhost(&self) -> FaultResult<Arc<VHost>> {
        self.vhost
            .clone()
            .ok_or_else(|| Fault::connection(code::INTERNAL_ERROR, "no virtual host"))
    }

    fn reply(&self, channel: u16, class: AMQPClass) {
        self.out.method(channel, class);
    }

    /// Sends a method's `-ok` reply unless the client asked for none (`nowait`).
    fn reply_unless_nowait(&self, channel: u16, nowait: bool, class: AMQPClass) {
        if !nowait {
            self.reply(channel, class);
        }
    }

    fn channel_method(&mut self, id: u16, class: AMQPClass) -> FaultResult<()> {
        if let AMQPClass::Channel(channel::AMQPMethod::Open(_)) = class {
            if self.channels.contains_key(&id) {
                return Err(Fault::connection(
                    code::CHANNEL_ERROR,
                    format!("second 'channel.open' seen on channel {id}"),
                ));
            }
            let shared = ChannelShared::new(id, self.out.clone());
            let info = ChannelInfo::new(id, shared.clone());
            if let Some(c) = &self.info {
                c.channels.lock().insert(id, info.clone());
            }
            self.channels.insert(
                id,
                Channel {
                    info,
                    shared,
                    closing: false,
                    publishing: None,
                    confirm_next: None,
                    tx: None,
                    consumers: HashMap::new(),
                    consumer_prefetch: 0,
                    reply_token: None,
                    last_queue: String::new(),
                    next_tag: 1,
                    generation: self.next_generation,
                },
            );
            self.next_generation += 1;
            self.reply(
                id,
                AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
            );
            return Ok(());
        }
        let ch = self.channel(id)?;
        if ch.closing {
            // A closing channel ignores everything but close and close-ok.
            match class {
                AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                    self.remove_channel(id);
                }
                AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                    self.remove_channel(id);
                    self.reply(
                        id,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    );
                }
                _ => {}
            }
            return Ok(());
        }
        let publish_refused = match &class {
            AMQPClass::Basic(basic::AMQPMethod::Publish(p)) => {
                let exchange = p.exchange.as_str();
                (!self.may_publish(exchange)).then(|| {
                    let name = if exchange.is_empty() {
                        "amq.default"
                    } else {
                        exchange
                    };
                    self.refusal("exchange", name)
                })
            }
            _ => None,
        };
        let ch = self.channel(id)?;
        if ch.publishing.is_some() {
            return Err(Fault::connection(
                code::UNEXPECTED_FRAME,
                format!(
                    "expected content header for class 60, got non content header frame instead \
                     (channel {id})"
                ),
            ));
        }
        match class {
            AMQPClass::Basic(basic::AMQPMethod::Publish(p)) => {
                if let Some(refused) = publish_refused {
                    return Err(refused);
                }
                ch.publishing = Some(Publishing {
                    method: p,
                    header: None,
                    body_size: 0,
                    parts: Vec::new(),
                    received: 0,
                });
                Ok(())
            }
            AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => {
                self.on_ack(id, a.delivery_tag, a.multiple)
            }
            AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => {
                self.on_nack(id, n.delivery_tag, n.multiple, n.requeue)
            }
            AMQPClass::Basic(basic::AMQPMethod::Reject(r)) => {
                self.on_nack(id, r.delivery_tag, false, r.requeue)
            }
            other => {
                // Everything else may observe the effects of earlier publishes and acks.
                self.end_pass();
                self.sync_method(id, other)
            }
        }
    }

    fn sync_method(&mut self, id: u16, class: AMQPClass) -> FaultResult<()> {
        let vhost = self.vhost()?;
        let conn = self.id;
        match class {
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                self.release_channel(id, true);
                self.reply(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                );
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => Ok(()),
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                let ch = self.channel(id)?;
                ch.shared.flow_active.store(f.active, Ordering::Release);
                let queues: Vec<Arc<Queue>> = ch
                    .consumers
                    .values()
                    .filter_map(|(_, q)| q.clone())
                    .collect();
                self.reply(
                    id,
                    AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: f.active,
                    })),
                );
                if f.active {
                    queues.iter().for_each(Queue::dispatch);
                }
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
            AMQPClass::Channel(channel::AMQPMethod::Open(_) | channel::AMQPMethod::OpenOk(_)) => {
                Err(Fault::connection(
                    code::COMMAND_INVALID,
                    "unexpected channel.open-ok",
                ))
            }
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                self.reply(
                    id,
                    AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(d)) => {
                if !d.passive {
                    self.check(Perm::Configure, "exchange", d.exchange.as_str())?;
                    if let Some(ae) = d
                        .arguments
                        .inner()
                        .get("alternate-exchange")
                        .and_then(crate::message::str_arg)
                    {
                        self.check(Perm::Write, "exchange", &ae)?;
                        self.check(Perm::Read, "exchange", d.exchange.as_str())?;
                    }
                }
                vhost.declare_exchange(
                    d.exchange.as_str(),
                    d.kind.as_str(),
                    d.passive,
                    d.durable,
                    d.auto_delete,
                    d.internal,
                    &d.arguments,
                )?;
                self.reply_unless_nowait(
                    id,
                    d.nowait,
                    AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Delete(d)) => {
                self.check(Perm::Configure, "exchange", d.exchange.as_str())?;
                vhost.delete_exchange(d.exchange.as_str(), d.if_unused)?;
                self.reply_unless_nowait(
                    id,
                    d.nowait,
                    AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Bind(b)) => {
                self.check(Perm::Write, "exchange", b.destination.as_str())?;
                self.check(Perm::Read, "exchange", b.source.as_str())?;
                vhost.bind(
                    b.source.as_str(),
                    Destination::Exchange(Arc::from(b.destination.as_str())),
                    b.routing_key.as_str(),
                    &b.arguments,
                    conn,
                )?;
                self.reply_unless_nowait(
                    id,
                    b.nowait,
                    AMQPClass::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {})),
                );
                Ok(())
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Unbind(b)) => {
                self.check(Perm::Write, "exchange", b.destination.as_str())?;
                self.check(Perm::Read, "exchange", b.source.as_str())?;
                vhost.unbind(
                    b.source.as_str(),
                    Destination::Exchange(Arc::from(b.destination.as_str())),
                    b.routing_key.as_str(),
                    &b.arguments,
                    conn,
                )?;
                self.reply_unless_nowait(
                    id,
                    b.nowait,
                    AMQPClass::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {})),
                );
                Ok(())
            }
            AMQPClass::Queue(queue::AMQPMethod::Declare(d)) => {
                if !d.passive {
                    // A server-named queue is checked as `amq.gen-` (its name is not known yet).
                    let name = if d.queue.as_str().is_empty() {
                        "amq.gen-"
                    } else {
                        d.queue.as_str()
                    };
                    self.check(Perm::Configure, "queue", name)?;
                    if let Some(dlx) = d
                        .arguments
                        .inner()
                        .get("x-dead-letter-exchange")
                        .and_then(crate::message::str_arg)
                    {
                        let dlx = if dlx.is_empty() {
                            "amq.default".to_owned()
                        } else {
                            dlx
                        };
                        self.check(Perm::Write, "exchange", &dlx)?;
                        self.check(Perm::Read, "queue", name)?;
                    }
                }
                let declared = vhost.declare_queue(
                    &QueueSpec {
                        name: d.queue.as_str(),
                        passive: d.passive,
                        durable: d.durable,
                        exclusive: d.exclusive,
                        auto_delete: d.auto_delete,
                        arguments: &d.arguments,
                    },
                    conn,
                )?;
                let name = declared.queue.name.to_string();
                self.channel(id)?.last_queue.clone_from(&name);
                self.reply_unless_nowait(
                    id,
                    d.nowait,
                    AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                        queue: ss(&name),
                        message_count: declared.message_count,
                        consumer_count: declared.consumer_count,
                    })),
                );
                Ok(())
            }
            AMQPClass::Queue(queue::AMQPMethod::Bind(b)) => {
                let q = self.queue_name(id, b.queue.as_str())?;
                self.check(Perm::Write, "queue", &q)?;
                self.check(Perm::Read, "exchange", b.exchange.as_str())?;
                vhost.bind(
                    b.exchange.as_str(),
                    Destination::Queue(Arc::from(q.as_str())),
                    b.routing_key.as_str(),
                    &b.arguments,
                    conn,
                )?;
                self.reply_unless_nowait(
                    id,
                    b.nowait,
                    AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
                );
                Ok(())
            }
            AMQPClass::Queue(queue::AMQPMethod::Unbind(b)) => {
                let q = self.queue_name(id, b.queue.as_str())?;
                self.check(Perm::Write, "queue", &q)?;
                self.check(Perm::Read, "exchange", b.exchange.as_str())?;
                vhost.unbind(
                    b.exchange.as_str(),
                    Destination::Queue(Arc::from(q.as_str())),
                    b.routing_key.as_str(),
                    &b.arguments,
                    conn,
                )?;
                self.reply(
                    id,
                    AMQPClass::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {})),
                );
                Ok(())
            }
            AMQPClass::Queue(queue::AMQPMethod::Purge(p)) => {
                let q = self.queue_name(id, p.queue.as_str())?;
                self.check(Perm::Read, "queue", &q)?;
                let n = vhost.purge(&q, conn)?;
                self.reply_unless_nowait(
                    id,
                    p.nowait,
                    AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                        message_count: n,
                    })),
                );
                Ok(())
            }
            AMQPClass::Queue(queue::AMQPMethod::Delete(d)) => {
                let q = self.queue_name(id, d.queue.as_str())?;
                self.check(Perm::Configure, "queue", &q)?;
                let n = vhost.delete_queue(&q, d.if_unused, d.if_empty, conn)?;
                self.reply_unless_nowait(
                    id,
                    d.nowait,
                    AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                        message_count: n,
                    })),
                );
                Ok(())
            }
            AMQPClass::Basic(basic::AMQPMethod::Qos(q)) => {
                // A non-zero prefetch-size was refused in `handle_frame`.
                let ch = self.channel(id)?;
                let queues: Vec<Arc<Queue>> = if q.global {
                    ch.shared
                        .channel_prefetch
                        .store(u32::from(q.prefetch_count), Ordering::Release);
                    ch.consumers
                        .values()
                        .filter_map(|(_, q)| q.clone())
                        .collect()
                } else {
                    ch.consumer_prefetch = u32::from(q.prefetch_count);
                    ch.info
                        .prefetch
                        .store(ch.consumer_prefetch, Ordering::Relaxed);
                    Vec::new()
                };
                self.reply(
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
                );
                queues.iter().for_each(Queue::dispatch);
                Ok(())
            }
            AMQPClass::Basic(basic::AMQPMethod::Consume(c)) => self.on_consume(id, c),
            AMQPClass::Basic(basic::AMQPMethod::Cancel(c)) => {
                let ch = self.channel(id)?;
                let entry = ch.consumers.remove(c.consumer_tag.as_str());
                ch.info
                    .consumers
                    .lock()
                    .retain(|i| i.tag != c.consumer_tag.as_str());
                if let Some(token) = ch
                    .reply_token
                    .take_if(|_| entry.as_ref().is_some_and(|(_, q)| q.is_none()))
                {
                    self.broker.unregister_reply(&token);
                }
                if let Some((consumer, q)) = entry {
                    consumer.cancelled.store(true, Ordering::Release);
                    if let Some(q) = q
                        && q.remove_consumer(&consumer)
                    {
                        vhost.remove_queue(&q);
                    }
                }
                self.reply_unless_nowait(
                    id,
                    c.nowait,
                    AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                        consumer_tag: c.consumer_tag,
                    })),
                );
                Ok(())
            }
            AMQPClass::Basic(basic::AMQPMethod::Get(g)) => {
                let name = self.queue_name(id, g.queue.as_str())?;
                self.check(Perm::Read, "queue", &name)?;
                let q = vhost.queue(&name, conn)?;
                let shared = self.channel(id)?.shared.clone();
                if !q.get(&shared, g.no_ack) {
                    self.reply(
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Basic(
                basic::AMQPMethod::Recover(basic::Recover { requeue: false })
                | basic::AMQPMethod::RecoverAsync(basic::RecoverAsync { requeue: false }),
            ) => {
                // As RabbitMQ: redelivery to the same consumer was never implemented.
                Err(Fault::connection(code::NOT_IMPLEMENTED, "requeue=false"))
            }
            AMQPClass::Basic(
                basic::AMQPMethod::Recover(basic::Recover { .. })
                | basic::AMQPMethod::RecoverAsync(basic::RecoverAsync { .. }),
            ) => {
                let is_sync = matches!(class, AMQPClass::Basic(basic::AMQPMethod::Recover(_)));
                let shared = self.channel(id)?.shared.clone();
                requeue_pending(take_all_pending(&shared));
                if is_sync {
                    self.reply(
                        id,
                        AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                    );
                }
                Ok(())
            }
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
                let ch = self.channel(id)?;
                if ch.tx.is_some() {
                    return Err(Fault::channel(
                        code::PRECONDITION_FAILED,
                        "cannot switch from tx to confirm mode",
                    ));
                }
                ch.confirm_next.get_or_insert(1);
                ch.info.confirm.store(true, Ordering::Relaxed);
                self.reply_unless_nowait(
                    id,
                    s.nowait,
                    AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                );
                Ok(())
            }
            AMQPClass::Tx(tx::AMQPMethod::Select(_)) => {
                let ch = self.channel(id)?;
                if ch.confirm_next.is_some() {
                    return Err(Fault::channel(
                        code::PRECONDITION_FAILED,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                ch.tx.get_or_insert_with(TxBuffer::default);
                ch.info.transactional.store(true, Ordering::Relaxed);
                self.reply(id, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
                Ok(())
            }
            AMQPClass::Tx(tx::AMQPMethod::Commit(_)) => {
                let ch = self.channel(id)?;
                let Some(buffer) = ch.tx.as_mut().map(std::mem::take) else {
                    return Err(Fault::channel(
                        code::PRECONDITION_FAILED,
                        "channel is not transactional",
                    ));
                };
                for (mandatory, msg) in buffer.publishes {
                    self.route_publish(id, mandatory, msg)?;
                }
                for ack in buffer.acks {
                    match ack {
                        TxAck::Ack(tag, multiple) => self.apply_ack(id, tag, multiple)?,
                        TxAck::Nack(tag, multiple, requeue) => {
                            self.apply_nack(id, tag, multiple, requeue)?;
                        }
                    }
                }
                self.pass.replies.push(Reply::Method(
                    id,
                    AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})),
                ));
                self.end_pass();
                Ok(())
            }
            AMQPClass::Tx(tx::AMQPMethod::Rollback(_)) => {
                let ch = self.channel(id)?;
                let Some(buffer) = ch.tx.as_mut() else {
                    return Err(Fault::channel(
                        code::PRECONDITION_FAILED,
                        "channel is not transactional",
                    ));
                };
                *buffer = TxBuffer::default();
                self.reply(
                    id,
                    AMQPClass::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})),
                );
                Ok(())
            }
            other => Err(Fault::connection(
                code::COMMAND_INVALID,
                format!(
                    "method {}.{} is not allowed from a client",
                    other.get_amqp_class_id(),
                    other.get_amqp_method_id()
                ),
            )),
        }
    }

    /// The queue a method names; the empty name means the channel's last declared queue.
    fn queue_name(&mut self, id: u16, name: &str) -> FaultResult<String> {
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
        let last = self.channel(id)?.last_queue.clone();
        if last.is_empty() {
            return Err(Fault::channel(
                code::NOT_FOUND,
                "no previously declared queue",
            ));
        }
        Ok(last)
    }

    fn on_consume(&mut self, id: u16, c: basic::Consume) -> FaultResult<()> {
        let vhost = self.vhost()?;
        let conn = self.id;
        let max_consumers = self.broker.config.max_consumers_per_channel;
        let queue_name = self.queue_name(id, c.queue.as_str())?;
        if queue_name != REPLY_TO {
            self.check(Perm::Read, "queue", &queue_name)?;
        }
        let ch = self.channel(id)?;
        let tag = if c.consumer_tag.as_str().is_empty() {
            let t = format!("amq.ctag-{}-{}", ch.shared.id, ch.next_tag);
            ch.next_tag += 1;
            t
        } else {
            c.consumer_tag.as_str().to_owned()
        };
        if ch.consumers.contains_key(&tag) {
            return Err(Fault::connection(
                code::NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        if ch.consumers.len() >= max_consumers {
            return Err(Fault::channel(
                code::PRECONDITION_FAILED,
                format!("too many consumers on this channel (limit {max_consumers})"),
            ));
        }
        let priority = c
            .arguments
            .inner()
            .get("x-priority")
            .and_then(int_arg)
            .unwrap_or(0);
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            channel: ch.shared.clone(),
            no_ack: c.no_ack,
            exclusive: c.exclusive,
            priority,
            prefetch: ch.consumer_prefetch,
            unacked: AtomicU32::new(0),
            cancelled: AtomicBool::new(false),
        });
        let consume_ok = (!c.nowait).then(|| {
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                consumer_tag: ss(&tag),
            }))
        });
        if queue_name == REPLY_TO {
            if !c.no_ack {
                return Err(Fault::channel(
                    code::PRECONDITION_FAILED,
                    "reply consumer cannot acknowledge",
                ));
            }
            if ch.reply_token.is_some() {
                return Err(Fault::channel(
                    code::PRECONDITION_FAILED,
                    "reply consumer already set",
                ));
            }
            let token = format!("{REPLY_TO}.{}.{}.{}", conn, id, unique_suffix());
            ch.reply_token = Some(token.clone());
            ch.info.consumers.lock().push(ConsumerInfo {
                tag: tag.clone(),
                queue: REPLY_TO.to_owned(),
                consumer: consumer.clone(),
                arguments: c.arguments.clone(),
            });
            ch.consumers.insert(tag, (consumer.clone(), None));
            self.broker.register_reply(token, &consumer);
            if let Some(ok) = consume_ok {
                self.reply(id, ok);
            }
            return Ok(());
        }
        let q = vhost.queue(&queue_name, conn)?;
        let out = self.out.clone();
        let added = q.add_consumer(consumer.clone(), || {
            if let Some(ok) = consume_ok {
                out.method(id, ok);
            }
        });
        match added {
            Ok(()) => {
                let ch = self.channel(id)?;
                ch.info.consumers.lock().push(ConsumerInfo {
                    tag: tag.clone(),
                    queue: queue_name,
                    consumer: consumer.clone(),
                    arguments: c.arguments,
                });
                ch.consumers.insert(tag, (consumer, Some(q)));
                Ok(())
            }
            Err(ConsumeRefusal::ExclusiveInUse) => Err(Fault::channel(
                code::ACCESS_REFUSED,
                format!(
                    "queue '{queue_name}' in vhost '{}' in exclusive use",
                    vhost.name
                ),
            )),
        }
    }

    fn on_ack(&mut self, id: u16, tag: u64, multiple: bool) -> FaultResult<()> {
        let ch = self.channel(id)?;
        if let Some(tx) = ch.tx.as_mut() {
            tx.acks.push(TxAck::Ack(tag, multiple));
            return Ok(());
        }
        self.apply_ack(id, tag, multiple)
    }

    fn on_nack(&mut self, id: u16, tag: u64, multiple: bool, requeue: bool) -> FaultResult<()> {
        let ch = self.channel(id)?;
        if let Some(tx) = ch.tx.as_mut() {
            tx.acks.push(TxAck::Nack(tag, multiple, requeue));
            return Ok(());
        }
        self.apply_nack(id, tag, multiple, requeue)
    }

    fn take(&mut self, id: u16, tag: u64, multiple: bool) -> FaultResult<Vec<Pending>> {
        let shared = self.channel(id)?.shared.clone();
        take_pending(&shared, tag, multiple).ok_or_else(|| {
            Fault::channel(
                code::PRECONDITION_FAILED,
                format!("unknown delivery tag {tag}"),
            )
        })
    }

    fn apply_ack(&mut self, id: u16, tag: u64, multiple: bool) -> FaultResult<()> {
        let taken = self.take(id, tag, multiple)?;
        self.broker
            .stats
            .acked
            .fetch_add(taken.len() as u64, Ordering::Relaxed);
        if let Some(v) = &self.vhost {
            v.counters.ack.add(taken.len() as u64);
        }
        let mut queues: Vec<Arc<Queue>> = Vec::new();
        // Acks per queue, counted once per run of the same queue.
        let mut run: Option<(Arc<Queue>, u64)> = None;
        for p in taken {
            match &mut run {
                Some((q, n)) if Arc::ptr_eq(q, &p.queue) => *n += 1,
                _ => {
                    if let Some((q, n)) = run.take() {
                        self.counters(&q).ack.add(n);
                    }
                    run = Some((p.queue.clone(), 1));
                }
            }
            if let Some(seq) = p.entry.store_seq {
                self.broker
                    .store
                    .remove_message(&mut self.pass.batch, p.queue.id, seq);
            }
            if let Some(page) = p.entry.page_id() {
                self.broker
                    .store
                    .remove_page(&mut self.pass.batch, p.queue.id, page);
            }
            if p.consumer.is_some() && !queues.iter().any(|q| Arc::ptr_eq(q, &p.queue)) {
                queues.push(p.queue);
            }
        }
        if let Some((q, n)) = run {
            self.counters(&q).ack.add(n);
        }
        // Credit came back: deliver more.
        queues.iter().for_each(Queue::dispatch);
        Ok(())
    }

    fn apply_nack(&mut self, id: u16, tag: u64, multiple: bool, requeue: bool) -> FaultResult<()> {
        let taken = self.take(id, tag, multiple)?;
        if requeue {
            requeue_pending(taken);
            return Ok(());
        }
        // Rejected without requeue: dead-lettered (or dropped), which also deletes the stored copies.
        for (q, entries) in group_pending(taken) {
            q.reject(entries);
            q.dispatch();
        }
        Ok(())
    }

    fn content_frame(&mut self, id: u16, kind: u8, payload: Bytes) -> FaultResult<()> {
        let max_message = self.broker.config.max_message_bytes;
        let ch = self.channel(id)?;
        if ch.closing {
            return Ok(());
        }
        let Some(p) = ch.publishing.as_mut() else {
            return Err(Fault::connection(
                code::UNEXPECTED_FRAME,
                format!("expected method frame, got non method frame instead (channel {id})"),
            ));
        };
        if kind == FRAME_HEADER {
            if p.header.is_some() {
                return Err(Fault::connection(
                    code::UNEXPECTED_FRAME,
                    "expected content body, got content header instead",
                ));
            }
            let (class_id, size, summary) = codec::decode_content_header(&payload)
                .map_err(|e| Fault::connection(code::SYNTAX_ERROR, e.to_string()))?;
            if class_id != 60 {
                return Err(Fault::connection(
                    code::UNEXPECTED_FRAME,
                    format!("content header for class {class_id}, expected 60"),
                ));
            }
            if size > max_message {
                ch.publishing = None;
                return Err(Fault::channel(
                    code::PRECONDITION_FAILED,
                    format!("message size {size} is larger than configured max size {max_message}"),
                ));
            }
            p.header = Some((payload, summary));
            p.body_size = size;
        } else {
            if p.header.is_none() {
                return Err(Fault::connection(
                    code::UNEXPECTED_FRAME,
                    "expected content header for class 60, got content body instead",
                ));
            }
            p.received += payload.len() as u64;
            if p.received > p.body_size {
                return Err(Fault::connection(
                    code::FRAME_ERROR,
                    format!(
                        "content body of {} bytes exceeds the declared size {}",
                        p.received, p.body_size
                    ),
                ));
            }
            if !payload.is_empty() {
                p.parts.push(payload);
            }
        }
        if p.received < p.body_size {
            return Ok(());
        }
        let Some(done) = ch.publishing.take() else {
            return Ok(());
        };
        let body = match done.parts.len() {
            0 => Bytes::new(),
            1 => done.parts.into_iter().next().unwrap_or_default(),
            _ => {
                let mut b = BytesMut::with_capacity(done.body_size as usize);
                for part in &done.parts {
                    b.extend_from_slice(part);
                }
                b.freeze()
            }
        };
        let Some((header, summary)) = done.header else {
            return Ok(());
        };
        let mandatory = done.method.mandatory;
        let msg = Message {
            exchange: String::from(done.method.exchange),
            routing_key: String::from(done.method.routing_key),
            header,
            body,
            summary,
        };
        self.broker.stats.published.fetch_add(1, Ordering::Relaxed);
        self.published = true;
        // Counted per pass for the virtual host (one shared atomic per pass, not per message).
        self.pass.published += 1;
        let msg = self.rewrite_reply_to(id, msg)?;
        let ch = self.channel(id)?;
        ch.info.published.add(1);
        if let Some(tx) = ch.tx.as_mut() {
            tx.publishes.push((mandatory, Arc::new(msg)));
            return Ok(());
        }
        self.route_publish(id, mandatory, Arc::new(msg))
    }

    /// Direct reply-to: a request naming `amq.rabbitmq.reply-to` gets this channel's reply address.
    fn rewrite_reply_to(&mut self, id: u16, msg: Message) -> FaultResult<Message> {
        if !msg.summary.has_reply_to {
            return Ok(msg);
        }
        let props = msg.properties();
        if props
            .reply_to()
            .as_ref()
            .is_none_or(|r| r.as_str() != REPLY_TO)
        {
            return Ok(msg);
        }
        let Some(token) = self.channel(id)?.reply_token.clone() else {
            return Err(Fault::channel(
                code::PRECONDITION_FAILED,
                "fast reply consumer does not exist",
            ));
        };
        Ok(msg.with_properties(props.with_reply_to(ss(&token))))
    }

    fn route_publish(&mut self, id: u16, mandatory: bool, msg: Arc<Message>) -> FaultResult<()> {
        let vhost = self.vhost()?;
        let exchange = msg.exchange.as_str();
        let mut queues = Vec::new();
        let mut routed_direct = false;
        if exchange.is_empty() && msg.routing_key.starts_with(REPLY_TO) {
            if let Some(c) = self.broker.reply_consumer(&msg.routing_key) {
                deliver_direct(&c, &msg);
                routed_direct = true;
            }
        } else {
            vhost.route(exchange, &msg, &mut queues)?;
        }
        if queues.is_empty() && !routed_direct && mandatory {
            let m = msg.clone();
            self.out.write(|b, frame_max| {
                codec::put_method(
                    b,
                    id,
                    AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                        reply_code: code::NO_ROUTE,
                        reply_text: "NO_ROUTE".into(),
                        exchange: ss(&m.exchange),
                        routing_key: ss(&m.routing_key),
                    })),
                );
                codec::put_content(b, id, &m.header, &m.body, frame_max);
            });
        }
        let persistent = msg.persistent();
        let mut encoded: Option<Vec<u8>> = None;
        let mut refused = false;
        let mut admitted = Vec::with_capacity(queues.len());
        for q in queues {
            if q.overflow() != crate::queue::Overflow::DropHead {
                let (n, bytes) = self
                    .pass
                    .enqueue
                    .iter()
                    .filter(|(p, _)| Arc::ptr_eq(p, &q))
                    .fold((0, 0), |(n, b), (_, e)| (n + 1, b + e.msg.size_bytes()));
                if !q.admits(msg.size_bytes(), n, bytes) {
                    refused = true;
                    if q.overflow() == crate::queue::Overflow::RejectPublishDlx {
                        q.kill(vec![(
                            Entry::new(msg.clone(), None),
                            crate::queue::DeathReason::MaxLen,
                        )]);
                    }
                    continue;
                }
            }
            admitted.push(q);
        }
        for q in admitted {
            let store_seq = if persistent && q.durable {
                let bytes = encoded.get_or_insert_with(|| msg.encode());
                let seq = self.broker.store.next_seq();
                self.broker
                    .store
                    .add_message(&mut self.pass.batch, q.id, seq, bytes);
                Some(seq)
            } else {
                None
            };
            self.pass
                .enqueue
                .push((q, Entry::new(msg.clone(), store_seq)));
        }
        let ch = self.channel(id)?;
        let generation = ch.generation;
        if let Some(next) = ch.confirm_next.as_mut() {
            let seq = *next;
            *next += 1;
            self.pass.replies.push(Reply::Confirm {
                channel: id,
                generation,
                seq,
                ack: !refused,
            });
        }
        Ok(())
    }

    /// Ends the current pass: submits its storage batch, enqueues its messages, schedules its replies.
    fn end_pass(&mut self) {
        let pass = std::mem::take(&mut self.pass);
        if pass.published > 0
            && let Some(v) = &self.vhost
        {
            v.counters.publish.add(pass.published);
        }
        let commit =
            (!pass.batch.is_empty()).then(|| self.broker.store.db.write_async(&pass.batch));
        // Enqueue after the batch was submitted: an acknowledgement's delete is then always ordered after
        // the insert in the WAL. Entries are grouped per queue (order within a queue kept), so a pass costs
        // one lock and one dispatch per queue it touched, also for fanouts.
        let mut groups: Vec<(Arc<Queue>, Vec<Entry>)> = Vec::new();
        let mut index: HashMap<*const Queue, usize> = HashMap::new();
        for (q, e) in pass.enqueue {
            match index.get(&Arc::as_ptr(&q)) {
                Some(&i) => groups[i].1.push(e),
                None => {
                    index.insert(Arc::as_ptr(&q), groups.len());
                    groups.push((q, vec![e]));
                }
            }
        }
        for (q, entries) in groups {
            self.counters(&q).publish.add(entries.len() as u64);
            q.push(entries);
        }
        if pass.replies.is_empty() {
            if let Some(c) = commit {
                // Nothing waits on it (acks' deletes): let it complete on its own.
                drop(c);
            }
            return;
        }
        if commit.is_none() && self.inflight.is_empty() {
            self.send_replies(pass.replies);
        } else {
            self.inflight.push_back(Inflight {
                commit,
                failed: false,
                replies: pass.replies,
            });
        }
    }

    /// Sends the replies of completed passes, in order.
    fn release_inflight(&mut self) {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        while let Some(front) = self.inflight.front_mut() {
            if poll_commit(front, &mut cx).is_pending() {
                return;
            }
            let Some(done) = self.inflight.pop_front() else {
                return;
            };
            let replies = if done.failed {
                tracing::error!("amqp storage commit failed; nacking its confirms");
                done.replies
                    .into_iter()
                    .map(|r| match r {
                        Reply::Confirm {
                            channel,
                            generation,
                            seq,
                            ..
                        } => Reply::Confirm {
                            channel,
                            generation,
                            seq,
                            ack: false,
                        },
                        other => other,
                    })
                    .collect()
            } else {
                done.replies
            };
            self.send_replies(replies);
        }
    }

    /// Writes replies, coalescing runs of acks on a channel into one `multiple` ack.
    fn send_replies(&mut self, replies: Vec<Reply>) {
        let channels = &self.channels;
        self.out.write(|b, _| {
            let mut run: Option<(u16, u64)> = None;
            let flush = |b: &mut BytesMut, run: &mut Option<(u16, u64)>| {
                if let Some((ch, seq)) = run.take() {
                    codec::put_method(
                        b,
                        ch,
                        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                            delivery_tag: seq,
                            multiple: true,
                        })),
                    );
                }
            };
            for r in replies {
                match r {
                    Reply::Confirm {
                        channel,
                        generation,
                        seq,
                        ack,
                    } => {
                        if channels
                            .get(&channel)
                            .is_none_or(|c| c.closing || c.generation != generation)
                        {
                            continue;
                        }
                        if ack {
                            match &mut run {
                                Some((ch, last)) if *ch == channel => *last = seq,
                                _ => {
                                    flush(b, &mut run);
                                    run = Some((channel, seq));
                                }
                            }
                        } else {
                            flush(b, &mut run);
                            codec::put_method(
                                b,
                                channel,
                                AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                                    delivery_tag: seq,
                                    multiple: false,
                                    requeue: false,
                                })),
                            );
                        }
                    }
                    Reply::Method(channel, class) => {
                        flush(b, &mut run);
                        codec::put_method(b, channel, class);
                    }
                }
            }
            flush(b, &mut run);
        });
    }
}

/// Polls an in-flight pass's commit; `Ready` once it is done (its outcome recorded in `failed`).
fn poll_commit(front: &mut Inflight, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
    use std::future::Future as _;
    let Some(commit) = front.commit.as_mut() else {
        return std::task::Poll::Ready(());
    };
    match std::pin::Pin::new(commit).poll(cx) {
        std::task::Poll::Pending => std::task::Poll::Pending,
        std::task::Poll::Ready(r) => {
            front.failed = r.is_err();
            front.commit = None;
            std::task::Poll::Ready(())
        }
    }
}

/// Resolves when the oldest in-flight commit completes.
async fn wait_front(inflight: &mut VecDeque<Inflight>) {
    match inflight.front_mut() {
        Some(front) => std::future::poll_fn(|cx| poll_commit(front, cx)).await,
        None => std::future::pending().await,
    }
}

async fn read_with_timeout(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    timeout: Option<Duration>,
) -> std::io::Result<usize> {
    match timeout {
        Some(t) => match tokio::time::timeout(t, read_more(rd, buf)).await {
            Ok(r) => r,
            Err(_) => {
                tracing::info!("amqp client missed heartbeats; closing the connection");
                Ok(0)
            }
        },
        None => read_more(rd, buf).await,
    }
}

fn decode(payload: &[u8]) -> FaultResult<AMQPClass> {
    codec::decode_method(payload).map_err(|e| match e {
        codec::DecodeError::Syntax(s) => Fault::connection(code::SYNTAX_ERROR, s),
        codec::DecodeError::NotImplemented(s) => Fault::connection(code::NOT_IMPLEMENTED, s),
    })
}

/// PLAIN (`authzid \0 user \0 password`) or AMQPLAIN (a field table without its length, with LOGIN and
/// PASSWORD). `Ok(None)`: malformed credentials; `Err`: unknown mechanism.
fn parse_credentials(mechanism: &str, response: &[u8]) -> FaultResult<Option<(String, Vec<u8>)>> {
    match mechanism {
        "PLAIN" => {
            let mut parts = response.splitn(3, |b| *b == 0);
            let (Some(_authzid), Some(user), Some(pass)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Ok(None);
            };
            Ok(Some((
                String::from_utf8_lossy(user).into_owned(),
                pass.to_vec(),
            )))
        }
        "AMQPLAIN" => {
            let mut framed = (response.len() as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(response);
            if !codec::check_table(&framed) {
                return Ok(None);
            }
            let Ok((_, table)) = amq_protocol::types::parsing::parse_field_table(&framed[..])
            else {
                return Ok(None);
            };
            let get = |k: &str| {
                table.inner().get(k).and_then(|v| match v {
                    AMQPValue::LongString(s) => Some(s.as_bytes().to_vec()),
                    AMQPValue::ShortString(s) => Some(s.as_str().as_bytes().to_vec()),
                    _ => None,
                })
            };
            match (get("LOGIN"), get("PASSWORD")) {
                (Some(u), Some(p)) => Ok(Some((String::from_utf8_lossy(&u).into_owned(), p))),
                _ => Ok(None),
            }
        }
        other => Err(Fault::connection(
            code::COMMAND_INVALID,
            format!("unknown authentication mechanism '{other}'"),
        )),
    }
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(1);
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    salt.rotate_left(17) ^ N.fetch_add(1, Ordering::Relaxed)
}
