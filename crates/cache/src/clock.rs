//! Time as the cache sees it: an injectable clock, so TTL tests advance time instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic clock reading nanoseconds since an arbitrary, fixed origin.
///
/// The cache reads it only when an entry carries an expiry (on reads of such entries and on inserts that set
/// one), so a cache without TTLs never pays for a clock read on its hit path.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's origin. Must never go backwards.
    fn now_ns(&self) -> u64;
}

/// The real clock: [`Instant`] measured from the moment the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        // u64 nanoseconds last 584 years; saturate rather than wrap past that.
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to; for tests of expiry.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use strata_cache::{Cache, ManualClock};
///
/// let clock = Arc::new(ManualClock::new());
/// let cache: Cache<u32, u32> = Cache::builder()
///     .max_capacity(100)
///     .clock(clock.clone())
///     .build();
/// cache.insert_with_ttl(1, 10, Duration::from_secs(5));
/// clock.advance(Duration::from_secs(6));
/// assert_eq!(cache.get(&1), None);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ns: AtomicU64,
}

impl ManualClock {
    /// A clock standing at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating at the end of time).
    pub fn advance(&self, by: Duration) {
        let by_ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .now_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(by_ns))
            });
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::new();
        assert_eq!(c.now_ns(), 0);
        c.advance(Duration::from_millis(3));
        assert_eq!(c.now_ns(), 3_000_000);
        c.advance(Duration::MAX);
        assert_eq!(c.now_ns(), u64::MAX);
    }

    #[test]
    fn system_clock_does_not_go_backwards() {
        let c = SystemClock::new();
        let a = c.now_ns();
        let b = c.now_ns();
        assert!(b >= a);
    }
}
