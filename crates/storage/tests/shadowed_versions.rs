//! A key rewritten while nobody reads keeps only its newest versions in the memtable, and the buffers of
//! the versions it drops are reused. None of that may reach a reader: a value already handed out never
//! changes, a snapshot or an iterator keeps seeing the versions of its seqno, and a point read racing
//! the rewrites always finds the key.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};

use strata_storage::{Db, FsyncPolicy, Options, PatchBuilder, Tree};

fn open(dir: &std::path::Path) -> Db {
    Db::open(
        dir,
        Options {
            fsync: FsyncPolicy::No,
            ..Options::default()
        },
    )
    .unwrap()
}

fn patch_byte(t: &Tree, key: &[u8], at: usize, byte: u8) {
    let mut p = PatchBuilder::new();
    p.write(at, &[byte]);
    t.patch(key, &p).unwrap();
}

/// Writes `b"hot"` once for each value of `values`.
fn rewrite_hot(t: &Tree, values: std::ops::Range<u32>) {
    for v in values {
        t.put(b"hot", &v.to_be_bytes()).unwrap();
    }
}

#[test]
fn a_value_handed_out_never_changes_under_its_reader() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = db.tree("t").unwrap();
    // Big enough for a buffer of its own, as a dense HyperLogLog is.
    t.put(b"k", &[0u8; 20_000]).unwrap();
    t.put(b"k", &[1u8; 20_000]).unwrap();
    let held = t.get(b"k").unwrap().unwrap();
    for round in 2..50u8 {
        patch_byte(&t, b"k", 0, round);
        t.put(b"small", &[round; 10]).unwrap();
    }
    assert!(held.iter().all(|&b| b == 1), "a held value was overwritten");
    let now = t.get(b"k").unwrap().unwrap();
    assert_eq!((now[0], now[1], now.len()), (49, 1, 20_000));
    assert_eq!(t.get(b"small").unwrap().unwrap(), vec![49u8; 10]);
}

#[test]
fn snapshots_and_iterators_keep_their_versions_through_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = db.tree("t").unwrap();
    rewrite_hot(&t, 0..5);
    // Each alone: either one keeps the versions it reads.
    let mut iter = t.range::<&[u8], _>(..);
    rewrite_hot(&t, 5..50);
    let (k, v) = iter.next().unwrap().unwrap();
    assert_eq!((&k[..], &v[..]), (&b"hot"[..], &4u32.to_be_bytes()[..]));
    drop(iter);
    let snap = db.snapshot();
    rewrite_hot(&t, 50..100);
    assert_eq!(
        snap.get(&t, b"hot").unwrap().unwrap()[..],
        49u32.to_be_bytes()[..]
    );
    drop(snap);
    // With no reader left, the rewrites go on dropping what they shadow; the newest value reads back.
    rewrite_hot(&t, 100..200);
    assert_eq!(
        t.get(b"hot").unwrap().unwrap()[..],
        199u32.to_be_bytes()[..]
    );
    // A snapshot taken now sees the newest, and keeps it.
    let snap = db.snapshot();
    rewrite_hot(&t, 200..210);
    assert_eq!(
        snap.get(&t, b"hot").unwrap().unwrap()[..],
        199u32.to_be_bytes()[..]
    );
    drop(snap);
    // And the history survives a reopen from the WAL as its newest value.
    drop(t);
    drop(db);
    let db = open(dir.path());
    let t = db.tree("t").unwrap();
    assert_eq!(
        t.get(b"hot").unwrap().unwrap()[..],
        209u32.to_be_bytes()[..]
    );
}

