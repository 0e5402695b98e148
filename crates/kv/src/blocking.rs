//! Blocking commands (BLPOP, BLMOVE, BLMPOP, and the sorted-set BZPOPMIN / BZMPOP): the registry of
//! clients waiting for keys.
//!
//! Command execution is synchronous, so a blocking command that finds nothing to pop does not wait
//! itself: it stores a [`BlockRequest`] in the session (see [`crate::Session::block_on`]) and the
//! connection loop — which is async — registers a [`Waiter`] and awaits it. Any write command, after it
//! committed, signals the keys among its arguments ([`Blocking::signal`]); only the *first* waiter of a
//! key (per database) is woken, so clients are served in the order they blocked. The woken client
//! re-runs its command: if the key was emptied again meanwhile, it goes on waiting at its place in the
//! queue; if it was served, it leaves every queue and signals the keys it wrote, which wakes the next
//! waiter when something is left. A waiter that leaves with an unconsumed wake-up (timeout, kill) passes
//! it on the same way, so no wake-up is lost.
//!
//! Redis serves blocked clients *inside* the write that fed them: after `RPUSH k x` returns, the client
//! blocked on `k` has already popped `x`, so the pusher's next `LLEN k` sees 0. Here the waiters run on
//! their own connections, so the writer collects whom it woke ([`Woken`]) and its connection holds the
//! reply back until each of them has retried ([`Blocking::await_retries`]); a served waiter in turn
//! waits for the waiters it woke (a chain of BLMOVEs completes before the first push is answered). The
//! wait is bounded, so a waiter that cannot run (its socket stalled) delays the writer, never hangs it.
//!
//! A signal for a key nobody waits on costs one hash lookup, and commands skip even that while no client
//! is blocked ([`Blocking::has_waiters`]). Spurious wake-ups (a signalled key that is not a list, say) only
//! cost the woken client a retry.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_resp::Frame;
use tokio::sync::Notify;

/// What a blocking command asks the connection to wait for.
#[derive(Debug, Clone)]
pub struct BlockRequest {
    /// The keys whose change may let the command proceed.
    pub keys: Vec<Bytes>,
    /// When to give up; `None` waits forever.
    pub deadline: Option<Instant>,
    /// The reply when the deadline passes (a null array for BLPOP, a null bulk for BLMOVE, ...).
    pub timeout_reply: Frame,
}

/// One blocked client.
#[derive(Debug)]
pub struct Waiter {
    /// The client's id.
    pub client_id: u64,
    /// The database of its keys.
    pub db: usize,
    keys: Vec<Bytes>,
    woken: AtomicBool,
    notify: Notify,
    /// Retries finished (served or not), with everything they woke in turn.
    retries: AtomicU64,
    retried: Notify,
}

/// A waiter some write woke, and how many retries it had finished then.
#[derive(Debug)]
pub struct Woken {
    waiter: Arc<Waiter>,
    retries: u64,
}

impl Waiter {
    /// Waits for a wake-up and consumes it.
    pub async fn woken(&self) {
        loop {
            self.notify.notified().await;
            if self.woken.swap(false, Ordering::SeqCst) {
                return;
            }
        }
    }

