//! Bit commands on strings: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD and BITFIELD_RO. Bit 0 is the
//! most significant bit of the first byte, as in Redis.

use bytes::{Bytes, BytesMut};
use strata_resp::Arg;
use strata_resp::Frame;

use super::super::{parse_i64, storage_error};
use super::{MAX_STRING_BYTES, get_string, syntax_error, wrongtype};
use crate::keyspace::{Entry, Kind};
use crate::{Session, Shared};

fn offset_error() -> Frame {
    Frame::error("ERR bit offset is not an integer or out of range")
}

fn too_big() -> Frame {
    Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

/// Redis's `getBitOffsetFromArgument`: a bit offset below 512 MB × 8; with `bits`, `#n` means `n * bits`.
fn bit_offset(arg: &[u8], bits: Option<u32>) -> Result<u64, Frame> {
    let (hash, digits) = match (arg.first(), bits) {
        (Some(b'#'), Some(_)) => (true, &arg[1..]),
        _ => (false, arg),
    };
    let mut n = parse_i64(digits).map_err(|_| offset_error())?;
    if hash {
        n = n
            .checked_mul(i64::from(bits.unwrap_or(1)))
            .ok_or_else(offset_error)?;
    }
    u64::try_from(n)
        .ok()
        .filter(|&o| (o >> 3) < MAX_STRING_BYTES as u64)
        .ok_or_else(offset_error)
}

fn get_bit(v: &[u8], bit: u64) -> u64 {
    v.get((bit >> 3) as usize)
        .map_or(0, |b| u64::from((b >> (7 - (bit & 7))) & 1))
}

fn set_bit(v: &mut [u8], bit: u64, on: bool) {
    let mask = 1u8 << (7 - (bit & 7));
    let b = &mut v[(bit >> 3) as usize];
    if on {
        *b |= mask;
    } else {
        *b &= !mask;
    }
}

/// Stores `value` as the string at `key`, keeping its TTL.
fn store(
    sh: &Shared,
    db: usize,
    key: &[u8],
    value: BytesMut,
    expire_at_ms: u64,
) -> Result<(), Frame> {
    let entry = Entry {
        kind: Kind::String,
        expire_at_ms,
        indexed_at_ms: 0,
        payload: value.freeze(),
    };
    sh.keyspace.put(db, key, &entry).map_err(storage_error)
}

pub fn setbit(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let offset = match bit_offset(&args[2], None) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let on = match &args[3][..] {
        b"1" => true,
        b"0" => false,
        _ => return Frame::error("ERR bit is not an integer or out of range"),
    };
    let _guard = sh.keyspace.lock(s.db, &args[1]);
    let old = match get_string(sh, s.db, &args[1]) {
        Ok(old) => old,
        Err(r) => return r,
    };
    let byte = (offset >> 3) as usize;
    let Some(e) = old else {
        let mut value = BytesMut::new();
        value.resize(byte + 1, 0);
        set_bit(&mut value, offset, on);
        return match store(sh, s.db, &args[1], value, 0) {
            Ok(()) => Frame::Integer(0),
            Err(r) => r,
        };
    };
    let grown = e.payload.len() <= byte;
    let previous = get_bit(&e.payload, offset);
    // As in Redis, a SETBIT that creates, grows or flips nothing is not a write (no WATCH, no dirty).
    if !grown && (previous == 1) == on {
        return Frame::Integer(previous as i64);
    }
    // One byte of a possibly large bitmap changes: only it is written (growing zero-fills the gap).
    let mut new = [e.payload.get(byte).copied().unwrap_or(0)];
    set_bit(&mut new, offset & 7, on);
    match sh.keyspace.patch_string(s.db, &args[1], [(byte, &new[..])]) {
        Ok(()) => Frame::Integer(previous as i64),
        Err(e) => storage_error(e),
    }
}

pub fn getbit(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let offset = match bit_offset(&args[2], None) {
        Ok(o) => o,
        Err(r) => return r,
    };
    match get_string(sh, s.db, &args[1]) {
        Ok(v) => Frame::Integer(v.map_or(0, |e| get_bit(&e.payload, offset)) as i64),
        Err(r) => r,
    }
}

/// The inclusive bit range `[first, last]` of a BITCOUNT/BITPOS range over a `len`-byte string, or `None`
/// when empty. `end` is `None` when not given (the whole rest); `in_bits` is the BIT unit.
fn bit_range(len: u64, start: i64, end: Option<i64>, in_bits: bool) -> Option<(u64, u64)> {
    let total = if in_bits { len * 8 } else { len } as i64;
    let end = end.unwrap_or(total - 1);
    let norm = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let (start, end) = (norm(start), norm(end).min(total - 1));
    if start > end || total == 0 {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(if in_bits {
        (start, end)
    } else {
        (start * 8, end * 8 + 7)
    })
}

/// The unit argument of BITCOUNT / BITPOS.
fn unit(arg: Option<&Arg>) -> Result<bool, Frame> {
    match arg {
        None => Ok(false),
        Some(a) if a.eq_ignore_ascii_case(b"bit") => Ok(true),
        Some(a) if a.eq_ignore_ascii_case(b"byte") => Ok(false),
        Some(_) => Err(syntax_error()),
    }
}

fn count_bits(v: &[u8], first: u64, last: u64) -> u64 {
    let (fb, lb) = ((first >> 3) as usize, (last >> 3) as usize);
    let mut n: u64 = v[fb..=lb].iter().map(|b| u64::from(b.count_ones())).sum();
    // Bits of the edge bytes outside the range.
    let head = !(0xffu8 >> (first & 7));
    let tail = 0xffu8.checked_shr((last & 7) as u32 + 1).unwrap_or(0);
    n -= u64::from((v[fb] & head).count_ones());
    n -= u64::from((v[lb] & tail).count_ones());
    n
}

pub fn bitcount(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let value = match get_string(sh, s.db, &args[1]) {
        Ok(Some(e)) => e.payload,
        Ok(None) => return Frame::Integer(0),
        Err(r) => return r,
    };
    let range = match args.len() {
        2 => bit_range(value.len() as u64, 0, None, false),
        4 | 5 => {
            let (start, end) = match (parse_i64(&args[2]), parse_i64(&args[3])) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(r), _) | (_, Err(r)) => return r,
            };
            if start < 0 && end < 0 && start > end {
                return Frame::Integer(0);
            }
            match unit(args.get(4)) {
                Ok(bits) => bit_range(value.len() as u64, start, Some(end), bits),
                Err(r) => return r,
            }
        }
        _ => return syntax_error(),
    };
    Frame::Integer(range.map_or(0, |(a, b)| count_bits(&value, a, b)) as i64)
}

