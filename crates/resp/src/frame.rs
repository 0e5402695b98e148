//! RESP values: encoding replies for RESP2 or RESP3, and decoding any value.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};

use crate::ProtocolVersion;
use crate::request::parse_int;

/// Deepest nesting [`Frame::decode`] accepts, so hostile input cannot exhaust the stack.
const MAX_DECODE_DEPTH: usize = 128;
/// Most elements one aggregate may claim before its elements arrive (the rest grow as they are read).
const MAX_PREALLOCATED_ELEMENTS: usize = 1024;
/// Largest bulk value [`Frame::decode`] accepts (Redis's `proto-max-bulk-len`).
const MAX_DECODE_BULK_BYTES: usize = 512 * 1024 * 1024;

/// One RESP value.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK`: a short status string without CR or LF.
    Simple(Bytes),
    /// `-ERR message`: the whole line after `-`, starting with the error code.
    Error(Bytes),
    /// `:42`.
    Integer(i64),
    /// `$5\r\nhello`: a binary-safe string.
    Bulk(Bytes),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// A missing aggregate: `*-1` in RESP2 (BLPOP timeout, aborted EXEC), `_` in RESP3.
    NullArray,
    /// `*N`: an ordered list.
    Array(Vec<Frame>),
    /// RESP3 `%N` map; a flat array of key, value, key, value... in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~N` set; an array in RESP2.
    Set(Vec<Frame>),
    /// RESP3 `>N` out-of-band push (pub/sub messages, invalidations); an array in RESP2.
    Push(Vec<Frame>),
    /// RESP3 `,1.5` double; a bulk string in RESP2.
    Double(f64),
    /// RESP3 `#t` / `#f`; the integer 1 or 0 in RESP2.
    Boolean(bool),
    /// RESP3 `(123...` arbitrary-precision integer, as its decimal digits; a bulk string in RESP2.
    BigNumber(Bytes),
    /// RESP3 `=N\r\ntxt:...` verbatim string with a three-letter format; a bulk string in RESP2.
    Verbatim {
        /// The format, such as `txt` or `mkd`.
        format: [u8; 3],
        /// The text.
        text: Bytes,
    },
    /// RESP3 `!N` bulk error (may contain newlines); a simple error in RESP2.
    BulkError(Bytes),
}

/// Why [`Frame::decode`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A type byte that is not a RESP type.
    #[error("unknown RESP type byte {0:#04x}")]
    UnknownType(u8),
    /// A length or integer that is not a valid number or is out of range.
    #[error("invalid length or number in {0}")]
    InvalidNumber(&'static str),
    /// A bulk value not followed by CRLF, or another framing mistake.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Aggregates nested deeper than the decoder allows.
    #[error("nesting deeper than {MAX_DECODE_DEPTH} levels")]
    TooDeep,
}

impl Frame {
    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple(Bytes::from_static(b"OK"))
    }

    /// A simple status string.
    pub fn simple(s: &'static str) -> Frame {
        Frame::Simple(Bytes::from_static(s.as_bytes()))
    }

    /// An error reply; `message` starts with the code (`ERR ...`, `WRONGTYPE ...`).
    pub fn error(message: impl Into<String>) -> Frame {
        Frame::Error(Bytes::from(message.into()))
    }

    /// A bulk string.
    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(data.into())
    }

    /// Encodes this value for a connection speaking `version`.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let resp3 = version == ProtocolVersion::Resp3;
        match self {
            Frame::Simple(s) => put_line(out, b'+', s),
            Frame::Error(e) => put_line(out, b'-', e),
            Frame::Integer(n) => {
                out.put_u8(b':');
                put_int(out, *n);
                out.put_slice(b"\r\n");
            }
            Frame::Bulk(b) => put_bulk(out, b'$', b),
            Frame::Null if resp3 => out.put_slice(b"_\r\n"),
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Array(items) => put_aggregate(out, b'*', items, version),
            Frame::Set(items) => {
                put_aggregate(out, if resp3 { b'~' } else { b'*' }, items, version)
            }
            Frame::Push(items) => {
                put_aggregate(out, if resp3 { b'>' } else { b'*' }, items, version)
            }
            Frame::Map(pairs) => {
                if resp3 {
                    put_header(out, b'%', pairs.len());
                } else {
                    put_header(out, b'*', pairs.len() * 2);
                }
                for (k, v) in pairs {
                    k.encode(version, out);
                    v.encode(version, out);
                }
            }
            Frame::Double(d) => {
                let text = format_double(*d);
                if resp3 {
                    put_line(out, b',', text.as_bytes());
                } else {
                    put_bulk(out, b'$', text.as_bytes());
                }
            }
            Frame::Boolean(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::Boolean(b) => out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
            Frame::BigNumber(digits) if resp3 => put_line(out, b'(', digits),
            Frame::BigNumber(digits) => put_bulk(out, b'$', digits),
            Frame::Verbatim { format, text } if resp3 => {
                put_header(out, b'=', text.len() + 4);
                out.put_slice(format);
                out.put_u8(b':');
                out.put_slice(text);
                out.put_slice(b"\r\n");
            }
            Frame::Verbatim { text, .. } => put_bulk(out, b'$', text),
            Frame::BulkError(e) if resp3 => put_bulk(out, b'!', e),
            Frame::BulkError(e) => put_line(out, b'-', e),
        }
    }

    /// The encoded bytes of this value, for tests and small tools.
    pub fn to_bytes(&self, version: ProtocolVersion) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(version, &mut out);
        out.freeze()
    }

    /// Decodes one RESP2 or RESP3 value from the front of `buf`, consuming it. `Ok(None)` means the value
    /// is not complete yet and nothing was consumed. Attributes (`|`) are read and dropped.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let mut pos = 0;
        match decode_at(buf, &mut pos, 0)? {
            Some(frame) => {
                buf.advance(pos);
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }
}

