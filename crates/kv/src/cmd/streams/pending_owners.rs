//! Owners of pending entries, remembered as they are written.
//!
//! XACK has to know whether an ID is in the group's pending list and which consumer owns it (to drop
//! the consumer's own record and count). That is a point read of the pending record, and a group with
//! many entries in flight has most of its pending records in SSTables by the time they are acknowledged:
//! with 1M pending, reading them was a third of XACK's time. Redis keeps the pending list in memory; so
//! do we, as a cache: every committed write of a pending record also records its owner here, every
//! committed delete marks it gone (known not pending), and XACK asks here first.
//!
//! An owner here is always right: the cache changes only after the write that it mirrors has been
//! committed, under the stream key's lock like every reader. An ID missing here says nothing by itself
//! (the cache starts empty, and is cleared when full), so the reader falls back to storage — unless the
//! group's exact pending count ([`super::PelCounts`], known from XGROUP CREATE on) equals the entries
//! remembered as pending: then they are all of them, and a missing ID is not pending. Writes that drop a
//! range of pending records (XGROUP DESTROY) forget the stream's groups; a deleted or replaced stream gets
//! a new collection version, never reused, so its old entries are merely dead weight until the next clear.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;

use super::{Id, PENDING};
use crate::keyspace::stream::StreamWrite;

/// Most pending entries remembered, over every stream and group (~20 bytes each: ~40 MiB). Past it the
/// cache starts again from empty.
const MAX_ENTRIES: usize = 1 << 21;

/// The owners of pending entries, by stream version and group.
#[derive(Debug, Default)]
pub struct PendingOwners {
    inner: Mutex<Owners>,
}

#[derive(Debug, Default)]
struct Owners {
    by_version: HashMap<u64, HashMap<Bytes, GroupOwners>>,
    entries: usize,
}

/// One group's remembered pending entries: IDs in ascending order with their owners. Entries arrive in
/// ID order (a group reads new entries in order), so remembering one is a push, with no hashing and no
/// random memory access; an entry written out of order that is not already here is simply not
/// remembered. A removed entry stays as [`GONE`] (known not pending) until removals make up half the list.
#[derive(Debug, Default)]
struct GroupOwners {
    names: Vec<Bytes>,
    index: HashMap<Bytes, u32>,
    ids: Vec<Id>,
    owners: Vec<u32>,
    gone: usize,
}

/// The owner of an entry that was pending and is no longer.
const GONE: u32 = u32::MAX;

impl GroupOwners {
    fn name_index(&mut self, consumer: &[u8]) -> u32 {
        if let Some(&i) = self.index.get(consumer) {
            return i;
        }
        let name = Bytes::copy_from_slice(consumer);
        let i = self.names.len() as u32;
        self.names.push(name.clone());
        self.index.insert(name, i);
        i
    }

    /// Where `id` is in the list, or where it would go (`slice::binary_search`'s answer). IDs are
    /// mostly times, spread evenly enough that a guess from the millisecond part lands near the answer:
    /// from there the search gallops outwards and then bisects the bracket it found, so a lookup in a
    /// long list touches a few cache lines where a plain bisection touched twenty, and an uneven list
    /// costs at most about twice a bisection.
    fn find(&self, id: Id) -> Result<usize, usize> {
        let ids = &self.ids;
        let n = ids.len();
        if n < 64 {
            return ids.binary_search(&id);
        }
        let (first, last) = (ids[0], ids[n - 1]);
        if id <= first {
            return if id == first { Ok(0) } else { Err(0) };
        }
        if id > last {
            return Err(n);
        }
        let span = u128::from(last.ms - first.ms).max(1);
        let offset = u128::from(id.ms.saturating_sub(first.ms));
        let guess = ((offset * (n as u128 - 1)) / span).min(n as u128 - 1) as usize;
        // The answer (the first index holding an ID >= `id`) lies in `[lo, hi]`; ids[0] < id <= ids[n-1].
        let (mut lo, mut hi);
        let mut step = 1;
        if ids[guess] < id {
            lo = guess + 1;
            loop {
                let probe = (lo - 1 + step).min(n - 1);
                if ids[probe] >= id {
                    hi = probe;
                    break;
                }
                lo = probe + 1;
                step *= 2;
            }
        } else {
            hi = guess;
            loop {
                let probe = hi.saturating_sub(step);
                if ids[probe] < id {
                    lo = probe + 1;
                    break;
                }
                hi = probe;
                step *= 2;
            }
        }
        match ids[lo..=hi].binary_search(&id) {
            Ok(i) => Ok(lo + i),
            Err(i) => Err(lo + i),
        }
    }

