//! Redis's packed encodings, as they appear inside RDB payloads: the listpack (Redis 7's small hashes,
//! sorted sets, sets and list nodes), the ziplist (its predecessor, Redis 3.2 to 6.2), the intset (small
//! sets of integers) and the zipmap (hashes before Redis 2.6).
//!
//! Every decoder takes the whole blob, which came from a client's RESTORE and so may be anything: each
//! header, length and count is checked against the bytes actually present before it is used, every walk
//! advances by at least one byte per step so it ends within the blob's length, and no allocation is sized
//! by a count the blob merely claims. A blob that breaks a rule Redis's own integrity check enforces is
//! `None`. Integers inside ziplists and listpacks are kept as integers ([`Packed::Int`]); the caller turns
//! them into their decimal strings, as Redis does when it converts such an encoding.
//!
//! [`ListpackWriter`] is the way back, byte-for-byte as Redis encodes a listpack, for formats (streams)
//! whose RDB form has no plain alternative.

use bytes::Bytes;

use crate::cmd::string_to_i64;

/// One element of a listpack or ziplist.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Packed<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl Packed<'_> {
    /// The element as a string: an integer becomes its decimal form, as Redis converts it.
    pub(super) fn to_bytes(&self) -> Bytes {
        match self {
            Packed::Int(v) => Bytes::from(v.to_string()),
            Packed::Str(s) => Bytes::copy_from_slice(s),
        }
    }

    /// The element as an integer: a string counts only in the canonical decimal form Redis's
    /// `string2ll` accepts (no sign but `-`, no leading zero, within `i64`).
    pub(super) fn as_int(&self) -> Option<i64> {
        match self {
            Packed::Int(v) => Some(*v),
            Packed::Str(s) => string_to_i64(s),
        }
    }
}

/// Splits `n` bytes off the front of `data`.
fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = data.split_at_checked(n)?;
    *data = rest;
    Some(head)
}

/// Splits `N` bytes off the front of `data` as an array.
fn take_array<const N: usize>(data: &mut &[u8]) -> Option<[u8; N]> {
    take(data, N)?.try_into().ok()
}

/// A little-endian integer `bytes.len()` bytes wide (at most 8), sign-extended from its top bit.
fn signed_le(bytes: &[u8]) -> i64 {
    let mut buf = [0u8; 8];
    let width = bytes.len().min(8);
    buf[8 - width..].copy_from_slice(&bytes[..width]);
    // The value sits in the top bytes; the arithmetic shift brings it down and extends its sign.
    i64::from_le_bytes(buf) >> (8 * (8 - width))
}

// Listpack (Redis's listpack.c): a 6-byte header (total bytes, element count, both little-endian), the
// entries, then 0xFF. Each entry is an encoding byte with its data, followed by a "backlen" holding the
// size of encoding and data, so the list can be walked backwards.

const LP_HEADER_BYTES: usize = 6;
const LP_EOF: u8 = 0xff;
/// The header's element count when there are too many to count in 16 bits: the reader walks them.
const LP_COUNT_UNKNOWN: u16 = u16::MAX;

const LP_7BIT_UINT_MAX: u8 = 0x7f;
const LP_13BIT_INT: u8 = 0xc0;
const LP_6BIT_STR: u8 = 0x80;
const LP_12BIT_STR: u8 = 0xe0;
const LP_32BIT_STR: u8 = 0xf0;
const LP_16BIT_INT: u8 = 0xf1;
const LP_24BIT_INT: u8 = 0xf2;
const LP_32BIT_INT: u8 = 0xf3;
const LP_64BIT_INT: u8 = 0xf4;

/// The elements of a listpack, or `None` unless it passes the checks of Redis's
/// `lpValidateIntegrity`: the header's total equals the blob's length, every entry lies inside it with
/// its backlen matching, 0xFF is the last byte, and the header's count (unless unknown) is right.
pub(super) fn listpack(blob: &[u8]) -> Option<Vec<Packed<'_>>> {
    let (mut header, mut rest) = blob.split_at_checked(LP_HEADER_BYTES)?;
    let total = u32::from_le_bytes(take_array(&mut header)?);
    let count = u16::from_le_bytes(take_array(&mut header)?);
    if usize::try_from(total).ok()? != blob.len() {
        return None;
    }
    // Every entry takes at least two bytes, so the remaining length bounds what the count may claim.
    let mut elements = Vec::with_capacity(usize::from(count).min(rest.len() / 2));
    // Each step consumes at least two bytes, so the walk ends within `blob.len() / 2` steps.
    loop {
        match rest {
            [LP_EOF] => break,
            [] | [LP_EOF, ..] => return None,
            _ => {}
        }
        let (element, entry_bytes) = listpack_entry(rest)?;
        take(&mut rest, entry_bytes)?;
        let (backlen, backlen_bytes) = encode_backlen(entry_bytes);
        if take(&mut rest, backlen_bytes)? != &backlen[..backlen_bytes] {
            return None;
        }
        elements.push(element);
    }
    if count != LP_COUNT_UNKNOWN && usize::from(count) != elements.len() {
        return None;
    }
    Some(elements)
}

