//! Queues, consumers and the per-connection output they deliver into.
//!
//! Delivery is push-based and runs in whichever task made progress possible (a publish, an ack, a new
//! consumer, a drained socket): [`Queue::dispatch`] takes the queue's lock, picks consumers with credit
//! (highest priority first, round-robin among equals) and encodes `basic.deliver` + content straight into the
//! consumer connection's [`Outbound`] buffer, which that connection's writer task flushes in one write when it
//! wakes. There is no task per queue and no channel hop per message.
//!
//! Lock order: queue state → channel's unacked log → connection output buffer. Nothing takes a queue lock
//! while holding a channel's or an output lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use amq_protocol::protocol::{AMQPClass, basic};
use amq_protocol::types::{FieldTable, ShortString};
use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::codec;
use crate::message::Message;
use crate::paging::{
    CONSUMER_WINDOW_BYTES, PAGE_IN_BYTES, PAGE_IN_MAX, Page, PageAt, Pager, REFILL_BATCH,
    REFILL_LOW, Spill,
};
use crate::policy::Policy;

/// Output bytes above which no more deliveries are encoded for a connection until its writer drains them
/// (back-pressure for consumers without prefetch limits).
pub const OUTPUT_HIGH_WATER_BYTES: usize = 1 << 20;

/// A connection's pending output, shared by its own reader and by every queue delivering to it.
#[derive(Debug)]
pub struct Outbound {
    buf: Mutex<BytesMut>,
    len: AtomicUsize,
    notify: Notify,
    frame_max: AtomicU32,
    closed: AtomicBool,
    stalled: Mutex<Vec<Weak<Queue>>>,
}

impl Outbound {
    /// An empty output for a connection.
    pub fn new(frame_max: u32) -> Arc<Outbound> {
        Arc::new(Outbound {
            buf: Mutex::new(BytesMut::with_capacity(16 << 10)),
            len: AtomicUsize::new(0),
            notify: Notify::new(),
            frame_max: AtomicU32::new(frame_max),
            closed: AtomicBool::new(false),
            stalled: Mutex::new(Vec::new()),
        })
    }

    /// Appends bytes through `f` and wakes the writer.
    pub fn write<R>(&self, f: impl FnOnce(&mut BytesMut, u32) -> R) -> R {
        let mut buf = self.buf.lock();
        let r = f(&mut buf, self.frame_max.load(Ordering::Relaxed));
        self.len.store(buf.len(), Ordering::Release);
        drop(buf);
        self.notify.notify_one();
        r
    }

    /// Appends a method frame.
    pub fn method(&self, channel: u16, class: AMQPClass) {
        self.write(|b, _| codec::put_method(b, channel, class));
    }

    /// Swaps everything pending into `spare` (the writer calls this with its emptied buffer, so the two
    /// buffers alternate and a flush allocates nothing).
    pub fn take_into(&self, spare: &mut BytesMut) {
        debug_assert!(spare.is_empty());
        let mut buf = self.buf.lock();
        self.len.store(0, Ordering::Release);
        std::mem::swap(&mut *buf, spare);
    }

    /// Waits until something is pending.
    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Sets the negotiated frame_max.
    pub fn set_frame_max(&self, frame_max: u32) {
        self.frame_max.store(frame_max, Ordering::Relaxed);
    }

    /// Whether the buffer is over the high-water mark.
    pub fn is_full(&self) -> bool {
        self.len.load(Ordering::Acquire) > OUTPUT_HIGH_WATER_BYTES
    }

    /// Marks the connection gone: queues stop delivering to it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Whether `queue` must skip this connection's consumers because its output is full; if so, the queue
    /// is remembered and dispatched again after the next write. The fullness is checked again after
    /// registering, so a writer that drained the buffer in between (and already ran its kick) cannot leave
    /// the queue waiting for a write that never comes.
    fn stalls(&self, queue: &Arc<Queue>) -> bool {
        if !self.is_full() {
            return false;
        }
        {
            let mut s = self.stalled.lock();
            if !s.iter().any(|w| w.as_ptr() == Arc::as_ptr(queue)) {
                s.push(Arc::downgrade(queue));
            }
        }
        self.is_full()
    }

    /// Re-runs dispatch of the queues that stalled on this output (the writer calls this after a write).
    pub fn kick_stalled(&self) {
        let queues: Vec<Weak<Queue>> = std::mem::take(&mut *self.stalled.lock());
        for q in queues.iter().filter_map(Weak::upgrade) {
            q.dispatch();
        }
    }
}

/// A delivery awaiting acknowledgement.
#[derive(Debug)]
pub struct Pending {
    /// The delivery tag.
    pub tag: u64,
    /// The queue it came from.
    pub queue: Arc<Queue>,
    /// The message and its queue bookkeeping.
    pub entry: Entry,
    /// The consumer it went to (`None` for basic.get).
    pub consumer: Option<Arc<Consumer>>,
}

/// A channel's delivery tags and unacknowledged deliveries, in tag order.
#[derive(Debug, Default)]
pub struct Unacked {
    /// The last delivery tag given.
    pub last_tag: u64,
    /// Unacknowledged deliveries, ascending by tag.
    pub pending: VecDeque<Pending>,
}

/// What queues see of a channel.
#[derive(Debug)]
pub struct ChannelShared {
    /// The channel number.
    pub id: u16,
    /// The connection's output.
    pub out: Arc<Outbound>,
    /// channel.flow: false stops deliveries.
    pub flow_active: AtomicBool,
    /// Set when the channel closes: queues skip its consumers.
    pub closed: AtomicBool,
    /// basic.qos with global=true: the limit shared by the channel's consumers (0 = none).
    pub channel_prefetch: AtomicU32,
    /// Unacknowledged deliveries on the channel.
    pub unacked_count: AtomicU32,
    /// Delivery tags and pending acknowledgements.
    pub unacked: Mutex<Unacked>,
}

