//! Encoding of the properties block ([`SstMeta`]) and the range-tombstone block.

use super::format::{get_varint64, put_varint64};
use super::{RangeTombstone, SstMeta};
use crate::key::MAX_SEQNO;

/// Properties as persisted: the meta plus layout facts the reader cross-checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    pub meta: SstMeta,
    pub data_blocks: u64,
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    put_varint64(buf, b.len() as u64);
    buf.extend_from_slice(b);
}

fn get_bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(get_varint64(buf, pos)?).ok()?;
    let end = pos.checked_add(len)?;
    let out = buf.get(*pos..end)?;
    *pos = end;
    Some(out)
}

impl Properties {
    /// Encodes all fields except `file_size`, which the reader takes from the file itself.
    pub fn encode(&self) -> Vec<u8> {
        let m = &self.meta;
        let mut buf = Vec::with_capacity(64 + m.smallest_user_key.len() + m.largest_user_key.len());
        for v in [
            m.entries,
            m.point_tombstones,
            m.range_tombstones,
            m.min_seqno,
            m.max_seqno,
            m.raw_key_bytes,
            m.raw_value_bytes,
            self.data_blocks,
        ] {
            put_varint64(&mut buf, v);
        }
        put_bytes(&mut buf, &m.smallest_user_key);
        put_bytes(&mut buf, &m.largest_user_key);
        buf
    }

    /// Decodes a properties block; it must be consumed exactly.
    pub fn decode(buf: &[u8], file_size: u64) -> Result<Properties, &'static str> {
        let mut pos = 0;
        let mut ints = [0u64; 8];
        for v in &mut ints {
            *v = get_varint64(buf, &mut pos).ok_or("truncated properties")?;
        }
        let smallest = get_bytes(buf, &mut pos).ok_or("truncated properties")?;
        let largest = get_bytes(buf, &mut pos).ok_or("truncated properties")?;
        if pos != buf.len() {
            return Err("trailing bytes in properties");
        }
        let [
            entries,
            point_tombstones,
            range_tombstones,
            min_seqno,
            max_seqno,
            raw_key_bytes,
            raw_value_bytes,
            data_blocks,
        ] = ints;
        if point_tombstones > entries || min_seqno > max_seqno || max_seqno > MAX_SEQNO {
            return Err("inconsistent properties");
        }
        Ok(Properties {
            meta: SstMeta {
                file_size,
                entries,
                point_tombstones,
                range_tombstones,
                smallest_user_key: smallest.to_vec(),
                largest_user_key: largest.to_vec(),
                min_seqno,
                max_seqno,
                raw_key_bytes,
                raw_value_bytes,
            },
            data_blocks,
        })
    }
}

/// Encodes range tombstones: `varint count` then per tombstone `bytes start, bytes end, varint seqno`.
pub fn encode_range_tombstones(ts: &[RangeTombstone]) -> Vec<u8> {
    let mut buf = Vec::new();
    put_varint64(&mut buf, ts.len() as u64);
    for t in ts {
        put_bytes(&mut buf, &t.start);
        put_bytes(&mut buf, &t.end);
        put_varint64(&mut buf, t.seqno);
    }
    buf
}

/// Decodes a range-tombstone block; it must be consumed exactly and every tombstone must be non-empty.
pub fn decode_range_tombstones(buf: &[u8]) -> Result<Vec<RangeTombstone>, &'static str> {
    let mut pos = 0;
    let count = get_varint64(buf, &mut pos).ok_or("truncated range tombstones")?;
    // Each tombstone takes at least 3 bytes, which bounds the allocation by the block's size.
    if count > (buf.len() / 3) as u64 {
        return Err("range tombstone count exceeds the block");
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let start = get_bytes(buf, &mut pos).ok_or("truncated range tombstone")?;
        let end = get_bytes(buf, &mut pos).ok_or("truncated range tombstone")?;
        let seqno = get_varint64(buf, &mut pos).ok_or("truncated range tombstone")?;
        if start >= end || seqno > MAX_SEQNO {
            return Err("invalid range tombstone");
        }
        out.push(RangeTombstone {
            start: start.to_vec(),
            end: end.to_vec(),
            seqno,
        });
    }
    if pos != buf.len() {
        return Err("trailing bytes in range tombstones");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let p = Properties {
            meta: SstMeta {
                file_size: 99,
                entries: 10,
                point_tombstones: 3,
                range_tombstones: 1,
                smallest_user_key: b"a".to_vec(),
                largest_user_key: b"zz".to_vec(),
                min_seqno: 4,
                max_seqno: 400,
                raw_key_bytes: 100,
                raw_value_bytes: 1000,
            },
            data_blocks: 2,
        };
        assert_eq!(Properties::decode(&p.encode(), 99), Ok(p.clone()));
        let enc = p.encode();
        assert!(Properties::decode(&enc[..enc.len() - 1], 99).is_err());
        let ts = vec![RangeTombstone {
            start: b"a".to_vec(),
            end: b"b".to_vec(),
            seqno: 5,
        }];
        assert_eq!(
            decode_range_tombstones(&encode_range_tombstones(&ts)),
            Ok(ts)
        );
        assert!(decode_range_tombstones(&[0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
