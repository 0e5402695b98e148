//! `Db::checkpoint`: a consistent, openable copy at one seqno, taken while writers run.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use strata_storage::check::check;
use strata_storage::{Db, FsyncPolicy, Options, StorageError, WriteBatch};

fn small_opts() -> Options {
    Options {
        fsync: FsyncPolicy::No,
        memtable_size_bytes: 32 << 10,
        target_file_size_bytes: 16 << 10,
        log_segment_bytes: 4 << 10,
        ..Options::default()
    }
}

fn contents(db: &Db, tree: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.tree(tree)
        .unwrap()
        .iter()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

fn log_entries(db: &Db, name: &str) -> Vec<(u64, Vec<u8>)> {
    let l = db.log(name).unwrap();
    let mut out = Vec::new();
    let mut from = l.head();
    loop {
        let got = l.read(from, 1000, 1 << 20).unwrap();
        if got.is_empty() {
            return out;
        }
        for (o, p) in got {
            from = o + 1;
            out.push((o, p.to_vec()));
        }
    }
}

/// One committed batch of a writer: (seqno, key, value or None for a delete, log payload).
type Op = (u64, Vec<u8>, Option<Vec<u8>>, Vec<u8>);

#[test]
fn checkpoint_under_concurrent_writers_equals_the_state_at_its_seqno() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_opts()).unwrap();
    let (a, b, l) = (
        db.tree("a").unwrap(),
        db.tree("b").unwrap(),
        db.log("l").unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..3u32 {
        let (db, a, b, l) = (db.clone(), a.clone(), b.clone(), l.clone());
        let (stop, progress) = (stop.clone(), progress.clone());
        writers.push(std::thread::spawn(move || {
            let mut ops: Vec<Op> = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || n < 300 {
                let key = format!("w{w}-k{:03}", n % 97).into_bytes();
                let value =
                    (n % 11 != 10).then(|| format!("w{w}-n{n}-{}", "x".repeat(40)).into_bytes());
                let payload = format!("w{w}-n{n}").into_bytes();
                let mut batch = WriteBatch::new();
                for t in [&a, &b] {
                    match &value {
                        Some(v) => batch.put(t, &key, v),
                        None => batch.delete(t, &key),
                    }
                }
                batch.log_append(&l, &payload);
                // One writer defers its WAL bytes: visible before they reach the WAL file.
                let info = if w == 0 {
                    db.write_deferred(&batch).unwrap()
                } else {
                    db.write(&batch).unwrap()
                };
                ops.push((info.seqno, key, value, payload));
                n += 1;
                progress.fetch_add(1, Ordering::Relaxed);
            }
            ops
        }));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while progress.load(Ordering::Relaxed) < 1500 {
        assert!(std::time::Instant::now() < deadline, "writers stuck");
        std::thread::yield_now();
    }
    let target = out.path().join("cp");
    let info = db.checkpoint(&target).unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut ops: Vec<Op> = writers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    ops.sort_by_key(|o| o.0);
    assert!(info.seqno > 0);
    assert!(
        ops.iter().any(|o| o.0 > info.seqno),
        "writes continued after the cut"
    );
    assert!(info.files_linked > 0, "SSTs are hard-linked: {info:?}");

    // The model at the cut: every batch with seqno <= cut, in seqno order.
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut model_log = Vec::new();
    for (seq, key, value, payload) in &ops {
        if *seq > info.seqno {
            continue;
        }
        match value {
            Some(v) => model.insert(key.clone(), v.clone()),
            None => model.remove(key),
        };
        model_log.push(payload.clone());
    }
    check(&target).unwrap();
    let cp = Db::open(&target, small_opts()).unwrap();
    assert_eq!(cp.seqno(), info.seqno);
    assert_eq!(contents(&cp, "a"), model);
    assert_eq!(contents(&cp, "b"), model);
    let got: Vec<Vec<u8>> = log_entries(&cp, "l").into_iter().map(|e| e.1).collect();
    assert_eq!(got, model_log);

    // The checkpoint is a database of its own: writes to it do not reach the original and vice versa.
    cp.tree("a")
        .unwrap()
        .put(b"only-in-checkpoint", b"1")
        .unwrap();
    assert!(a.get(b"only-in-checkpoint").unwrap().is_none());
    a.put(b"only-in-original", b"1").unwrap();
    assert!(
        cp.tree("a")
            .unwrap()
            .get(b"only-in-original")
            .unwrap()
            .is_none()
    );
}

#[test]
fn checkpoint_survives_compaction_and_truncation_of_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_opts()).unwrap();
    let t = db.tree("t").unwrap();
    let l = db.log("l").unwrap();
    for i in 0..2000u32 {
        t.put(format!("k{:05}", i % 700).as_bytes(), &[b'v'; 64])
            .unwrap();
        l.append(&i.to_be_bytes()).unwrap();
    }
    db.flush().unwrap();
    let before = contents(&db, "t");
    let target = out.path().join("cp");
    let info = db.checkpoint(&target).unwrap();
    let linked: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sst"))
        .collect();
    assert!(!linked.is_empty());

    // Rewrite everything so compaction replaces every SST of the checkpoint in the original, and drop
    // the log's old segments.
    t.delete_range(b"k", b"l").unwrap();
    for i in 0..2000u32 {
        t.put(format!("k{:05}", i % 700).as_bytes(), &[b'w'; 64])
            .unwrap();
    }
    l.truncate_before(1900).unwrap();
    db.flush().unwrap();
    while db.compact_once().unwrap() {}
    db.flush().unwrap();
    let gone = linked
        .iter()
        .filter(|n| !dir.path().join(n).exists())
        .count();
    assert!(gone > 0, "compaction deleted some of the original's SSTs");

    check(&target).unwrap();
    let cp = Db::open(&target, small_opts()).unwrap();
    assert_eq!(cp.seqno(), info.seqno);
    assert_eq!(contents(&cp, "t"), before);
    let entries = log_entries(&cp, "l");
    assert_eq!(entries.len(), 2000);
    assert_eq!(entries[1999], (1999, 1999u32.to_be_bytes().to_vec()));
    drop(cp);

    // A checkpoint of a reopened checkpoint works too.
    let cp = Db::open(&target, small_opts()).unwrap();
    let again = out.path().join("cp2");
    cp.checkpoint(&again).unwrap();
    drop(cp);
    check(&again).unwrap();
    let cp2 = Db::open(&again, small_opts()).unwrap();
    assert_eq!(contents(&cp2, "t"), before);
}

#[test]
fn checkpoint_refuses_an_existing_target_and_leaves_no_temporary() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small_opts()).unwrap();
    db.tree("t").unwrap().put(b"k", b"v").unwrap();
    let target = out.path().join("cp");
    std::fs::create_dir(&target).unwrap();
    match db.checkpoint(&target) {
        Err(StorageError::InvalidArgument(m)) => assert!(m.contains("already exists"), "{m}"),
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir(&target).unwrap();
    db.checkpoint(&target).unwrap();
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["cp".to_string()]);
    // An empty database (nothing flushed, only the WAL) checkpoints and opens.
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = Db::open(empty_dir.path(), small_opts()).unwrap();
    let e = out.path().join("empty");
    let info = empty.checkpoint(&e).unwrap();
    assert_eq!(info.files_linked, 0);
    let opened = Db::open(&e, small_opts()).unwrap();
    assert!(opened.tree_names().is_empty());
    let cp = Db::open(&target, small_opts()).unwrap();
    assert_eq!(
        cp.tree("t").unwrap().get(b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
}