impl ChannelShared {
    /// A new open channel.
    pub fn new(id: u16, out: Arc<Outbound>) -> Arc<ChannelShared> {
        Arc::new(ChannelShared {
            id,
            out,
            flow_active: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            channel_prefetch: AtomicU32::new(0),
            unacked_count: AtomicU32::new(0),
            unacked: Mutex::new(Unacked::default()),
        })
    }
}

/// A basic.consume subscription.
#[derive(Debug)]
pub struct Consumer {
    /// The consumer tag.
    pub tag: String,
    /// Its channel.
    pub channel: Arc<ChannelShared>,
    /// Deliveries need no acknowledgement.
    pub no_ack: bool,
    /// Exclusive consumer.
    pub exclusive: bool,
    /// `x-priority`.
    pub priority: i64,
    /// Per-consumer prefetch (basic.qos global=false at consume time; 0 = none).
    pub prefetch: u32,
    /// Unacknowledged deliveries to this consumer.
    pub unacked: AtomicU32,
    /// Set when cancelled.
    pub cancelled: AtomicBool,
}

impl Consumer {
    fn has_credit(&self) -> bool {
        let ch = &self.channel;
        if self.cancelled.load(Ordering::Relaxed)
            || ch.closed.load(Ordering::Relaxed)
            || !ch.flow_active.load(Ordering::Relaxed)
            || ch.out.is_closed()
        {
            return false;
        }
        if self.no_ack {
            return true;
        }
        let own = self.prefetch == 0 || self.unacked.load(Ordering::Relaxed) < self.prefetch;
        let global = ch.channel_prefetch.load(Ordering::Relaxed);
        own && (global == 0 || ch.unacked_count.load(Ordering::Relaxed) < global)
    }
}

/// A message in a queue.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The message.
    pub msg: Arc<Message>,
    /// Whether it was delivered before.
    pub redelivered: bool,
    /// Its key in the durable message tree, if stored.
    pub store_seq: Option<u64>,
    /// When it expires (Unix milliseconds; 0 = never). Set when it enters the queue.
    pub expires_at_ms: u64,
    /// How often it was returned to the queue (nack/reject with requeue, channel or connection loss).
    pub returns: u32,
    /// Where its body lives when paged out (`msg` then has an empty body). Boxed: an entry that is not
    /// paged pays one pointer for it.
    pub page: Option<Box<Page>>,
}

impl Entry {
    /// A new entry for `msg`.
    pub fn new(msg: Arc<Message>, store_seq: Option<u64>) -> Entry {
        Entry {
            msg,
            redelivered: false,
            store_seq,
            expires_at_ms: 0,
            returns: 0,
            page: None,
        }
    }

    /// Its size as the length limits count it (body included, paged or not).
    pub fn size_bytes(&self) -> usize {
        self.msg.size_bytes() + self.page.as_ref().map_or(0, |p| p.len as usize)
    }

    /// Bytes it holds in memory.
    pub fn resident_bytes(&self) -> usize {
        self.msg.size_bytes()
            + self
                .page
                .as_ref()
                .and_then(|p| p.loaded.as_ref())
                .map_or(0, Bytes::len)
    }

    /// Whether its body is paged out and not read back yet.
    pub fn needs_load(&self) -> bool {
        self.page.as_ref().is_some_and(|p| p.loaded.is_none())
    }

    /// Its page id in the paging tree, if it has one.
    pub fn page_id(&self) -> Option<u64> {
        match self.page.as_ref()?.at {
            PageAt::Page(id) => Some(id),
            PageAt::Stored(_) => None,
        }
    }

    /// The body to deliver: in memory, or read back (`None` if paged and not read back).
    pub fn body(&self) -> Option<&Bytes> {
        match &self.page {
            None => Some(&self.msg.body),
            Some(p) => p.loaded.as_ref(),
        }
    }

    /// The whole message (body included when it is in memory or read back).
    pub fn full_message(&self) -> Arc<Message> {
        match self.page.as_ref().and_then(|p| p.loaded.as_ref()) {
            Some(body) => Arc::new(Message {
                body: body.clone(),
                ..(*self.msg).clone()
            }),
            None => self.msg.clone(),
        }
    }

    /// Drops a read-back body (after delivery: the page stays the copy).
    fn unload(&mut self) {
        if let Some(p) = self.page.as_mut() {
            p.loaded = None;
        }
    }

    fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && now_ms > self.expires_at_ms
    }
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Why a consumer could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeRefusal {
    /// The queue has an exclusive consumer, or has consumers and an exclusive one was asked for.
    ExclusiveInUse,
}

/// What happens when a queue is full (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest message.
    #[default]
    DropHead,
    /// Refuse the new message (publisher gets basic.nack).
    RejectPublish,
    /// Refuse the new message and dead-letter it.
    RejectPublishDlx,
}

/// Why a message was dead-lettered (the `reason` of its `x-death` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// basic.reject / basic.nack without requeue.
    Rejected,
    /// Its TTL passed.
    Expired,
    /// The queue's length limit pushed it out.
    MaxLen,
    /// It was returned more often than `x-delivery-limit`.
    DeliveryLimit,
}

impl DeathReason {
    /// RabbitMQ's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::MaxLen => "maxlen",
            Self::DeliveryLimit => "delivery_limit",
        }
    }
}

/// The queue arguments the broker acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueArgs {
    /// `x-message-ttl`.
    pub message_ttl_ms: Option<u64>,
    /// `x-expires`: delete the queue after this long unused.
    pub expires_ms: Option<u64>,
    /// `x-max-length`.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`.
    pub max_length_bytes: Option<u64>,
    /// `x-overflow`.
    pub overflow: Overflow,
    /// `x-dead-letter-exchange`.
    pub dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<String>,
    /// `x-max-priority` (0: not a priority queue).
    pub max_priority: u8,
    /// `x-single-active-consumer`.
    pub single_active_consumer: bool,
    /// `x-delivery-limit`.
    pub delivery_limit: Option<u64>,
}

