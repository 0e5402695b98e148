//! Write stalls are bounded: with compaction off, writers stop (and the stall is counted) once
//! `l0_stall_files` L0 files accumulate, instead of memtables or L0 growing without bound; compaction
//! releases them.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strata_storage::{Db, FsyncPolicy, Options};

fn l0(s: &strata_storage::StatsSnapshot) -> u64 {
    s.level_files.first().copied().unwrap_or(0)
}

#[test]
fn writers_stall_when_compaction_cannot_keep_up_and_resume_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        fsync: FsyncPolicy::No,
        memtable_size_bytes: 4 << 10,
        max_immutable_memtables: 2,
        l0_compaction_trigger: 2,
        l0_stall_files: 4,
        background_compaction: false,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let tree = db.tree("t").unwrap();
    const KEYS: u32 = 3000;
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (tree, written) = (tree.clone(), written.clone());
        std::thread::spawn(move || {
            for i in 0..KEYS {
                tree.put(&i.to_be_bytes(), &[7u8; 64]).unwrap();
                written.store(u64::from(i) + 1, Ordering::Release);
            }
        })
    };
    // Memtables frozen before the stall began are still flushed, so L0 may pass the stall limit by them.
    let l0_bound = (opts.l0_stall_files + opts.max_immutable_memtables) as u64;
    // The writer must stall: nothing compacts L0 until we do.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = db.stats();
        assert!(l0(&s) <= l0_bound, "{s:?}");
        assert!(
            s.immutable_memtables <= opts.max_immutable_memtables as u64,
            "{s:?}"
        );
        if s.stalls > 0 && l0(&s) >= opts.l0_stall_files as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "writer never stalled: {s:?}");
        std::thread::yield_now();
    }
    // While stalled, the writer makes no progress and memory stays bounded.
    let at_stall = written.load(Ordering::Acquire);
    assert!(at_stall < u64::from(KEYS));
    let s = db.stats();
    assert!(
        s.memtable_bytes <= 2 * opts.memtable_size_bytes as u64,
        "{s:?}"
    );
    // Compaction lets it finish.
    let deadline = Instant::now() + Duration::from_secs(60);
    while written.load(Ordering::Acquire) < u64::from(KEYS) {
        db.compact_once().unwrap();
        assert!(Instant::now() < deadline, "writer never resumed");
        std::thread::yield_now();
    }
    writer.join().unwrap();
    let s = db.stats();
    assert!(s.stall_micros > 0, "{s:?}");
    assert!(l0(&s) <= l0_bound, "{s:?}");
    assert_eq!(tree.iter().count(), KEYS as usize);
}
