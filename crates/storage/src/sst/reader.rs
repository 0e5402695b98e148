//! [`SstReader`], [`SstIterator`] and offline verification.

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::block::{BlockIter, seek_point};
use super::bloom::Bloom;
use super::format::{
    BLOCK_TRAILER_BYTES, BLOCK_TYPE_LZ4, BLOCK_TYPE_RAW, BlockHandle, FOOTER_BYTES, Footer,
    MAX_BLOCK_BYTES, block_crc, get_varint32, read_u32_le,
};
use super::props::{Properties, decode_range_tombstones};
use super::{BlockCache, RandomAccessFile, RangeTombstone, SstError, SstMeta};
use crate::iter::InternalIterator;
use crate::key::{
    MAX_SEQNO, SeqNo, TRAILER_BYTES, ValueKind, compare_internal, pack_trailer, parse_internal_key,
};

thread_local! {
    /// The key a point read rebuilds while it scans a block (kept per thread, so reads allocate none).
    static POINT_KEY: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The decoded index: the last internal key of every data block and the block's handle.
#[derive(Debug)]
struct Index {
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    handles: Vec<BlockHandle>,
}

impl Index {
    fn len(&self) -> usize {
        self.handles.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.key_ends[i - 1] };
        &self.keys[start..self.key_ends[i]]
    }

    /// First block whose last key is >= target: the only block that can hold the first entry >= target.
    fn find(&self, target: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if compare_internal(self.key(mid), target) == Ordering::Less {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

struct Inner {
    file: Arc<dyn RandomAccessFile>,
    file_id: u64,
    cache: Option<Arc<dyn BlockCache>>,
    meta: SstMeta,
    index: Index,
    filter: Option<Bloom>,
    range_tombstones: Vec<RangeTombstone>,
    /// `range_tombstones` fragmented for reads, built on first use.
    range_index: std::sync::OnceLock<Arc<crate::range_index::FragRun>>,
    footer: Footer,
    /// Off only for fuzzing, so the parsers behind the checksums see arbitrary bytes.
    verify_checksums: bool,
}

/// An open SSTable. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct SstReader {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SstReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SstReader")
            .field("file_id", &self.inner.file_id)
            .field("meta", &self.inner.meta)
            .finish_non_exhaustive()
    }
}

/// What [`SstReader::verify`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Data blocks read from the file and checked.
    pub data_blocks: u64,
    /// Point entries decoded.
    pub entries: u64,
    /// Bytes of the file covered by a checksum that was verified (all of it, on success).
    pub bytes_checked: u64,
}

/// Builds a lookup key on the stack for the common case of short user keys.
struct LookupKey {
    stack: [u8; 72],
    heap: Vec<u8>,
    len: usize,
}

impl LookupKey {
    fn new(user_key: &[u8], seqno: SeqNo) -> Self {
        let trailer = pack_trailer(seqno.min(MAX_SEQNO), ValueKind::RangeDelete).to_be_bytes();
        let len = user_key.len() + TRAILER_BYTES;
        let mut lk = LookupKey {
            stack: [0; 72],
            heap: Vec::new(),
            len,
        };
        if len <= lk.stack.len() {
            lk.stack[..user_key.len()].copy_from_slice(user_key);
            lk.stack[user_key.len()..len].copy_from_slice(&trailer);
        } else {
            lk.heap.extend_from_slice(user_key);
            lk.heap.extend_from_slice(&trailer);
        }
        lk
    }

    fn as_slice(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap
        }
    }
}

impl SstReader {
    /// Opens an SSTable: reads and checks the footer, properties, index, filter and range tombstones.
    /// `file_id` labels errors and keys the block cache.
    pub fn open(
        file: Arc<dyn RandomAccessFile>,
        file_id: u64,
        cache: Option<Arc<dyn BlockCache>>,
    ) -> Result<Self, SstError> {
        Self::open_inner(file, file_id, cache, true)
    }