impl QueueArgs {
    /// Reads the arguments; `Err(name)` names the first invalid one.
    pub fn parse(args: &FieldTable) -> Result<QueueArgs, &'static str> {
        use crate::message::{int_arg, str_arg};
        let t = args.inner();
        let uint = |k: &'static str| -> Result<Option<u64>, &'static str> {
            match t.get(k) {
                None => Ok(None),
                Some(v) => int_arg(v)
                    .and_then(|i| u64::try_from(i).ok())
                    .map(Some)
                    .ok_or(k),
            }
        };
        let overflow = match t.get("x-overflow").map(str_arg) {
            None => Overflow::DropHead,
            Some(Some(s)) if s == "drop-head" => Overflow::DropHead,
            Some(Some(s)) if s == "reject-publish" => Overflow::RejectPublish,
            Some(Some(s)) if s == "reject-publish-dlx" => Overflow::RejectPublishDlx,
            Some(_) => return Err("x-overflow"),
        };
        let max_priority = match uint("x-max-priority")? {
            None => 0,
            Some(p) => u8::try_from(p)
                .ok()
                .filter(|p| *p >= 1)
                .ok_or("x-max-priority")?,
        };
        let expires_ms = uint("x-expires")?;
        if expires_ms == Some(0) {
            return Err("x-expires");
        }
        Ok(QueueArgs {
            message_ttl_ms: uint("x-message-ttl")?,
            expires_ms,
            max_length: uint("x-max-length")?,
            max_length_bytes: uint("x-max-length-bytes")?,
            overflow,
            dead_letter_exchange: t.get("x-dead-letter-exchange").and_then(str_arg),
            dead_letter_routing_key: t.get("x-dead-letter-routing-key").and_then(str_arg),
            max_priority,
            single_active_consumer: t
                .get("x-single-active-consumer")
                .is_some_and(|v| matches!(v, amq_protocol::types::AMQPValue::Boolean(true))),
            delivery_limit: uint("x-delivery-limit")?,
        })
    }
}

/// What a queue acts on now: its declared arguments combined with the policy and operator policy that
/// match it (see [`crate::policy::effective_queue_args`]). Replaced whole when a policy changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effective {
    /// The effective limits and dead-lettering settings.
    pub args: QueueArgs,
    /// The policy that applies, if any.
    pub policy: Option<Arc<Policy>>,
    /// The operator policy that applies, if any.
    pub operator_policy: Option<Arc<Policy>>,
}

impl Overflow {
    fn to_u8(self) -> u8 {
        match self {
            Self::DropHead => 0,
            Self::RejectPublish => 1,
            Self::RejectPublishDlx => 2,
        }
    }

    fn from_u8(v: u8) -> Overflow {
        match v {
            1 => Self::RejectPublish,
            2 => Self::RejectPublishDlx,
            _ => Self::DropHead,
        }
    }
}

/// Ready messages, one FIFO per priority level (a single level unless `x-max-priority` is set).
#[derive(Debug, Default)]
struct QueueState {
    levels: Vec<VecDeque<Entry>>,
    len: usize,
    /// Logical bytes (paged bodies included), for the length limits.
    bytes: usize,
    /// Bytes held in memory.
    resident: usize,
    /// Entries whose body is paged out, and their body bytes.
    paged: usize,
    paged_bytes: usize,
    /// The tail of a very deep single-level queue, in storage (counted in `len` and `bytes`).
    spill: Spill,
    consumers: Vec<Arc<Consumer>>,
    next_consumer: usize,
    had_consumer: bool,
}

impl QueueState {
    fn level_of(&self, e: &Entry) -> usize {
        let top = self.levels.len().saturating_sub(1);
        usize::from(e.msg.priority()).min(top)
    }

    fn count_in(&mut self, e: &Entry) {
        self.count_in_spilled(e);
        self.resident += e.resident_bytes();
    }

    /// Counts an entry that is not in memory.
    fn count_in_spilled(&mut self, e: &Entry) {
        self.len += 1;
        self.bytes += e.size_bytes();
        if let Some(p) = &e.page {
            self.paged += 1;
            self.paged_bytes += p.len as usize;
        }
    }

    fn count_out(&mut self, e: &Entry) {
        self.len -= 1;
        self.bytes = self.bytes.saturating_sub(e.size_bytes());
        self.resident = self.resident.saturating_sub(e.resident_bytes());
        if let Some(p) = &e.page {
            self.paged -= 1;
            self.paged_bytes = self.paged_bytes.saturating_sub(p.len as usize);
        }
    }

    fn push_back(&mut self, e: Entry) {
        if self.levels.len() == 1 && self.spill.wants(self.levels[0].len()) {
            self.count_in_spilled(&e);
            self.spill.put(&e);
            return;
        }
        let l = self.level_of(&e);
        self.count_in(&e);
        self.levels[l].push_back(e);
    }

    /// Reads spilled entries back behind the in-memory ones when fewer than `low` are in memory.
    fn refill(&mut self, low: usize) {
        if self.levels.len() != 1 || self.spill.len() == 0 || self.levels[0].len() >= low {
            return;
        }
        let (entries, lost) = self.spill.take(REFILL_BATCH);
        self.len = self.len.saturating_sub(lost);
        for e in entries {
            self.resident += e.resident_bytes();
            self.levels[0].push_back(e);
        }
    }

    fn push_front(&mut self, e: Entry) {
        let l = self.level_of(&e);
        self.count_in(&e);
        self.levels[l].push_front(e);
    }

