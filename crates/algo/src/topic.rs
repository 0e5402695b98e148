//! A trie of AMQP topic patterns: `*` matches exactly one dot-separated word, `#` matches zero or more.
//!
//! Each node is one word of a pattern; the destinations bound with a pattern sit on its last node. Matching a
//! routing key walks the words, following the literal child, the `*` child and the `#` child (which may
//! swallow any number of words), so the cost depends on the key's length and the patterns that share its
//! prefixes, not on the number of bindings. RabbitMQ's topic exchange uses the same structure.
//!
//! ```
//! use strata_algo::TopicTrie;
//! let mut trie = TopicTrie::new();
//! trie.insert("stock.*.nyse", "q1");
//! trie.insert("stock.#", "q2");
//! trie.insert("#.nyse", "q3");
//! let mut hits = trie.matches("stock.ibm.nyse");
//! hits.sort();
//! assert_eq!(hits, vec!["q1", "q2", "q3"]);
//! assert_eq!(trie.matches("bonds.x"), Vec::<&str>::new());
//! ```

use std::collections::HashMap;

/// Longest routing key (in words) a match walks; AMQP short strings cap keys at 255 bytes, so at most 128
/// words exist in practice. A bound keeps `#`-heavy patterns from costing more than keys × nodes.
pub const MAX_WORDS: usize = 256;

#[derive(Debug, Clone)]
struct Node<T> {
    words: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    dests: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            words: HashMap::new(),
            star: None,
            hash: None,
            dests: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.words.is_empty() && self.star.is_none() && self.hash.is_none() && self.dests.is_empty()
    }
}

/// Topic patterns bound to destinations of type `T` (queue or exchange names, handles, ...).
#[derive(Debug, Clone)]
pub struct TopicTrie<T> {
    root: Node<T>,
    len: usize,
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T: PartialEq + Clone> TopicTrie<T> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (pattern, destination) bindings.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Binds `dest` with `pattern`; returns false if that exact binding already existed.
    pub fn insert(&mut self, pattern: &str, dest: T) -> bool {
        let mut node = &mut self.root;
        for word in pattern.split('.') {
            node = match word {
                "*" => node.star.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                w => node.words.entry(Box::from(w)).or_default(),
            };
        }
        if node.dests.contains(&dest) {
            return false;
        }
        node.dests.push(dest);
        self.len += 1;
        true
    }

    /// Removes the binding of `dest` with `pattern`; returns whether it existed. Emptied nodes are freed.
    pub fn remove(&mut self, pattern: &str, dest: &T) -> bool {
        let words: Vec<&str> = pattern.split('.').collect();
        let removed = Self::remove_in(&mut self.root, &words, dest);
        if removed {
            self.len -= 1;
        }
        removed
    }

    fn remove_in(node: &mut Node<T>, words: &[&str], dest: &T) -> bool {
        let Some((first, rest)) = words.split_first() else {
            let before = node.dests.len();
            node.dests.retain(|d| d != dest);
            return node.dests.len() != before;
        };
        match *first {
            "*" | "#" => {
                let slot = if *first == "*" {
                    &mut node.star
                } else {
                    &mut node.hash
                };
                let Some(child) = slot.as_deref_mut() else {
                    return false;
                };
                let removed = Self::remove_in(child, rest, dest);
                if child.is_empty() {
                    *slot = None;
                }
                removed
            }
            w => {
                let Some(child) = node.words.get_mut(w) else {
                    return false;
                };
                let removed = Self::remove_in(child, rest, dest);
                if child.is_empty() {
                    node.words.remove(w);
                }
                removed
            }
        }
    }

    /// Removes every binding whose destination satisfies `pred`; returns how many went.
    pub fn remove_where(&mut self, pred: &mut impl FnMut(&T) -> bool) -> usize {
        let n = Self::remove_where_in(&mut self.root, pred);
        self.len -= n;
        n
    }

    fn remove_where_in(node: &mut Node<T>, pred: &mut impl FnMut(&T) -> bool) -> usize {
        let before = node.dests.len();
        node.dests.retain(|d| !pred(d));
        let mut n = before - node.dests.len();
        node.words.retain(|_, child| {
            n += Self::remove_where_in(child, pred);
            !child.is_empty()
        });
        for slot in [&mut node.star, &mut node.hash] {
            if let Some(child) = slot.as_deref_mut() {
                n += Self::remove_where_in(child, pred);
                if child.is_empty() {
                    *slot = None;
                }
            }
        }
        n
    }

    /// Every destination whose pattern matches `routing_key`, each once.
    pub fn matches(&self, routing_key: &str) -> Vec<T> {
        let mut out = Vec::new();
        self.for_each_match(routing_key, |d| {
            if !out.contains(d) {
                out.push(d.clone());
            }
        });
        out
    }

    /// Calls `f` for every destination whose pattern matches `routing_key`. A destination bound by several
    /// matching patterns is reported once per pattern; a key longer than [`MAX_WORDS`] words matches nothing.
    pub fn for_each_match(&self, routing_key: &str, mut f: impl FnMut(&T)) {
        let words: Vec<&str> = routing_key.split('.').take(MAX_WORDS + 1).collect();
        if words.len() > MAX_WORDS {
            return;
        }
        // Each (node, position) is visited at most once: a `#` chain can otherwise reach the same state
        // along many paths.
        let mut seen: Vec<(*const Node<T>, usize)> = Vec::new();
        Self::walk(&self.root, &words, 0, &mut seen, &mut f);
    }

