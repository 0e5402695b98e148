//! The read → execute → write loop of one connection.
//!
//! Commands execute synchronously; what needs waiting happens here, in the async loop: a blocking
//! command that found nothing leaves a [`crate::blocking::BlockRequest`] in the session and the loop
//! waits for a wake-up, the deadline, `CLIENT UNBLOCK`, a kill or shutdown, then runs the command again;
//! `CLIENT PAUSE` holds commands back before they run; pub/sub messages queued for this client are
//! written between commands (and while it is blocked).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use strata_resp::Arg;

use bytes::{Buf as _, BytesMut};
use strata_resp::{Frame, RequestParser};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::blocking::{BlockRequest, Blocking};
use crate::clients::UnblockMode;
use crate::cmd;
use crate::lookahead::LookAhead;
use crate::pubsub::Message;
use crate::{Session, Shared};

/// Bytes read per `read` call at least; the buffer grows for large values.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Time without a command after which an idle connection gives its buffers back (Redis frees an idle
/// client's query buffer after 2 s): 10,000 pooled connections would otherwise hold 320 MiB.
const IDLE_SHRINK: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest a client that sent SHUTDOWN waits for the listener to close before its connection closes.
const LISTENER_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The socket and buffers of one connection.
struct Conn {
    stream: TcpStream,
    input: BytesMut,
    output: BytesMut,
    messages: mpsc::UnboundedReceiver<Message>,
    /// How `messages` is waited for (every wait for it goes through here).
    watch: MessageWatch,
    /// Bytes of `output` counted in the client's `omem` (and so in the clients' memory total).
    counted: usize,
    kill: CancellationToken,
    /// The storage engine, whose buffered WAL bytes are written before any reply goes out.
    storage: strata_storage::Db,
    /// When the connection last woke from having shrunk its buffers (commands are timed by the session).
    active_at: std::time::Instant,
}

/// Why the connection ends.
struct Closed;

impl Conn {
    /// Writes what the socket takes now of `output`. The rest stays there, counted in the client's
    /// `omem`, while the connection goes on reading and running commands: as with Redis's output buffers,
    /// a client that does not read its replies grows its buffer until the output buffer limits,
    /// `maxmemory-clients` or `maxmemory` deal with it.
    async fn flush(&mut self, session: &Session) -> Result<(), Closed> {
        if self.output.is_empty() {
            return Ok(());
        }
        // Writes are applied with deferred WAL bytes (`Db::write_deferred`); like Redis writing its AOF
        // buffer before replying, they reach the OS before any reply acknowledges them, so a crash of the
        // process loses nothing acknowledged. One write(2) carries every command of the pipeline, and
        // of every other connection ready now: they run their commands before this one writes (as
        // Redis writes its AOF buffer once per event-loop iteration, for every client it served).
        if self.storage.wal_buffer_pending() {
            tokio::task::yield_now().await;
        }
        if let Err(e) = self.storage.flush_wal_buffer() {
            tracing::error!(error = %e, "writing the WAL failed; closing the connection unacknowledged");
            return Err(Closed);
        }
        loop {
            match self.stream.try_write(&self.output) {
                Ok(0) => return Err(Closed),
                Ok(n) if n == self.output.len() => {
                    self.output.clear();
                    break;
                }
                Ok(n) => self.output.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(Closed),
            }
        }
        self.count_output(session);
        Ok(())
    }

    /// Writes all of `output`, waiting for the client to read it (or to be killed): before the
    /// connection waits on something else (a blocked command, a pause, a script) or closes.
    async fn drain(&mut self, session: &Session) -> Result<(), Closed> {
        self.flush(session).await?;
        while !self.output.is_empty() {
            tokio::select! {
                () = self.kill.cancelled() => return Err(Closed),
                ready = self.stream.writable() => ready.map_err(|_| Closed)?,
            }
            self.flush(session).await?;
        }
        Ok(())
    }

    /// Makes the client's `omem` hold exactly the bytes waiting in `output`. Replies are counted only
    /// when they have to wait for the socket; nearly always it takes them at once and this costs nothing.
    fn count_output(&mut self, session: &Session) {
        let now = self.output.len();
        match now.cmp(&self.counted) {
            std::cmp::Ordering::Greater => {
                session.handle.add_output(now - self.counted);
            }
            std::cmp::Ordering::Less => session.handle.sub_output(self.counted - now),
            std::cmp::Ordering::Equal => {}
        }
        self.counted = now;
    }

