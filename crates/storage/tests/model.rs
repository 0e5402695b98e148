//! Model-based test: random operation sequences against the engine and against `BTreeMap`s (trees) and
//! `VecDeque`s (logs), compared after every step; includes snapshots, iteration both ways, and reopen.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use proptest::prelude::*;
use strata_storage::{Db, FsyncPolicy, Options, PatchBuilder, Snapshot, Tree, WriteBatch};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put(usize, Vec<u8>, Vec<u8>),
    Delete(usize, Vec<u8>),
    /// Byte ranges written over the key's value: (offset, bytes) pieces.
    Patch(usize, Vec<u8>, Vec<(usize, Vec<u8>)>),
    DeleteRange(usize, Vec<u8>, Vec<u8>),
    Clear(usize),
    Batch(Vec<(usize, Vec<u8>, Option<Vec<u8>>)>, Vec<Vec<u8>>),
    Snapshot,
    CheckSnapshot(usize),
    DropSnapshot(usize),
    Scan(usize, Option<Vec<u8>>, Option<Vec<u8>>, bool),
    Prefix(usize, Vec<u8>),
    /// Queue-like pop: the first key at or after the given one is read and deleted.
    Pop(usize, Vec<u8>),
    LogAppend(Vec<u8>),
    LogTruncate(u64),
    LogRead(u64),
    Flush,
    Reopen,
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![b'a', b'b', b'c', b'd']), 0..3)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..12)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..2usize, key(), value()).prop_map(|(t, k, v)| Op::Put(t, k, v)),
        3 => (0..2usize, key()).prop_map(|(t, k)| Op::Delete(t, k)),
        3 => (0..2usize, key(), prop::collection::vec((0..16usize, value()), 0..3))
            .prop_map(|(t, k, p)| Op::Patch(t, k, p)),
        2 => (0..2usize, key(), key()).prop_map(|(t, a, b)| Op::DeleteRange(t, a, b)),
        1 => (0..2usize).prop_map(Op::Clear),
        2 => (
            prop::collection::vec((0..2usize, key(), prop::option::of(value())), 0..5),
            prop::collection::vec(value(), 0..3)
        )
            .prop_map(|(w, l)| Op::Batch(w, l)),
        1 => Just(Op::Snapshot),
        2 => (0..4usize).prop_map(Op::CheckSnapshot),
        1 => (0..4usize).prop_map(Op::DropSnapshot),
        3 => (0..2usize, prop::option::of(key()), prop::option::of(key()), any::<bool>())
            .prop_map(|(t, a, b, r)| Op::Scan(t, a, b, r)),
        1 => (0..2usize, key()).prop_map(|(t, p)| Op::Prefix(t, p)),
        3 => (0..2usize, key()).prop_map(|(t, k)| Op::Pop(t, k)),
        2 => value().prop_map(Op::LogAppend),
        1 => (0..40u64).prop_map(Op::LogTruncate),
        1 => (0..40u64).prop_map(Op::LogRead),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::No,
        memtable_size_bytes: 2048,
        l0_compaction_trigger: 2,
        target_file_size_bytes: 4096,
        level1_target_bytes: 8192,
        level_size_multiplier: 2,
        log_segment_bytes: 256,
        ..Options::default()
    }
}

fn scan_model(
    m: &Model,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    rev: bool,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
        (&lo, &hi)
        && a > b
    {
        return Vec::new();
    }
    if let (Bound::Excluded(a), Bound::Excluded(b)) = (&lo, &hi)
        && a == b
    {
        return Vec::new();
    }
    let v: Vec<_> = m
        .range((lo, hi))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if rev {
        v.into_iter().rev().collect()
    } else {
        v
    }
}

fn collect(it: strata_storage::DbIter, rev: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let conv = |r: strata_storage::Result<(bytes::Bytes, bytes::Bytes)>| {
        let (k, v) = r.unwrap();
        (k.to_vec(), v.to_vec())
    };
    if rev {
        it.rev().map(conv).collect()
    } else {
        it.map(conv).collect()
    }
}