    /// Entries in delivery order.
    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.levels.iter_mut().rev().flat_map(|l| l.iter_mut())
    }

    fn front(&self) -> Option<&Entry> {
        self.levels.iter().rev().find_map(VecDeque::front)
    }

    fn pop_front(&mut self) -> Option<Entry> {
        self.refill(1);
        let e = self.levels.iter_mut().rev().find_map(VecDeque::pop_front)?;
        self.count_out(&e);
        Some(e)
    }

    fn drain(&mut self) -> Vec<Entry> {
        self.len = 0;
        self.bytes = 0;
        self.resident = 0;
        self.paged = 0;
        self.paged_bytes = 0;
        let mut out: Vec<Entry> = self.levels.iter_mut().flat_map(|l| l.drain(..)).collect();
        while self.spill.len() > 0 {
            out.extend(self.spill.take(REFILL_BATCH).0);
        }
        out
    }
}

/// The queue lock; on release, the change in the queue's resident bytes is added to the broker-wide count
/// the memory budget is checked against (one atomic add per lock, not per message).
struct StateGuard<'a> {
    st: parking_lot::MutexGuard<'a, QueueState>,
    start: usize,
    pager: Option<&'a Pager>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = QueueState;
    fn deref(&self) -> &QueueState {
        &self.st
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut QueueState {
        &mut self.st
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pager {
            let delta = self.st.resident as i64 - self.start as i64;
            p.adjust(delta);
        }
    }
}

/// Called for durable entries leaving the queue without an acknowledgement path (no-ack delivery, purge):
/// deletes their stored copies.
pub type Forget = Arc<dyn Fn(u64, &[u64]) + Send + Sync>;

/// Dead-letters entries of a queue (routes them through its dead-letter exchange, or drops them).
pub type DeadLetter = Arc<dyn Fn(&Arc<Queue>, Vec<(Entry, DeathReason)>) + Send + Sync>;

/// A declared queue.
pub struct Queue {
    /// Its name.
    pub name: Arc<str>,
    /// Stable id keying its stored messages.
    pub id: u64,
    /// Survives a restart.
    pub durable: bool,
    /// Owning connection of an exclusive queue.
    pub exclusive_owner: Option<u64>,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// The declare arguments.
    pub arguments: FieldTable,
    /// The arguments as declared (`x-` arguments). Limits, TTLs and dead-lettering may be changed by
    /// policies: [`Queue::effective`] is what applies now.
    pub args: QueueArgs,
    /// Declared arguments combined with the matching policies; swapped whole when a policy changes.
    effective: RwLock<Arc<Effective>>,
    /// The effective overflow mode, readable without a lock (checked on every publish).
    overflow: AtomicU8,
    /// Set once deleted.
    pub deleted: AtomicBool,
    /// Messages delivered or fetched (for statistics).
    pub delivered_total: AtomicU64,
    /// Last use (declare, consume, get, cancel) in Unix milliseconds, for `x-expires`.
    pub last_used_ms: AtomicU64,
    /// Whether an entry with an expiry may be queued (the sweeper skips queues without).
    may_expire: AtomicBool,
    forget: Option<Forget>,
    dead_letter: Option<DeadLetter>,
    pager: Option<Arc<Pager>>,
    state: Mutex<QueueState>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How to build a queue (see [`Queue::new`]).
pub struct QueueInit {
    /// Name.
    pub name: String,
    /// Id keying stored messages.
    pub id: u64,
    /// Durable.
    pub durable: bool,
    /// Owning connection if exclusive.
    pub exclusive_owner: Option<u64>,
    /// Auto-delete.
    pub auto_delete: bool,
    /// Declare arguments.
    pub arguments: FieldTable,
    /// Deletes stored copies.
    pub forget: Option<Forget>,
    /// Dead-letters.
    pub dead_letter: Option<DeadLetter>,
    /// Pages bodies out past the memory budget (`None`: never pages).
    pub pager: Option<Arc<Pager>>,
}

impl Queue {
    /// A new empty queue. Arguments the broker cannot use are ignored here (declare validates them).
    pub fn new(init: QueueInit) -> Arc<Queue> {
        let args = QueueArgs::parse(&init.arguments).unwrap_or_default();
        let levels = usize::from(args.max_priority) + 1;
        let spill = Spill::new(init.pager.clone().filter(|_| levels == 1), init.id);
        Arc::new(Queue {
            name: Arc::from(init.name.as_str()),
            id: init.id,
            durable: init.durable,
            exclusive_owner: init.exclusive_owner,
            auto_delete: init.auto_delete,
            arguments: init.arguments,
            overflow: AtomicU8::new(args.overflow.to_u8()),
            effective: RwLock::new(Arc::new(Effective {
                args: args.clone(),
                policy: None,
                operator_policy: None,
            })),
            args,
            deleted: AtomicBool::new(false),
            delivered_total: AtomicU64::new(0),
            last_used_ms: AtomicU64::new(now_ms()),
            may_expire: AtomicBool::new(false),
            forget: init.forget,
            dead_letter: init.dead_letter,
            pager: init.pager,
            state: Mutex::new(QueueState {
                levels: (0..levels).map(|_| VecDeque::new()).collect(),
                spill,
                ..QueueState::default()
            }),
        })
    }

    fn lock(&self) -> StateGuard<'_> {
        let st = self.state.lock();
        StateGuard {
            start: st.resident,
            st,
            pager: self.pager.as_deref(),
        }
    }

    /// Bytes of ready messages held in memory (paged bodies not counted).
    pub fn resident_bytes(&self) -> usize {
        self.state.lock().resident
    }

    /// Ready messages spilled whole to storage (the tail of a very deep queue).
    pub fn spilled(&self) -> usize {
        self.state.lock().spill.len()
    }

