//! Which keys surely hold nothing but a plain string: lets a blind overwrite (SET, MSET) skip reading the
//! record it replaces.
//!
//! Overwriting a key must drop what the old record owned: a collection's elements (one range tombstone)
//! and an expiry index entry. Knowing whether there is anything to drop takes a point read of the old
//! record, which costs as much as the write itself. This filter answers "the old record is at most a
//! string without TTL" without that read: one bit per hash of `(tree, key)`, set for every key that was
//! ever given a collection or a TTL. A clear bit proves the key never had one (since the filter was
//! built); a set bit (a real special record, a former one, or a hash collision) sends the writer to the
//! exact path with the read. Bits are never cleared, so the filter only ever errs on the safe side.
//!
//! A restart starts with an empty filter marked *not ready*, so every overwrite reads; a background thread
//! then scans the metadata records once, sets the bits of the special ones, and declares the filter
//! ready. Writers set bits themselves from the start, so the keys that become special during the scan
//! are covered too. Setting a bit happens before the record is written and both happen under the key's
//! lock stripe, as does the check, so a check never misses a record written before it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use strata_storage::huge::HugeSlice;

/// Bits in the filter: 16 Mi bits = 2 MiB, one huge page. With `k` special keys the chance that a plain
/// key must read anyway is about `k / 16Mi`.
///
/// Every command that checks its keys' expiry reads a bit here, at random: on 4 KiB pages a megabyte of
/// them missed the TLB as well as the cache, 60% of the dispatcher's own time in the `strata-bench kv`
/// EVALSHA run. On one huge page ([`strata_storage::huge`]) only the line is missed.
const BITS: usize = 1 << 24;

/// The filter; see the module documentation.
pub(crate) struct PlainFilter {
    words: HugeSlice<AtomicU64>,
    ready: AtomicBool,
    stop: AtomicBool,
}

impl std::fmt::Debug for PlainFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainFilter")
            .field("bits", &BITS)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl Default for PlainFilter {
    fn default() -> Self {
        PlainFilter {
            words: HugeSlice::new(BITS / 64),
            ready: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }
}

fn slot(tree: usize, key: &[u8]) -> (usize, u64) {
    // The memtable's key hash: eight bytes per multiply, where a byte-at-a-time FNV-1a was ~2% of an
    // EVALSHA (four or five checks of a 20-byte key per script). Its 128-bit multiply-fold spreads keys
    // differing only at the end over the whole table.
    let h = strata_storage::memtable::key_hash(tree as u32, key);
    let bit = (h as usize) & (BITS - 1);
    (bit / 64, 1 << (bit % 64))
}

impl PlainFilter {
    /// Whether `key` of `tree` surely holds no collection and no TTL (nor anything at all).
    pub(crate) fn surely_plain(&self, tree: usize, key: &[u8]) -> bool {
        if !self.ready.load(Ordering::Acquire) {
            return false;
        }
        let (word, mask) = slot(tree, key);
        self.words[word].load(Ordering::Relaxed) & mask == 0
    }

    /// Starts loading the word [`PlainFilter::surely_plain`] will read for `key` of `tree` (a hint: the
    /// filter is a MiB, so a random key's word is usually not in the nearest caches).
    pub(crate) fn prefetch(&self, tree: usize, key: &[u8]) {
        let (word, _) = slot(tree, key);
        strata_storage::prefetch::prefetch(&self.words[word]);
    }

    /// Notes that `key` of `tree` is about to hold a collection or a TTL. Returns whether it surely held
    /// neither before (as [`PlainFilter::surely_plain`] would have said).
    pub(crate) fn mark(&self, tree: usize, key: &[u8]) -> bool {
        let ready = self.ready.load(Ordering::Acquire);
        let (word, mask) = slot(tree, key);
        let w = &self.words[word];
        if w.load(Ordering::Relaxed) & mask != 0 {
            return false;
        }
        let before = w.fetch_or(mask, Ordering::Relaxed);
        ready && before & mask == 0
    }

    /// Declares the filter complete: every special record stored before the scan has its bit.
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the filter has been built.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Asks a running scan to give up (the keyspace is closing).
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether the scan should give up.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_plain_only_when_ready_and_unmarked() {
        let f = PlainFilter::default();
        assert!(!f.surely_plain(0, b"a"), "not ready yet");
        assert!(!f.mark(0, b"a"), "not ready: unknown before");
        f.set_ready();
        assert!(!f.surely_plain(0, b"a"));
        assert!(f.surely_plain(0, b"b"));
        assert!(f.surely_plain(1, b"a") || slot(1, b"a") == slot(0, b"a"));
        assert!(f.mark(0, b"b") || slot(0, b"b") == slot(0, b"a"));
        assert!(!f.mark(0, b"b"));
        assert!(!f.surely_plain(0, b"b"));
    }
}
