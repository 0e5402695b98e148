//! The fsync policies: `always` fsyncs once per commit group, `everysec` from a background thread, `no`
//! never on the write path; all three recover everything after a clean close.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_storage::fs::{FaultFs, FaultInjector};
use strata_storage::{Db, FsyncPolicy, Options};

fn open(dir: &std::path::Path, fsync: FsyncPolicy, faults: &Arc<FaultInjector>) -> Db {
    Db::open(
        dir,
        Options {
            fsync,
            fs: Arc::new(FaultFs::new(faults.clone())),
            ..Options::default()
        },
    )
    .unwrap()
}

#[test]
fn always_syncs_every_group_and_no_never_does() {
    for (policy, expect_syncs) in [(FsyncPolicy::Always, true), (FsyncPolicy::No, false)] {
        let dir = tempfile::tempdir().unwrap();
        let faults = FaultInjector::new();
        let db = open(dir.path(), policy, &faults);
        let t = db.tree("t").unwrap();
        faults.set_target(Some("wal-"));
        let before = faults.syncs();
        for i in 0..10u32 {
            t.put(&i.to_be_bytes(), b"v").unwrap();
        }
        let syncs = faults.syncs() - before;
        if expect_syncs {
            assert_eq!(syncs, 10, "{policy:?}");
        } else {
            assert_eq!(syncs, 0, "{policy:?}");
        }
        drop(t);
        drop(db);
        let db = open(dir.path(), policy, &faults);
        assert_eq!(db.tree("t").unwrap().iter().count(), 10);
    }
}

#[test]
fn everysec_syncs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let db = open(dir.path(), FsyncPolicy::EverySec, &faults);
    let t = db.tree("t").unwrap();
    faults.set_target(Some("wal-"));
    let before = faults.syncs();
    t.put(b"k", b"v").unwrap();
    assert_eq!(faults.syncs(), before, "the write itself must not fsync");
    let deadline = Instant::now() + Duration::from_secs(10);
    while faults.syncs() == before {
        assert!(Instant::now() < deadline, "no background fsync within 10 s");
        std::thread::yield_now();
    }
}

#[test]
fn everysec_fsync_failure_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultInjector::new();
    let db = open(dir.path(), FsyncPolicy::EverySec, &faults);
    let t = db.tree("t").unwrap();
    t.put(b"k", b"v").unwrap();
    faults.set_target(Some("wal-"));
    faults.set_fail_syncs(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !db.is_poisoned() {
        assert!(
            Instant::now() < deadline,
            "background fsync failure did not poison"
        );
        std::thread::yield_now();
    }
    assert!(t.put(b"k2", b"v").is_err());
}
