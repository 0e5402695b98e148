//! A trie (prefix tree) over sequences of symbols, with exact lookup, prefix enumeration and *fuzzy*
//! prefix search: every key having some prefix within Levenshtein distance `d` of a query, found by
//! dynamic programming over the trie rather than over each key.
//!
//! The fuzzy search carries one row of the edit-distance table per node on the path: the row of a node
//! is computed from its parent's row and the node's symbol in O(|query|), so keys sharing a prefix share
//! that work, and a subtree is skipped as soon as every entry of its row exceeds `d` (no extension can come
//! back within distance). A key matches when some prefix of it (the key itself included) is within `d` of
//! the whole query; its reported distance is the smallest such.
//!
//! Symbols are generic (`char`s, bytes, or the kv layer's code points that keep invalid UTF-8 intact);
//! the search compares them through a caller-given folding function (case-insensitive autocomplete folds
//! both sides to lower case).

/// One node: its children sorted by symbol, and the value of the key ending here.
#[derive(Debug, Clone)]
struct Node<S, V> {
    children: Vec<(S, Node<S, V>)>,
    value: Option<V>,
}

impl<S, V> Default for Node<S, V> {
    fn default() -> Self {
        Node {
            children: Vec::new(),
            value: None,
        }
    }
}

impl<S: Ord + Copy, V> Node<S, V> {
    fn child(&self, s: S) -> Option<&Node<S, V>> {
        self.children
            .binary_search_by(|(c, _)| c.cmp(&s))
            .ok()
            .map(|i| &self.children[i].1)
    }

    fn child_mut(&mut self, s: S) -> Option<&mut Node<S, V>> {
        self.children
            .binary_search_by(|(c, _)| c.cmp(&s))
            .ok()
            .map(|i| &mut self.children[i].1)
    }

    fn child_or_insert(&mut self, s: S) -> &mut Node<S, V> {
        let i = match self.children.binary_search_by(|(c, _)| c.cmp(&s)) {
            Ok(i) => i,
            Err(i) => {
                self.children.insert(i, (s, Node::default()));
                i
            }
        };
        &mut self.children[i].1
    }

    fn is_empty(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }
}

/// A key found by a search.
#[derive(Debug, Clone, PartialEq)]
pub struct TrieMatch<'a, S, V> {
    /// The key.
    pub key: Vec<S>,
    /// Its value.
    pub value: &'a V,
    /// The smallest edit distance between a prefix of the key and the query (0 for a plain prefix match).
    pub distance: usize,
}

/// A map from symbol sequences to values, ordered by key.
#[derive(Debug, Clone)]
pub struct Trie<S, V> {
    root: Node<S, V>,
    len: usize,
}

