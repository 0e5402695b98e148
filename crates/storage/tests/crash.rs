//! Crash test: a child process (this test binary re-executed) writes atomic batches with `fsync = always`
//! from several threads and prints each acknowledgement; the parent `kill -9`s it after a random number of
//! acknowledgements, several times, and checks after each crash that every acknowledged batch is present
//! and that no batch is half-visible. Each batch also patches a per-thread counter value (a WAL patch whose
//! base may be in the memtable, an older memtable or an SST), which must match the thread's last batch.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use rand::Rng;
use strata_storage::{Db, FsyncPolicy, Options, PatchBuilder, WriteBatch};

const CHILD_ENV: &str = "STRATA_CRASH_CHILD_DIR";
const THREADS: u32 = 4;
const ROUNDS: usize = 10;

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::Always,
        memtable_size_bytes: 64 << 10,
        log_segment_bytes: 4 << 10,
        ..Options::default()
    }
}

fn key(thread: u32, n: u64) -> Vec<u8> {
    format!("{thread}:{n:08}").into_bytes()
}

/// The key in tree `b` whose first 8 bytes a thread's every batch patches with its batch number.
fn counter_key(thread: u32) -> String {
    format!("p:{thread}")
}

/// The child: runs only when re-executed by the parent with CHILD_ENV set.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let db = Db::open(&dir, opts()).unwrap();
    let a = db.tree("a").unwrap();
    let b = db.tree("b").unwrap();
    let log = db.log("events").unwrap();
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (db, a, b, log, out) = (&db, &a, &b, &log, &out);
            s.spawn(move || {
                // Continue after the highest key this thread already has.
                let start = a
                    .prefix(format!("{t}:").as_bytes())
                    .next_back()
                    .map(|r| {
                        let k = r.unwrap().0;
                        std::str::from_utf8(&k[2..])
                            .unwrap()
                            .parse::<u64>()
                            .unwrap()
                            + 1
                    })
                    .unwrap_or(0);
                for n in start.. {
                    let k = key(t, n);
                    let mut batch = WriteBatch::new();
                    batch.put(a, &k, b"in a");
                    batch.put(b, &k, b"in b");
                    batch.log_append(log, &k);
                    let mut p = PatchBuilder::new();
                    p.write(0, &n.to_le_bytes());
                    p.write(8 + (n % 32) as usize, &[(n % 251) as u8]);
                    batch.patch(b, counter_key(t).as_bytes(), &p);
                    db.write(&batch).unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {t} {n}").unwrap();
                    o.flush().unwrap();
                }
            });
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut acked: BTreeSet<(u32, u64)> = BTreeSet::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let kill_after = rng.random_range(1..400usize);
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ACK") {
                continue;
            }
            let t: u32 = parts.next().unwrap().parse().unwrap();
            let n: u64 = parts.next().unwrap().parse().unwrap();
            acked.insert((t, n));
            seen += 1;
            if seen >= kill_after {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "child exited on its own in round {round}"
        );

        // The offline check accepts every crash state (torn tails are reported, not errors).
        strata_storage::check::check(dir.path())
            .unwrap_or_else(|e| panic!("round {round}: check after kill -9: {e}"));
        let db = Db::open(dir.path(), opts()).unwrap();
        let a = db.tree("a").unwrap();
        let b = db.tree("b").unwrap();
        let log = db.log("events").unwrap();
        for (t, n) in &acked {
            assert!(
                a.get(&key(*t, *n)).unwrap().is_some(),
                "round {round}: lost ack {t} {n}"
            );
        }
        let in_a: BTreeSet<Vec<u8>> = a.iter().map(|r| r.unwrap().0.to_vec()).collect();
        let in_b: BTreeSet<Vec<u8>> = b
            .iter()
            .map(|r| r.unwrap().0.to_vec())
            .filter(|k| !k.starts_with(b"p:"))
            .collect();
        assert_eq!(in_a, in_b, "round {round}: a batch is half visible");
        // Each thread's patched counter holds the number of its last batch present.
        for t in 0..THREADS {
            let last = in_a
                .iter()
                .filter_map(|k| {
                    std::str::from_utf8(k)
                        .ok()?
                        .strip_prefix(&format!("{t}:"))?
                        .parse::<u64>()
                        .ok()
                })
                .max();
            let counter = b.get(counter_key(t).as_bytes()).unwrap();
            match (last, counter) {
                (None, None) => {}
                (Some(n), Some(v)) => {
                    let len = 8 + n.min(31) as usize + 1;
                    assert_eq!(v.len(), len, "round {round}: thread {t} counter length");
                    assert_eq!(
                        &v[..8],
                        &n.to_le_bytes(),
                        "round {round}: thread {t} counter"
                    );
                    assert_eq!(v[8 + (n % 32) as usize], (n % 251) as u8);
                }
                (l, c) => panic!("round {round}: thread {t}: last batch {l:?}, counter {c:?}"),
            }
        }
        let logged: BTreeSet<Vec<u8>> = log
            .read(0, usize::MAX, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p.to_vec())
            .collect();
        assert_eq!(in_a, logged, "round {round}: log and trees disagree");
        assert_eq!(log.tail(), in_a.len() as u64);
    }
}
