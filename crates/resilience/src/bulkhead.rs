//! A bulkhead: at most `max` calls in flight; a call past it is refused at once rather than queued, so
//! one slow dependency cannot take every worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A bound on concurrent calls (cheap to clone; clones share the bound).
#[derive(Debug, Clone)]
pub struct Bulkhead {
    max: usize,
    in_flight: Arc<AtomicUsize>,
}

/// A slot in a bulkhead, released on drop.
#[derive(Debug)]
pub struct BulkheadPermit {
    in_flight: Arc<AtomicUsize>,
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkhead {
    /// A bulkhead admitting `max` concurrent calls.
    pub fn new(max: usize) -> Self {
        Bulkhead {
            max,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot, or `None` if `max` calls are in flight.
    pub fn try_acquire(&self) -> Option<BulkheadPermit> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| BulkheadPermit {
                in_flight: self.in_flight.clone(),
            })
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_releases() {
        let b = Bulkhead::new(2);
        let p1 = b.try_acquire().expect("first");
        let _p2 = b.try_acquire().expect("second");
        assert!(b.try_acquire().is_none());
        drop(p1);
        assert!(b.try_acquire().is_some());
        assert_eq!(b.in_flight(), 1);
    }
}
