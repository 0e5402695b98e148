//! Storage of streams: a metadata record like every collection's (version, length, then the stream's own
//! header) and sub-records under the collection's versioned prefix, so DEL, RENAME, COPY, expiry and the
//! compaction filter treat a stream as any other collection (`docs/kv-encoding.md`, "Streams").
//!
//! Unlike the other collections, an empty stream is still a key (XTRIM to zero, XDEL of the last entry and
//! `XGROUP CREATE ... MKSTREAM` leave one), so its writes go through [`Keyspace::write_stream`], which
//! always keeps the metadata record.

use std::ops::Bound;

use bytes::Bytes;
use strata_storage::WriteBatch;

use super::{Entry, Keyspace, KvError, meta_key, prefix_end, sub_prefix};

/// One stream write: sub-record changes relative to the stream's element prefix.
#[derive(Debug, Default)]
pub struct StreamWrite {
    /// Ranges `[start, end)` of sub-records to drop, applied first.
    pub ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Point changes in key order: `Some(value)` stores, `None` deletes.
    pub ops: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Keyspace {
    /// Applies `write` to the stream at `key` (collection `version`) and stores its metadata record
    /// `entry` (`None`: unchanged, not rewritten), in one atomic batch. The caller holds the key's
    /// stripe.
    pub fn write_stream(
        &self,
        db: usize,
        key: &[u8],
        entry: Option<&Entry>,
        version: u64,
        write: &StreamWrite,
    ) -> Result<(), KvError> {
        self.changed(db, key);
        let tree = self.tree(db);
        let prefix = sub_prefix(key, version);
        // Sized up front: each operation is its key (prefix and element), value and a few header bytes.
        let longest = write.ops.keys().map(Vec::len).max().unwrap_or(0);
        let estimate: usize = write
            .ops
            .iter()
            .map(|(k, v)| prefix.len() + k.len() + v.as_ref().map_or(0, Vec::len) + 16)
            .sum::<usize>()
            + write.ranges.len() * (2 * prefix.len() + 48)
            + entry.map_or(0, |e| key.len() + e.payload.len() + 32);
        let mut batch = WriteBatch::with_capacity(estimate);
        let mut k = Vec::with_capacity(prefix.len() + longest.max(32));
        k.extend_from_slice(&prefix);
        for (start, end) in &write.ranges {
            let mut lo = Vec::with_capacity(prefix.len() + start.len());
            lo.extend_from_slice(&prefix);
            lo.extend_from_slice(start);
            k.truncate(prefix.len());
            k.extend_from_slice(end);
            batch.delete_range(tree, &lo, &k);
        }
        for (element, value) in &write.ops {
            k.truncate(prefix.len());
            k.extend_from_slice(element);
            match value {
                Some(v) => batch.put(tree, &k, v),
                None => batch.delete(tree, &k),
            }
        }
        if let Some(entry) = entry {
            self.note_write(db, key, entry);
            batch.put(tree, &meta_key(key), &entry.encode());
        }
        self.db.write_deferred(&batch)?;
        Ok(())
    }

    /// Visits the sub-records of a stream with element keys in `[start, end)` (an empty `end` means to the
    /// end of the stream's records), in key order or in reverse, until `visit` returns `false`.
    #[allow(clippy::too_many_arguments)]
    pub fn stream_scan(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        start: &[u8],
        end: &[u8],
        rev: bool,
        mut visit: impl FnMut(&[u8], Bytes) -> Result<bool, KvError>,
    ) -> Result<(), KvError> {
        let prefix = sub_prefix(key, version);
        let mut lo = prefix.clone();
        lo.extend_from_slice(start);
        let hi = if end.is_empty() {
            prefix_end(&prefix)
        } else {
            let mut hi = prefix.clone();
            hi.extend_from_slice(end);
            hi
        };
        if lo >= hi {
            return Ok(());
        }
        let range = self
            .tree(db)
            .range::<Vec<u8>, _>((Bound::Included(lo), Bound::Excluded(hi)));
        if rev {
            for item in range.rev() {
                let (k, v) = item?;
                if !visit(&k[prefix.len()..], v)? {
                    break;
                }
            }
        } else {
            for item in range {
                let (k, v) = item?;
                if !visit(&k[prefix.len()..], v)? {
                    break;
                }
            }
        }
        Ok(())
    }
}
