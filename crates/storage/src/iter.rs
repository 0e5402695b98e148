//! The internal iterator trait: a bidirectional cursor over encoded internal keys.
//!
//! Implemented by SSTable iterators, the engine's memtable iterator and [`crate::merge::MergingIterator`].
//! Keys are encoded internal keys ([`crate::key`]) ordered by [`crate::key::compare_internal`].

use std::cmp::Ordering;

use crate::key::compare_internal;
use crate::sst::SstError;

/// A bidirectional cursor over sorted internal keys.
pub trait InternalIterator: Send {
    /// Whether the cursor is on an entry.
    fn valid(&self) -> bool;
    /// Positions at the first entry.
    fn seek_to_first(&mut self) -> Result<(), SstError>;
    /// Positions at the last entry.
    fn seek_to_last(&mut self) -> Result<(), SstError>;
    /// First entry with internal key >= target.
    fn seek(&mut self, target: &[u8]) -> Result<(), SstError>;
    /// Last entry with internal key <= target.
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<(), SstError>;
    /// Moves to the next entry (invalid past the last).
    fn next(&mut self) -> Result<(), SstError>;
    /// Moves to the previous entry (invalid before the first).
    fn prev(&mut self) -> Result<(), SstError>;
    /// Encoded internal key of the current entry; only while valid().
    fn key(&self) -> &[u8];
    /// Value of the current entry; only while valid().
    fn value(&self) -> &[u8];
}

impl<T: InternalIterator + ?Sized> InternalIterator for Box<T> {
    fn valid(&self) -> bool {
        (**self).valid()
    }
    fn seek_to_first(&mut self) -> Result<(), SstError> {
        (**self).seek_to_first()
    }
    fn seek_to_last(&mut self) -> Result<(), SstError> {
        (**self).seek_to_last()
    }
    fn seek(&mut self, target: &[u8]) -> Result<(), SstError> {
        (**self).seek(target)
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<(), SstError> {
        (**self).seek_for_prev(target)
    }
    fn next(&mut self) -> Result<(), SstError> {
        (**self).next()
    }
    fn prev(&mut self) -> Result<(), SstError> {
        (**self).prev()
    }
    fn key(&self) -> &[u8] {
        (**self).key()
    }
    fn value(&self) -> &[u8] {
        (**self).value()
    }
}

/// An iterator over an owned, sorted `Vec` of entries: for tests and for small in-memory sources.
#[derive(Debug, Clone, Default)]
pub struct VecIterator {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// Position; `entries.len()` means invalid.
    pos: usize,
}

impl VecIterator {
    /// Wraps entries, sorting them by internal key.
    pub fn new(mut entries: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        entries.sort_by(|a, b| compare_internal(&a.0, &b.0));
        let pos = entries.len();
        VecIterator { entries, pos }
    }
}

impl InternalIterator for VecIterator {
    fn valid(&self) -> bool {
        self.pos < self.entries.len()
    }
    fn seek_to_first(&mut self) -> Result<(), SstError> {
        self.pos = 0;
        Ok(())
    }
    fn seek_to_last(&mut self) -> Result<(), SstError> {
        self.pos = self
            .entries
            .len()
            .checked_sub(1)
            .unwrap_or(self.entries.len());
        Ok(())
    }
    fn seek(&mut self, target: &[u8]) -> Result<(), SstError> {
        self.pos = self
            .entries
            .partition_point(|(k, _)| compare_internal(k, target) == Ordering::Less);
        Ok(())
    }
    fn seek_for_prev(&mut self, target: &[u8]) -> Result<(), SstError> {
        let n = self
            .entries
            .partition_point(|(k, _)| compare_internal(k, target) != Ordering::Greater);
        self.pos = n.checked_sub(1).unwrap_or(self.entries.len());
        Ok(())
    }
    fn next(&mut self) -> Result<(), SstError> {
        if self.valid() {
            self.pos += 1;
        }
        Ok(())
    }
    fn prev(&mut self) -> Result<(), SstError> {
        if self.valid() {
            self.pos = self.pos.checked_sub(1).unwrap_or(self.entries.len());
        }
        Ok(())
    }
    fn key(&self) -> &[u8] {
        self.entries.get(self.pos).map_or(&[], |e| e.0.as_slice())
    }
    fn value(&self) -> &[u8] {
        self.entries.get(self.pos).map_or(&[], |e| e.1.as_slice())
    }
}
