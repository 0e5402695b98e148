//! Low-level encodings shared by the writer and the reader: varints, block handles, block trailers and the
//! footer. See `docs/storage-format.md` (part 2) for the byte layout this implements.

/// Magic number at the very end of every SSTable ("STRATSST" in ASCII, little-endian u64 on disk).
pub const MAGIC: u64 = u64::from_le_bytes(*b"STRATSST");

/// Format version written by this code; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;

/// Footer: 5 handles (16 bytes each) + version (4) + crc (4) + magic (8).
pub const FOOTER_BYTES: usize = 5 * 16 + 4 + 4 + 8;

/// Trailer after every block's stored payload: a compression type byte and a crc32c of payload ++ type.
pub const BLOCK_TRAILER_BYTES: usize = 5;

/// Block compression type byte: stored as is.
pub const BLOCK_TYPE_RAW: u8 = 0;
/// Block compression type byte: `varint32 raw_len ++ lz4 block`.
pub const BLOCK_TYPE_LZ4: u8 = 1;

/// Upper bound on one block's uncompressed size. A single entry larger than the target block size gets a
/// block of its own, so this also bounds the size of one key plus value.
pub const MAX_BLOCK_BYTES: usize = 1 << 30;

/// Where a block lives in the file: offset and payload size (the trailer follows the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// Offset of the block's first byte.
    pub offset: u64,
    /// Bytes of stored payload, not counting the 5-byte trailer.
    pub size: u64,
}

impl BlockHandle {
    /// Offset just past the block's trailer.
    pub fn end(&self) -> u64 {
        self.offset
            .saturating_add(self.size)
            .saturating_add(BLOCK_TRAILER_BYTES as u64)
    }

    /// Appends the handle as two varints (used in index entries).
    pub fn encode_varint(&self, buf: &mut Vec<u8>) {
        put_varint64(buf, self.offset);
        put_varint64(buf, self.size);
    }

    /// Decodes a handle written by [`BlockHandle::encode_varint`]; it must use all of `buf`.
    pub fn decode_varint(buf: &[u8]) -> Option<BlockHandle> {
        let mut pos = 0;
        let offset = get_varint64(buf, &mut pos)?;
        let size = get_varint64(buf, &mut pos)?;
        (pos == buf.len()).then_some(BlockHandle { offset, size })
    }
}

/// The fixed-size record at the end of the file pointing at the meta blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footer {
    /// End of the data blocks region (a zero-size pseudo-handle: offset 0, size = bytes of data blocks).
    pub data: BlockHandle,
    /// Bloom filter block (size 0 and offset = its position when the file has no filter).
    pub filter: BlockHandle,
    /// Range tombstone block.
    pub range_del: BlockHandle,
    /// Properties block.
    pub properties: BlockHandle,
    /// Index block.
    pub index: BlockHandle,
}

impl Footer {
    /// Encodes the footer into exactly [`FOOTER_BYTES`] bytes.
    pub fn encode(&self) -> [u8; FOOTER_BYTES] {
        let mut out = [0u8; FOOTER_BYTES];
        let handles = [
            self.data,
            self.filter,
            self.range_del,
            self.properties,
            self.index,
        ];
        for (i, h) in handles.iter().enumerate() {
            out[i * 16..i * 16 + 8].copy_from_slice(&h.offset.to_le_bytes());
            out[i * 16 + 8..i * 16 + 16].copy_from_slice(&h.size.to_le_bytes());
        }
        out[80..84].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32c::crc32c(&out[..84]);
        out[84..88].copy_from_slice(&crc.to_le_bytes());
        out[88..96].copy_from_slice(&MAGIC.to_le_bytes());
        out
    }

