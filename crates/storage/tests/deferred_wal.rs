//! Deferred WAL writes ([`Db::write_deferred`] + [`Db::sync_to`]): a child process (this test binary
//! re-executed) writes atomic batches with deferred WAL bytes and acknowledges a batch only after
//! `sync_to` covered it; the parent `kill -9`s it and checks that every acknowledged batch survived, that
//! no batch is half-visible, and (in the deterministic scenario) that unsynced deferred batches were only
//! buffered in memory.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use rand::Rng;
use strata_storage::{Db, FsyncPolicy, Options, WalTicket, WriteBatch};

const CHILD_ENV: &str = "STRATA_DEFERRED_CHILD_DIR";
const MODE_ENV: &str = "STRATA_DEFERRED_CHILD_MODE";

fn opts(fsync: FsyncPolicy) -> Options {
    Options {
        fsync,
        memtable_size_bytes: 256 << 10,
        ..Options::default()
    }
}

/// Opens the database in `dir`, waiting while another process holds its lock. The tests of this binary
/// run in parallel and some spawn children: a child forked while a test's database is open shares that
/// database's lock (the fork copies every descriptor) until it execs, so a test that closes and at once
/// reopens can find its own directory locked for a moment.
fn open(dir: impl AsRef<std::path::Path>, opts: Options) -> Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Db::open(dir.as_ref(), opts.clone()) {
            Err(strata_storage::StorageError::Locked(_))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now();
            }
            r => return r.unwrap(),
        }
    }
}

fn key(thread: u32, n: u64) -> Vec<u8> {
    format!("{thread}:{n:08}").into_bytes()
}

fn deferred_batch(db: &Db, t: u32, n: u64) -> WalTicket {
    let a = db.tree("a").unwrap();
    let b = db.tree("b").unwrap();
    let k = key(t, n);
    let mut batch = WriteBatch::new();
    batch.put(&a, &k, b"in a");
    batch.put(&b, &k, b"in b");
    db.write_deferred(&batch).unwrap().wal_ticket()
}

/// The child: runs only when re-executed by a parent test with CHILD_ENV set.
#[test]
fn deferred_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mode = std::env::var(MODE_ENV).unwrap();
    let mut out = std::io::stdout();
    if mode == "fixed" {
        // fsync = no and a large memtable: nothing but sync_to writes the deferred buffer.
        let db = open(&dir, opts(FsyncPolicy::No));
        let mut last = WalTicket::default();
        for n in 0..200 {
            last = deferred_batch(&db, 0, n);
            if n % 10 == 9 {
                db.sync_to(last).unwrap();
            }
        }
        // Visible before their bytes are written.
        let t = deferred_batch(&db, 0, 200);
        assert!(t > last);
        for n in 201..250 {
            deferred_batch(&db, 0, n);
        }
        assert!(db.tree("a").unwrap().get(&key(0, 249)).unwrap().is_some());
        writeln!(out, "UNSYNCED").unwrap();
        out.flush().unwrap();
        // Wait for the kill.
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        std::process::abort();
    }
    // "random": two threads write deferred batches (small memtable: rotations and flushes happen), one of
    // them syncing after every batch and one every few batches; an immediate write now and then.
    let db = open(&dir, opts(FsyncPolicy::EverySec));
    let out = std::sync::Mutex::new(out);
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let (db, out) = (&db, &out);
            s.spawn(move || {
                let a = db.tree("a").unwrap();
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
                let every = if t == 0 { 1 } else { 7 };
                let mut unacked = Vec::new();
                let mut max = WalTicket::default();
                for n in start.. {
                    if n % 50 == 49 {
                        let k = key(t, n);
                        let mut batch = WriteBatch::new();
                        batch.put(&a, &k, b"in a");
                        batch.put(&db.tree("b").unwrap(), &k, b"in b");
                        db.write(&batch).unwrap();
                    } else {
                        max = max.max(deferred_batch(db, t, n));
                    }
                    unacked.push(n);
                    if unacked.len() >= every {
                        db.sync_to(max).unwrap();
                        let mut o = out.lock().unwrap();
                        for n in unacked.drain(..) {
                            writeln!(o, "ACK {t} {n}").unwrap();
                        }
                        o.flush().unwrap();
                    }
                }
            });
        }
    });
}

