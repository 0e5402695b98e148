//! User-level iterators: merge every source (memtables, SSTs), hide versions newer than the read seqno,
//! keep the newest visible version of each key, and drop deleted or range-deleted keys.
//!
//! Sources are merged by a linear scan for the smallest (or largest) current key: the number of sources
//! is small (memtables + L0 files + one per deeper level) and bounded by the write-stall limits.

use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::Result;
use crate::memtable::{
    KIND_DELETE, KIND_PUT, KIND_RANGE_DELETE, MemIter, compare_internal_keys, encode_internal,
    split_internal,
};
use crate::skip_hint::{MIN_SKIPPED_TO_RECORD, SkipHints};

/// Highest seqno (56 bits).
pub(crate) const MAX_SEQNO: u64 = (1 << 56) - 1;

/// A sorted source of internal entries (memtable or SST iterator).
pub(crate) trait SourceIter: Send {
    fn valid(&self) -> bool;
    fn seek(&mut self, target: &[u8]) -> Result<()>;
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()>;
    fn seek_to_last(&mut self) -> Result<()>;
    fn next(&mut self) -> Result<()>;
    fn prev(&mut self) -> Result<()>;
    fn key(&self) -> &[u8];
    fn value(&self) -> &[u8];
    /// An upper bound of the seqnos this source holds (lets range tombstones skip whole sources).
    fn max_seqno(&self) -> u64;
}

impl SourceIter for MemIter {
    fn valid(&self) -> bool {
        MemIter::valid(self)
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        MemIter::seek(self, target);
        Ok(())
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<()> {
        MemIter::seek_for_prev(self, target);
        Ok(())
    }
    fn seek_to_last(&mut self) -> Result<()> {
        MemIter::seek_to_last(self);
        Ok(())
    }
    fn next(&mut self) -> Result<()> {
        MemIter::next(self);
        Ok(())
    }
    fn prev(&mut self) -> Result<()> {
        MemIter::prev(self);
        Ok(())
    }
    fn key(&self) -> &[u8] {
        MemIter::key(self)
    }
    fn value(&self) -> &[u8] {
        MemIter::value(self)
    }
    fn max_seqno(&self) -> u64 {
        MemIter::max_seqno(self)
    }
}

/// The range tombstones an iterator honours: a lazy view of the memtables' and SSTs' indexed tombstones
/// overlapping its range (`crate::range_index`). A range may hold thousands of tombstones (a trimmed
/// stream); the view costs nothing until a key is looked up, and a scan re-asks the indexes only when it
/// crosses a fragment boundary.
#[derive(Default)]
pub(crate) struct Fragments {
    view: Option<crate::range_index::RunsView>,
}

impl Fragments {
    /// A view of `runs` for reads at `read_seqno`.
    pub(crate) fn view(
        runs: Vec<std::sync::Arc<crate::range_index::FragRun>>,
        read_seqno: u64,
    ) -> Self {
        Fragments {
            view: (!runs.is_empty()).then(|| crate::range_index::RunsView::new(runs, read_seqno)),
        }
    }

    /// Highest tombstone seqno covering `ukey` (0 if none).
    pub(crate) fn max_covering(&self, ukey: &[u8]) -> u64 {
        self.covering(ukey).map_or(0, |(_, s)| s)
    }

    /// The tombstone covering `ukey` with the highest visible seqno: (an end up to which it covers every
    /// key, its seqno).
    pub(crate) fn covering(&self, ukey: &[u8]) -> Option<(bytes::Bytes, u64)> {
        self.view.as_ref()?.covering(ukey)
    }
}

/// One direction's merged cursor.
struct Cursor {
    sources: Vec<Box<dyn SourceIter>>,
}

impl Cursor {
    fn current(&self, forward: bool) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, s) in self.sources.iter().enumerate() {
            if !s.valid() {
                continue;
            }
            best = match best {
                None => Some(i),
                Some(b) => {
                    let ord = compare_internal_keys(s.key(), self.sources[b].key());
                    let better = if forward { ord.is_lt() } else { ord.is_gt() };
                    if better { Some(i) } else { Some(b) }
                }
            };
        }
        best
    }
}

