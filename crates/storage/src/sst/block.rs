//! Blocks: sorted key/value entries with prefix-compressed keys and restart points.
//!
//! Layout (before compression and trailer):
//! ```text
//! entry*  : varint32 shared ++ varint32 unshared ++ varint32 value_len ++ key[shared..] ++ value
//! restarts: u32le offset of each restart entry (shared == 0), then u32le count (>= 1)
//! ```
//! A restart entry stores its whole key, so a seek binary-searches the restart keys without decoding
//! anything else and then scans at most `restart_interval` entries.

use std::cmp::Ordering;

use bytes::Bytes;

use super::SstError;
use super::format::{get_varint32, put_varint64, read_u32_le};
use crate::key::compare_internal;

/// Accumulates sorted entries into one block.
#[derive(Debug)]
pub struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    since_restart: usize,
    last_key: Vec<u8>,
    entries: usize,
}

impl BlockBuilder {
    /// A builder placing a restart point every `restart_interval` entries (at least 1).
    pub fn new(restart_interval: usize) -> Self {
        BlockBuilder {
            buf: Vec::new(),
            restarts: vec![0],
            restart_interval: restart_interval.max(1),
            since_restart: 0,
            last_key: Vec::new(),
            entries: 0,
        }
    }

    /// Appends an entry; the caller guarantees keys arrive in increasing order and that the block stays
    /// below 4 GiB (the writer bounds entry and block sizes).
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.since_restart >= self.restart_interval {
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            self.last_key
                .iter()
                .zip(key)
                .take_while(|(a, b)| a == b)
                .count()
        };
        put_varint64(&mut self.buf, shared as u64);
        put_varint64(&mut self.buf, (key.len() - shared) as u64);
        put_varint64(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.since_restart += 1;
        self.entries += 1;
    }

    /// Bytes the finished block will take.
    pub fn estimated_size(&self) -> usize {
        self.buf.len() + self.restarts.len() * 4 + 4
    }

    /// Number of entries added since the last reset.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// True when nothing was added since the last reset.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The last key added.
    pub fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// Appends the restart array and returns the finished block; call [`BlockBuilder::reset`] before reuse.
    pub fn finish(&mut self) -> &[u8] {
        for r in &self.restarts {
            self.buf.extend_from_slice(&r.to_le_bytes());
        }
        self.buf
            .extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        &self.buf
    }

    /// Empties the builder, keeping its allocations.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.restarts.clear();
        self.restarts.push(0);
        self.since_restart = 0;
        self.last_key.clear();
        self.entries = 0;
    }
}

/// A decoded entry's position inside the block.
#[derive(Debug, Clone, Copy, Default)]
struct EntryPos {
    /// Offset of the entry header.
    offset: usize,
    /// Offset of the following entry.
    next: usize,
    shared: usize,
    delta_start: usize,
    delta_end: usize,
    value_start: usize,
    value_end: usize,
}

/// Decodes the header of the entry at `p` of a block's entries region, bounds-checking every length.
#[inline]
fn decode_entry(entries: &[u8], p: usize) -> Result<EntryPos, &'static str> {
    let mut pos = p;
    let (Some(shared), Some(unshared), Some(vlen)) = (
        get_varint32(entries, &mut pos),
        get_varint32(entries, &mut pos),
        get_varint32(entries, &mut pos),
    ) else {
        return Err("truncated entry header");
    };
    let delta_end = pos
        .checked_add(unshared)
        .filter(|&e| e <= entries.len())
        .ok_or("key runs past the end of the block")?;
    let value_end = delta_end
        .checked_add(vlen)
        .filter(|&e| e <= entries.len())
        .ok_or("value runs past the end of the block")?;
    Ok(EntryPos {
        offset: p,
        next: value_end,
        shared,
        delta_start: pos,
        delta_end,
        value_start: delta_end,
        value_end,
    })
}