    /// Ready messages whose body is paged out, and their body bytes.
    pub fn paged(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.paged, st.paged_bytes)
    }

    /// Makes sure the head entry's body is in memory, reading it (and up to [`PAGE_IN_MAX`] paged entries
    /// behind it) back from storage. A body whose write (its page, or the publishing pass's commit) is not
    /// visible yet is waited for with a barrier write; one that is still missing then is lost (storage
    /// failed): the message is dropped with an error logged.
    fn ensure_head(&self, st: &mut QueueState) {
        let Some(pager) = &self.pager else {
            return;
        };
        st.refill(REFILL_LOW);
        let mut synced = false;
        while st.front().is_some_and(Entry::needs_load) {
            self.page_in(pager, st);
            if !st.front().is_some_and(Entry::needs_load) {
                return;
            }
            if !synced {
                pager.barrier();
                synced = true;
                continue;
            }
            if let Some(e) = st.pop_front() {
                tracing::error!(queue = %self.name, "paged message body unreadable; message dropped");
                self.forget_entries(std::slice::from_ref(&e));
            }
        }
    }

    /// Reads back the bodies of up to [`PAGE_IN_MAX`] paged entries (at most [`PAGE_IN_BYTES`]) from the
    /// head on, with one batched read.
    fn page_in(&self, pager: &Pager, st: &mut QueueState) {
        let mut ats = Vec::new();
        let mut bytes = 0usize;
        for e in st.iter_mut().take(PAGE_IN_MAX) {
            if let Some(p) = e.page.as_ref().filter(|p| p.loaded.is_none()) {
                if bytes >= PAGE_IN_BYTES {
                    break;
                }
                bytes += p.len as usize;
                ats.push(p.at);
            }
        }
        let mut bodies = pager.load(self.id, &ats).into_iter();
        let mut added = 0usize;
        let mut remaining = ats.len();
        for e in st.iter_mut() {
            if remaining == 0 {
                break;
            }
            if let Some(p) = e.page.as_mut().filter(|p| p.loaded.is_none()) {
                remaining -= 1;
                p.loaded = bodies.next().flatten();
                added += p.loaded.as_ref().map_or(0, Bytes::len);
            }
        }
        st.resident += added;
    }

    /// What applies now: declared arguments combined with the matching policies.
    pub fn effective(&self) -> Arc<Effective> {
        self.effective.read().clone()
    }

    /// The effective overflow mode.
    pub fn overflow(&self) -> Overflow {
        Overflow::from_u8(self.overflow.load(Ordering::Relaxed))
    }

    /// Replaces what applies (a policy changed); returns whether anything changed. Call
    /// [`Queue::enforce_limits`] afterwards (outside any lock) so a lowered length limit applies at once.
    pub fn set_effective(&self, e: Effective) -> bool {
        let mut cur = self.effective.write();
        if **cur == e {
            return false;
        }
        self.overflow
            .store(e.args.overflow.to_u8(), Ordering::Relaxed);
        // A changed expiry counts from now (RabbitMQ restarts the queue's expiry timer), so setting
        // `expires` on an idle queue does not delete it on the spot.
        if cur.args.expires_ms != e.args.expires_ms {
            self.touch();
        }
        *cur = Arc::new(e);
        true
    }

    /// Applies the length limits now: with `drop-head`, messages over the limit leave from the head and are
    /// dead-lettered (reason `maxlen`), as RabbitMQ does when a policy lowers `max-length`. With
    /// `reject-publish` nothing is dropped; new publishes are refused until the queue is under the limit.
    pub fn enforce_limits(self: &Arc<Self>) {
        let eff = self.effective();
        if eff.args.overflow != Overflow::DropHead {
            return;
        }
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            while over_limit(&eff.args, &st) {
                match st.pop_front() {
                    Some(h) => dead.push((h, DeathReason::MaxLen)),
                    None => break,
                }
            }
        }
        self.kill(dead);
    }

    /// Marks the queue used now (for `x-expires`).
    pub fn touch(&self) {
        self.last_used_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Messages ready for delivery.
    pub fn message_count(&self) -> u32 {
        u32::try_from(self.state.lock().len).unwrap_or(u32::MAX)
    }

    /// Active consumers.
    pub fn consumer_count(&self) -> u32 {
        u32::try_from(self.state.lock().consumers.len()).unwrap_or(u32::MAX)
    }

    /// Bytes of ready messages.
    pub fn ready_bytes(&self) -> usize {
        self.state.lock().bytes
    }

    /// Whether a new message of `size_bytes` fits under the length limits of a `reject-publish` queue,
    /// counting `pending` messages (of `pending_bytes`) not yet enqueued.
    pub fn admits(&self, size_bytes: usize, pending: usize, pending_bytes: usize) -> bool {
        if self.overflow() == Overflow::DropHead {
            return true;
        }
        let eff = self.effective();
        let st = self.state.lock();
        let len_ok = eff
            .args
            .max_length
            .is_none_or(|m| ((st.len + pending) as u64) < m);
        let bytes_ok = eff
            .args
            .max_length_bytes
            .is_none_or(|m| ((st.bytes + pending_bytes + size_bytes) as u64) <= m);
        len_ok && bytes_ok
    }

    /// Appends messages and delivers what consumers can take.
    /// Past the broker's memory budget, their bodies are paged out first (see [`crate::paging`]).
    pub fn push(self: &Arc<Self>, entries: impl IntoIterator<Item = Entry>) {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        if let Some(p) = &self.pager
            && p.over_budget(&entries)
        {
            let window = {
                let st = self.state.lock();
                if st.consumers.is_empty() {
                    0
                } else {
                    CONSUMER_WINDOW_BYTES.saturating_sub(st.resident)
                }
            };
            p.page_out(self.id, &mut entries, window);
        }
        let now = now_ms();
        let eff = self.effective();
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            for mut e in entries {
                let ttl = match (eff.args.message_ttl_ms, e.msg.expiration_ms()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if let Some(ttl) = ttl {
                    e.expires_at_ms = now.saturating_add(ttl).max(1);
                    self.may_expire.store(true, Ordering::Relaxed);
                }
                st.push_back(e);
            }
            st.spill.flush();
            if eff.args.overflow == Overflow::DropHead {
                while over_limit(&eff.args, &st) {
                    match st.pop_front() {
                        Some(h) => dead.push((h, DeathReason::MaxLen)),
                        None => break,
                    }
                }
            }
        }
        self.kill(dead);
        self.dispatch();
    }

    /// Dead-letters (or drops) entries that left the queue for `reason`.
    pub fn kill(self: &Arc<Self>, dead: Vec<(Entry, DeathReason)>) {
        if dead.is_empty() {
            return;
        }
        match &self.dead_letter {
            Some(f) => f(self, dead),
            None => {
                let entries: Vec<Entry> = dead.into_iter().map(|(e, _)| e).collect();
                self.forget_entries(&entries);
            }
        }
    }

    /// Puts unacknowledged messages back at the head, in the order given, marked redelivered. Messages
    /// returned more often than `x-delivery-limit` are dead-lettered instead.
    pub fn requeue(self: &Arc<Self>, entries: Vec<Entry>) {
        if self.deleted.load(Ordering::Acquire) {
            self.forget_entries(&entries);
            return;
        }
        let limit = self.effective().args.delivery_limit;
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            for mut e in entries.into_iter().rev() {
                e.redelivered = true;
                e.returns = e.returns.saturating_add(1);
                if limit.is_some_and(|l| u64::from(e.returns) > l) {
                    dead.push((e, DeathReason::DeliveryLimit));
                } else {
                    st.push_front(e);
                }
            }
        }
        dead.reverse();
        self.kill(dead);
        self.dispatch();
    }

    /// Dead-letters messages rejected without requeue.
    pub fn reject(self: &Arc<Self>, entries: Vec<Entry>) {
        self.kill(
            entries
                .into_iter()
                .map(|e| (e, DeathReason::Rejected))
                .collect(),
        );
    }

    fn forget_entries(&self, entries: &[Entry]) {
        if let Some(p) = &self.pager {
            p.forget(self.id, entries);
        }
        if let Some(f) = &self.forget {
            let seqs: Vec<u64> = entries.iter().filter_map(|e| e.store_seq).collect();
            if !seqs.is_empty() {
                f(self.id, &seqs);
            }
        }
    }

    /// Removes expired messages from the head (RabbitMQ expires only at the head).
    pub fn expire(self: &Arc<Self>, now: u64) {
        if !self.may_expire.load(Ordering::Relaxed) {
            return;
        }
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            st.refill(1);
            while st.front().is_some_and(|e| e.expired(now)) {
                if let Some(e) = st.pop_front() {
                    dead.push((e, DeathReason::Expired));
                }
            }
            if st.len == 0 {
                self.may_expire.store(false, Ordering::Relaxed);
            }
        }
        self.kill(dead);
    }

    /// Delivers ready messages to consumers with credit.
    pub fn dispatch(self: &Arc<Self>) {
        let now = now_ms();
        let mut st = self.lock();
        let mut forgotten: Vec<u64> = Vec::new();
        let mut forgotten_pages: Vec<u64> = Vec::new();
        let mut dead = Vec::new();
        while st.len > 0 && !st.consumers.is_empty() {
            let Some(idx) = pick_consumer(self, &mut st) else {
                break;
            };
            self.ensure_head(&mut st);
            let Some(entry) = st.pop_front() else {
                break;
            };
            if entry.expired(now) {
                dead.push((entry, DeathReason::Expired));
                continue;
            }
            let consumer = st.consumers[idx].clone();
            if consumer.no_ack {
                forgotten.extend(entry.store_seq);
                forgotten_pages.extend(entry.page_id());
            }
            if let Err(back) = deliver(self, &consumer, entry) {
                // The consumer's channel closed: it fails `has_credit` from now on.
                st.push_front(back);
            }
        }
        drop(st);
        if !forgotten.is_empty()
            && let Some(f) = &self.forget
        {
            f(self.id, &forgotten);
        }
        if let Some(p) = &self.pager {
            p.forget_ids(self.id, &forgotten_pages);
        }
        self.kill(dead);
    }

    /// Adds a consumer after `announce` (which writes consume-ok) ran under the queue lock, so no delivery
    /// can precede the consume-ok.
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Arc<Consumer>,
        announce: impl FnOnce(),
    ) -> Result<(), ConsumeRefusal> {
        {
            let mut st = self.lock();
            if st.consumers.iter().any(|c| c.exclusive)
                || (consumer.exclusive && !st.consumers.is_empty())
            {
                return Err(ConsumeRefusal::ExclusiveInUse);
            }
            announce();
            st.consumers.push(consumer);
            st.had_consumer = true;
        }
        self.touch();
        self.dispatch();
        Ok(())
    }

    /// Removes a consumer; returns whether the queue is now due for auto-delete.
    pub fn remove_consumer(self: &Arc<Self>, consumer: &Arc<Consumer>) -> bool {
        let due = {
            let mut st = self.lock();
            st.consumers.retain(|c| !Arc::ptr_eq(c, consumer));
            if st.next_consumer >= st.consumers.len() {
                st.next_consumer = 0;
            }
            self.auto_delete && st.had_consumer && st.consumers.is_empty()
        };
        self.touch();
        // With a single active consumer, the next one takes over.
        if self.args.single_active_consumer {
            self.dispatch();
        }
        due
    }

    /// Takes every consumer (queue deletion).
    pub fn take_consumers(&self) -> Vec<Arc<Consumer>> {
        let mut st = self.lock();
        st.next_consumer = 0;
        std::mem::take(&mut st.consumers)
    }

    /// basic.get: takes the head message for `channel`, writing get-ok and content.
    pub fn get(self: &Arc<Self>, channel: &Arc<ChannelShared>, no_ack: bool) -> bool {
        self.touch();
        let now = now_ms();
        let mut dead = Vec::new();
        let mut st = self.lock();
        let entry = loop {
            self.ensure_head(&mut st);
            match st.pop_front() {
                Some(e) if e.expired(now) => dead.push((e, DeathReason::Expired)),
                other => break other,
            }
        };
        let Some(entry) = entry else {
            drop(st);
            self.kill(dead);
            return false;
        };
        let remaining = u32::try_from(st.len).unwrap_or(u32::MAX);
        let mut un = channel.unacked.lock();
        un.last_tag += 1;
        let tag = un.last_tag;
        let msg = entry.msg.clone();
        let body = entry.body().cloned().unwrap_or_default();
        channel.out.write(|b, frame_max| {
            codec::put_get_ok(
                b,
                channel.id,
                tag,
                entry.redelivered,
                msg.exchange.as_bytes(),
                msg.routing_key.as_bytes(),
                remaining,
            );
            codec::put_content(b, channel.id, &msg.header, &body, frame_max);
        });
        let mut entry = entry;
        entry.unload();
        self.delivered_total.fetch_add(1, Ordering::Relaxed);
        if no_ack {
            drop(un);
            drop(st);
            self.forget_entries(std::slice::from_ref(&entry));
        } else {
            channel.unacked_count.fetch_add(1, Ordering::Relaxed);
            un.pending.push_back(Pending {
                tag,
                queue: self.clone(),
                entry,
                consumer: None,
            });
            drop(un);
            drop(st);
        }
        self.kill(dead);
        true
    }

    /// Removes every ready message (deleting their pages); returns how many and their stored sequence
    /// numbers.
    pub fn purge(&self) -> (u32, Vec<u64>) {
        let mut st = self.lock();
        let n = u32::try_from(st.len).unwrap_or(u32::MAX);
        let entries = st.drain();
        drop(st);
        if let Some(p) = &self.pager {
            p.forget(self.id, &entries);
        }
        let seqs = entries.into_iter().filter_map(|e| e.store_seq).collect();
        (n, seqs)
    }

    /// Loads the paged bodies of `entries` that are not in memory (dead-lettering republishes them).
    pub fn load_bodies(&self, entries: &mut [&mut Entry]) {
        if let Some(p) = &self.pager {
            p.load_entries(self.id, entries);
        }
    }

    /// Deletes the pages of `entries` (they left the queue).
    pub fn forget_pages(&self, entries: &[Entry]) {
        if let Some(p) = &self.pager {
            p.forget(self.id, entries);
        }
    }

    /// Deletes every page of this (deleted) queue.
    pub fn forget_all_pages(&self) {
        if let Some(p) = &self.pager {
            p.forget_queue(self.id);
        }
    }
}

