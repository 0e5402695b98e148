//! Range tombstones indexed for the two questions reads ask of them: "which tombstones overlap this key
//! range?" (an iterator's bounds) and "which is the newest tombstone covering this key?" (a point read).
//!
//! Both used to walk every tombstone of a memtable or SST, and an iterator also copied, sorted and
//! fragmented all of them at creation. The key-value layer writes a range tombstone for every deleted
//! collection and every trimmed stream node, so a memtable holds thousands: `XADD ... MAXLEN ~` (a trim and
//! a scan per call) ran at 0.10x Redis because each call's scan re-fragmented all of them.
//!
//! A [`FragRun`] is a set of tombstones cut into disjoint fragments sorted by key, each fragment listing the
//! seqnos of the tombstones covering it, so both questions are a binary search plus the overlapping
//! fragments. An SST's tombstones never change and form one run. A memtable's grow one by one, so a
//! [`TombstoneSet`] keeps runs whose sizes follow a binary counter: an insert adds a run of one and merges
//! equal-sized neighbours, so a tombstone is re-fragmented O(log n) times over its life and a query looks at
//! O(log n) runs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

/// One range tombstone: keys in `[start, end)` with versions older than `seqno` are deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// First key covered.
    pub start: Bytes,
    /// First key not covered.
    pub end: Bytes,
    /// Seqno of the deletion.
    pub seqno: u64,
}

/// A piece of the key space covered by the same tombstones.
#[derive(Debug, Clone)]
struct Frag {
    start: Bytes,
    end: Bytes,
    /// Seqnos of the covering tombstones, highest first.
    seqnos: Vec<u64>,
}

/// Tombstones cut into disjoint fragments sorted by start key (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct FragRun {
    frags: Vec<Frag>,
    /// Tombstones this run was built from (its weight in [`TombstoneSet`]'s binary counter).
    tombstones: usize,
}