/// The shared description of what an iterator reads.
pub(crate) struct IterSpec {
    pub(crate) read_seqno: u64,
    /// Prefixed lower bound.
    pub(crate) lower: Bound<Vec<u8>>,
    /// Prefixed upper bound (always bounded: at least the end of the tree's prefix).
    pub(crate) upper: Bound<Vec<u8>>,
    pub(crate) prefix_len: usize,
    pub(crate) rts: Fragments,
    /// Where the forward walk starts instead of the lower bound: the end of a dead run (skip hint)
    /// containing the lower bound.
    pub(crate) start_at: Option<Vec<u8>>,
}

impl IterSpec {
    fn above_upper(&self, ukey: &[u8]) -> bool {
        match &self.upper {
            Bound::Included(u) => ukey > u.as_slice(),
            Bound::Excluded(u) => ukey >= u.as_slice(),
            Bound::Unbounded => false,
        }
    }

    fn below_lower(&self, ukey: &[u8]) -> bool {
        match &self.lower {
            Bound::Included(l) => ukey < l.as_slice(),
            Bound::Excluded(l) => ukey <= l.as_slice(),
            Bound::Unbounded => false,
        }
    }
}

/// Iterator over `(key, value)` pairs of a tree in key order; `.rev()` (or `next_back`) walks backwards.
/// Both ends may be used at once, as with `BTreeMap::range`.
pub struct DbIter {
    spec: IterSpec,
    make_sources: Box<dyn Fn() -> Vec<Box<dyn SourceIter>> + Send>,
    front: Option<Cursor>,
    back: Option<Cursor>,
    /// Last prefixed user key returned from the front (exclusive lower bound for the back) and vice versa.
    front_key: Option<Vec<u8>>,
    back_key: Option<Vec<u8>>,
    done: bool,
    /// Reused key buffer for the forward walk.
    scratch: Vec<u8>,
    /// Where dead runs met by the first forward step are recorded (see [`crate::skip_hint`]).
    hints: Option<Arc<SkipHints>>,
    /// Entries the first forward step walked over without returning them.
    skipped: usize,
    /// Keeps the memtable versions the iterator reads (see [`crate::readers`]).
    _reading: Option<crate::readers::OwnedReadGuard>,
}

impl DbIter {
    pub(crate) fn new(
        spec: IterSpec,
        make_sources: Box<dyn Fn() -> Vec<Box<dyn SourceIter>> + Send>,
    ) -> Self {
        DbIter {
            spec,
            make_sources,
            front: None,
            back: None,
            front_key: None,
            back_key: None,
            done: false,
            scratch: Vec::new(),
            hints: None,
            skipped: 0,
            _reading: None,
        }
    }

    /// Lets the iterator record the dead runs its first forward step walks over.
    pub(crate) fn with_hints(mut self, hints: Arc<SkipHints>) -> Self {
        self.hints = Some(hints);
        self
    }

    /// Keeps a read entered for the iterator's life. Its seqno must have been taken under another entered
    /// read (a point read's or a snapshot's) still held now.
    pub(crate) fn with_reader(mut self, reading: crate::readers::OwnedReadGuard) -> Self {
        self._reading = Some(reading);
        self
    }

    /// Records `[lower, end)` as dead when this is the first forward step, from an inclusive lower bound,
    /// not cut short by the back cursor, and it walked over enough dead entries to be worth remembering.
    fn note_dead_run(&self, end: &[u8]) {
        let Some(h) = &self.hints else { return };
        if self.front_key.is_some() || self.back_key.is_some() {
            return;
        }
        let enough = self.skipped >= MIN_SKIPPED_TO_RECORD
            || (self.spec.start_at.is_some() && self.skipped > 0);
        if let (true, Bound::Included(l)) = (enough, &self.spec.lower) {
            h.record(l, end, self.spec.read_seqno);
        }
    }

