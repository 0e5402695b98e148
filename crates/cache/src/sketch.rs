//! A count-min sketch of 4-bit counters: TinyLFU's estimate of how often a key was asked for lately.
//!
//! Each key maps to one 64-byte block of eight words, and to four counters inside it (one in each pair of
//! words), so an estimate or an increment touches a single cache line. Counters saturate at 15; once the
//! sketch has counted `10 × width` additions every counter is halved, so the estimate follows what is popular
//! *now* rather than what was popular an hour ago (TinyLFU's "reset" operation).
//!
//! Increments are made with relaxed atomics under the shard's *read* lock, so two threads may race on a
//! counter; the loser's increment is dropped. That loses a little accuracy under contention and never
//! corrupts a neighbouring counter (a compare-and-swap, not an add that could carry into the next nibble).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters per 64-bit word.
const COUNTERS_PER_WORD: u32 = 16;
/// Words per block: one 64-byte cache line.
const WORDS_PER_BLOCK: usize = 8;
/// Largest value a 4-bit counter holds.
const COUNTER_MAX: u64 = 15;
/// Mask that keeps the low three bits of each nibble after a right shift by one (the halving step).
const HALVE_MASK: u64 = 0x7777_7777_7777_7777;
/// Smallest table, in words.
const MIN_WORDS: usize = WORDS_PER_BLOCK;

/// The frequency sketch of one shard.
pub(crate) struct FrequencySketch {
    table: Box<[AtomicU64]>,
    block_mask: u64,
    /// Increments since the last halving; drives aging.
    additions: AtomicU64,
    /// Number of additions after which every counter is halved.
    sample_size: u64,
}

impl FrequencySketch {
    /// A sketch sized for about `entries` distinct hot keys (rounded up to a power of two words).
    pub(crate) fn with_capacity(entries: usize) -> Self {
        let words = entries
            .max(MIN_WORDS)
            .checked_next_power_of_two()
            .unwrap_or(1 << 30);
        let table: Box<[AtomicU64]> = (0..words).map(|_| AtomicU64::new(0)).collect();
        Self {
            table,
            block_mask: (words / WORDS_PER_BLOCK) as u64 - 1,
            additions: AtomicU64::new(0),
            sample_size: 10 * words as u64,
        }
    }

    /// Number of words; the sketch is "sized for" this many keys.
    pub(crate) fn width(&self) -> usize {
        self.table.len()
    }

    /// Estimated recent access count of the key with this hash, 0..=15.
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        let mut min = COUNTER_MAX;
        for (word, shift) in self.slots(hash) {
            let v = (self.table[word].load(Ordering::Relaxed) >> shift) & COUNTER_MAX;
            min = min.min(v);
        }
        min as u8
    }

    /// Counts one access to the key with this hash.
    ///
    /// Conservative update: only the counters equal to the current minimum are raised, which keeps hot keys
    /// that share a counter with this one from inflating its estimate.
    #[inline]
    pub(crate) fn increment(&self, hash: u64) {
        let slots = self.slots(hash);
        let mut current = [0u64; 4];
        let mut min = COUNTER_MAX;
        for (i, &(word, shift)) in slots.iter().enumerate() {
            let w = self.table[word].load(Ordering::Relaxed);
            current[i] = w;
            min = min.min((w >> shift) & COUNTER_MAX);
        }
        if min == COUNTER_MAX {
            // Saturated: no write at all, so hot keys read by many threads do not bounce this cache line.
            return;
        }
        let mut added = false;
        for (i, &(word, shift)) in slots.iter().enumerate() {
            let w = current[i];
            if (w >> shift) & COUNTER_MAX == min {
                added |= self.table[word]
                    .compare_exchange(w, w + (1 << shift), Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
            }
        }
        if added {
            self.additions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether enough has been counted that the counters should be halved.
    pub(crate) fn needs_halving(&self) -> bool {
        self.additions.load(Ordering::Relaxed) >= self.sample_size
    }

    /// Halves every counter. Called with the shard's write lock held, so no increment runs concurrently.
    pub(crate) fn halve(&mut self) {
        for w in self.table.iter_mut() {
            let v = w.get_mut();
            *v = (*v >> 1) & HALVE_MASK;
        }
        let a = self.additions.get_mut();
        *a /= 2;
    }

    /// Word index and bit shift of the key's four counters.
    #[inline]
    fn slots(&self, hash: u64) -> [(usize, u32); 4] {
        let h = spread(hash);
        let block = ((h & self.block_mask) as usize) * WORDS_PER_BLOCK;
        let mut out = [(0usize, 0u32); 4];
        for (i, slot) in out.iter_mut().enumerate() {
            // Eight fresh bits per counter from the high half: one picks the word of the pair, four the nibble.
            let bits = (h >> (32 + 8 * i)) as u32;
            let word = block + i * 2 + (bits & 1) as usize;
            let nibble = (bits >> 1) % COUNTERS_PER_WORD;
            *slot = (word, nibble * 4);
        }
        out
    }
}

/// Re-mixes the table hash so the sketch's bits are independent of the bits the hash table and the shard
/// selector use.
#[inline]
fn spread(hash: u64) -> u64 {
    let x = (hash ^ (hash >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(i: u64) -> u64 {
        // Any well-mixed 64-bit value will do as a stand-in for a key's hash.
        let x = i
            .wrapping_add(0x1234_5678)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^ (x >> 31)
    }

    #[test]
    fn counts_up_and_saturates_at_fifteen() {
        let s = FrequencySketch::with_capacity(64);
        let h = hash_of(7);
        assert_eq!(s.frequency(h), 0);
        for n in 1..=20u8 {
            s.increment(h);
            assert_eq!(s.frequency(h), n.min(15));
        }
    }

    #[test]
    fn halving_ages_counts() {
        let mut s = FrequencySketch::with_capacity(64);
        let h = hash_of(3);
        for _ in 0..9 {
            s.increment(h);
        }
        s.halve();
        assert_eq!(s.frequency(h), 4);
    }

    #[test]
    fn triggers_halving_after_ten_times_width_additions() {
        let s = FrequencySketch::with_capacity(64);
        let mut i = 0;
        while !s.needs_halving() {
            s.increment(hash_of(i));
            i += 1;
            assert!(i < 100_000, "never asked to halve");
        }
        assert!(i >= 10 * s.width() as u64);
    }

    #[test]
    fn hot_keys_estimate_higher_than_cold_ones() {
        let s = FrequencySketch::with_capacity(1024);
        for round in 0..10 {
            for k in 0..50 {
                s.increment(hash_of(k));
            }
            // A thousand one-hit wonders per round.
            for k in 0..1000 {
                s.increment(hash_of(1_000_000 + round * 1000 + k));
            }
        }
        let hot: u32 = (0..50).map(|k| u32::from(s.frequency(hash_of(k)))).sum();
        let cold: u32 = (0..50)
            .map(|k| u32::from(s.frequency(hash_of(1_000_000 + k))))
            .sum();
        assert!(hot >= 50 * 9, "hot {hot}");
        assert!(cold <= 50 * 2, "cold {cold}");
    }
}
