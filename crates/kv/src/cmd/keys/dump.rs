//! DUMP and RESTORE.
//!
//! A dump has Redis's framing: the serialized value, a 2-byte RDB version (little-endian) and an 8-byte
//! CRC-64 (Jones polynomial, reflected, as Redis computes it) of everything before it, little-endian. A
//! payload whose version is newer than ours or whose checksum does not match is refused with Redis's
//! error.
//!
//! The value itself uses RDB's plain (non-packed) encodings, which Redis still loads: a type byte (0 string,
//! 1 list, 2 set, 4 hash, 5 sorted set with binary scores), RDB length prefixes, and length-prefixed
//! strings. On reading, RDB's integer-encoded and LZF-compressed strings are understood too; Redis's
//! packed encodings (listpack, intset, ziplist) are not, and such a payload is "Bad data format".

use std::collections::HashSet;
use strata_resp::Arg;

use bytes::{BufMut as _, Bytes, BytesMut};
use strata_resp::Frame;

use super::super::{parse_i64, storage_error};
use crate::keyspace::{CollectionHeader, Entry, Kind};
use crate::{Session, Shared};

/// The RDB version stamped on dumps (Redis 7.0's), and the newest one accepted.
const RDB_VERSION: u16 = 10;

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;

/// The Jones polynomial Redis's CRC-64 uses, bit-reversed for the reflected algorithm.
const CRC64_POLY_REFLECTED: u64 = 0xad93_d235_94c9_35a9_u64.reverse_bits();