/// Whether the ready messages exceed the length limits of `args`.
fn over_limit(args: &QueueArgs, st: &QueueState) -> bool {
    args.max_length.is_some_and(|m| st.len as u64 > m)
        || args.max_length_bytes.is_some_and(|m| st.bytes as u64 > m)
}

/// Picks the consumer for the next message: the highest priority among those with credit, round-robin
/// among equals.
fn pick_consumer(queue: &Arc<Queue>, st: &mut QueueState) -> Option<usize> {
    let n = st.consumers.len();
    if queue.args.single_active_consumer {
        // Only the oldest consumer receives; the next takes over when it goes.
        let c = st.consumers.first()?;
        if c.channel.out.stalls(queue) {
            return None;
        }
        return c.has_credit().then_some(0);
    }
    let mut best: Option<(usize, i64)> = None;
    for i in 0..n {
        let idx = (st.next_consumer + i) % n;
        let c = &st.consumers[idx];
        if !c.has_credit() {
            continue;
        }
        if c.channel.out.stalls(queue) {
            continue;
        }
        if best.is_none_or(|(_, p)| c.priority > p) {
            best = Some((idx, c.priority));
        }
    }
    let (idx, _) = best?;
    st.next_consumer = (idx + 1) % n;
    Some(idx)
}

