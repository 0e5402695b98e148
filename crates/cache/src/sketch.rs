//! A count-min sketch of 4-bit counters: TinyLFU's estimate of how often a key was asked for lately.
//!
//! Each key maps to one 64-byte block of eight words, and to four counters inside it (one in each pair of
//! words), so an estimate or an increment touches a single cache line. Counters saturate at 15; once the
//! sketch has counted `10 × width` additions every counter is halved, so the estimate follows what is popular
//! *now* rather than what was popular an hour ago (TinyLFU's "reset" operation).
//!
//! In front of the counters sits a *doorkeeper* (TinyLFU paper, section 3.4.2): a small Bloom filter that
//! absorbs each key's first access since the last halving. A key's estimate is its counters plus one if
//! the doorkeeper knows it. Most keys of a skewed trace are seen once and never again; they set two bits in
//! one word and leave the counters alone, so the counters are shared by fewer keys (less overestimation)
//! and an insert of a brand-new key costs one word instead of a read-modify-write of four counters. The
//! doorkeeper is cleared whenever the counters are halved, which also halves (floors) its contribution.
//!
//! The sketch is only touched under the shard's write lock: reads of cached entries count their accesses
//! in the entry itself, and those counts are folded in here when the policy next looks at the entry (see
//! `policy.rs`). So the counters are plain integers, not atomics.

/// Words per block: one 64-byte cache line.
const WORDS_PER_BLOCK: usize = 8;
/// Largest value a 4-bit counter holds.
const COUNTER_MAX: u64 = 15;
/// Mask that keeps the low three bits of each nibble after a right shift by one (the halving step).
const HALVE_MASK: u64 = 0x7777_7777_7777_7777;
/// Smallest table, in words.
const MIN_WORDS: usize = WORDS_PER_BLOCK;
/// Doorkeeper bits per counter word: between two halvings at most `10 × width` keys enter it, and at this
/// size a newcomer still finds both of its bits clear most of the time (a false positive only sends the key
/// to the counters one access early).
const DOOR_BITS_PER_WORD: usize = 32;

/// The frequency sketch of one shard.
pub(crate) struct FrequencySketch {
    table: Box<[u64]>,
    block_mask: u64,
    /// The doorkeeper's bits: two per key, in one word.
    door: Box<[u64]>,
    door_mask: u64,
    /// Increments since the last halving; drives aging.
    additions: u64,
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
        let door_words = words * DOOR_BITS_PER_WORD / 64;
        Self {
            table: vec![0; words].into_boxed_slice(),
            block_mask: (words / WORDS_PER_BLOCK) as u64 - 1,
            door: vec![0; door_words].into_boxed_slice(),
            door_mask: door_words as u64 - 1,
            additions: 0,
            sample_size: 10 * words as u64,
        }
    }

    /// Number of words; the sketch is "sized for" this many keys.
    pub(crate) fn width(&self) -> usize {
        self.table.len()
    }

    /// Estimated recent access count of the key with this hash, 0..=16: its counters plus its doorkeeper bit.
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        self.counters(hash) + u8::from(self.door_contains(hash))
    }

    /// The minimum of the key's four counters, 0..=15.
    fn counters(&self, hash: u64) -> u8 {
        let (base, picks) = locate(hash, self.block_mask);
        let Some(block) = self
            .table
            .get(base..base + WORDS_PER_BLOCK)
            .and_then(|b| <&[u64; WORDS_PER_BLOCK]>::try_from(b).ok())
        else {
            return 0;
        };
        picks
            .iter()
            .map(|&(word, shift)| (block[word & 7] >> shift) & COUNTER_MAX)
            .fold(COUNTER_MAX, u64::min) as u8
    }

    /// Counts one access to the key with this hash; see [`FrequencySketch::add`].
    #[cfg(test)]
    pub(crate) fn increment(&mut self, hash: u64) -> (u8, bool) {
        self.add(hash, 1)
    }

    /// Counts `n` accesses to the key with this hash. Returns the key's new estimate (as it was before any
    /// halving) and whether the counters were then halved (aged).
    ///
    /// Conservative update: the estimate (the minimum of the four counters) rises by `n`, and no counter is
    /// raised above the new estimate. Counters shared with hotter keys are left alone, which keeps those keys
    /// from inflating this one's estimate.
    ///
    /// The first access since the last halving only sets the key's doorkeeper bits; the counters are not
    /// even read, so a first-seen key's estimate is 1 (its counters, usually zero, are ignored until its
    /// second access: they hold only collisions and the halved remains of older history).
    #[inline]
    pub(crate) fn add(&mut self, hash: u64, n: u8) -> (u8, bool) {
        // Fast path, inlined into the insert: one access to a key the doorkeeper has not seen, which is what
        // nearly every insert into a full shard of a skewed trace is. It touches one doorkeeper word; the
        // counters (and the registers the general path needs) are left to `add_slow`.
        let (word, mask) = door_locate(hash, self.door_mask);
        if n == 1
            && let Some(w) = self.door.get_mut(word)
            && *w & mask != mask
        {
            *w |= mask;
            self.additions += 1;
            if self.additions >= self.sample_size {
                self.halve();
                return (1, true);
            }
            return (1, false);
        }
        self.add_slow(hash, n)
    }

    /// [`FrequencySketch::add`] for a key the doorkeeper knows, or several accesses at once.
    #[inline(never)]
    fn add_slow(&mut self, hash: u64, n: u8) -> (u8, bool) {
        let (word, mask) = door_locate(hash, self.door_mask);
        let Some(w) = self.door.get_mut(word) else {
            return (0, false);
        };
        let (target, raised) = if *w & mask != mask {
            *w |= mask;
            if n <= 1 {
                (1, 1)
            } else {
                let (t, r) = self.raise(hash, n - 1);
                (t + 1, r + 1)
            }
        } else {
            let (t, r) = self.raise(hash, n);
            (t + 1, r)
        };
        self.additions += raised;
        if self.additions >= self.sample_size {
            self.halve();
            return (target, true);
        }
        (target, false)
    }

    /// Raises the key's estimate to at least `n` without counting towards aging: for carrying resident
    /// keys' estimates over into a resized sketch.
    pub(crate) fn seed(&mut self, hash: u64, n: u8) {
        let current = self.frequency(hash);
        if n > current {
            self.raise(hash, n - current);
        }
    }

    /// Whether the doorkeeper has seen the key since the last halving.
    fn door_contains(&self, hash: u64) -> bool {
        let (word, mask) = door_locate(hash, self.door_mask);
        self.door.get(word).is_some_and(|w| w & mask == mask)
    }

    /// Conservative update by `n`; returns the new estimate and how much it rose.
    ///
    /// Written out counter by counter (no arrays, no loops): every insert runs this, and the generic version
    /// compiled to about three times the instructions.
    #[inline]
    fn raise(&mut self, hash: u64, n: u8) -> (u8, u64) {
        let (base, [(w0, s0), (w1, s1), (w2, s2), (w3, s3)]) = locate(hash, self.block_mask);
        let Some(block) = self
            .table
            .get_mut(base..base + WORDS_PER_BLOCK)
            .and_then(|b| <&mut [u64; WORDS_PER_BLOCK]>::try_from(b).ok())
        else {
            return (0, 0);
        };
        let (w0, w1, w2, w3) = (w0 & 7, w1 & 7, w2 & 7, w3 & 7);
        let c0 = (block[w0] >> s0) & COUNTER_MAX;
        let c1 = (block[w1] >> s1) & COUNTER_MAX;
        let c2 = (block[w2] >> s2) & COUNTER_MAX;
        let c3 = (block[w3] >> s3) & COUNTER_MAX;
        let min = c0.min(c1).min(c2.min(c3));
        let target = (min + u64::from(n)).min(COUNTER_MAX);
        if target == min {
            return (target as u8, 0);
        }
        // The four picks lie in four different words, so the raises are independent; a counter already at
        // or above the target gets a zero raise (no branch).
        block[w0] += target.saturating_sub(c0) << s0;
        block[w1] += target.saturating_sub(c1) << s1;
        block[w2] += target.saturating_sub(c2) << s2;
        block[w3] += target.saturating_sub(c3) << s3;
        (target as u8, target - min)
    }

    /// Halves every counter and clears the doorkeeper (an estimate of c + 1 becomes c / 2).
    #[cold]
    #[inline(never)]
    fn halve(&mut self) {
        for w in self.table.iter_mut() {
            *w = (*w >> 1) & HALVE_MASK;
        }
        self.door.fill(0);
        self.additions /= 2;
    }
}

