//! The keyspace answers a read of the record a command last read or wrote from memory, in that command or
//! a later one on the same thread (see `Keyspace::read_record`). These tests check that memory only ever
//! answers for the newest record: any other write, on this thread or another, to this key or another,
//! makes the next read go to storage, and one keyspace's record never answers for another's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use strata_kv::keyspace::{CommandTime, Entry};
use strata_kv::{Keyspace, ManualClock};

const T0: u64 = 1_700_000_000_000;

fn keyspace() -> (tempfile::TempDir, Keyspace) {
    let dir = tempfile::tempdir().unwrap();
    let db = strata_storage::Db::open(dir.path(), strata_storage::Options::default()).unwrap();
    let ks = Keyspace::open(db, 2, Arc::new(ManualClock::new(T0))).unwrap();
    (dir, ks)
}

fn put(ks: &Keyspace, db: usize, key: &[u8], value: &str) {
    ks.put(db, key, &Entry::string(value.to_owned().into()))
        .unwrap();
}

fn value(ks: &Keyspace, db: usize, key: &[u8]) -> Option<String> {
    ks.get(db, key)
        .unwrap()
        .map(|e| String::from_utf8(e.payload.to_vec()).unwrap())
}

/// Runs `write` on a thread of its own, to its end.
fn on_another_thread(write: impl FnOnce() + Send) {
    std::thread::scope(|s| s.spawn(write).join().unwrap());
}

#[test]
fn a_command_reads_back_each_record_it_writes() {
    let (_dir, ks) = keyspace();
    let _command = CommandTime::begin();
    assert_eq!(value(&ks, 0, b"k"), None);
    put(&ks, 0, b"k", "1");
    assert_eq!(value(&ks, 0, b"k").as_deref(), Some("1"));
    put(&ks, 0, b"k", "2");
    assert_eq!(value(&ks, 0, b"k").as_deref(), Some("2"));
    let mut with_ttl = Entry::string("3".into());
    with_ttl.expire_at_ms = T0 + 60_000;
    ks.put(0, b"k", &with_ttl).unwrap();
    let read = ks.get(0, b"k").unwrap().unwrap();
    assert_eq!(
        (&read.payload[..], read.expire_at_ms),
        (&b"3"[..], T0 + 60_000)
    );
}

#[test]
fn a_write_on_another_thread_voids_the_written_record() {
    let (_dir, ks) = keyspace();
    let _command = CommandTime::begin();
    put(&ks, 0, b"k", "mine");
    on_another_thread(|| put(&ks, 0, b"k", "theirs"));
    assert_eq!(value(&ks, 0, b"k").as_deref(), Some("theirs"));
}

#[test]
fn the_written_record_answers_only_for_its_own_database_and_key() {
    let (_dir, ks) = keyspace();
    put(&ks, 0, b"k", "db0");
    put(&ks, 0, b"other", "x");
    let _command = CommandTime::begin();
    // The newest write, so the seqno still matches it, but it is another database's record.
    put(&ks, 1, b"k", "db1");
    assert_eq!(value(&ks, 0, b"k").as_deref(), Some("db0"));
    put(&ks, 1, b"k", "db1 again");
    assert_eq!(value(&ks, 0, b"other").as_deref(), Some("x"));
    assert_eq!(value(&ks, 1, b"k").as_deref(), Some("db1 again"));
}

#[test]
fn other_kinds_of_write_after_a_put_are_read() {
    let (_dir, ks) = keyspace();
    let _command = CommandTime::begin();
    put(&ks, 0, b"k", "abc");
    ks.patch_string(0, b"k", [(1, &b"X"[..])]).unwrap();
    assert_eq!(value(&ks, 0, b"k").as_deref(), Some("aXc"));
    put(&ks, 0, b"k", "abc");
    assert!(ks.delete(0, b"k").unwrap());
    assert_eq!(value(&ks, 0, b"k"), None);
    assert!(!ks.delete(0, b"k").unwrap());
    put(&ks, 0, b"k", "again");
    assert_eq!(value(&ks, 0, b"k").as_deref(), Some("again"));
    assert!(ks.delete(0, b"k").unwrap());
    on_another_thread(|| put(&ks, 0, b"k", "theirs"));
    assert_eq!(value(&ks, 0, b"k").as_deref(), Some("theirs"));
}

