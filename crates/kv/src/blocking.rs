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
//! A signal for a key nobody waits on costs one hash lookup, and commands skip even that while no client
//! is blocked ([`Blocking::has_waiters`]). Spurious wake-ups (a signalled key that is not a list, say) only
//! cost the woken client a retry.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
            for k in &waiter.keys {
                self.signal(k);
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

    /// `key` may have changed: wakes its first waiter in each database.
    pub fn signal(&self, key: &[u8]) {
        let queues = self.queues.lock();
        let Some(q) = queues.get(key) else {
            return;
        };
        let mut seen_dbs: Vec<usize> = Vec::new();
        for w in q {
            if !seen_dbs.contains(&w.db) {
                seen_dbs.push(w.db);
                w.wake();
            }
        }
    }

    /// Every key may have changed (SWAPDB, FLUSHALL): wakes the first waiter of every key.
    pub fn signal_all(&self) {
        let keys: Vec<Bytes> = self.queues.lock().keys().cloned().collect();
        for k in keys {
            self.signal(&k);
        }
    }
}

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
        b.signal(&key);
        assert!(w1.woken.load(Ordering::SeqCst));
        assert!(!w2.woken.load(Ordering::SeqCst));
        b.remove(&w1);
        assert!(w2.woken.load(Ordering::SeqCst));
        b.remove(&w2);
        assert!(!b.has_waiters());
    }
}