/// Writes a one-line value, replacing CR and LF (which would break the framing) by spaces, as Redis does
/// for error messages.
fn put_line(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

fn put_header(out: &mut BytesMut, prefix: u8, len: usize) {
    out.put_u8(prefix);
    put_uint(out, len as u64);
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, prefix: u8, data: &[u8]) {
    out.reserve(data.len() + 16);
    put_header(out, prefix, data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

fn put_aggregate(out: &mut BytesMut, prefix: u8, items: &[Frame], version: ProtocolVersion) {
    put_header(out, prefix, items.len());
    for item in items {
        item.encode(version, out);
    }
}

fn put_int(out: &mut BytesMut, n: i64) {
    if n < 0 {
        out.put_u8(b'-');
    }
    put_uint(out, n.unsigned_abs());
}

/// Appends `n` in decimal (no allocation, no formatting machinery).
pub fn put_uint(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// Formats a double as Redis does: `inf`, `-inf`, `nan`, integers without a fraction, otherwise the
/// shortest text that reads back as the same value.
pub(crate) fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        let abs = d.abs();
        if abs != 0.0 && !(1e-5..1e17).contains(&abs) {
            // Exponent form for very large or small magnitudes, like C's `%.17g` family (`1e+21`).
            let s = format!("{d:e}");
            match s.split_once('e') {
                Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
                _ => s,
            }
        } else {
            format!("{d}")
        }
    }
}

/// The index of the `\r` of the line starting at `from`, once the `\n` after it is buffered.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let cr = from + buf.get(from..)?.iter().position(|&b| b == b'\r')?;
    (cr + 1 < buf.len()).then_some(cr)
}

fn decode_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Frame>, DecodeError> {
    if depth > MAX_DECODE_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    let Some(&kind) = buf.get(*pos) else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, *pos + 1) else {
        return Ok(None);
    };
    let line = &buf[*pos + 1..end];
    if buf[end + 1] != b'\n' {
        return Err(DecodeError::Malformed("line ending"));
    }
    let after_line = end + 2;
    let number = |what| parse_int(line).ok_or(DecodeError::InvalidNumber(what));
    let length = |what| -> Result<Option<usize>, DecodeError> {
        let n = number(what)?;
        if n == -1 {
            return Ok(None);
        }
        usize::try_from(n)
            .map(Some)
            .map_err(|_| DecodeError::InvalidNumber(what))
    };
    let frame = match kind {
        b'+' => {
            *pos = after_line;
            Frame::Simple(Bytes::copy_from_slice(line))
        }
        b'-' => {
            *pos = after_line;
            Frame::Error(Bytes::copy_from_slice(line))
        }
        b':' => {
            let n = number("integer")?;
            *pos = after_line;
            Frame::Integer(n)
        }
        b'_' => {
            if !line.is_empty() {
                return Err(DecodeError::Malformed("null"));
            }
            *pos = after_line;
            Frame::Null
        }
        b'#' => {
            let b = match line {
                b"t" => true,
                b"f" => false,
                _ => return Err(DecodeError::Malformed("boolean")),
            };
            *pos = after_line;
            Frame::Boolean(b)
        }
        b',' => {
            let text =
                std::str::from_utf8(line).map_err(|_| DecodeError::InvalidNumber("double"))?;
            let d = match text {
                "inf" | "+inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" | "-nan" => f64::NAN,
                _ => text
                    .parse::<f64>()
                    .map_err(|_| DecodeError::InvalidNumber("double"))?,
            };
            *pos = after_line;
            Frame::Double(d)
        }
        b'(' => {
            let digits = line.strip_prefix(b"-").unwrap_or(line);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(DecodeError::InvalidNumber("big number"));
            }
            *pos = after_line;
            Frame::BigNumber(Bytes::copy_from_slice(line))
        }
        b'$' | b'!' | b'=' => {
            let what = match kind {
                b'$' => "bulk string",
                b'!' => "bulk error",
                _ => "verbatim string",
            };
            let Some(len) = length(what)? else {
                if kind != b'$' {
                    return Err(DecodeError::InvalidNumber(what));
                }
                *pos = after_line;
                return Ok(Some(Frame::Null));
            };
            if len > MAX_DECODE_BULK_BYTES {
                return Err(DecodeError::InvalidNumber(what));
            }
            let Some(data) = buf.get(after_line..after_line + len) else {
                return Ok(None);
            };
            match buf.get(after_line + len..after_line + len + 2) {
                None => return Ok(None),
                Some(b"\r\n") => {}
                Some(_) => return Err(DecodeError::Malformed(what)),
            }
            *pos = after_line + len + 2;
            match kind {
                b'$' => Frame::Bulk(Bytes::copy_from_slice(data)),
                b'!' => Frame::BulkError(Bytes::copy_from_slice(data)),
                _ => {
                    let (Some(format), Some(b':')) = (data.get(..3), data.get(3)) else {
                        return Err(DecodeError::Malformed(what));
                    };
                    let mut f = [0u8; 3];
                    f.copy_from_slice(format);
                    Frame::Verbatim {
                        format: f,
                        text: Bytes::copy_from_slice(&data[4..]),
                    }
                }
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let what = "aggregate length";
            let Some(len) = length(what)? else {
                if kind != b'*' {
                    return Err(DecodeError::InvalidNumber(what));
                }
                *pos = after_line;
                return Ok(Some(Frame::NullArray));
            };
            let mut cursor = after_line;
            let pairs = matches!(kind, b'%' | b'|');
            let count = if pairs {
                len.checked_mul(2).ok_or(DecodeError::InvalidNumber(what))?
            } else {
                len
            };
            let mut items = Vec::with_capacity(count.min(MAX_PREALLOCATED_ELEMENTS));
            for _ in 0..count {
                match decode_at(buf, &mut cursor, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            *pos = cursor;
            match kind {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                b'>' => Frame::Push(items),
                b'%' => Frame::Map(pair_up(items)),
                _ => {
                    // An attribute annotates the value that follows it; this decoder drops it.
                    return decode_at(buf, pos, depth + 1);
                }
            }
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok(Some(frame))
}

fn pair_up(items: Vec<Frame>) -> Vec<(Frame, Frame)> {
    let mut pairs = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        pairs.push((k, v));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(f: &Frame, v: ProtocolVersion) -> String {
        String::from_utf8(f.to_bytes(v).to_vec()).unwrap()
    }

    #[test]
    fn resp2_downgrades() {
        use ProtocolVersion::Resp2;
        assert_eq!(enc(&Frame::Null, Resp2), "$-1\r\n");
        assert_eq!(enc(&Frame::NullArray, Resp2), "*-1\r\n");
        assert_eq!(enc(&Frame::Boolean(true), Resp2), ":1\r\n");
        assert_eq!(enc(&Frame::Double(2.0), Resp2), "$1\r\n2\r\n");
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        assert_eq!(enc(&map, Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(
            enc(&Frame::Push(vec![Frame::bulk("m")]), Resp2),
            "*1\r\n$1\r\nm\r\n"
        );
        assert_eq!(enc(&Frame::Set(vec![]), Resp2), "*0\r\n");
        let verbatim = Frame::Verbatim {
            format: *b"txt",
            text: Bytes::from_static(b"hi"),
        };
        assert_eq!(enc(&verbatim, Resp2), "$2\r\nhi\r\n");
    }

    #[test]
    fn resp3_forms() {
        use ProtocolVersion::Resp3;
        assert_eq!(enc(&Frame::Null, Resp3), "_\r\n");
        assert_eq!(enc(&Frame::NullArray, Resp3), "_\r\n");
        assert_eq!(enc(&Frame::Boolean(false), Resp3), "#f\r\n");
        assert_eq!(enc(&Frame::Double(1.5), Resp3), ",1.5\r\n");
        assert_eq!(enc(&Frame::Double(f64::INFINITY), Resp3), ",inf\r\n");
        assert_eq!(enc(&Frame::Double(f64::NEG_INFINITY), Resp3), ",-inf\r\n");
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(-1))]);
        assert_eq!(enc(&map, Resp3), "%1\r\n$1\r\na\r\n:-1\r\n");
        let verbatim = Frame::Verbatim {
            format: *b"txt",
            text: Bytes::from_static(b"hi"),
        };
        assert_eq!(enc(&verbatim, Resp3), "=6\r\ntxt:hi\r\n");
    }

    #[test]
    fn errors_never_break_framing() {
        let e = Frame::error("ERR bad\r\ninput");
        assert_eq!(enc(&e, ProtocolVersion::Resp2), "-ERR bad  input\r\n");
    }

    #[test]
    fn integers_at_the_edges() {
        for n in [0, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(
                enc(&Frame::Integer(n), ProtocolVersion::Resp2),
                format!(":{n}\r\n")
            );
        }
    }

    #[test]
    fn doubles_format_like_redis() {
        assert_eq!(format_double(0.1), "0.1");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-2.5), "-2.5");
        assert_eq!(format_double(1e21), "1e+21");
        assert_eq!(format_double(1.5e-7), "1.5e-7");
    }

    #[test]
    fn decode_waits_for_whole_values() {
        let wire = b"*2\r\n$5\r\nhello\r\n:7\r\n";
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(Frame::decode(&mut buf).unwrap(), None, "cut {cut}");
            assert_eq!(buf.len(), cut);
        }
        let mut buf = BytesMut::from(&wire[..]);
        let f = Frame::decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::Array(vec![Frame::bulk("hello"), Frame::Integer(7)])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn decode_rejects_garbage() {
        for bad in [
            &b"?x\r\n"[..],
            b":1x\r\n",
            b"$2\r\nabc\r\n",
            b"#x\r\n",
            b"_x\r\n",
            b"%-1\r\n",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(
                Frame::decode(&mut buf).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "*1\r\n".repeat(MAX_DECODE_DEPTH + 2);
        let mut buf = BytesMut::from(deep.as_bytes());
        assert_eq!(Frame::decode(&mut buf), Err(DecodeError::TooDeep));
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let bytes = || prop::collection::vec(any::<u8>(), 0..20).prop_map(Bytes::from);
        let line = || "[a-zA-Z0-9 ]{0,12}".prop_map(Bytes::from);
        let leaf = prop_oneof![
            line().prop_map(Frame::Simple),
            line().prop_map(Frame::Error),
            any::<i64>().prop_map(Frame::Integer),
            bytes().prop_map(Frame::Bulk),
            Just(Frame::Null),
            any::<bool>().prop_map(Frame::Boolean),
            (-1e300f64..1e300).prop_map(Frame::Double),
            "-?[1-9][0-9]{0,30}".prop_map(|s| Frame::BigNumber(Bytes::from(s))),
            bytes().prop_map(Frame::BulkError),
        ];
        leaf.prop_recursive(3, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Frame::Array),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Frame::Set),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Frame::Push),
                prop::collection::vec((inner.clone(), inner), 0..3).prop_map(Frame::Map),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// RESP3 encoding reads back as the same value.
        #[test]
        fn resp3_round_trip(frame in arb_frame()) {
            let mut buf = BytesMut::from(&frame.to_bytes(ProtocolVersion::Resp3)[..]);
            let back = Frame::decode(&mut buf).unwrap().unwrap();
            prop_assert!(buf.is_empty());
            // Doubles go through text; compare them as text.
            prop_assert_eq!(
                back.to_bytes(ProtocolVersion::Resp3),
                frame.to_bytes(ProtocolVersion::Resp3)
            );
        }

        /// RESP2 encoding is always decodable (as its downgraded form).
        #[test]
        fn resp2_is_decodable(frame in arb_frame()) {
            let mut buf = BytesMut::from(&frame.to_bytes(ProtocolVersion::Resp2)[..]);
            prop_assert!(Frame::decode(&mut buf).unwrap().is_some());
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..256)) {
            crate::fuzzing::decode_frames(&data);
        }
    }
}