/// The first entry of block `data` whose key is at or after `target` (internal-key order), for a point
/// read: its key rebuilt into `key` and where its value lies in `data`, or `None` past the last entry.
/// [`BlockIter::seek`]'s answer without a cursor: a point read looks at one entry, and building an
/// iterator for it (a key buffer allocated per read, restart bookkeeping on every step) was a good part
/// of `SstReader::get`.
pub fn seek_point(
    data: &[u8],
    target: &[u8],
    key: &mut Vec<u8>,
    file_id: u64,
    block_offset: u64,
) -> Result<Option<std::ops::Range<usize>>, SstError> {
    let corrupt = |what: &str| SstError::corruption(file_id, block_offset, what);
    let (restarts_offset, num_restarts) = BlockIter::parse_restarts(data, file_id, block_offset)?;
    let entries = &data[..restarts_offset];
    let restart = |i: usize| -> Result<usize, SstError> {
        let p = read_u32_le(data, restarts_offset + i * 4)
            .ok_or_else(|| corrupt("restart index out of range"))? as usize;
        if p > restarts_offset {
            return Err(corrupt("restart point beyond the entries"));
        }
        Ok(p)
    };
    // The last restart whose key is < target: the answer lies in its interval or at the start of the
    // next one.
    let (mut lo, mut hi) = (0usize, num_restarts);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let p = restart(mid)?;
        if p >= restarts_offset {
            return Err(corrupt("restart point at the end of the entries"));
        }
        let e = decode_entry(entries, p).map_err(corrupt)?;
        if e.shared != 0 {
            return Err(corrupt("restart entry shares a key prefix"));
        }
        if compare_internal(&entries[e.delta_start..e.delta_end], target) == Ordering::Less {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    key.clear();
    let mut p = restart(lo)?;
    while p < restarts_offset {
        let e = decode_entry(entries, p).map_err(corrupt)?;
        if e.shared > key.len() {
            return Err(corrupt("entry shares more bytes than the previous key has"));
        }
        key.truncate(e.shared);
        key.extend_from_slice(&entries[e.delta_start..e.delta_end]);
        if compare_internal(key, target) != Ordering::Less {
            return Ok(Some(e.value_start..e.value_end));
        }
        p = e.next;
    }
    Ok(None)
}

/// One entry remembered for reverse iteration: its key lives in `BlockIter::rev_keys`.
#[derive(Debug, Clone, Copy, Default)]
struct RevEntry {
    offset: usize,
    next: usize,
    key_start: usize,
    key_end: usize,
    value_start: usize,
    value_end: usize,
}

/// A cursor over one block. Iterating allocates nothing once its key buffers have grown to the longest key.
#[derive(Debug, Clone)]
pub struct BlockIter {
    data: Bytes,
    restarts_offset: usize,
    num_restarts: usize,
    file_id: u64,
    block_offset: u64,
    valid: bool,
    current: usize,
    next: usize,
    restart_index: usize,
    key: Vec<u8>,
    value_start: usize,
    value_end: usize,
    // Reverse iteration decodes a whole restart interval at once and steps back through it, so `prev` is
    // O(1) amortised instead of rescanning the interval for every step.
    rev_keys: Vec<u8>,
    rev: Vec<RevEntry>,
    rev_pos: usize,
}

impl BlockIter {
    /// Opens a block; `file_id` and `block_offset` only label corruption errors.
    pub fn new(data: Bytes, file_id: u64, block_offset: u64) -> Result<Self, SstError> {
        let (restarts_offset, num_restarts) = Self::parse_restarts(&data, file_id, block_offset)?;
        Ok(BlockIter {
            data,
            restarts_offset,
            num_restarts,
            file_id,
            block_offset,
            valid: false,
            current: restarts_offset,
            next: restarts_offset,
            restart_index: 0,
            key: Vec::new(),
            value_start: 0,
            value_end: 0,
            rev_keys: Vec::new(),
            rev: Vec::new(),
            rev_pos: 0,
        })
    }

    /// Points this cursor at another block of the same file, keeping its buffers (no allocation once they
    /// have grown). The cursor is invalid afterwards until positioned.
    pub fn reset(&mut self, data: Bytes, block_offset: u64) -> Result<(), SstError> {
        let (restarts_offset, num_restarts) =
            Self::parse_restarts(&data, self.file_id, block_offset)?;
        self.data = data;
        self.restarts_offset = restarts_offset;
        self.num_restarts = num_restarts;
        self.block_offset = block_offset;
        self.restart_index = 0;
        self.invalidate();
        Ok(())
    }

    /// Validates the restart array's framing; returns (start of the restart array, restart count).
    fn parse_restarts(
        data: &[u8],
        file_id: u64,
        block_offset: u64,
    ) -> Result<(usize, usize), SstError> {
        let corrupt = |what: &str| SstError::corruption(file_id, block_offset, what);
        let count_pos = data
            .len()
            .checked_sub(4)
            .ok_or_else(|| corrupt("block shorter than its restart count"))?;
        let num_restarts = read_u32_le(data, count_pos)
            .ok_or_else(|| corrupt("block shorter than its restart count"))?
            as usize;
        if num_restarts == 0 {
            return Err(corrupt("block has no restart points"));
        }
        let restarts_offset = num_restarts
            .checked_mul(4)
            .and_then(|b| count_pos.checked_sub(b))
            .ok_or_else(|| corrupt("restart array larger than the block"))?;
        Ok((restarts_offset, num_restarts))
    }

    fn corrupt(&self, what: &str) -> SstError {
        SstError::corruption(self.file_id, self.block_offset, what)
    }

    /// Whether the cursor is on an entry.
    #[inline]
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// The current entry's full key; only meaningful while valid.
    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The current entry's value; only meaningful while valid.
    #[inline]
    pub fn value(&self) -> &[u8] {
        self.data
            .get(self.value_start..self.value_end)
            .unwrap_or_default()
    }

    /// The current value as a zero-copy slice of the block.
    pub fn value_bytes(&self) -> Bytes {
        if self.value_start <= self.value_end && self.value_end <= self.data.len() {
            self.data.slice(self.value_start..self.value_end)
        } else {
            Bytes::new()
        }
    }

    fn restart_point(&self, i: usize) -> Result<usize, SstError> {
        let p = read_u32_le(&self.data, self.restarts_offset + i * 4)
            .ok_or_else(|| self.corrupt("restart index out of range"))? as usize;
        if p > self.restarts_offset {
            return Err(self.corrupt("restart point beyond the entries"));
        }
        Ok(p)
    }

    /// Decodes the entry header at `p`, bounds-checking every length against the entries region.
    #[inline]
    fn decode_at(&self, p: usize) -> Result<EntryPos, SstError> {
        decode_entry(&self.data[..self.restarts_offset], p).map_err(|what| self.corrupt(what))
    }

    /// The full key of the restart entry `i`, borrowed from the block.
    fn restart_key(&self, i: usize) -> Result<&[u8], SstError> {
        let p = self.restart_point(i)?;
        if p >= self.restarts_offset {
            return Err(self.corrupt("restart point at the end of the entries"));
        }
        let e = self.decode_at(p)?;
        if e.shared != 0 {
            return Err(self.corrupt("restart entry shares a key prefix"));
        }
        Ok(&self.data[e.delta_start..e.delta_end])
    }

    /// Makes the entry at `e` current, rebuilding the key from the previous one.
    #[inline]
    fn apply(&mut self, e: EntryPos) -> Result<(), SstError> {
        if e.shared > self.key.len() {
            return Err(self.corrupt("entry shares more bytes than the previous key has"));
        }
        self.key.truncate(e.shared);
        self.key
            .extend_from_slice(&self.data[e.delta_start..e.delta_end]);
        self.current = e.offset;
        self.next = e.next;
        self.value_start = e.value_start;
        self.value_end = e.value_end;
        self.valid = true;
        Ok(())
    }

    fn invalidate(&mut self) {
        self.valid = false;
        self.current = self.restarts_offset;
        self.next = self.restarts_offset;
        self.rev.clear();
    }

    /// Positions at the first entry of restart interval `i`.
    fn seek_to_restart(&mut self, i: usize) -> Result<(), SstError> {
        self.rev.clear();
        self.key.clear();
        self.restart_index = i;
        let p = self.restart_point(i)?;
        if p >= self.restarts_offset {
            self.invalidate();
            return Ok(());
        }
        let e = self.decode_at(p)?;
        if e.shared != 0 {
            return Err(self.corrupt("restart entry shares a key prefix"));
        }
        self.apply(e)
    }

    /// Positions at the first entry.
    pub fn seek_to_first(&mut self) -> Result<(), SstError> {
        self.seek_to_restart(0)
    }

    /// Advances to the next entry.
    #[allow(clippy::should_implement_trait)] // fallible, so not an Iterator
    pub fn next(&mut self) -> Result<(), SstError> {
        self.rev.clear();
        if !self.valid || self.next >= self.restarts_offset {
            self.invalidate();
            return Ok(());
        }
        let e = self.decode_at(self.next)?;
        self.apply(e)?;
        while self.restart_index + 1 < self.num_restarts
            && self.restart_point(self.restart_index + 1)? <= self.current
        {
            self.restart_index += 1;
        }
        Ok(())
    }

    /// Positions at the first entry with key >= target (invalid if none).
    pub fn seek(&mut self, target: &[u8]) -> Result<(), SstError> {
        // Find the last restart whose key is < target; the answer lies in its interval or at the
        // start of the next one.
        let (mut lo, mut hi) = (0usize, self.num_restarts);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if compare_internal(self.restart_key(mid)?, target) == Ordering::Less {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        self.seek_to_restart(lo)?;
        while self.valid && compare_internal(&self.key, target) == Ordering::Less {
            self.next()?;
        }
        Ok(())
    }

    /// Positions at the last entry with key <= target (invalid if none).
    pub fn seek_for_prev(&mut self, target: &[u8]) -> Result<(), SstError> {
        self.seek(target)?;
        if !self.valid {
            self.seek_to_last()
        } else if compare_internal(&self.key, target) == Ordering::Greater {
            self.prev()
        } else {
            Ok(())
        }
    }

    /// Decodes restart interval `r` up to (not including) the entry at `stop` into the reverse cache
    /// and positions at its last entry.
    fn fill_rev(&mut self, r: usize, stop: usize) -> Result<(), SstError> {
        self.rev.clear();
        self.rev_keys.clear();
        self.key.clear();
        let mut p = self.restart_point(r)?;
        while p < stop {
            let e = self.decode_at(p)?;
            if e.shared > self.key.len() {
                return Err(self.corrupt("entry shares more bytes than the previous key has"));
            }
            self.key.truncate(e.shared);
            self.key
                .extend_from_slice(&self.data[e.delta_start..e.delta_end]);
            let key_start = self.rev_keys.len();
            self.rev_keys.extend_from_slice(&self.key);
            self.rev.push(RevEntry {
                offset: p,
                next: e.next,
                key_start,
                key_end: self.rev_keys.len(),
                value_start: e.value_start,
                value_end: e.value_end,
            });
            p = e.next;
        }
        if p != stop {
            return Err(self.corrupt("entries do not line up with the restart points"));
        }
        self.restart_index = r;
        match self.rev.len().checked_sub(1) {
            Some(last) => {
                self.rev_pos = last;
                self.load_rev();
                Ok(())
            }
            None => {
                self.invalidate();
                Ok(())
            }
        }
    }

    fn load_rev(&mut self) {
        let r = self.rev[self.rev_pos];
        self.key.clear();
        self.key
            .extend_from_slice(&self.rev_keys[r.key_start..r.key_end]);
        self.current = r.offset;
        self.next = r.next;
        self.value_start = r.value_start;
        self.value_end = r.value_end;
        self.valid = true;
    }

    /// Positions at the last entry.
    pub fn seek_to_last(&mut self) -> Result<(), SstError> {
        let mut r = self.num_restarts - 1;
        // Skip empty trailing intervals (only the empty block has one, but stay robust).
        while r > 0 && self.restart_point(r)? >= self.restarts_offset {
            r -= 1;
        }
        self.fill_rev(r, self.restarts_offset)
    }

    /// Steps back to the previous entry (invalid before the first).
    pub fn prev(&mut self) -> Result<(), SstError> {
        if !self.valid {
            return Ok(());
        }
        if !self.rev.is_empty() && self.rev_pos > 0 {
            self.rev_pos -= 1;
            self.load_rev();
            return Ok(());
        }
        let original = self.current;
        // The previous entry lives in the last restart interval starting before the current entry.
        let mut r = self.restart_index.min(self.num_restarts - 1);
        loop {
            if self.restart_point(r)? < original {
                break;
            }
            if r == 0 {
                self.invalidate();
                return Ok(());
            }
            r -= 1;
        }
        self.fill_rev(r, original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{ValueKind, internal_key};
    use proptest::arbitrary::Arbitrary as _;

    type Entries = Vec<(Vec<u8>, Vec<u8>)>;

    fn build(n: usize, interval: usize) -> (Bytes, Entries) {
        let mut b = BlockBuilder::new(interval);
        let mut entries = Vec::new();
        for i in 0..n {
            let k = internal_key(format!("key{:05}", i * 3).as_bytes(), 7, ValueKind::Put);
            let v = format!("value{i}").into_bytes();
            b.add(&k, &v);
            entries.push((k, v));
        }
        (Bytes::copy_from_slice(b.finish()), entries)
    }

    #[test]
    fn forward_reverse_and_seek() {
        for interval in [1, 2, 16] {
            for n in [0, 1, 5, 17, 100] {
                let (data, entries) = build(n, interval);
                let mut it = BlockIter::new(data.clone(), 0, 0).unwrap();
                it.seek_to_first().unwrap();
                let mut got = Vec::new();
                while it.valid() {
                    got.push((it.key().to_vec(), it.value().to_vec()));
                    it.next().unwrap();
                }
                assert_eq!(got, entries);
                it.seek_to_last().unwrap();
                let mut got = Vec::new();
                while it.valid() {
                    got.push((it.key().to_vec(), it.value().to_vec()));
                    it.prev().unwrap();
                }
                got.reverse();
                assert_eq!(got, entries);
                let mut key = Vec::new();
                for i in 0..n * 3 + 2 {
                    let target = internal_key(format!("key{i:05}").as_bytes(), 7, ValueKind::Put);
                    let point = seek_point(&data, &target, &mut key, 0, 0).unwrap();
                    it.seek(&target).unwrap();
                    assert_eq!(
                        point.map(|v| (key.clone(), data[v].to_vec())),
                        it.valid().then(|| (it.key().to_vec(), it.value().to_vec()))
                    );
                    let expect = entries
                        .iter()
                        .find(|(k, _)| k.as_slice() >= target.as_slice());
                    assert_eq!(
                        it.valid().then(|| it.key().to_vec()),
                        expect.map(|e| e.0.clone())
                    );
                    it.seek_for_prev(&target).unwrap();
                    let expect = entries
                        .iter()
                        .rev()
                        .find(|(k, _)| k.as_slice() <= target.as_slice());
                    assert_eq!(
                        it.valid().then(|| it.key().to_vec()),
                        expect.map(|e| e.0.clone())
                    );
                }
            }
        }
    }

    proptest::proptest! {
        /// Valid blocks with bytes flipped, through the fuzz target: whenever both the point read's seek
        /// and the cursor's seek read the block, they find the same entry (the target asserts it).
        #[test]
        fn point_and_cursor_seeks_agree_on_damaged_blocks(
            n in 0usize..60,
            interval in 1usize..9,
            flips in proptest::collection::vec((proptest::sample::Index::arbitrary(), 1u8..=255), 0..4),
        ) {
            let (data, _) = build(n, interval);
            let mut bytes = data.to_vec();
            for (at, x) in flips {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= x;
                }
            }
            crate::fuzzing::sst_block(&bytes);
        }
    }

    #[test]
    fn direction_switches() {
        let (data, entries) = build(40, 4);
        let mut it = BlockIter::new(data, 0, 0).unwrap();
        it.seek(&entries[10].0).unwrap();
        it.prev().unwrap();
        assert_eq!(it.key(), entries[9].0.as_slice());
        it.prev().unwrap();
        it.next().unwrap();
        assert_eq!(it.key(), entries[9].0.as_slice());
        it.next().unwrap();
        it.prev().unwrap();
        it.prev().unwrap();
        assert_eq!(it.key(), entries[8].0.as_slice());
    }

    #[test]
    fn garbage_never_panics() {
        let (data, _) = build(30, 4);
        for i in 0..data.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = data.to_vec();
                bad[i] ^= flip;
                let Ok(mut it) = BlockIter::new(Bytes::from(bad), 0, 0) else {
                    continue;
                };
                let _ = it.seek_to_first();
                for _ in 0..100 {
                    if !it.valid() || it.next().is_err() {
                        break;
                    }
                }
                let _ = it.seek_to_last();
                for _ in 0..100 {
                    if !it.valid() || it.prev().is_err() {
                        break;
                    }
                }
                let _ = it.seek(b"key00030\0\0\0\0\0\0\0\0");
                let _ = it.seek_for_prev(b"key00030\0\0\0\0\0\0\0\0");
            }
        }
        assert!(BlockIter::new(Bytes::from_static(&[1, 0]), 0, 0).is_err());
        assert!(BlockIter::new(Bytes::from_static(&[0, 0, 0, 0]), 0, 0).is_err());
        assert!(BlockIter::new(Bytes::from_static(&[9, 0, 0, 0]), 0, 0).is_err());
    }
}
