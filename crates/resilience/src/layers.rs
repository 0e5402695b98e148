//! The limiters and guards as tower middleware, so the gateway (or any tower stack) composes them:
//! [`RateLimitLayer`] (a keyed GCRA), [`CircuitBreakerLayer`] and [`BulkheadLayer`]. A refusal is an
//! error of the service ([`Refused`]) returned without calling the inner service.
//!
//! Retry is left to the caller's stack ([`crate::RetryPolicy`] computes the delays): retrying needs a
//! timer and a way to clone requests, which belong to the runtime and the protocol, not here.

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::breaker::CircuitBreaker;
use crate::bulkhead::Bulkhead;
use crate::gcra::GcraLimiter;

/// Why a middleware answered instead of the inner service, or the inner service's own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused<E> {
    /// The inner service failed.
    Inner(E),
    /// Over the rate limit; the request would fit after `retry_after` (`None`: it never fits).
    RateLimited {
        /// How long until the same request would be allowed.
        retry_after: Option<Duration>,
    },
    /// The circuit breaker is open.
    CircuitOpen,
    /// The bulkhead is full.
    BulkheadFull,
}

impl<E: std::fmt::Display> std::fmt::Display for Refused<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Inner(e) => e.fmt(f),
            Refused::RateLimited { .. } => f.write_str("rate limited"),
            Refused::CircuitOpen => f.write_str("circuit open"),
            Refused::BulkheadFull => f.write_str("too many concurrent requests"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for Refused<E> {}

/// A boxed response future.
pub type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// Rate-limits requests per key (extracted from the request) with a shared [`GcraLimiter`].
pub struct RateLimitLayer<K, F> {
    limiter: Arc<GcraLimiter<K>>,
    key: F,
}

impl<K, F: Clone> Clone for RateLimitLayer<K, F> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            limiter: self.limiter.clone(),
            key: self.key.clone(),
        }
    }
}

impl<K, F> RateLimitLayer<K, F> {
    /// A layer charging one unit per request to the key `key(&request)` gives.
    pub fn new(limiter: Arc<GcraLimiter<K>>, key: F) -> Self {
        RateLimitLayer { limiter, key }
    }
}

impl<S, K, F: Clone> Layer<S> for RateLimitLayer<K, F> {
    type Service = RateLimit<S, K, F>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            key: self.key.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] makes.
pub struct RateLimit<S, K, F> {
    inner: S,
    limiter: Arc<GcraLimiter<K>>,
    key: F,
}

impl<S, Req, K, F> Service<Req> for RateLimit<S, K, F>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: 'static,
    S::Error: 'static,
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
{
    type Response = S::Response;
    type Error = Refused<S::Error>;
    type Future = BoxFuture<S::Response, Refused<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Refused::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let d = self.limiter.check(&(self.key)(&req), 1);
        if d.limited {
            let retry_after = d
                .retry_after_ns
                .map(|ns| Duration::from_nanos(u64::try_from(ns).unwrap_or(0)));
            return Box::pin(async move { Err(Refused::RateLimited { retry_after }) });
        }
        let fut = self.inner.call(req);
        Box::pin(async move { fut.await.map_err(Refused::Inner) })
    }
}

/// Refuses requests while a shared [`CircuitBreaker`] is open and records each outcome.
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    breaker: Arc<CircuitBreaker>,
}

impl CircuitBreakerLayer {
    /// A layer guarded by `breaker`.
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        CircuitBreakerLayer { breaker }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = Breaker<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Breaker {
            inner,
            breaker: self.breaker.clone(),
        }
    }
}

/// The service [`CircuitBreakerLayer`] makes.
pub struct Breaker<S> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
}

impl<S, Req> Service<Req> for Breaker<S>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = Refused<S::Error>;
    type Future = BoxFuture<S::Response, Refused<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Refused::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if !self.breaker.allow() {
            return Box::pin(async { Err(Refused::CircuitOpen) });
        }
        let breaker = self.breaker.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            breaker.record(out.is_ok());
            out.map_err(Refused::Inner)
        })
    }
}

/// Refuses requests past a shared [`Bulkhead`]'s bound; a slot is held until the response is ready.
#[derive(Clone)]
pub struct BulkheadLayer {
    bulkhead: Bulkhead,
}

impl BulkheadLayer {
    /// A layer bounded by `bulkhead`.
    pub fn new(bulkhead: Bulkhead) -> Self {
        BulkheadLayer { bulkhead }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bounded<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Bounded {
            inner,
            bulkhead: self.bulkhead.clone(),
        }
    }
}

/// The service [`BulkheadLayer`] makes.
pub struct Bounded<S> {
    inner: S,
    bulkhead: Bulkhead,
}

impl<S, Req> Service<Req> for Bounded<S>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = Refused<S::Error>;
    type Future = BoxFuture<S::Response, Refused<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Refused::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let Some(permit) = self.bulkhead.try_acquire() else {
            return Box::pin(async { Err(Refused::BulkheadFull) });
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(permit);
            out.map_err(Refused::Inner)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BreakerConfig, Gcra, ManualClock};

    /// A service answering `Ok(n)` for a non-negative request and `Err(())` otherwise, at once.
    struct Echo;

    impl Service<i64> for Echo {
        type Response = i64;
        type Error = ();
        type Future = std::future::Ready<Result<i64, ()>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: i64) -> Self::Future {
            std::future::ready(if req >= 0 { Ok(req) } else { Err(()) })
        }
    }

    fn run<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn rate_limit_per_key() {
        let clock = Arc::new(ManualClock::new(0));
        let limiter = Arc::new(GcraLimiter::new(
            Gcra::per_period(1, 1, 1).expect("valid"),
            clock.clone(),
            100,
        ));
        let mut svc = RateLimitLayer::new(limiter, |r: &i64| r % 2).layer(Echo);
        assert_eq!(run(svc.call(2)), Ok(2));
        assert_eq!(run(svc.call(4)), Ok(4));
        assert!(matches!(
            run(svc.call(6)),
            Err(Refused::RateLimited {
                retry_after: Some(_)
            })
        ));
        assert_eq!(run(svc.call(1)), Ok(1));
        clock.advance(Duration::from_secs(1));
        assert_eq!(run(svc.call(8)), Ok(8));
    }

    #[test]
    fn breaker_opens_on_failures() {
        let clock = Arc::new(ManualClock::new(0));
        let breaker = Arc::new(CircuitBreaker::new(
            BreakerConfig {
                failure_threshold: 2,
                open_for: Duration::from_secs(5),
                half_open_calls: 1,
            },
            clock.clone(),
        ));
        let mut svc = CircuitBreakerLayer::new(breaker).layer(Echo);
        assert_eq!(run(svc.call(-1)), Err(Refused::Inner(())));
        assert_eq!(run(svc.call(-1)), Err(Refused::Inner(())));
        assert_eq!(run(svc.call(1)), Err(Refused::CircuitOpen));
        clock.advance(Duration::from_secs(5));
        assert_eq!(run(svc.call(1)), Ok(1));
        assert_eq!(run(svc.call(2)), Ok(2));
    }

    #[test]
    fn bulkhead_bounds_in_flight_futures() {
        let bulkhead = Bulkhead::new(1);
        let mut svc = BulkheadLayer::new(bulkhead.clone()).layer(Echo);
        let first = svc.call(1);
        assert_eq!(bulkhead.in_flight(), 1);
        assert_eq!(run(svc.call(2)), Err(Refused::BulkheadFull));
        assert_eq!(run(first), Ok(1));
        assert_eq!(bulkhead.in_flight(), 0);
        assert_eq!(run(svc.call(3)), Ok(3));
    }
}