impl<S, V> Default for Trie<S, V> {
    fn default() -> Self {
        Trie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<S: Ord + Copy, V> Trie<S, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` under `key`, returning the value it replaces.
    pub fn insert(&mut self, key: &[S], value: V) -> Option<V> {
        let mut node = &mut self.root;
        for &s in key {
            node = node.child_or_insert(s);
        }
        let old = node.value.replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The value under `key`.
    pub fn get(&self, key: &[S]) -> Option<&V> {
        let mut node = &self.root;
        for &s in key {
            node = node.child(s)?;
        }
        node.value.as_ref()
    }

    /// The value under `key`, mutably.
    pub fn get_mut(&mut self, key: &[S]) -> Option<&mut V> {
        let mut node = &mut self.root;
        for &s in key {
            node = node.child_mut(s)?;
        }
        node.value.as_mut()
    }

    /// Removes `key`, returning its value; nodes left without keys below them are freed.
    pub fn remove(&mut self, key: &[S]) -> Option<V> {
        fn go<S: Ord + Copy, V>(node: &mut Node<S, V>, key: &[S]) -> Option<V> {
            let Some((&first, rest)) = key.split_first() else {
                return node.value.take();
            };
            let i = node
                .children
                .binary_search_by(|(c, _)| c.cmp(&first))
                .ok()?;
            let removed = go(&mut node.children[i].1, rest);
            if removed.is_some() && node.children[i].1.is_empty() {
                node.children.remove(i);
            }
            removed
        }
        let removed = go(&mut self.root, key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Every (key, value), in key order.
    pub fn iter(&self) -> Vec<(Vec<S>, &V)> {
        let mut out = Vec::with_capacity(self.len);
        let mut path = Vec::new();
        collect(&self.root, &mut path, &mut |k, v| out.push((k.to_vec(), v)));
        out
    }

    /// Every key starting with `prefix` (exactly), in key order.
    pub fn with_prefix(&self, prefix: &[S]) -> Vec<(Vec<S>, &V)> {
        let mut node = &self.root;
        for &s in prefix {
            match node.child(s) {
                Some(n) => node = n,
                None => return Vec::new(),
            }
        }
        let mut out = Vec::new();
        let mut path = prefix.to_vec();
        collect(node, &mut path, &mut |k, v| out.push((k.to_vec(), v)));
        out
    }

    /// Every key having a prefix within edit distance `max_distance` of `query`, comparing symbols after
    /// `fold`, in key order. With `max_distance` 0 this is a (folded) prefix search.
    pub fn fuzzy_prefix(
        &self,
        query: &[S],
        max_distance: usize,
        fold: impl Fn(S) -> S,
    ) -> Vec<TrieMatch<'_, S, V>> {
        let mut out = Vec::new();
        self.visit_fuzzy_prefix(query, max_distance, fold, |key, value, distance| {
            out.push(TrieMatch {
                key: key.to_vec(),
                value,
                distance,
            });
        });
        out
    }

    /// [`Trie::fuzzy_prefix`] calling `f(key, value, distance)` for each match instead of collecting them,
    /// so a caller keeping only the best few copies no other key.
    pub fn visit_fuzzy_prefix<'a>(
        &'a self,
        query: &[S],
        max_distance: usize,
        fold: impl Fn(S) -> S,
        mut f: impl FnMut(&[S], &'a V, usize),
    ) {
        let q: Vec<S> = query.iter().map(|&s| fold(s)).collect();
        // Row 0: the empty key against each prefix of the query.
        let row: Vec<usize> = (0..=q.len()).collect();
        let best = row[q.len()];
        let mut walk = FuzzyWalk {
            q: &q,
            max: max_distance,
            fold: &fold,
            path: Vec::new(),
            f: &mut f,
        };
        walk.visit(&self.root, &row, best);
    }
}

/// Calls `f` for every key at or below `node` (whose path is `path`), in order.
fn collect<'a, S: Copy, V>(
    node: &'a Node<S, V>,
    path: &mut Vec<S>,
    f: &mut impl FnMut(&[S], &'a V),
) {
    if let Some(v) = &node.value {
        f(path, v);
    }
    for (s, child) in &node.children {
        path.push(*s);
        collect(child, path, f);
        path.pop();
    }
}

/// The state of one fuzzy walk.
struct FuzzyWalk<'q, S, F, G> {
    /// The folded query.
    q: &'q [S],
    max: usize,
    fold: &'q F,
    /// The key of the node being visited.
    path: Vec<S>,
    f: &'q mut G,
}

impl<S: Copy + PartialEq, F: Fn(S) -> S, G> FuzzyWalk<'_, S, F, G> {
    /// Visits `node`, whose edit-distance row against every prefix of the query is `row`, and whose path
    /// has some prefix at distance `best` from the whole query.
    fn visit<'a, V>(&mut self, node: &'a Node<S, V>, row: &[usize], best: usize)
    where
        G: FnMut(&[S], &'a V, usize),
    {
        if best <= self.max
            && let Some(v) = &node.value
        {
            (self.f)(&self.path, v, best);
        }
        let n = self.q.len();
        for (s, child) in &node.children {
            let c = (self.fold)(*s);
            // Standard Levenshtein recurrence: the next row from this one.
            let mut next = Vec::with_capacity(row.len());
            next.push(row[0] + 1);
            for j in 1..row.len() {
                let substitute = row[j - 1] + usize::from(self.q[j - 1] != c);
                let delete = row[j] + 1;
                let insert = next[j - 1] + 1;
                next.push(substitute.min(delete).min(insert));
            }
            let child_best = best.min(next[n]);
            // Past this point no extension gets back within distance, unless a prefix already matched.
            if child_best > self.max && next.iter().all(|&d| d > self.max) {
                continue;
            }
            self.path.push(*s);
            self.visit(child, &next, child_best);
            self.path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    fn levenshtein(a: &[char], b: &[char]) -> usize {
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, &ca) in a.iter().enumerate() {
            let mut next = vec![i + 1];
            for (j, &cb) in b.iter().enumerate() {
                next.push(
                    (row[j] + usize::from(ca != cb))
                        .min(row[j + 1] + 1)
                        .min(next[j] + 1),
                );
            }
            row = next;
        }
        row[b.len()]
    }

    #[test]
    fn insert_get_remove() {
        let mut t = Trie::new();
        assert_eq!(t.insert(&chars("hello"), 1), None);
        assert_eq!(t.insert(&chars("help"), 2), None);
        assert_eq!(t.insert(&chars("hello"), 3), Some(1));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&chars("hel")), None);
        assert_eq!(t.remove(&chars("hel")), None);
        assert_eq!(t.remove(&chars("hello")), Some(3));
        assert_eq!(t.len(), 1);
        let keys: Vec<String> = t
            .with_prefix(&chars("he"))
            .into_iter()
            .map(|(k, _)| k.into_iter().collect())
            .collect();
        assert_eq!(keys, ["help"]);
    }

    #[test]
    fn fuzzy_prefix_finds_distance_one() {
        let mut t = Trie::new();
        for w in ["hello", "hell", "help", "world", "yellow", "Hello", "Hallo"] {
            t.insert(&chars(w), ());
        }
        let found: Vec<(String, usize)> = t
            .fuzzy_prefix(&chars("helo"), 1, |c: char| c.to_ascii_lowercase())
            .into_iter()
            .map(|m| (m.key.into_iter().collect(), m.distance))
            .collect();
        assert_eq!(
            found,
            [
                ("Hello".to_owned(), 1),
                ("hell".to_owned(), 1),
                ("hello".to_owned(), 1),
                ("help".to_owned(), 1),
            ]
        );
        // "yellow" and "Hallo" need two edits from any of their prefixes ("yell" and "hall" vs "helo").
        let exact: Vec<String> = t
            .fuzzy_prefix(&chars("hel"), 0, |c| c)
            .into_iter()
            .map(|m| m.key.into_iter().collect())
            .collect();
        assert_eq!(exact, ["hell", "hello", "help"]);
    }

    proptest::proptest! {
        /// The trie behaves as a BTreeMap, and fuzzy search agrees with brute force over every prefix.
        #[test]
        fn matches_a_model(
            ops in proptest::collection::vec((proptest::bool::ANY, "[abc]{0,5}"), 0..60),
            query in "[abc]{0,4}",
            dist in 0usize..3,
        ) {
            let mut t = Trie::new();
            let mut model = BTreeMap::new();
            for (i, (insert, k)) in ops.iter().enumerate() {
                let key = chars(k);
                if *insert {
                    proptest::prop_assert_eq!(t.insert(&key, i), model.insert(key.clone(), i));
                } else {
                    proptest::prop_assert_eq!(t.remove(&key), model.remove(&key));
                }
                proptest::prop_assert_eq!(t.len(), model.len());
            }
            let all: Vec<(Vec<char>, usize)> = t.iter().into_iter().map(|(k, v)| (k, *v)).collect();
            let expected: Vec<(Vec<char>, usize)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            proptest::prop_assert_eq!(all, expected);
            let q = chars(&query);
            let fuzzy: Vec<(Vec<char>, usize)> = t
                .fuzzy_prefix(&q, dist, |c| c)
                .into_iter()
                .map(|m| (m.key, m.distance))
                .collect();
            let brute: Vec<(Vec<char>, usize)> = model
                .keys()
                .filter_map(|k| {
                    let d = (0..=k.len()).map(|n| levenshtein(&k[..n], &q)).min()?;
                    (d <= dist).then(|| (k.clone(), d))
                })
                .collect();
            proptest::prop_assert_eq!(fuzzy, brute);
        }
    }
}