    /// Decodes and checks a footer; the error says what is wrong.
    pub fn decode(buf: &[u8]) -> Result<Footer, &'static str> {
        if buf.len() != FOOTER_BYTES {
            return Err("footer has the wrong length");
        }
        if read_u64_le(buf, 88) != Some(MAGIC) {
            return Err("bad magic number (not an SST, or truncated)");
        }
        let stored_crc = read_u32_le(buf, 84).ok_or("footer too short")?;
        if crc32c::crc32c(&buf[..84]) != stored_crc {
            return Err("footer checksum mismatch");
        }
        if read_u32_le(buf, 80) != Some(FORMAT_VERSION) {
            return Err("unsupported format version");
        }
        let handle = |i: usize| -> Result<BlockHandle, &'static str> {
            Ok(BlockHandle {
                offset: read_u64_le(buf, i * 16).ok_or("footer too short")?,
                size: read_u64_le(buf, i * 16 + 8).ok_or("footer too short")?,
            })
        };
        Ok(Footer {
            data: handle(0)?,
            filter: handle(1)?,
            range_del: handle(2)?,
            properties: handle(3)?,
            index: handle(4)?,
        })
    }
}

/// Reads a little-endian u32 at `pos`, or None when out of bounds.
#[inline]
pub fn read_u32_le(buf: &[u8], pos: usize) -> Option<u32> {
    let bytes = buf.get(pos..pos.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(bytes);
    Some(u32::from_le_bytes(a))
}

/// Reads a little-endian u64 at `pos`, or None when out of bounds.
#[inline]
pub fn read_u64_le(buf: &[u8], pos: usize) -> Option<u64> {
    let bytes = buf.get(pos..pos.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(bytes);
    Some(u64::from_le_bytes(a))
}

/// Appends `v` as a LEB128 varint.
#[inline]
pub fn put_varint64(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Decodes a LEB128 varint at `*pos`, advancing it; None on truncation or overlong encoding.
#[inline]
pub fn get_varint64(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut result = 0u64;
    let mut shift = 0u32;
    // At most 10 bytes encode a u64; more is corruption, and the bound keeps the loop finite.
    for _ in 0..10 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        result |= bits << shift;
        if b < 0x80 {
            return Some(result);
        }
        shift += 7;
    }
    None
}

/// Decodes a varint that must fit a u32 (then widened to usize).
#[inline]
pub fn get_varint32(buf: &[u8], pos: &mut usize) -> Option<usize> {
    // Fast path: one-byte varints dominate in blocks (shared/unshared lengths, small values).
    if let Some(&b) = buf.get(*pos)
        && b < 0x80
    {
        *pos += 1;
        return Some(b as usize);
    }
    let v = get_varint64(buf, pos)?;
    u32::try_from(v).ok().map(|v| v as usize)
}

/// Computes the checksum stored in a block trailer: crc32c over payload then type byte.
#[inline]
pub fn block_crc(payload: &[u8], block_type: u8) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(payload), &[block_type])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_varint64(&mut buf, v);
            let mut pos = 0;
            assert_eq!(get_varint64(&buf, &mut pos), Some(v));
            assert_eq!(pos, buf.len());
        }
        let mut pos = 0;
        assert_eq!(get_varint64(&[0x80, 0x80], &mut pos), None);
        let mut pos = 0;
        assert_eq!(get_varint64(&[0xff; 11], &mut pos), None);
        let mut buf = Vec::new();
        put_varint64(&mut buf, u64::from(u32::MAX) + 1);
        let mut pos = 0;
        assert_eq!(get_varint32(&buf, &mut pos), None);
    }

    #[test]
    fn footer_round_trip_and_checks() {
        let f = Footer {
            data: BlockHandle { offset: 0, size: 9 },
            filter: BlockHandle { offset: 1, size: 2 },
            range_del: BlockHandle { offset: 3, size: 4 },
            properties: BlockHandle { offset: 5, size: 6 },
            index: BlockHandle { offset: 7, size: 8 },
        };
        let enc = f.encode();
        assert_eq!(Footer::decode(&enc), Ok(f));
        for i in 0..FOOTER_BYTES {
            let mut bad = enc;
            bad[i] ^= 0x10;
            assert!(Footer::decode(&bad).is_err(), "flip at {i} undetected");
        }
        assert!(Footer::decode(&enc[1..]).is_err());
    }
}
