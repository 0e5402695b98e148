//! Concurrency: while writers commit batches that keep an invariant (every key of a group holds the same
//! round number) and background flushes and compactions run, readers' snapshots and iterators always see
//! the invariant hold, and a snapshot keeps reading the same data however long it is held.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_storage::{Db, FsyncPolicy, Options, WriteBatch};

const KEYS: u32 = 16;
const WRITERS: u32 = 2;
const ROUNDS: u32 = 300;

fn key(w: u32, k: u32) -> Vec<u8> {
    format!("w{w}/k{k:03}").into_bytes()
}

#[test]
fn readers_see_consistent_snapshots_during_background_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::No,
            memtable_size_bytes: 16 << 10,
            l0_compaction_trigger: 2,
            target_file_size_bytes: 16 << 10,
            level1_target_bytes: 64 << 10,
            level_size_multiplier: 4,
            ..Options::default()
        },
    )
    .unwrap();
    let t = db.tree("t").unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (db, t) = (&db, &t);
            writers.push(s.spawn(move || {
                let pad = vec![b'x'; 64];
                for round in 1..=ROUNDS {
                    let mut b = WriteBatch::new();
                    for k in 0..KEYS {
                        let mut v = round.to_be_bytes().to_vec();
                        v.extend_from_slice(&pad);
                        b.put(t, &key(w, k), &v);
                    }
                    if round % 50 == 0 {
                        // Range-delete and rewrite: the invariant must hold across it too.
                        b.delete_range(t, &key(w, 0), &key(w, KEYS));
                        for k in 0..KEYS {
                            b.put(t, &key(w, k), &round.to_be_bytes());
                        }
                    }
                    db.write(&b).unwrap();
                }
            }));
        }
        for _ in 0..2 {
            let (db, t, done) = (&db, &t, &done);
            s.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !done.load(Ordering::Acquire) && Instant::now() < deadline {
                    let snap = db.snapshot();
                    let mut first_view = Vec::new();
                    for w in 0..WRITERS {
                        // Point reads through the snapshot agree with each other...
                        let vals: Vec<_> = (0..KEYS)
                            .map(|k| snap.get(t, &key(w, k)).unwrap().map(|v| v[..4].to_vec()))
                            .collect();
                        assert!(
                            vals.windows(2).all(|p| p[0] == p[1]),
                            "torn batch: {vals:?}"
                        );
                        // ...and with an iterator over the same snapshot.
                        let it: Vec<_> = snap
                            .prefix(t, format!("w{w}/").as_bytes())
                            .map(|r| r.unwrap().1[..4].to_vec())
                            .collect();
                        match &vals[0] {
                            None => assert!(it.is_empty()),
                            Some(v) => {
                                assert_eq!(it.len(), KEYS as usize);
                                assert!(it.iter().all(|x| x == v));
                            }
                        }
                        first_view.push(vals[0].clone());
                    }
                    // Reading the same snapshot again later gives the same answer.
                    for w in 0..WRITERS {
                        let again = snap
                            .get(t, &key(w, KEYS - 1))
                            .unwrap()
                            .map(|v| v[..4].to_vec());
                        assert_eq!(again, first_view[w as usize]);
                    }
                }
            });
        }
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
    });
    assert!(db.stats().flushes > 0, "the test must run during flushes");
    for w in 0..WRITERS {
        for k in 0..KEYS {
            assert_eq!(
                &t.get(&key(w, k)).unwrap().unwrap()[..4],
                &ROUNDS.to_be_bytes()[..]
            );
        }
    }
}

#[test]
fn a_long_held_snapshot_survives_many_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::No,
            memtable_size_bytes: 8 << 10,
            l0_compaction_trigger: 2,
            target_file_size_bytes: 8 << 10,
            level1_target_bytes: 16 << 10,
            level_size_multiplier: 2,
            ..Options::default()
        },
    )
    .unwrap();
    let t = db.tree("t").unwrap();
    for i in 0..500u32 {
        t.put(&i.to_be_bytes(), b"old").unwrap();
    }
    let snap = db.snapshot();
    for round in 0..10u32 {
        for i in 0..500u32 {
            t.put(&i.to_be_bytes(), &round.to_be_bytes()).unwrap();
        }
        t.delete_range(&0u32.to_be_bytes(), &250u32.to_be_bytes())
            .unwrap();
    }
    db.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.stats().compactions < 3 {
        assert!(Instant::now() < deadline, "compactions did not run");
        std::thread::yield_now();
    }
    let old: Vec<_> = snap.iter(&t).map(|r| r.unwrap().1).collect();
    assert_eq!(old.len(), 500);
    assert!(old.iter().all(|v| &v[..] == b"old"));
    assert_eq!(
        snap.get(&t, &7u32.to_be_bytes()).unwrap().as_deref(),
        Some(&b"old"[..])
    );
    assert_eq!(t.iter().count(), 250);
    drop(snap);
}