    fn wake(&self) {
        self.woken.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// A retry (or the wait itself) is over, with every waiter it woke: writers waiting for it go on.
    pub fn finish_retry(&self) {
        self.retries.fetch_add(1, Ordering::SeqCst);
        self.retried.notify_waiters();
    }

    /// Waits until this waiter has finished a retry after the `seen`-th.
    async fn retried_after(&self, seen: u64) {
        loop {
            let notified = self.retried.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.retries.load(Ordering::SeqCst) > seen {
                return;
            }
            notified.await;
        }
    }
}

/// Every blocked client, queued per key.
#[derive(Debug, Default)]
pub struct Blocking {
    queues: Mutex<HashMap<Bytes, VecDeque<Arc<Waiter>>>>,
    waiters: AtomicUsize,
    /// Clients marked blocked (see [`Blocking::blocked_clients`]).
    blocked: AtomicUsize,
}

impl Blocking {
    /// Registers a client waiting on `keys` of `db`, at the back of each key's queue. The waiter starts
    /// out woken, so the client retries once after registering: a write that committed between its
    /// first attempt and the registration is not missed.
    pub fn register(&self, client_id: u64, db: usize, keys: &[Bytes]) -> Arc<Waiter> {
        let mut distinct: Vec<Bytes> = Vec::with_capacity(keys.len());
        for k in keys {
            if !distinct.contains(k) {
                distinct.push(k.clone());
            }
        }
        let waiter = Arc::new(Waiter {
            client_id,
            db,
            keys: distinct,
            woken: AtomicBool::new(false),
            notify: Notify::new(),
            retries: AtomicU64::new(0),
            retried: Notify::new(),
        });
        {
            let mut queues = self.queues.lock();
            for k in &waiter.keys {
                queues
                    .entry(k.clone())
                    .or_default()
                    .push_back(waiter.clone());
            }
            self.waiters.fetch_add(1, Ordering::SeqCst);
        }
        waiter.wake();
        waiter
    }