pub fn bitpos(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let bit = match parse_i64(&args[2]) {
        Ok(b @ (0 | 1)) => b as u8,
        Ok(_) => return Frame::error("ERR The bit argument must be 1 or 0."),
        Err(r) => return r,
    };
    let value = match get_string(sh, s.db, &args[1]) {
        Ok(Some(e)) => e.payload,
        Ok(None) => return Frame::Integer(if bit == 1 { -1 } else { 0 }),
        Err(r) => return r,
    };
    if args.len() > 6 {
        return syntax_error();
    }
    let in_bits = match unit(args.get(5)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let start = match args.get(3).map(|a| parse_i64(a)).transpose() {
        Ok(s) => s.unwrap_or(0),
        Err(r) => return r,
    };
    let end = match args.get(4).map(|a| parse_i64(a)).transpose() {
        Ok(e) => e,
        Err(r) => return r,
    };
    let Some((first, last)) = bit_range(value.len() as u64, start, end, in_bits) else {
        return Frame::Integer(-1);
    };
    // Whole bytes that cannot hold the bit are skipped.
    let skip = if bit == 1 { 0x00 } else { 0xff };
    let mut i = first;
    while i <= last {
        if i & 7 == 0 && i + 7 <= last && value[(i >> 3) as usize] == skip {
            i += 8;
            continue;
        }
        if get_bit(&value, i) == u64::from(bit) {
            return Frame::Integer(i as i64);
        }
        i += 1;
    }
    // Looking for a clear bit with no end given: the string continues with zeros.
    if bit == 0 && end.is_none() {
        return Frame::Integer(value.len() as i64 * 8);
    }
    Frame::Integer(-1)
}

pub fn bitop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let op = args[1].to_ascii_lowercase();
    if !matches!(op.as_slice(), b"and" | b"or" | b"xor" | b"not") {
        return syntax_error();
    }
    if op == b"not" && args.len() != 4 {
        return Frame::error("ERR BITOP NOT must be called with a single source key.");
    }
    let dest = &args[2];
    let _guards = sh
        .keyspace
        .lock_many(s.db, args[2..].iter().map(|k| &k[..]));
    let mut sources = Vec::with_capacity(args.len() - 3);
    for key in &args[3..] {
        match sh.keyspace.get(s.db, key) {
            Ok(Some(e)) if e.kind != Kind::String => return wrongtype(),
            Ok(e) => sources.push(e.map(|e| e.payload).unwrap_or_default()),
            Err(e) => return storage_error(e),
        }
    }
    let len = sources.iter().map(Bytes::len).max().unwrap_or(0);
    let mut out = BytesMut::zeroed(len);
    for i in 0..len {
        let byte = |s: &Bytes| s.get(i).copied().unwrap_or(0);
        let mut it = sources.iter().map(byte);
        let first = it.next().unwrap_or(0);
        out[i] = match op.as_slice() {
            b"and" => it.fold(first, |a, b| a & b),
            b"or" => it.fold(first, |a, b| a | b),
            b"xor" => it.fold(first, |a, b| a ^ b),
            _ => !first,
        };
    }
    let result = if len == 0 {
        sh.keyspace.delete(s.db, dest).map(|_| ())
    } else {
        sh.keyspace.put(s.db, dest, &Entry::string(out.freeze()))
    };
    match result {
        Ok(()) => Frame::Integer(len as i64),
        Err(e) => storage_error(e),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Set(i64),
    IncrBy(i64),
}

struct Field {
    op: Op,
    signed: bool,
    bits: u32,
    offset: u64,
    overflow: Overflow,
}

/// `i1`..`i64`, `u1`..`u63`.
fn field_type(arg: &[u8]) -> Result<(bool, u32), Frame> {
    let err = || {
        Frame::error(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported \
             but i64 is.",
        )
    };
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(err()),
    };
    let bits = parse_i64(&arg[1..]).map_err(|_| err())?;
    let max = if signed { 64 } else { 63 };
    if !(1..=max).contains(&bits) {
        return Err(err());
    }
    Ok((signed, bits as u32))
}