static CRC64_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC64_POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Redis's `crc64(0, data)`.
pub(crate) fn crc64(data: &[u8]) -> u64 {
    data.iter().fold(0u64, |crc, &b| {
        CRC64_TABLE[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

fn put_len(out: &mut BytesMut, n: u64) {
    if n < 1 << 6 {
        out.put_u8(n as u8);
    } else if n < 1 << 14 {
        out.put_u16(0x4000 | n as u16);
    } else if let Ok(n) = u32::try_from(n) {
        out.put_u8(0x80);
        out.put_u32(n);
    } else {
        out.put_u8(0x81);
        out.put_u64(n);
    }
}

fn put_string(out: &mut BytesMut, s: &[u8]) {
    put_len(out, s.len() as u64);
    out.put_slice(s);
}

/// A value in a form independent of how strata stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    String(Bytes),
    List(Vec<Bytes>),
    Set(Vec<Bytes>),
    Hash(Vec<(Bytes, Bytes)>),
    ZSet(Vec<(Bytes, f64)>),
}

/// The serialized form of `value` with its version and checksum footer.
pub(crate) fn serialize(value: &Value) -> Bytes {
    let mut out = BytesMut::new();
    match value {
        Value::String(s) => {
            out.put_u8(TYPE_STRING);
            put_string(&mut out, s);
        }
        Value::List(items) | Value::Set(items) => {
            out.put_u8(if matches!(value, Value::List(_)) {
                TYPE_LIST
            } else {
                TYPE_SET
            });
            put_len(&mut out, items.len() as u64);
            for i in items {
                put_string(&mut out, i);
            }
        }
        Value::Hash(pairs) => {
            out.put_u8(TYPE_HASH);
            put_len(&mut out, pairs.len() as u64);
            for (f, v) in pairs {
                put_string(&mut out, f);
                put_string(&mut out, v);
            }
        }
        Value::ZSet(items) => {
            out.put_u8(TYPE_ZSET_2);
            put_len(&mut out, items.len() as u64);
            for (m, score) in items {
                put_string(&mut out, m);
                out.put_f64_le(*score);
            }
        }
    }
    out.put_u16_le(RDB_VERSION);
    let crc = crc64(&out);
    out.put_u64_le(crc);
    out.freeze()
}

/// Why a payload was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LoadError {
    /// Too short, a newer RDB version, or a checksum mismatch.
    Footer,
    /// The value does not decode.
    Format,
}

/// Checks the footer of `payload` and returns the value it holds.
pub(crate) fn deserialize(payload: &[u8]) -> Result<Value, LoadError> {
    let body_len = payload.len().checked_sub(10).ok_or(LoadError::Footer)?;
    let version = u16::from_le_bytes([payload[body_len], payload[body_len + 1]]);
    if version > RDB_VERSION {
        return Err(LoadError::Footer);
    }
    let mut crc = [0u8; 8];
    crc.copy_from_slice(&payload[body_len + 2..]);
    if crc64(&payload[..body_len + 2]) != u64::from_le_bytes(crc) {
        return Err(LoadError::Footer);
    }
    let mut r = Reader {
        data: &payload[..body_len],
    };
    let value = r.value().ok_or(LoadError::Format)?;
    if !r.data.is_empty() {
        return Err(LoadError::Format);
    }
    Ok(value)
}

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// A length, or `Err(encoding)` for a specially encoded string (`11xxxxxx`).
    fn len_or_encoding(&mut self) -> Option<Result<u64, u8>> {
        let first = self.byte()?;
        Some(match first >> 6 {
            0 => Ok(u64::from(first & 0x3f)),
            1 => Ok((u64::from(first & 0x3f) << 8) | u64::from(self.byte()?)),
            2 => match first {
                0x80 => Ok(u64::from(u32::from_be_bytes(
                    self.take(4)?.try_into().ok()?,
                ))),
                0x81 => Ok(u64::from_be_bytes(self.take(8)?.try_into().ok()?)),
                _ => return None,
            },
            _ => Err(first & 0x3f),
        })
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.len_or_encoding()?.ok()?).ok()
    }

    fn string(&mut self) -> Option<Bytes> {
        match self.len_or_encoding()? {
            Ok(n) => Some(Bytes::copy_from_slice(self.take(usize::try_from(n).ok()?)?)),
            Err(0) => Some(Bytes::from((self.byte()? as i8).to_string())),
            Err(1) => Some(Bytes::from(
                i16::from_le_bytes(self.take(2)?.try_into().ok()?).to_string(),
            )),
            Err(2) => Some(Bytes::from(
                i32::from_le_bytes(self.take(4)?.try_into().ok()?).to_string(),
            )),
            Err(3) => {
                let compressed = self.len()?;
                let len = self.len()?;
                let input = self.take(compressed)?;
                lzf_decompress(input, len).map(Bytes::from)
            }
            Err(_) => None,
        }
    }

    /// A count of elements: at least one (Redis refuses empty collections) and no more than the bytes
    /// left could hold, so a corrupt count cannot make us allocate wildly.
    fn count(&mut self) -> Option<usize> {
        let n = self.len()?;
        (n > 0 && n <= self.data.len()).then_some(n)
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.byte()? {
            TYPE_STRING => Value::String(self.string()?),
            TYPE_LIST => {
                let n = self.count()?;
                Value::List((0..n).map(|_| self.string()).collect::<Option<_>>()?)
            }
            TYPE_SET => {
                let n = self.count()?;
                let members: Vec<Bytes> = (0..n).map(|_| self.string()).collect::<Option<_>>()?;
                let distinct: HashSet<&Bytes> = members.iter().collect();
                if distinct.len() != members.len() {
                    return None;
                }
                Value::Set(members)
            }
            TYPE_HASH => {
                let n = self.count()?;
                let mut pairs = Vec::with_capacity(n);
                for _ in 0..n {
                    pairs.push((self.string()?, self.string()?));
                }
                let distinct: HashSet<&Bytes> = pairs.iter().map(|(f, _)| f).collect();
                if distinct.len() != pairs.len() {
                    return None;
                }
                Value::Hash(pairs)
            }
            TYPE_ZSET_2 => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    let member = self.string()?;
                    let score = f64::from_le_bytes(self.take(8)?.try_into().ok()?);
                    if score.is_nan() {
                        return None;
                    }
                    items.push((member, score));
                }
                let distinct: HashSet<&Bytes> = items.iter().map(|(m, _)| m).collect();
                if distinct.len() != items.len() {
                    return None;
                }
                Value::ZSet(items)
            }
            _ => return None,
        })
    }
}

/// LZF decompression (the format RDB compresses long strings with); `None` unless the output is exactly
/// `len` bytes.
fn lzf_decompress(input: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            // A literal run of ctrl + 1 bytes.
            let run = input.get(i..i + ctrl + 1)?;
            out.extend_from_slice(run);
            i += ctrl + 1;
        } else {
            // A back reference: length (ctrl >> 5) + 2, extended by a byte when 7.
            let mut n = ctrl >> 5;
            if n == 7 {
                n += usize::from(*input.get(i)?);
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + usize::from(*input.get(i)?) + 1;
            i += 1;
            let start = out.len().checked_sub(back)?;
            for k in 0..n + 2 {
                let b = out[start + k];
                out.push(b);
            }
        }
        if out.len() > len {
            return None;
        }
    }
    (out.len() == len).then_some(out)
}