/// The first word of the key's block, and the word (within the block) and bit shift of its four counters.
#[inline]
fn locate(hash: u64, block_mask: u64) -> (usize, [(usize, u32); 4]) {
    let h = spread(hash);
    let base = ((h & block_mask) as usize) * WORDS_PER_BLOCK;
    // Eight fresh bits per counter from the high half: one picks the word of the pair, four the nibble.
    let pick = |i: usize| {
        let bits = (h >> (32 + 8 * i)) as u32;
        (i * 2 + (bits & 1) as usize, ((bits >> 1) & 15) * 4)
    };
    (base, [pick(0), pick(1), pick(2), pick(3)])
}

/// The doorkeeper word of the key and the mask of its two bits in it.
#[inline]
fn door_locate(hash: u64, door_mask: u64) -> (usize, u64) {
    let d = hash.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let word = ((d >> 40) & door_mask) as usize;
    (word, (1u64 << (d & 63)) | (1u64 << ((d >> 6) & 63)))
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
    fn counts_up_and_saturates_at_sixteen() {
        let mut s = FrequencySketch::with_capacity(64);
        let h = hash_of(7);
        assert_eq!(s.frequency(h), 0);
        for n in 1..=20u8 {
            assert_eq!(s.increment(h), (n.min(16), false));
            assert_eq!(s.frequency(h), n.min(16));
        }
        s.add(hash_of(8), 9);
        assert_eq!(s.frequency(hash_of(8)), 9);
    }

    #[test]
    fn seeding_raises_to_at_least_n_without_aging() {
        let mut s = FrequencySketch::with_capacity(64);
        s.seed(hash_of(1), 6);
        assert_eq!(s.frequency(hash_of(1)), 6);
        s.seed(hash_of(1), 3);
        assert_eq!(s.frequency(hash_of(1)), 6);
        assert_eq!(s.additions, 0);
    }

    #[test]
    fn halving_ages_counts() {
        let mut s = FrequencySketch::with_capacity(64);
        let h = hash_of(3);
        s.add(h, 9);
        s.halve();
        assert_eq!(s.frequency(h), 4);
    }

    #[test]
    fn halves_after_ten_times_width_additions() {
        let mut s = FrequencySketch::with_capacity(64);
        let mut i = 0;
        while !s.increment(hash_of(i)).1 {
            i += 1;
            assert!(i < 100_000, "never halved");
        }
        assert!(i + 1 >= 10 * s.width() as u64);
    }

    #[test]
    fn hot_keys_estimate_higher_than_cold_ones() {
        let mut s = FrequencySketch::with_capacity(1024);
        for round in 0..8 {
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
        assert!(hot >= 50 * 7, "hot {hot}");
        assert!(cold <= 50 * 2, "cold {cold}");
    }
}
