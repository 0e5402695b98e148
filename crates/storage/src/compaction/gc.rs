//! [`CompactionIterator`]: decides which versions survive a compaction.
//!
//! Live snapshots split the sequence-number space into *stripes*: version `v` is in the stripe of the
//! oldest snapshot `s` with `v <= s`, or in the "latest" stripe above all snapshots. Every reader that
//! sees an older version of a stripe also sees the newest one, so per user key only the newest version of
//! each stripe can ever be read. The iterator keeps exactly those, and further drops:
//!
//! - versions covered by a range tombstone of the same stripe (every reader that sees the version sees the
//!   tombstone too);
//! - at the bottommost level, point deletes with nothing older left under them, and range tombstones in
//!   the oldest stripe (everything they cover was dropped above). Nothing lies below the bottommost level,
//!   so nothing can resurface.
//!
//! Range tombstones not dropped are returned by [`CompactionIterator::range_tombstones_to_keep`] for the
//! outputs to carry forward.
//!
//! An optional [`EntryFilter`] (the engine's per-tree compaction filters, see [`crate::compaction::filter`])
//! may remove a value: it is asked only about the newest version of a key when that version is a put in the
//! latest stripe (no live snapshot sees it, so no snapshot's view changes), and `Remove` turns the put into
//! a point delete at the same seqno. Older versions below it, in this compaction or in deeper levels, stay
//! hidden from the latest readers; at the bottommost level the delete then goes by the rule above.

use crate::iter::InternalIterator;
use crate::key::{SeqNo, ValueKind, encode_internal_key, parse_internal_key, user_key};
use crate::sst::{RangeTombstone, SstError};

/// Counters of what a compaction dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcStats {
    /// Point entries read from the input.
    pub input_entries: u64,
    /// Entries emitted.
    pub output_entries: u64,
    /// Versions hidden by a newer version of the same stripe.
    pub dropped_shadowed: u64,
    /// Versions deleted by a range tombstone of the same stripe.
    pub dropped_covered: u64,
    /// Point deletes dropped at the bottommost level.
    pub dropped_point_tombstones: u64,
    /// Puts a compaction filter removed (turned into deletes; dropped too at the bottommost level).
    pub filter_removed: u64,
}

/// What a compaction filter decides about one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The value stays.
    Keep,
    /// The value is dead: the compaction replaces it with a delete at the same seqno.
    Remove,
}

/// Decides about the newest, unsnapshotted put of each user key a compaction sees (see the module docs).
/// Closures `FnMut(user_key, value) -> Decision` implement it.
pub trait EntryFilter {
    /// The decision for `value` stored under the (engine-level) `user_key`.
    fn decide(&mut self, user_key: &[u8], value: &[u8]) -> Decision;
}

impl<F: FnMut(&[u8], &[u8]) -> Decision> EntryFilter for F {
    fn decide(&mut self, user_key: &[u8], value: &[u8]) -> Decision {
        self(user_key, value)
    }
}

#[derive(Debug, Clone, Copy)]
struct Kept {
    key_start: usize,
    key_end: usize,
    value_end: usize,
    kind: ValueKind,
}

/// Filters a merged, sorted input down to the versions a compaction must keep. Forward only.
///
/// ```ignore
/// let mut gc = CompactionIterator::new(merged, &snapshots, task.bottommost, tombstones);
/// gc.seek_to_first()?;
/// while gc.valid() { writer.add(gc.key(), gc.value())?; gc.next()?; }
/// for t in gc.range_tombstones_to_keep() { writer.add_range_tombstone(t)?; }
/// ```
pub struct CompactionIterator<I: InternalIterator> {
    input: I,
    /// Live snapshot seqnos, ascending, deduplicated.
    snapshots: Vec<SeqNo>,
    bottommost: bool,
    /// Input range tombstones sorted by start key.
    tombstones: Vec<RangeTombstone>,
    /// Next tombstone (by start) not yet active.
    next_tombstone: usize,
    /// Tombstones whose range contains the current user key.
    active: Vec<usize>,
    /// Kept versions of the current user key: keys and values packed into `buf`.
    buf: Vec<u8>,
    kept: Vec<Kept>,
    pos: usize,
    stats: GcStats,
    filter: Option<Box<dyn EntryFilter>>,
}