    /// Records `id` as owned by `consumer`; returns how many entries the list grew by.
    fn set(&mut self, id: Id, consumer: &[u8]) -> usize {
        let owner = self.name_index(consumer);
        if self.ids.last().is_none_or(|&last| last < id) {
            self.ids.push(id);
            self.owners.push(owner);
            return 1;
        }
        if let Ok(i) = self.find(id) {
            if self.owners[i] == GONE {
                self.gone -= 1;
            }
            self.owners[i] = owner;
        }
        0
    }

    /// Records that `id` is not pending; returns how many entries the list shrank by.
    fn remove(&mut self, id: Id) -> usize {
        let Ok(i) = self.find(id) else {
            return 0;
        };
        if self.owners[i] != GONE {
            self.owners[i] = GONE;
            self.gone += 1;
        }
        if self.gone > 64 && self.gone * 2 > self.ids.len() {
            let before = self.ids.len();
            let mut keep = self.owners.iter().map(|&o| o != GONE);
            self.ids.retain(|_| keep.next().unwrap_or(false));
            self.owners.retain(|&o| o != GONE);
            self.gone = 0;
            return before - self.ids.len();
        }
        0
    }
}

/// `group` and ID of a pending record's element key (`PENDING | len u32 | group | id`).
fn parse_pending(element: &[u8]) -> Option<(&[u8], Id)> {
    let rest = element.strip_prefix(&[PENDING])?;
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let group = rest.get(4..4 + len)?;
    let id = rest.get(4 + len..)?;
    if id.len() != 16 {
        return None;
    }
    Some((group, Id::from_bytes(id)?))
}

impl PendingOwners {
    /// Whether entry `id` of `group` in stream `version` is pending and who owns it, if remembered:
    /// `Some(None)` is known not pending, `None` unknown. `pending` gives the group's exact pending count
    /// when known ([`super::PelCounts`]; asked only for an ID not remembered): when the entries remembered
    /// as pending are that many, they are all of them (each is right), so an ID not among them is not
    /// pending either — an entry acknowledged and since dropped from the list, or one never delivered.
    pub(super) fn owner(
        &self,
        version: u64,
        group: &[u8],
        id: Id,
        pending: impl FnOnce() -> Option<u64>,
    ) -> Option<Option<Bytes>> {
        let remembered = {
            let inner = self.inner.lock();
            match inner
                .by_version
                .get(&version)
                .and_then(|groups| groups.get(group))
            {
                None => 0,
                Some(g) => match g.find(id) {
                    Ok(i) => {
                        return Some(match g.owners[i] {
                            GONE => None,
                            o => Some(g.names[o as usize].clone()),
                        });
                    }
                    Err(_) => g.ids.len() - g.gone,
                },
            }
        };
        (pending() == Some(remembered as u64)).then_some(None)
    }

    /// Mirrors `write`, just committed to stream `version`: pending records stored are remembered with
    /// their owner, deleted ones forgotten.
    pub(super) fn apply(&self, version: u64, write: &StreamWrite) {
        let Some((ranged, records)) = write.changes_to(PENDING) else {
            return;
        };
        let mut inner = self.inner.lock();
        if ranged {
            inner.forget(version);
        }
        for (element, value) in records {
            let Some((group, id)) = parse_pending(element) else {
                continue;
            };
            match value {
                Some(nack) => {
                    if inner.entries >= MAX_ENTRIES {
                        inner.by_version.clear();
                        inner.entries = 0;
                    }
                    let groups = inner.by_version.entry(version).or_default();
                    let g = match groups.get_mut(group) {
                        Some(g) => g,
                        None => groups.entry(Bytes::copy_from_slice(group)).or_default(),
                    };
                    let added = g.set(id, nack.get(16..).unwrap_or_default());
                    inner.entries += added;
                }
                None => {
                    let dropped = inner
                        .by_version
                        .get_mut(&version)
                        .and_then(|groups| groups.get_mut(group))
                        .map_or(0, |g| g.remove(id));
                    inner.entries -= dropped;
                }
            }
        }
    }