#[test]
fn point_reads_racing_rewrites_always_find_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = db.tree("t").unwrap();
    t.put(b"hot", &0u64.to_be_bytes()).unwrap();
    t.put(b"big", &[0u8; 20_000]).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (t, done) = (&t, &done);
            s.spawn(move || {
                let (mut last, mut last_big) = (0u64, 0u8);
                while !done.load(Ordering::Relaxed) {
                    let v = t
                        .get(b"hot")
                        .unwrap()
                        .expect("a rewritten key went missing");
                    let v = u64::from_be_bytes(v[..].try_into().unwrap());
                    assert!(v >= last, "went back from {last} to {v}");
                    last = v;
                    // A big value is read whole: every byte from one version.
                    let big = t.get(b"big").unwrap().expect("a patched key went missing");
                    let first = big[0];
                    assert!(big.iter().all(|&b| b == first), "a torn read");
                    assert!(first >= last_big);
                    last_big = first;
                    let mut it = t.range::<&[u8], _>(&b"big"[..]..&b"hot\xff"[..]);
                    assert_eq!(&it.next().unwrap().unwrap().0[..], b"big");
                    assert_eq!(&it.next().unwrap().unwrap().0[..], b"hot");
                }
            });
        }
        for v in 1..=20_000u64 {
            t.put(b"hot", &v.to_be_bytes()).unwrap();
            if v % 100 == 0 {
                t.put(b"big", &[(v / 100) as u8; 20_000]).unwrap();
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    assert_eq!(
        t.get(b"hot").unwrap().unwrap()[..],
        20_000u64.to_be_bytes()[..]
    );
}

#[test]
fn a_patched_value_reads_back_whole_through_rewrites_of_every_kind() {
    // A hot key patched while nobody reads is rebuilt in the buffer of an older version from the bytes
    // the newer ones changed (the memtable's `Delta`); whatever mix of writes and readers comes, every
    // read must equal a model of the value, and a value handed out must never change.
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let t = db.tree("t").unwrap();
    let mut model = vec![7u8; 12_304];
    t.put(b"hll", &model).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut held = Vec::new();
    for round in 0..2_000u32 {
        match next(20) {
            // A whole new value now and then: the next patch has no delta to build from.
            0 => {
                model.iter_mut().for_each(|b| *b = b.wrapping_add(1));
                t.put(b"hll", &model).unwrap();
            }
            // A reader keeps a value (and so its buffer) for a while.
            1 => held.push((t.get(b"hll").unwrap().unwrap(), model.clone())),
            2 => held.clear(),
            // A patch of more pieces than a delta holds.
            3 => {
                let mut p = PatchBuilder::new();
                for _ in 0..9 {
                    let at = next(model.len());
                    model[at] = round as u8;
                    p.write(at, &[round as u8]);
                }
                t.patch(b"hll", &p).unwrap();
            }
            // PFADD's patch: the header byte and one or two register bytes.
            _ => {
                let mut p = PatchBuilder::new();
                model[15] ^= 0x80;
                p.write(15, &model[15..16]);
                let at = 16 + next(model.len() - 17);
                let bytes = [round as u8, (round >> 8) as u8];
                model[at..at + 2].copy_from_slice(&bytes);
                p.write(at, &bytes);
                t.patch(b"hll", &p).unwrap();
            }
        }
        assert!(
            t.get(b"hll").unwrap().unwrap()[..] == model[..],
            "round {round}: the value read differs from the model"
        );
        for (value, then) in &held {
            assert!(value[..] == then[..], "round {round}: a held value changed");
        }
    }
}

/// A memtable of hot keys gives back what each dropped version counted, so it would never fill by size;
/// the WAL behind it still bounds it, so it is flushed once per memtable size of log and the log on disk
/// stays within about that much.
#[test]
fn hot_keys_are_flushed_by_the_wal_bound_and_their_log_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 64 << 10;
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::No,
            memtable_size_bytes: limit,
            ..Options::default()
        },
    )
    .unwrap();
    let t = db.tree("t").unwrap();
    let mut wal_most = 0;
    for round in 0..40u32 {
        for k in 0..8u32 {
            for v in 0..100u32 {
                t.put(&k.to_be_bytes(), &(round * 100 + v).to_be_bytes())
                    .unwrap();
            }
        }
        wal_most = wal_most.max(wal_bytes(dir.path()));
    }
    let s = db.stats();
    // 32,000 puts of ~20 WAL bytes each: over 600 KiB of log, a memtable frozen at every 64 KiB of it
    // (flushed, or still waiting for the flush thread).
    assert!(s.flushes + s.immutable_memtables >= 8, "{s:?}");
    assert!(
        s.memtable_bytes < limit as u64 / 4,
        "eight hot keys hold a few versions each: {s:?}"
    );
    // The active memtable's log and those of the frozen ones waiting for the flush thread (writes stall
    // past `max_immutable_memtables` of them), each about the limit.
    let bound = (Options::default().max_immutable_memtables as u64 + 2) * limit as u64;
    assert!(wal_most <= bound, "WAL grew to {wal_most}");
    for k in 0..8u32 {
        assert_eq!(
            t.get(&k.to_be_bytes()).unwrap().unwrap().as_ref(),
            (39 * 100 + 99u32).to_be_bytes()
        );
    }
    drop(t);
    drop(db);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let t = db.tree("t").unwrap();
    assert_eq!(
        t.get(&7u32.to_be_bytes()).unwrap().unwrap().as_ref(),
        3999u32.to_be_bytes()
    );
}

/// The bytes of the WAL segments in `dir`.
fn wal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
