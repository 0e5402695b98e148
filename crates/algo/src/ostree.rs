//! An order-statistic B+tree: a sorted set that also answers "what is the rank of this key" and "which key
//! has rank i" in O(log n).
//!
//! Every internal node keeps, beside each child, the number of keys under it. Finding a rank sums the counts
//! of the children left of the search path; finding the key at a rank subtracts them on the way down. Keys
//! live only in leaves (a B+tree), which keeps the rebalancing cases few and makes in-order iteration a walk
//! along leaves.
//!
//! Separators in internal nodes are lower bounds: every key in `children[j]` is `>= seps[j - 1]` and
//! `< seps[j]`. Removing a key never has to update a separator — a stale one is still a valid bound — so only
//! splits, borrows and merges touch them.
//!
//! Why a B-tree rather than a red-black tree: with 64 keys per node the tree is three levels deep for a
//! quarter of a million keys, each level one or two cache lines of counts to scan, and there are n/32
//! allocations instead of n. Redis uses a skip list for the same job; its rank queries are O(log n) only in
//! expectation.

use std::cmp::Ordering;

/// Most keys in a leaf, and most children of an internal node.
const MAX_FANOUT: usize = 64;
/// Fewest keys or children a node other than the root keeps; below it, the node borrows or merges.
const MIN_FANOUT: usize = MAX_FANOUT / 2;

#[derive(Debug, Clone)]
enum Node<K> {
    Leaf(Vec<K>),
    Internal {
        /// `seps[j]` is a lower bound of every key in `children[j + 1]`.
        seps: Vec<K>,
        children: Vec<Node<K>>,
        /// Number of keys under each child.
        counts: Vec<usize>,
    },
}

enum Inserted<K> {
    Duplicate,
    Done,
    /// The node split; the new right sibling and a lower bound of its keys.
    Split(K, Node<K>),
}

impl<K> Node<K> {
    fn fanout(&self) -> usize {
        match self {
            Node::Leaf(keys) => keys.len(),
            Node::Internal { children, .. } => children.len(),
        }
    }

    fn key_count(&self) -> usize {
        match self {
            Node::Leaf(keys) => keys.len(),
            Node::Internal { counts, .. } => counts.iter().sum(),
        }
    }
}

impl<K: Ord + Clone> Node<K> {
    fn insert(&mut self, key: K) -> Inserted<K> {
        match self {
            Node::Leaf(keys) => match keys.binary_search(&key) {
                Ok(_) => Inserted::Duplicate,
                Err(i) => {
                    keys.insert(i, key);
                    if keys.len() <= MAX_FANOUT {
                        return Inserted::Done;
                    }
                    let right = keys.split_off(keys.len() / 2);
                    let sep = right[0].clone();
                    Inserted::Split(sep, Node::Leaf(right))
                }
            },
            Node::Internal {
                seps,
                children,
                counts,
            } => {
                let i = seps.partition_point(|s| s <= &key);
                match children[i].insert(key) {
                    Inserted::Duplicate => Inserted::Duplicate,
                    Inserted::Done => {
                        counts[i] += 1;
                        Inserted::Done
                    }
                    Inserted::Split(sep, right) => {
                        let right_count = right.key_count();
                        counts[i] = counts[i] + 1 - right_count;
                        children.insert(i + 1, right);
                        counts.insert(i + 1, right_count);
                        seps.insert(i, sep);
                        if children.len() <= MAX_FANOUT {
                            return Inserted::Done;
                        }
                        let mid = children.len() / 2;
                        let right_children = children.split_off(mid);
                        let right_counts = counts.split_off(mid);
                        let right_seps = seps.split_off(mid);
                        // `seps` now has `mid` entries for `mid` children; the last bounds the right half.
                        let promoted = match seps.pop() {
                            Some(s) => s,
                            None => unreachable!("an overfull internal node has separators"),
                        };
                        Inserted::Split(
                            promoted,
                            Node::Internal {
                                seps: right_seps,
                                children: right_children,
                                counts: right_counts,
                            },
                        )
                    }
                }
            }
        }
    }