    pub(crate) fn open_inner(
        file: Arc<dyn RandomAccessFile>,
        file_id: u64,
        cache: Option<Arc<dyn BlockCache>>,
        verify_checksums: bool,
    ) -> Result<Self, SstError> {
        let corrupt = |offset: u64, what: &str| SstError::corruption(file_id, offset, what);
        let file_size = file.len().map_err(|source| SstError::Io {
            op: format!("stat SST {file_id}"),
            source,
        })?;
        let footer_offset = file_size
            .checked_sub(FOOTER_BYTES as u64)
            .ok_or_else(|| corrupt(0, "file shorter than an SST footer"))?;
        let mut fbuf = [0u8; FOOTER_BYTES];
        file.read_exact_at(&mut fbuf, footer_offset)
            .map_err(|source| SstError::Io {
                op: format!("read footer of SST {file_id}"),
                source,
            })?;
        let footer = Footer::decode(&fbuf).map_err(|what| corrupt(footer_offset, what))?;

        // The blocks must tile the file exactly: data, filter, range tombstones, properties, index,
        // footer. With no gaps, every byte is covered by some checksum.
        let layout_ok = (|| {
            let data_end = footer.data.size;
            if footer.data.offset != 0 || footer.filter.offset != data_end {
                return None;
            }
            let filter_end = if footer.filter.size == 0 {
                data_end
            } else {
                footer
                    .filter
                    .offset
                    .checked_add(footer.filter.size)?
                    .checked_add(BLOCK_TRAILER_BYTES as u64)?
            };
            let mut next = filter_end;
            for h in [footer.range_del, footer.properties, footer.index] {
                if h.offset != next {
                    return None;
                }
                next = h
                    .offset
                    .checked_add(h.size)?
                    .checked_add(BLOCK_TRAILER_BYTES as u64)?;
            }
            (next == footer_offset).then_some(())
        })();
        if layout_ok.is_none() {
            return Err(corrupt(
                footer_offset,
                "footer block handles do not tile the file",
            ));
        }

        let mut inner = Inner {
            file,
            file_id,
            cache,
            meta: SstMeta::default(),
            index: Index {
                keys: Vec::new(),
                key_ends: Vec::new(),
                handles: Vec::new(),
            },
            filter: None,
            range_tombstones: Vec::new(),
            range_index: std::sync::OnceLock::new(),
            footer,
            verify_checksums,
        };

        let props_block = inner.read_block_uncached(footer.properties)?;
        let props = Properties::decode(&props_block, file_size)
            .map_err(|what| corrupt(footer.properties.offset, what))?;
        let ts_block = inner.read_block_uncached(footer.range_del)?;
        let ts = decode_range_tombstones(&ts_block)
            .map_err(|what| corrupt(footer.range_del.offset, what))?;
        if ts.len() as u64 != props.meta.range_tombstones {
            return Err(corrupt(
                footer.range_del.offset,
                "range tombstone count differs from the properties",
            ));
        }
        if footer.filter.size > 0 {
            let fb = inner.read_block_uncached(footer.filter)?;
            inner.filter =
                Some(Bloom::from_bytes(fb).map_err(|what| corrupt(footer.filter.offset, what))?);
        }
        inner.index = decode_index(&inner, footer.index, footer.data.size)?;
        if inner.index.len() as u64 != props.data_blocks {
            return Err(corrupt(
                footer.index.offset,
                "index block count differs from the properties",
            ));
        }
        if (inner.index.len() == 0) != (props.meta.entries == 0) {
            return Err(corrupt(
                footer.index.offset,
                "entry count disagrees with the number of data blocks",
            ));
        }
        inner.meta = props.meta;
        inner.range_tombstones = ts;
        Ok(SstReader {
            inner: Arc::new(inner),
        })
    }

    /// The file's properties.
    pub fn meta(&self) -> &SstMeta {
        &self.inner.meta
    }

    /// The id this reader was opened with.
    pub fn file_id(&self) -> u64 {
        self.inner.file_id
    }

