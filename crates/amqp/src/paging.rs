//! Paging: message bodies past the broker's memory budget live in strata-storage, not in memory.
//!
//! As RabbitMQ's classic queues (v2) and LavinMQ do, a queue keeps every message's routing data and content
//! header in memory but, once the ready messages held in memory across all queues exceed
//! [`AmqpConfig::memory_budget_bytes`](crate::AmqpConfig::memory_budget_bytes), the body of each newly
//! queued message goes to storage (a queue with consumers first fills a [`CONSUMER_WINDOW_BYTES`] window):
//! - a transient message's body (or a persistent one's in a transient queue) is written to the `amqp.pages`
//!   tree under (queue id, page id) with [`Db::write_async`](strata_storage::Db::write_async), which nothing
//!   waits for (the tree is wiped at startup anyway);
//! - a persistent message in a durable queue is already in `amqp.msgs`: its entry only references that copy,
//!   nothing is written twice.
//!
//! Bodies come back when consumers reach them: dispatch reads up to [`PAGE_IN_MAX`] entries (at most
//! [`PAGE_IN_BYTES`]) ahead of the head with one `multi_get`, so delivery stays a memory copy for most
//! messages. A body whose write is not visible yet is waited for with a barrier write (writes become
//! visible in submission order, and every page is submitted before its entry is queued). A delivered paged message keeps only its page reference while unacknowledged (a requeue puts
//! it back without a write); the page is deleted when the message leaves the broker (ack, no-ack delivery,
//! reject, dead-lettering, expiry, purge, queue deletion).
//!
//! Very deep single-level queues also spill whole entries (`Spill`): past the budget and past
//! [`SPILL_AFTER_ENTRIES`] in memory, newer entries go to the `amqp.spill` tree and are read back in
//! batches when the in-memory part runs low.
//!
//! Invariant: an entry's `page` names exactly one stored copy of its body; `loaded` is a cache of it. A
//! queue's spilled entries are all newer than its in-memory ones.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use strata_storage::WriteBatch;

use crate::queue::Entry;
use crate::store::{STORED_PIECE, Store};

/// Bodies shorter than this stay in memory: a storage entry for them would cost about as much.
pub const MIN_PAGED_BODY: usize = 64;
/// Most paged entries read back ahead of consumers in one read.
pub const PAGE_IN_MAX: usize = 256;
/// Most body bytes read back ahead of consumers in one read (at least one entry is always read).
pub const PAGE_IN_BYTES: usize = 2 << 20;
/// Bytes a queue with consumers keeps in memory past the budget (what it delivers next).
pub const CONSUMER_WINDOW_BYTES: usize = 2 << 20;
/// A page-out write batch is submitted once it holds this many bytes.
const PAGE_BATCH_BYTES: usize = 16 << 20;

/// Where a paged body lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAt {
    /// In `amqp.pages` under (queue id, this page id).
    Page(u64),
    /// In `amqp.msgs` under (queue id, this sequence): the message's durable copy.
    Stored(u64),
}

/// A body that lives in storage.
#[derive(Debug, Clone)]
pub struct Page {
    /// Where.
    pub at: PageAt,
    /// Its length in bytes.
    pub len: u32,
    /// The body, when read back ahead of delivery.
    pub loaded: Option<Bytes>,
}

/// The broker-wide memory budget and the paging store.
#[derive(Debug)]
pub struct Pager {
    store: Store,
    budget: u64,
    /// Bytes of ready messages in memory (routing data, headers, bodies) across all queues.
    resident: AtomicI64,
    next_page: AtomicU64,
}

impl Pager {
    /// A pager over `store` with `budget` bytes of resident messages.
    pub fn new(store: Store, budget: u64) -> Pager {
        Pager {
            store,
            budget,
            resident: AtomicI64::new(0),
            next_page: AtomicU64::new(1),
        }
    }

