//! A circuit breaker: after `failure_threshold` consecutive failures it *opens* and refuses calls for
//! `open_for`; then it lets up to `half_open_calls` trial calls through (*half-open*): one failure opens it
//! again, `half_open_calls` successes close it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::Clock;

/// The breaker's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open.
    pub open_for: Duration,
    /// Trial calls let through while half-open, and successes needed to close.
    pub half_open_calls: u32,
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are refused until the deadline.
    Open,
    /// A few trial calls go through.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    opened_at: i64,
    trials: u32,
    successes: u32,
}

/// A circuit breaker (thread-safe).
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        CircuitBreaker {
            config,
            clock,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: 0,
                trials: 0,
                successes: 0,
            }),
        }
    }

    /// The current state (an open breaker past its deadline reads half-open).
    pub fn state(&self) -> BreakerState {
        let mut inner = self.inner.lock();
        self.refresh(&mut inner);
        inner.state
    }

    fn refresh(&self, inner: &mut Inner) {
        let open_ns = i64::try_from(self.config.open_for.as_nanos()).unwrap_or(i64::MAX);
        if inner.state == BreakerState::Open
            && self.clock.now_ns().saturating_sub(inner.opened_at) >= open_ns
        {
            inner.state = BreakerState::HalfOpen;
            inner.trials = 0;
            inner.successes = 0;
        }
    }

    /// Whether a call may go ahead now; a permitted call must be followed by [`CircuitBreaker::record`].
    pub fn allow(&self) -> bool {
        let mut inner = self.inner.lock();
        self.refresh(&mut inner);
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                if inner.trials < self.config.half_open_calls.max(1) {
                    inner.trials += 1;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Records the outcome of a permitted call.
    pub fn record(&self, success: bool) {
        let mut inner = self.inner.lock();
        self.refresh(&mut inner);
        let open = |inner: &mut Inner| {
            inner.state = BreakerState::Open;
            inner.opened_at = self.clock.now_ns();
            inner.failures = 0;
        };
        match (inner.state, success) {
            (BreakerState::Closed, true) => inner.failures = 0,
            (BreakerState::Closed, false) => {
                inner.failures += 1;
                if inner.failures >= self.config.failure_threshold.max(1) {
                    open(&mut inner);
                }
            }
            (BreakerState::HalfOpen, true) => {
                inner.successes += 1;
                if inner.successes >= self.config.half_open_calls.max(1) {
                    inner.state = BreakerState::Closed;
                    inner.failures = 0;
                }
            }
            (BreakerState::HalfOpen, false) => open(&mut inner),
            (BreakerState::Open, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[test]
    fn opens_half_opens_and_closes() {
        let clock = Arc::new(ManualClock::new(0));
        let b = CircuitBreaker::new(
            BreakerConfig {
                failure_threshold: 3,
                open_for: Duration::from_secs(10),
                half_open_calls: 2,
            },
            clock.clone(),
        );
        for _ in 0..2 {
            assert!(b.allow());
            b.record(false);
        }
        b.record(true);
        for _ in 0..3 {
            assert!(b.allow());
            b.record(false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        clock.advance(Duration::from_secs(10));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allow());
        assert!(b.allow());
        assert!(!b.allow());
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(10));
        assert!(b.allow() && b.allow());
        b.record(true);
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
