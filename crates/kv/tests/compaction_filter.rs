//! Compaction reclaims expired keys and dead collection elements on its own (the keyspace's compaction
//! filter), judging expiry by the keyspace's injected clock, while live data and snapshots stay intact
//! and expired keys still get their `expired` event and count from the active cycle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use strata_kv::keyspace::{CollectionHeader, Entry, Kind};
use strata_kv::{Keyspace, ManualClock};
use strata_storage::{Db, FsyncPolicy, Options, RawEntries, Tree};

const T0: u64 = 1_700_000_000_000;

fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> Keyspace {
    let options = Options {
        fsync: FsyncPolicy::No,
        // Only the test compacts, so what is reclaimed when is deterministic.
        background_compaction: false,
        ..Options::default()
    };
    Keyspace::open(Db::open(dir, options).unwrap(), 2, clock).unwrap()
}

fn string(value: &'static str, at: u64) -> Entry {
    Entry {
        kind: Kind::String,
        expire_at_ms: at,
        indexed_at_ms: 0,
        payload: Bytes::from_static(value.as_bytes()),
    }
}

/// Creates the set `key` with `n` members, expiring at `at` (0 = never), as SADD and EXPIRE would.
fn set(ks: &Keyspace, key: &str, n: usize, at: u64) {
    let header = CollectionHeader {
        version: ks.new_version(),
        size: n as u64,
    };
    let mut entry = Entry {
        kind: Kind::Set,
        expire_at_ms: 0,
        indexed_at_ms: 0,
        payload: header.to_payload(),
    };
    let members: Vec<Vec<u8>> = (0..n).map(|i| format!("member{i}").into_bytes()).collect();
    let puts: Vec<(&[u8], &[u8])> = members.iter().map(|m| (m.as_slice(), &b""[..])).collect();
    ks.write_collection(0, key.as_bytes(), &entry, header, &puts, &[])
        .unwrap();
    if at != 0 {
        entry.expire_at_ms = at;
        ks.put(0, key.as_bytes(), &entry).unwrap();
    }
}

fn tree(ks: &Keyspace) -> Tree {
    ks.storage().tree("kv0").unwrap()
}

/// Visible records of database 0 whose storage key starts with `prefix`.
fn visible(ks: &Keyspace, prefix: &[u8]) -> usize {
    tree(ks).prefix(prefix).count()
}

#[test]
fn compaction_reclaims_expired_keys_and_dead_elements() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let ks = open(dir.path(), clock.clone());
    for i in 0..100 {
        ks.put(0, format!("short{i}").as_bytes(), &string("v", T0 + 1_000))
            .unwrap();
    }
    for i in 0..50 {
        ks.put(0, format!("plain{i}").as_bytes(), &string("v", 0))
            .unwrap();
    }
    ks.put(0, b"later", &string("v", T0 + 3_600_000)).unwrap();
    set(&ks, "big", 2_000, 0);
    set(&ks, "expiring", 300, T0 + 1_000);
    set(&ks, "keep", 10, 0);
    set(&ks, "overwritten", 20, 0);
    ks.put(0, b"overwritten", &string("now a string", 0))
        .unwrap();
    assert!(ks.delete(0, b"big").unwrap());
    // Everything is on disk, most of it dead or about to be.
    ks.storage().flush().unwrap();
    clock.advance_ms(2_000);
    ks.storage().compact_all().unwrap();

    // Metadata: 50 plain keys, `later`, `keep` and `overwritten`; elements: only `keep`'s. The expiry
    // index still holds the 101 expired keys' entries (the cycle owes them their events) and `later`'s.
    assert_eq!(visible(&ks, b"m"), 53);
    assert_eq!(visible(&ks, b"s"), 10);
    assert_eq!(visible(&ks, b"x"), 102);
    let raw = ks.storage().raw_entries(&tree(&ks)).unwrap();
    assert_eq!(
        raw,
        RawEntries {
            puts: 53 + 10 + 102,
            deletes: 0,
            range_tombstones: 0,
        },
        "nothing dead is stored any more"
    );
    assert!(ks.storage().stats().compaction_filter_removed >= 101 + 300);

    // The active cycle still reports every expired key, whose records compaction already took.
    let mut events = Vec::new();
    let n = ks
        .expire_cycle_with(clock_now(&clock), 1_000, |db, key| {
            events.push((db, key.to_vec()))
        })
        .unwrap();
    assert_eq!(n, 101);
    assert_eq!(ks.expired_keys(), 101);
    assert!(events.contains(&(0, b"short7".to_vec())));
    assert!(events.contains(&(0, b"expiring".to_vec())));
    ks.storage().compact_all().unwrap();
    assert_eq!(
        ks.storage().raw_entries(&tree(&ks)).unwrap(),
        RawEntries {
            puts: 53 + 10 + 1,
            deletes: 0,
            range_tombstones: 0,
        }
    );

    // Live data is untouched.
    assert!(ks.get(0, b"plain3").unwrap().is_some());
    assert!(ks.get(0, b"later").unwrap().is_some());
    let (entry, header) = ks.get_collection(0, b"keep", Kind::Set).unwrap().unwrap();
    assert_eq!(entry.kind, Kind::Set);
    assert_eq!(ks.elements(0, b"keep", header.version).unwrap().len(), 10);
    assert_eq!(
        ks.get(0, b"overwritten").unwrap().unwrap().payload,
        Bytes::from_static(b"now a string")
    );
}

