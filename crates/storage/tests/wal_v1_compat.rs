//! WAL format upgrade: a segment written in format v1 (by builds before WAL v2) is recovered by this build,
//! alone and followed by v2 segments, including a torn v1 tail; v2 segments are smaller per put.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use strata_storage::wal::{begin_frame, finish_frame};
use strata_storage::{Db, FsyncPolicy, Options, WriteBatch};

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::Always,
        ..Options::default()
    }
}

fn wal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut wals: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("wal-"))
        .collect();
    wals.sort();
    wals
}

/// A v1 frame holding `batches` (v1-encoded), as the previous build's commit leader wrote it.
fn v1_frame(first_seqno: u64, batches: &[&WriteBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    let start = begin_frame(&mut out, first_seqno);
    for b in batches {
        let rep = b.encode_v1();
        out.extend_from_slice(&(rep.len() as u32).to_le_bytes());
        out.extend_from_slice(&rep);
    }
    finish_frame(&mut out, start);
    out
}

#[test]
fn v1_segment_then_v2_segments_recover_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // The previous build's state: a manifest naming the tree and the log, and a v1 WAL segment. This
    // build writes the manifest (its format did not change); the segment is written by hand in v1, in
    // place of the (empty) segment this open created.
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        db.tree("t").unwrap();
        db.log("l").unwrap();
    }
    let segs = wal_segments(dir.path());
    let v1_path = segs.last().unwrap().clone();
    let (t, l) = {
        // Handles only to build batches; the db is opened on a scratch copy so nothing is written here.
        let scratch = tempfile::tempdir().unwrap();
        let db = Db::open(scratch.path(), opts()).unwrap();
        (db.tree("t").unwrap(), db.log("l").unwrap())
    };
    let mut b1 = WriteBatch::new();
    b1.put(&t, b"k1", b"one");
    b1.put(&t, b"k2", b"two");
    b1.delete(&t, b"k2");
    let mut b2 = WriteBatch::new();
    b2.log_append(&l, b"entry-0");
    b2.put(&t, b"k3", b"three");
    b2.delete_range(&t, b"a", b"b");
    let mut b3 = WriteBatch::new();
    b3.put(&t, b"lost", b"torn");
    let mut seg = v1_frame(1, &[&b1, &b2]); // seqnos 1..=6
    seg.extend(v1_frame(7, &[&b1])); // seqnos 7..=9: k1, k2 again, k2 deleted
    let torn = v1_frame(10, &[&b3]);
    seg.extend_from_slice(&torn[..torn.len() / 2]);
    std::fs::write(&v1_path, &seg).unwrap();

    {
        let db = Db::open(dir.path(), opts()).unwrap();
        let tree = db.tree("t").unwrap();
        assert_eq!(tree.get(b"k1").unwrap().as_deref(), Some(&b"one"[..]));
        assert_eq!(tree.get(b"k2").unwrap(), None);
        assert_eq!(tree.get(b"k3").unwrap().as_deref(), Some(&b"three"[..]));
        assert_eq!(tree.get(b"lost").unwrap(), None);
        assert_eq!(db.seqno(), 9);
        let log = db.log("l").unwrap();
        assert_eq!((log.head(), log.tail()), (0, 1));
        // The torn half frame was cut off.
        let valid = seg.len() - torn.len() / 2;
        assert_eq!(std::fs::metadata(&v1_path).unwrap().len() as usize, valid);
        // New writes go to a v2 segment after the v1 one.
        tree.put(b"k4", b"four").unwrap();
        tree.delete(b"k1").unwrap();
        assert_eq!(log.append(b"entry-1").unwrap(), 1);
    }
    let segs = wal_segments(dir.path());
    assert!(
        segs.contains(&v1_path),
        "the v1 segment is kept until a flush"
    );
    // The offline checker reads both formats.
    let report = strata_storage::check::check(dir.path()).unwrap();
    assert_eq!(report.wal_torn_tail_bytes, 0);
    assert!(report.wal_frames >= 2 + 3, "{report:?}");
    let newest = std::fs::read(segs.last().unwrap()).unwrap();
    assert!(newest.starts_with(&strata_storage::wal::WAL_V2_MAGIC));

    // Crash-style reopen (nothing was flushed): v1 then v2 segments replay in order.
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        let tree = db.tree("t").unwrap();
        assert_eq!(tree.get(b"k1").unwrap(), None);
        assert_eq!(tree.get(b"k3").unwrap().as_deref(), Some(&b"three"[..]));
        assert_eq!(tree.get(b"k4").unwrap().as_deref(), Some(&b"four"[..]));
        assert_eq!(db.seqno(), 12);
        let log = db.log("l").unwrap();
        assert_eq!(log.tail(), 2);
        let mut entries = Vec::new();
        for e in log.read(0, 10, usize::MAX).unwrap() {
            entries.push(e.1.to_vec());
        }
        assert_eq!(entries, vec![b"entry-0".to_vec(), b"entry-1".to_vec()]);
        // A flush retires every segment, the v1 one included.
        db.flush().unwrap();
    }
    let check = strata_storage::check::check(dir.path());
    assert!(check.is_ok(), "{check:?}");
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(!wal_segments(dir.path()).contains(&v1_path));
    let tree = db.tree("t").unwrap();
    assert_eq!(tree.get(b"k4").unwrap().as_deref(), Some(&b"four"[..]));
    assert_eq!(tree.iter().count(), 2);
}

#[test]
fn a_single_put_costs_fewer_wal_bytes_in_v2() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.tree("t").unwrap();
    let before = db.stats().wal_bytes_written;
    t.put(&[7u8; 16], &[1u8; 100]).unwrap();
    let frame = db.stats().wal_bytes_written - before;
    // crc 4 + len 1 + seqno 1 + tag 1 + tree 1 + key len 1 + key 16 + value len 1 + value 100.
    assert_eq!(frame, 126);
    // The same put in v1: header 20 + batch length 4 + count 4 + tag 1 + tree 4 + 1 + 16 + 1 + 100.
    let mut b = WriteBatch::new();
    b.put(&t, &[7u8; 16], &[1u8; 100]);
    assert_eq!(v1_frame(1, &[&b]).len(), 151);
}