    fn visible(&self, ukey: &[u8], seq: u64, kind: u8) -> bool {
        kind == KIND_PUT && self.spec.rts.max_covering(ukey) <= seq
    }

    fn output(&self, ukey: &[u8], value: &[u8]) -> (Bytes, Bytes) {
        (
            Bytes::copy_from_slice(&ukey[self.spec.prefix_len..]),
            Bytes::copy_from_slice(value),
        )
    }

    fn step_front(&mut self) -> Result<Option<(Bytes, Bytes)>> {
        if self.front.is_none() {
            let mut sources = (self.make_sources)();
            let mut target = Vec::new();
            match (&self.spec.start_at, &self.spec.lower) {
                (Some(s), _) => encode_internal(&mut target, s, MAX_SEQNO, KIND_RANGE_DELETE),
                (None, Bound::Included(l) | Bound::Excluded(l)) => {
                    encode_internal(&mut target, l, MAX_SEQNO, KIND_RANGE_DELETE)
                }
                (None, Bound::Unbounded) => {}
            }
            for s in &mut sources {
                s.seek(&target)?;
            }
            self.front = Some(Cursor { sources });
        }
        loop {
            let Some(cur) = self.front.as_mut() else {
                return Ok(None);
            };
            let Some(i) = cur.current(true) else {
                self.note_dead_end();
                return Ok(None);
            };
            let (ukey, trailer) = split_internal(cur.sources[i].key());
            let (seq, kind) = (trailer >> 8, (trailer & 0xff) as u8);
            if self.spec.above_upper(ukey) {
                self.note_dead_end();
                return Ok(None);
            }
            if let Some(b) = &self.back_key
                && ukey >= b.as_slice()
            {
                return Ok(None);
            }
            if seq > self.spec.read_seqno || self.spec.below_lower(ukey) {
                cur.sources[i].next()?;
                self.skipped += 1;
                continue;
            }
            // A range-deleted key: every source holding only older data can jump past the tombstone, so
            // a queue-like workload (consume from the head, range-delete what was consumed) never walks
            // the dead keys in older sources one by one.
            // Copy the key into a reused buffer: the sources move on before we are done with it.
            let mut ukey = std::mem::take(&mut self.scratch);
            ukey.clear();
            ukey.extend_from_slice(split_internal(cur.sources[i].key()).0);
            if let Some((end, rt_seq)) = self.spec.rts.covering(&ukey)
                && rt_seq > seq
            {
                let mut target = Vec::with_capacity(end.len() + 8);
                encode_internal(&mut target, &end, MAX_SEQNO, KIND_RANGE_DELETE);
                let end = &target[..target.len() - 8];
                let mut moved = false;
                for src in cur.sources.iter_mut() {
                    // Seeking moves the source to a key >= `end`, so this always makes progress.
                    if src.valid() && src.max_seqno() < rt_seq && split_internal(src.key()).0 < end
                    {
                        src.seek(&target)?;
                        moved = true;
                    }
                }
                if moved {
                    self.scratch = ukey;
                    self.skipped += 1;
                    continue;
                }
            }
            // The first version met is the newest visible one: decide, then skip the older versions.
            let out = if self.visible(&ukey, seq, kind) {
                Some(self.output(&ukey, cur_value(&self.front, i)))
            } else {
                None
            };
            if let Some(c) = self.front.as_mut() {
                while let Some(j) = c.current(true) {
                    if split_internal(c.sources[j].key()).0 != ukey.as_slice() {
                        break;
                    }
                    c.sources[j].next()?;
                    self.skipped += 1;
                }
            }
            if let Some(o) = out {
                self.note_dead_run(&ukey);
                // Keep the last returned key for the back cursor, recycling its buffer.
                self.scratch = self.front_key.take().unwrap_or_default();
                self.front_key = Some(ukey);
                return Ok(Some(o));
            }
            self.scratch = ukey;
        }
    }

