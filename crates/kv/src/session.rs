//! Per-connection state.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use strata_resp::{Frame, ProtocolVersion};

use crate::Shared;
use crate::blocking::BlockRequest;
use crate::clients::{ClientHandle, flag};
use crate::pubsub;

/// One client connection's state: who it is, which database it uses, which protocol it speaks.
#[derive(Debug)]
pub struct Session {
    /// `CLIENT ID`: unique and increasing for the life of the process.
    pub id: u64,
    /// The peer address.
    pub peer: SocketAddr,
    /// What other connections see of this one (`CLIENT LIST`, `CLIENT KILL`, PUBLISH).
    pub handle: Arc<ClientHandle>,
    /// The selected database.
    pub db: usize,
    /// RESP2 until `HELLO 3`.
    pub protocol: ProtocolVersion,
    /// Whether `AUTH` succeeded (or no password is configured).
    pub authenticated: bool,
    /// The ACL user this connection runs as (`default` until `AUTH` names another), as of
    /// `acl_generation`; dispatch fetches it again when the user table has changed since.
    pub user: Arc<crate::acl::User>,
    /// [`crate::acl::Acl::generation`] when `user` was fetched.
    pub acl_generation: u64,
    /// `user` allows every command, key and channel: dispatch checks nothing.
    pub acl_unrestricted: bool,
    /// Set by `QUIT`: close after the reply is written.
    pub closing: bool,
    /// The command's reply would pass the output buffer hard limit: close without it.
    pub over_output_limit: bool,
    /// Set by `SHUTDOWN`: close at once, without the reply (as Redis's process exits before answering).
    pub shutting_down: bool,
    /// The error this command is about to reply was already counted in the error statistics where it
    /// happened (a script's `redis.call`), so only the command's `failed_calls` counts it.
    pub error_counted: bool,
    /// When the connection was accepted.
    pub connected_at: Instant,
    /// When the last command arrived.
    pub last_command_at: Instant,
    /// When the previous command ended, while the connection runs buffered commands back to back: the
    /// next one starts then instead of reading the clock again. The connection clears it whenever it
    /// waits.
    pub clock_hint: Option<Instant>,
    /// When the command being run started (set as it starts, taken by a script to time its run without
    /// reading the clock again).
    pub command_start: Option<Instant>,
    /// The name of the last command run (`CLIENT LIST`'s `cmd=`).
    pub last_command: &'static str,
    /// Commands queued since MULTI; `None` outside a transaction.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// Whether a command was refused while queueing (EXEC then aborts with EXECABORT).
    pub multi_failed: bool,
    /// Bytes the MULTI queue's arguments take (each with an object header), for the client's memory.
    pub multi_bytes: usize,
    /// WATCHed keys: database, key, the key's write counter when watched, and whether it existed then
    /// (a key that existed and is gone at EXEC without a write has expired: that counts as a change).
    pub watched: Vec<(usize, Bytes, u64, bool)>,
    /// Set by a blocking command that found nothing to do: the connection waits, then runs it again.
    pub block: Option<BlockRequest>,
    /// True while EXEC runs the queue: blocking commands then behave as their non-blocking forms.
    pub in_exec: bool,
    /// True while a blocked command is re-run after a wake-up: a key of the wrong type then does not
    /// fail the command (Redis keeps such a client blocked).
    pub retrying_block: bool,
    /// For the scripts' own client: the client whose EVAL/FCALL is running (tracking's NOLOOP treats
    /// the script's writes as that client's, as Redis does).
    pub script_caller: Option<u64>,
    /// The IDs (ms, seq) a blocked XREAD resolved its `$` arguments to, so its retries keep them.
    pub stream_ids: Option<Vec<(u64, u64)>>,
    /// SUBSCRIBE channels.
    pub channels: BTreeSet<Bytes>,
    /// PSUBSCRIBE patterns.
    pub patterns: BTreeSet<Bytes>,
    /// SSUBSCRIBE shard channels.
    pub shard_channels: BTreeSet<Bytes>,
    /// Frames to write before the command's own reply (SUBSCRIBE confirms each channel separately).
    pub extra_replies: Vec<Frame>,
    /// Blocked clients this client's writes woke; its reply waits until they have retried (Redis
    /// serves them inside the write).
    pub woken: Vec<crate::blocking::Woken>,
    /// `CLIENT REPLY OFF`: replies are not sent (pub/sub confirmations and messages still are).
    pub reply_off: bool,
    /// Replies still to drop for `CLIENT REPLY SKIP` (its own and the next command's).
    pub skip_replies: u8,
    /// Whether the connection ran MONITOR.
    pub monitoring: bool,
    /// Client-side caching mode (`CLIENT TRACKING`).
    pub tracking: crate::tracking::Local,
}

impl Session {
    /// A fresh session for a new connection, running as `user` (the user table's `generation` then);
    /// `authenticated` when no password is required now.
    pub fn new(
        handle: Arc<ClientHandle>,
        authenticated: bool,
        user: Arc<crate::acl::User>,
        generation: u64,
    ) -> Self {
        let now = Instant::now();
        let acl_unrestricted = user.unrestricted();
        Session {
            id: handle.id,
            peer: handle.peer,
            handle,
            db: 0,
            protocol: ProtocolVersion::Resp2,
            authenticated,
            user,
            acl_generation: generation,
            acl_unrestricted,
            closing: false,
            over_output_limit: false,
            shutting_down: false,
            error_counted: false,
            connected_at: now,
            last_command_at: now,
            clock_hint: None,
            command_start: None,
            last_command: "NULL",
            multi: None,
            multi_failed: false,
            multi_bytes: 0,
            watched: Vec::new(),
            block: None,
            in_exec: false,
            retrying_block: false,
            script_caller: None,
            stream_ids: None,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shard_channels: BTreeSet::new(),
            extra_replies: Vec::new(),
            woken: Vec::new(),
            reply_off: false,
            skip_replies: 0,
            monitoring: false,
            tracking: crate::tracking::Local::default(),
        }
    }

