//! Entries read ahead for consumer groups.
//!
//! A consumer group reads a stream's new entries in order, a few per XREADGROUP, and each read used to
//! seek every memtable and SSTable for the entry after the group's last ID (~30% of an XREADGROUP with
//! COUNT 1). Instead, a read that asks for fewer than [`READ_AHEAD`] entries fetches that many, and the
//! ones it does not deliver wait here for the group's next reads, which then take them from memory.
//!
//! A run of entries belongs to one stream (its collection version) and one group, and holds every entry
//! whose ID lies within its bounds. Entries never change once added and new ones always get IDs above
//! the stream's last ID, hence above every run, so a run stays right until an entry is removed: XDEL,
//! trims and XSETID drop the stream's runs (`ReadAhead::forget`), under the key's lock like every read
//! of a run. A version is never reused (COPY and a recreated key get fresh ones; RENAME, MOVE and SWAPDB
//! keep the same entries under it), so nothing else can make a run wrong.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use parking_lot::Mutex;

use super::Id;

/// Entries one read fetches for a group when it asks for fewer.
pub(super) const READ_AHEAD: usize = 128;
/// Most value bytes a run keeps: streams of big entries read ahead fewer of them.
pub(super) const READ_AHEAD_BYTES: usize = 64 << 10;
/// Most runs kept, so at most 64 MiB of entries in all; past it every run is dropped.
const MAX_RUNS: usize = 1024;

/// The runs of entries read ahead, by stream version and group.
#[derive(Debug, Default)]
pub struct ReadAhead {
    inner: Mutex<Runs>,
}

#[derive(Debug, Default)]
struct Runs {
    by_version: HashMap<u64, HashMap<Bytes, Run>>,
    count: usize,
}

/// Consecutive entries of one stream, for one group.
#[derive(Debug)]
struct Run {
    /// Every entry with an ID in `[from, to]` is in `entries`, in order.
    from: Id,
    to: Id,
    entries: VecDeque<(Id, Bytes)>,
}

impl Runs {
    fn remove(&mut self, version: u64, group: &[u8]) {
        if let Some(groups) = self.by_version.get_mut(&version)
            && groups.remove(group).is_some()
        {
            self.count -= 1;
            if groups.is_empty() {
                self.by_version.remove(&version);
            }
        }
    }
}

impl ReadAhead {
    /// `group`'s next `count` (> 0) entries from `start` on in stream `version`, whose last ID is
    /// `last_id`, when its run holds the answer: exactly `count` entries, or fewer when the stream has
    /// no more. The entries handed out leave the run. `None`: read the stream.
    pub(super) fn take(
        &self,
        version: u64,
        group: &[u8],
        start: Id,
        count: usize,
        last_id: Id,
    ) -> Option<Vec<(Id, Bytes)>> {
        let mut inner = self.inner.lock();
        let (out, spent) = {
            let run = inner.by_version.get_mut(&version)?.get_mut(group)?;
            while run.entries.front().is_some_and(|(id, _)| *id < start) {
                run.entries.pop_front();
            }
            if start < run.from || start > run.to {
                (None, true)
            } else if run.entries.len() < count && run.to < last_id {
                // Entries past the run may have been added since it was read.
                (None, true)
            } else {
                let n = count.min(run.entries.len());
                let out: Vec<(Id, Bytes)> = run.entries.drain(..n).collect();
                match out.last().and_then(|(id, _)| id.incr()) {
                    Some(next) if next <= run.to => {
                        run.from = next;
                        (Some(out), false)
                    }
                    _ => (Some(out), true),
                }
            }
        };
        if spent {
            inner.remove(version, group);
        }
        out
    }

    /// Keeps `entries` for `group`'s next reads of stream `version`: ascending, every entry of the
    /// stream with an ID from `from` to the last of them, values copied out of storage (a slice would
    /// keep a whole memtable chunk or block alive).
    pub(super) fn keep(
        &self,
        version: u64,
        group: &[u8],
        from: Id,
        entries: VecDeque<(Id, Bytes)>,
    ) {
        let Some(&(to, _)) = entries.back() else {
            return;
        };
        let mut inner = self.inner.lock();
        inner.remove(version, group);
        if inner.count >= MAX_RUNS {
            inner.by_version.clear();
            inner.count = 0;
        }
        inner
            .by_version
            .entry(version)
            .or_default()
            .insert(Bytes::copy_from_slice(group), Run { from, to, entries });
        inner.count += 1;
    }

    /// Drops every run (FLUSHDB, FLUSHALL: their streams are gone, and the memory is better free).
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.by_version.clear();
        inner.count = 0;
    }

    /// Drops every run of stream `version` (an entry of it is being removed).
    pub(super) fn forget(&self, version: u64) {
        let mut inner = self.inner.lock();
        if let Some(groups) = inner.by_version.remove(&version) {
            inner.count -= groups.len();
        }
    }
}