/// The listpack entry at the start of `data` and the bytes its encoding and data take (its backlen not
/// counted).
fn listpack_entry(data: &[u8]) -> Option<(Packed<'_>, usize)> {
    let mut rest = data;
    let first = take_array::<1>(&mut rest)?[0];
    let (element, header_bytes) = match first {
        0..=LP_7BIT_UINT_MAX => (Packed::Int(i64::from(first)), 1),
        LP_6BIT_STR..=0xbf => {
            let len = usize::from(first & 0x3f);
            (Packed::Str(take(&mut rest, len)?), 1 + len)
        }
        LP_13BIT_INT..=0xdf => {
            let low = take_array::<1>(&mut rest)?[0];
            // 13 bits in two's complement: bit 12 is the sign.
            let raw = (i64::from(first & 0x1f) << 8) | i64::from(low);
            let value = if raw >= 1 << 12 { raw - (1 << 13) } else { raw };
            (Packed::Int(value), 2)
        }
        LP_12BIT_STR..=0xef => {
            let low = take_array::<1>(&mut rest)?[0];
            let len = (usize::from(first & 0x0f) << 8) | usize::from(low);
            (Packed::Str(take(&mut rest, len)?), 2 + len)
        }
        LP_32BIT_STR => {
            let len = usize::try_from(u32::from_le_bytes(take_array(&mut rest)?)).ok()?;
            (Packed::Str(take(&mut rest, len)?), 5 + len)
        }
        LP_16BIT_INT => (Packed::Int(signed_le(take(&mut rest, 2)?)), 3),
        LP_24BIT_INT => (Packed::Int(signed_le(take(&mut rest, 3)?)), 4),
        LP_32BIT_INT => (Packed::Int(signed_le(take(&mut rest, 4)?)), 5),
        LP_64BIT_INT => (Packed::Int(signed_le(take(&mut rest, 8)?)), 9),
        _ => return None,
    };
    Some((element, header_bytes))
}

/// Redis's `lpEncodeBacklen`: `len` in 1 to 5 bytes, seven bits each, most significant first, every byte
/// but the first flagged with 0x80 so a backwards reader knows to go on. The thresholds are Redis's own
/// (16383 already takes three bytes), and a reader compares bytes, so they must be kept exactly.
fn encode_backlen(len: usize) -> ([u8; 5], usize) {
    let len = len as u64;
    let bytes = match len {
        0..=127 => 1,
        128..16_383 => 2,
        16_383..2_097_151 => 3,
        2_097_151..268_435_455 => 4,
        _ => 5,
    };
    let mut out = [0u8; 5];
    for (i, byte) in out[..bytes].iter_mut().enumerate() {
        let part = (len >> (7 * (bytes - 1 - i))) as u8;
        // The first byte holds all the bits left above the others (it is below 128 but for a length
        // over 2^35, which no listpack reaches); the others hold seven bits and the flag.
        *byte = if i == 0 { part } else { (part & 0x7f) | 0x80 };
    }
    (out, bytes)
}

/// Builds a listpack the way Redis encodes one, so what it writes loads in Redis as it would in strata.
///
/// Integers take the smallest integer encoding that holds them; strings take a 6-, 12- or 32-bit length;
/// every entry is followed by its backlen; the header holds the total size and the element count (65535,
/// "walk to count", from 65535 elements on).
#[derive(Debug, Default)]
pub(super) struct ListpackWriter {
    /// The encoded entries, without header or end byte.
    entries: Vec<u8>,
    /// How many entries `entries` holds.
    count: usize,
}