fn clock_now(clock: &ManualClock) -> u64 {
    strata_kv::Clock::now_ms(clock)
}

#[test]
fn a_snapshot_keeps_seeing_expired_and_deleted_data_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let ks = open(dir.path(), clock.clone());
    ks.put(0, b"ttl", &string("v", T0 + 1_000)).unwrap();
    set(&ks, "coll", 5, T0 + 1_000);
    set(&ks, "deleted", 7, 0);
    ks.put(0, b"live", &string("v", 0)).unwrap();
    let snap = ks.storage().snapshot();
    ks.delete(0, b"deleted").unwrap();
    clock.advance_ms(2_000);
    ks.storage().compact_all().unwrap();

    let t = tree(&ks);
    assert!(snap.get(&t, b"mttl").unwrap().is_some());
    assert!(snap.get(&t, b"mcoll").unwrap().is_some());
    assert_eq!(snap.prefix(&t, b"s").count(), 5 + 7);
    // For the latest readers the expired keys are gone either way, and `deleted` really is.
    assert!(ks.get(0, b"ttl").unwrap().is_none());
    assert!(ks.get(0, b"deleted").unwrap().is_none());
    assert!(ks.get(0, b"live").unwrap().is_some());

    drop(snap);
    ks.storage().compact_all().unwrap();
    assert_eq!(visible(&ks, b"m"), 1, "only `live` is left");
    assert_eq!(visible(&ks, b"s"), 0);
    let raw = ks.storage().raw_entries(&t).unwrap();
    assert_eq!((raw.deletes, raw.range_tombstones), (0, 0));
    assert_eq!(
        raw.puts,
        1 + 2,
        "`live` and the two expired keys' index entries"
    );
}

#[test]
fn stale_index_entries_go_and_the_clock_decides_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let ks = open(dir.path(), clock.clone());
    ks.put(0, b"again", &string("v", T0 + 1_000)).unwrap();
    ks.put(0, b"edge", &string("v", T0 + 2_000)).unwrap();
    clock.advance_ms(2_000);
    // `edge` is alive through its deadline's millisecond (Redis's now > when): compaction keeps it.
    ks.storage().compact_all().unwrap();
    assert!(ks.get(0, b"edge").unwrap().is_some());
    assert_eq!(visible(&ks, b"medge"), 1);
    assert_eq!(visible(&ks, b"magain"), 0, "reclaimed by compaction");
    // Re-created with a later deadline: the old index entry now names a key with another deadline.
    ks.put(0, b"again", &string("w", T0 + 60_000)).unwrap();
    assert_eq!(visible(&ks, b"x"), 3);
    ks.storage().compact_all().unwrap();
    let index: Vec<Bytes> = tree(&ks).prefix(b"x").map(|item| item.unwrap().0).collect();
    assert_eq!(index.len(), 2, "the stale entry of `again` went: {index:?}");
    assert!(
        index
            .iter()
            .all(|k| k.ends_with(b"edge") || k.ends_with(b"again"))
    );
    clock.advance_ms(1);
    ks.storage().compact_all().unwrap();
    assert!(ks.get(0, b"edge").unwrap().is_none());
    assert_eq!(visible(&ks, b"medge"), 0);
    assert_eq!(
        ks.get(0, b"again").unwrap().unwrap().payload,
        Bytes::from_static(b"w")
    );
}
