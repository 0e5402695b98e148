//! Consumer-group records, remembered as they are read and written.
//!
//! Nearly every group command (XACK, XREADGROUP, XPENDING, XCLAIM, ...) starts by reading its group's
//! record, to answer `-NOGROUP` when there is none. The record changes far less often than it is read
//! (XACK never writes it), so once a flush has moved it into an SSTable every XACK paid a point read
//! through the memtables and the levels: ~6% of XACK's time under `strata-bench kv`. Redis keeps its
//! groups in memory; so do we, as a cache in front of the records.
//!
//! A record here is always right: it changes only after the write it mirrors has been committed, and it is
//! filled from storage by a reader; both happen under the stream key's lock. An absent entry says nothing
//! (the cache starts empty and is cleared when full), so the reader falls back to storage. Only records
//! that exist are remembered: a group that is not there is asked of storage every time, so no path that
//! creates a group outside [`super::Stream::commit`] could leave a stale "no such group" behind. A write
//! that drops a range of records touching the groups forgets the stream; a deleted or replaced stream gets
//! a new collection version, never reused, so its old records are merely dead weight until the next clear.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;

use super::GROUP;
use crate::keyspace::stream::StreamWrite;

/// Most records remembered, over every stream. Past it the cache starts again from empty.
const MAX_RECORDS: usize = 1 << 16;

/// The group records of streams, by stream version and group name.
#[derive(Debug, Default)]
pub struct GroupRecords {
    inner: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    by_version: HashMap<u64, HashMap<Bytes, Bytes>>,
    records: usize,
}

impl GroupRecords {
    /// The record of `group` in stream `version`, if remembered.
    pub(super) fn get(&self, version: u64, group: &[u8]) -> Option<Bytes> {
        self.inner
            .lock()
            .by_version
            .get(&version)
            .and_then(|groups| groups.get(group))
            .cloned()
    }

    /// Remembers `record`, just read from storage, as the record of `group` in stream `version`.
    pub(super) fn remember(&self, version: u64, group: &[u8], record: Bytes) {
        self.inner.lock().set(version, group, record);
    }

    /// Mirrors the committed `write` of stream `version`.
    pub(super) fn apply(&self, version: u64, write: &StreamWrite) {
        let Some((ranged, records)) = write.changes_to(GROUP) else {
            return;
        };
        let mut inner = self.inner.lock();
        if ranged {
            inner.forget(version);
        }
        for (element, value) in records {
            let group = &element[1..];
            match value {
                Some(record) => inner.set(version, group, Bytes::copy_from_slice(record)),
                None => {
                    if let Some(groups) = inner.by_version.get_mut(&version)
                        && groups.remove(group).is_some()
                    {
                        inner.records -= 1;
                    }
                }
            }
        }
    }

    /// Forgets everything (FLUSHDB, FLUSHALL).
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.by_version.clear();
        inner.records = 0;
    }
}

impl Records {
    fn set(&mut self, version: u64, group: &[u8], record: Bytes) {
        if self.records >= MAX_RECORDS {
            self.by_version.clear();
            self.records = 0;
        }
        let groups = self.by_version.entry(version).or_default();
        if let Some(old) = groups.get_mut(group) {
            *old = record;
        } else {
            groups.insert(Bytes::copy_from_slice(group), record);
            self.records += 1;
        }
    }

    fn forget(&mut self, version: u64) {
        if let Some(groups) = self.by_version.remove(&version) {
            self.records -= groups.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &[u8]) -> Vec<u8> {
        super::super::group_key(name)
    }

    #[test]
    fn mirrors_puts_deletes_and_ranges() {
        let records = GroupRecords::default();
        assert_eq!(records.get(7, b"g"), None);
        records.remember(7, b"g", Bytes::from_static(b"one"));
        assert_eq!(records.get(7, b"g").as_deref(), Some(&b"one"[..]));
        // Another stream version is another stream.
        assert_eq!(records.get(8, b"g"), None);

        let mut w = StreamWrite::default();
        w.ops.insert(group(b"g"), Some(b"two".to_vec()));
        w.ops.insert(group(b"h"), Some(b"three".to_vec()));
        w.ops.insert(vec![b'e', 1, 2], Some(vec![1]));
        records.apply(7, &w);
        assert_eq!(records.get(7, b"g").as_deref(), Some(&b"two"[..]));
        assert_eq!(records.get(7, b"h").as_deref(), Some(&b"three"[..]));

        let mut w = StreamWrite::default();
        w.ops.insert(group(b"g"), None);
        records.apply(7, &w);
        assert_eq!(records.get(7, b"g"), None);
        assert_eq!(records.get(7, b"h").as_deref(), Some(&b"three"[..]));

        // A range over other records leaves the groups; one reaching them forgets the stream.
        let mut w = StreamWrite::default();
        w.ranges.push((vec![b'p'], vec![b'q']));
        records.apply(7, &w);
        assert_eq!(records.get(7, b"h").as_deref(), Some(&b"three"[..]));
        let mut w = StreamWrite::default();
        w.ranges.push((vec![b'c'], Vec::new()));
        records.apply(7, &w);
        assert_eq!(records.get(7, b"h"), None);
        assert_eq!(records.inner.lock().records, 0);

        records.remember(9, b"x", Bytes::from_static(b"r"));
        records.clear();
        assert_eq!(records.get(9, b"x"), None);
    }
}
