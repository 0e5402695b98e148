//! Compaction filters through the engine: what they remove is gone from storage after a full compaction,
//! only their tree is affected, they can read the tree, and no snapshot ever sees a change — not even one
//! taken while a filtering compaction runs.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use strata_storage::{CompactionFilter, Db, Decision, FilterContext, FsyncPolicy, Options};

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::No,
        background_compaction: false,
        ..Options::default()
    }
}

/// Removes values starting with `dead`, and values whose key `k` has a `gone:k` marker in the tree.
struct Dead;

impl CompactionFilter for Dead {
    fn filter(&self, ctx: &mut FilterContext<'_>, key: &[u8], value: &[u8]) -> Decision {
        if value.starts_with(b"dead") {
            return Decision::Remove;
        }
        let mut marker = b"gone:".to_vec();
        marker.extend_from_slice(key);
        match ctx.get(&marker) {
            Ok(Some(_)) => Decision::Remove,
            _ => Decision::Keep,
        }
    }
}

#[test]
fn removed_values_are_gone_from_storage_and_other_trees_are_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), opts()).expect("open");
    let t = db.tree("t").expect("tree");
    let u = db.tree("u").expect("tree");
    db.set_compaction_filter(&t, Arc::new(Dead));
    for i in 0..100u32 {
        let k = format!("k{i:03}");
        let v = if i % 2 == 0 { "dead" } else { "live" };
        t.put(k.as_bytes(), v.as_bytes()).expect("put");
        u.put(k.as_bytes(), v.as_bytes()).expect("put");
    }
    // An older live version under a newer dead one, in a deeper level.
    t.put(b"shadow", b"old live").expect("put");
    db.compact_all().expect("compact");
    t.put(b"shadow", b"dead now").expect("put");
    // Marked gone through a read of the tree.
    t.put(b"gone:k001", b"").expect("put");
    db.compact_all().expect("compact");

    assert_eq!(t.get(b"shadow").expect("get"), None);
    assert_eq!(t.get(b"k000").expect("get"), None);
    assert_eq!(t.get(b"k001").expect("get"), None);
    assert_eq!(t.get(b"k003").expect("get").as_deref(), Some(&b"live"[..]));
    assert_eq!(t.iter().count(), 49 + 1, "49 live keys and the marker");
    let raw = db.raw_entries(&t).expect("raw");
    assert_eq!(
        (raw.puts, raw.deletes, raw.range_tombstones),
        (50, 0, 0),
        "removed values and their deletes are physically gone at the bottom"
    );
    assert_eq!(
        db.raw_entries(&u).expect("raw").puts,
        100,
        "the tree without a filter keeps everything"
    );
    assert_eq!(u.get(b"k000").expect("get").as_deref(), Some(&b"dead"[..]));
    assert!(db.stats().compaction_filter_removed >= 52);

    // Removing the filter stops it.
    db.remove_compaction_filter(&t);
    t.put(b"later", b"dead but kept").expect("put");
    db.compact_all().expect("compact");
    assert!(t.get(b"later").expect("get").is_some());
}

#[test]
fn snapshots_keep_reading_what_they_saw() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), opts()).expect("open");
    let t = db.tree("t").expect("tree");
    db.set_compaction_filter(&t, Arc::new(Dead));
    t.put(b"a", b"dead 1").expect("put");
    t.put(b"b", b"dead 1").expect("put");
    let snap = db.snapshot();
    t.put(b"a", b"dead 2").expect("put");
    db.compact_all().expect("compact");
    // The snapshot still reads both; the latest readers see a's newest version removed, and b's only
    // version, which the snapshot sees, untouched.
    assert_eq!(
        snap.get(&t, b"a").expect("get").as_deref(),
        Some(&b"dead 1"[..])
    );
    assert_eq!(
        snap.get(&t, b"b").expect("get").as_deref(),
        Some(&b"dead 1"[..])
    );
    assert_eq!(t.get(b"a").expect("get"), None);
    assert_eq!(t.get(b"b").expect("get").as_deref(), Some(&b"dead 1"[..]));
    drop(snap);
    db.compact_all().expect("compact");
    assert_eq!(t.get(b"b").expect("get"), None);
    assert_eq!(db.raw_entries(&t).expect("raw"), Default::default());
}

/// Pauses inside its first call until the test lets it go.
struct Pausing {
    reached: Mutex<Option<mpsc::Sender<()>>>,
    go: Mutex<mpsc::Receiver<()>>,
}

impl CompactionFilter for Pausing {
    fn filter(&self, _: &mut FilterContext<'_>, _: &[u8], _: &[u8]) -> Decision {
        if let Some(tx) = self.reached.lock().expect("lock").take() {
            tx.send(()).expect("send");
            self.go.lock().expect("lock").recv().expect("recv");
        }
        Decision::Remove
    }
}

#[test]
fn a_snapshot_taken_during_a_filtering_compaction_sees_no_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), opts()).expect("open");
    let t = db.tree("t").expect("tree");
    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    db.set_compaction_filter(
        &t,
        Arc::new(Pausing {
            reached: Mutex::new(Some(reached_tx)),
            go: Mutex::new(go_rx),
        }),
    );
    for k in [b"a", b"b", b"c"] {
        t.put(k, b"v").expect("put");
    }
    let compacting = {
        let db = db.clone();
        std::thread::spawn(move || db.compact_all())
    };
    reached.recv().expect("filter reached");
    let snap = db.snapshot();
    go.send(()).expect("go");
    compacting.join().expect("join").expect("compact");
    for k in [b"a", b"b", b"c"] {
        assert_eq!(snap.get(&t, k).expect("get").as_deref(), Some(&b"v"[..]));
    }
    assert_eq!(
        db.stats().compaction_filter_removed,
        0,
        "the filtered result was discarded and the compaction redone without the filter"
    );
    drop(snap);
    // With the snapshot gone the filter (now no longer pausing) removes everything.
    db.compact_all().expect("compact");
    assert_eq!(t.iter().count(), 0);
    assert_eq!(db.stats().compaction_filter_removed, 3);
}

#[test]
fn a_removed_value_hides_older_versions_in_deeper_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(
        dir.path(),
        Options {
            // Every level is over its target, so the picker pushes data all the way down.
            l0_compaction_trigger: 1,
            level1_target_bytes: 1,
            ..opts()
        },
    )
    .expect("open");
    let t = db.tree("t").expect("tree");
    db.set_compaction_filter(&t, Arc::new(Dead));
    t.put(b"k", b"old live").expect("put");
    t.put(b"other", b"live").expect("put");
    db.flush().expect("flush");
    while db.compact_once().expect("compact") {}
    let levels = db.stats().level_files;
    assert!(
        levels.iter().rposition(|&n| n > 0) > Some(1),
        "data went below L1: {levels:?}"
    );
    t.put(b"k", b"dead now").expect("put");
    db.flush().expect("flush");
    // L0 -> L1 is not bottommost: the removed value must become a delete hiding `old live` below.
    assert!(db.compact_once().expect("compact"));
    assert_eq!(db.stats().compaction_filter_removed, 1);
    assert_eq!(t.get(b"k").expect("get"), None);
    let raw = db.raw_entries(&t).expect("raw");
    assert_eq!((raw.puts, raw.deletes), (2, 1));
    while db.compact_once().expect("compact") {}
    db.compact_all().expect("compact");
    assert_eq!(t.get(b"k").expect("get"), None);
    let raw = db.raw_entries(&t).expect("raw");
    assert_eq!(
        (raw.puts, raw.deletes),
        (1, 0),
        "the delete met the old value at the bottom"
    );
}
