//! Flushes and compactions run below the priority of the threads that serve requests: on a machine with
//! few cores the engine's own background work should not take the cores from its callers (RocksDB lowers
//! its compaction threads the same way).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use strata_storage::{Db, Options};

/// The nice value in a `/proc/.../stat` line: field 19, the 17th after the parenthesised command.
fn nice_in(stat: &str) -> i64 {
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(16).unwrap().parse().unwrap()
}

/// The nice value of every thread of this process named `name` (Linux `/proc`).
fn nice_of_threads(name: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        out.push(nice_in(&stat));
    }
    out
}

#[test]
fn flush_and_compaction_threads_run_at_a_lower_priority() {
    let own = || nice_in(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    let before = own();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    // The threads set their own priority as they start: poll until both are there and lowered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let flush = nice_of_threads("strata-flush");
        let compact = nice_of_threads("strata-compact");
        let lowered = |v: &[i64]| !v.is_empty() && v.iter().all(|&n| n >= 10);
        if lowered(&flush) && lowered(&compact) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "flush threads {flush:?}, compaction threads {compact:?}: want nice >= 10"
        );
        std::thread::yield_now();
    }
    // The caller's thread keeps its priority.
    assert_eq!(own(), before, "the opening thread's priority changed");
    drop(db);
}