    /// Moves a received message, and every other already queued, into `output`.
    fn push_messages(&mut self, first: Message, session: &Session) {
        let mut next = Some(first);
        while let Some(m) = next {
            // Counted in `omem` since it was queued; `count_output` settles it to its encoded size.
            self.counted += m.size();
            m.to_frame().encode(session.protocol, &mut self.output);
            next = self.messages.try_recv().ok();
        }
    }
}

/// Serves one client until it quits, breaks the protocol, disconnects, is killed, or the service shuts
/// down, then drops its WATCHes and subscriptions.
pub async fn run(
    stream: TcpStream,
    mut session: Session,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    messages: mpsc::UnboundedReceiver<Message>,
) {
    let mut conn = Conn {
        stream,
        input: BytesMut::with_capacity(READ_CHUNK_BYTES),
        output: BytesMut::with_capacity(READ_CHUNK_BYTES),
        messages,
        watch: MessageWatch::new(),
        counted: 0,
        kill: session.handle.kill.clone(),
        storage: shared.keyspace.storage().clone(),
        active_at: std::time::Instant::now(),
    };
    let _ = serve_client(&mut conn, &mut session, &shared, &shutdown).await;
    session.end_transaction(&shared.keyspace);
    session.unsubscribe_all(&shared);
    if session.tracking.on {
        shared.tracking.disable(session.id);
    }
}

