//! The registry of live connections, so `CLIENT LIST`, `CLIENT KILL`, `CLIENT UNBLOCK` and PUBLISH see
//! every client, not just the caller.
//!
//! Each connection owns a [`ClientHandle`] shared with the registry. The connection publishes what
//! `CLIENT LIST` shows with relaxed atomic stores after each command (cheap, and a listing a command
//! behind is what Redis shows too); other connections act on it only through its cancellation token,
//! its unblock request and its pub/sub queue.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::time::Instant;
use strata_resp::Arg;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::pubsub::Message;

/// Flag bits of [`ClientHandle::flags`].
pub mod flag {
    /// Blocked in a blocking command (`b`).
    pub const BLOCKED: u32 = 1;
    /// In a MULTI (`x`).
    pub const MULTI: u32 = 1 << 1;
    /// `CLIENT NO-EVICT on` (`e`).
    pub const NO_EVICT: u32 = 1 << 2;
    /// `CLIENT NO-TOUCH on` (`T`).
    pub const NO_TOUCH: u32 = 1 << 3;
    /// Will close once its reply is written (`c`).
    pub const CLOSE_AFTER_REPLY: u32 = 1 << 4;
}

/// How `CLIENT UNBLOCK` asks a blocked client to stop waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnblockMode {
    /// Reply as if the timeout had passed.
    Timeout,
    /// Reply `-UNBLOCKED client unblocked via CLIENT UNBLOCK`.
    Error,
}