    /// False when the file certainly holds no point entry for `user_key` (bloom filter check).
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        if self.inner.meta.entries == 0 {
            return false;
        }
        self.inner
            .filter
            .as_ref()
            .is_none_or(|f| f.may_contain(user_key))
    }

    /// Newest point entry for `user_key` with seqno <= `read_seqno` (a put or a point delete). Range
    /// tombstones are not applied; see [`SstReader::range_tombstones`].
    pub fn get(
        &self,
        user_key: &[u8],
        read_seqno: SeqNo,
    ) -> Result<Option<(SeqNo, ValueKind, Bytes)>, SstError> {
        // The filter is consulted before any block is read.
        if !self.may_contain(user_key) {
            return Ok(None);
        }
        let lookup = LookupKey::new(user_key, read_seqno);
        let i = self.inner.index.find(lookup.as_slice());
        if i >= self.inner.index.len() {
            return Ok(None);
        }
        let handle = self.inner.index.handles[i];
        let block = self.inner.read_block(handle)?;
        POINT_KEY.with(|key| {
            let mut key = key.borrow_mut();
            let Some(value) = seek_point(
                &block,
                lookup.as_slice(),
                &mut key,
                self.inner.file_id,
                handle.offset,
            )?
            else {
                return Ok(None);
            };
            let parsed = parse_internal_key(&key).map_err(|e| {
                SstError::corruption(self.inner.file_id, handle.offset, e.to_string())
            })?;
            if parsed.user_key != user_key {
                return Ok(None);
            }
            Ok(Some((parsed.seqno, parsed.kind, block.slice(value))))
        })
    }

    /// An iterator over the point entries; it holds a clone of this reader.
    pub fn iter(&self) -> SstIterator {
        SstIterator {
            reader: self.clone(),
            block_idx: 0,
            block: None,
        }
    }

    /// The file's range tombstones, sorted by start key then seqno descending.
    pub fn range_tombstones(&self) -> &[RangeTombstone] {
        &self.inner.range_tombstones
    }

    /// The range tombstones fragmented for reads (`crate::range_index`), built on first use.
    pub fn range_index(&self) -> &Arc<crate::range_index::FragRun> {
        self.inner.range_index.get_or_init(|| {
            Arc::new(crate::range_index::FragRun::build(
                self.inner
                    .range_tombstones
                    .iter()
                    .map(|t| crate::range_index::Tombstone {
                        start: bytes::Bytes::copy_from_slice(&t.start),
                        end: bytes::Bytes::copy_from_slice(&t.end),
                        seqno: t.seqno,
                    })
                    .collect(),
            ))
        })
    }

    /// Reads every block from the file (bypassing the cache), checks every checksum, decodes every entry
    /// and cross-checks order, counts and key bounds against the index and properties.
    pub fn verify(&self) -> Result<VerifyReport, SstError> {
        let inner = &self.inner;
        let fid = inner.file_id;
        let mut report = VerifyReport::default();
        let mut prev_key: Vec<u8> = Vec::new();
        let mut points = 0u64;
        let mut point_tombstones = 0u64;
        let mut smallest: Option<Vec<u8>> = None;
        let mut largest: Vec<u8> = Vec::new();
        let (mut min_seqno, mut max_seqno) = (MAX_SEQNO, 0);
        for i in 0..inner.index.len() {
            let h = inner.index.handles[i];
            let block = inner.read_block_uncached(h)?;
            let mut it = BlockIter::new(block, fid, h.offset)?;
            it.seek_to_first()?;
            if !it.valid() {
                return Err(SstError::corruption(fid, h.offset, "empty data block"));
            }
            while it.valid() {
                let key = it.key();
                let p = parse_internal_key(key)
                    .map_err(|e| SstError::corruption(fid, h.offset, e.to_string()))?;
                if p.kind == ValueKind::RangeDelete {
                    return Err(SstError::corruption(
                        fid,
                        h.offset,
                        "range delete in a data block",
                    ));
                }
                if points > 0 && compare_internal(&prev_key, key) != Ordering::Less {
                    return Err(SstError::corruption(fid, h.offset, "keys out of order"));
                }
                if smallest.is_none() {
                    smallest = Some(p.user_key.to_vec());
                }
                largest.clear();
                largest.extend_from_slice(p.user_key);
                points += 1;
                if p.kind == ValueKind::Delete {
                    point_tombstones += 1;
                }
                min_seqno = min_seqno.min(p.seqno);
                max_seqno = max_seqno.max(p.seqno);
                prev_key.clear();
                prev_key.extend_from_slice(key);
                it.next()?;
            }
            if prev_key.as_slice() != inner.index.key(i) {
                return Err(SstError::corruption(
                    fid,
                    h.offset,
                    "index key differs from the block's last key",
                ));
            }
            report.data_blocks += 1;
        }
        report.entries = points;
        let m = &inner.meta;
        let bad = |what: &str| SstError::corruption(fid, inner.footer.properties.offset, what);
        if points != m.entries || point_tombstones != m.point_tombstones {
            return Err(bad("entry counts differ from the properties"));
        }
        let mut lo = smallest;
        let mut hi = (points > 0).then_some(largest);
        for t in &inner.range_tombstones {
            if lo.as_ref().is_none_or(|s| t.start < *s) {
                lo = Some(t.start.clone());
            }
            if hi.as_ref().is_none_or(|l| t.end > *l) {
                hi = Some(t.end.clone());
            }
            min_seqno = min_seqno.min(t.seqno);
            max_seqno = max_seqno.max(t.seqno);
        }
        if lo.unwrap_or_default() != m.smallest_user_key
            || hi.unwrap_or_default() != m.largest_user_key
        {
            return Err(bad("key bounds differ from the properties"));
        }
        if points + m.range_tombstones > 0 && (min_seqno != m.min_seqno || max_seqno != m.max_seqno)
        {
            return Err(bad("seqno bounds differ from the properties"));
        }
        // Re-check the meta blocks' checksums too: open() did, but verify() promises a full pass.
        let f = inner.footer;
        for h in [f.range_del, f.properties, f.index] {
            inner.read_block_uncached(h)?;
        }
        if f.filter.size > 0 {
            inner.read_block_uncached(f.filter)?;
        }
        report.bytes_checked = m.file_size;
        Ok(report)
    }
}

