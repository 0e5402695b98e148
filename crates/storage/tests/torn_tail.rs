//! WAL recovery: a torn tail is truncated at the last valid frame; damage anywhere else refuses to open and
//! names the file and offset.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use strata_storage::{Db, FsyncPolicy, Options, StorageError};

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::Always,
        ..Options::default()
    }
}

fn newest_wal(dir: &Path) -> PathBuf {
    let mut wals: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with("wal-") && std::fs::metadata(p).unwrap().len() > 0
        })
        .collect();
    wals.sort();
    wals.pop().unwrap()
}

fn write_keys(dir: &Path, n: u32) {
    let db = Db::open(dir, opts()).unwrap();
    let t = db.tree("t").unwrap();
    for i in 0..n {
        t.put(&i.to_be_bytes(), b"v").unwrap();
    }
}

fn count_keys(db: &Db) -> usize {
    db.tree("t").unwrap().iter().count()
}

#[test]
fn torn_tail_is_truncated() {
    for garbage in [
        &[0x12u8, 0x34, 0x56][..],
        &[0u8; 300][..],
        &[0xffu8; 40][..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_keys(dir.path(), 10);
        let wal = newest_wal(dir.path());
        let before = std::fs::metadata(&wal).unwrap().len();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&wal)
            .unwrap()
            .write_all(garbage)
            .unwrap();
        let db = Db::open(dir.path(), opts()).unwrap();
        assert_eq!(count_keys(&db), 10);
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), before);
    }
}

#[test]
fn cut_inside_last_frame_loses_only_that_frame() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path(), 10);
    let wal = newest_wal(dir.path());
    let len = std::fs::metadata(&wal).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    f.set_len(len - 3).unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(count_keys(&db), 9);
}

#[test]
fn damage_before_the_tail_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path(), 10);
    let wal = newest_wal(dir.path());
    let mut data = std::fs::read(&wal).unwrap();
    // Inside the first frame's ops (a v2 segment: the 8-byte header, then crc 4, len 1, seqno 1, ...).
    let first_frame = strata_storage::wal::WAL_V2_MAGIC.len();
    assert!(data.starts_with(&strata_storage::wal::WAL_V2_MAGIC));
    data[first_frame + 10] ^= 0x40;
    std::fs::write(&wal, &data).unwrap();
    match Db::open(dir.path(), opts()) {
        Err(StorageError::Corruption { file, offset, .. }) => {
            assert_eq!(file, wal);
            assert_eq!(offset, first_frame as u64);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // The damaged file was not modified.
    assert_eq!(std::fs::read(&wal).unwrap(), data);
}

#[test]
fn damaged_manifest_refuses_to_open_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path(), 3);
    {
        // A second tree adds a record after the manifest's snapshot record.
        let db = Db::open(dir.path(), opts()).unwrap();
        db.tree("second").unwrap();
    }
    let current = std::fs::read_to_string(dir.path().join("CURRENT")).unwrap();
    let manifest = dir.path().join(current.trim());
    let mut data = std::fs::read(&manifest).unwrap();
    data[25] ^= 0x10; // inside the first record, which is followed by a valid one
    std::fs::write(&manifest, &data).unwrap();
    match Db::open(dir.path(), opts()) {
        Err(StorageError::Corruption { file, .. }) => assert_eq!(file, manifest),
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// Under `everysec` a sealed segment is fsynced after the next one starts, so a machine crash can tear it
/// while a later segment holds newer frames: recovery ends the log at the tear and drops the later
/// segments. Under `always` the same state is damage and the database refuses to open.
#[test]
fn torn_sealed_segment_ends_the_log_under_everysec() {
    let everysec = || Options {
        fsync: FsyncPolicy::EverySec,
        ..Options::default()
    };
    let wals = |dir: &Path| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("wal-"))
            .collect();
        v.sort();
        v
    };
    let dir = tempfile::tempdir().unwrap();
    // Two sessions without a flush: the first one's segment is replayed, not retired, so it stays live
    // and sealed while the second session writes the next segment.
    for range in [0u32..5, 5..10] {
        let db = Db::open(dir.path(), everysec()).unwrap();
        let t = db.tree("t").unwrap();
        for i in range {
            t.put(&i.to_be_bytes(), b"v").unwrap();
        }
    }
    let live: Vec<PathBuf> = wals(dir.path())
        .into_iter()
        .filter(|p| std::fs::metadata(p).unwrap().len() > 8)
        .collect();
    assert_eq!(live.len(), 2, "{live:?}");
    // Tear the sealed segment inside its last frame.
    let sealed = &live[0];
    let len = std::fs::metadata(sealed).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(sealed)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let report = strata_storage::check::check(dir.path()).unwrap();
    assert!(report.wal_segments_after_tear >= 1, "{report:?}");
    // Under `always` this is damage.
    let err = Db::open(dir.path(), opts()).unwrap_err();
    assert!(
        err.to_string().contains("not the newest"),
        "unexpected error: {err}"
    );
    // Under `everysec` the log ends at the tear: the first session's writes but its last, none of the
    // second's, and the later segment is gone.
    let db = Db::open(dir.path(), everysec()).unwrap();
    let t = db.tree("t").unwrap();
    let keys: Vec<u32> = t
        .iter()
        .map(|r| u32::from_be_bytes(r.unwrap().0[..4].try_into().unwrap()))
        .collect();
    assert_eq!(keys, vec![0, 1, 2, 3]);
    assert!(!live[1].exists());
    t.put(&99u32.to_be_bytes(), b"after").unwrap();
    drop((t, db));
    let db = Db::open(dir.path(), everysec()).unwrap();
    assert_eq!(count_keys(&db), 5);
}
