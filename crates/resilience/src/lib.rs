//! strata-resilience: the building blocks services use to stay up under load and failure.
//!
//! - Rate limiters, all driven by an injectable [`Clock`] so tests step time by hand:
//!   - [`gcra`]: the generic cell rate algorithm (a leaky bucket kept as one timestamp per key), with the
//!     exact arithmetic of the redis-cell module so `CL.THROTTLE` answers as redis-cell does;
//!   - [`token_bucket`]: a bucket refilled continuously, drained per request;
//!   - [`sliding_window`]: a sliding-window counter (two fixed windows weighted by overlap) and an exact
//!     sliding log.
//! - [`retry`]: retry policies with exponential backoff and jitter.
//! - [`breaker`]: a circuit breaker (closed → open → half-open).
//! - [`bulkhead`]: a bound on concurrent calls.
//!
//! These are plain synchronous state machines; [`layers`] wraps the rate limiter, the breaker and the
//! bulkhead as tower middleware for the gateway. Invariant: no I/O, no threads, no dependency on another
//! strata crate; time only through [`Clock`].

pub mod breaker;
pub mod bulkhead;
pub mod clock;
pub mod gcra;
pub mod layers;
pub mod retry;
pub mod sliding_window;
pub mod token_bucket;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use bulkhead::{Bulkhead, BulkheadPermit};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use gcra::{Gcra, GcraDecision, GcraError, GcraLimiter};
pub use retry::{Backoff, Jitter, RetryPolicy};
pub use sliding_window::{SlidingLog, SlidingWindow};
pub use token_bucket::TokenBucket;