async fn serve_client(
    conn: &mut Conn,
    session: &mut Session,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) -> Result<(), Closed> {
    let mut parser = RequestParser::new(shared.config.limits);
    // Fires at most once per IDLE_SHRINK: when it does, the buffers go if no command came meanwhile,
    // else it is set again from the last command.
    let idle = tokio::time::sleep(IDLE_SHRINK);
    tokio::pin!(idle);
    let mut shrunk = false;
    // Whether the timer has been polled since it was last set: it then holds this task's waker and wakes
    // it when due, so later waits only check whether it elapsed (an atomic load) instead of polling it.
    let mut idle_armed = false;
    let mut cancels = Cancels::new(&conn.kill, shutdown);
    let mut look_ahead = LookAhead::default();
    loop {
        // Run every whole command already buffered, then write all their replies at once.
        loop {
            // With the arguments of a request in progress the parser already took from the buffer.
            let buffered = conn.input.len() + parser.buffered_bytes();
            parser.set_unauthenticated(!session.authenticated && shared.auth_required());
            match parser.parse_request(&mut conn.input) {
                Ok(Some(request)) => {
                    let args = request.args();
                    // A killed client runs nothing more, even what it had already sent.
                    if session.handle.is_killed() {
                        return Err(Closed);
                    }
                    look_ahead.after_parse(&mut parser, &args, &conn.input, shared, session.db);
                    // Like Redis's `qbuf`: what is buffered, this command included, while it runs.
                    session.handle.note_request(buffered);
                    if shared.pause.maybe_active() {
                        wait_while_paused(conn, session, shared, shutdown, &args).await?;
                        session.clock_hint = None;
                    }
                    if shared.scripting.run.should_wait(session.id) {
                        wait_for_script(conn, session, shared, shutdown).await?;
                        session.clock_hint = None;
                    }
                    let mut reply = cmd::execute(session, shared, &args);
                    if session.handle.is_killed() && !session.closing {
                        // Killed while it ran, or evicted by `maxmemory-clients` as it started (its own
                        // arguments may be what crossed the limit): closed with no reply, as in Redis.
                        return Err(Closed);
                    }
                    if let Some(request) = session.block.take() {
                        conn.drain(session).await?;
                        reply =
                            wait_blocked(conn, session, shared, shutdown, request, &args).await?;
                        session.clock_hint = None;
                    }
                    if !session.woken.is_empty() {
                        // The clients this write fed are served before anything after it runs.
                        Blocking::await_retries(&mut session.woken).await;
                        session.clock_hint = None;
                    }
                    if session.shutting_down {
                        // SHUTDOWN: the replies before it go out, its own never does, and the connection
                        // closes once the listener has (bounded, should the node never close it).
                        let _ = conn.drain(session).await;
                        let closed = shared.listener_closed.cancelled();
                        let _ = tokio::time::timeout(LISTENER_CLOSE_WAIT, closed).await;
                        return Ok(());
                    }
                    if std::mem::take(&mut session.over_output_limit) {
                        tracing::info!(
                            client = session.id,
                            "closing client for overcoming of output buffer limits"
                        );
                        return Err(Closed);
                    }
                    let send = session.take_reply_permission(&args[0]);
                    for extra in session.extra_replies.drain(..) {
                        if send {
                            extra.encode(session.protocol, &mut conn.output);
                        }
                    }
                    if send {
                        reply.encode(session.protocol, &mut conn.output);
                    }
                    session.publish_state();
                    // A subscriber is of the pub/sub class, whose limits apply as messages queue.
                    if session.subscription_count() == 0
                        && shared
                            .normal_limits
                            .exceeded(&session.handle, conn.output.len() as u64)
                    {
                        // As Redis: the client is closed at once and its unsent replies dropped.
                        shared.pubsub.disconnections.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            client = session.id,
                            bytes = conn.output.len(),
                            "closing client for overcoming of output buffer limits"
                        );
                        return Err(Closed);
                    }
                    if session.closing {
                        let _ = conn.drain(session).await;
                        return Ok(());
                    }
                }
                Ok(None) => {
                    // What comes next arrives after a wait.
                    session.clock_hint = None;
                    look_ahead.reset();
                    break;
                }
                Err(e) => {
                    // Redis replies with the error and closes: the position in the stream is lost.
                    tracing::debug!(client = session.id, error = %e, "protocol error, closing");
                    Frame::error(format!("ERR {e}")).encode(session.protocol, &mut conn.output);
                    let _ = conn.drain(session).await;
                    return Ok(());
                }
            }
        }
        // The request in progress counts whole: the arguments the parser already holds and the rest
        // (a large argument at its full size from the moment its length is known).
        session.handle.set_query_buffer(
            conn.input.len() + parser.buffered_bytes(),
            conn.input.len().max(parser.awaited_large_bulk()) + parser.buffered_bytes(),
            conn.input.capacity(),
        );
        if conn.watch.may_have_messages() {
            while let Ok(m) = conn.messages.try_recv() {
                conn.push_messages(m, session);
            }
        }
        // Redis reads every ready client, then writes its AOF buffer once and all the replies. When other
        // clients are active (the last replies were not this client's), letting the tasks already woken
        // run their commands first does the same: the first flush writes everyone's WAL bytes in one
        // call, and the clients get their replies in bursts. A lone client never waits for this.
        // Nothing to share when no WAL bytes wait (reads, writes already written out).
        if !conn.output.is_empty()
            && shared.keyspace.storage().wal_buffer_pending()
            && shared.last_replier.swap(session.id, Ordering::Relaxed) != session.id
        {
            tokio::task::yield_now().await;
        }
        conn.flush(session).await?;
        // What this client holds may have grown (a request read in part, replies it does not read):
        // clients are evicted now, as Redis does before its next wait, not at the next command.
        if shared.evict.client_limit.load(Ordering::Relaxed) != 0 {
            crate::evict::evict_clients(shared);
        }
        // An idle connection's empty buffer is grown again only once bytes arrive.
        if !shrunk && conn.input.capacity() - conn.input.len() < READ_CHUNK_BYTES / 4 {
            conn.input.reserve(READ_CHUNK_BYTES);
        }
        let idle_due = std::future::poll_fn(|cx| {
            if idle_armed && !idle.is_elapsed() {
                return std::task::Poll::Pending;
            }
            idle_armed = true;
            idle.as_mut().poll(cx)
        });
        // A connection idle between commands closes at shutdown; one mid-command finishes it first.
        let between_commands = !parser.is_mid_request();
        let cancelled = std::future::poll_fn(|cx| cancels.poll(cx, between_commands));
        let read = tokio::select! {
            // Polled in this order, so a kill is seen before anything else that is ready.
            biased;
            cancel = cancelled => return match cancel {
                Cancel::Killed => Err(Closed),
                Cancel::Stopping => Ok(()),
            },
            message = std::future::poll_fn(|cx| conn.watch.poll(&mut conn.messages, cx)) => {
                if let Some(m) = message {
                    conn.push_messages(m, session);
                }
                continue;
            }
            // Replies the client has not read yet go out as the socket takes them; meanwhile its
            // requests go on being read and run.
            writable = std::future::poll_fn(|cx| conn.stream.poll_write_ready(cx)),
                if !conn.output.is_empty() =>
            {
                writable.map_err(|_| Closed)?;
                continue;
            }
            read = std::future::poll_fn(|cx| poll_read_into(&conn.stream, &mut conn.input, cx)) => read,
            () = idle_due, if !shrunk => {
                let quiet_since = session.last_command_at.max(conn.active_at);
                if quiet_since.elapsed() >= IDLE_SHRINK
                    && conn.input.is_empty()
                    && conn.output.is_empty()
                    && !parser.is_mid_request()
                {
                    conn.input = BytesMut::new();
                    conn.output = BytesMut::new();
                    session.handle.set_query_buffer(0, 0, 0);
                    shrunk = true;
                } else {
                    idle.as_mut().reset((quiet_since + IDLE_SHRINK).into());
                    idle_armed = false;
                }
                continue;
            }
        };
        if shrunk {
            // Bytes again: full-size reads from the next one on, and a new idle period.
            shrunk = false;
            conn.active_at = std::time::Instant::now();
            idle.as_mut().reset((conn.active_at + IDLE_SHRINK).into());
            idle_armed = false;
        }
        match read {
            Ok(0) | Err(_) => return Err(Closed),
            Ok(_) => {}
        }
    }
}