impl ListpackWriter {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Appends an integer in Redis's smallest encoding for it.
    pub(super) fn push_int(&mut self, v: i64) {
        let start = self.entries.len();
        let le = v.to_le_bytes();
        if (0..=i64::from(LP_7BIT_UINT_MAX)).contains(&v) {
            self.entries.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            // 13 bits in two's complement: the value plus 2^13 when negative.
            let raw = if v < 0 { v + (1 << 13) } else { v };
            self.entries
                .extend_from_slice(&[LP_13BIT_INT | (raw >> 8) as u8, raw as u8]);
        } else if i16::try_from(v).is_ok() {
            self.entries.push(LP_16BIT_INT);
            self.entries.extend_from_slice(&le[..2]);
        } else if (-(1 << 23)..1 << 23).contains(&v) {
            self.entries.push(LP_24BIT_INT);
            self.entries.extend_from_slice(&le[..3]);
        } else if i32::try_from(v).is_ok() {
            self.entries.push(LP_32BIT_INT);
            self.entries.extend_from_slice(&le[..4]);
        } else {
            self.entries.push(LP_64BIT_INT);
            self.entries.extend_from_slice(&le);
        }
        self.end_entry(start);
    }

    /// Appends a string; one that is an integer in canonical decimal form (as Redis's
    /// `lpStringToInt64` decides) is stored as that integer, as Redis stores it.
    pub(super) fn push_str(&mut self, s: &[u8]) {
        if let Some(v) = string_to_i64(s) {
            return self.push_int(v);
        }
        let start = self.entries.len();
        let len = s.len();
        if len < 64 {
            self.entries.push(LP_6BIT_STR | len as u8);
        } else if len < 4096 {
            self.entries
                .extend_from_slice(&[LP_12BIT_STR | (len >> 8) as u8, len as u8]);
        } else {
            self.entries.push(LP_32BIT_STR);
            // A listpack cannot exceed 4 GiB (its header counts bytes in 32 bits); see `finish`.
            self.entries
                .extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        }
        self.entries.extend_from_slice(s);
        self.end_entry(start);
    }

    /// Appends the backlen of the entry that starts at `start` and counts it.
    fn end_entry(&mut self, start: usize) {
        let (backlen, bytes) = encode_backlen(self.entries.len() - start);
        self.entries.extend_from_slice(&backlen[..bytes]);
        self.count += 1;
    }

    /// The number of elements pushed so far.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.count
    }

    /// The listpack. Its size must stay below 4 GiB, which Redis's own limits on what goes into one
    /// listpack (a stream node's `stream-node-max-bytes`, for one) keep far away.
    pub(super) fn finish(self) -> Vec<u8> {
        let total = LP_HEADER_BYTES + self.entries.len() + 1;
        debug_assert!(u32::try_from(total).is_ok(), "a listpack over 4 GiB");
        // From 65535 elements on, the count reads as "unknown" (65535 itself included).
        let count = u16::try_from(self.count).unwrap_or(LP_COUNT_UNKNOWN);
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&self.entries);
        out.push(LP_EOF);
        out
    }
}

// Ziplist (Redis's ziplist.c, the small-collection encoding before listpack): a 10-byte header (total
// bytes, offset of the last entry, element count; little-endian), the entries, then 0xFF. Each entry is
// the previous entry's size (one byte below 254, else 0xFE and four bytes), an encoding and its data.

const ZL_HEADER_BYTES: usize = 10;
const ZL_END: u8 = 0xff;
/// The first byte of a five-byte previous-entry size.
const ZL_PREVLEN_BIG: u8 = 0xfe;
/// The header's element count when there are too many to count in 16 bits.
const ZL_COUNT_UNKNOWN: u16 = u16::MAX;

const ZL_INT16: u8 = 0xc0;
const ZL_INT32: u8 = 0xd0;
const ZL_INT64: u8 = 0xe0;
const ZL_INT24: u8 = 0xf0;
const ZL_INT8: u8 = 0xfe;
/// 1111xxxx with xxxx from 0001 to 1101: the integers 0 to 12, held in the encoding byte itself.
const ZL_IMMEDIATE_MIN: u8 = 0xf1;
const ZL_IMMEDIATE_MAX: u8 = 0xfd;

