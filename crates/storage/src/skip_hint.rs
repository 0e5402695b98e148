//! Skip hints: remembered runs of dead keys, so queue-like workloads do not rescan their tombstones.
//!
//! A consumer that pops the head of a queue by seeking from the start of the queue's key range steps over
//! every key it already deleted: point tombstones in the memtable and in young SSTs, each one a merge step.
//! After `n` pops that is `O(n)` per pop. A *skip hint* `(start, end, seqno)` records that a forward scan
//! reading at `seqno` found no visible key in `[start, end)` (prefixed user keys). A later forward
//! iterator whose lower bound lies in `[start, end)` and that reads at a seqno `>= seqno` seeks straight to
//! `end` instead.
//!
//! ## Why a hint is never wrong
//! "No visible key in `[start, end)` at `seqno`" stays true at every later read seqno `r` unless a **put**
//! with a seqno in `(seqno, r]` landed in the range: deletes and range deletes only hide more. Every put is
//! applied to the memtable by the commit leader before its seqno is published, so a reader at `r` only
//! sees puts that were applied, and the leader checks each applied put against the hints:
//!
//! - a put applied *after* a hint is installed removes every hint whose range contains its key
//!   ([`PutCheck::on_put`]);
//! - a put applied *before* the hint is installed, but with a seqno above the hint's, is caught at
//!   install time: the leader stores the highest seqno it may be applying ([`SkipHints::begin_apply`],
//!   before it touches the memtable), and [`SkipHints::record`] refuses a hint whose seqno is below it.
//!
//! The two sides are a Dekker-style handshake: the leader stores `applying` and then loads `any`, the
//! recorder stores `any` and then loads `applying` (all `SeqCst`), so at least one of them sees the other.
//! Readers at a seqno below the hint's (old snapshots) never use it. Flushes and compactions do not change
//! what any reader at or above the oldest live seqno sees, so they leave hints valid. Hints live only in
//! memory and start empty at every open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

/// Hints kept at once; the oldest is replaced first.
const MAX_HINTS: usize = 16;

/// Dead entries a scan without a hint must step over before it records one (keeps ordinary reads from
/// taking the hint lock).
pub(crate) const MIN_SKIPPED_TO_RECORD: usize = 8;

#[derive(Debug, Clone)]
struct Hint {
    /// First prefixed user key of the dead run.
    start: Vec<u8>,
    /// First prefixed user key after it (exclusive).
    end: Vec<u8>,
    /// The run is dead at this seqno and every later one (until a put lands in it).
    seqno: u64,
    /// When it was recorded (a counter): the oldest goes first when the list is full.
    born: u64,
    /// The first 16 bytes of `start` and `end` ([`head`]), which order most keys without a slice compare.
    start_head: u128,
    end_head: u128,
}

/// The first 16 bytes of a prefixed key as a big-endian number, zero-padded. Two keys whose heads differ
/// compare as their heads do; equal heads say nothing (`b"a"` and `b"a\0"` have the same one).
fn head(parts: &[&[u8]]) -> u128 {
    let mut b = [0u8; 16];
    let mut at = 0;
    for part in parts {
        let n = part.len().min(16 - at);
        b[at..at + n].copy_from_slice(&part[..n]);
        at += n;
    }
    u128::from_be_bytes(b)
}

/// Compares `tree_be ++ key` with the prefixed key `pk` without building the former.
fn cmp_tree_key(tree: u32, key: &[u8], pk: &[u8]) -> std::cmp::Ordering {
    let t = tree.to_be_bytes();
    let n = pk.len().min(4);
    t[..n].cmp(&pk[..n]).then_with(|| {
        if pk.len() < 4 {
            std::cmp::Ordering::Greater
        } else {
            key.cmp(&pk[4..])
        }
    })
}

/// The remembered runs, and how many were ever recorded.
#[derive(Debug, Default)]
struct Hints {
    runs: Vec<Hint>,
    recorded: u64,
}