    /// Bytes of ready messages held in memory across all queues.
    pub fn resident(&self) -> u64 {
        u64::try_from(self.resident.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// The budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Accounts `delta` resident bytes.
    pub(crate) fn adjust(&self, delta: i64) {
        if delta != 0 {
            self.resident.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// Whether queuing `entries` would take the resident bytes past the budget (one atomic load and a
    /// sum: the publish path's whole cost of paging while under the budget).
    pub(crate) fn over_budget(&self, entries: &[Entry]) -> bool {
        let incoming: u64 = entries.iter().map(|e| e.resident_bytes() as u64).sum();
        self.resident() + incoming > self.budget
    }

    /// Pages out the bodies of `entries` (about to be queued in queue `queue_id`) that would take the
    /// resident bytes past the budget, except the first `window` bytes' worth (a queue whose consumers
    /// keep up keeps a small window in memory: paging what is delivered next would only add a write and a
    /// read).
    pub(crate) fn page_out(&self, queue_id: u64, entries: &mut [Entry], window: usize) {
        let resident = self.resident();
        let mut window = window as u64;
        let mut extra = 0u64;
        let mut batch = WriteBatch::new();
        // Planned page-outs; those from `batch_start` on are in the batch not yet submitted.
        let mut plan: Vec<(usize, PageAt)> = Vec::new();
        let mut batch_start = 0;
        for (i, e) in entries.iter().enumerate() {
            let size = e.resident_bytes() as u64;
            // A split stored message (longer than a storage value) stays in memory: its stored copy is
            // read back whole only at recovery.
            let split = e.store_seq.is_some() && e.msg.size_bytes() + 16 > STORED_PIECE;
            if e.page.is_some()
                || split
                || e.msg.body.len() > STORED_PIECE
                || e.msg.body.len() < MIN_PAGED_BODY
                || resident + extra + size <= self.budget
            {
                extra += size;
                continue;
            }
            if size <= window {
                window -= size;
                extra += size;
                continue;
            }
            let at = match e.store_seq {
                Some(seq) => PageAt::Stored(seq),
                None => {
                    let id = self.next_page.fetch_add(1, Ordering::Relaxed);
                    self.store.add_page(&mut batch, queue_id, id, &e.msg.body);
                    PageAt::Page(id)
                }
            };
            extra += (e.msg.size_bytes() - e.msg.body.len()) as u64;
            plan.push((i, at));
            if batch.size_bytes() >= PAGE_BATCH_BYTES {
                self.submit_or_unplan(&batch, &mut plan, batch_start);
                batch.clear();
                batch_start = plan.len();
            }
        }
        if !batch.is_empty() {
            self.submit_or_unplan(&batch, &mut plan, batch_start);
        }
        for (i, at) in plan {
            let e = &mut entries[i];
            let len = u32::try_from(e.msg.body.len()).unwrap_or(u32::MAX);
            // In place when this queue holds the only reference (the usual case): no new allocation.
            match std::sync::Arc::get_mut(&mut e.msg) {
                Some(m) => m.drop_body(),
                None => e.msg = std::sync::Arc::new(e.msg.without_body()),
            }
            e.page = Some(Box::new(Page {
                at,
                len,
                loaded: None,
            }));
        }
    }

    /// Submits `batch`; if it is refused, the page-outs it held (`plan[from..]`'s pages) are dropped
    /// from the plan and their bodies stay in memory.
    fn submit_or_unplan(&self, batch: &WriteBatch, plan: &mut Vec<(usize, PageAt)>, from: usize) {
        if !self.submit(batch) {
            let mut i = 0;
            plan.retain(|(_, at)| {
                i += 1;
                i <= from || matches!(at, PageAt::Stored(_))
            });
        }
    }

    /// Submits a page-out batch without waiting for it (it joins the next group commit; no thread waits
    /// for an fsync for transient data). `false` if it was refused at once: its bodies stay in memory (the
    /// high watermark still protects the process). A later failure poisons the engine, and the pages
    /// are then found missing at read-back.
    pub(crate) fn submit(&self, batch: &WriteBatch) -> bool {
        use std::future::Future as _;
        let mut commit = self.store.db.write_async(batch);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::Pin::new(&mut commit).poll(&mut cx) {
            std::task::Poll::Ready(Err(e)) => {
                tracing::error!(error = %e, "amqp paging write refused; keeping bodies in memory");
                false
            }
            _ => true,
        }
    }

    /// Waits until every write submitted before this call is visible: a page (or a publishing pass's
    /// commit) is submitted before its entry is queued, so after this a missing one is lost.
    pub(crate) fn barrier(&self) {
        if let Err(e) = self.store.barrier() {
            tracing::error!(error = %e, "amqp paging barrier failed");
        }
    }

    /// Reads the bodies at `ats` (of queue `queue_id`); `None` where one is not (yet) readable.
    pub(crate) fn load(&self, queue_id: u64, ats: &[PageAt]) -> Vec<Option<Bytes>> {
        self.store.load_pages(queue_id, ats)
    }

    /// Fills the bodies of paged `entries` that are not loaded (dead-lettering needs them).
    pub(crate) fn load_entries(&self, queue_id: u64, entries: &mut [&mut Entry]) {
        let ats: Vec<PageAt> = entries
            .iter()
            .filter_map(|e| e.page.as_ref().filter(|p| p.loaded.is_none()).map(|p| p.at))
            .collect();
        if ats.is_empty() {
            return;
        }
        let mut bodies = self.load(queue_id, &ats).into_iter();
        let mut missing = false;
        for e in entries.iter_mut() {
            if let Some(p) = e.page.as_mut().filter(|p| p.loaded.is_none()) {
                p.loaded = bodies.next().flatten();
                missing |= p.loaded.is_none();
            }
        }
        if missing {
            // Written but not visible yet: wait for it once.
            self.barrier();
            let ats: Vec<PageAt> = entries
                .iter()
                .filter_map(|e| e.page.as_ref().filter(|p| p.loaded.is_none()).map(|p| p.at))
                .collect();
            let mut bodies = self.load(queue_id, &ats).into_iter();
            for e in entries.iter_mut() {
                if let Some(p) = e.page.as_mut().filter(|p| p.loaded.is_none()) {
                    p.loaded = bodies.next().flatten();
                }
            }
        }
    }

    /// Deletes the page copies of `entries` of queue `queue_id` (durable copies are deleted by their own
    /// path).
    pub(crate) fn forget(&self, queue_id: u64, entries: &[Entry]) {
        let ids: Vec<u64> = entries.iter().filter_map(Entry::page_id).collect();
        self.forget_ids(queue_id, &ids);
    }

    /// Deletes pages by id.
    pub(crate) fn forget_ids(&self, queue_id: u64, ids: &[u64]) {
        if !ids.is_empty() {
            self.store.forget_pages(queue_id, ids);
        }
    }

    /// Deletes every page of a deleted queue.
    pub(crate) fn forget_queue(&self, queue_id: u64) {
        self.store.delete_pages(queue_id);
    }
}

/// In-memory entries a single-level queue keeps before, past the budget, newer entries spill to storage
/// whole (routing data and header too).
pub const SPILL_AFTER_ENTRIES: usize = 16_384;
/// When a spilling queue's in-memory entries drop below this, spilled ones are read back.
pub const REFILL_LOW: usize = 4_096;
/// Spilled entries read back at once.
pub const REFILL_BATCH: usize = 8_192;

/// The tail of a very deep queue, spilled whole to the `amqp.spill` tree under (queue id, sequence): once
/// a queue spills, every newer entry goes there (order kept) until consumers have drained it back.
#[derive(Debug, Default)]
pub(crate) struct Spill {
    pager: Option<std::sync::Arc<Pager>>,
    queue_id: u64,
    first: u64,
    next: u64,
    pending: WriteBatch,
}

impl Spill {
    /// A spill area for queue `queue_id` (`None`: the queue never spills).
    pub(crate) fn new(pager: Option<std::sync::Arc<Pager>>, queue_id: u64) -> Spill {
        Spill {
            pager,
            queue_id,
            ..Spill::default()
        }
    }

    /// Spilled entries.
    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.next - self.first).unwrap_or(usize::MAX)
    }

    /// Whether a new entry behind `in_memory` entries goes to the spill area.
    pub(crate) fn wants(&self, in_memory: usize) -> bool {
        self.len() > 0
            || self
                .pager
                .as_ref()
                .is_some_and(|p| in_memory >= SPILL_AFTER_ENTRIES && p.resident() > p.budget())
    }

    /// Spills `e` (written at the next [`Spill::flush`]).
    pub(crate) fn put(&mut self, e: &Entry) {
        let Some(p) = &self.pager else {
            return;
        };
        self.pending.put(
            &p.store.spill,
            &crate::store::msg_key(self.queue_id, self.next),
            &encode_entry(e),
        );
        self.next += 1;
        if self.pending.size_bytes() >= PAGE_BATCH_BYTES {
            self.flush();
        }
    }

    /// Submits spilled entries not yet written.
    pub(crate) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if let Some(p) = &self.pager
            && !p.submit(&self.pending)
        {
            tracing::error!(queue_id = self.queue_id, "amqp spill write refused");
        }
        self.pending.clear();
    }

    /// Reads back (and deletes) up to `max` of the oldest spilled entries; also returns how many could not
    /// be read (lost to a storage failure).
    pub(crate) fn take(&mut self, max: usize) -> (Vec<Entry>, usize) {
        let Some(p) = self.pager.clone() else {
            return (Vec::new(), 0);
        };
        self.flush();
        let want = self.len().min(max);
        if want == 0 {
            return (Vec::new(), 0);
        }
        let end = self.first + want as u64;
        let read = |out: &mut Vec<Entry>| {
            out.clear();
            let from = crate::store::msg_key(self.queue_id, self.first);
            let to = crate::store::msg_key(self.queue_id, end);
            for kv in p.store.spill.range(from..to) {
                match kv {
                    Ok((_, v)) => out.extend(decode_entry(&v)),
                    Err(e) => tracing::error!(error = %e, "amqp spill read failed"),
                }
            }
        };
        let mut out = Vec::with_capacity(want);
        read(&mut out);
        if out.len() < want {
            // Written but not visible yet: wait for it once.
            p.barrier();
            read(&mut out);
        }
        let lost = want - out.len();
        if lost > 0 {
            tracing::error!(
                queue_id = self.queue_id,
                lost,
                "spilled messages unreadable; dropped"
            );
        }
        let mut del = WriteBatch::new();
        del.delete_range(
            &p.store.spill,
            &crate::store::msg_key(self.queue_id, self.first),
            &crate::store::msg_key(self.queue_id, end),
        );
        p.submit(&del);
        self.first = end;
        (out, lost)
    }
}

/// A queue entry's spilled form: flags, returns, expiry, stored sequence, page, then the message.
fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut flags = u8::from(e.redelivered);
    if e.store_seq.is_some() {
        flags |= 2;
    }
    let mut out = Vec::with_capacity(64 + e.msg.size_bytes());
    match e.page.as_ref().map(|p| (p.at, p.len)) {
        Some((PageAt::Page(id), len)) => {
            flags |= 4;
            out.push(flags);
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
        Some((PageAt::Stored(_), len)) => {
            flags |= 8;
            out.push(flags);
            out.extend_from_slice(&len.to_be_bytes());
        }
        None => out.push(flags),
    }
    out.extend_from_slice(&e.returns.to_be_bytes());
    out.extend_from_slice(&e.expires_at_ms.to_be_bytes());
    out.extend_from_slice(&e.store_seq.unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&e.msg.encode());
    out
}

fn decode_entry(b: &[u8]) -> Option<Entry> {
    let (&flags, mut rest) = b.split_first()?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (h, t) = rest.split_at_checked(n)?;
        rest = t;
        Some(h)
    };
    let u64_of = |s: &[u8]| s.try_into().ok().map(u64::from_be_bytes);
    let u32_of = |s: &[u8]| s.try_into().ok().map(u32::from_be_bytes);
    let page_id = if flags & 4 != 0 {
        Some((u64_of(take(8)?)?, u32_of(take(4)?)?))
    } else {
        None
    };
    let stored_len = if flags & 8 != 0 {
        Some(u32_of(take(4)?)?)
    } else {
        None
    };
    let returns = u32_of(take(4)?)?;
    let expires_at_ms = u64_of(take(8)?)?;
    let seq = u64_of(take(8)?)?;
    let msg = crate::message::Message::decode(rest)?;
    let store_seq = (flags & 2 != 0).then_some(seq);
    let page = match (page_id, stored_len, store_seq) {
        (Some((id, len)), _, _) => Some(PageAt::Page(id)).map(|at| (at, len)),
        (None, Some(len), Some(seq)) => Some((PageAt::Stored(seq), len)),
        _ => None,
    };
    let mut e = Entry::new(std::sync::Arc::new(msg), store_seq);
    e.redelivered = flags & 1 != 0;
    e.returns = returns;
    e.expires_at_ms = expires_at_ms;
    e.page = page.map(|(at, len)| {
        Box::new(Page {
            at,
            len,
            loaded: None,
        })
    });
    Some(e)
}