/// The elements of a ziplist, or `None` unless it passes the checks of Redis's
/// `ziplistValidateIntegrity`: the header's total equals the blob's length, each entry's previous-entry
/// size is right and it lies inside the blob, the tail offset points at the last entry, 0xFF is the last
/// byte, and the header's count (unless unknown) is right.
pub(super) fn ziplist(blob: &[u8]) -> Option<Vec<Packed<'_>>> {
    let mut header = blob;
    let total = u32::from_le_bytes(take_array(&mut header)?);
    let tail = u32::from_le_bytes(take_array(&mut header)?);
    let count = u16::from_le_bytes(take_array(&mut header)?);
    if usize::try_from(total).ok()? != blob.len() {
        return None;
    }
    // Every entry takes at least two bytes, so the remaining length bounds what the count may claim.
    let mut elements = Vec::with_capacity(usize::from(count).min(blob.len() / 2));
    let mut offset = ZL_HEADER_BYTES;
    let (mut last_offset, mut last_bytes) = (None, 0usize);
    // Each step consumes at least two bytes, so the walk ends within `blob.len() / 2` steps.
    loop {
        let mut rest = blob.get(offset..)?;
        let first = *rest.first()?;
        if first == ZL_END {
            break;
        }
        let prevlen = if first == ZL_PREVLEN_BIG {
            take(&mut rest, 1)?;
            usize::try_from(u32::from_le_bytes(take_array(&mut rest)?)).ok()?
        } else {
            take(&mut rest, 1)?;
            usize::from(first)
        };
        if prevlen != last_bytes {
            return None;
        }
        let prevlen_bytes = if first == ZL_PREVLEN_BIG { 5 } else { 1 };
        let (element, body_bytes) = ziplist_entry(rest)?;
        elements.push(element);
        last_offset = Some(offset);
        last_bytes = prevlen_bytes + body_bytes;
        offset = offset.checked_add(last_bytes)?;
    }
    if offset + 1 != blob.len() {
        return None;
    }
    if last_offset.is_some_and(|o| u32::try_from(o).ok() != Some(tail)) {
        return None;
    }
    if count != ZL_COUNT_UNKNOWN && usize::from(count) != elements.len() {
        return None;
    }
    Some(elements)
}

/// The ziplist entry (encoding and data, after the previous-entry size) at the start of `data`, and the
/// bytes it takes.
fn ziplist_entry(data: &[u8]) -> Option<(Packed<'_>, usize)> {
    let mut rest = data;
    let first = take_array::<1>(&mut rest)?[0];
    Some(match first >> 6 {
        0 => {
            let len = usize::from(first & 0x3f);
            (Packed::Str(take(&mut rest, len)?), 1 + len)
        }
        1 => {
            // 14 bits, big-endian (unlike everything else in a ziplist).
            let low = take_array::<1>(&mut rest)?[0];
            let len = (usize::from(first & 0x3f) << 8) | usize::from(low);
            (Packed::Str(take(&mut rest, len)?), 2 + len)
        }
        2 => {
            // 32 bits, big-endian. Redis ignores the encoding byte's low six bits here, and so do we.
            let len = usize::try_from(u32::from_be_bytes(take_array(&mut rest)?)).ok()?;
            (Packed::Str(take(&mut rest, len)?), 5 + len)
        }
        _ => match first {
            ZL_INT8 => (Packed::Int(signed_le(take(&mut rest, 1)?)), 2),
            ZL_INT16 => (Packed::Int(signed_le(take(&mut rest, 2)?)), 3),
            ZL_INT24 => (Packed::Int(signed_le(take(&mut rest, 3)?)), 4),
            ZL_INT32 => (Packed::Int(signed_le(take(&mut rest, 4)?)), 5),
            ZL_INT64 => (Packed::Int(signed_le(take(&mut rest, 8)?)), 9),
            ZL_IMMEDIATE_MIN..=ZL_IMMEDIATE_MAX => (Packed::Int(i64::from(first & 0x0f) - 1), 1),
            _ => return None,
        },
    })
}

// Intset (Redis's intset.c): the width of every member in bytes (2, 4 or 8), the member count, both as
// 32-bit little-endian, then the members, little-endian, in ascending order.

const INTSET_HEADER_BYTES: usize = 8;

/// The members of an intset, or `None` unless it passes the checks of Redis's
/// `intsetValidateIntegrity`: a known width, a count that accounts for exactly the bytes present, at
/// least one member, and members strictly ascending (so no duplicates).
pub(super) fn intset(blob: &[u8]) -> Option<Vec<i64>> {
    let mut rest = blob;
    let width = u32::from_le_bytes(take_array(&mut rest)?);
    let count = u32::from_le_bytes(take_array(&mut rest)?);
    let width = match width {
        2 | 4 | 8 => width as usize,
        _ => return None,
    };
    let count = usize::try_from(count).ok()?;
    if count == 0 || count.checked_mul(width)? != blob.len() - INTSET_HEADER_BYTES {
        return None;
    }
    let members: Vec<i64> = rest.chunks_exact(width).map(signed_le).collect();
    members.windows(2).all(|w| w[0] < w[1]).then_some(members)
}