/// The hints locked for the puts of one applied frame ([`SkipHints::checking`]).
pub(crate) struct PutCheck<'a>(MutexGuard<'a, Hints>);

impl PutCheck<'_> {
    /// A put of `key` in `tree` is being applied: drops the hint it falsifies, if any. The hints are in
    /// key order and disjoint, so this is a binary search, on the keys' first 16 bytes as numbers where
    /// they differ. Checking every hint's bounds slice by slice cost each put up to 32 key comparisons,
    /// ~11% of an XADD's CPU once scans elsewhere had filled the list.
    pub(crate) fn on_put(&mut self, tree: u32, key: &[u8]) {
        let runs = &mut self.0.runs;
        if runs.is_empty() {
            return;
        }
        let key_head = head(&[&tree.to_be_bytes(), key]);
        let cmp = |bound_head: u128, bound: &[u8]| {
            key_head
                .cmp(&bound_head)
                .then_with(|| cmp_tree_key(tree, key, bound))
        };
        let after = runs.partition_point(|x| cmp(x.start_head, &x.start).is_ge());
        if let Some(at) = after.checked_sub(1)
            && cmp(runs[at].end_head, &runs[at].end).is_lt()
        {
            runs.remove(at);
        }
    }
}

/// The hints of one database.
#[derive(Debug, Default)]
pub(crate) struct SkipHints {
    /// Whether any hint was ever recorded (lets the write path skip the lock while hints are unused).
    any: AtomicBool,
    /// Highest seqno the commit leader may be applying (or has applied).
    applying: AtomicU64,
    /// Disjoint and never adjacent ([`SkipHints::record`] merges runs that touch), in key order, so a key
    /// lies in at most one and a binary search finds it.
    hints: Mutex<Hints>,
    /// Times a hint let an iterator skip ahead (for tests and diagnostics).
    used: AtomicU64,
}

impl SkipHints {
    /// Called by the commit leader before it applies a group whose last seqno is `last_seqno`. Returns
    /// whether the group's puts must be checked with [`SkipHints::checking`].
    pub(crate) fn begin_apply(&self, last_seqno: u64) -> bool {
        self.applying.fetch_max(last_seqno, Ordering::SeqCst);
        self.any.load(Ordering::SeqCst)
    }