/// Why a connection stops waiting for its client.
enum Cancel {
    /// CLIENT KILL (or eviction): close now.
    Killed,
    /// Server shutdown, between commands.
    Stopping,
}

/// A connection's kill and shutdown tokens, watched at the cost of one atomic load per wait.
///
/// Awaited directly, each token's future takes the token's lock to test it and polls its waiter on every
/// wait, once per command (built anew per wait, they also joined and left the token's waiter list): ~3%
/// of a command's CPU. Here both futures live as long as the connection and are polled with a waker of
/// their own, which raises a flag and wakes the task: a wait only polls them again once that flag is up.
struct Cancels {
    killed: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    stopping: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    relay: Arc<Relay>,
    waker: std::task::Waker,
    /// Whether the futures were polled (their waiters hold `waker`).
    armed: bool,
    /// Shutdown began while a command was half read.
    stop_seen: bool,
}

/// Forwards a token's wake-up to the connection's task, leaving a flag.
struct Relay {
    fired: std::sync::atomic::AtomicBool,
    task: parking_lot::Mutex<Option<std::task::Waker>>,
    /// The task waker's data pointer, to see without the lock whether it changed.
    task_data: std::sync::atomic::AtomicUsize,
}

impl Relay {
    fn new() -> Arc<Relay> {
        Arc::new(Relay {
            fired: std::sync::atomic::AtomicBool::new(false),
            task: parking_lot::Mutex::new(None),
            task_data: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Whether the watched future must be polled: it never was (`armed` false) or it woke since. The flag
    /// is cleared before the poll, so a wake-up that lands meanwhile is not lost.
    fn should_poll(&self, armed: bool) -> bool {
        if armed && !self.fired.load(Ordering::Acquire) {
            return false;
        }
        self.fired.store(false, Ordering::Release);
        true
    }

    /// Makes wake-ups go to the task polling with `cx` (a lock only when that task's waker changed).
    fn track(&self, cx: &std::task::Context<'_>) {
        let data = cx.waker().data() as usize;
        if self.task_data.load(Ordering::Relaxed) != data {
            *self.task.lock() = Some(cx.waker().clone());
            self.task_data.store(data, Ordering::Relaxed);
        }
    }
}

impl std::task::Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        if let Some(w) = self.task.lock().as_ref() {
            w.wake_by_ref();
        }
    }
}

impl Cancels {
    fn new(kill: &CancellationToken, shutdown: &CancellationToken) -> Cancels {
        let relay = Relay::new();
        Cancels {
            killed: Box::pin(kill.clone().cancelled_owned()),
            stopping: Box::pin(shutdown.clone().cancelled_owned()),
            waker: std::task::Waker::from(relay.clone()),
            relay,
            armed: false,
            stop_seen: false,
        }
    }

    /// Ready when the client was killed, or when the server stops and `between_commands`.
    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
        between_commands: bool,
    ) -> std::task::Poll<Cancel> {
        use std::task::Poll;
        self.relay.track(cx);
        if self.stop_seen && between_commands {
            return Poll::Ready(Cancel::Stopping);
        }
        if !self.relay.should_poll(self.armed) {
            return Poll::Pending;
        }
        self.armed = true;
        let mut inner = std::task::Context::from_waker(&self.waker);
        if self.killed.as_mut().poll(&mut inner).is_ready() {
            return Poll::Ready(Cancel::Killed);
        }
        if self.stopping.as_mut().poll(&mut inner).is_ready() {
            if between_commands {
                return Poll::Ready(Cancel::Stopping);
            }
            self.stop_seen = true;
        }
        Poll::Pending
    }
}