// Zipmap (Redis's zipmap.c, hashes before Redis 2.6): a count byte (254 and up: count by walking), then
// per pair the field's length, the field, the value's length, a byte of unused space after the value, the
// value and that unused space; 0xFF ends it. A length is one byte below 254, else 254 and a 32-bit
// little-endian length.

/// The count byte's "too many to count" value, and a length byte's "32-bit length follows".
const ZM_BIGLEN: u8 = 254;
const ZM_END: u8 = 0xff;

/// The field-value pairs of a zipmap, or `None` unless it passes the checks of Redis's
/// `zipmapValidateIntegrity`: every pair lies inside the blob, there is at least one, and the count byte
/// (unless 254) is right. We also require the end byte to be the blob's last.
pub(super) fn zipmap(blob: &[u8]) -> Option<Vec<(Bytes, Bytes)>> {
    let mut rest = blob;
    let count = take_array::<1>(&mut rest)?[0];
    let mut pairs = Vec::new();
    // Each step consumes at least three bytes, so the walk ends within `blob.len() / 3` steps.
    loop {
        if rest.first() == Some(&ZM_END) {
            take(&mut rest, 1)?;
            break;
        }
        let field_len = zipmap_len(&mut rest)?;
        let field = take(&mut rest, field_len)?;
        let value_len = zipmap_len(&mut rest)?;
        let free = take_array::<1>(&mut rest)?[0];
        let value = take(&mut rest, value_len)?;
        take(&mut rest, usize::from(free))?;
        pairs.push((Bytes::copy_from_slice(field), Bytes::copy_from_slice(value)));
    }
    if !rest.is_empty() || pairs.is_empty() {
        return None;
    }
    if count != ZM_BIGLEN && usize::from(count) != pairs.len() {
        return None;
    }
    Some(pairs)
}

