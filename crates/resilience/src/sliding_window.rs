//! A sliding-window counter: the count of the current fixed window plus the previous window's count
//! weighted by how much of it the sliding window still covers. O(1) memory, and smooth at window edges
//! where a fixed window would admit twice the limit.

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
}