fn spawn_child(dir: &std::path::Path, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "deferred_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(MODE_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Keys of tree `a`, checking that tree `b` holds exactly the same ones (no half-visible batch).
fn check_atomic(db: &Db, what: &str) -> BTreeSet<Vec<u8>> {
    let a = db.tree("a").unwrap();
    let b = db.tree("b").unwrap();
    let in_a: BTreeSet<Vec<u8>> = a.iter().map(|r| r.unwrap().0.to_vec()).collect();
    let in_b: BTreeSet<Vec<u8>> = b.iter().map(|r| r.unwrap().0.to_vec()).collect();
    assert_eq!(in_a, in_b, "{what}: a batch is half visible");
    in_a
}

#[test]
fn synced_deferred_writes_survive_kill_9_and_unsynced_ones_vanish_whole() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), "fixed");
    let stdout = child.stdout.take().unwrap();
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        // libtest's "test deferred_child_writer ... " may precede the first line the child prints.
        if line.unwrap().ends_with("UNSYNCED") {
            ready = true;
            break;
        }
    }
    assert!(ready, "child failed before writing");
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());

    let db = open(dir.path(), opts(FsyncPolicy::No));
    let keys = check_atomic(&db, "fixed");
    let expected: BTreeSet<Vec<u8>> = (0..200).map(|n| key(0, n)).collect();
    // Batches 0..200 were synced (the last sync covered 199); 200..250 stayed in the child's memory.
    assert_eq!(keys, expected);
}

#[test]
fn acknowledged_deferred_writes_survive_random_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut acked: BTreeSet<(u32, u64)> = BTreeSet::new();
    for round in 0..6 {
        let mut child = spawn_child(dir.path(), "random");
        let kill_after = rng.random_range(1..600usize);
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest's "test deferred_child_writer ... " may precede the first ACK.
            let Some((_, ack)) = line.split_once("ACK ") else {
                continue;
            };
            let mut parts = ack.split_whitespace();
            let t: u32 = parts.next().unwrap().parse().unwrap();
            let n: u64 = parts.next().unwrap().parse().unwrap();
            acked.insert((t, n));
            seen += 1;
            if seen >= kill_after {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL
        assert!(
            !child.wait().unwrap().success(),
            "child exited on its own in round {round}"
        );
        strata_storage::check::check(dir.path())
            .unwrap_or_else(|e| panic!("round {round}: check after kill -9: {e}"));
        let db = open(dir.path(), opts(FsyncPolicy::EverySec));
        let keys = check_atomic(&db, &format!("round {round}"));
        for (t, n) in &acked {
            assert!(
                keys.contains(&key(*t, *n)),
                "round {round}: lost ack {t} {n}"
            );
        }
    }
}

#[test]
fn deferred_writes_are_visible_at_once_and_durable_after_sync_or_clean_close() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    for fsync in [FsyncPolicy::No, FsyncPolicy::EverySec, FsyncPolicy::Always] {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = open(dir.path(), opts(fsync));
            let a = db.tree("a").unwrap();
            let t1 = a.put_deferred(b"k1", b"v1").unwrap();
            assert_eq!(a.get(b"k1").unwrap().as_deref(), Some(&b"v1"[..]));
            let t2 = a.put_deferred(b"k2", b"v2").unwrap();
            let t3 = a.delete_deferred(b"k1").unwrap();
            assert!(t1 < t2 && t2 < t3);
            assert_eq!(a.get(b"k1").unwrap(), None);
            db.sync_to(t3).unwrap();
            db.sync_to(t1).unwrap(); // already covered: free
            // An immediate write carries the buffered bytes before its own.
            a.put_deferred(b"k3", b"v3").unwrap();
            a.put(b"k4", b"v4").unwrap();
            a.put_deferred(b"k5", b"v5").unwrap();
            // Dropped without sync_to: a clean close writes the buffer.
        }
        let db = open(dir.path(), opts(fsync));
        let a = db.tree("a").unwrap();
        let got: Vec<(Vec<u8>, Vec<u8>)> = a
            .iter()
            .map(|r| {
                let (k, v) = r.unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> =
            [("k2", "v2"), ("k3", "v3"), ("k4", "v4"), ("k5", "v5")]
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect();
        assert_eq!(got, want, "{fsync:?}");
    }
}