    /// Removes `key`; returns whether it was present. The caller rebalances this node if it underflows.
    fn remove(&mut self, key: &K) -> bool {
        match self {
            Node::Leaf(keys) => match keys.binary_search(key) {
                Ok(i) => {
                    keys.remove(i);
                    true
                }
                Err(_) => false,
            },
            Node::Internal {
                seps,
                children,
                counts,
            } => {
                let i = seps.partition_point(|s| s <= key);
                if !children[i].remove(key) {
                    return false;
                }
                counts[i] -= 1;
                if children[i].fanout() < MIN_FANOUT && children.len() > 1 {
                    rebalance(seps, children, counts, i);
                }
                true
            }
        }
    }
}

/// Restores the fanout of `children[i]` by borrowing from a sibling that can spare one, or else merging
/// with a sibling.
fn rebalance<K: Ord + Clone>(
    seps: &mut Vec<K>,
    children: &mut Vec<Node<K>>,
    counts: &mut Vec<usize>,
    i: usize,
) {
    let (left, right) = if i > 0 { (i - 1, i) } else { (i, i + 1) };
    let borrow_from_left = left < i && children[left].fanout() > MIN_FANOUT;
    let borrow_from_right = right > i && children[right].fanout() > MIN_FANOUT;
    if borrow_from_left || borrow_from_right {
        let (l, r) = two_mut(children, left, right);
        let moved = if borrow_from_left {
            move_last_to_front(l, r, &mut seps[left])
        } else {
            move_first_to_back(l, r, &mut seps[left])
        };
        if borrow_from_left {
            counts[left] -= moved;
            counts[right] += moved;
        } else {
            counts[right] -= moved;
            counts[left] += moved;
        }
        return;
    }
    // Merge `right` into `left`: together they hold fewer than MAX_FANOUT entries.
    let sep = seps.remove(left);
    let right_node = children.remove(right);
    let right_count = counts.remove(right);
    counts[left] += right_count;
    match (&mut children[left], right_node) {
        (Node::Leaf(l), Node::Leaf(r)) => l.extend(r),
        (
            Node::Internal {
                seps: ls,
                children: lc,
                counts: lk,
            },
            Node::Internal {
                seps: rs,
                children: rc,
                counts: rk,
            },
        ) => {
            ls.push(sep);
            ls.extend(rs);
            lc.extend(rc);
            lk.extend(rk);
        }
        _ => unreachable!("siblings are at the same depth"),
    }
}

fn two_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    debug_assert!(a < b);
    let (head, tail) = v.split_at_mut(b);
    (&mut head[a], &mut tail[0])
}

/// Moves the last entry of `l` to the front of `r`; `sep` separates them. Returns the keys moved.
fn move_last_to_front<K: Ord + Clone>(l: &mut Node<K>, r: &mut Node<K>, sep: &mut K) -> usize {
    match (l, r) {
        (Node::Leaf(lk), Node::Leaf(rk)) => {
            if let Some(k) = lk.pop() {
                *sep = k.clone();
                rk.insert(0, k);
            }
            1
        }
        (
            Node::Internal {
                seps: ls,
                children: lc,
                counts: lk,
            },
            Node::Internal {
                seps: rs,
                children: rc,
                counts: rk,
            },
        ) => {
            let (Some(child), Some(count), Some(new_sep)) = (lc.pop(), lk.pop(), ls.pop()) else {
                return 0;
            };
            // The old separator bounds r's old first child; the moved child is bounded by l's last one.
            rs.insert(0, std::mem::replace(sep, new_sep));
            rc.insert(0, child);
            rk.insert(0, count);
            count
        }
        _ => unreachable!("siblings are at the same depth"),
    }
}

