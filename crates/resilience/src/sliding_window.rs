//! Sliding-window limiters.
//!
//! - [`SlidingWindow`], the counter: the count of the current fixed window plus the previous window's count
//!   weighted by how much of it the sliding window still covers. O(1) memory, and smooth at window edges
//!   where a fixed window would admit twice the limit; an approximation (it assumes the previous window's
//!   requests were evenly spread).
//! - [`SlidingLog`], the exact log: the timestamps of the units admitted in the last window. Exact, at
//!   O(limit) memory.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Clock;

#[derive(Debug, Default)]
struct State {
    window: i64,
    current: u64,
    previous: u64,
}

/// At most `limit` units per sliding `window` (thread-safe).
#[derive(Debug)]
pub struct SlidingWindow {
    limit: u64,
    window_ns: i64,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl SlidingWindow {
    /// A limiter of `limit` units per `window` (at least 1 ns).
    pub fn new(limit: u64, window: Duration, clock: Arc<dyn Clock>) -> Self {
        SlidingWindow {
            limit,
            window_ns: i64::try_from(window.as_nanos()).unwrap_or(i64::MAX).max(1),
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// Counts `n` units if the estimate stays within the limit; returns whether it did.
    pub fn try_acquire(&self, n: u64) -> bool {
        let now = self.clock.now_ns();
        let window = now.div_euclid(self.window_ns);
        let mut s = self.state.lock();
        if window != s.window {
            s.previous = if window == s.window + 1 { s.current } else { 0 };
            s.current = 0;
            s.window = window;
        }
        let elapsed = now.rem_euclid(self.window_ns) as f64 / self.window_ns as f64;
        let estimate = s.previous as f64 * (1.0 - elapsed) + s.current as f64;
        if estimate + n as f64 <= self.limit as f64 {
            s.current += n;
            true
        } else {
            false
        }
    }
}

/// At most `limit` units in any window of length `window`, exactly (thread-safe).
#[derive(Debug)]
pub struct SlidingLog {
    limit: usize,
    window_ns: i64,
    clock: Arc<dyn Clock>,
    /// When each admitted unit was admitted, oldest first.
    log: Mutex<std::collections::VecDeque<i64>>,
}

impl SlidingLog {
    /// A limiter of `limit` units per `window`.
    pub fn new(limit: usize, window: Duration, clock: Arc<dyn Clock>) -> Self {
        SlidingLog {
            limit,
            window_ns: i64::try_from(window.as_nanos()).unwrap_or(i64::MAX).max(1),
            clock,
            log: Mutex::new(std::collections::VecDeque::with_capacity(
                limit.min(1 << 16),
            )),
        }
    }

    /// Admits `n` units if the last window holds at most `limit - n`; otherwise admits none and returns
    /// how long until enough units leave the window (`Duration::MAX` if `n` exceeds the limit).
    pub fn try_acquire(&self, n: usize) -> Result<(), Duration> {
        if n > self.limit {
            return Err(Duration::MAX);
        }
        let now = self.clock.now_ns();
        let mut log = self.log.lock();
        while log
            .front()
            .is_some_and(|&t| t <= now.saturating_sub(self.window_ns))
        {
            log.pop_front();
        }
        if log.len() + n <= self.limit {
            log.extend(std::iter::repeat_n(now, n));
            return Ok(());
        }
        // The unit whose departure makes room: the (len + n - limit)-th oldest.
        let leaving = log
            .get(log.len() + n - self.limit - 1)
            .copied()
            .unwrap_or(now);
        let wait = leaving.saturating_add(self.window_ns).saturating_sub(now);
        Err(Duration::from_nanos(u64::try_from(wait).unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn weights_the_previous_window() {
        let clock = Arc::new(ManualClock::new(0));
        let w = SlidingWindow::new(10, Duration::from_secs(1), clock.clone());
        for _ in 0..10 {
            assert!(w.try_acquire(1));
        }
        assert!(!w.try_acquire(1));
        // Half-way into the next window, half the previous count still weighs.
        clock.advance(Duration::from_millis(1500));
        for _ in 0..5 {
            assert!(w.try_acquire(1));
        }
        assert!(!w.try_acquire(1));
        // Two windows later nothing is left.
        clock.advance(Duration::from_secs(2));
        assert!(w.try_acquire(10));
    }

    #[test]
    fn the_log_is_exact() {
        let clock = Arc::new(ManualClock::new(0));
        let l = SlidingLog::new(3, Duration::from_secs(1), clock.clone());
        assert!(l.try_acquire(2).is_ok());
        clock.advance(Duration::from_millis(400));
        assert!(l.try_acquire(1).is_ok());
        // Full: the first two leave at 1 s, 600 ms from now.
        assert_eq!(l.try_acquire(1), Err(Duration::from_millis(600)));
        assert_eq!(l.try_acquire(3), Err(Duration::from_millis(1000)));
        assert_eq!(l.try_acquire(4), Err(Duration::MAX));
        clock.advance(Duration::from_millis(600));
        assert!(l.try_acquire(2).is_ok());
        assert!(l.try_acquire(1).is_err());
    }

    proptest::proptest! {
        /// No window of the log's length ever holds more than the limit.
        #[test]
        fn no_window_exceeds_the_limit(
            limit in 1usize..6,
            steps in proptest::collection::vec((0u64..700, 1usize..3), 1..100),
        ) {
            let clock = Arc::new(ManualClock::new(0));
            let l = SlidingLog::new(limit, Duration::from_secs(1), clock.clone());
            let mut admitted: Vec<i64> = Vec::new();
            for (dt, n) in steps {
                clock.advance(Duration::from_millis(dt));
                if l.try_acquire(n).is_ok() {
                    admitted.extend(std::iter::repeat_n(clock.now_ns(), n));
                }
            }
            for (i, &t) in admitted.iter().enumerate() {
                let in_window = admitted[i..].iter().filter(|&&u| u < t + 1_000_000_000).count();
                proptest::prop_assert!(in_window <= limit);
            }
        }
    }
}
