//! Offline `check` and `stats` of a data directory.

#![allow(clippy::unwrap_used)]

use strata_storage::check::{check, stats};
use strata_storage::{Db, FsyncPolicy, Options, StorageError};

#[test]
fn check_verifies_and_names_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(
            dir.path(),
            Options {
                fsync: FsyncPolicy::No,
                log_segment_bytes: 128,
                ..Options::default()
            },
        )
        .unwrap();
        let t = db.tree("t").unwrap();
        let l = db.log("l").unwrap();
        for i in 0..20u32 {
            t.put(&i.to_be_bytes(), b"v").unwrap();
            l.append(&i.to_be_bytes()).unwrap();
        }
    }
    let r = check(dir.path()).unwrap();
    assert_eq!(r.wal_frames, 40);
    assert_eq!(r.log_entries, 20);
    assert!(r.log_segments > 1);
    let s = stats(dir.path()).unwrap();
    assert_eq!(s.trees, vec!["t".to_string()]);
    assert!(s.wal_bytes > 0);

    // Damage an early log segment: check names it.
    let ldir = dir.path().join("logs").join("1");
    let mut segs: Vec<_> = std::fs::read_dir(&ldir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let mut data = std::fs::read(&segs[0]).unwrap();
    data[20] ^= 1; // first byte (checksum) of the second entry: 16-byte header + 4-byte payload
    std::fs::write(&segs[0], &data).unwrap();
    match check(dir.path()) {
        Err(StorageError::Corruption { file, offset, .. }) => {
            assert_eq!(file, segs[0]);
            assert_eq!(offset, 20);
        }
        other => panic!("{other:?}"),
    }
}
