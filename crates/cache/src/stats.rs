//! Cheap statistics: hit and miss counters striped by thread, the rest counted under the shard write lock.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A point-in-time snapshot of a cache's counters, from [`crate::Cache::stats`].
///
/// Counters are read shard by shard without stopping the world, so a snapshot taken during traffic is
/// approximate (each counter is exact, but they are not read at one instant).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or only an expired entry).
    pub misses: u64,
    /// New entries stored (replacing a live entry's value is not counted).
    pub inserts: u64,
    /// Entries dropped to make room, including newcomers the admission policy turned away.
    pub evictions: u64,
    /// Entries dropped because their time to live had passed.
    pub expirations: u64,
}

impl CacheStats {
    /// hits / (hits + misses), or 0 before any lookup.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Upper bound on stripes: more than the cores anyone runs a cache on buys nothing.
const MAX_STRIPES: usize = 64;

/// One stripe on its own cache line, so threads counting on different stripes never share a line.
#[derive(Default)]
#[repr(align(64))]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Hit and miss counters, one stripe per thread (modulo the stripe count).
///
/// A single shared counter would be written by every thread on every lookup and become the bottleneck of the
/// read path; stripes keep each thread's writes on a line no other thread touches.
pub(crate) struct LookupCounters {
    stripes: Box<[Stripe]>,
    mask: usize,
}

impl LookupCounters {
    pub(crate) fn new() -> Self {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_mul(2)
            .clamp(1, MAX_STRIPES)
            .next_power_of_two();
        Self {
            stripes: (0..n).map(|_| Stripe::default()).collect(),
            mask: n - 1,
        }
    }

    #[inline]
    fn stripe(&self) -> &Stripe {
        &self.stripes[thread_index() & self.mask]
    }

    #[inline]
    pub(crate) fn hit(&self) {
        self.stripe().hits.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        self.stripe().misses.fetch_add(1, Ordering::Relaxed);
    }

    /// (hits, misses) summed over the stripes.
    pub(crate) fn sum(&self) -> (u64, u64) {
        self.stripes.iter().fold((0, 0), |(h, m), s| {
            (
                h + s.hits.load(Ordering::Relaxed),
                m + s.misses.load(Ordering::Relaxed),
            )
        })
    }
}

/// A small per-thread number, handed out in order of first use.
#[inline]
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

/// Counters changed only under a shard's write lock; plain integers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ShardCounters {
    pub(crate) inserts: u64,
    pub(crate) evictions: u64,
    pub(crate) expirations: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_sum_across_threads() {
        let c = LookupCounters::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        c.hit();
                    }
                    c.miss();
                });
            }
        });
        assert_eq!(c.sum(), (4000, 4));
    }

    #[test]
    fn hit_ratio_of_empty_stats_is_zero() {
        assert_eq!(CacheStats::default().hit_ratio(), 0.0);
        let s = CacheStats {
            hits: 3,
            misses: 1,
            ..CacheStats::default()
        };
        assert!((s.hit_ratio() - 0.75).abs() < 1e-9);
    }
}