impl FragRun {
    /// Fragments `tombstones` (empty ranges are ignored).
    pub fn build(mut tombstones: Vec<Tombstone>) -> FragRun {
        let count = tombstones.len();
        tombstones.retain(|t| t.start < t.end);
        let mut bounds: Vec<Bytes> = tombstones
            .iter()
            .flat_map(|t| [t.start.clone(), t.end.clone()])
            .collect();
        bounds.sort_unstable();
        bounds.dedup();
        tombstones.sort_unstable_by(|a, b| a.start.cmp(&b.start));
        // Sweep the boundaries: a tombstone is active from its start to its end.
        let mut active: BTreeMap<u64, usize> = BTreeMap::new();
        let mut ends: BinaryHeap<Reverse<(Bytes, u64)>> = BinaryHeap::new();
        let mut next = 0;
        let mut frags: Vec<Frag> = Vec::new();
        for w in bounds.windows(2) {
            let (lo, hi) = (&w[0], &w[1]);
            while let Some(Reverse((end, seqno))) = ends.peek() {
                if end > lo {
                    break;
                }
                let seqno = *seqno;
                ends.pop();
                if let Some(n) = active.get_mut(&seqno) {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(&seqno);
                    }
                }
            }
            while next < tombstones.len() && tombstones[next].start <= *lo {
                let t = &tombstones[next];
                *active.entry(t.seqno).or_insert(0) += 1;
                ends.push(Reverse((t.end.clone(), t.seqno)));
                next += 1;
            }
            if active.is_empty() {
                continue;
            }
            let seqnos: Vec<u64> = active.keys().rev().copied().collect();
            match frags.last_mut() {
                // Neighbours covered by the same tombstones are one fragment.
                Some(last) if last.end == *lo && last.seqnos == seqnos => last.end = hi.clone(),
                _ => frags.push(Frag {
                    start: lo.clone(),
                    end: hi.clone(),
                    seqnos,
                }),
            }
        }
        FragRun {
            frags,
            tombstones: count,
        }
    }

    /// Whether the run covers nothing.
    pub fn is_empty(&self) -> bool {
        self.frags.is_empty()
    }

    /// The highest seqno at or below `read_seqno` of a tombstone covering `key`.
    pub fn max_covering(&self, key: &[u8], read_seqno: u64) -> Option<u64> {
        // Most point reads miss every tombstone of a run (a stream's header next to the tombstones of
        // its trimmed entries): two comparisons with the run's bounds spare the binary search.
        let (first, last) = (self.frags.first()?, self.frags.last()?);
        if key < first.start.as_ref() || key >= last.end.as_ref() {
            return None;
        }
        let i = self.frags.partition_point(|f| f.end.as_ref() <= key);
        let f = self.frags.get(i)?;
        if f.start.as_ref() > key {
            return None;
        }
        f.seqnos.iter().copied().find(|&s| s <= read_seqno)
    }

    /// Calls `visit(start, end, seqno)` for every fragment overlapping the key range `[lo, hi)` (or up to
    /// and including `hi` for an inclusive bound), once per covering seqno. Together the calls cover
    /// exactly what the original tombstones cover within the range.
    pub fn overlapping(
        &self,
        lo: &[u8],
        hi: Bound<&[u8]>,
        mut visit: impl FnMut(&Bytes, &Bytes, u64),
    ) {
        let mut i = self.frags.partition_point(|f| f.end.as_ref() <= lo);
        while let Some(f) = self.frags.get(i) {
            let before_hi = match hi {
                Bound::Included(h) => f.start.as_ref() <= h,
                Bound::Excluded(h) => f.start.as_ref() < h,
                Bound::Unbounded => true,
            };
            if !before_hi {
                break;
            }
            for &s in &f.seqnos {
                visit(&f.start, &f.end, s);
            }
            i += 1;
        }
    }

    /// Whether some fragment overlaps the key range from `lo` to `hi` (as in [`FragRun::overlapping`]).
    pub fn overlaps(&self, lo: &[u8], hi: Bound<&[u8]>) -> bool {
        let i = self.frags.partition_point(|f| f.end.as_ref() <= lo);
        self.frags.get(i).is_some_and(|f| match hi {
            Bound::Included(h) => f.start.as_ref() <= h,
            Bound::Excluded(h) => f.start.as_ref() < h,
            Bound::Unbounded => true,
        })
    }

    /// What this run says about `key` at `read_seqno`: the highest visible covering seqno with the end of
    /// its fragment, and the interval around `key` over which that answer holds (`None` ends are
    /// unbounded).
    pub fn locate(&self, key: &[u8], read_seqno: u64) -> Located {
        let i = self.frags.partition_point(|f| f.end.as_ref() <= key);
        let prev_end = i.checked_sub(1).map(|p| self.frags[p].end.clone());
        match self.frags.get(i) {
            Some(f) if f.start.as_ref() <= key => Located {
                from: Some(f.start.clone()),
                to: Some(f.end.clone()),
                cover: f
                    .seqnos
                    .iter()
                    .copied()
                    .find(|&s| s <= read_seqno)
                    .map(|s| (f.end.clone(), s)),
            },
            Some(f) => Located {
                from: prev_end,
                to: Some(f.start.clone()),
                cover: None,
            },
            None => Located {
                from: prev_end,
                to: None,
                cover: None,
            },
        }
    }

    /// The run as tombstones (one per fragment and covering seqno).
    fn pieces(&self) -> impl Iterator<Item = Tombstone> + '_ {
        self.frags.iter().flat_map(|f| {
            f.seqnos.iter().map(|&seqno| Tombstone {
                start: f.start.clone(),
                end: f.end.clone(),
                seqno,
            })
        })
    }
}

/// [`FragRun::locate`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The answer holds from this key (inclusive; `None`: from the start of the key space).
    pub from: Option<Bytes>,
    /// ... up to this key (exclusive; `None`: to the end).
    pub to: Option<Bytes>,
    /// The covering fragment's end and its highest seqno at or below the read seqno.
    pub cover: Option<(Bytes, u64)>,
}

/// A growing set of tombstones (a memtable's), as runs merged like a binary counter (see the module docs).
#[derive(Debug, Default)]
pub struct TombstoneSet {
    /// Largest (oldest) first; shared with iterators that snapshot them.
    runs: Vec<Arc<FragRun>>,
}