/// The connection's queue of pub/sub messages (and invalidations), watched the way [`Cancels`] watches
/// its tokens: the receiver is polled with a waker of its own, which raises a flag, so a wait between
/// commands polls it (and registers a waker with the channel) only after a message came. Polling it on
/// every wait was ~7% of a non-pipelined command's instructions, for clients that mostly get no messages.
struct MessageWatch {
    relay: Arc<Relay>,
    waker: std::task::Waker,
    /// Whether the receiver was polled to `Pending` (the channel holds `waker`) since the last message.
    armed: bool,
}

impl MessageWatch {
    fn new() -> MessageWatch {
        let relay = Relay::new();
        MessageWatch {
            waker: std::task::Waker::from(relay.clone()),
            relay,
            armed: false,
        }
    }

    /// The next queued message, if one may have come since the receiver was last polled empty.
    fn poll(
        &mut self,
        messages: &mut mpsc::UnboundedReceiver<Message>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Message>> {
        use std::task::Poll;
        self.relay.track(cx);
        if !self.relay.should_poll(self.armed) {
            return Poll::Pending;
        }
        let mut inner = std::task::Context::from_waker(&self.waker);
        let polled = messages.poll_recv(&mut inner);
        self.armed = polled.is_pending();
        polled
    }

    /// Whether a message may be queued (the receiver was not polled empty since the last one).
    fn may_have_messages(&self) -> bool {
        !self.armed || self.relay.fired.load(Ordering::Acquire)
    }
}

/// Reads what the socket holds into `input`, as `read_buf` does but through a shared reference, so the
/// connection can wait for its socket to take pending replies at the same time.
fn poll_read_into(
    stream: &TcpStream,
    input: &mut BytesMut,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<std::io::Result<usize>> {
    use bytes::BufMut as _;
    use std::io::ErrorKind::WouldBlock;
    loop {
        std::task::ready!(stream.poll_read_ready(cx))?;
        let room = input.chunk_mut().len();
        let mut read = None;
        // A read that fills less than the room it had emptied the socket: tokio's readiness is
        // cleared with it (the outer `try_io` treats the short read as `WouldBlock`), so the next
        // wait goes to epoll instead of first spending a recv(2) on EAGAIN, as a level-triggered loop
        // (Redis's) does not either. The readiness cleared is the one seen before this read, so data
        // that arrives after it still wakes the connection.
        let outcome = stream.try_io(tokio::io::Interest::READABLE, || {
            let n = stream.try_read_buf(input)?;
            read = Some(n);
            if n > 0 && n < room {
                Err(WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        match (outcome, read) {
            (_, Some(n)) => return std::task::Poll::Ready(Ok(n)),
            (Err(e), None) if e.kind() == WouldBlock => {}
            (other, None) => return std::task::Poll::Ready(other),
        }
    }
}

/// Holds a command back while another client's script runs and is not yet past
/// `busy-reply-threshold` (Redis reads nothing meanwhile; past it, the command gets `-BUSY`), without
/// tying up a worker thread.
async fn wait_for_script(
    conn: &mut Conn,
    session: &Session,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<(), Closed> {
    conn.drain(session).await?;
    while shared.scripting.run.should_wait(session.id) {
        tokio::select! {
            () = conn.kill.cancelled() => return Err(Closed),
            () = shutdown.cancelled() => return Err(Closed),
            () = tokio::time::sleep(std::time::Duration::from_millis(1)) => {}
        }
    }
    Ok(())
}

/// Holds a command back while `CLIENT PAUSE` applies to it.
async fn wait_while_paused(
    conn: &mut Conn,
    session: &Session,
    shared: &Shared,
    shutdown: &CancellationToken,
    args: &[Arg<'_>],
) -> Result<(), Closed> {
    let Some(spec) = args.first().and_then(|name| cmd::lookup(name)) else {
        return Ok(());
    };
    // As in Redis, a command that fails its checks is answered at once rather than held back.
    let arity_ok = match usize::try_from(spec.arity) {
        Ok(exact) => args.len() == exact,
        Err(_) => args.len() >= spec.arity.unsigned_abs() as usize,
    };
    if !arity_ok {
        return Ok(());
    }
    let writes = |spec: &cmd::CommandSpec, args: &[Arg]| {
        let flags = cmd::flags_of(spec, args);
        flags.contains(&"write")
            || flags.contains(&"may_replicate")
            || matches!(spec.name, "publish" | "spublish")
    };
    // EXEC is a write when its queue holds one (Redis's `may-replicate` transaction); a script
    // declared `no-writes` is not.
    let is_write = (writes(spec, args) && !cmd::declared_no_writes(shared, args))
        || (spec.name == "exec"
            && session.multi.as_ref().is_some_and(|queue| {
                queue.iter().any(|q| {
                    q.first()
                        .and_then(|n| cmd::lookup(n))
                        .is_some_and(|s| writes(s, &strata_resp::args_of(q)))
                })
            }));
    if shared.pause.paused_until(is_write).is_none() {
        return Ok(());
    }
    conn.drain(session).await?;
    // A postponed client counts as blocked in INFO, as in Redis.
    shared.blocking.note_blocked();
    let result = tokio::select! {
        () = conn.kill.cancelled() => Err(Closed),
        () = shutdown.cancelled() => Err(Closed),
        () = shared.pause.wait_while_paused(is_write) => Ok(()),
    };
    shared.blocking.note_unblocked();
    result
}

/// Waits for the keys of a blocked command and runs it again until it is served, times out, or is
/// unblocked; returns its reply.
async fn wait_blocked(
    conn: &mut Conn,
    session: &mut Session,
    shared: &Shared,
    shutdown: &CancellationToken,
    request: BlockRequest,
    args: &[Arg<'_>],
) -> Result<Frame, Closed> {
    let handle = session.handle.clone();
    let waiter = shared
        .blocking
        .register(session.id, session.db, &request.keys);
    handle.take_unblock();
    handle.set_blocked();
    shared.blocking.note_blocked();
    let deadline = async {
        match request.deadline {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    // `Ok(true)`: served by a retry; `Ok(false)`: answered without running (timeout, unblock).
    let outcome: Result<(Frame, bool), Closed> = loop {
        tokio::select! {
            biased;
            () = conn.kill.cancelled() => break Err(Closed),
            () = shutdown.cancelled() => break Err(Closed),
            () = handle.unblock_notify.notified() => match handle.take_unblock() {
                Some(UnblockMode::Timeout) => break Ok((request.timeout_reply.clone(), false)),
                Some(UnblockMode::Error) => {
                    break Ok((Frame::error("UNBLOCKED client unblocked via CLIENT UNBLOCK"), false));
                }
                None => {}
            },
            () = waiter.woken() => {
                session.retrying_block = true;
                let reply = cmd::resume(session, shared, args);
                session.retrying_block = false;
                if session.block.take().is_none() {
                    break Ok((reply, true));
                }
                waiter.finish_retry();
            }
            () = &mut deadline => break Ok((request.timeout_reply.clone(), false)),
            message = std::future::poll_fn(|cx| conn.watch.poll(&mut conn.messages, cx)) => {
                // A RESP3 client may be subscribed and blocked at once.
                if let Some(m) = message {
                    conn.push_messages(m, session);
                    if let Err(closed) = conn.drain(session).await {
                        break Err(closed);
                    }
                }
            }
            // Keep reading (Redis does): a client that disconnects stops waiting; later commands wait
            // in the buffer.
            read = conn.stream.read_buf(&mut conn.input) => match read {
                Ok(0) | Err(_) => break Err(Closed),
                Ok(_) => {}
            },
        }
    };
    shared.blocking.remove(&waiter);
    if handle.clear_blocked() {
        shared.blocking.note_unblocked();
    }
    let served = matches!(outcome, Ok((_, true)));
    if served {
        // What it popped or pushed may let the next waiter of those keys proceed; they are served
        // before this retry counts as finished, so the write that woke this client waits for them too.
        let mut woken = Vec::new();
        cmd::signal_keys(shared, args, &mut woken);
        Blocking::await_retries(&mut woken).await;
    }
    waiter.finish_retry();
    let (reply, served) = outcome?;
    if !served {
        cmd::record_unblocked(shared, args, &reply);
    }
    Ok(reply)
}

/// Writes one error to a connection that will not be served, then closes it.
pub async fn refuse(mut stream: TcpStream, message: &str) {
    let mut out = BytesMut::new();
    Frame::error(message).encode(strata_resp::ProtocolVersion::Resp2, &mut out);
    let _ = stream.write_all(&out).await;
}
