//! Where limiters read the time: nanoseconds on some fixed epoch, so tests can drive it by hand.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// A source of the current time in nanoseconds since an epoch of its choosing. Limiters only subtract
/// readings of one clock, so the epoch does not matter (but a stored GCRA timestamp is only meaningful to
/// the same clock).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in nanoseconds.
    fn now_ns(&self) -> i64;
}

/// The monotonic clock of the process (epoch: when the value was made).
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> i64 {
        i64::try_from(self.0.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }
}

/// A clock tests set and advance by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `ns`.
    pub fn new(ns: i64) -> Self {
        ManualClock(AtomicI64::new(ns))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        self.0.fetch_add(ns, Ordering::SeqCst);
    }

    /// Sets the clock to `ns`.
    pub fn set_ns(&self, ns: i64) {
        self.0.store(ns, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ns(&self) -> i64 {
        (**self).now_ns()
    }
}