impl<I: InternalIterator> CompactionIterator<I> {
    /// Wraps `input` (the merged inputs), given the live snapshots, whether the output level is bottommost,
    /// and the inputs' range tombstones.
    pub fn new(
        input: I,
        snapshots: &[SeqNo],
        bottommost: bool,
        mut range_tombstones: Vec<RangeTombstone>,
    ) -> Self {
        let mut snapshots = snapshots.to_vec();
        snapshots.sort_unstable();
        snapshots.dedup();
        range_tombstones.sort_by(|a, b| a.start.cmp(&b.start).then(b.seqno.cmp(&a.seqno)));
        range_tombstones.dedup();
        CompactionIterator {
            input,
            snapshots,
            bottommost,
            tombstones: range_tombstones,
            next_tombstone: 0,
            active: Vec::new(),
            buf: Vec::new(),
            kept: Vec::new(),
            pos: 0,
            stats: GcStats::default(),
            filter: None,
        }
    }

    /// Consults `filter` about the newest put of each key that no live snapshot can see.
    pub fn with_filter(mut self, filter: Box<dyn EntryFilter>) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Stripe index of `seqno`: the index of the oldest snapshot that sees it, or `snapshots.len()`.
    #[inline]
    fn stripe(&self, seqno: SeqNo) -> usize {
        self.snapshots.partition_point(|&s| s < seqno)
    }

    /// Positions at the first kept entry.
    pub fn seek_to_first(&mut self) -> Result<(), SstError> {
        self.next_tombstone = 0;
        self.active.clear();
        self.input.seek_to_first()?;
        self.fill()
    }

    /// Whether the iterator is on a kept entry.
    pub fn valid(&self) -> bool {
        self.pos < self.kept.len()
    }

    /// Internal key of the current kept entry.
    pub fn key(&self) -> &[u8] {
        self.kept
            .get(self.pos)
            .map_or(&[], |k| &self.buf[k.key_start..k.key_end])
    }

    /// Value of the current kept entry.
    pub fn value(&self) -> &[u8] {
        self.kept
            .get(self.pos)
            .map_or(&[], |k| &self.buf[k.key_end..k.value_end])
    }

    /// Advances to the next kept entry.
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<(), SstError> {
        if self.pos < self.kept.len() {
            self.pos += 1;
            self.stats.output_entries += 1;
        }
        if self.pos >= self.kept.len() {
            self.fill()?;
        }
        Ok(())
    }

    /// What was dropped so far.
    pub fn stats(&self) -> &GcStats {
        &self.stats
    }

    /// Range tombstones the outputs must carry: all of them, except at the bottommost level those in the
    /// oldest stripe (visible to every reader, and everything they covered has been dropped).
    pub fn range_tombstones_to_keep(&self) -> Vec<RangeTombstone> {
        self.tombstones
            .iter()
            .filter(|t| !(self.bottommost && self.stripe(t.seqno) == 0))
            .cloned()
            .collect()
    }

    /// Updates the set of tombstones containing `uk` (user keys only ever increase).
    fn advance_tombstones(&mut self, uk: &[u8]) {
        while let Some(t) = self.tombstones.get(self.next_tombstone) {
            if t.start.as_slice() > uk {
                break;
            }
            self.active.push(self.next_tombstone);
            self.next_tombstone += 1;
        }
        let ts = &self.tombstones;
        self.active.retain(|&i| ts[i].end.as_slice() > uk);
    }

    fn covered(&self, seqno: SeqNo, stripe: usize) -> bool {
        self.active.iter().any(|&i| {
            let t = &self.tombstones[i];
            t.seqno > seqno && self.stripe(t.seqno) == stripe
        })
    }