impl TombstoneSet {
    /// Adds a tombstone.
    pub fn insert(&mut self, t: Tombstone) {
        self.runs.push(Arc::new(FragRun::build(vec![t])));
        while self.runs.len() >= 2 {
            let n = self.runs.len();
            if self.runs[n - 2].tombstones > self.runs[n - 1].tombstones {
                break;
            }
            let (Some(b), Some(a)) = (self.runs.pop(), self.runs.pop()) else {
                break;
            };
            let merged: Vec<Tombstone> = a.pieces().chain(b.pieces()).collect();
            let mut run = FragRun::build(merged);
            run.tombstones = a.tombstones + b.tombstones;
            self.runs.push(Arc::new(run));
        }
    }

    /// Whether no tombstone was added.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// See [`FragRun::max_covering`].
    pub fn max_covering(&self, key: &[u8], read_seqno: u64) -> Option<u64> {
        self.runs
            .iter()
            .filter_map(|r| r.max_covering(key, read_seqno))
            .max()
    }

    /// See [`FragRun::overlapping`].
    pub fn overlapping(
        &self,
        lo: &[u8],
        hi: Bound<&[u8]>,
        mut visit: impl FnMut(&Bytes, &Bytes, u64),
    ) {
        for r in &self.runs {
            r.overlapping(lo, hi, &mut visit);
        }
    }

    /// Adds to `out` the runs that overlap the key range from `lo` to `hi`.
    pub fn runs_overlapping(&self, lo: &[u8], hi: Bound<&[u8]>, out: &mut Vec<Arc<FragRun>>) {
        out.extend(self.runs.iter().filter(|r| r.overlaps(lo, hi)).cloned());
    }
}

/// Several runs read as one (an iterator's view of every memtable's and SST's tombstones in its range),
/// answering point questions lazily and remembering the last answer's interval, so a scan asks the runs
/// again only when it crosses a fragment boundary.
#[derive(Debug, Default)]
pub struct RunsView {
    runs: Vec<Arc<FragRun>>,
    read_seqno: u64,
    last: std::sync::Mutex<Option<Located>>,
}

impl RunsView {
    /// A view of `runs` for reads at `read_seqno`.
    pub fn new(runs: Vec<Arc<FragRun>>, read_seqno: u64) -> RunsView {
        RunsView {
            runs,
            read_seqno,
            last: std::sync::Mutex::new(None),
        }
    }