/// What other connections can see of and do to one connection.
#[derive(Debug)]
pub struct ClientHandle {
    /// `CLIENT ID`.
    pub id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The listener's address the client connected to.
    pub local: Option<SocketAddr>,
    /// When the connection was accepted.
    pub connected_at: Instant,
    /// `CLIENT SETNAME`, `CLIENT SETINFO LIB-NAME`, `LIB-VER`.
    pub names: Mutex<ClientNames>,
    /// Selected database.
    pub db: AtomicUsize,
    /// 1 + the position of the last command in the dispatch table; 0 before the first.
    pub last_command: AtomicUsize,
    /// Microseconds after `connected_at` of the last command.
    pub last_active_us: AtomicU64,
    /// RESP version (2 or 3).
    pub resp: AtomicU8,
    /// [`flag`] bits.
    pub flags: AtomicU32,
    /// Commands queued in MULTI, or -1 outside one.
    pub multi: AtomicI64,
    /// Channel subscriptions.
    pub sub: AtomicUsize,
    /// Pattern subscriptions.
    pub psub: AtomicUsize,
    /// Shard-channel subscriptions.
    pub ssub: AtomicUsize,
    /// Bytes read but not yet executed.
    pub qbuf: AtomicUsize,
    /// The query buffer's size as last added to `memory_total` (at each read; `qbuf` also moves per
    /// command, for CLIENT LIST).
    qbuf_counted: AtomicUsize,
    /// Free space of the query buffer at the last read (CLIENT LIST's `qbuf-free`).
    qbuf_free: AtomicUsize,
    /// The service's total of its clients' buffers (query buffers and unsent output), which `maxmemory`
    /// counts as Redis counts client buffers in `used_memory`.
    memory_total: Arc<ClientMemory>,
    /// Set once client eviction took this client's buffers off `memory_total` (Redis frees an evicted
    /// client at once; here its task ends a moment later): from then on nothing here touches the total.
    memory_released: AtomicBool,
    /// Bytes of replies and pub/sub messages not yet written to the socket.
    pub omem: AtomicUsize,
    /// What the connection's own state takes (WATCHed keys, subscriptions, the MULTI queue), as
    /// last added to `memory_total`.
    state_mem: AtomicUsize,
    /// What the client's tracking prefixes take, as last added to `memory_total`.
    prefix_mem: AtomicUsize,
    /// What its MULTI queue takes (CLIENT LIST's `multi-mem`; part of `state_mem`).
    pub multi_mem: AtomicUsize,
    /// Since when `omem` has been above the soft limit, as microseconds after `connected_at` + 1
    /// (0: not above it).
    pub soft_limit_since_us: AtomicU64,
    /// Cancelled to close the connection (`CLIENT KILL`, output buffer limits), by [`ClientHandle::close`]
    /// only, which also sets `killed`.
    pub kill: CancellationToken,
    /// Whether [`ClientHandle::close`] was called: what every command checks, without the token's lock.
    killed: AtomicBool,
    /// A pending `CLIENT UNBLOCK` (0 none, 1 timeout, 2 error), with its wake-up.
    unblock: AtomicU8,
    /// Wakes the connection when `unblock` is set.
    pub unblock_notify: Notify,
    /// Where PUBLISH sends this client's messages.
    pub messages: mpsc::UnboundedSender<Message>,
    /// Whether the client is subscribed to anything (any of sub/psub/ssub).
    pub subscribed: AtomicBool,
    /// `client|list` when the last command was a container's subcommand (`cmd=` shows it).
    full_name: Mutex<Option<String>>,
    /// Whether `full_name` is set (so other commands skip its lock).
    has_full_name: AtomicBool,
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        // The connection is gone: its buffers with it (unless client eviction released them already).
        if *self.memory_released.get_mut() {
            return;
        }
        let held = self.buffer_bytes();
        self.memory_total
            .bytes
            .fetch_sub(held as i64, Ordering::Relaxed);
        self.memory_total.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The memory of a service's clients, as their handles count it.
#[derive(Debug, Default)]
pub struct ClientMemory {
    /// Their buffers and state (query buffers, unsent output, WATCHes, subscriptions, ...).
    pub bytes: AtomicI64,
    /// Clients whose memory is counted (connected and not evicted), each with its reply buffer.
    pub clients: AtomicI64,
}

impl ClientMemory {
    /// Their buffers and state, in bytes.
    pub fn buffers(&self) -> u64 {
        u64::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// All of it as Redis counts it: buffers, state and every client's reply buffer.
    pub fn total(&self) -> u64 {
        let clients = u64::try_from(self.clients.load(Ordering::Relaxed)).unwrap_or(0);
        self.buffers() + clients * REPLY_BUFFER_BYTES as u64
    }
}

/// The names a client gave itself, and the ACL user it authenticated as.
#[derive(Debug, Clone)]
pub struct ClientNames {
    /// `CLIENT SETNAME`.
    pub name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<Bytes>,
    /// The ACL user the connection runs as (`CLIENT LIST`'s `user=`, `CLIENT KILL USER`).
    pub user: Bytes,
}

impl Default for ClientNames {
    fn default() -> Self {
        ClientNames {
            name: None,
            lib_name: None,
            lib_ver: None,
            user: Bytes::from_static(crate::acl::DEFAULT_USER),
        }
    }
}

impl ClientHandle {
    /// A handle for a new connection and the receiving end of its pub/sub queue.
    pub fn new(
        id: u64,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        memory_total: Arc<ClientMemory>,
    ) -> (Arc<ClientHandle>, mpsc::UnboundedReceiver<Message>) {
        let (tx, rx) = mpsc::unbounded_channel();
        memory_total.clients.fetch_add(1, Ordering::Relaxed);
        let handle = ClientHandle {
            id,
            peer,
            local,
            connected_at: Instant::now(),
            names: Mutex::new(ClientNames::default()),
            db: AtomicUsize::new(0),
            last_command: AtomicUsize::new(0),
            last_active_us: AtomicU64::new(0),
            resp: AtomicU8::new(2),
            flags: AtomicU32::new(0),
            multi: AtomicI64::new(-1),
            sub: AtomicUsize::new(0),
            psub: AtomicUsize::new(0),
            ssub: AtomicUsize::new(0),
            qbuf: AtomicUsize::new(0),
            qbuf_counted: AtomicUsize::new(0),
            qbuf_free: AtomicUsize::new(16_384),
            memory_total,
            memory_released: AtomicBool::new(false),
            omem: AtomicUsize::new(0),
            state_mem: AtomicUsize::new(0),
            prefix_mem: AtomicUsize::new(0),
            multi_mem: AtomicUsize::new(0),
            soft_limit_since_us: AtomicU64::new(0),
            kill: CancellationToken::new(),
            killed: AtomicBool::new(false),
            unblock: AtomicU8::new(0),
            unblock_notify: Notify::new(),
            messages: tx,
            subscribed: AtomicBool::new(false),
            full_name: Mutex::new(None),
            has_full_name: AtomicBool::new(false),
        };
        (Arc::new(handle), rx)
    }

