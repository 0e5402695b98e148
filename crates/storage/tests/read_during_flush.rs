//! A key that always exists is never reported missing while it is overwritten and flushes and
//! compactions (which drop shadowed versions) install new memtable sets and versions under readers. A smoke
//! test: the window `DbInner::latest` closes is a few instructions wide and rarely hit without it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_storage::{Db, FsyncPolicy, Options};

#[test]
fn overwritten_key_never_disappears_across_installs() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::No,
            memtable_size_bytes: 2048,
            l0_compaction_trigger: 2,
            target_file_size_bytes: 4096,
            level1_target_bytes: 8192,
            level_size_multiplier: 2,
            ..Options::default()
        },
    )
    .unwrap();
    let tree = db.tree("t").unwrap();
    tree.put(b"k", b"0").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (tree, stop) = (tree.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Acquire) {
                    assert!(tree.get(b"k").unwrap().is_some(), "get lost the key");
                    let first = tree.range(&b"k"[..]..).next().unwrap().unwrap().0;
                    assert_eq!(&first[..], b"k", "scan lost the key");
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..3000u32 {
        tree.put(b"k", i.to_string().as_bytes()).unwrap();
        tree.put(&i.to_be_bytes(), &[1u8; 32]).unwrap();
    }
    stop.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(db.stats().flushes > 10, "{:?}", db.stats());
}

/// Point reads answered from SSTables are remembered per version (its row cache); what a reader sees must
/// not change: newer writes, range deletes, snapshots older than the files, flushes and compactions.
#[test]
fn reads_remembered_from_sstables_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let db = strata_storage::Db::open(
        dir.path(),
        strata_storage::Options {
            fsync: strata_storage::FsyncPolicy::No,
            ..strata_storage::Options::default()
        },
    )
    .unwrap();
    let t = db.tree("t").unwrap();
    t.put(b"k", b"a").unwrap();
    let old = db.snapshot();
    t.put(b"k", b"b").unwrap();
    t.put(b"other", b"x").unwrap();
    db.flush().unwrap();
    // Twice each: the second read of the newest data comes from the cache.
    for _ in 0..2 {
        assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"b"[..]));
        assert_eq!(old.get(&t, b"k").unwrap().as_deref(), Some(&b"a"[..]));
    }
    // A newer write in the memtable wins over the remembered read.
    t.put(b"k", b"c").unwrap();
    assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"c"[..]));
    // So does a range delete, in the memtable and then flushed.
    t.get(b"other").unwrap();
    t.delete_range(b"o", b"p").unwrap();
    assert_eq!(t.get(b"other").unwrap(), None);
    db.flush().unwrap();
    for _ in 0..2 {
        assert_eq!(t.get(b"other").unwrap(), None);
        assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"c"[..]));
    }
    assert_eq!(old.get(&t, b"k").unwrap().as_deref(), Some(&b"a"[..]));
    drop(old);
    while db.compact_once().unwrap() {}
    assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"c"[..]));
    assert_eq!(t.get(b"other").unwrap(), None);
}