/// Delivers `entry` to `consumer`; gives it back if the channel closed meanwhile (its unacknowledged log
/// was already drained, so a delivery recorded now would be lost).
fn deliver(queue: &Arc<Queue>, consumer: &Arc<Consumer>, mut entry: Entry) -> Result<(), Entry> {
    let ch = &consumer.channel;
    let mut un = ch.unacked.lock();
    if ch.closed.load(Ordering::Acquire) || consumer.cancelled.load(Ordering::Acquire) {
        return Err(entry);
    }
    un.last_tag += 1;
    let tag = un.last_tag;
    let msg = &entry.msg;
    let body = entry.body().map_or(&msg.body, |b| b);
    ch.out.write(|b, frame_max| {
        codec::put_deliver(
            b,
            ch.id,
            consumer.tag.as_bytes(),
            tag,
            entry.redelivered,
            msg.exchange.as_bytes(),
            msg.routing_key.as_bytes(),
        );
        codec::put_content(b, ch.id, &msg.header, body, frame_max);
    });
    // A paged body was read back for this delivery only: the page stays its copy while unacknowledged.
    entry.unload();
    queue.delivered_total.fetch_add(1, Ordering::Relaxed);
    if !consumer.no_ack {
        consumer.unacked.fetch_add(1, Ordering::Relaxed);
        ch.unacked_count.fetch_add(1, Ordering::Relaxed);
        un.pending.push_back(Pending {
            tag,
            queue: queue.clone(),
            entry,
            consumer: Some(consumer.clone()),
        });
    }
    Ok(())
}

/// Delivers a message straight to a consumer without a queue (direct reply-to): no acknowledgement is
/// tracked, as the reply consumer is always no-ack.
pub fn deliver_direct(consumer: &Consumer, msg: &Message) {
    let ch = &consumer.channel;
    let mut un = ch.unacked.lock();
    un.last_tag += 1;
    let tag = un.last_tag;
    ch.out.write(|b, frame_max| {
        codec::put_deliver(
            b,
            ch.id,
            consumer.tag.as_bytes(),
            tag,
            false,
            msg.exchange.as_bytes(),
            msg.routing_key.as_bytes(),
        );
        codec::put_content(b, ch.id, &msg.header, &msg.body, frame_max);
    });
}

