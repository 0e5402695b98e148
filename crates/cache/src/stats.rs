//! Cheap statistics: hit and miss counters striped by thread, the rest counted under the shard write lock.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Stripes owned by one thread each. Threads beyond this many (alive at once) share one extra stripe.
const OWNED_STRIPES: usize = 64;

/// One stripe on its own cache line, so threads counting on different stripes never share a line.
#[derive(Default)]
#[repr(align(64))]
struct Stripe {
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Hit and miss counters, one stripe per live thread.
///
/// A single shared counter would be written by every thread on every lookup and become the bottleneck of the
/// read path. Stripes keep each thread's writes on a line no other thread writes, and because a stripe has
/// exactly one writer (its thread's [`ThreadSlot`] is unique among live threads), the count is a plain load
/// and store rather than a locked read-modify-write, which on x86 drains the store buffer and costs as much
/// as the rest of a hit. Threads without an owned slot (more than [`OWNED_STRIPES`] alive, or a thread
/// whose thread-locals are being torn down) share the last stripe and use `fetch_add` on it, so no count is
/// ever lost.
pub(crate) struct LookupCounters {
    /// The owned stripes, then the shared one. A fixed-size array, so picking a stripe needs no bounds check.
    stripes: Box<[Stripe; OWNED_STRIPES + 1]>,
}

impl LookupCounters {
    pub(crate) fn new() -> Self {
        Self {
            stripes: Box::new(std::array::from_fn(|_| Stripe::default())),
        }
    }

    #[inline]
    fn count(&self, pick: impl Fn(&Stripe) -> &AtomicU64) {
        let slot = SLOT.with(Cell::get);
        if slot < OWNED_STRIPES {
            // Single writer: load and store cannot lose an increment.
            let c = pick(&self.stripes[slot]);
            c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else {
            self.count_slow(slot, pick);
        }
    }

    /// [`LookupCounters::count`] for a thread without an owned stripe (or that has not taken its slot yet).
    #[cold]
    #[inline(never)]
    fn count_slow(&self, slot: usize, pick: impl Fn(&Stripe) -> &AtomicU64) {
        if slot == UNASSIGNED && take_slot() < OWNED_STRIPES {
            return self.count(pick);
        }
        pick(&self.stripes[OWNED_STRIPES]).fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn hit(&self) {
        self.count(|s| &s.hits);
    }

    #[inline]
    pub(crate) fn miss(&self) {
        self.count(|s| &s.misses);
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

/// Slot numbers handed back by exited threads, for reuse; and the next never-used number.
static FREE_SLOTS: parking_lot::Mutex<(Vec<usize>, usize)> =
    parking_lot::const_mutex((Vec::new(), 0));

/// A small number unique among live threads: the index of the stripe this thread owns in every cache.
///
/// Taken on a thread's first lookup and given back when the thread exits. The mutex orders the old owner's
/// last stores before the new owner's first load, so a reused stripe continues the old count exactly.
struct ThreadSlot(usize);

impl ThreadSlot {
    fn acquire() -> Self {
        let mut free = FREE_SLOTS.lock();
        let slot = match free.0.pop() {
            Some(slot) => slot,
            None => {
                free.1 += 1;
                free.1 - 1
            }
        };
        Self(slot)
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        // From now on this thread counts on the shared stripe, before another thread may own this one.
        SLOT.with(|s| s.set(DETACHED));
        FREE_SLOTS.lock().0.push(self.0);
    }
}

/// [`SLOT`] of a thread that has not counted yet.
const UNASSIGNED: usize = usize::MAX;
/// [`SLOT`] of a thread whose slot was given back (its thread-locals are being destroyed).
const DETACHED: usize = usize::MAX - 1;

thread_local! {
    /// This thread's slot number (its stripe, if below [`OWNED_STRIPES`]), [`UNASSIGNED`] or [`DETACHED`].
    /// A plain `Cell` with a constant initializer and no destructor: reading it is one load from the
    /// thread-local block, with none of the lazy-initialization checks of a thread-local that has a `Drop`.
    static SLOT: Cell<usize> = const { Cell::new(UNASSIGNED) };
    /// Owns the slot and gives it back when the thread exits. Touched once per thread.
    static GUARD: ThreadSlot = ThreadSlot::acquire();
}

/// Takes this thread's slot on its first count (or `DETACHED` while its thread-locals are being
/// destroyed), records it in [`SLOT`] and returns it.
fn take_slot() -> usize {
    let slot = GUARD.try_with(|g| g.0).unwrap_or(DETACHED);
    SLOT.with(|s| s.set(slot));
    slot
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
    fn more_live_threads_than_owned_stripes_lose_no_count() {
        let c = LookupCounters::new();
        let threads = OWNED_STRIPES + 16;
        let barrier = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    // All alive at once, so some threads have no owned stripe and share the last one.
                    barrier.wait();
                    for _ in 0..500 {
                        c.hit();
                        c.miss();
                    }
                });
            }
        });
        assert_eq!(c.sum(), (500 * threads as u64, 500 * threads as u64));
    }

    #[test]
    fn a_reused_slot_continues_the_count() {
        let c = LookupCounters::new();
        for _ in 0..8 {
            // Each thread exits before the next starts, so they all reuse the same slot.
            std::thread::scope(|s| {
                s.spawn(|| {
                    for _ in 0..100 {
                        c.hit();
                    }
                });
            });
        }
        assert_eq!(c.sum(), (800, 0));
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
