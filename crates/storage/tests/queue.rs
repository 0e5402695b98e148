//! Queue-like workloads: push at the tail, pop the head by seeking from the start of the key range. Checks
//! that skip hints (remembered runs of dead keys) never hide a live key — with snapshots, re-inserted keys,
//! range deletes, flushes and reopens — against a `BTreeMap` model, and that the pop path does use them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_storage::{Db, FsyncPolicy, Options, Snapshot, Tree};

fn k(i: u16) -> Vec<u8> {
    let mut v = b"q".to_vec();
    v.extend_from_slice(&i.to_be_bytes());
    v
}

fn first_from(tree: &Tree, from: &[u8]) -> Option<Vec<u8>> {
    tree.range(from..).next().map(|r| r.unwrap().0.to_vec())
}

fn model_first(m: &BTreeMap<Vec<u8>, Vec<u8>>, from: &[u8]) -> Option<Vec<u8>> {
    m.range(from.to_vec()..).next().map(|(k, _)| k.clone())
}

#[derive(Debug, Clone)]
enum Op {
    Push,
    Pop(u16),
    PutAt(u16),
    DeleteAt(u16),
    DeleteRange(u16, u16),
    Snapshot,
    CheckSnapshot(usize, u16),
    DropSnapshot(usize),
    Flush,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Push),
        8 => (0..4u16).prop_map(Op::Pop),
        2 => (0..80u16).prop_map(Op::PutAt),
        1 => (0..80u16).prop_map(Op::DeleteAt),
        1 => (0..80u16, 0..80u16).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        1 => Just(Op::Snapshot),
        2 => (0..3usize, 0..40u16).prop_map(|(i, f)| Op::CheckSnapshot(i, f)),
        1 => (0..3usize).prop_map(Op::DropSnapshot),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::No,
        memtable_size_bytes: 4096,
        l0_compaction_trigger: 2,
        target_file_size_bytes: 4096,
        level1_target_bytes: 8192,
        level_size_multiplier: 2,
        ..Options::default()
    }
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), opts()).unwrap();
    let mut tree = db.tree("q").unwrap();
    let mut model = Model::new();
    let mut tail = 0u16;
    let mut snaps: Vec<(Snapshot, Model)> = Vec::new();
    for _ in 0..20 {
        tree.put(&k(tail), b"v").unwrap();
        model.insert(k(tail), b"v".to_vec());
        tail += 1;
    }
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::Push => {
                let v = format!("v{n}").into_bytes();
                tree.put(&k(tail), &v).unwrap();
                model.insert(k(tail), v);
                tail += 1;
            }
            Op::Pop(from) => {
                let got = first_from(&tree, &k(from));
                assert_eq!(got, model_first(&model, &k(from)), "pop from {from}");
                if let Some(key) = got {
                    tree.delete(&key).unwrap();
                    model.remove(&key);
                }
            }
            Op::PutAt(i) => {
                let v = format!("p{n}").into_bytes();
                tree.put(&k(i), &v).unwrap();
                model.insert(k(i), v);
            }
            Op::DeleteAt(i) => {
                tree.delete(&k(i)).unwrap();
                model.remove(&k(i));
            }
            Op::DeleteRange(a, b) => {
                tree.delete_range(&k(a), &k(b)).unwrap();
                if a < b {
                    let doomed: Vec<_> = model.range(k(a)..k(b)).map(|(k, _)| k.clone()).collect();
                    for d in doomed {
                        model.remove(&d);
                    }
                }
            }
            Op::Snapshot => {
                if snaps.len() < 3 {
                    snaps.push((db.snapshot(), model.clone()));
                }
            }
            Op::CheckSnapshot(i, from) => {
                if let Some((s, m)) = snaps.get(i) {
                    let got = s
                        .range(&tree, k(from)..)
                        .next()
                        .map(|r| r.unwrap().0.to_vec());
                    assert_eq!(got, model_first(m, &k(from)), "snapshot {i} from {from}");
                    let all: Model = s
                        .iter(&tree)
                        .map(|r| {
                            let (a, b) = r.unwrap();
                            (a.to_vec(), b.to_vec())
                        })
                        .collect();
                    assert_eq!(&all, m, "snapshot {i}");
                }
            }
            Op::DropSnapshot(i) => {
                if i < snaps.len() {
                    snaps.remove(i);
                }
            }
            Op::Flush => db.flush().unwrap(),
            Op::Compact => {
                db.compact_once().unwrap();
            }
            Op::Reopen => {
                snaps.clear();
                drop(tree);
                drop(db);
                db = Db::open(dir.path(), opts()).unwrap();
                tree = db.tree("q").unwrap();
            }
        }
        // Every read from the start of the range agrees with the model.
        assert_eq!(first_from(&tree, &k(0)), model_first(&model, &k(0)));
    }
    let all: Model = tree
        .iter()
        .map(|r| {
            let (a, b) = r.unwrap();
            (a.to_vec(), b.to_vec())
        })
        .collect();
    assert_eq!(all, model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn queue_matches_model(ops in prop::collection::vec(op(), 1..200)) {
        run(ops);
    }
}

#[test]
fn pops_use_skip_hints_and_reinserted_keys_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::No,
            ..Options::default()
        },
    )
    .unwrap();
    let tree = db.tree("q").unwrap();
    for i in 0..100 {
        tree.put(&k(i), b"v").unwrap();
    }
    let old = db.snapshot();
    for i in 0..60 {
        assert_eq!(first_from(&tree, &k(0)), Some(k(i)));
        tree.delete(&k(i)).unwrap();
    }
    assert!(db.stats().skip_hint_uses > 40, "{:?}", db.stats());
    // A snapshot older than the deletes still sees the head.
    assert_eq!(
        old.range(&tree, k(0)..).next().unwrap().unwrap().0.to_vec(),
        k(0)
    );
    // A key re-inserted into the dead run is found at once.
    tree.put(&k(7), b"back").unwrap();
    assert_eq!(first_from(&tree, &k(0)), Some(k(7)));
    tree.delete(&k(7)).unwrap();
    assert_eq!(first_from(&tree, &k(0)), Some(k(60)));
    // Survives a flush.
    db.flush().unwrap();
    assert_eq!(first_from(&tree, &k(0)), Some(k(60)));
    tree.put(&k(3), b"again").unwrap();
    assert_eq!(first_from(&tree, &k(0)), Some(k(3)));
}
