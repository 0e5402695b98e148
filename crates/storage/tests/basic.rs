//! Basic tree, log, batch and snapshot behaviour, including across reopen.

use strata_storage::{Db, FsyncPolicy, Options, WriteBatch};

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::No,
        ..Options::default()
    }
}

#[test]
fn put_get_delete_range_delete_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        let t = db.tree("t").unwrap();
        let u = db.tree("u").unwrap();
        t.put(b"a", b"1").unwrap();
        t.put(b"b", b"2").unwrap();
        t.put(b"c", b"3").unwrap();
        u.put(b"a", b"other").unwrap();
        t.delete(b"b").unwrap();
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(t.get(b"b").unwrap(), None);
        let snap = db.snapshot();
        t.delete_range(b"a", b"c").unwrap();
        assert_eq!(t.get(b"a").unwrap(), None);
        assert_eq!(t.get(b"c").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(snap.get(&t, b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(u.get(b"a").unwrap().as_deref(), Some(&b"other"[..]));
        t.put(b"a", b"again").unwrap();
        assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"again"[..]));
        assert_eq!(
            t.multi_get(&[&b"a"[..], b"b", b"c"]).unwrap(),
            vec![Some("again".into()), None, Some("3".into())]
        );
    }
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.tree_names(), vec!["t".to_string(), "u".to_string()]);
    let t = db.tree("t").unwrap();
    assert_eq!(t.get(b"a").unwrap().as_deref(), Some(&b"again"[..]));
    assert_eq!(t.get(b"b").unwrap(), None);
    assert_eq!(t.get(b"c").unwrap().as_deref(), Some(&b"3"[..]));
}

#[test]
fn batch_spans_trees_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        let t = db.tree("t").unwrap();
        let l = db.log("events").unwrap();
        assert_eq!(l.append(b"first").unwrap(), 0);
        let mut b = WriteBatch::new();
        b.put(&t, b"k", b"v");
        b.log_append(&l, b"second");
        b.log_append(&l, b"third");
        let info = db.write(&b).unwrap();
        assert_eq!(info.log_offsets, vec![1, 2]);
        let got = l.read(0, 10, usize::MAX).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(&got[2].1[..], b"third");
        assert_eq!(l.read(2, 10, usize::MAX).unwrap().len(), 1);
        assert!(l.read(3, 10, usize::MAX).unwrap().is_empty());
    }
    let db = Db::open(dir.path(), opts()).unwrap();
    let l = db.log("events").unwrap();
    assert_eq!((l.head(), l.tail()), (0, 3));
    assert_eq!(&l.read(1, 1, usize::MAX).unwrap()[0].1[..], b"second");
    assert_eq!(
        db.tree("t").unwrap().get(b"k").unwrap().as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(l.append(b"fourth").unwrap(), 3);
}

#[test]
fn counters_are_atomic_across_threads() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::Always,
            ..Options::default()
        },
    )
    .unwrap();
    let t = db.tree("c").unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let t = t.clone();
            s.spawn(move || {
                for _ in 0..50 {
                    t.increment(b"n", 1).unwrap();
                }
            });
        }
    });
    assert_eq!(t.get(b"n").unwrap().as_deref(), Some(&b"200"[..]));
    assert_eq!(
        t.compare_and_swap(b"n", Some(b"200"), Some(b"0")).unwrap(),
        Ok(())
    );
    assert!(
        t.compare_and_swap(b"n", Some(b"200"), None)
            .unwrap()
            .is_err()
    );
    let s = db.stats();
    assert!(s.commit_groups <= s.writes);
}

#[test]
fn second_open_of_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _db = Db::open(dir.path(), opts()).unwrap();
    assert!(matches!(
        Db::open(dir.path(), opts()),
        Err(strata_storage::StorageError::Locked(_))
    ));
}

#[test]
fn conditional_batch_commits_only_when_conditions_hold() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.tree("t").unwrap();
    t.put(b"balance", b"10").unwrap();
    let mut b = WriteBatch::new();
    b.require(&t, b"balance", Some(b"10"));
    b.require(&t, b"lock", None);
    b.put(&t, b"balance", b"5");
    db.write(&b).unwrap();
    assert_eq!(t.get(b"balance").unwrap().as_deref(), Some(&b"5"[..]));
    // Same batch again: the balance is no longer 10.
    assert!(matches!(
        db.write(&b),
        Err(strata_storage::StorageError::ConditionFailed { .. })
    ));
    assert_eq!(t.get(b"balance").unwrap().as_deref(), Some(&b"5"[..]));
}

/// A minimal executor: parks the thread until woken.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl std::task::Wake for ThreadWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn async_writes_complete_without_a_blocking_leader() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::Always,
            ..Options::default()
        },
    )
    .unwrap();
    let t = db.tree("t").unwrap();
    let l = db.log("l").unwrap();
    let futures: Vec<_> = (0..50u32)
        .map(|i| {
            let mut b = WriteBatch::new();
            b.put(&t, &i.to_be_bytes(), b"v");
            b.log_append(&l, &i.to_be_bytes());
            db.write_async(&b)
        })
        .collect();
    for (i, f) in futures.into_iter().enumerate() {
        let info = block_on(f).unwrap();
        assert_eq!(info.log_offsets, vec![i as u64]);
    }
    assert_eq!(t.iter().count(), 50);
    // Mixed with synchronous writers.
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 100..200u32 {
                t.put(&i.to_be_bytes(), b"sync").unwrap();
            }
        });
        for i in 200..300u32 {
            let mut b = WriteBatch::new();
            b.put(&t, &i.to_be_bytes(), b"async");
            block_on(db.write_async(&b)).unwrap();
        }
    });
    assert_eq!(t.iter().count(), 250);
}