    /// The connection's name (`CLIENT SETNAME`).
    pub fn name(&self) -> Option<Bytes> {
        self.handle.names.lock().name.clone()
    }

    /// Sets or clears the connection's name.
    pub fn set_name(&self, name: Option<Bytes>) {
        self.handle.names.lock().name = name;
    }

    /// Asks the connection to wait for `request` and then run the command again. Inside EXEC there is
    /// no waiting: the caller gets the timeout reply back to return at once.
    pub fn block_on(&mut self, request: BlockRequest) -> Frame {
        if self.in_exec || self.multi.is_some() {
            return request.timeout_reply;
        }
        self.block = Some(request);
        // Not sent: the connection replies once the wait ends.
        Frame::Null
    }

    /// Number of subscriptions of every kind (what SUBSCRIBE replies count).
    pub fn subscription_count(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shard_channels.len()
    }

    /// Whether the connection is in RESP2 subscribed mode, where only pub/sub commands are allowed.
    pub fn in_resp2_pubsub_mode(&self) -> bool {
        self.protocol == ProtocolVersion::Resp2 && self.subscription_count() > 0
    }

    /// Publishes the state `CLIENT LIST` shows into the handle.
    pub fn publish_state(&self) {
        let h = &self.handle;
        h.db.store(self.db, Ordering::Relaxed);
        h.resp.store(
            match self.protocol {
                ProtocolVersion::Resp2 => 2,
                ProtocolVersion::Resp3 => 3,
            },
            Ordering::Relaxed,
        );
        h.multi.store(
            self.multi.as_ref().map_or(-1, |q| q.len() as i64),
            Ordering::Relaxed,
        );
        h.set_flag(flag::MULTI, self.multi.is_some());
        h.sub.store(self.channels.len(), Ordering::Relaxed);
        h.psub.store(self.patterns.len(), Ordering::Relaxed);
        h.ssub.store(self.shard_channels.len(), Ordering::Relaxed);
        h.subscribed
            .store(self.subscription_count() > 0, Ordering::Relaxed);
        let (queued, queued_bytes) = self
            .multi
            .as_ref()
            .map_or((0, 0), |q| (q.len(), self.multi_bytes));
        let multi = crate::clients::multi_memory(queued, queued_bytes);
        h.multi_mem.store(multi, Ordering::Relaxed);
        h.set_state_memory(crate::clients::state_memory(
            self.watched.len(),
            self.channels.len() + self.shard_channels.len(),
            self.patterns.len(),
            multi,
        ));
    }

    /// Leaves any transaction and drops every WATCH.
    pub fn end_transaction(&mut self, keyspace: &crate::Keyspace) {
        self.multi = None;
        self.multi_failed = false;
        for (db, key, ..) in self.watched.drain(..) {
            keyspace.unwatch(db, &key);
        }
    }

    /// Drops every subscription (connection end, RESET).
    pub fn unsubscribe_all(&mut self, shared: &Shared) {
        for c in std::mem::take(&mut self.channels) {
            shared
                .pubsub
                .unsubscribe(pubsub::Kind::Channel, &c, self.id);
        }
        for p in std::mem::take(&mut self.patterns) {
            shared
                .pubsub
                .unsubscribe(pubsub::Kind::Pattern, &p, self.id);
        }
        for c in std::mem::take(&mut self.shard_channels) {
            shared.pubsub.unsubscribe(pubsub::Kind::Shard, &c, self.id);
        }
    }

    /// `RESET`: back to the state of a new connection, keeping the identity.
    pub fn reset(&mut self, shared: &Shared) {
        self.end_transaction(&shared.keyspace);
        self.unsubscribe_all(shared);
        self.set_name(None);
        self.db = 0;
        self.protocol = ProtocolVersion::Resp2;
        self.authenticated = !shared.auth_required();
        self.user = shared.acl.default_user();
        self.acl_generation = shared.acl.generation();
        self.acl_unrestricted = self.user.unrestricted();
        self.handle.names.lock().user = bytes::Bytes::from_static(crate::acl::DEFAULT_USER);
        self.reply_off = false;
        self.skip_replies = 0;
        if self.monitoring {
            shared.monitors.remove(self.id);
            self.monitoring = false;
        }
        self.handle.set_flag(flag::NO_EVICT | flag::NO_TOUCH, false);
        if self.tracking.on {
            shared.tracking.disable(self.id);
        }
        self.tracking = crate::tracking::Local::default();
    }

    /// The line `CLIENT LIST` and `CLIENT INFO` show for this connection.
    pub fn info_line(&self) -> String {
        self.publish_state();
        self.handle.info_line(self.last_command)
    }

    /// Whether the reply of the command just run is to be sent (`CLIENT REPLY`), and counts a skipped
    /// reply. Pub/sub confirmations are always sent, as Redis pushes them.
    pub fn take_reply_permission(&mut self, command: &[u8]) -> bool {
        let skipping = self.skip_replies > 0;
        if skipping {
            self.skip_replies -= 1;
        }
        let pubsub = [
            &b"subscribe"[..],
            b"psubscribe",
            b"ssubscribe",
            b"unsubscribe",
            b"punsubscribe",
            b"sunsubscribe",
        ]
        .iter()
        .any(|c| command.eq_ignore_ascii_case(c));
        pubsub || !(self.reply_off || skipping)
    }
}