/// Sends basic.cancel to a consumer the broker cancelled (its queue was deleted).
pub fn notify_cancel(consumer: &Consumer) {
    consumer.cancelled.store(true, Ordering::Release);
    let tag = ShortString::try_new(consumer.tag.clone()).unwrap_or_default();
    consumer.channel.out.method(
        consumer.channel.id,
        AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
            consumer_tag: tag,
            nowait: true,
        })),
    );
}

/// Takes the pending deliveries an ack/nack/reject names: tag `tag` (or all ≤ tag with `multiple`; tag 0
/// with `multiple` means all). `None` if a single tag is unknown.
pub fn take_pending(channel: &ChannelShared, tag: u64, multiple: bool) -> Option<Vec<Pending>> {
    let mut un = channel.unacked.lock();
    let taken: Vec<Pending> = if multiple {
        let upto = if tag == 0 { u64::MAX } else { tag };
        let n = un.pending.iter().take_while(|p| p.tag <= upto).count();
        if n == 0 && tag != 0 && tag > un.last_tag {
            return None;
        }
        un.pending.drain(..n).collect()
    } else {
        let pos = un.pending.binary_search_by_key(&tag, |p| p.tag).ok()?;
        un.pending.remove(pos).into_iter().collect()
    };
    drop(un);
    settle_counts(channel, &taken);
    Some(taken)
}

/// Takes every pending delivery of a channel (close, recover).
pub fn take_all_pending(channel: &ChannelShared) -> Vec<Pending> {
    let taken: Vec<Pending> = channel.unacked.lock().pending.drain(..).collect();
    settle_counts(channel, &taken);
    taken
}

fn settle_counts(channel: &ChannelShared, taken: &[Pending]) {
    if taken.is_empty() {
        return;
    }
    channel
        .unacked_count
        .fetch_sub(taken.len() as u32, Ordering::Relaxed);
    for p in taken {
        if let Some(c) = &p.consumer {
            c.unacked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Requeues taken deliveries to their queues (grouped per queue, order kept) and re-dispatches.
pub fn requeue_pending(taken: Vec<Pending>) {
    for (q, entries) in group_pending(taken) {
        q.requeue(entries);
    }
}

/// Groups taken deliveries by queue, keeping their order.
pub fn group_pending(taken: Vec<Pending>) -> Vec<(Arc<Queue>, Vec<Entry>)> {
    let mut groups: Vec<(Arc<Queue>, Vec<Entry>)> = Vec::new();
    for p in taken {
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &p.queue)) {
            Some((_, entries)) => entries.push(p.entry),
            None => groups.push((p.queue, vec![p.entry])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(body: &'static [u8]) -> Entry {
        let props = amq_protocol::protocol::BasicProperties::default();
        Entry::new(
            Arc::new(
                Message::new(
                    String::new(),
                    "q".into(),
                    codec::encode_content_header(body.len() as u64, &props),
                    Bytes::from_static(body),
                )
                .expect("valid header"),
            ),
            None,
        )
    }

    fn plain_queue() -> Arc<Queue> {
        Queue::new(QueueInit {
            name: "q".into(),
            id: 1,
            durable: false,
            exclusive_owner: None,
            auto_delete: false,
            arguments: FieldTable::default(),
            forget: None,
            dead_letter: None,
            pager: None,
        })
    }

    fn consumer(ch: &Arc<ChannelShared>, tag: &str, prefetch: u32, priority: i64) -> Arc<Consumer> {
        Arc::new(Consumer {
            tag: tag.into(),
            channel: ch.clone(),
            no_ack: false,
            exclusive: false,
            priority,
            prefetch,
            unacked: AtomicU32::new(0),
            cancelled: AtomicBool::new(false),
        })
    }

    #[test]
    fn prefetch_limits_and_ack_releases_credit() {
        let q = plain_queue();
        let ch = ChannelShared::new(1, Outbound::new(131_072));
        let c = consumer(&ch, "c", 2, 0);
        q.add_consumer(c.clone(), || {}).expect("added");
        q.push((0..5).map(|_| msg(b"x")));
        assert_eq!(q.message_count(), 3);
        assert_eq!(c.unacked.load(Ordering::Relaxed), 2);
        let taken = take_pending(&ch, 1, false).expect("tag 1");
        assert_eq!(taken.len(), 1);
        q.dispatch();
        assert_eq!(q.message_count(), 2);
        assert!(take_pending(&ch, 99, false).is_none());
        let all = take_pending(&ch, 0, true).expect("all");
        assert_eq!(all.len(), 2);
        requeue_pending(all);
        // Requeued messages go back first and are delivered again (credit is 2).
        assert_eq!(q.message_count(), 2);
        assert!(
            ch.unacked
                .lock()
                .pending
                .iter()
                .all(|p| p.entry.redelivered)
        );
    }

    #[test]
    fn higher_priority_consumer_wins_while_it_has_credit() {
        let q = plain_queue();
        let ch = ChannelShared::new(1, Outbound::new(131_072));
        let low = consumer(&ch, "low", 0, 0);
        let high = consumer(&ch, "high", 2, 5);
        q.add_consumer(low.clone(), || {}).expect("low");
        q.add_consumer(high.clone(), || {}).expect("high");
        q.push((0..4).map(|_| msg(b"x")));
        assert_eq!(high.unacked.load(Ordering::Relaxed), 2);
        assert_eq!(low.unacked.load(Ordering::Relaxed), 2);
        let excl = Arc::new(Consumer {
            exclusive: true,
            ..Consumer {
                tag: "e".into(),
                channel: ch.clone(),
                no_ack: false,
                exclusive: true,
                priority: 0,
                prefetch: 0,
                unacked: AtomicU32::new(0),
                cancelled: AtomicBool::new(false),
            }
        });
        assert_eq!(
            q.add_consumer(excl, || {}),
            Err(ConsumeRefusal::ExclusiveInUse)
        );
    }
}