fn parse_fields(args: &[Arg]) -> Result<Vec<Field>, Frame> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let sub = args[j].to_ascii_lowercase();
        let takes_value = match sub.as_slice() {
            b"get" if left >= 2 => false,
            b"set" | b"incrby" if left >= 3 => true,
            b"overflow" if left >= 1 => {
                overflow = match args[j + 1].to_ascii_lowercase().as_slice() {
                    b"wrap" => Overflow::Wrap,
                    b"sat" => Overflow::Sat,
                    b"fail" => Overflow::Fail,
                    _ => return Err(Frame::error("ERR Invalid OVERFLOW type specified")),
                };
                j += 2;
                continue;
            }
            _ => return Err(syntax_error()),
        };
        let (signed, bits) = field_type(&args[j + 1])?;
        let offset = bit_offset(&args[j + 2], Some(bits))?;
        let op = if takes_value {
            let v = parse_i64(&args[j + 3])?;
            if sub == b"set" {
                Op::Set(v)
            } else {
                Op::IncrBy(v)
            }
        } else {
            Op::Get
        };
        fields.push(Field {
            op,
            signed,
            bits,
            offset,
            overflow,
        });
        j += if takes_value { 4 } else { 3 };
    }
    Ok(fields)
}

fn read_field(v: &[u8], offset: u64, bits: u32, signed: bool) -> i128 {
    let mut raw: u64 = 0;
    for i in 0..u64::from(bits) {
        raw = (raw << 1) | get_bit(v, offset + i);
    }
    if signed && bits < 64 && raw >> (bits - 1) & 1 == 1 {
        i128::from(raw) - (1i128 << bits)
    } else if signed {
        i128::from(raw as i64)
    } else {
        i128::from(raw)
    }
}

fn write_field(v: &mut [u8], offset: u64, bits: u32, value: i128) {
    let raw = value as u64;
    for i in 0..u64::from(bits) {
        let on = (raw >> (u64::from(bits) - 1 - i)) & 1 == 1;
        set_bit(v, offset + i, on);
    }
}

/// Fits `value` into the field's range: `Err(())` when it overflows under FAIL.
fn fit(value: i128, signed: bool, bits: u32, overflow: Overflow) -> Result<i128, ()> {
    let (min, max) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    if (min..=max).contains(&value) {
        return Ok(value);
    }
    match overflow {
        Overflow::Fail => Err(()),
        Overflow::Sat => Ok(if value > max { max } else { min }),
        Overflow::Wrap => {
            let m = value.rem_euclid(1i128 << bits);
            Ok(if signed && m > max {
                m - (1i128 << bits)
            } else {
                m
            })
        }
    }
}

