//! [`SstWriter`]: streams sorted entries into an SSTable.

use std::cmp::Ordering;
use std::io::Write;

use super::block::BlockBuilder;
use super::bloom::{BloomBuilder, key_hash};
use super::format::{BLOCK_TYPE_LZ4, BLOCK_TYPE_RAW, BlockHandle, Footer, block_crc, put_varint64};
use super::props::{Properties, encode_range_tombstones};
use super::{Compression, MAX_ENTRY_BYTES, RangeTombstone, SstError, SstMeta, SstOptions};
use crate::key::{MAX_SEQNO, ValueKind, compare_internal, parse_internal_key, user_key};

/// Bounds on the configurable block size: tiny blocks bloat the index, huge ones make every point read
/// decode megabytes.
const MIN_BLOCK_BYTES: usize = 256;
const MAX_TARGET_BLOCK_BYTES: usize = 64 << 20;
/// Restart interval of the index block: the reader decodes the index once at open, so prefix compression
/// only saves space.
const INDEX_RESTART_INTERVAL: usize = 16;

/// Writes one SSTable to `out`. Entries go in strictly increasing internal-key order; the caller fsyncs and
/// renames the finished file.
pub struct SstWriter<W: Write> {
    out: W,
    opts: SstOptions,
    offset: u64,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    bloom: Option<BloomBuilder>,
    last_key: Vec<u8>,
    range_tombstones: Vec<RangeTombstone>,
    props: Properties,
    compress_buf: Vec<u8>,
    failed: bool,
}

impl<W: Write> SstWriter<W> {
    /// A writer producing an SSTable with `opts` into `out`.
    pub fn new(out: W, mut opts: SstOptions) -> Self {
        opts.block_size_bytes = opts
            .block_size_bytes
            .clamp(MIN_BLOCK_BYTES, MAX_TARGET_BLOCK_BYTES);
        opts.restart_interval = opts.restart_interval.clamp(1, 1024);
        SstWriter {
            out,
            data_block: BlockBuilder::new(opts.restart_interval),
            index_block: BlockBuilder::new(INDEX_RESTART_INTERVAL),
            bloom: (opts.bloom_bits_per_key > 0).then(BloomBuilder::default),
            opts,
            offset: 0,
            last_key: Vec::new(),
            range_tombstones: Vec::new(),
            props: Properties {
                meta: SstMeta {
                    min_seqno: MAX_SEQNO,
                    ..SstMeta::default()
                },
                data_blocks: 0,
            },
            compress_buf: Vec::new(),
            failed: false,
        }
    }

    /// A hint that about `keys` distinct user keys are coming (a memtable's), so the filter's key list is
    /// sized once.
    pub fn expect_keys(&mut self, keys: usize) {
        if let Some(bloom) = &mut self.bloom {
            bloom.reserve(keys);
        }
    }