    /// Reads user keys from the input until one yields kept versions (or the input ends).
    fn fill(&mut self) -> Result<(), SstError> {
        self.kept.clear();
        self.buf.clear();
        self.pos = 0;
        // Holds the current user key; reused across keys.
        let mut current: Vec<u8> = Vec::new();
        while self.kept.is_empty() && self.input.valid() {
            current.clear();
            current.extend_from_slice(user_key(self.input.key()));
            self.advance_tombstones(&current);
            let mut last_stripe: Option<usize> = None;
            while self.input.valid() && user_key(self.input.key()) == current.as_slice() {
                let (seqno, kind) = {
                    let p = parse_internal_key(self.input.key())?;
                    (p.seqno, p.kind)
                };
                self.stats.input_entries += 1;
                let stripe = self.stripe(seqno);
                if last_stripe == Some(stripe) {
                    self.stats.dropped_shadowed += 1;
                } else {
                    last_stripe = Some(stripe);
                    if self.covered(seqno, stripe) {
                        // Older versions of this stripe are covered too; the stripe stays "taken".
                        self.stats.dropped_covered += 1;
                    } else if kind == ValueKind::Put
                        && stripe == self.snapshots.len()
                        && self.filter.as_mut().is_some_and(|f| {
                            f.decide(&current, self.input.value()) == Decision::Remove
                        })
                    {
                        // The newest version, visible to no snapshot, is dead: a delete at its seqno keeps
                        // older versions (here or in deeper levels) hidden from the latest readers.
                        self.stats.filter_removed += 1;
                        let key_start = self.buf.len();
                        encode_internal_key(&mut self.buf, &current, seqno, ValueKind::Delete);
                        self.kept.push(Kept {
                            key_start,
                            key_end: self.buf.len(),
                            value_end: self.buf.len(),
                            kind: ValueKind::Delete,
                        });
                    } else {
                        let key_start = self.buf.len();
                        self.buf.extend_from_slice(self.input.key());
                        let key_end = self.buf.len();
                        self.buf.extend_from_slice(self.input.value());
                        self.kept.push(Kept {
                            key_start,
                            key_end,
                            value_end: self.buf.len(),
                            kind,
                        });
                    }
                }
                self.input.next()?;
            }
            if self.bottommost {
                // A delete with nothing older beneath it hides nothing from anyone.
                while self
                    .kept
                    .last()
                    .is_some_and(|k| k.kind == ValueKind::Delete)
                {
                    self.kept.pop();
                    self.stats.dropped_point_tombstones += 1;
                }
            }
        }
        Ok(())
    }
}