/// BITFIELD and BITFIELD_RO.
pub fn bitfield(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let readonly_command = args[0].eq_ignore_ascii_case(b"bitfield_ro");
    let fields = match parse_fields(args) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let writes = fields.iter().any(|f| f.op != Op::Get);
    if writes && readonly_command {
        return Frame::error("ERR BITFIELD_RO only supports the GET subcommand");
    }
    let _guard = writes.then(|| sh.keyspace.lock(s.db, &args[1]));
    let old = match get_string(sh, s.db, &args[1]) {
        Ok(old) => old,
        Err(r) => return r,
    };
    let created = old.is_none();
    let (mut value, at) = match old {
        Some(e) => (BytesMut::from(&e.payload[..]), e.expire_at_ms),
        None => (BytesMut::new(), 0),
    };
    let mut grown = false;
    if writes {
        let need = fields
            .iter()
            .filter(|f| f.op != Op::Get)
            .map(|f| ((f.offset + u64::from(f.bits) - 1) >> 3) + 1)
            .max()
            .unwrap_or(0);
        if need > MAX_STRING_BYTES as u64 {
            return too_big();
        }
        if (value.len() as u64) < need {
            value.resize(need as usize, 0);
            grown = true;
        }
    }
    // Operations that changed something, as Redis counts them: every write when the string was created
    // or grown, otherwise those whose field value changed.
    let mut changes = 0u64;
    let mut replies = Vec::with_capacity(fields.len());
    for f in &fields {
        let old = read_field(&value, f.offset, f.bits, f.signed);
        let (new, reply_old) = match f.op {
            Op::Get => {
                replies.push(Frame::Integer(old as i64));
                continue;
            }
            Op::Set(v) => {
                // Unsigned fields read the value as its two's-complement bits, as Redis does.
                let v = if f.signed {
                    i128::from(v)
                } else {
                    i128::from(v as u64)
                };
                (fit(v, f.signed, f.bits, f.overflow), true)
            }
            Op::IncrBy(d) => (
                fit(old + i128::from(d), f.signed, f.bits, f.overflow),
                false,
            ),
        };
        match new {
            Ok(n) => {
                if created || grown || n != old {
                    changes += 1;
                }
                write_field(&mut value, f.offset, f.bits, n);
                replies.push(Frame::Integer(if reply_old { old } else { n } as i64));
            }
            // FAIL: nothing written, a null reply.
            Err(()) => replies.push(Frame::Null),
        }
    }
    if changes > 0 {
        if created {
            if let Err(r) = store(sh, s.db, &args[1], value, at) {
                return r;
            }
        } else {
            // Only the bytes the written fields cover change (growing zero-fills up to them).
            let (lo, hi) = fields
                .iter()
                .filter(|f| f.op != Op::Get)
                .map(|f| (f.offset >> 3, (f.offset + u64::from(f.bits) - 1) >> 3))
                .fold((u64::MAX, 0), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
            let (lo, hi) = (lo as usize, hi as usize);
            if let Err(e) = sh
                .keyspace
                .patch_string(s.db, &args[1], [(lo, &value[lo..=hi])])
            {
                return storage_error(e);
            }
        }
        sh.keyspace.add_dirty(changes - 1);
    }
    Frame::Array(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_policies_match_redis() {
        assert_eq!(fit(256, false, 8, Overflow::Wrap), Ok(0));
        assert_eq!(fit(256, false, 8, Overflow::Sat), Ok(255));
        assert_eq!(fit(-1, false, 8, Overflow::Sat), Ok(0));
        assert_eq!(fit(-1, false, 8, Overflow::Wrap), Ok(255));
        assert_eq!(fit(128, true, 8, Overflow::Wrap), Ok(-128));
        assert_eq!(fit(-129, true, 8, Overflow::Sat), Ok(-128));
        assert_eq!(fit(128, true, 8, Overflow::Fail), Err(()));
        assert_eq!(
            fit(i128::from(i64::MAX) + 1, true, 64, Overflow::Wrap),
            Ok(i128::from(i64::MIN))
        );
    }

    #[test]
    fn fields_round_trip() {
        let mut v = vec![0u8; 4];
        write_field(&mut v, 3, 5, 0b10110);
        assert_eq!(read_field(&v, 3, 5, false), 0b10110);
        assert_eq!(read_field(&v, 3, 5, true), 0b10110 - 32);
        assert_eq!(count_bits(&v, 0, 31), 3);
        assert_eq!(count_bits(&v, 4, 5), 1);
    }
}
