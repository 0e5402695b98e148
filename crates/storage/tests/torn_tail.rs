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
