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
//!   ([`SkipHints::on_put`]);
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

use parking_lot::Mutex;

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
}

impl Hint {
    fn contains_tree_key(&self, tree: u32, key: &[u8]) -> bool {
        cmp_tree_key(tree, key, &self.start).is_ge() && cmp_tree_key(tree, key, &self.end).is_lt()
    }
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

/// The hints of one database.
#[derive(Debug, Default)]
pub(crate) struct SkipHints {
    /// Whether any hint was ever recorded (lets the write path skip the lock while hints are unused).
    any: AtomicBool,
    /// Highest seqno the commit leader may be applying (or has applied).
    applying: AtomicU64,
    hints: Mutex<Vec<Hint>>,
    /// Times a hint let an iterator skip ahead (for tests and diagnostics).
    used: AtomicU64,
}

impl SkipHints {
    /// Called by the commit leader before it applies a group whose last seqno is `last_seqno`. Returns
    /// whether the group's puts must be checked with [`SkipHints::on_put`].
    pub(crate) fn begin_apply(&self, last_seqno: u64) -> bool {
        self.applying.fetch_max(last_seqno, Ordering::SeqCst);
        self.any.load(Ordering::SeqCst)
    }

    /// A put of `key` in `tree` is being applied: drops the hints it falsifies.
    pub(crate) fn on_put(&self, tree: u32, key: &[u8]) {
        let mut h = self.hints.lock();
        if !h.is_empty() {
            h.retain(|x| !x.contains_tree_key(tree, key));
        }
    }

    /// Where a forward scan starting at prefixed key `lower` (inclusive) and reading at `read_seqno` may
    /// start instead: the end of a dead run containing `lower`.
    pub(crate) fn lookup(&self, lower: &[u8], read_seqno: u64) -> Option<Vec<u8>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        let h = self.hints.lock();
        let best = h
            .iter()
            .filter(|x| {
                x.seqno <= read_seqno && x.start.as_slice() <= lower && lower < x.end.as_slice()
            })
            .max_by(|a, b| a.end.cmp(&b.end))?;
        self.used.fetch_add(1, Ordering::Relaxed);
        Some(best.end.clone())
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
        let mut new = Hint {
            start: start.to_vec(),
            end: end.to_vec(),
            seqno: read_seqno,
        };
        // Merge with overlapping or adjacent runs: each is dead at its own seqno and every later one, so
        // the union is dead at the larger seqno.
        h.retain(|x| {
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
        if h.len() >= MAX_HINTS {
            h.remove(0);
        }
        h.push(new);
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
        assert_eq!(h.hints.lock().len(), 1);
    }
}