fn full(tree: &Tree) -> Model {
    collect(tree.iter(), false).into_iter().collect()
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), opts()).unwrap();
    let names = ["t0", "t1"];
    let mut trees: Vec<Tree> = names.iter().map(|n| db.tree(n).unwrap()).collect();
    let mut log = db.log("log").unwrap();
    let mut models: Vec<Model> = vec![Model::new(), Model::new()];
    let mut log_model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
    let mut log_head = 0u64;
    let mut log_tail = 0u64;
    let mut snaps: Vec<(Snapshot, Vec<Model>)> = Vec::new();
    for op in ops {
        match op {
            Op::Put(t, k, v) => {
                trees[t].put(&k, &v).unwrap();
                models[t].insert(k, v);
            }
            Op::Delete(t, k) => {
                trees[t].delete(&k).unwrap();
                models[t].remove(&k);
            }
            Op::Patch(t, k, pieces) => {
                let mut p = PatchBuilder::new();
                let v = models[t].entry(k.clone()).or_default();
                for (offset, bytes) in &pieces {
                    p.write(*offset, bytes);
                    if v.len() < offset + bytes.len() {
                        v.resize(offset + bytes.len(), 0);
                    }
                    v[*offset..offset + bytes.len()].copy_from_slice(bytes);
                }
                trees[t].patch(&k, &p).unwrap();
            }
            Op::DeleteRange(t, a, b) => {
                trees[t].delete_range(&a, &b).unwrap();
                if a < b {
                    let doomed: Vec<_> = models[t].range(a..b).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        models[t].remove(&k);
                    }
                }
            }
            Op::Clear(t) => {
                trees[t].clear().unwrap();
                models[t].clear();
            }
            Op::Batch(writes, appends) => {
                let mut b = WriteBatch::new();
                for (t, k, v) in &writes {
                    match v {
                        Some(v) => b.put(&trees[*t], k, v),
                        None => b.delete(&trees[*t], k),
                    }
                }
                for a in &appends {
                    b.log_append(&log, a);
                }
                let info = db.write(&b).unwrap();
                for (t, k, v) in writes {
                    match v {
                        Some(v) => models[t].insert(k, v),
                        None => models[t].remove(&k),
                    };
                }
                for (i, a) in appends.into_iter().enumerate() {
                    assert_eq!(info.log_offsets[i], log_tail);
                    log_model.push_back((log_tail, a));
                    log_tail += 1;
                }
            }
            Op::Snapshot => {
                if snaps.len() < 4 {
                    snaps.push((db.snapshot(), models.clone()));
                }
            }
            Op::CheckSnapshot(i) => {
                if let Some((s, m)) = snaps.get(i) {
                    for t in 0..2 {
                        let got: Model = collect(s.iter(&trees[t]), false).into_iter().collect();
                        assert_eq!(&got, &m[t], "snapshot {i} tree {t}");
                        for k in m[t].keys().take(3) {
                            assert_eq!(
                                s.get(&trees[t], k).unwrap().as_deref(),
                                m[t].get(k).map(|v| v.as_slice())
                            );
                        }
                    }
                }
            }
            Op::DropSnapshot(i) => {
                if i < snaps.len() {
                    snaps.remove(i);
                }
            }
            Op::Scan(t, a, b, rev) => {
                let lo = a.clone().map_or(Bound::Unbounded, Bound::Included);
                let hi = b.clone().map_or(Bound::Unbounded, Bound::Excluded);
                let expect = scan_model(&models[t], lo.clone(), hi.clone(), rev);
                let lo_s = lo.as_ref().map(|v| v.as_slice());
                let hi_s = hi.as_ref().map(|v| v.as_slice());
                let got = collect(trees[t].range::<&[u8], _>((lo_s, hi_s)), rev);
                assert_eq!(got, expect, "scan {a:?}..{b:?} rev={rev}");
                // Both ends at once.
                let mut it = trees[t].range::<&[u8], _>((lo_s, hi_s));
                let mut both = Vec::new();
                let mut back = Vec::new();
                loop {
                    match it.next() {
                        Some(r) => both.push(r.unwrap().0.to_vec()),
                        None => break,
                    }
                    match it.next_back() {
                        Some(r) => back.push(r.unwrap().0.to_vec()),
                        None => break,
                    }
                }
                both.extend(back.into_iter().rev());
                let fwd: Vec<_> = scan_model(&models[t], lo, hi, false)
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                assert_eq!(both, fwd, "double-ended scan");
                for (k, v) in models[t].iter().take(4) {
                    assert_eq!(trees[t].get(k).unwrap().as_deref(), Some(v.as_slice()));
                }
            }
            Op::Prefix(t, p) => {
                let got = collect(trees[t].prefix(&p), false);
                let expect: Vec<_> = models[t]
                    .iter()
                    .filter(|(k, _)| k.starts_with(&p))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(got, expect);
            }
            Op::Pop(t, from) => {
                let got = trees[t]
                    .range(from.as_slice()..)
                    .next()
                    .map(|r| r.unwrap().0.to_vec());
                let expect = models[t]
                    .range(from.clone()..)
                    .next()
                    .map(|(k, _)| k.clone());
                assert_eq!(got, expect, "pop from {from:?}");
                if let Some(k) = got {
                    trees[t].delete(&k).unwrap();
                    models[t].remove(&k);
                }
            }
            Op::LogAppend(p) => {
                let off = log.append(&p).unwrap();
                assert_eq!(off, log_tail);
                log_model.push_back((off, p));
                log_tail += 1;
            }
            Op::LogTruncate(o) => {
                log.truncate_before(o).unwrap();
                let new_head = o.min(log_tail).max(log_head);
                while log_model.front().is_some_and(|(off, _)| *off < new_head) {
                    log_model.pop_front();
                }
                log_head = new_head;
            }
            Op::LogRead(from) => {
                assert_eq!(log.head(), log_head);
                assert_eq!(log.tail(), log_tail);
                if from < log_head {
                    assert!(log.read(from, 10, usize::MAX).is_err());
                } else {
                    let got: Vec<_> = log
                        .read(from, 10, usize::MAX)
                        .unwrap()
                        .into_iter()
                        .map(|(o, b)| (o, b.to_vec()))
                        .collect();
                    let expect: Vec<_> = log_model
                        .iter()
                        .filter(|(o, _)| *o >= from)
                        .take(10)
                        .cloned()
                        .collect();
                    assert_eq!(got, expect);
                }
            }
            Op::Flush => {
                db.flush().unwrap();
            }
            Op::Reopen => {
                snaps.clear();
                drop(trees);
                drop(log);
                drop(db);
                db = Db::open(dir.path(), opts()).unwrap();
                trees = names.iter().map(|n| db.tree(n).unwrap()).collect();
                log = db.log("log").unwrap();
                assert_eq!(log.tail(), log_tail);
                assert!(log.head() >= log_head);
                log_head = log.head();
                while log_model.front().is_some_and(|(off, _)| *off < log_head) {
                    log_model.pop_front();
                }
            }
        }
    }
    for t in 0..2 {
        assert_eq!(full(&trees[t]), models[t]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