    /// The hints, locked while the commit leader applies one frame's puts ([`PutCheck::on_put`]): one lock
    /// per frame rather than per put.
    pub(crate) fn checking(&self) -> PutCheck<'_> {
        PutCheck(self.hints.lock())
    }

    /// A put of `key` in `tree` is being applied: drops the hint it falsifies, if any.
    #[cfg(test)]
    fn on_put(&self, tree: u32, key: &[u8]) {
        self.checking().on_put(tree, key);
    }

    /// Where a forward scan starting at prefixed key `lower` (inclusive) and reading at `read_seqno` may
    /// start instead: the end of a dead run containing `lower`.
    pub(crate) fn lookup(&self, lower: &[u8], read_seqno: u64) -> Option<Vec<u8>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let h = self.hints.lock();
        let after = h.runs.partition_point(|x| x.start.as_slice() <= lower);
        let hint = &h.runs[after.checked_sub(1)?];
        if hint.seqno > read_seqno || lower >= hint.end.as_slice() {
            return None;
        }
        self.used.fetch_add(1, Ordering::Relaxed);
        Some(hint.end.clone())
    }

    /// Records that a scan reading at `read_seqno` found no visible key in `[start, end)`.
    pub(crate) fn record(&self, start: &[u8], end: &[u8], read_seqno: u64) {
        if start >= end {
            return;
        }
        let mut h = self.hints.lock();
        self.any.store(true, Ordering::SeqCst);
        if self.applying.load(Ordering::SeqCst) > read_seqno {
            // A put above our read seqno may already be in the memtable, unchecked against this range.
            return;
        }
        h.recorded += 1;
        let mut new = Hint {
            start: start.to_vec(),
            end: end.to_vec(),
            seqno: read_seqno,
            born: h.recorded,
            start_head: 0,
            end_head: 0,
        };
        // Merge with overlapping or adjacent runs: each is dead at its own seqno and every later one, so
        // the union is dead at the larger seqno.
        h.runs.retain(|x| {
            let touches = x.start.as_slice() <= new.end.as_slice()
                && new.start.as_slice() <= x.end.as_slice();
            if touches {
                if x.start < new.start {
                    new.start.clone_from(&x.start);
                }
                if x.end > new.end {
                    new.end.clone_from(&x.end);
                }
                new.seqno = new.seqno.max(x.seqno);
            }
            !touches
        });
        if h.runs.len() >= MAX_HINTS
            && let Some(oldest) = (0..h.runs.len()).min_by_key(|&i| h.runs[i].born)
        {
            h.runs.remove(oldest);
        }
        new.start_head = head(&[&new.start]);
        new.end_head = head(&[&new.end]);
        let at = h.runs.partition_point(|x| x.start < new.start);
        h.runs.insert(at, new);
    }

    /// How often a hint let an iterator skip ahead.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pk(tree: u32, key: &[u8]) -> Vec<u8> {
        let mut v = tree.to_be_bytes().to_vec();
        v.extend_from_slice(key);
        v
    }

    #[test]
    fn lookup_respects_range_and_seqno() {
        let h = SkipHints::default();
        assert!(h.lookup(&pk(1, b"a"), 10).is_none());
        h.record(&pk(1, b"a"), &pk(1, b"m"), 10);
        assert_eq!(h.lookup(&pk(1, b"a"), 10), Some(pk(1, b"m")));
        assert_eq!(h.lookup(&pk(1, b"c"), 11), Some(pk(1, b"m")));
        // An older reader may still see keys there.
        assert!(h.lookup(&pk(1, b"a"), 9).is_none());
        assert!(h.lookup(&pk(1, b"m"), 10).is_none());
        assert!(h.lookup(&pk(2, b"c"), 10).is_none());
    }

    #[test]
    fn puts_inside_invalidate_puts_outside_do_not() {
        let h = SkipHints::default();
        h.record(&pk(1, b"a"), &pk(1, b"m"), 10);
        assert!(h.begin_apply(11));
        h.on_put(1, b"z");
        h.on_put(2, b"c");
        h.on_put(1, b"m");
        assert!(h.lookup(&pk(1, b"a"), 11).is_some());
        h.on_put(1, b"a");
        assert!(h.lookup(&pk(1, b"a"), 11).is_none());
    }

    #[test]
    fn record_refused_while_newer_writes_may_be_unchecked() {
        let h = SkipHints::default();
        assert!(!h.begin_apply(20));
        h.record(&pk(1, b"a"), &pk(1, b"m"), 10);
        assert!(h.lookup(&pk(1, b"a"), 30).is_none());
        h.record(&pk(1, b"a"), &pk(1, b"m"), 20);
        assert!(h.lookup(&pk(1, b"a"), 30).is_some());
    }

    #[test]
    fn adjacent_runs_merge() {
        let h = SkipHints::default();
        h.record(&pk(1, b"a"), &pk(1, b"c"), 5);
        h.record(&pk(1, b"c"), &pk(1, b"f"), 7);
        assert_eq!(h.lookup(&pk(1, b"a"), 7), Some(pk(1, b"f")));
        assert!(h.lookup(&pk(1, b"a"), 6).is_none());
        assert_eq!(h.hints.lock().runs.len(), 1);
    }

    #[test]
    fn many_runs_a_put_drops_only_its_own_and_the_oldest_goes_first() {
        let h = SkipHints::default();
        // Recorded out of key order: runs [k00, k00~), [k02, k02~), ... every other key.
        let key = |i: usize| format!("k{i:02}").into_bytes();
        let end = |i: usize| format!("k{i:02}~").into_bytes();
        for i in (0..MAX_HINTS).rev() {
            h.record(&pk(1, &key(2 * i)), &pk(1, &end(2 * i)), 5);
        }
        assert_eq!(h.hints.lock().runs.len(), MAX_HINTS);
        for i in 0..MAX_HINTS {
            assert_eq!(h.lookup(&pk(1, &key(2 * i)), 5), Some(pk(1, &end(2 * i))));
            // Between runs and in another tree: no hint.
            assert!(h.lookup(&pk(1, &key(2 * i + 1)), 5).is_none());
            assert!(h.lookup(&pk(2, &key(2 * i)), 5).is_none());
        }
        // Puts between runs, past the last, before the first and in another tree change nothing.
        for k in [&b"k01"[..], b"k99", b"a", b"k30~"] {
            h.on_put(1, k);
        }
        h.on_put(0, b"k04");
        h.on_put(2, b"k04");
        assert_eq!(h.hints.lock().runs.len(), MAX_HINTS);
        // A put inside one run drops that run only.
        h.on_put(1, b"k04x");
        assert!(h.lookup(&pk(1, &key(4)), 5).is_none());
        assert_eq!(h.hints.lock().runs.len(), MAX_HINTS - 1);
        assert!(h.lookup(&pk(1, &key(2)), 5).is_some());
        assert!(h.lookup(&pk(1, &key(6)), 5).is_some());
        // Full again, then one more: the first recorded (the last in key order) goes.
        h.record(&pk(1, b"k04"), &pk(1, b"k04~"), 5);
        h.record(&pk(1, b"j"), &pk(1, b"j~"), 5);
        assert_eq!(h.hints.lock().runs.len(), MAX_HINTS);
        assert!(h.lookup(&pk(1, &key(2 * (MAX_HINTS - 1))), 5).is_none());
        assert!(h.lookup(&pk(1, b"j"), 5).is_some());
        assert!(h.lookup(&pk(1, &key(4)), 5).is_some());
        let runs = h.hints.lock();
        assert!(runs.runs.windows(2).all(|w| w[0].end < w[1].start));
    }

    #[test]
    fn puts_find_their_run_by_head_and_by_bytes_alike() {
        // Keys from a tiny alphabet with zero bytes, ending around the 16-byte head (a prefixed key's head
        // is the tree id and the key's first 12 bytes), against runs whose bounds tie on the head.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let mut random_key = || -> Vec<u8> {
            // Eleven shared bytes, then up to five more: the heads often tie.
            let mut key = b"bench:xadd\0".to_vec();
            let len = next(6) as usize;
            key.extend((0..len).map(|_| [0u8, 1, b'a'][next(3) as usize]));
            key
        };
        for _ in 0..200 {
            let mut bounds: Vec<Vec<u8>> = (0..8).map(|_| random_key()).collect();
            bounds.sort();
            bounds.dedup();
            // Disjoint, non-adjacent runs: [b0, b1), [b2, b3), ...
            let runs: Vec<(Vec<u8>, Vec<u8>)> = bounds
                .chunks_exact(2)
                .map(|c| (c[0].clone(), c[1].clone()))
                .collect();
            for _ in 0..20 {
                let h = SkipHints::default();
                for (a, b) in &runs {
                    h.record(&pk(7, a), &pk(7, b), 1);
                }
                let key = random_key();
                h.on_put(7, &key);
                for (a, b) in &runs {
                    let inside = a.as_slice() <= key.as_slice() && key.as_slice() < b.as_slice();
                    assert_eq!(
                        h.lookup(&pk(7, a), 1).is_none(),
                        inside,
                        "run {a:?}..{b:?}, put {key:?}"
                    );
                }
            }
        }
    }
}
