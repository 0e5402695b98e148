//! Patches: byte ranges rewritten in a value, logged as pieces and read as whole values, wherever the base
//! value lives (same batch, memtable, older memtable, SST) and across recovery.

use strata_storage::{Db, FsyncPolicy, Options, PatchBuilder, StorageError, WriteBatch};

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::No,
        ..Options::default()
    }
}

fn patch(pieces: &[(usize, &[u8])]) -> PatchBuilder {
    let mut p = PatchBuilder::new();
    for (offset, bytes) in pieces {
        p.write(*offset, bytes);
    }
    p
}

#[test]
fn patches_apply_to_the_value_wherever_it_lives_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path(), opts()).unwrap();
        let t = db.tree("t").unwrap();
        t.put(b"k", b"hello world").unwrap();
        let before = db.snapshot();
        // Base in the memtable; two pieces, the later winning where they overlap.
        t.patch(b"k", &patch(&[(0, b"J"), (6, b"W"), (6, b"w0")]))
            .unwrap();
        assert_eq!(t.get(b"k").unwrap().as_deref(), Some(&b"Jello w0rld"[..]));
        assert_eq!(
            before.get(&t, b"k").unwrap().as_deref(),
            Some(&b"hello world"[..])
        );
        // Past the end: the gap is zero-filled.
        t.patch(b"k", &patch(&[(13, b"!")])).unwrap();
        assert_eq!(
            t.get(b"k").unwrap().as_deref(),
            Some(&b"Jello w0rld\0\0!"[..])
        );
        // Base in an SST.
        db.flush().unwrap();
        t.patch(b"k", &patch(&[(1, b"E")])).unwrap();
        assert_eq!(
            t.get(b"k").unwrap().as_deref(),
            Some(&b"JEllo w0rld\0\0!"[..])
        );
        // An absent key patches as empty; so does a deleted one.
        t.patch(b"new", &patch(&[(2, b"ab")])).unwrap();
        assert_eq!(t.get(b"new").unwrap().as_deref(), Some(&b"\0\0ab"[..]));
        t.put(b"gone", b"xyz").unwrap();
        t.delete(b"gone").unwrap();
        t.patch(b"gone", &patch(&[(0, b"q")])).unwrap();
        assert_eq!(t.get(b"gone").unwrap().as_deref(), Some(&b"q"[..]));
        // A range tombstone newer than the SST's version hides it from the patch too.
        t.put(b"r", b"old value").unwrap();
        db.flush().unwrap();
        t.delete_range(b"r", b"s").unwrap();
        t.patch(b"r", &patch(&[(1, b"z")])).unwrap();
        assert_eq!(t.get(b"r").unwrap().as_deref(), Some(&b"\0z"[..]));
        // In one batch, a patch applies to the batch's own earlier put.
        let mut b = WriteBatch::new();
        b.put(&t, b"b", b"batch");
        b.patch(&t, b"b", &patch(&[(0, b"B")]));
        db.write(&b).unwrap();
        assert_eq!(t.get(b"b").unwrap().as_deref(), Some(&b"Batch"[..]));
    }
    // Recovery replays the patches: against bases in SSTs (k, r) and in the replayed WAL (b, gone).
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.tree("t").unwrap();
    for (k, v) in [
        (&b"k"[..], &b"JEllo w0rld\0\0!"[..]),
        (b"new", b"\0\0ab"),
        (b"gone", b"q"),
        (b"r", b"\0z"),
        (b"b", b"Batch"),
    ] {
        assert_eq!(t.get(k).unwrap().as_deref(), Some(v), "{k:?}");
    }
    // And once more after the recovered memtable is flushed.
    db.flush().unwrap();
    assert_eq!(
        t.get(b"k").unwrap().as_deref(),
        Some(&b"JEllo w0rld\0\0!"[..])
    );
}

#[test]
fn many_patches_across_memtable_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        memtable_size_bytes: 64 << 10,
        ..opts()
    };
    let mut model = vec![0u8; 12 << 10];
    {
        let db = Db::open(dir.path(), o.clone()).unwrap();
        let t = db.tree("t").unwrap();
        t.put(b"sketch", &model).unwrap();
        let mut x = 12345u64;
        for i in 0..2000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (x >> 33) as usize % model.len();
            let byte = (i % 251) as u8;
            model[at] = byte;
            if i % 2 == 0 {
                t.patch(b"sketch", &patch(&[(at, &[byte])])).unwrap();
            } else {
                t.patch_deferred(b"sketch", &patch(&[(at, &[byte])]))
                    .unwrap();
            }
        }
        assert_eq!(t.get(b"sketch").unwrap().as_deref(), Some(&model[..]));
        db.flush_wal_buffer().unwrap();
    }
    let db = Db::open(dir.path(), o).unwrap();
    let t = db.tree("t").unwrap();
    assert_eq!(t.get(b"sketch").unwrap().as_deref(), Some(&model[..]));
}

#[test]
fn a_patch_past_the_value_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(
        dir.path(),
        Options {
            max_value_bytes: 1024,
            ..opts()
        },
    )
    .unwrap();
    let t = db.tree("t").unwrap();
    let err = t.patch(b"k", &patch(&[(1020, b"12345")])).unwrap_err();
    assert!(matches!(err, StorageError::TooLarge { .. }), "{err}");
    let mut b = WriteBatch::new();
    b.patch(&t, b"k", &patch(&[(1024, b"x")]));
    assert!(matches!(
        db.write(&b).unwrap_err(),
        StorageError::TooLarge { .. }
    ));
    assert_eq!(t.get(b"k").unwrap(), None);
    t.patch(b"k", &patch(&[(1019, b"12345")])).unwrap();
    assert_eq!(t.get(b"k").unwrap().unwrap().len(), 1024);
}
