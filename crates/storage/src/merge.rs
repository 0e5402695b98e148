//! [`MergingIterator`]: merges several sorted [`InternalIterator`]s into one, in both directions.
//!
//! Children are given newest-first; on equal keys the earlier child comes first going forward. Going
//! backward the iterator yields exactly the reverse of the forward sequence (so on equal keys the later
//! child comes first). The merge keeps a binary heap of child indexes — a min-heap going forward, a
//! max-heap going backward — ordered by `(key, child index)`; a direction switch repositions every other
//! child relative to the current key, as RocksDB's merging iterator does.

use std::cmp::Ordering;

use crate::iter::InternalIterator;
use crate::key::compare_internal;
use crate::sst::SstError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Reverse,
}

/// Merges children into one sorted stream.
pub struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    /// Indexes of valid children, heap-ordered for the current direction; `heap[0]` is current.
    heap: Vec<usize>,
    direction: Direction,
}

impl MergingIterator {
    /// Merges `children` (newest first: earlier children win ties).
    pub fn new(children: Vec<Box<dyn InternalIterator>>) -> Self {
        let heap = Vec::with_capacity(children.len());
        MergingIterator {
            children,
            heap,
            direction: Direction::Forward,
        }
    }

    /// Number of children.
    pub fn num_children(&self) -> usize {
        self.children.len()
    }

    /// Total order over (key, child index).
    #[inline]
    fn cmp_children(&self, a: usize, b: usize) -> Ordering {
        compare_internal(self.children[a].key(), self.children[b].key()).then(a.cmp(&b))
    }

    /// True when `a` belongs above `b` in the heap for the current direction.
    #[inline]
    fn above(&self, a: usize, b: usize) -> bool {
        let ord = self.cmp_children(a, b);
        match self.direction {
            Direction::Forward => ord == Ordering::Less,
            Direction::Reverse => ord == Ordering::Greater,
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                return;
            }
            let r = l + 1;
            let mut best = l;
            if r < n && self.above(self.heap[r], self.heap[l]) {
                best = r;
            }
            if self.above(self.heap[best], self.heap[i]) {
                self.heap.swap(best, i);
                i = best;
            } else {
                return;
            }
        }
    }

    fn rebuild_heap(&mut self, direction: Direction) {
        self.direction = direction;
        self.heap.clear();
        self.heap
            .extend((0..self.children.len()).filter(|&i| self.children[i].valid()));
        for i in (0..self.heap.len() / 2).rev() {
            self.sift_down(i);
        }
    }

    /// After the top child moved: drop it if exhausted, else restore the heap.
    fn fix_top(&mut self) {
        let Some(&top) = self.heap.first() else {
            return;
        };
        if self.children[top].valid() {
            self.sift_down(0);
        } else {
            let last = self.heap.len() - 1;
            self.heap.swap(0, last);
            self.heap.pop();
            self.sift_down(0);
        }
    }

    fn on_error(&mut self, e: SstError) -> Result<(), SstError> {
        self.heap.clear();
        Err(e)
    }

    fn seek_all(
        &mut self,
        direction: Direction,
        mut f: impl FnMut(&mut dyn InternalIterator) -> Result<(), SstError>,
    ) -> Result<(), SstError> {
        for c in &mut self.children {
            if let Err(e) = f(c.as_mut()) {
                return self.on_error(e);
            }
        }
        self.rebuild_heap(direction);
        Ok(())
    }

    /// Repositions every non-current child after the current entry and switches to forward.
    fn switch_to_forward(&mut self) -> Result<(), SstError> {
        let cur = self.heap[0];
        let key = self.children[cur].key().to_vec();
        for j in 0..self.children.len() {
            if j == cur {
                continue;
            }
            let c = &mut self.children[j];
            let r = (|| {
                c.seek(&key)?;
                // Entries equal to the current key from an earlier child come before it in merged
                // order, so they are behind us.
                if j < cur && c.valid() && compare_internal(c.key(), &key) == Ordering::Equal {
                    c.next()?;
                }
                Ok(())
            })();
            if let Err(e) = r {
                return self.on_error(e);
            }
        }
        if let Err(e) = self.children[cur].next() {
            return self.on_error(e);
        }
        self.rebuild_heap(Direction::Forward);
        Ok(())
    }

    /// Repositions every non-current child before the current entry and switches to reverse.
    fn switch_to_reverse(&mut self) -> Result<(), SstError> {
        let cur = self.heap[0];
        let key = self.children[cur].key().to_vec();
        for j in 0..self.children.len() {
            if j == cur {
                continue;
            }
            let c = &mut self.children[j];
            let r = (|| {
                c.seek_for_prev(&key)?;
                // Entries equal to the current key from a later child come after it in merged order.
                if j > cur && c.valid() && compare_internal(c.key(), &key) == Ordering::Equal {
                    c.prev()?;
                }
                Ok(())
            })();
            if let Err(e) = r {
                return self.on_error(e);
            }
        }
        if let Err(e) = self.children[cur].prev() {
            return self.on_error(e);
        }
        self.rebuild_heap(Direction::Reverse);
        Ok(())
    }
}

