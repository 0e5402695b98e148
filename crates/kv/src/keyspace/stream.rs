//! Storage of streams: a metadata record like every collection's (version, length, then the stream's own
//! header) and sub-records under the collection's versioned prefix, so DEL, RENAME, COPY, expiry and the
//! compaction filter treat a stream as any other collection (`docs/kv-encoding.md`, "Streams").
//!
//! Unlike the other collections, an empty stream is still a key (XTRIM to zero, XDEL of the last entry and
//! `XGROUP CREATE ... MKSTREAM` leave one), so its writes go through [`Keyspace::write_stream`], which
//! always keeps the metadata record.

use std::ops::Bound;

use bytes::Bytes;

use super::{
    Entry, Keyspace, KvError, meta_key_into, prefix_end, sub_prefix, sub_prefix_into, with_scratch,
};

/// One stream write: sub-record changes relative to the stream's element prefix.
#[derive(Debug, Default)]
pub struct StreamWrite {
    /// Ranges `[start, end)` of sub-records to drop, applied first.
    pub ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Point changes in key order: `Some(value)` stores, `None` deletes.
    pub ops: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

/// One point change of a [`StreamWrite`]: the element key, and the value stored (`None`: deleted).
pub type Change<'a> = (&'a Vec<u8>, &'a Option<Vec<u8>>);

impl StreamWrite {
    /// Whether one of the ranges may drop sub-records whose element key starts with `tag` (a range's empty
    /// end runs to the end of the stream's records).
    pub fn ranges_touch(&self, tag: u8) -> bool {
        self.ranges.iter().any(|(start, end)| {
            start.as_slice() < [tag.saturating_add(1)].as_slice()
                && (end.is_empty() || end.as_slice() > [tag].as_slice())
        })
    }

    /// The point changes of sub-records whose element key starts with `tag`, in key order.
    pub fn ops_tagged(&self, tag: u8) -> impl Iterator<Item = Change<'_>> {
        let (lo, hi) = ([tag], [tag.saturating_add(1)]);
        self.ops
            .range::<[u8], _>((Bound::Included(&lo[..]), Bound::Excluded(&hi[..])))
    }

    /// What this write does to the sub-records whose element key starts with `tag`: whether a range may
    /// drop some ([`StreamWrite::ranges_touch`]) and the point changes ([`StreamWrite::ops_tagged`]);
    /// `None` when it leaves them all alone. What an in-memory mirror of one record kind applies.
    pub fn changes_to(&self, tag: u8) -> Option<(bool, impl Iterator<Item = Change<'_>>)> {
        let ranged = self.ranges_touch(tag);
        let mut ops = self.ops_tagged(tag).peekable();
        (ranged || ops.peek().is_some()).then_some((ranged, ops))
    }
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
        if let Some(entry) = entry {
            self.note_write(db, key, entry);
        }
        // In the thread's reusable buffers: an XADD used to allocate its batch, every key and the encoded
        // header afresh.
        with_scratch(|scratch| {
            let (batch, k, buf) = (&mut scratch.batch, &mut scratch.key, &mut scratch.value);
            sub_prefix_into(key, version, k);
            let plen = k.len();
            for (start, end) in &write.ranges {
                buf.clear();
                buf.extend_from_slice(&k[..plen]);
                buf.extend_from_slice(start);
                k.truncate(plen);
                k.extend_from_slice(end);
                batch.delete_range(tree, buf, k);
            }
            for (element, value) in &write.ops {
                k.truncate(plen);
                k.extend_from_slice(element);
                match value {
                    Some(v) => batch.put(tree, k, v),
                    None => batch.delete(tree, k),
                }
            }
            if let Some(entry) = entry {
                meta_key_into(key, k);
                entry.encode_into(buf);
                batch.put(tree, k, buf);
            }
            let ops = batch.len() as u64;
            let seqno = self.db.write_deferred(batch)?.seqno;
            // The next command on the stream (the next XADD, XACK, ...) reads the metadata record from
            // memory while nothing else was written.
            if entry.is_some() {
                self.remember_written(db, key, seqno, buf);
            } else if ops > 0 {
                self.remember_unchanged(db, key, seqno + 1 - ops, seqno);
            }
            Ok(())
        })
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

#[cfg(test)]
mod tests {
    use super::StreamWrite;

    #[test]
    fn ranges_and_point_changes_by_record_kind() {
        let touches = |start: &[u8], end: &[u8]| {
            let mut w = StreamWrite::default();
            w.ranges.push((start.to_vec(), end.to_vec()));
            w.ranges_touch(b'p')
        };
        assert!(touches(b"p", b"q"));
        assert!(touches(b"a", b""));
        assert!(touches(b"p\x00\x00", b"p\x00\x01"));
        assert!(!touches(b"e", b"f"));
        assert!(!touches(b"q", b""));
        assert!(!touches(b"c", b"p"));
        let mut w = StreamWrite::default();
        for k in [&b"e1"[..], b"g1", b"g2", b"p1", b"g"] {
            w.ops.insert(k.to_vec(), None);
        }
        let tagged: Vec<&[u8]> = w.ops_tagged(b'g').map(|(k, _)| &k[..]).collect();
        assert_eq!(tagged, [&b"g"[..], b"g1", b"g2"]);
    }
}
