//! Flushes and compactions run below the priority of the threads that serve requests: on a machine with
//! few cores the engine's own background work should not take the cores from its callers. By default
//! they are under `SCHED_IDLE` (RocksDB's `CpuPriority::kIdle`); `BackgroundPriority::Low` puts them at
//! nice 10 instead.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use strata_storage::{BackgroundPriority, Db, Options};

/// Linux's number for the `SCHED_IDLE` policy.
const SCHED_IDLE: i64 = 5;

/// The (policy, nice) of a `/proc/.../stat` line: fields 41 and 19.
fn scheduling_in(stat: &str) -> (i64, i64) {
    // Fields from the third (the state) on.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (fields[38].parse().unwrap(), fields[16].parse().unwrap())
}

/// Thread id and (policy, nice) of every thread of this process named `name`, skipping `old` ids.
fn threads_named(name: &str, old: &HashSet<String>) -> Vec<(String, (i64, i64))> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let id = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() == name && !old.contains(&id) {
            out.push((id, scheduling_in(&stat)));
        }
    }
    out
}

/// Opens a database with `priority` and waits until its flush and compaction threads satisfy `want`;
/// returns their ids.
fn open_and_check(
    priority: BackgroundPriority,
    old: &HashSet<String>,
    want: impl Fn((i64, i64)) -> bool,
) -> (Db, tempfile::TempDir, HashSet<String>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        background_priority: priority,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    // The threads set their own scheduling as they start: poll until both are there and lowered.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flush = threads_named("strata-flush", old);
        let compact = threads_named("strata-compact", old);
        let ok = |v: &[(String, (i64, i64))]| !v.is_empty() && v.iter().all(|(_, s)| want(*s));
        if ok(&flush) && ok(&compact) {
            let ids = flush.into_iter().chain(compact).map(|(id, _)| id).collect();
            return (db, dir, ids);
        }
        assert!(
            Instant::now() < deadline,
            "{priority:?}: flush threads {flush:?}, compaction threads {compact:?} (policy, nice)"
        );
        std::thread::yield_now();
    }
}

#[test]
fn flush_and_compaction_threads_run_at_a_lower_priority() {
    let own = || scheduling_in(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    let before = own();
    // Idle by default (or nice 10 where the system refuses SCHED_IDLE).
    let (db, _dir, idle) = open_and_check(BackgroundPriority::Idle, &HashSet::new(), |(p, n)| {
        p == SCHED_IDLE || n >= 10
    });
    drop(db);
    // Low: nice 10 under the normal policy.
    let (db, _dir2, _) = open_and_check(BackgroundPriority::Low, &idle, |(p, n)| p == 0 && n >= 10);
    drop(db);
    // The caller's thread keeps its scheduling.
    assert_eq!(own(), before, "the opening thread's scheduling changed");
}
