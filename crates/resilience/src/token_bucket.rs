//! A token bucket: holds up to `capacity` tokens, refilled continuously at `rate` tokens per second; a
//! request takes tokens or is told how long to wait.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Clock;

/// A token bucket (thread-safe).
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_ns: f64,
    clock: Arc<dyn Clock>,
    state: Mutex<(f64, i64)>,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `per_second` tokens per second.
    pub fn new(capacity: u64, per_second: f64, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now_ns();
        TokenBucket {
            capacity: capacity as f64,
            per_ns: per_second.max(0.0) / 1e9,
            clock,
            state: Mutex::new((capacity as f64, now)),
        }
    }

    /// Takes `n` tokens if there are enough; otherwise takes none and returns how long until there will be
    /// (`Duration::MAX` if `n` exceeds the capacity or the bucket never refills).
    pub fn try_acquire(&self, n: u64) -> Result<(), Duration> {
        let now = self.clock.now_ns();
        let mut state = self.state.lock();
        let (tokens, last) = *state;
        let elapsed = now.saturating_sub(last).max(0) as f64;
        let tokens = (tokens + elapsed * self.per_ns).min(self.capacity);
        let want = n as f64;
        if tokens >= want {
            *state = (tokens - want, now);
            return Ok(());
        }
        *state = (tokens, now);
        if want > self.capacity || self.per_ns <= 0.0 {
            return Err(Duration::MAX);
        }
        Err(Duration::from_nanos(
            ((want - tokens) / self.per_ns).ceil() as u64
        ))
    }

    /// Tokens available now.
    pub fn available(&self) -> f64 {
        let now = self.clock.now_ns();
        let (tokens, last) = *self.state.lock();
        (tokens + now.saturating_sub(last).max(0) as f64 * self.per_ns).min(self.capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn drains_and_refills() {
        let clock = Arc::new(ManualClock::new(0));
        let b = TokenBucket::new(3, 1.0, clock.clone());
        for _ in 0..3 {
            assert!(b.try_acquire(1).is_ok());
        }
        assert_eq!(b.try_acquire(1), Err(Duration::from_secs(1)));
        clock.advance(Duration::from_millis(500));
        assert_eq!(b.try_acquire(1), Err(Duration::from_millis(500)));
        clock.advance(Duration::from_millis(500));
        assert!(b.try_acquire(1).is_ok());
        clock.advance(Duration::from_secs(100));
        assert!((b.available() - 3.0).abs() < 1e-9);
        assert_eq!(b.try_acquire(4), Err(Duration::MAX));
    }
}