impl Inner {
    fn corrupt(&self, offset: u64, what: &str) -> SstError {
        SstError::corruption(self.file_id, offset, what)
    }

    /// A data block through the cache.
    fn read_block(&self, h: BlockHandle) -> Result<Bytes, SstError> {
        if let Some(c) = &self.cache
            && let Some(b) = c.get(self.file_id, h.offset)
        {
            return Ok(b);
        }
        let b = self.read_block_uncached(h)?;
        if let Some(c) = &self.cache {
            c.insert(self.file_id, h.offset, b.clone());
        }
        Ok(b)
    }

    /// Reads a block and its trailer, checks the checksum and decompresses.
    fn read_block_uncached(&self, h: BlockHandle) -> Result<Bytes, SstError> {
        // Handles were checked against the file's layout at open, so `size` is below the file size.
        let size = usize::try_from(h.size)
            .ok()
            .filter(|&s| s <= MAX_BLOCK_BYTES)
            .ok_or_else(|| self.corrupt(h.offset, "block larger than the limit"))?;
        let mut buf = vec![0u8; size + BLOCK_TRAILER_BYTES];
        self.file
            .read_exact_at(&mut buf, h.offset)
            .map_err(|source| SstError::Io {
                op: format!("read block at {} of SST {}", h.offset, self.file_id),
                source,
            })?;
        let block_type = buf[size];
        let stored_crc = read_u32_le(&buf, size + 1)
            .ok_or_else(|| self.corrupt(h.offset, "block trailer truncated"))?;
        if self.verify_checksums && block_crc(&buf[..size], block_type) != stored_crc {
            return Err(self.corrupt(h.offset, "block checksum mismatch"));
        }
        buf.truncate(size);
        match block_type {
            BLOCK_TYPE_RAW => Ok(Bytes::from(buf)),
            BLOCK_TYPE_LZ4 => {
                let mut pos = 0;
                let raw_len = get_varint32(&buf, &mut pos)
                    .ok_or_else(|| self.corrupt(h.offset, "truncated lz4 block header"))?;
                // lz4 expands at most ~255x; a larger claim is corruption, and the bound keeps a damaged
                // length from allocating far more memory than the file is large.
                let max_len = (size.saturating_sub(pos))
                    .saturating_mul(255)
                    .saturating_add(16)
                    .min(MAX_BLOCK_BYTES);
                if raw_len > max_len {
                    return Err(self.corrupt(h.offset, "lz4 block claims an impossible size"));
                }
                let mut out = vec![0u8; raw_len];
                match lz4_flex::block::decompress_into(&buf[pos..], &mut out) {
                    Ok(n) if n == raw_len => Ok(Bytes::from(out)),
                    _ => Err(self.corrupt(h.offset, "lz4 block does not decompress")),
                }
            }
            _ => Err(self.corrupt(h.offset, "unknown block type")),
        }
    }
}

/// Decodes the index block into flat arrays and checks that its handles tile the data region.
fn decode_index(inner: &Inner, h: BlockHandle, data_end: u64) -> Result<Index, SstError> {
    let block = inner.read_block_uncached(h)?;
    let mut it = BlockIter::new(block, inner.file_id, h.offset)?;
    let mut index = Index {
        keys: Vec::new(),
        key_ends: Vec::new(),
        handles: Vec::new(),
    };
    let mut expected_offset = 0u64;
    it.seek_to_first()?;
    while it.valid() {
        let handle = BlockHandle::decode_varint(it.value())
            .ok_or_else(|| inner.corrupt(h.offset, "malformed block handle in index"))?;
        if handle.offset != expected_offset || handle.end() > data_end {
            return Err(inner.corrupt(h.offset, "index handles do not tile the data region"));
        }
        expected_offset = handle.end();
        if !index.handles.is_empty()
            && compare_internal(index.key(index.handles.len() - 1), it.key()) != Ordering::Less
        {
            return Err(inner.corrupt(h.offset, "index keys out of order"));
        }
        index.keys.extend_from_slice(it.key());
        index.key_ends.push(index.keys.len());
        index.handles.push(handle);
        it.next()?;
    }
    if expected_offset != data_end {
        return Err(inner.corrupt(h.offset, "index does not cover the data region"));
    }
    Ok(index)
}