/// A zipmap length at the start of `data`.
fn zipmap_len(data: &mut &[u8]) -> Option<usize> {
    match take_array::<1>(data)?[0] {
        ZM_BIGLEN => usize::try_from(u32::from_le_bytes(take_array(data)?)).ok(),
        ZM_END => None,
        n => Some(usize::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Integers at and around every listpack integer encoding's bounds.
    const BOUNDARY_INTS: &[i64] = &[
        0,
        1,
        12,
        126,
        127,
        128,
        -1,
        -2,
        4095,
        4096,
        -4096,
        -4097,
        32767,
        32768,
        -32768,
        -32769,
        8_388_607,
        8_388_608,
        -8_388_608,
        -8_388_609,
        2_147_483_647,
        2_147_483_648,
        -2_147_483_648,
        -2_147_483_649,
        i64::MAX,
        i64::MIN,
    ];

    fn assert_no_panic_on_damage(blob: &[u8], decode: impl Fn(&[u8]) -> bool) {
        // Every proper prefix is refused: each format's header fixes the total, or its end byte is gone.
        for n in 0..blob.len() {
            assert!(!decode(&blob[..n]), "prefix of {n} bytes decoded");
        }
        // Any single damaged byte must not panic; whether it decodes depends on the byte.
        for i in 0..blob.len() {
            for mask in [0x01, 0x02, 0x10, 0x40, 0x80, 0xff] {
                let mut bad = blob.to_vec();
                bad[i] ^= mask;
                let _ = decode(&bad);
            }
        }
        // Appended bytes are refused: the header's total, or the end byte's place, rules them out.
        let mut longer = blob.to_vec();
        longer.push(0);
        assert!(!decode(&longer));
    }

    #[test]
    fn listpack_round_trips_ints_at_every_encoding_boundary() {
        let mut ints: Vec<i64> = (0..=127).collect();
        ints.extend_from_slice(BOUNDARY_INTS);
        let mut w = ListpackWriter::new();
        for &v in &ints {
            w.push_int(v);
        }
        assert_eq!(w.len(), ints.len());
        let blob = w.finish();
        let decoded = listpack(&blob).expect("a listpack we wrote decodes");
        let want: Vec<Packed<'_>> = ints.iter().map(|&v| Packed::Int(v)).collect();
        assert_eq!(decoded, want);
    }

    #[test]
    fn listpack_ints_take_redis_encodings() {
        // As Redis 7.0's `lpAppendInteger` writes them, backlen included.
        let cases: &[(i64, &[u8])] = &[
            (5, &[0x05, 0x01]),
            (128, &[0xc0, 0x80, 0x02]),
            (-1, &[0xdf, 0xff, 0x02]),
            (4096, &[0xf1, 0x00, 0x10, 0x03]),
            (8_388_607, &[0xf2, 0xff, 0xff, 0x7f, 0x04]),
            (2_147_483_648, &[0xf4, 0, 0, 0, 0x80, 0, 0, 0, 0, 0x09]),
        ];
        for &(v, encoded) in cases {
            let mut w = ListpackWriter::new();
            w.push_int(v);
            let blob = w.finish();
            assert_eq!(&blob[LP_HEADER_BYTES..blob.len() - 1], encoded, "{v}");
        }
    }

    #[test]
    fn listpack_round_trips_strings_at_length_boundaries() {
        // 125 and 126 bytes put the entry's size either side of a one-byte backlen, 16_377 and 16_378 either
        // side of two bytes.
        let lens = [
            0usize, 1, 63, 64, 125, 126, 4095, 4096, 16_377, 16_378, 70_000,
        ];
        let strings: Vec<Vec<u8>> = lens.iter().map(|&n| vec![b'x'; n]).collect();
        let mut w = ListpackWriter::new();
        for s in &strings {
            w.push_str(s);
        }
        let blob = w.finish();
        let decoded = listpack(&blob).expect("a listpack we wrote decodes");
        let want: Vec<Packed<'_>> = strings.iter().map(|s| Packed::Str(s)).collect();
        assert_eq!(decoded, want);
    }

    #[test]
    fn listpack_stores_canonical_integer_strings_as_integers() {
        let mut w = ListpackWriter::new();
        for s in [
            &b"12"[..],
            b"-4097",
            b"9223372036854775807",
            b"012",
            b"-0",
            b"+1",
            b"1.0",
            b"9223372036854775808",
            b"",
        ] {
            w.push_str(s);
        }
        let blob = w.finish();
        let decoded = listpack(&blob).expect("decodes");
        assert_eq!(
            decoded,
            [
                Packed::Int(12),
                Packed::Int(-4097),
                Packed::Int(i64::MAX),
                Packed::Str(b"012"),
                Packed::Str(b"-0"),
                Packed::Str(b"+1"),
                Packed::Str(b"1.0"),
                Packed::Str(b"9223372036854775808"),
                Packed::Str(b""),
            ]
        );
        assert_eq!(decoded[3].as_int(), None);
        assert_eq!(Packed::Str(b"-17").as_int(), Some(-17));
        assert_eq!(Packed::Int(-17).to_bytes(), Bytes::from_static(b"-17"));
    }

    #[test]
    fn listpack_count_is_unknown_from_65535_elements() {
        for n in [65_534usize, 65_535, 65_536] {
            let mut w = ListpackWriter::new();
            for i in 0..n {
                w.push_int(i as i64 % 100);
            }
            let blob = w.finish();
            let count = u16::from_le_bytes([blob[4], blob[5]]);
            assert_eq!(count, if n < 65_535 { n as u16 } else { u16::MAX });
            assert_eq!(listpack(&blob).map(|e| e.len()), Some(n));
        }
    }

    #[test]
    fn backlen_matches_redis_thresholds() {
        assert_eq!(encode_backlen(127), ([127, 0, 0, 0, 0], 1));
        assert_eq!(encode_backlen(128), ([1, 0x80, 0, 0, 0], 2));
        assert_eq!(encode_backlen(16_382), ([127, 0xfe, 0, 0, 0], 2));
        assert_eq!(encode_backlen(16_383), ([0, 0xff, 0xff, 0, 0], 3));
        assert_eq!(encode_backlen(268_435_455).1, 5);
    }

    #[test]
    fn listpack_refuses_bad_headers_and_backlens() {
        let mut w = ListpackWriter::new();
        w.push_str(b"abc");
        w.push_int(1000);
        let blob = w.finish();
        assert!(listpack(&blob).is_some());
        let mut wrong_count = blob.clone();
        wrong_count[4] = 3;
        assert_eq!(listpack(&wrong_count), None);
        let mut unknown_count = blob.clone();
        unknown_count[4..6].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(listpack(&unknown_count).map(|e| e.len()), Some(2));
        let mut wrong_backlen = blob.clone();
        wrong_backlen[LP_HEADER_BYTES + 4] = 5;
        assert_eq!(listpack(&wrong_backlen), None);
        // An invalid encoding byte.
        let mut bad_encoding = blob.clone();
        bad_encoding[LP_HEADER_BYTES] = 0xf5;
        assert_eq!(listpack(&bad_encoding), None);
        // A 32-bit string length far past the end.
        let mut huge = vec![0u8; 6];
        huge.extend_from_slice(&[LP_32BIT_STR, 0xff, 0xff, 0xff, 0x7f, LP_EOF]);
        let total = huge.len() as u32;
        huge[..4].copy_from_slice(&total.to_le_bytes());
        assert_eq!(listpack(&huge), None);
    }

    #[test]
    fn damaged_listpacks_never_panic() {
        let mut w = ListpackWriter::new();
        for v in [1, -5, 300, 70_000, 1 << 40] {
            w.push_int(v);
        }
        w.push_str(b"field");
        w.push_str(&[b'y'; 200]);
        let blob = w.finish();
        assert_no_panic_on_damage(&blob, |b| listpack(b).is_some());
    }

    /// A ziplist from raw entry bodies (encoding and data), with the header and previous-entry sizes
    /// computed the way Redis lays them out.
    fn ziplist_of(bodies: &[&[u8]]) -> Vec<u8> {
        let mut entries = Vec::new();
        let (mut prev, mut tail) = (0usize, ZL_HEADER_BYTES);
        for body in bodies {
            tail = ZL_HEADER_BYTES + entries.len();
            if prev < 254 {
                entries.push(prev as u8);
            } else {
                entries.push(ZL_PREVLEN_BIG);
                entries.extend_from_slice(&(prev as u32).to_le_bytes());
            }
            entries.extend_from_slice(body);
            prev = ZL_HEADER_BYTES + entries.len() - tail;
        }
        let total = ZL_HEADER_BYTES + entries.len() + 1;
        let mut out = Vec::new();
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(tail as u32).to_le_bytes());
        out.extend_from_slice(&(bodies.len() as u16).to_le_bytes());
        out.extend_from_slice(&entries);
        out.push(ZL_END);
        out
    }

    fn sample_ziplist() -> Vec<u8> {
        let mut long = vec![0x40, 100];
        long.extend_from_slice(&[b'L'; 100]);
        let mut longer = vec![0x80, 0, 0, 1, 0];
        longer.extend_from_slice(&[b'M'; 256]);
        ziplist_of(&[
            b"\x03abc",
            &[0xf1],
            &[0xfd],
            &[ZL_INT8, 0x80],
            &[ZL_INT16, 0x00, 0x80],
            &[ZL_INT24, 0xff, 0xff, 0x7f],
            &[ZL_INT32, 0xfe, 0xff, 0xff, 0xff],
            &[ZL_INT64, 0, 0, 0, 0, 0, 0, 0, 0x80],
            &long,
            &longer,
            b"\x00",
        ])
    }

    #[test]
    fn ziplist_decodes_every_encoding() {
        let blob = sample_ziplist();
        let decoded = ziplist(&blob).expect("decodes");
        let long = [b'L'; 100];
        let longer = [b'M'; 256];
        assert_eq!(
            decoded,
            [
                Packed::Str(b"abc"),
                Packed::Int(0),
                Packed::Int(12),
                Packed::Int(-128),
                Packed::Int(-32768),
                Packed::Int(8_388_607),
                Packed::Int(-2),
                Packed::Int(i64::MIN),
                Packed::Str(&long),
                Packed::Str(&longer),
                Packed::Str(b""),
            ]
        );
    }

    #[test]
    fn ziplist_refuses_inconsistent_headers() {
        let blob = ziplist_of(&[b"\x01a", b"\x01b"]);
        assert!(ziplist(&blob).is_some());
        let mut wrong_tail = blob.clone();
        wrong_tail[4] = 10;
        assert_eq!(ziplist(&wrong_tail), None);
        let mut wrong_count = blob.clone();
        wrong_count[8] = 1;
        assert_eq!(ziplist(&wrong_count), None);
        let mut unknown_count = blob.clone();
        unknown_count[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(ziplist(&unknown_count).map(|e| e.len()), Some(2));
        let mut wrong_prevlen = blob.clone();
        wrong_prevlen[ZL_HEADER_BYTES + 3] = 2;
        assert_eq!(ziplist(&wrong_prevlen), None);
        let mut bad_encoding = blob.clone();
        bad_encoding[ZL_HEADER_BYTES + 1] = 0xc1;
        assert_eq!(ziplist(&bad_encoding), None);
        // An empty ziplist is well formed; the caller refuses the empty collection.
        assert_eq!(ziplist(&ziplist_of(&[])), Some(vec![]));
    }

    #[test]
    fn ziplist_accepts_a_five_byte_prevlen_for_a_small_entry() {
        // Redis's cascade update can leave a big previous-entry size in front of a small entry.
        let mut blob = vec![0u8; ZL_HEADER_BYTES];
        blob.extend_from_slice(b"\x00\x01a");
        blob.extend_from_slice(&[ZL_PREVLEN_BIG, 3, 0, 0, 0, 0x01, b'b']);
        blob.push(ZL_END);
        let total = blob.len() as u32;
        blob[..4].copy_from_slice(&total.to_le_bytes());
        blob[4..8].copy_from_slice(&13u32.to_le_bytes());
        blob[8..10].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            ziplist(&blob),
            Some(vec![Packed::Str(b"a"), Packed::Str(b"b")])
        );
    }

    #[test]
    fn damaged_ziplists_never_panic() {
        assert_no_panic_on_damage(&sample_ziplist(), |b| ziplist(b).is_some());
    }

    fn intset_of(width: u32, members: &[i64]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&width.to_le_bytes());
        out.extend_from_slice(&(members.len() as u32).to_le_bytes());
        for m in members {
            out.extend_from_slice(&m.to_le_bytes()[..width as usize]);
        }
        out
    }

    #[test]
    fn intset_decodes_every_width() {
        assert_eq!(intset(&intset_of(2, &[-300, 1])), Some(vec![-300, 1]));
        assert_eq!(
            intset(&intset_of(4, &[i64::from(i32::MIN), 70_000])),
            Some(vec![i64::from(i32::MIN), 70_000])
        );
        assert_eq!(
            intset(&intset_of(8, &[i64::MIN, 0, i64::MAX])),
            Some(vec![i64::MIN, 0, i64::MAX])
        );
    }

    #[test]
    fn intset_refuses_what_redis_refuses() {
        assert_eq!(intset(&intset_of(2, &[])), None);
        assert_eq!(intset(&intset_of(2, &[2, 1])), None);
        assert_eq!(intset(&intset_of(2, &[1, 1])), None);
        assert_eq!(intset(&intset_of(3, &[1])), None);
        let mut lying = intset_of(2, &[1, 2]);
        lying[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(intset(&lying), None);
    }

    #[test]
    fn damaged_intsets_never_panic() {
        assert_no_panic_on_damage(&intset_of(4, &[-7, 3, 90_000]), |b| intset(b).is_some());
    }

    fn sample_zipmap() -> Vec<u8> {
        let mut blob = vec![2];
        blob.extend_from_slice(b"\x03foo\x03\x02bar\x00\x00");
        let big = [b'v'; 300];
        blob.extend_from_slice(b"\x01k");
        blob.push(ZM_BIGLEN);
        blob.extend_from_slice(&300u32.to_le_bytes());
        blob.push(0);
        blob.extend_from_slice(&big);
        blob.push(ZM_END);
        blob
    }

    #[test]
    fn zipmap_decodes_pairs_and_skips_free_space() {
        let pairs = zipmap(&sample_zipmap()).expect("decodes");
        assert_eq!(
            pairs,
            [
                (Bytes::from_static(b"foo"), Bytes::from_static(b"bar")),
                (Bytes::from_static(b"k"), Bytes::from(vec![b'v'; 300])),
            ]
        );
        let mut unknown_count = sample_zipmap();
        unknown_count[0] = ZM_BIGLEN;
        assert_eq!(zipmap(&unknown_count).map(|p| p.len()), Some(2));
        let mut wrong_count = sample_zipmap();
        wrong_count[0] = 3;
        assert_eq!(zipmap(&wrong_count), None);
        assert_eq!(zipmap(&[0, ZM_END]), None);
    }

    #[test]
    fn damaged_zipmaps_never_panic() {
        assert_no_panic_on_damage(&sample_zipmap(), |b| zipmap(b).is_some());
    }
}