/// Moves the first entry of `r` to the back of `l`; `sep` separates them. Returns the keys moved.
fn move_first_to_back<K: Ord + Clone>(l: &mut Node<K>, r: &mut Node<K>, sep: &mut K) -> usize {
    match (l, r) {
        (Node::Leaf(lk), Node::Leaf(rk)) => {
            if rk.is_empty() {
                return 0;
            }
            lk.push(rk.remove(0));
            if let Some(first) = rk.first() {
                *sep = first.clone();
            }
            1
        }
        (
            Node::Internal {
                seps: ls,
                children: lc,
                counts: lk,
            },
            Node::Internal {
                seps: rs,
                children: rc,
                counts: rk,
            },
        ) => {
            if rc.is_empty() || rs.is_empty() {
                return 0;
            }
            let child = rc.remove(0);
            let count = rk.remove(0);
            let new_sep = rs.remove(0);
            ls.push(std::mem::replace(sep, new_sep));
            lc.push(child);
            lk.push(count);
            count
        }
        _ => unreachable!("siblings are at the same depth"),
    }
}

/// A sorted set of distinct keys with O(log n) insert, remove, rank and select.
///
/// ```
/// use strata_algo::OrderStatisticTree;
/// let mut t = OrderStatisticTree::new();
/// for k in [50, 10, 40, 20, 30] {
///     t.insert(k);
/// }
/// assert_eq!(t.rank(&30), Some(2));
/// assert_eq!(t.get(4), Some(&50));
/// assert_eq!(t.count_before(|k| *k < 35), 3);
/// assert_eq!(t.iter_from(3).copied().collect::<Vec<_>>(), vec![40, 50]);
/// assert_eq!(t.iter_rev_from(1).copied().collect::<Vec<_>>(), vec![20, 10]);
/// ```
#[derive(Debug, Clone)]
pub struct OrderStatisticTree<K> {
    root: Node<K>,
    len: usize,
}

impl<K: Ord + Clone> Default for OrderStatisticTree<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone> OrderStatisticTree<K> {
    /// An empty tree.
    pub fn new() -> Self {
        OrderStatisticTree {
            root: Node::Leaf(Vec::new()),
            len: 0,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Inserts `key`; returns false if it was already present.
    pub fn insert(&mut self, key: K) -> bool {
        match self.root.insert(key) {
            Inserted::Duplicate => false,
            Inserted::Done => {
                self.len += 1;
                true
            }
            Inserted::Split(sep, right) => {
                let left = std::mem::replace(&mut self.root, Node::Leaf(Vec::new()));
                let counts = vec![left.key_count(), right.key_count()];
                self.root = Node::Internal {
                    seps: vec![sep],
                    children: vec![left, right],
                    counts,
                };
                self.len += 1;
                true
            }
        }
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&mut self, key: &K) -> bool {
        if !self.root.remove(key) {
            return false;
        }
        self.len -= 1;
        // A root with one child hands the root role down, shrinking the tree by a level.
        if let Node::Internal { children, .. } = &mut self.root
            && children.len() == 1
            && let Some(only) = children.pop()
        {
            self.root = only;
        }
        true
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &K) -> bool {
        self.rank(key).is_some()
    }

    /// The number of keys `k` for which `before(k)` holds, where `before` is true for a prefix of the
    /// order (such as `|k| k < bound`). This is a rank for any bound, present or not, so a range
    /// `[a, b)` holds `count_before(< b) - count_before(< a)` keys.
    pub fn count_before(&self, before: impl Fn(&K) -> bool) -> usize {
        let mut node = &self.root;
        let mut acc = 0;
        loop {
            match node {
                Node::Leaf(keys) => return acc + keys.partition_point(&before),
                Node::Internal {
                    seps,
                    children,
                    counts,
                } => {
                    let i = seps.partition_point(&before);
                    acc += counts[..i].iter().sum::<usize>();
                    node = &children[i];
                }
            }
        }
    }

    /// The 0-based rank of `key`, if present.
    pub fn rank(&self, key: &K) -> Option<usize> {
        let rank = self.count_before(|k| k < key);
        (self.get(rank).map(|k| k.cmp(key)) == Some(Ordering::Equal)).then_some(rank)
    }

    /// The key at 0-based rank `index`.
    pub fn get(&self, mut index: usize) -> Option<&K> {
        if index >= self.len {
            return None;
        }
        let mut node = &self.root;
        loop {
            match node {
                Node::Leaf(keys) => return keys.get(index),
                Node::Internal {
                    children, counts, ..
                } => {
                    let mut i = 0;
                    while i + 1 < counts.len() && index >= counts[i] {
                        index -= counts[i];
                        i += 1;
                    }
                    node = &children[i];
                }
            }
        }
    }

    /// The smallest key.
    pub fn first(&self) -> Option<&K> {
        self.get(0)
    }

    /// The largest key.
    pub fn last(&self) -> Option<&K> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Iterates in ascending order from rank `start`.
    pub fn iter_from(&self, start: usize) -> Iter<'_, K> {
        Iter {
            stack: self.path_to(start),
            remaining: self.len.saturating_sub(start),
            forward: true,
        }
    }

    /// Iterates in descending order from rank `start` (inclusive) down to rank 0.
    pub fn iter_rev_from(&self, start: usize) -> Iter<'_, K> {
        let start = start.min(self.len.saturating_sub(1));
        Iter {
            stack: self.path_to(start),
            remaining: if self.len == 0 { 0 } else { start + 1 },
            forward: false,
        }
    }