impl InternalIterator for MergingIterator {
    fn valid(&self) -> bool {
        !self.heap.is_empty()
    }

    fn seek_to_first(&mut self) -> Result<(), SstError> {
        self.seek_all(Direction::Forward, |c| c.seek_to_first())
    }

    fn seek_to_last(&mut self) -> Result<(), SstError> {
        self.seek_all(Direction::Reverse, |c| c.seek_to_last())
    }

    fn seek(&mut self, target: &[u8]) -> Result<(), SstError> {
        self.seek_all(Direction::Forward, |c| c.seek(target))
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<(), SstError> {
        self.seek_all(Direction::Reverse, |c| c.seek_for_prev(target))
    }

    fn next(&mut self) -> Result<(), SstError> {
        if self.heap.is_empty() {
            return Ok(());
        }
        if self.direction == Direction::Reverse {
            return self.switch_to_forward();
        }
        let top = self.heap[0];
        if let Err(e) = self.children[top].next() {
            return self.on_error(e);
        }
        self.fix_top();
        Ok(())
    }

    fn prev(&mut self) -> Result<(), SstError> {
        if self.heap.is_empty() {
            return Ok(());
        }
        if self.direction == Direction::Forward {
            return self.switch_to_reverse();
        }
        let top = self.heap[0];
        if let Err(e) = self.children[top].prev() {
            return self.on_error(e);
        }
        self.fix_top();
        Ok(())
    }

    fn key(&self) -> &[u8] {
        self.heap.first().map_or(&[], |&i| self.children[i].key())
    }

    fn value(&self) -> &[u8] {
        self.heap.first().map_or(&[], |&i| self.children[i].value())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::iter::VecIterator;
    use crate::key::{ValueKind, internal_key};

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn children_strategy() -> impl Strategy<Value = Vec<Entries>> {
        // Small key and seqno spaces so equal keys across children and direction switches over them are
        // common.
        let entry = (0u8..12, 0u64..4, any::<bool>()).prop_map(|(k, s, put)| {
            let kind = if put {
                ValueKind::Put
            } else {
                ValueKind::Delete
            };
            (internal_key(&[b'k', k], s, kind), vec![k])
        });
        prop::collection::vec(prop::collection::vec(entry, 0..12), 0..5)
    }

    /// The merged sequence: sorted by (key, child index), children deduplicated internally.
    fn model(children: &[Entries]) -> Vec<(Vec<u8>, Vec<u8>, usize)> {
        let mut all = Vec::new();
        for (ci, c) in children.iter().enumerate() {
            let mut sorted = c.clone();
            sorted.sort_by(|a, b| compare_internal(&a.0, &b.0));
            sorted.dedup_by(|a, b| a.0 == b.0);
            all.extend(sorted.into_iter().map(|(k, v)| (k, v, ci)));
        }
        all.sort_by(|a, b| compare_internal(&a.0, &b.0).then(a.2.cmp(&b.2)));
        all
    }

    fn build(children: &[Entries]) -> MergingIterator {
        MergingIterator::new(
            children
                .iter()
                .map(|c| {
                    let mut sorted = c.clone();
                    sorted.sort_by(|a, b| compare_internal(&a.0, &b.0));
                    sorted.dedup_by(|a, b| a.0 == b.0);
                    Box::new(VecIterator::new(sorted)) as Box<dyn InternalIterator>
                })
                .collect(),
        )
    }

    #[derive(Debug, Clone)]
    enum Op {
        First,
        Last,
        Seek(u8, u64),
        SeekForPrev(u8, u64),
        Next,
        Prev,
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::First),
            Just(Op::Last),
            (0u8..13, 0u64..5).prop_map(|(k, s)| Op::Seek(k, s)),
            (0u8..13, 0u64..5).prop_map(|(k, s)| Op::SeekForPrev(k, s)),
            Just(Op::Next),
            Just(Op::Next),
            Just(Op::Prev),
            Just(Op::Prev),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn full_scans_match_model(children in children_strategy()) {
            let m = model(&children);
            let mut it = build(&children);
            it.seek_to_first().unwrap();
            let mut fwd = Vec::new();
            while it.valid() {
                fwd.push((it.key().to_vec(), it.value().to_vec()));
                it.next().unwrap();
            }
            let expect: Vec<_> = m.iter().map(|e| (e.0.clone(), e.1.clone())).collect();
            prop_assert_eq!(&fwd, &expect);
            it.seek_to_last().unwrap();
            let mut rev = Vec::new();
            while it.valid() {
                rev.push((it.key().to_vec(), it.value().to_vec()));
                it.prev().unwrap();
            }
            rev.reverse();
            prop_assert_eq!(&rev, &expect);
        }

        #[test]
        fn random_ops_match_model(children in children_strategy(),
                                  ops in prop::collection::vec(op_strategy(), 1..40)) {
            let m = model(&children);
            let mut it = build(&children);
            // Model position: index into m, or None when invalid.
            let mut pos: Option<usize> = None;
            for op in ops {
                match op {
                    Op::First => { it.seek_to_first().unwrap(); pos = (!m.is_empty()).then_some(0); }
                    Op::Last => { it.seek_to_last().unwrap(); pos = m.len().checked_sub(1); }
                    Op::Seek(k, s) => {
                        let t = internal_key(&[b'k', k], s, ValueKind::Put);
                        it.seek(&t).unwrap();
                        let p = m.partition_point(|e| compare_internal(&e.0, &t) == Ordering::Less);
                        pos = (p < m.len()).then_some(p);
                    }
                    Op::SeekForPrev(k, s) => {
                        let t = internal_key(&[b'k', k], s, ValueKind::Put);
                        it.seek_for_prev(&t).unwrap();
                        let p = m.partition_point(|e| compare_internal(&e.0, &t) != Ordering::Greater);
                        pos = p.checked_sub(1);
                    }
                    Op::Next => {
                        if pos.is_none() { continue; }
                        it.next().unwrap();
                        pos = pos.map(|p| p + 1).filter(|&p| p < m.len());
                    }
                    Op::Prev => {
                        if pos.is_none() { continue; }
                        it.prev().unwrap();
                        pos = pos.and_then(|p| p.checked_sub(1));
                    }
                }
                match pos {
                    Some(p) => {
                        prop_assert!(it.valid());
                        prop_assert_eq!(it.key(), m[p].0.as_slice());
                        prop_assert_eq!(it.value(), m[p].1.as_slice());
                    }
                    None => prop_assert!(!it.valid()),
                }
            }
        }
    }
}