/// The parts of `tombstones` inside `[lo, hi)` (`None` = unbounded), for one output file of a compaction
/// that splits its outputs at user keys: give output `i` the range from its first user key (unbounded for
/// the first output) to the next output's first user key (unbounded for the last). Each tombstone then
/// lands in exactly the outputs whose key range it touches, and the outputs' key ranges stay disjoint
/// except that a clipped tombstone's exclusive end may equal the next file's smallest key.
pub fn clip_tombstones(
    tombstones: &[RangeTombstone],
    lo: Option<&[u8]>,
    hi: Option<&[u8]>,
) -> Vec<RangeTombstone> {
    tombstones
        .iter()
        .filter_map(|t| {
            let start = match lo {
                Some(lo) if lo > t.start.as_slice() => lo,
                _ => t.start.as_slice(),
            };
            let end = match hi {
                Some(hi) if hi < t.end.as_slice() => hi,
                _ => t.end.as_slice(),
            };
            (start < end).then(|| RangeTombstone {
                start: start.to_vec(),
                end: end.to_vec(),
                seqno: t.seqno,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::iter::VecIterator;
    use crate::key::internal_key;

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn put(k: &str, s: SeqNo) -> (Vec<u8>, Vec<u8>) {
        (
            internal_key(k.as_bytes(), s, ValueKind::Put),
            format!("{k}{s}").into_bytes(),
        )
    }
    fn del(k: &str, s: SeqNo) -> (Vec<u8>, Vec<u8>) {
        (internal_key(k.as_bytes(), s, ValueKind::Delete), Vec::new())
    }
    fn rt(a: &str, b: &str, s: SeqNo) -> RangeTombstone {
        RangeTombstone {
            start: a.as_bytes().to_vec(),
            end: b.as_bytes().to_vec(),
            seqno: s,
        }
    }

    fn run(
        input: Vec<(Vec<u8>, Vec<u8>)>,
        snapshots: &[SeqNo],
        bottommost: bool,
        ts: Vec<RangeTombstone>,
    ) -> (Entries, Vec<RangeTombstone>, GcStats) {
        let mut gc = CompactionIterator::new(VecIterator::new(input), snapshots, bottommost, ts);
        gc.seek_to_first().unwrap();
        let mut out = Vec::new();
        while gc.valid() {
            out.push((gc.key().to_vec(), gc.value().to_vec()));
            gc.next().unwrap();
        }
        (out, gc.range_tombstones_to_keep(), *gc.stats())
    }

    fn run_filtered(
        input: Entries,
        snapshots: &[SeqNo],
        bottommost: bool,
        ts: Vec<RangeTombstone>,
        remove: impl Fn(&[u8], &[u8]) -> bool + 'static,
    ) -> (Entries, Vec<RangeTombstone>, GcStats) {
        let filter = move |k: &[u8], v: &[u8]| {
            if remove(k, v) {
                Decision::Remove
            } else {
                Decision::Keep
            }
        };
        let mut gc = CompactionIterator::new(VecIterator::new(input), snapshots, bottommost, ts)
            .with_filter(Box::new(filter));
        gc.seek_to_first().unwrap();
        let mut out = Vec::new();
        while gc.valid() {
            out.push((gc.key().to_vec(), gc.value().to_vec()));
            gc.next().unwrap();
        }
        (out, gc.range_tombstones_to_keep(), *gc.stats())
    }

    #[test]
    fn filter_turns_the_newest_put_into_a_delete_that_hides_older_versions() {
        let input = vec![put("a", 9), put("a", 4), put("b", 3), put("c", 8)];
        let (out, _, st) = run_filtered(input.clone(), &[], false, vec![], |k, _| k != b"b");
        // Not bottommost: deletes at the same seqnos keep a@4 (and anything deeper) hidden.
        assert_eq!(out, vec![del("a", 9), put("b", 3), del("c", 8)]);
        assert_eq!(st.filter_removed, 2);
        // Bottommost: the deletes hide nothing below, so they go too.
        let (out, _, st) = run_filtered(input, &[], true, vec![], |k, _| k != b"b");
        assert_eq!(out, vec![put("b", 3)]);
        assert_eq!((st.filter_removed, st.dropped_point_tombstones), (2, 2));
    }

    #[test]
    fn filter_never_touches_what_a_snapshot_sees() {
        // Snapshot 5: a@4 and b@3 are visible to it, a@9 is not.
        let input = vec![
            put("a", 9),
            put("a", 4),
            put("b", 3),
            del("c", 8),
            put("c", 2),
        ];
        let (out, _, st) = run_filtered(input, &[5], true, vec![], |_, _| true);
        assert_eq!(
            out,
            vec![
                del("a", 9),
                put("a", 4),
                put("b", 3),
                del("c", 8),
                put("c", 2)
            ],
            "the snapshot still reads a@4, b@3 and c@2; the latest readers see none of them"
        );
        assert_eq!(
            st.filter_removed, 1,
            "only a@9 was a candidate (c@8 is a delete)"
        );
    }

    #[test]
    fn filter_is_not_asked_about_covered_or_shadowed_versions() {
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = asked.clone();
        let input = vec![put("a", 9), put("a", 4), put("b", 3)];
        let (out, _, _) = run_filtered(input, &[], false, vec![rt("b", "c", 6)], move |k, v| {
            log.lock().unwrap().push((k.to_vec(), v.to_vec()));
            false
        });
        assert_eq!(out, vec![put("a", 9)]);
        assert_eq!(
            *asked.lock().unwrap(),
            vec![(b"a".to_vec(), b"a9".to_vec())]
        );
    }

    #[test]
    fn keeps_only_newest_without_snapshots() {
        let (out, _, st) = run(
            vec![
                put("a", 3),
                put("a", 2),
                del("b", 5),
                put("b", 1),
                put("c", 1),
            ],
            &[],
            false,
            vec![],
        );
        assert_eq!(out, vec![put("a", 3), del("b", 5), put("c", 1)]);
        assert_eq!(
            (st.input_entries, st.dropped_shadowed, st.output_entries),
            (5, 2, 3)
        );
    }

    #[test]
    fn snapshot_stripes_keep_one_version_each() {
        // Snapshots 4 and 9: stripes (..=4], (4..=9], (9..).
        let (out, _, _) = run(
            vec![
                put("k", 10),
                put("k", 8),
                put("k", 5),
                put("k", 3),
                put("k", 1),
            ],
            &[9, 4],
            false,
            vec![],
        );
        assert_eq!(out, vec![put("k", 10), put("k", 8), put("k", 3)]);
    }

    #[test]
    fn bottommost_drops_deletes_nothing_needs() {
        // No snapshot: the delete and everything below it go.
        let (out, _, st) = run(
            vec![del("k", 10), put("k", 5), put("j", 1)],
            &[],
            true,
            vec![],
        );
        assert_eq!(out, vec![put("j", 1)]);
        assert_eq!(st.dropped_point_tombstones, 1);
        // A snapshot at 7 still reads put@5 and the latest readers need the delete above it.
        let (out, _, _) = run(vec![del("k", 10), put("k", 5)], &[7], true, vec![]);
        assert_eq!(out, vec![del("k", 10), put("k", 5)]);
        // Not bottommost: the delete must stay to hide lower levels.
        let (out, _, _) = run(vec![del("k", 10), put("k", 5)], &[], false, vec![]);
        assert_eq!(out, vec![del("k", 10)]);
        // A delete under a put, at the bottom, hides nothing.
        let (out, _, _) = run(vec![put("k", 10), del("k", 5)], &[7], true, vec![]);
        assert_eq!(out, vec![put("k", 10)]);
    }

    #[test]
    fn range_tombstones_drop_covered_versions_in_their_stripe() {
        let input = vec![put("a", 5), put("b", 9), put("b", 3), put("c", 1)];
        let (out, keep, st) = run(input.clone(), &[], false, vec![rt("a", "c", 8)]);
        assert_eq!(out, vec![put("b", 9), put("c", 1)]);
        assert_eq!(
            keep,
            vec![rt("a", "c", 8)],
            "not bottommost: carried forward"
        );
        assert_eq!(st.dropped_covered, 1);
        // A snapshot at 6 separates a@5 from the tombstone: it must survive.
        let (out, keep, _) = run(input.clone(), &[6], true, vec![rt("a", "c", 8)]);
        assert_eq!(
            out,
            vec![put("a", 5), put("b", 9), put("b", 3), put("c", 1)]
        );
        assert_eq!(keep, vec![rt("a", "c", 8)]);
        // Bottommost and no snapshot: the tombstone did its work and goes too.
        let (_, keep, _) = run(input, &[], true, vec![rt("a", "c", 8)]);
        assert!(keep.is_empty());
    }

    #[test]
    fn pipeline_over_sstables() {
        use std::sync::Arc;

        use crate::merge::MergingIterator;
        use crate::sst::{SstOptions, SstReader, SstWriter};

        fn sst(entries: Entries, ts: Vec<RangeTombstone>) -> SstReader {
            let mut w = SstWriter::new(Vec::new(), SstOptions::default());
            let mut entries = entries;
            entries.sort_by(|a, b| crate::key::compare_internal(&a.0, &b.0));
            for (k, v) in &entries {
                w.add(k, v).unwrap();
            }
            for t in ts {
                w.add_range_tombstone(t).unwrap();
            }
            let (bytes, _) = w.finish().unwrap();
            SstReader::open(Arc::new(bytes), 1, None).unwrap()
        }
        // Newest first, as the engine passes them.
        let newest = sst(vec![put("a", 30), del("c", 31)], vec![rt("e", "g", 32)]);
        let middle = sst(vec![put("a", 20), put("c", 21), put("e", 22)], vec![]);
        let oldest = sst(vec![put("a", 10), put("f", 11), put("h", 12)], vec![]);
        let readers = [newest, middle, oldest];
        let merged = MergingIterator::new(
            readers
                .iter()
                .map(|r| Box::new(r.iter()) as Box<dyn InternalIterator>)
                .collect(),
        );
        let ts: Vec<RangeTombstone> = readers
            .iter()
            .flat_map(|r| r.range_tombstones().to_vec())
            .collect();
        let mut gc = CompactionIterator::new(merged, &[25], true, ts);
        let mut w = SstWriter::new(Vec::new(), SstOptions::default());
        gc.seek_to_first().unwrap();
        while gc.valid() {
            w.add(gc.key(), gc.value()).unwrap();
            gc.next().unwrap();
        }
        for t in gc.range_tombstones_to_keep() {
            w.add_range_tombstone(t).unwrap();
        }
        let (bytes, meta) = w.finish().unwrap();
        let out = SstReader::open(Arc::new(bytes), 2, None).unwrap();
        out.verify().unwrap();
        let mut it = out.iter();
        it.seek_to_first().unwrap();
        let mut got = Vec::new();
        while it.valid() {
            got.push((it.key().to_vec(), it.value().to_vec()));
            it.next().unwrap();
        }
        // Snapshot 25 keeps a@20, c@21, e@22 under the newer writes; a@10 is shadowed in its stripe;
        // f@11 is deleted by the tombstone in the latest stripe but still visible to the snapshot.
        assert_eq!(
            got,
            vec![
                put("a", 30),
                put("a", 20),
                del("c", 31),
                put("c", 21),
                put("e", 22),
                put("f", 11),
                put("h", 12),
            ]
        );
        assert_eq!(out.range_tombstones(), &[rt("e", "g", 32)]);
        assert_eq!(meta.point_tombstones, 1);
        assert_eq!(gc.stats().dropped_shadowed, 1);
    }

    #[test]
    fn clipping_splits_tombstones_between_outputs() {
        let ts = vec![rt("b", "m", 5), rt("x", "z", 6)];
        assert_eq!(
            clip_tombstones(&ts, None, Some(b"f")),
            vec![rt("b", "f", 5)]
        );
        assert_eq!(
            clip_tombstones(&ts, Some(b"f"), Some(b"y")),
            vec![rt("f", "m", 5), rt("x", "y", 6)]
        );
        assert_eq!(
            clip_tombstones(&ts, Some(b"y"), None),
            vec![rt("y", "z", 6)]
        );
        assert!(clip_tombstones(&ts, Some(b"m"), Some(b"x")).is_empty());
    }

    #[derive(Debug, Clone)]
    struct Case {
        input: Entries,
        snapshots: Vec<SeqNo>,
        ts: Vec<RangeTombstone>,
        bottommost: bool,
    }

    fn case() -> impl Strategy<Value = Case> {
        let key = (0u8..6).prop_map(|k| vec![b'a' + k]);
        (
            prop::collection::btree_map((key.clone(), 1u64..30), any::<bool>(), 0..30),
            prop::collection::vec(0u64..32, 0..4),
            prop::collection::vec((key.clone(), key, 1u64..32), 0..3),
            any::<bool>(),
        )
            .prop_map(|(m, snapshots, ts, bottommost)| Case {
                input: m
                    .into_iter()
                    .map(|((k, s), is_put)| {
                        let kind = if is_put {
                            ValueKind::Put
                        } else {
                            ValueKind::Delete
                        };
                        (
                            internal_key(&k, s, kind),
                            if is_put { vec![s as u8] } else { vec![] },
                        )
                    })
                    .collect(),
                snapshots,
                ts: ts
                    .into_iter()
                    .filter(|(a, b, _)| a < b)
                    .map(|(start, end, seqno)| RangeTombstone { start, end, seqno })
                    .collect(),
                bottommost,
            })
    }

    /// What a reader at `read` sees for `uk`. When not bottommost, an implicit older value below the
    /// inputs stands for the levels underneath: dropping a needed tombstone would expose it.
    fn visible(
        entries: &[(Vec<u8>, Vec<u8>)],
        ts: &[RangeTombstone],
        uk: &[u8],
        read: SeqNo,
        bottommost: bool,
    ) -> Option<Vec<u8>> {
        let newest = entries
            .iter()
            .filter_map(|(k, v)| {
                let p = parse_internal_key(k).unwrap();
                (p.user_key == uk && p.seqno <= read).then_some((p.seqno, p.kind, v.clone()))
            })
            .max_by_key(|e| e.0);
        let (seqno, kind, value) = match newest {
            Some(e) => e,
            None if bottommost => return None,
            None => (0, ValueKind::Put, b"lower".to_vec()),
        };
        let deleted = ts.iter().any(|t| t.seqno <= read && t.covers(uk, seqno));
        (kind == ValueKind::Put && !deleted).then_some(value)
    }

    /// The test filter of the property below: removes values whose byte is a multiple of 3.
    fn test_filter_removes(v: &[u8]) -> bool {
        v.first().is_some_and(|b| b % 3 == 0)
    }

    /// What the latest readers must see after a filtered compaction: the input's view, except that a
    /// key whose newest version is a put above every snapshot that the filter removes reads as absent.
    fn visible_latest_filtered(c: &Case, uk: &[u8], read: SeqNo) -> Option<Vec<u8>> {
        let newest = c
            .input
            .iter()
            .filter_map(|(k, v)| {
                let p = parse_internal_key(k).unwrap();
                (p.user_key == uk).then_some((p.seqno, p.kind, v))
            })
            .max_by_key(|e| e.0);
        let above_snapshots = |s: SeqNo| c.snapshots.iter().all(|&x| x < s);
        match newest {
            Some((s, ValueKind::Put, v)) if above_snapshots(s) && test_filter_removes(v) => None,
            _ => visible(&c.input, &c.ts, uk, read, c.bottommost),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_filter_changes_only_the_latest_view(c in case()) {
            let (out, keep, _) = run_filtered(
                c.input.clone(), &c.snapshots, c.bottommost, c.ts.clone(),
                |_, v| test_filter_removes(v),
            );
            let latest = u64::MAX >> 8;
            for k in 0..6u8 {
                let uk = [b'a' + k];
                for &r in &c.snapshots {
                    prop_assert_eq!(
                        visible(&out, &keep, &uk, r, c.bottommost),
                        visible(&c.input, &c.ts, &uk, r, c.bottommost),
                        "snapshot read: key {} read {}", k, r
                    );
                }
                prop_assert_eq!(
                    visible(&out, &keep, &uk, latest, c.bottommost),
                    visible_latest_filtered(&c, &uk, latest),
                    "latest read: key {}", k
                );
            }
        }

        #[test]
        fn every_snapshot_reads_the_same(c in case()) {
            let (out, keep, _) = run(c.input.clone(), &c.snapshots, c.bottommost, c.ts.clone());
            let mut reads: Vec<SeqNo> = c.snapshots.clone();
            reads.push(u64::MAX >> 8);
            for k in 0..6u8 {
                let uk = [b'a' + k];
                for &r in &reads {
                    prop_assert_eq!(
                        visible(&out, &keep, &uk, r, c.bottommost),
                        visible(&c.input, &c.ts, &uk, r, c.bottommost),
                        "key {} read {}", k, r
                    );
                }
                // At most one version per stripe survives.
                let mut stripes: Vec<usize> = out
                    .iter()
                    .map(|(key, _)| parse_internal_key(key).unwrap())
                    .filter(|p| p.user_key == uk)
                    .map(|p| {
                        let mut s = c.snapshots.clone();
                        s.sort_unstable();
                        s.dedup();
                        s.partition_point(|&x| x < p.seqno)
                    })
                    .collect();
                let n = stripes.len();
                stripes.dedup();
                prop_assert_eq!(stripes.len(), n);
            }
        }
    }
}