    /// Iterates over every key in ascending order.
    pub fn iter(&self) -> Iter<'_, K> {
        self.iter_from(0)
    }

    /// The nodes and child indices from the root to the key at `index`.
    fn path_to(&self, mut index: usize) -> Vec<(&Node<K>, usize)> {
        let mut stack = Vec::with_capacity(8);
        let mut node = &self.root;
        loop {
            match node {
                Node::Leaf(_) => {
                    stack.push((node, index));
                    return stack;
                }
                Node::Internal {
                    children, counts, ..
                } => {
                    let mut i = 0;
                    while i + 1 < counts.len() && index >= counts[i] {
                        index -= counts[i];
                        i += 1;
                    }
                    stack.push((node, i));
                    node = &children[i];
                }
            }
        }
    }

    /// Checks every structural invariant; for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        fn walk<K: Ord>(
            node: &Node<K>,
            lo: Option<&K>,
            hi: Option<&K>,
            root: bool,
            depth: usize,
            leaf_depth: &mut Option<usize>,
        ) -> usize {
            assert!(node.fanout() <= MAX_FANOUT);
            if !root {
                assert!(node.fanout() >= MIN_FANOUT, "underfull node");
            }
            match node {
                Node::Leaf(keys) => {
                    assert!(keys.windows(2).all(|w| w[0] < w[1]));
                    if let (Some(lo), Some(first)) = (lo, keys.first()) {
                        assert!(first >= lo);
                    }
                    if let (Some(hi), Some(last)) = (hi, keys.last()) {
                        assert!(last < hi);
                    }
                    match leaf_depth {
                        Some(d) => assert_eq!(*d, depth, "leaves at different depths"),
                        None => *leaf_depth = Some(depth),
                    }
                    keys.len()
                }
                Node::Internal {
                    seps,
                    children,
                    counts,
                } => {
                    assert_eq!(seps.len() + 1, children.len());
                    assert_eq!(counts.len(), children.len());
                    assert!(children.len() >= 2);
                    let mut total = 0;
                    for (j, child) in children.iter().enumerate() {
                        let clo = if j == 0 { lo } else { Some(&seps[j - 1]) };
                        let chi = if j == seps.len() { hi } else { Some(&seps[j]) };
                        let n = walk(child, clo, chi, false, depth + 1, leaf_depth);
                        assert_eq!(n, counts[j], "stale count");
                        total += n;
                    }
                    total
                }
            }
        }
        let mut leaf_depth = None;
        assert_eq!(
            walk(&self.root, None, None, true, 0, &mut leaf_depth),
            self.len
        );
    }
}

/// An iterator over keys in rank order, forward or backward.
#[derive(Debug)]
pub struct Iter<'a, K> {
    /// Root-to-leaf path: each node with the index of the child (internal) or key (leaf) being visited.
    stack: Vec<(&'a Node<K>, usize)>,
    remaining: usize,
    forward: bool,
}

impl<'a, K> Iterator for Iter<'a, K> {
    type Item = &'a K;