    /// Removes a waiter from every queue. If it was woken and had not consumed the wake-up, the next
    /// waiters of its keys are woken instead.
    pub fn remove(&self, waiter: &Arc<Waiter>) {
        {
            let mut queues = self.queues.lock();
            for k in &waiter.keys {
                if let Some(q) = queues.get_mut(k) {
                    q.retain(|w| !Arc::ptr_eq(w, waiter));
                    if q.is_empty() {
                        queues.remove(k);
                    }
                }
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
        if waiter.woken.swap(false, Ordering::SeqCst) {
            let mut passed_on = Vec::new();
            for k in &waiter.keys {
                self.signal(k, &mut passed_on);
            }
        }
    }

    /// Whether any client is blocked. Writers check this (after their write) before signalling.
    pub fn has_waiters(&self) -> bool {
        std::sync::atomic::fence(Ordering::SeqCst);
        self.waiters.load(Ordering::SeqCst) > 0
    }

    /// Number of blocked clients (INFO's `blocked_clients`): clients marked blocked and not yet
    /// unblocked, which `CLIENT UNBLOCK` changes at once.
    pub fn blocked_clients(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }

    /// A client was marked blocked.
    pub fn note_blocked(&self) {
        self.blocked.fetch_add(1, Ordering::SeqCst);
    }

    /// A client's blocked mark was cleared.
    pub fn note_unblocked(&self) {
        self.blocked.fetch_sub(1, Ordering::SeqCst);
    }

    /// Number of keys some client waits on.
    pub fn blocking_keys(&self) -> usize {
        self.queues.lock().len()
    }

    /// `key` may have changed: wakes its first waiter in each database and adds it to `woken`.
    pub fn signal(&self, key: &[u8], woken: &mut Vec<Woken>) {
        let queues = self.queues.lock();
        let Some(q) = queues.get(key) else {
            return;
        };
        let mut seen_dbs: Vec<usize> = Vec::new();
        for w in q {
            if !seen_dbs.contains(&w.db) {
                seen_dbs.push(w.db);
                // Read before the wake-up, so the retry it causes counts.
                let retries = w.retries.load(Ordering::SeqCst);
                w.wake();
                if !woken.iter().any(|x| Arc::ptr_eq(&x.waiter, w)) {
                    woken.push(Woken {
                        waiter: w.clone(),
                        retries,
                    });
                }
            }
        }
    }

    /// A stream at `key` may have changed: wakes *every* waiter of the key, as each blocked XREAD may
    /// be served by the same entries (and consumers of different groups too), unlike a pop that only
    /// one waiter can win. Woken waiters race for a group's new entries rather than being served in
    /// the order they blocked.
    pub fn signal_every(&self, key: &[u8], woken: &mut Vec<Woken>) {
        let queues = self.queues.lock();
        let Some(q) = queues.get(key) else {
            return;
        };
        for w in q {
            let retries = w.retries.load(Ordering::SeqCst);
            w.wake();
            if !woken.iter().any(|x| Arc::ptr_eq(&x.waiter, w)) {
                woken.push(Woken {
                    waiter: w.clone(),
                    retries,
                });
            }
        }
    }

    /// Every key may have changed (SWAPDB, FLUSHALL): wakes the first waiter of every key.
    pub fn signal_all(&self, woken: &mut Vec<Woken>) {
        let keys: Vec<Bytes> = self.queues.lock().keys().cloned().collect();
        for k in keys {
            self.signal(&k, woken);
        }
    }

    /// Waits (at most [`SERVE_WAIT`] in all) until every waiter in `woken` has retried since it was
    /// woken, and empties `woken`.
    pub async fn await_retries(woken: &mut Vec<Woken>) {
        if woken.is_empty() {
            return;
        }
        let all = async {
            for w in woken.iter() {
                w.waiter.retried_after(w.retries).await;
            }
        };
        let _ = tokio::time::timeout(SERVE_WAIT, all).await;
        woken.clear();
    }
}

/// How long a write's reply waits at most for the clients it woke to be served.
pub const SERVE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Parses a blocking timeout in seconds (a float; 0 waits forever) into a deadline.
pub fn parse_timeout(arg: &[u8]) -> Result<Option<Instant>, Frame> {
    let secs = std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.is_empty() && s.trim() == *s)
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|v| !v.is_nan() && v.is_finite())
        .ok_or_else(|| Frame::error("ERR timeout is not a float or out of range"))?;
    if secs < 0.0 {
        return Err(Frame::error("ERR timeout is negative"));
    }
    if secs == 0.0 {
        return Ok(None);
    }
    // Redis keeps milliseconds; a timeout past i64 milliseconds is out of range.
    let ms = (secs * 1000.0).ceil();
    if ms > i64::MAX as f64 {
        return Err(Frame::error("ERR timeout is out of range"));
    }
    let wait = std::time::Duration::from_millis(ms as u64);
    Ok(Some(Instant::now().checked_add(wait).ok_or_else(|| {
        Frame::error("ERR timeout is out of range")
    })?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_as_redis_does() {
        assert_eq!(parse_timeout(b"0").ok(), Some(None));
        assert!(matches!(parse_timeout(b"0.1"), Ok(Some(_))));
        assert_eq!(
            parse_timeout(b"-1").err(),
            Some(Frame::error("ERR timeout is negative"))
        );
        assert_eq!(
            parse_timeout(b"abc").err(),
            Some(Frame::error("ERR timeout is not a float or out of range"))
        );
    }

    #[tokio::test]
    async fn only_the_first_waiter_is_woken_and_removal_passes_the_wakeup_on() {
        let b = Blocking::default();
        let key = Bytes::from_static(b"k");
        let w1 = b.register(1, 0, std::slice::from_ref(&key));
        let w2 = b.register(2, 0, std::slice::from_ref(&key));
        // Both start woken once (the retry after registering).
        w1.woken().await;
        w2.woken().await;
        let mut woken = Vec::new();
        b.signal(&key, &mut woken);
        assert_eq!(woken.len(), 1);
        assert!(w1.woken.load(Ordering::SeqCst));
        assert!(!w2.woken.load(Ordering::SeqCst));
        b.remove(&w1);
        assert!(w2.woken.load(Ordering::SeqCst));
        b.remove(&w2);
        assert!(!b.has_waiters());
    }

    #[tokio::test]
    async fn a_writer_waits_until_the_waiters_it_woke_have_retried() {
        let b = Blocking::default();
        let key = Bytes::from_static(b"k");
        let w = b.register(1, 0, std::slice::from_ref(&key));
        w.woken().await;
        let mut woken = Vec::new();
        b.signal(&key, &mut woken);
        let waiting = tokio::spawn(async move {
            Blocking::await_retries(&mut woken).await;
            woken.len()
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        w.woken().await;
        w.finish_retry();
        assert_eq!(waiting.await.ok(), Some(0));
        b.remove(&w);
    }
}