    /// Whether there is nothing to look at.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The highest covering seqno at or below the read seqno of a tombstone covering `key`, with an end up
    /// to which that tombstone covers every key.
    pub fn covering(&self, key: &[u8]) -> Option<(Bytes, u64)> {
        if self.runs.is_empty() {
            return None;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = last.as_ref()
            && l.from.as_ref().is_none_or(|f| f.as_ref() <= key)
            && l.to.as_ref().is_none_or(|t| key < t.as_ref())
        {
            return l.cover.clone();
        }
        // The answer holds where every run's answer holds: the tightest of their intervals.
        let mut merged = Located {
            from: None,
            to: None,
            cover: None,
        };
        for r in &self.runs {
            let l = r.locate(key, self.read_seqno);
            if let Some(f) = l.from
                && merged.from.as_ref().is_none_or(|m| f > *m)
            {
                merged.from = Some(f);
            }
            if let Some(t) = l.to
                && merged.to.as_ref().is_none_or(|m| t < *m)
            {
                merged.to = Some(t);
            }
            if let Some((end, s)) = l.cover
                && merged.cover.as_ref().is_none_or(|(_, m)| s > *m)
            {
                merged.cover = Some((end, s));
            }
        }
        let cover = merged.cover.clone();
        *last = Some(merged);
        cover
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(start: &[u8], end: &[u8], seqno: u64) -> Tombstone {
        Tombstone {
            start: Bytes::copy_from_slice(start),
            end: Bytes::copy_from_slice(end),
            seqno,
        }
    }

    /// What the tombstones say about `key` at `read_seqno`, by walking all of them.
    fn naive(ts: &[Tombstone], key: &[u8], read_seqno: u64) -> Option<u64> {
        ts.iter()
            .filter(|t| t.seqno <= read_seqno && t.start.as_ref() <= key && key < t.end.as_ref())
            .map(|t| t.seqno)
            .max()
    }

    /// The answer for `key` from the pieces `overlapping` reports for a range containing it.
    fn from_pieces(set: &TombstoneSet, lo: &[u8], hi: &[u8], key: &[u8], rs: u64) -> Option<u64> {
        let mut best = None;
        set.overlapping(lo, Bound::Excluded(hi), |s, e, seq| {
            if seq <= rs && s.as_ref() <= key && key < e.as_ref() {
                best = best.max(Some(seq));
            }
        });
        best
    }

    #[test]
    fn nested_and_overlapping() {
        let mut set = TombstoneSet::default();
        set.insert(t(b"b", b"f", 5));
        set.insert(t(b"c", b"d", 9));
        set.insert(t(b"e", b"h", 7));
        assert_eq!(set.max_covering(b"a", 100), None);
        assert_eq!(set.max_covering(b"b", 100), Some(5));
        assert_eq!(set.max_covering(b"c", 100), Some(9));
        assert_eq!(set.max_covering(b"c", 8), Some(5));
        assert_eq!(set.max_covering(b"e", 100), Some(7));
        assert_eq!(set.max_covering(b"e", 6), Some(5));
        assert_eq!(set.max_covering(b"g", 6), None);
        assert_eq!(set.max_covering(b"h", 100), None);
        let mut seen = Vec::new();
        set.overlapping(b"g", Bound::Unbounded, |s, e, q| {
            seen.push((s.clone(), e.clone(), q))
        });
        // One piece of the e..h tombstone; where it starts depends on how the runs were merged.
        assert_eq!(seen.len(), 1);
        assert!(seen[0].0.as_ref() <= b"g".as_slice() && seen[0].1 == "h" && seen[0].2 == 7);
        let mut seen = 0;
        set.overlapping(b"0", Bound::Excluded(b"b"), |_, _, _| seen += 1);
        assert_eq!(seen, 0);
        set.overlapping(b"0", Bound::Included(b"b"), |_, _, _| seen += 1);
        assert_eq!(seen, 1);
    }

    proptest! {
        #[test]
        fn agrees_with_walking_every_tombstone(
            raw in proptest::collection::vec((0u8..20, 1u8..8, 1u64..50), 0..60),
            probes in proptest::collection::vec((0u8..30, 0u64..60), 1..40),
        ) {
            let ts: Vec<Tombstone> = raw
                .iter()
                .map(|&(s, len, q)| t(&[s], &[s.saturating_add(len)], q))
                .collect();
            let mut set = TombstoneSet::default();
            for x in &ts {
                set.insert(x.clone());
            }
            let run = FragRun::build(ts.clone());
            let mut runs = Vec::new();
            set.runs_overlapping(&[0], Bound::Unbounded, &mut runs);
            for &(k, rs) in &probes {
                // A fresh view per probe answers from the runs; one shared view answers from its memory.
                let view = RunsView::new(runs.clone(), rs);
                let got = view.covering(&[k]);
                prop_assert_eq!(got.as_ref().map(|c| c.1), naive(&ts, &[k], rs));
                if let Some((end, s)) = got {
                    // The tombstone behind the answer covers every key up to the returned end.
                    for key in k..end[0] {
                        prop_assert!(naive(&ts, &[key], rs).is_some_and(|m| m >= s));
                    }
                }
                let want = naive(&ts, &[k], rs);
                prop_assert_eq!(set.max_covering(&[k], rs), want);
                prop_assert_eq!(run.max_covering(&[k], rs), want);
                prop_assert_eq!(from_pieces(&set, &[k], &[k, 0], &[k], rs), want);
                prop_assert_eq!(from_pieces(&set, &[0], &[40], &[k], rs), want);
            }
            // A scan in key order through one view.
            for rs in [0u64, 10, 25, 60] {
                let view = RunsView::new(runs.clone(), rs);
                for k in 0u8..30 {
                    prop_assert_eq!(view.covering(&[k]).map(|c| c.1), naive(&ts, &[k], rs));
                }
            }
        }
    }
}