    fn next(&mut self) -> Option<&'a K> {
        if self.remaining == 0 {
            return None;
        }
        let &(node, i) = self.stack.last()?;
        let Node::Leaf(keys) = node else { return None };
        let key = keys.get(i)?;
        self.remaining -= 1;
        if self.remaining > 0 {
            self.advance();
        }
        Some(key)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K> ExactSizeIterator for Iter<'_, K> {}

impl<K> Iter<'_, K> {
    /// Moves the leaf position one key on, climbing to the next subtree when a leaf is exhausted.
    fn advance(&mut self) {
        // Step within the leaf, or pop up until a node has a next child.
        loop {
            let Some((node, i)) = self.stack.pop() else {
                return;
            };
            let (fanout, is_leaf) = (node.fanout(), matches!(node, Node::Leaf(_)));
            let next = if self.forward {
                (i + 1 < fanout).then_some(i + 1)
            } else {
                i.checked_sub(1)
            };
            match next {
                Some(n) => {
                    self.stack.push((node, n));
                    if is_leaf {
                        return;
                    }
                    break;
                }
                None => continue,
            }
        }
        // Descend to the first (or last) key of the new subtree.
        while let Some(&(Node::Internal { children, .. }, i)) = self.stack.last() {
            let child = &children[i];
            let start = if self.forward {
                0
            } else {
                child.fanout().saturating_sub(1)
            };
            self.stack.push((child, start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn grows_and_shrinks_through_many_levels() {
        let mut t = OrderStatisticTree::new();
        let n = 20_000u32;
        // A scrambled order: i * 7919 mod n visits every residue since 7919 is prime and n is not a multiple.
        for i in 0..n {
            assert!(t.insert((i * 7919) % n));
        }
        t.check_invariants();
        assert_eq!(t.len(), n as usize);
        for i in 0..n {
            assert_eq!(t.get(i as usize), Some(&i));
            assert_eq!(t.rank(&i), Some(i as usize));
        }
        assert!(!t.insert(5));
        for i in (0..n).filter(|i| i % 3 != 0) {
            assert!(t.remove(&i));
        }
        t.check_invariants();
        let left: Vec<u32> = t.iter().copied().collect();
        assert_eq!(left, (0..n).filter(|i| i % 3 == 0).collect::<Vec<_>>());
        for i in (0..n).filter(|i| i % 3 == 0) {
            assert!(t.remove(&i));
        }
        t.check_invariants();
        assert!(t.is_empty());
        assert_eq!(t.iter().count(), 0);
        assert_eq!(t.iter_rev_from(10).count(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16),
        Remove(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u16..2000).prop_map(Op::Insert),
            2 => (0u16..2000).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn matches_a_btreeset(ops in prop::collection::vec(op(), 0..3000), probe in 0u16..2100, at in 0usize..2100) {
            let mut t = OrderStatisticTree::new();
            let mut model = BTreeSet::new();
            for op in &ops {
                match *op {
                    Op::Insert(k) => prop_assert_eq!(t.insert(k), model.insert(k)),
                    Op::Remove(k) => prop_assert_eq!(t.remove(&k), model.remove(&k)),
                }
            }
            t.check_invariants();
            let sorted: Vec<u16> = model.iter().copied().collect();
            prop_assert_eq!(t.len(), sorted.len());
            prop_assert_eq!(t.iter().copied().collect::<Vec<_>>(), sorted.clone());
            prop_assert_eq!(t.rank(&probe), sorted.binary_search(&probe).ok());
            prop_assert_eq!(t.count_before(|k| *k < probe), sorted.partition_point(|k| *k < probe));
            prop_assert_eq!(t.get(at), sorted.get(at));
            prop_assert_eq!(t.iter_from(at).copied().collect::<Vec<_>>(), sorted.get(at..).map(<[u16]>::to_vec).unwrap_or_default());
            let rev: Vec<u16> = sorted.iter().take(at.saturating_add(1).min(sorted.len())).rev().copied().collect();
            prop_assert_eq!(t.iter_rev_from(at).copied().collect::<Vec<_>>(), rev);
        }
    }
}