#[test]
fn data_moves_through_flush_and_compaction_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = || Options {
        fsync: FsyncPolicy::No,
        memtable_size_bytes: 8 << 10,
        l0_compaction_trigger: 2,
        target_file_size_bytes: 16 << 10,
        level1_target_bytes: 32 << 10,
        level_size_multiplier: 2,
        ..Options::default()
    };
    {
        let db = Db::open(dir.path(), o()).unwrap();
        let t = db.tree("t").unwrap();
        for round in 0..3u32 {
            for i in 0..2000u32 {
                t.put(&i.to_be_bytes(), &round.to_be_bytes()).unwrap();
            }
            t.delete_range(&100u32.to_be_bytes(), &200u32.to_be_bytes())
                .unwrap();
        }
        db.flush().unwrap();
        // Compaction runs in the background: poll with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while db.stats().compactions == 0 {
            assert!(std::time::Instant::now() < deadline, "no compaction ran");
            std::thread::yield_now();
        }
        let s = db.stats();
        assert!(s.flushes > 0);
        assert!(s.level_files.iter().skip(1).sum::<u64>() > 0, "{s:?}");
        assert_eq!(t.iter().count(), 1900);
        assert_eq!(t.get(&150u32.to_be_bytes()).unwrap(), None);
        assert_eq!(
            t.get(&1500u32.to_be_bytes()).unwrap().as_deref(),
            Some(&2u32.to_be_bytes()[..])
        );
    }
    let db = Db::open(dir.path(), o()).unwrap();
    let t = db.tree("t").unwrap();
    assert_eq!(t.iter().count(), 1900);
    assert_eq!(t.iter().rev().count(), 1900);
    assert_eq!(
        t.get(&1999u32.to_be_bytes()).unwrap().as_deref(),
        Some(&2u32.to_be_bytes()[..])
    );
    let r = strata_storage::check::check(dir.path());
    drop(t);
    drop(db);
    let r = r.unwrap();
    assert!(r.sst_files > 0);
}

/// A commit leader keeps the active memtable from group to group; a manual flush freezes it outside the
/// commit path, so the next group must write to the new one (writing to the frozen one would lose the
/// write once that memtable is flushed and dropped).
#[test]
fn writes_after_a_manual_flush_reach_the_new_memtable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.tree("t").unwrap();
    for round in 0..3u32 {
        let key = round.to_be_bytes();
        t.put(&key, b"before").unwrap();
        db.flush().unwrap();
        t.put(&key, b"after").unwrap();
        db.flush().unwrap();
        assert_eq!(t.get(&key).unwrap().as_deref(), Some(&b"after"[..]));
        assert_eq!(db.stats().flushes, u64::from(round + 1) * 2);
    }
    drop(t);
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.tree("t").unwrap();
    for round in 0..3u32 {
        assert_eq!(
            t.get(&round.to_be_bytes()).unwrap().as_deref(),
            Some(&b"after"[..])
        );
    }
}

#[test]
fn manual_compaction_when_background_compaction_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::No,
            memtable_size_bytes: 4 << 10,
            l0_compaction_trigger: 2,
            l0_stall_files: 1000,
            background_compaction: false,
            ..Options::default()
        },
    )
    .unwrap();
    let t = db.tree("t").unwrap();
    for i in 0..1000u32 {
        t.put(&i.to_be_bytes(), b"value").unwrap();
    }
    db.flush().unwrap();
    assert_eq!(db.stats().compactions, 0);
    while db.compact_once().unwrap() {}
    let s = db.stats();
    assert!(s.compactions > 0);
    assert!(s.level_files[0] < 2, "{s:?}");
    assert_eq!(t.iter().count(), 1000);
}

/// An empty or inverted range in a batch deletes nothing and must not reach a flush (an SSTable cannot
/// hold such a tombstone; a flush that met one used to poison the engine).
#[test]
fn empty_range_delete_in_a_batch_is_a_no_op_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.tree("t").unwrap();
    t.put(b"k", b"v").unwrap();
    let mut batch = WriteBatch::new();
    batch.delete_range(&t, b"k", b"k");
    batch.delete_range(&t, b"z", b"a");
    batch.put(&t, b"x", b"y");
    db.write(&batch).unwrap();
    db.flush().unwrap();
    assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(t.get(b"x").unwrap().as_deref(), Some(&b"y"[..]));
    t.put(b"after", b"ok").unwrap();
}

#[test]
fn values_past_32_mib_go_through_wal_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..(40u32 << 20)).map(|i| (i % 251) as u8).collect();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        let t = db.tree("t").unwrap();
        t.put(b"big", &big).unwrap();
        t.put(b"small", b"s").unwrap();
        db.flush().unwrap();
        t.put(b"big2", &big[1..]).unwrap();
        assert_eq!(t.get(b"big").unwrap().unwrap().len(), big.len());
    }
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.tree("t").unwrap();
    assert!(t.get(b"big").unwrap().unwrap() == big[..]);
    assert!(t.get(b"big2").unwrap().unwrap() == big[1..]);
    assert_eq!(t.get(b"small").unwrap().as_deref(), Some(&b"s"[..]));
    // Over the limit is still refused.
    let over = Options {
        max_value_bytes: 1 << 20,
        ..opts()
    };
    drop((t, db));
    let db = Db::open(dir.path(), over).unwrap();
    let t = db.tree("t").unwrap();
    assert!(t.put(b"x", &big[..(1 << 20) + 1]).is_err());
}