    /// Forgets every stream (FLUSHDB, FLUSHALL).
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.by_version.clear();
        inner.entries = 0;
    }
}

impl Owners {
    fn forget(&mut self, version: u64) {
        if let Some(groups) = self.by_version.remove(&version) {
            self.entries -= groups.values().map(|g| g.ids.len()).sum::<usize>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(group: &[u8], id: Id) -> Vec<u8> {
        super::super::pending_key(group, id)
    }

    fn nack(consumer: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 16];
        v.extend_from_slice(consumer);
        v
    }

    #[test]
    fn mirrors_puts_deletes_and_ranges() {
        let owners = PendingOwners::default();
        let id = |ms| Id { ms, seq: 1 };
        let mut w = StreamWrite::default();
        w.ops.insert(pending(b"g", id(1)), Some(nack(b"alice")));
        w.ops.insert(pending(b"g", id(2)), Some(nack(b"bob")));
        w.ops.insert(pending(b"h", id(1)), Some(nack(b"carol")));
        w.ops.insert(super::super::entry_key(id(9)), Some(vec![1]));
        owners.apply(7, &w);
        let owner = |v, g: &[u8], i| {
            owners
                .owner(v, g, i, || None)
                .map(|o| o.map(|b| b.to_vec()))
        };
        let known = |name: &[u8]| Some(Some(name.to_vec()));
        assert_eq!(owner(7, b"g", id(1)), known(b"alice"));
        assert_eq!(owner(7, b"g", id(2)), known(b"bob"));
        assert_eq!(owner(7, b"h", id(1)), known(b"carol"));
        assert_eq!(owners.owner(8, b"g", id(1), || None), None);
        assert_eq!(owners.owner(7, b"g", id(9), || None), None);

        let mut w = StreamWrite::default();
        w.ops.insert(pending(b"g", id(1)), None);
        w.ops.insert(pending(b"g", id(2)), Some(nack(b"dave")));
        owners.apply(7, &w);
        assert_eq!(owner(7, b"g", id(1)), Some(None), "known not pending");
        assert_eq!(owner(7, b"g", id(2)), known(b"dave"));
        assert_eq!(owners.inner.lock().entries, 3);
        // An entry written below the list's last ID that it does not hold is not remembered; one it
        // holds as removed comes back.
        let mut w = StreamWrite::default();
        w.ops
            .insert(pending(b"g", Id { ms: 1, seq: 0 }), Some(nack(b"erin")));
        w.ops.insert(pending(b"g", id(1)), Some(nack(b"frank")));
        owners.apply(7, &w);
        assert_eq!(owner(7, b"g", Id { ms: 1, seq: 0 }), None);
        assert_eq!(owner(7, b"g", id(1)), known(b"frank"));

        // A trim of entries leaves the owners; a range over pending records forgets the stream.
        let mut w = StreamWrite::default();
        w.ranges.push((vec![b'e'], vec![b'f']));
        owners.apply(7, &w);
        assert_eq!(owner(7, b"h", id(1)), known(b"carol"));
        let mut w = StreamWrite::default();
        let prefix = super::super::pending_prefix(b"h");
        w.ranges
            .push((prefix.clone(), super::super::prefix_end(&prefix)));
        owners.apply(7, &w);
        assert_eq!(owners.owner(7, b"g", id(2), || None), None);
        assert_eq!(owners.owner(7, b"h", id(1), || None), None);
        assert_eq!(owners.inner.lock().entries, 0);
    }

    #[test]
    fn a_list_as_long_as_the_pending_count_is_all_of_it() {
        let owners = PendingOwners::default();
        let id = |ms| Id { ms, seq: 1 };
        let mut w = StreamWrite::default();
        for ms in 1..=200 {
            w.ops.insert(pending(b"g", id(ms)), Some(nack(b"alice")));
        }
        owners.apply(7, &w);
        // Never delivered: not pending only when the count vouches for the list.
        assert_eq!(owners.owner(7, b"g", id(500), || Some(200)), Some(None));
        assert_eq!(owners.owner(7, b"g", id(500), || Some(201)), None);
        assert_eq!(owners.owner(7, b"g", id(500), || None), None);
        // A group with nothing remembered is complete only with nothing pending.
        assert_eq!(owners.owner(7, b"other", id(1), || Some(0)), Some(None));
        assert_eq!(owners.owner(7, b"other", id(1), || Some(1)), None);
        assert_eq!(owners.owner(8, b"g", id(1), || Some(0)), Some(None));

        // Acknowledged entries drop out of the list once they are most of it; the count still vouches.
        let mut w = StreamWrite::default();
        for ms in 1..=150 {
            w.ops.insert(pending(b"g", id(ms)), None);
        }
        owners.apply(7, &w);
        let entries = owners.inner.lock().entries;
        assert!(entries < 200, "removals never compacted: {entries}");
        assert_eq!(owners.owner(7, b"g", id(10), || Some(50)), Some(None));
        assert_eq!(owners.owner(7, b"g", id(10), || None), None);
        assert_eq!(
            owners.owner(7, b"g", id(160), || Some(50)),
            Some(Some(Bytes::from_static(b"alice")))
        );

        // An entry written out of order is not remembered, and then the count is one more than the list.
        let mut w = StreamWrite::default();
        w.ops.insert(pending(b"g", id(10)), Some(nack(b"bob")));
        owners.apply(7, &w);
        assert_eq!(owners.owner(7, b"g", id(10), || Some(51)), None);
        assert_eq!(owners.owner(7, b"g", id(11), || Some(51)), None);
    }

    #[test]
    fn find_agrees_with_bisection() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut g = GroupOwners::default();
            let n = (next() % 3000) as usize;
            let mut ms = next() % 1000;
            for _ in 0..n {
                // Even steps, bursts within one millisecond, and rare long gaps.
                match (next() % 10, round % 3) {
                    (0, _) => ms += next() % 1_000_000,
                    (1..=4, 0) => {}
                    _ => ms += 1 + next() % 3,
                }
                let seq = if g.ids.last().is_some_and(|l| l.ms == ms) {
                    g.ids[g.ids.len() - 1].seq + 1 + next() % 2
                } else {
                    next() % 3
                };
                g.ids.push(Id { ms, seq });
            }
            for _ in 0..300 {
                let probe = match (next() % 3, g.ids.is_empty()) {
                    (0, false) => g.ids[(next() as usize) % g.ids.len()],
                    (1, false) => {
                        let at = g.ids[(next() as usize) % g.ids.len()];
                        Id {
                            ms: at.ms,
                            seq: at.seq.wrapping_add(1),
                        }
                    }
                    _ => Id {
                        ms: next() % (ms + 10),
                        seq: next() % 4,
                    },
                };
                assert_eq!(
                    g.find(probe),
                    g.ids.binary_search(&probe),
                    "{probe:?} in {n}"
                );
            }
        }
    }

    #[test]
    fn removals_compact_the_list() {
        let owners = PendingOwners::default();
        let id = |ms| Id { ms, seq: 0 };
        let name = |ms: u64| -> &'static [u8] { if ms.is_multiple_of(2) { b"a" } else { b"b" } };
        let mut w = StreamWrite::default();
        for ms in 0..1000 {
            w.ops.insert(pending(b"g", id(ms)), Some(nack(name(ms))));
        }
        owners.apply(1, &w);
        let mut w = StreamWrite::default();
        for ms in 0..600 {
            w.ops.insert(pending(b"g", id(ms)), None);
        }
        owners.apply(1, &w);
        let entries = owners.inner.lock().entries;
        assert!(entries < 1000, "removals never compacted: {entries}");
        for ms in 0..1000 {
            let o = owners.owner(1, b"g", id(ms), || None);
            if ms >= 600 {
                assert_eq!(o, Some(Some(Bytes::from_static(name(ms)))));
            } else {
                assert!(!matches!(o, Some(Some(_))), "{ms} still owned");
            }
        }
    }
}