    /// Adds a point entry (put or point delete). Keys must be strictly increasing by
    /// [`compare_internal`]; range tombstones go through [`SstWriter::add_range_tombstone`].
    pub fn add(&mut self, internal_key: &[u8], value: &[u8]) -> Result<(), SstError> {
        if self.failed {
            return Err(SstError::WriterFailed);
        }
        let parsed = parse_internal_key(internal_key)?;
        if parsed.kind == ValueKind::RangeDelete {
            return Err(SstError::InvalidArgument {
                what: "range deletes are added with add_range_tombstone, not add".into(),
            });
        }
        if internal_key.len().saturating_add(value.len()) > MAX_ENTRY_BYTES {
            return Err(SstError::InvalidArgument {
                what: format!(
                    "entry of {} bytes exceeds the {MAX_ENTRY_BYTES}-byte limit",
                    internal_key.len() + value.len()
                ),
            });
        }
        let first = self.props.meta.entries == 0;
        if !first && compare_internal(&self.last_key, internal_key) != Ordering::Less {
            return Err(SstError::KeyOrder {
                prev_key: self.last_key.clone(),
                key: internal_key.to_vec(),
            });
        }
        let new_user_key = first || user_key(&self.last_key) != parsed.user_key;
        if let Some(bloom) = &mut self.bloom
            && new_user_key
        {
            bloom.add_hash(key_hash(parsed.user_key));
        }
        let m = &mut self.props.meta;
        if first {
            m.smallest_user_key = parsed.user_key.to_vec();
        }
        if new_user_key {
            m.largest_user_key.clear();
            m.largest_user_key.extend_from_slice(parsed.user_key);
        }
        m.entries += 1;
        if parsed.kind == ValueKind::Delete {
            m.point_tombstones += 1;
        }
        m.min_seqno = m.min_seqno.min(parsed.seqno);
        m.max_seqno = m.max_seqno.max(parsed.seqno);
        m.raw_key_bytes += internal_key.len() as u64;
        m.raw_value_bytes += value.len() as u64;

        self.data_block.add(internal_key, value);
        self.last_key.clear();
        self.last_key.extend_from_slice(internal_key);
        if self.data_block.estimated_size() >= self.opts.block_size_bytes {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Adds a range tombstone deleting `start..end` below `seqno`; any order.
    pub fn add_range_tombstone(&mut self, t: RangeTombstone) -> Result<(), SstError> {
        if self.failed {
            return Err(SstError::WriterFailed);
        }
        if t.start >= t.end {
            return Err(SstError::InvalidArgument {
                what: "range tombstone start must be below its end".into(),
            });
        }
        if t.seqno > MAX_SEQNO {
            return Err(SstError::InvalidArgument {
                what: "range tombstone seqno exceeds MAX_SEQNO".into(),
            });
        }
        if t.start.len().saturating_add(t.end.len()) > MAX_ENTRY_BYTES {
            return Err(SstError::InvalidArgument {
                what: "range tombstone bounds exceed the entry size limit".into(),
            });
        }
        self.range_tombstones.push(t);
        Ok(())
    }

    /// Bytes written so far plus the pending block, index and filter: for splitting outputs at a target
    /// file size.
    pub fn estimated_size(&self) -> u64 {
        let filter = self.bloom.as_ref().map_or(0, |b| {
            (b.len() as u64 * u64::from(self.opts.bloom_bits_per_key)) / 8
        });
        self.offset
            + self.data_block.estimated_size() as u64
            + self.index_block.estimated_size() as u64
            + filter
    }

    fn write_all(&mut self, buf: &[u8], what: &str) -> Result<(), SstError> {
        if let Err(source) = self.out.write_all(buf) {
            self.failed = true;
            return Err(SstError::Io {
                op: format!("write SST {what} at offset {}", self.offset),
                source,
            });
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Writes `payload` followed by its trailer; returns its handle.
    fn write_raw_block(
        &mut self,
        payload: &[u8],
        block_type: u8,
        what: &str,
    ) -> Result<BlockHandle, SstError> {
        let handle = BlockHandle {
            offset: self.offset,
            size: payload.len() as u64,
        };
        let mut trailer = [0u8; 5];
        trailer[0] = block_type;
        trailer[1..].copy_from_slice(&block_crc(payload, block_type).to_le_bytes());
        self.write_all(payload, what)?;
        self.write_all(&trailer, what)?;
        Ok(handle)
    }

    fn flush_data_block(&mut self) -> Result<(), SstError> {
        if self.data_block.is_empty() {
            return Ok(());
        }
        let mut block = std::mem::replace(&mut self.data_block, BlockBuilder::new(1));
        let contents = block.finish();
        debug_assert!(
            super::block::BlockIter::new(bytes::Bytes::copy_from_slice(contents), 0, 0).is_ok(),
            "built a block the reader rejects"
        );
        let mut compressed = std::mem::take(&mut self.compress_buf);
        let use_lz4 = self.opts.compression == Compression::Lz4
            && compress_lz4(contents, &mut compressed)
            && compressed.len() < contents.len() - contents.len() / 8;
        let result = if use_lz4 {
            self.write_raw_block(&compressed, BLOCK_TYPE_LZ4, "data block")
        } else {
            self.write_raw_block(contents, BLOCK_TYPE_RAW, "data block")
        };
        self.compress_buf = compressed;
        let handle = result?;
        let mut handle_buf = Vec::with_capacity(20);
        handle.encode_varint(&mut handle_buf);
        self.index_block.add(block.last_key(), &handle_buf);
        self.props.data_blocks += 1;
        block.reset();
        self.data_block = block;
        Ok(())
    }

    /// Writes the remaining blocks and the footer; returns the output and the file's meta.
    pub fn finish(mut self) -> Result<(W, SstMeta), SstError> {
        if self.failed {
            return Err(SstError::WriterFailed);
        }
        self.flush_data_block()?;
        let data = BlockHandle {
            offset: 0,
            size: self.offset,
        };

        let filter = match self.bloom.take() {
            Some(b) if !b.is_empty() => {
                let block = b.finish(self.opts.bloom_bits_per_key);
                self.write_raw_block(&block, BLOCK_TYPE_RAW, "filter block")?
            }
            _ => BlockHandle {
                offset: self.offset,
                size: 0,
            },
        };

        let mut ts = std::mem::take(&mut self.range_tombstones);
        ts.sort_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(b.seqno.cmp(&a.seqno))
                .then(a.end.cmp(&b.end))
        });
        ts.dedup();
        let range_del = self.write_raw_block(
            &encode_range_tombstones(&ts),
            BLOCK_TYPE_RAW,
            "range tombstone block",
        )?;

        let m = &mut self.props.meta;
        m.range_tombstones = ts.len() as u64;
        for t in &ts {
            if m.entries == 0 && m.smallest_user_key.is_empty() && m.largest_user_key.is_empty() {
                m.smallest_user_key = t.start.clone();
                m.largest_user_key = t.end.clone();
            }
            if t.start < m.smallest_user_key {
                m.smallest_user_key = t.start.clone();
            }
            if t.end > m.largest_user_key {
                m.largest_user_key = t.end.clone();
            }
            m.min_seqno = m.min_seqno.min(t.seqno);
            m.max_seqno = m.max_seqno.max(t.seqno);
        }
        if m.entries == 0 && ts.is_empty() {
            m.min_seqno = 0;
            m.max_seqno = 0;
        }
        let props_bytes = self.props.encode();
        let properties = self.write_raw_block(&props_bytes, BLOCK_TYPE_RAW, "properties block")?;

        let mut index_block = std::mem::replace(&mut self.index_block, BlockBuilder::new(1));
        let index = self.write_raw_block(index_block.finish(), BLOCK_TYPE_RAW, "index block")?;

        let footer = Footer {
            data,
            filter,
            range_del,
            properties,
            index,
        }
        .encode();
        self.write_all(&footer, "footer")?;
        if let Err(source) = self.out.flush() {
            return Err(SstError::Io {
                op: "flush SST".into(),
                source,
            });
        }
        let mut meta = self.props.meta;
        meta.file_size = self.offset;
        Ok((self.out, meta))
    }
}

/// Compresses `raw` into `out` as `varint32 raw_len ++ lz4 block`; false if lz4 fails.
fn compress_lz4(raw: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    put_varint64(out, raw.len() as u64);
    let header = out.len();
    out.resize(
        header + lz4_flex::block::get_maximum_output_size(raw.len()),
        0,
    );
    match lz4_flex::block::compress_into(raw, &mut out[header..]) {
        Ok(n) => {
            out.truncate(header + n);
            true
        }
        Err(_) => false,
    }
}