    fn walk(
        node: &Node<T>,
        words: &[&str],
        at: usize,
        seen: &mut Vec<(*const Node<T>, usize)>,
        f: &mut impl FnMut(&T),
    ) {
        let state = (node as *const Node<T>, at);
        if seen.contains(&state) {
            return;
        }
        seen.push(state);
        if at == words.len() {
            node.dests.iter().for_each(&mut *f);
        }
        if let Some(hash) = node.hash.as_deref() {
            // `#` swallows zero or more words.
            for next in at..=words.len() {
                Self::walk(hash, words, next, seen, f);
            }
        }
        if at < words.len() {
            if let Some(star) = node.star.as_deref() {
                Self::walk(star, words, at + 1, seen, f);
            }
            if let Some(child) = node.words.get(words[at]) {
                Self::walk(child, words, at + 1, seen, f);
            }
        }
    }
}

/// Whether `pattern` matches `routing_key`, without a trie: the reference the trie is tested against.
pub fn topic_matches(pattern: &str, routing_key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = routing_key.split('.').collect();
    // Dynamic programming over (pattern word, key word) positions.
    let mut reach = vec![vec![false; k.len() + 1]; p.len() + 1];
    reach[0][0] = true;
    for i in 0..=p.len() {
        for j in 0..=k.len() {
            if !reach[i][j] || i == p.len() {
                continue;
            }
            match p[i] {
                "#" => {
                    for row in reach[i + 1].iter_mut().skip(j) {
                        *row = true;
                    }
                }
                "*" => {
                    if j < k.len() {
                        reach[i + 1][j + 1] = true;
                    }
                }
                w => {
                    if j < k.len() && k[j] == w {
                        reach[i + 1][j + 1] = true;
                    }
                }
            }
        }
    }
    reach[p.len()][k.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rabbitmq_tutorial_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.orange.*", "quick.orange.rabbit", true),
            ("*.*.rabbit", "quick.orange.rabbit", true),
            ("lazy.#", "lazy.orange.elephant", true),
            ("*.orange.*", "quick.orange.fox", true),
            ("lazy.#", "lazy.brown.fox", true),
            ("*.*.rabbit", "quick.brown.fox", false),
            ("*.orange.*", "orange", false),
            ("*.orange.*", "quick.orange.new.rabbit", false),
            ("lazy.#", "lazy", true),
            ("#", "", true),
            ("#", "a.b.c", true),
            ("", "", true),
            ("*", "", true),
            ("a.#.b", "a.b", true),
            ("a.#.b", "a.x.y.b", true),
            ("a.#.#.b", "a.b", true),
            ("#.#", "x", true),
            ("a.*.#", "a", false),
            ("a..b", "a..b", true),
        ];
        for &(pattern, key, expected) in cases {
            assert_eq!(topic_matches(pattern, key), expected, "{pattern} vs {key}");
            let mut trie = TopicTrie::new();
            trie.insert(pattern, 1u32);
            assert_eq!(
                !trie.matches(key).is_empty(),
                expected,
                "trie {pattern} vs {key}"
            );
        }
    }

    #[test]
    fn insert_remove_and_len() {
        let mut trie = TopicTrie::new();
        assert!(trie.insert("a.*", 1));
        assert!(!trie.insert("a.*", 1));
        assert!(trie.insert("a.*", 2));
        assert!(trie.insert("#", 3));
        assert_eq!(trie.len(), 3);
        assert!(trie.remove("a.*", &1));
        assert!(!trie.remove("a.*", &1));
        assert!(!trie.remove("zz", &1));
        assert_eq!(trie.matches("a.b"), vec![3, 2]);
        assert_eq!(trie.remove_where(&mut |d| *d == 3), 1);
        assert_eq!(trie.matches("a.b"), vec![2]);
        assert!(trie.remove("a.*", &2));
        assert!(trie.is_empty() && trie.root.is_empty());
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("c".to_owned())
        ]
    }

    fn pattern_word() -> impl Strategy<Value = String> {
        prop_oneof![word(), Just("*".to_owned()), Just("#".to_owned())]
    }

    proptest! {
        #[test]
        fn trie_agrees_with_reference(
            patterns in proptest::collection::vec(proptest::collection::vec(pattern_word(), 1..5), 0..12),
            keys in proptest::collection::vec(proptest::collection::vec(word(), 1..6), 1..8),
        ) {
            let patterns: Vec<String> = patterns.iter().map(|p| p.join(".")).collect();
            let mut trie = TopicTrie::new();
            for (i, p) in patterns.iter().enumerate() {
                trie.insert(p, i);
            }
            for key in keys.iter().map(|k| k.join(".")) {
                let mut got = trie.matches(&key);
                got.sort_unstable();
                let want: Vec<usize> = patterns
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| topic_matches(p, &key))
                    .map(|(i, _)| i)
                    .collect();
                prop_assert_eq!(got, want, "key {}", key);
            }
        }
    }
}