    /// Whether a flag is set.
    pub fn has_flag(&self, f: u32) -> bool {
        self.flags.load(Ordering::Relaxed) & f != 0
    }

    /// Sets or clears a flag.
    pub fn set_flag(&self, f: u32, on: bool) {
        // Commands set some flags on every call; a plain load spares the locked read-modify-write when
        // nothing changes.
        let now = self.flags.load(Ordering::Relaxed) & f;
        if (on && now == f) || (!on && now == 0) {
            return;
        }
        if on {
            self.flags.fetch_or(f, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!f, Ordering::Relaxed);
        }
    }

    /// Microseconds since the connection was accepted.
    pub fn age_us(&self) -> u64 {
        u64::try_from(self.connected_at.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Marks the client active at `now` (its command's arrival), running command number `index`.
    pub fn touch(&self, index: usize, now: std::time::Instant) {
        let age = now.saturating_duration_since(self.connected_at).as_micros();
        self.last_active_us
            .store(u64::try_from(age).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.last_command.store(index + 1, Ordering::Relaxed);
    }

    /// Records the full name (`config|set`) of the last command when it is a subcommand.
    pub fn set_full_name(&self, name: Option<String>) {
        if name.is_none() && !self.has_full_name.load(Ordering::Relaxed) {
            return;
        }
        self.has_full_name.store(name.is_some(), Ordering::Relaxed);
        *self.full_name.lock() = name;
    }

    /// The full name of the last command if it was a subcommand.
    pub fn full_name(&self) -> Option<String> {
        if !self.has_full_name.load(Ordering::Relaxed) {
            return None;
        }
        self.full_name.lock().clone()
    }

    /// Asks a blocked client to stop waiting; false if it is not blocked.
    /// Like Redis, the client is no longer blocked once this returns true: a second request (or INFO's
    /// `blocked_clients`) sees it unblocked even before its connection has woken up.
    pub fn request_unblock(&self, mode: UnblockMode) -> bool {
        if !self.clear_blocked() {
            return false;
        }
        self.unblock.store(
            match mode {
                UnblockMode::Timeout => 1,
                UnblockMode::Error => 2,
            },
            Ordering::SeqCst,
        );
        self.unblock_notify.notify_one();
        true
    }

    /// Marks the client blocked.
    pub fn set_blocked(&self) {
        self.flags.fetch_or(flag::BLOCKED, Ordering::SeqCst);
    }

    /// Clears the blocked mark; true if this call cleared it (exactly one of the connection ending its
    /// wait and `CLIENT UNBLOCK` does).
    pub fn clear_blocked(&self) -> bool {
        self.flags.fetch_and(!flag::BLOCKED, Ordering::SeqCst) & flag::BLOCKED != 0
    }

    /// Takes a pending unblock request.
    pub fn take_unblock(&self) -> Option<UnblockMode> {
        match self.unblock.swap(0, Ordering::SeqCst) {
            1 => Some(UnblockMode::Timeout),
            2 => Some(UnblockMode::Error),
            _ => None,
        }
    }

    /// Whether this is a pub/sub client (subscribed to anything).
    pub fn is_pubsub(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Records the query buffer after a read: the bytes it holds (CLIENT LIST's `qbuf`), the memory it
    /// takes (`allocated`, in `tot-mem` and the clients' total: more than `bytes` while a large argument
    /// is awaited, whose whole size is set aside, as Redis allocates it) and its free space (`qbuf-free`).
    pub fn set_query_buffer(&self, bytes: usize, allocated: usize, free: usize) {
        self.qbuf.store(bytes, Ordering::Relaxed);
        self.qbuf_free.store(free, Ordering::Relaxed);
        let allocated = allocated.max(bytes);
        let old = self.qbuf_counted.swap(allocated, Ordering::Relaxed);
        if old != allocated && !self.memory_released.load(Ordering::Relaxed) {
            self.memory_total
                .bytes
                .fetch_add(allocated as i64 - old as i64, Ordering::Relaxed);
        }
    }

    /// Records the query buffer as a command starts: `bytes`, its own arguments included (CLIENT LIST's
    /// `qbuf`). A request that the last read completed was not in the clients' total yet: it is counted
    /// now, before the command runs, so `maxmemory-clients` sees a big argv as Redis does (its `argv-mem`).
    pub fn note_request(&self, bytes: usize) {
        self.qbuf.store(bytes, Ordering::Relaxed);
        if bytes > self.qbuf_counted.load(Ordering::Relaxed) {
            let old = self.qbuf_counted.swap(bytes, Ordering::Relaxed);
            if !self.memory_released.load(Ordering::Relaxed) {
                self.memory_total
                    .bytes
                    .fetch_add(bytes as i64 - old as i64, Ordering::Relaxed);
            }
        }
    }

    /// Adds `bytes` of unsent output (replies being written, pub/sub messages queued); returns the
    /// client's new `omem`.
    pub fn add_output(&self, bytes: usize) -> usize {
        if !self.memory_released.load(Ordering::Relaxed) {
            self.memory_total
                .bytes
                .fetch_add(bytes as i64, Ordering::Relaxed);
        }
        self.omem.fetch_add(bytes, Ordering::Relaxed) + bytes
    }

    /// Removes `bytes` of output once written (or dropped).
    pub fn sub_output(&self, bytes: usize) {
        if !self.memory_released.load(Ordering::Relaxed) {
            self.memory_total
                .bytes
                .fetch_sub(bytes as i64, Ordering::Relaxed);
        }
        self.omem.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Takes this client's memory off the service's total now, as Redis frees an evicted client at once
    /// (the connection closes a moment later). Returns the bytes released (its reply buffer included).
    pub fn release_memory(&self) -> usize {
        if self.memory_released.swap(true, Ordering::Relaxed) {
            return 0;
        }
        let held = self.buffer_bytes();
        self.memory_total
            .bytes
            .fetch_sub(held as i64, Ordering::Relaxed);
        self.memory_total.clients.fetch_sub(1, Ordering::Relaxed);
        held + REPLY_BUFFER_BYTES
    }

    /// Records what the connection's state takes (see [`state_memory`]).
    pub fn set_state_memory(&self, bytes: usize) {
        Self::set_counted(
            &self.state_mem,
            bytes,
            &self.memory_total,
            &self.memory_released,
        );
    }

    /// Records what the client's tracking prefixes take.
    pub fn set_prefix_memory(&self, bytes: usize) {
        Self::set_counted(
            &self.prefix_mem,
            bytes,
            &self.memory_total,
            &self.memory_released,
        );
    }

    fn set_counted(slot: &AtomicUsize, bytes: usize, total: &ClientMemory, released: &AtomicBool) {
        if slot.load(Ordering::Relaxed) == bytes {
            return;
        }
        let old = slot.swap(bytes, Ordering::Relaxed);
        if !released.load(Ordering::Relaxed) {
            total
                .bytes
                .fetch_add(bytes as i64 - old as i64, Ordering::Relaxed);
        }
    }

    /// The memory counted for the client besides its reply buffer: query buffer, unsent output, and
    /// what its WATCHes, subscriptions, MULTI queue and tracking prefixes take.
    pub fn buffer_bytes(&self) -> usize {
        self.qbuf_counted.load(Ordering::Relaxed)
            + self.omem.load(Ordering::Relaxed)
            + self.state_mem.load(Ordering::Relaxed)
            + self.prefix_mem.load(Ordering::Relaxed)
    }

    /// The memory the client holds as Redis counts it (CLIENT LIST's `tot-mem`, what client eviction
    /// compares): its buffers and its reply buffer.
    pub fn total_memory(&self) -> usize {
        self.buffer_bytes() + REPLY_BUFFER_BYTES
    }

    /// Closes the connection as soon as possible.
    pub fn close(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.cancel();
    }

    /// Whether the connection was told to close. A lock-free read, for the per-command check (the
    /// token's own `is_cancelled` takes a mutex).
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// The line `CLIENT LIST` and `CLIENT INFO` show, without the trailing newline.
    pub fn info_line(&self, command_name: &str) -> String {
        let names = self.names.lock().clone();
        let show = |b: &Option<Bytes>| {
            b.as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default()
        };
        let age_us = self.age_us();
        let idle_us = age_us.saturating_sub(self.last_active_us.load(Ordering::Relaxed));
        let f = self.flags.load(Ordering::Relaxed);
        let mut flags = String::new();
        if f & flag::BLOCKED != 0 {
            flags.push('b');
        }
        if f & flag::CLOSE_AFTER_REPLY != 0 || self.is_killed() {
            flags.push('c');
        }
        if f & flag::NO_EVICT != 0 {
            flags.push('e');
        }
        if self.is_pubsub() {
            flags.push('P');
        }
        if f & flag::NO_TOUCH != 0 {
            flags.push('T');
        }
        if f & flag::MULTI != 0 {
            flags.push('x');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let qbuf = self.qbuf.load(Ordering::Relaxed);
        let omem = self.omem.load(Ordering::Relaxed);
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} \
             multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem={} rbs=16384 rbp=0 obl=0 oll=0 omem={} \
             tot-mem={} events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.peer,
            self.local.map(|a| a.to_string()).unwrap_or_default(),
            show(&names.name),
            age_us / 1_000_000,
            idle_us / 1_000_000,
            flags,
            self.db.load(Ordering::Relaxed),
            self.sub.load(Ordering::Relaxed),
            self.psub.load(Ordering::Relaxed),
            self.ssub.load(Ordering::Relaxed),
            self.multi.load(Ordering::Relaxed),
            qbuf,
            self.qbuf_free.load(Ordering::Relaxed),
            self.multi_mem.load(Ordering::Relaxed),
            omem,
            self.total_memory(),
            command_name,
            String::from_utf8_lossy(&names.user),
            self.resp.load(Ordering::Relaxed),
            show(&names.lib_name),
            show(&names.lib_ver),
        )
    }
}

/// What a connection's own state takes, as Redis's `getClientMemoryUsage` counts it (its figures for a
/// 64-bit build): a list node and a `watchedKey` per WATCHed key, a dictionary entry and slot per
/// channel or shard channel, a list node per pattern, and the MULTI queue ([`multi_memory`]).
pub fn state_memory(watched: usize, channels: usize, patterns: usize, multi: usize) -> usize {
    watched * 56 + channels * 32 + patterns * 24 + multi
}

/// What a MULTI queue takes: each command's arguments with an object header each (`multi_arg_bytes`),
/// plus a queue entry per command.
pub fn multi_memory(multi_commands: usize, multi_arg_bytes: usize) -> usize {
    multi_commands * 24 + multi_arg_bytes
}

/// What one tracking prefix takes: its bytes and a radix-tree node.
pub fn prefix_memory(prefix: &[u8]) -> usize {
    prefix.len() + 32
}

/// What every client holds besides its buffers, counted in its `tot-mem`: Redis's 16 KiB reply buffer
/// (CLIENT LIST's `rbs`), which a connection has from its start.
pub const REPLY_BUFFER_BYTES: usize = 16 * 1024;

/// Every live connection by id.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    clients: RwLock<BTreeMap<u64, Arc<ClientHandle>>>,
}

impl ClientRegistry {
    /// Adds a connection.
    pub fn insert(&self, handle: Arc<ClientHandle>) {
        self.clients.write().insert(handle.id, handle);
    }

    /// Removes a connection.
    pub fn remove(&self, id: u64) {
        self.clients.write().remove(&id);
    }

    /// One connection.
    pub fn get(&self, id: u64) -> Option<Arc<ClientHandle>> {
        self.clients.read().get(&id).cloned()
    }

    /// Every connection, by increasing id.
    pub fn all(&self) -> Vec<Arc<ClientHandle>> {
        self.clients.read().values().cloned().collect()
    }

    /// Number of connections matching `pred`.
    pub fn count(&self, pred: impl Fn(&ClientHandle) -> bool) -> usize {
        self.clients.read().values().filter(|c| pred(c)).count()
    }
}

/// `CLIENT PAUSE`: until a deadline, commands that write (or all commands) wait before they run.
#[derive(Debug, Default)]
pub struct Pause {
    state: Mutex<Option<(Instant, bool)>>,
    active: AtomicBool,
    notify: Notify,
}

impl Pause {
    /// Pauses writes (or every command, with `all`) until `until`.
    pub fn pause(&self, until: Instant, all: bool) {
        *self.state.lock() = Some((until, all));
        self.active.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// `CLIENT UNPAUSE`.
    pub fn unpause(&self) {
        *self.state.lock() = None;
        self.active.store(false, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a pause may be in effect (one relaxed load: the connection's fast path).
    pub fn maybe_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// When a command (a write, or not) may run again; `None` if it may run now.
    pub fn paused_until(&self, is_write: bool) -> Option<Instant> {
        let mut state = self.state.lock();
        match *state {
            Some((until, _)) if until <= Instant::now() => {
                *state = None;
                self.active.store(false, Ordering::SeqCst);
                None
            }
            Some((until, all)) if all || is_write => Some(until),
            _ => None,
        }
    }

    /// Waits while a pause holds back this command (a write, or not).
    pub async fn wait_while_paused(&self, is_write: bool) {
        loop {
            let changed = self.notify.notified();
            tokio::pin!(changed);
            // Registered before the check, so an UNPAUSE right after it is not missed.
            changed.as_mut().enable();
            let Some(until) = self.paused_until(is_write) else {
                return;
            };
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }
}

/// Clients that ran MONITOR: each executed command is sent to them as a line.
#[derive(Debug, Default)]
pub struct Monitors {
    list: RwLock<Vec<Arc<ClientHandle>>>,
    active: AtomicBool,
}

impl Monitors {
    /// Adds a monitoring client.
    pub fn add(&self, client: Arc<ClientHandle>) {
        let mut list = self.list.write();
        if !list.iter().any(|c| c.id == client.id) {
            list.push(client);
        }
        self.active.store(true, Ordering::Release);
    }

    /// Removes a client (when it disconnects).
    pub fn remove(&self, id: u64) {
        if !self.any() {
            return;
        }
        let mut list = self.list.write();
        list.retain(|c| c.id != id);
        self.active.store(!list.is_empty(), Ordering::Release);
    }

    /// Whether anyone monitors (one relaxed load: dispatch's fast path).
    pub fn any(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Sends a command to every monitor, in Redis's format:
    /// `1339518083.107412 [0 127.0.0.1:60866] "keys" "*"`.
    pub fn feed(&self, pubsub: &crate::pubsub::PubSub, db: usize, peer: SocketAddr, args: &[Arg]) {
        self.feed_from(pubsub, db, &peer.to_string(), args);
    }

    /// Like [`Monitors::feed`], naming the source as given (`lua` for commands a script calls).
    pub fn feed_from(&self, pubsub: &crate::pubsub::PubSub, db: usize, source: &str, args: &[Arg]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut line = format!(
            "{}.{:06} [{db} {source}]",
            now.as_secs(),
            now.subsec_micros()
        );
        for a in args {
            line.push(' ');
            quote(&mut line, a);
        }
        let payload = Bytes::from(line);
        for c in self.list.read().iter() {
            pubsub.deliver(
                c,
                Message {
                    pattern: None,
                    channel: Bytes::new(),
                    payload: payload.clone(),
                    shard: false,
                    monitor: true,
                    frame: None,
                },
            );
        }
    }
}

/// Appends `bytes` in double quotes with Redis's escapes (`\"`, `\\`, `\n`, `\xHH`, ...).
fn quote(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            b if b.is_ascii_graphic() || b == b' ' => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
}
