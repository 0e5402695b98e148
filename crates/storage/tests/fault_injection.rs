//! Fault injection through the file layer: failed fsync, failed write and a full disk (torn write) make the
//! engine error cleanly and poison itself; reopening recovers every acknowledged write.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use strata_storage::fs::{FaultFs, FaultInjector};
use strata_storage::{Db, FsyncPolicy, Options, StorageError};

fn opts(faults: &Arc<FaultInjector>) -> Options {
    Options {
        fsync: FsyncPolicy::Always,
        fs: Arc::new(FaultFs::new(faults.clone())),
        ..Options::default()
    }
}

fn check_recovers(dir: &std::path::Path, faults: &Arc<FaultInjector>, acked: u32) {
    faults.reset();
    let db = Db::open(dir, opts(faults)).unwrap();
    let t = db.tree("t").unwrap();
    for i in 0..acked {
        assert_eq!(
            t.get(&i.to_be_bytes()).unwrap().as_deref(),
            Some(&b"value"[..]),
            "acknowledged key {i} lost"
        );
    }
    // The engine is usable again.
    t.put(b"after", b"reopen").unwrap();
}

fn fail_and_recover(inject: impl Fn(&FaultInjector)) {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let acked = 50u32;
    {
        let db = Db::open(dir.path(), opts(&faults)).unwrap();
        let t = db.tree("t").unwrap();
        for i in 0..acked {
            t.put(&i.to_be_bytes(), b"value").unwrap();
        }
        faults.set_target(Some("wal-"));
        inject(&faults);
        let e = t.put(b"doomed", b"value").unwrap_err();
        assert!(
            matches!(e, StorageError::Io { .. } | StorageError::Poisoned { .. }),
            "{e:?}"
        );
        assert!(db.is_poisoned());
        faults.reset();
        // Even with the disk healthy again the engine refuses writes: retrying fsync is unsafe.
        match t.put(b"later", b"value") {
            Err(StorageError::Poisoned { cause }) => assert!(!cause.is_empty()),
            other => panic!("expected Poisoned, got {other:?}"),
        }
        // Reads still work.
        assert_eq!(
            t.get(&0u32.to_be_bytes()).unwrap().as_deref(),
            Some(&b"value"[..])
        );
    }
    check_recovers(dir.path(), &faults, acked);
}

#[test]
fn failed_fsync_poisons_and_reopen_recovers() {
    fail_and_recover(|f| f.set_fail_syncs(true));
}

#[test]
fn failed_write_poisons_and_reopen_recovers() {
    fail_and_recover(|f| f.set_fail_writes(true));
}

#[test]
fn full_disk_tears_the_write_and_reopen_truncates_it() {
    fail_and_recover(|f| f.set_write_budget(Some(7)));
}

#[test]
fn concurrent_writers_all_fail_cleanly_when_fsync_fails() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let db = Db::open(dir.path(), opts(&faults)).unwrap();
    let t = db.tree("t").unwrap();
    t.put(b"k", b"v").unwrap();
    faults.set_target(Some("wal-"));
    faults.set_fail_syncs(true);
    std::thread::scope(|s| {
        for i in 0..4u32 {
            let t = t.clone();
            s.spawn(move || {
                for j in 0..20u32 {
                    let r = t.put(&[i.to_be_bytes(), j.to_be_bytes()].concat(), b"v");
                    assert!(r.is_err());
                }
            });
        }
    });
    assert!(db.is_poisoned());
    assert!(db.tree("t").unwrap().put(b"x", b"y").is_err());
}

#[test]
fn failed_sst_write_during_flush_poisons_and_reopen_recovers_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let small = |f: &Arc<FaultInjector>| Options {
        memtable_size_bytes: 4 << 10,
        ..opts(f)
    };
    let mut acked = 0u32;
    {
        let db = Db::open(dir.path(), small(&faults)).unwrap();
        let t = db.tree("t").unwrap();
        faults.set_target(Some(".sst"));
        faults.set_fail_writes(true);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Writes succeed until the background flush fails and poisons the engine.
        loop {
            match t.put(&acked.to_be_bytes(), b"value") {
                Ok(()) => acked += 1,
                Err(StorageError::Poisoned { .. }) => break,
                Err(e) => panic!("unexpected error {e:?}"),
            }
            assert!(
                std::time::Instant::now() < deadline,
                "flush failure never poisoned"
            );
        }
        assert!(db.is_poisoned());
        assert!(acked > 0);
    }
    check_recovers(dir.path(), &faults, acked);
}