#[test]
fn a_later_command_reads_the_record_until_anything_else_is_written() {
    let (_dir, ks) = keyspace();
    {
        let _command = CommandTime::begin();
        put(&ks, 0, b"k", "1");
    }
    {
        let _command = CommandTime::begin();
        assert_eq!(value(&ks, 0, b"k").as_deref(), Some("1"));
    }
    on_another_thread(|| put(&ks, 0, b"k", "2"));
    {
        let _command = CommandTime::begin();
        assert_eq!(value(&ks, 0, b"k").as_deref(), Some("2"));
    }
    // A write to another key between commands, on this thread, outside any command.
    put(&ks, 0, b"k", "3");
    put(&ks, 0, b"other", "x");
    on_another_thread(|| put(&ks, 0, b"k", "4"));
    put(&ks, 0, b"other", "y");
    let _command = CommandTime::begin();
    assert_eq!(value(&ks, 0, b"k").as_deref(), Some("4"));
}

#[test]
fn a_big_record_is_still_read_right_in_the_next_command() {
    let (_dir, ks) = keyspace();
    let big = "x".repeat(100 << 10);
    {
        let _command = CommandTime::begin();
        put(&ks, 0, b"k", &big);
    }
    let _command = CommandTime::begin();
    assert_eq!(value(&ks, 0, b"k").as_deref(), Some(big.as_str()));
}

#[test]
fn a_keyspace_never_answers_from_another_ones_record() {
    // Two keyspaces in turn, likely at the same address, each at the same seqno after the same number
    // of writes: the first one's remembered record must not answer for the second.
    {
        let (_dir, ks) = keyspace();
        let _command = CommandTime::begin();
        put(&ks, 0, b"k", "first");
    }
    let (_dir, ks) = keyspace();
    let _command = CommandTime::begin();
    put(&ks, 0, b"other", "x");
    assert_eq!(value(&ks, 0, b"k"), None);
}

#[test]
fn a_stream_write_keeps_its_metadata_remembered_only_when_nothing_came_between() {
    use strata_kv::keyspace::Kind;
    use strata_kv::keyspace::stream::StreamWrite;

    let (_dir, ks) = keyspace();
    let meta = |payload: &'static str| Entry {
        kind: Kind::Stream,
        expire_at_ms: 0,
        indexed_at_ms: 0,
        payload: payload.into(),
    };
    let payload = |ks: &Keyspace| ks.get(0, b"s").unwrap().map(|e| e.payload);
    let mut one_entry = StreamWrite::default();
    one_entry.ops.insert(b"e1".to_vec(), Some(b"v".to_vec()));
    {
        let _command = CommandTime::begin();
        ks.write_stream(0, b"s", Some(&meta("mine")), 7, &one_entry)
            .unwrap();
    }
    {
        // A write that leaves the metadata alone: still "mine", from memory.
        let _command = CommandTime::begin();
        ks.write_stream(0, b"s", None, 7, &one_entry).unwrap();
        assert_eq!(payload(&ks).as_deref(), Some(&b"mine"[..]));
    }
    {
        let _command = CommandTime::begin();
        assert_eq!(payload(&ks).as_deref(), Some(&b"mine"[..]));
        // Another thread rewrites the metadata, then this one writes elements only: its batch does not
        // follow on from the remembered record's seqno, so the next read goes to storage.
        on_another_thread(|| {
            ks.write_stream(0, b"s", Some(&meta("theirs")), 7, &StreamWrite::default())
                .unwrap()
        });
        ks.write_stream(0, b"s", None, 7, &one_entry).unwrap();
        assert_eq!(payload(&ks).as_deref(), Some(&b"theirs"[..]));
    }
}
