//! How many entries each consumer group, and each of its consumers, has pending — kept in memory.
//!
//! Redis answers these counts from the sizes of its in-memory pending lists. Stored in the group and
//! consumer records, they cost every XACK a read and two record writes besides the two pending records it
//! deletes (the group's count, the consumer's count): about a fifth of an XACK. Instead a group's counts are
//! worked out from its pending records the first time a command asks for them (XPENDING's summary,
//! XINFO), kept here, and moved by every committed change of the pending list after that. The `pel_count`
//! fields of the records are no longer maintained and never read.
//!
//! Counts here are exact: they change only after the write they mirror has committed, under the stream
//! key's lock, as every reader of them holds it. A group missing here is counted again from storage. A
//! deleted or replaced stream gets a new collection version, never reused, so its counts are merely dead
//! weight until the next clear.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;

/// Most groups remembered; past it the map starts again from empty (each is counted again when asked).
const MAX_GROUPS: usize = 1 << 16;

/// One group's pending counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Entries pending in the group.
    pub total: u64,
    /// Entries pending per consumer; a consumer with none may be missing.
    pub consumers: HashMap<Bytes, u64>,
}

impl Tally {
    /// The entries `consumer` has pending.
    pub fn of(&self, consumer: &[u8]) -> u64 {
        self.consumers.get(consumer).copied().unwrap_or(0)
    }
}

/// A change of a group's pending list: `consumer` gained (`+`) or lost (`-`) `delta` entries, and the
/// group's total moved by `total`.
#[derive(Debug, Clone)]
pub(crate) struct PelChange {
    pub group: Bytes,
    pub consumer: Bytes,
    pub delta: i64,
    pub total: i64,
}

/// The counts of the groups counted so far, by stream version and group name.
#[derive(Debug, Default)]
pub struct PelCounts {
    inner: Mutex<HashMap<(u64, Bytes), Tally>>,
}

impl PelCounts {
    /// The counts of `group` of the stream with collection version `version`, if known.
    pub(crate) fn get(&self, version: u64, group: &[u8]) -> Option<Tally> {
        self.inner
            .lock()
            .get(&(version, Bytes::copy_from_slice(group)))
            .cloned()
    }

    /// How many entries `group` of stream `version` has pending, if known (no copy of the per-consumer
    /// counts).
    pub(crate) fn total(&self, version: u64, group: &[u8]) -> Option<u64> {
        self.inner
            .lock()
            .get(&(version, Bytes::copy_from_slice(group)))
            .map(|t| t.total)
    }

    /// Remembers the counts of a group just counted from its pending records, or just created (none).
    pub(crate) fn insert(&self, version: u64, group: &[u8], tally: Tally) {
        let mut inner = self.inner.lock();
        if inner.len() >= MAX_GROUPS {
            inner.clear();
        }
        inner.insert((version, Bytes::copy_from_slice(group)), tally);
    }

    /// Applies committed changes to the groups known here (the others are counted when asked).
    pub(crate) fn apply(&self, version: u64, changes: &[PelChange]) {
        if changes.is_empty() {
            return;
        }
        let mut inner = self.inner.lock();
        for c in changes {
            let Some(t) = inner.get_mut(&(version, c.group.clone())) else {
                continue;
            };
            t.total = t.total.saturating_add_signed(c.total);
            let n = t.consumers.entry(c.consumer.clone()).or_default();
            *n = n.saturating_add_signed(c.delta);
            if *n == 0 {
                t.consumers.remove(&c.consumer);
            }
        }
    }

    /// Forgets one group (XGROUP DESTROY drops its pending list with a range delete).
    pub(crate) fn forget(&self, version: u64, group: &[u8]) {
        self.inner
            .lock()
            .remove(&(version, Bytes::copy_from_slice(group)));
    }

    /// Forgets everything (FLUSHDB, FLUSHALL, SWAPDB: whole databases changed at once).
    pub(crate) fn clear(&self) {
        self.inner.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(group: &str, consumer: &str, delta: i64, total: i64) -> PelChange {
        PelChange {
            group: Bytes::copy_from_slice(group.as_bytes()),
            consumer: Bytes::copy_from_slice(consumer.as_bytes()),
            delta,
            total,
        }
    }

    #[test]
    fn changes_move_known_groups_only() {
        let counts = PelCounts::default();
        let t = Tally {
            total: 2,
            consumers: HashMap::from([(Bytes::from_static(b"alice"), 2)]),
        };
        counts.insert(7, b"g", t);
        counts.apply(
            7,
            &[
                change("g", "alice", -1, -1),
                change("g", "bob", 1, 1),
                change("g", "alice", -1, 0),
                change("g", "bob", 1, 0),
                change("other", "bob", 1, 1),
            ],
        );
        let t = counts.get(7, b"g").expect("known");
        assert_eq!(t.total, 2);
        assert_eq!((t.of(b"alice"), t.of(b"bob")), (0, 2));
        assert!(!t.consumers.contains_key(&b"alice"[..]));
        assert_eq!(counts.get(7, b"other"), None);
        assert_eq!(counts.get(8, b"g"), None);
        counts.forget(7, b"g");
        assert_eq!(counts.get(7, b"g"), None);
    }
}