/// Iterates an SSTable's point entries in both directions; implements [`InternalIterator`].
pub struct SstIterator {
    reader: SstReader,
    block_idx: usize,
    block: Option<BlockIter>,
}

impl SstIterator {
    /// Loads data block `i` (reusing the cursor's buffers).
    fn load_block(&mut self, i: usize) -> Result<(), SstError> {
        let inner = &self.reader.inner;
        let h = inner.index.handles[i];
        let data = inner.read_block(h)?;
        self.block_idx = i;
        match &mut self.block {
            Some(b) => b.reset(data, h.offset)?,
            None => self.block = Some(BlockIter::new(data, inner.file_id, h.offset)?),
        }
        Ok(())
    }

    fn cur(&self) -> Option<&BlockIter> {
        self.block.as_ref().filter(|b| b.valid())
    }

    /// Moves forward over blocks until one yields an entry (or the file ends).
    fn skip_forward(&mut self) -> Result<(), SstError> {
        while self.block.as_ref().is_some_and(|b| !b.valid()) {
            let next = self.block_idx + 1;
            if next >= self.reader.inner.index.len() {
                self.block = None;
                return Ok(());
            }
            self.load_block(next)?;
            if let Some(b) = &mut self.block {
                b.seek_to_first()?;
            }
        }
        Ok(())
    }

    /// Moves backward over blocks until one yields an entry (or the file's start is passed).
    fn skip_backward(&mut self) -> Result<(), SstError> {
        while self.block.as_ref().is_some_and(|b| !b.valid()) {
            if self.block_idx == 0 {
                self.block = None;
                return Ok(());
            }
            self.load_block(self.block_idx - 1)?;
            if let Some(b) = &mut self.block {
                b.seek_to_last()?;
            }
        }
        Ok(())
    }

    /// The current value as a zero-copy slice of the cached block.
    pub fn value_bytes(&self) -> Bytes {
        self.cur().map(BlockIter::value_bytes).unwrap_or_default()
    }

    fn run<F>(&mut self, f: F) -> Result<(), SstError>
    where
        F: FnOnce(&mut Self) -> Result<(), SstError>,
    {
        // A failed step leaves the iterator invalid rather than on a half-updated position.
        let r = f(self);
        if r.is_err() {
            self.block = None;
        }
        r
    }
}

impl InternalIterator for SstIterator {
    fn valid(&self) -> bool {
        self.cur().is_some()
    }

    fn seek_to_first(&mut self) -> Result<(), SstError> {
        self.run(|s| {
            if s.reader.inner.index.len() == 0 {
                s.block = None;
                return Ok(());
            }
            s.load_block(0)?;
            if let Some(b) = &mut s.block {
                b.seek_to_first()?;
            }
            s.skip_forward()
        })
    }

    fn seek_to_last(&mut self) -> Result<(), SstError> {
        self.run(|s| {
            let n = s.reader.inner.index.len();
            if n == 0 {
                s.block = None;
                return Ok(());
            }
            s.load_block(n - 1)?;
            if let Some(b) = &mut s.block {
                b.seek_to_last()?;
            }
            s.skip_backward()
        })
    }

    fn seek(&mut self, target: &[u8]) -> Result<(), SstError> {
        self.run(|s| {
            let i = s.reader.inner.index.find(target);
            if i >= s.reader.inner.index.len() {
                s.block = None;
                return Ok(());
            }
            s.load_block(i)?;
            if let Some(b) = &mut s.block {
                b.seek(target)?;
            }
            s.skip_forward()
        })
    }

    fn seek_for_prev(&mut self, target: &[u8]) -> Result<(), SstError> {
        self.run(|s| {
            let n = s.reader.inner.index.len();
            let i = s.reader.inner.index.find(target);
            if i >= n {
                return s.seek_to_last();
            }
            s.load_block(i)?;
            if let Some(b) = &mut s.block {
                b.seek_for_prev(target)?;
            }
            s.skip_backward()
        })
    }

    fn next(&mut self) -> Result<(), SstError> {
        self.run(|s| {
            match &mut s.block {
                Some(b) if b.valid() => b.next()?,
                _ => return Ok(()),
            }
            s.skip_forward()
        })
    }

    fn prev(&mut self) -> Result<(), SstError> {
        self.run(|s| {
            match &mut s.block {
                Some(b) if b.valid() => b.prev()?,
                _ => return Ok(()),
            }
            s.skip_backward()
        })
    }

    fn key(&self) -> &[u8] {
        self.cur().map(BlockIter::key).unwrap_or_default()
    }

    fn value(&self) -> &[u8] {
        self.cur().map(BlockIter::value).unwrap_or_default()
    }
}