/// The value stored at `key` (None if missing).
fn read_value(sh: &Shared, db: usize, key: &[u8]) -> Result<Option<Value>, Frame> {
    let Some(entry) = sh.keyspace.get(db, key).map_err(storage_error)? else {
        return Ok(None);
    };
    if entry.kind == Kind::ZSet {
        return Ok(crate::cmd::zsets::read_source(sh, db, key)?.map(Value::ZSet));
    }
    if entry.kind == Kind::Stream {
        // Redis's RDB stream encoding (listpacks in a radix tree) is not written.
        return Err(Frame::error("ERR DUMP of a stream is not supported"));
    }
    if entry.kind == Kind::Trie {
        // A module type: RDB has no encoding of strata's dictionaries.
        return Err(Frame::error(
            "ERR DUMP of an autocomplete dictionary is not supported",
        ));
    }
    if entry.kind == Kind::String {
        return Ok(Some(Value::String(entry.payload)));
    }
    let h = CollectionHeader::from_payload(&entry.payload).map_err(storage_error)?;
    let elements = sh
        .keyspace
        .elements(db, key, h.version)
        .map_err(storage_error)?;
    Ok(Some(match entry.kind {
        Kind::List => Value::List(elements.into_iter().map(|(_, v)| v).collect()),
        Kind::Set => Value::Set(elements.into_iter().map(|(m, _)| m).collect()),
        _ => Value::Hash(elements),
    }))
}

/// DUMP key.
pub fn dump(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match read_value(sh, s.db, &args[1]) {
        Ok(Some(v)) => Frame::Bulk(serialize(&v)),
        Ok(None) => Frame::Null,
        Err(r) => r,
    }
}

/// Stores `value` at `key` with deadline `expire_at_ms` (0 = none), replacing whatever is there, in one
/// batch.
fn write_value(
    sh: &Shared,
    db: usize,
    key: &[u8],
    value: Value,
    expire_at_ms: u64,
) -> Result<(), Frame> {
    let collection = |kind: Kind, payload: Bytes| Entry {
        kind,
        expire_at_ms,
        indexed_at_ms: 0,
        payload,
    };
    let fresh = |kind: Kind, size: usize| {
        collection(
            kind,
            CollectionHeader {
                version: sh.keyspace.new_version(),
                size: size as u64,
            }
            .to_payload(),
        )
    };
    let stored = match value {
        Value::String(v) => sh.keyspace.put(db, key, &collection(Kind::String, v)),
        Value::List(items) => {
            let (payload, keys) =
                crate::cmd::lists::layout(sh.keyspace.new_version(), items.len() as u64);
            let records: Vec<(&[u8], &[u8])> = keys
                .iter()
                .zip(&items)
                .map(|(k, v)| (&k[..], &v[..]))
                .collect();
            sh.keyspace
                .replace_collection(db, key, &collection(Kind::List, payload), &records)
        }
        Value::Set(members) => {
            let records: Vec<(&[u8], &[u8])> = members.iter().map(|m| (&m[..], &b""[..])).collect();
            sh.keyspace
                .replace_collection(db, key, &fresh(Kind::Set, members.len()), &records)
        }
        Value::Hash(pairs) => {
            let records: Vec<(&[u8], &[u8])> =
                pairs.iter().map(|(f, v)| (&f[..], &v[..])).collect();
            sh.keyspace
                .replace_collection(db, key, &fresh(Kind::Hash, pairs.len()), &records)
        }
        Value::ZSet(items) => {
            // The sorted-set layout (cmd/zsets.rs): `m ++ member` and `i ++ sortable(score) ++ member`,
            // both holding the score's bits. A fresh version has no cached order-statistic tree.
            let mut owned: Vec<(Vec<u8>, [u8; 8])> = Vec::with_capacity(2 * items.len());
            for (member, score) in &items {
                let bits = score.to_bits().to_be_bytes();
                let mut m = Vec::with_capacity(1 + member.len());
                m.push(b'm');
                m.extend_from_slice(member);
                owned.push((m, bits));
                let mut i = Vec::with_capacity(9 + member.len());
                i.push(b'i');
                i.extend_from_slice(&crate::cmd::zsets::sortable(*score));
                i.extend_from_slice(member);
                owned.push((i, bits));
            }
            let records: Vec<(&[u8], &[u8])> =
                owned.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            sh.keyspace
                .replace_collection(db, key, &fresh(Kind::ZSet, items.len()), &records)
        }
    };
    stored.map_err(storage_error)
}

/// RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency].
///
/// IDLETIME and FREQ are checked here and applied by cache mode's key table after the command (`evict.rs`);
/// outside cache mode no access data is kept.
pub fn restore(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq) = (None::<i64>, None::<i64>);
    let mut j = 4;
    while j < args.len() {
        let opt = &args[j];
        let more = j + 1 < args.len();
        if opt.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if opt.eq_ignore_ascii_case(b"absttl") {
            absttl = true;
        } else if opt.eq_ignore_ascii_case(b"idletime") && more && freq.is_none() {
            match parse_i64(&args[j + 1]) {
                Ok(n) if n >= 0 => idle = Some(n),
                Ok(_) => return Frame::error("ERR Invalid IDLETIME value, must be >= 0"),
                Err(r) => return r,
            }
            j += 1;
        } else if opt.eq_ignore_ascii_case(b"freq") && more && idle.is_none() {
            match parse_i64(&args[j + 1]) {
                Ok(n) if (0..=255).contains(&n) => freq = Some(n),
                Ok(_) => return Frame::error("ERR Invalid FREQ value, must be >= 0 and <= 255"),
                Err(r) => return r,
            }
            j += 1;
        } else {
            return Frame::error("ERR syntax error");
        }
        j += 1;
    }
    let _guard = sh.keyspace.lock(s.db, key);
    let exists = match sh.keyspace.get(s.db, key) {
        Ok(e) => e.is_some(),
        Err(e) => return storage_error(e),
    };
    if exists && !replace {
        return Frame::error("BUSYKEY Target key name already exists.");
    }
    let ttl = match parse_i64(&args[2]) {
        Ok(t) if t >= 0 => t,
        Ok(_) => return Frame::error("ERR Invalid TTL value, must be >= 0"),
        Err(r) => return r,
    };
    let value = match deserialize(&args[3]) {
        Ok(v) => v,
        Err(LoadError::Footer) => {
            return Frame::error("ERR DUMP payload version or checksum are wrong");
        }
        Err(LoadError::Format) => return Frame::error("ERR Bad data format"),
    };
    let now = sh.keyspace.now_ms();
    let expire_at = match (ttl, absttl) {
        (0, _) => 0,
        (t, true) => t as u64,
        (t, false) => now.saturating_add(t as u64),
    };
    if expire_at != 0 && expire_at <= now {
        // Already expired: the key ends up absent, as in Redis.
        if exists && let Err(e) = sh.keyspace.delete(s.db, key) {
            return storage_error(e);
        }
        return Frame::ok();
    }
    match write_value(sh, s.db, key, value, expire_at) {
        Ok(()) => Frame::ok(),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_matches_redis_check_value() {
        // Redis's crc64 test vector.
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn every_type_round_trips() {
        let values = [
            Value::String(Bytes::from_static(b"hello")),
            Value::String(Bytes::from(vec![7u8; 20_000])),
            Value::List(vec![Bytes::from_static(b"a"), Bytes::from_static(b"")]),
            Value::Set(vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")]),
            Value::Hash(vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))]),
            Value::ZSet(vec![
                (Bytes::from_static(b"m"), 1.5),
                (Bytes::from_static(b"n"), f64::NEG_INFINITY),
            ]),
        ];
        for v in values {
            assert_eq!(deserialize(&serialize(&v)), Ok(v));
        }
    }

    #[test]
    fn corrupt_payloads_are_refused() {
        let good = serialize(&Value::String(Bytes::from_static(b"hello")));
        let mut bad = good.to_vec();
        bad[2] ^= 1;
        assert_eq!(deserialize(&bad), Err(LoadError::Footer));
        assert_eq!(deserialize(b"short"), Err(LoadError::Footer));
        // A valid footer over an undecodable body.
        let mut body = BytesMut::from(&[0x77u8][..]);
        body.put_u16_le(RDB_VERSION);
        let crc = crc64(&body);
        body.put_u64_le(crc);
        assert_eq!(deserialize(&body), Err(LoadError::Format));
    }

    #[test]
    fn reads_redis_integer_and_lzf_strings() {
        // A string dumped by Redis 7 as an 8-bit integer: type 0, 0xc0 0x7b (123).
        let mut p = BytesMut::from(&[0u8, 0xc0, 0x7b][..]);
        p.put_u16_le(RDB_VERSION);
        let crc = crc64(&p);
        p.put_u64_le(crc);
        assert_eq!(
            deserialize(&p),
            Ok(Value::String(Bytes::from_static(b"123")))
        );
        // LZF: literal "ab" then a back reference copying 4 bytes from 2 back → "ababab".
        assert_eq!(
            lzf_decompress(&[1, b'a', b'b', (2 << 5), 1], 6).as_deref(),
            Some(&b"ababab"[..])
        );
    }
}