    /// The first forward step ran off the end: with an exclusive upper bound, everything from the lower
    /// bound up to it is dead.
    fn note_dead_end(&self) {
        if let Bound::Excluded(u) = &self.spec.upper {
            self.note_dead_run(u);
        }
    }

    fn step_back(&mut self) -> Result<Option<(Bytes, Bytes)>> {
        if self.back.is_none() {
            let mut sources = (self.make_sources)();
            let mut target = Vec::new();
            match &self.spec.upper {
                Bound::Included(u) => encode_internal(&mut target, u, 0, KIND_DELETE),
                Bound::Excluded(u) => encode_internal(&mut target, u, MAX_SEQNO, KIND_RANGE_DELETE),
                Bound::Unbounded => {}
            }
            for s in &mut sources {
                if target.is_empty() {
                    s.seek_to_last()?;
                } else {
                    s.seek_for_prev(&target)?;
                }
            }
            self.back = Some(Cursor { sources });
        }
        // Walking backwards meets a key's versions oldest first; the last visible one is the newest.
        let mut cand: Option<(Vec<u8>, u64, u8, Vec<u8>)> = None;
        loop {
            let Some(cur) = self.back.as_mut() else {
                return Ok(None);
            };
            let pos = cur.current(false);
            let entry = pos.map(|i| {
                let (ukey, trailer) = split_internal(cur.sources[i].key());
                (i, ukey.to_vec(), trailer)
            });
            let finished_key = match (&entry, &cand) {
                (Some((_, ukey, _)), Some((ck, ..))) => ukey != ck,
                (None, Some(_)) => true,
                _ => false,
            };
            if finished_key
                && let Some((ck, seq, kind, val)) = cand.take()
                && self.visible(&ck, seq, kind)
            {
                let o = self.output(&ck, &val);
                self.back_key = Some(ck);
                return Ok(Some(o));
            }
            let Some((i, ukey, trailer)) = entry else {
                return Ok(None);
            };
            if self.spec.below_lower(&ukey) {
                return Ok(None);
            }
            if let Some(f) = &self.front_key
                && ukey.as_slice() <= f.as_slice()
            {
                return Ok(None);
            }
            let (seq, kind) = (trailer >> 8, (trailer & 0xff) as u8);
            let in_range = !self.spec.above_upper(&ukey);
            if in_range && seq <= self.spec.read_seqno {
                let val = cur_value(&self.back, i).to_vec();
                cand = Some((ukey, seq, kind, val));
            }
            if let Some(c) = self.back.as_mut() {
                c.sources[i].prev()?;
            }
        }
    }
}

fn cur_value(c: &Option<Cursor>, i: usize) -> &[u8] {
    c.as_ref().map_or(&[], |c| c.sources[i].value())
}

impl Iterator for DbIter {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step_front() {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl DoubleEndedIterator for DbIter {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.step_back() {
            Ok(Some(kv)) => Some(Ok(kv)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_take_max_seqno() {
        let t = |s: &'static str, e: &'static str, seqno| crate::range_index::Tombstone {
            start: bytes::Bytes::from(s),
            end: bytes::Bytes::from(e),
            seqno,
        };
        let mut set = crate::range_index::TombstoneSet::default();
        for x in [t("a", "m", 5), t("f", "z", 9), t("b", "c", 20)] {
            set.insert(x);
        }
        let mut runs = Vec::new();
        set.runs_overlapping(b"", std::ops::Bound::Unbounded, &mut runs);
        let f = Fragments::view(runs, 10);
        assert_eq!(f.max_covering(b"0"), 0);
        assert_eq!(f.max_covering(b"a"), 5);
        assert_eq!(f.max_covering(b"b"), 5); // seqno 20 is above the read seqno
        assert_eq!(f.max_covering(b"g"), 9);
        assert_eq!(f.max_covering(b"y"), 9);
        assert_eq!(f.max_covering(b"z"), 0);
    }
}
