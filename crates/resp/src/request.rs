//! Parsing client requests: multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline (`GET k\r\n`).
//!
//! A small request (up to [`WHOLE_REQUEST_BYTES`]) is left in the buffer until all of it has arrived and
//! then split in one go, so the buffer is never shared with arguments while the connection reads more.
//! A larger one is parsed incrementally: when it is only partly buffered the parser keeps what it has
//! parsed (the arguments so far, the length of the bulk string it is waiting for) and returns `Ok(None)`,
//! so a large value arriving over many reads is scanned once, not once per read.

use bytes::{Buf as _, Bytes, BytesMut};

use crate::arg::Request;
use crate::inline::split_args;
use crate::{Limits, ProtocolError};

/// The initial capacity of an argument vector, whatever count the client claims: memory follows the
/// arguments actually received, not the header.
const MAX_PREALLOCATED_ARGS: usize = 1024;

/// How much buffer space to reserve at once for a bulk string still arriving. Reserving the whole length
/// up front would let a client make us allocate 512 MB by sending a header alone.
const MAX_RESERVE_BYTES: usize = 1 << 20;
/// Arguments from this size on are large, as Redis's `PROTO_MBULK_BIG_ARG`: their memory is counted in
/// full while they arrive.
pub const LARGE_BULK_BYTES: usize = 32 * 1024;

/// A multibulk request up to this size is left in the buffer until all of it has arrived, then split
/// in one go. Splitting arguments out as they arrive would leave the buffer shared with them while the
/// rest is awaited, so the next read could not reuse the buffer and had to allocate and copy a new one
/// (~10% of the server's CPU under `MSET -P16`). Larger requests are parsed incrementally, so a big
/// value is scanned once rather than once per read.
const WHOLE_REQUEST_BYTES: usize = 64 << 10;

/// At most this many arguments are pre-scanned (larger requests take the incremental path).
const WHOLE_REQUEST_ARGS: i64 = 1024;

/// A whole small request of at most this many arguments is split where the pre-scan found its
/// arguments; one with more is parsed again by the incremental path. Scanning the headers twice (once
/// to see the request is whole, once to split it) was most of the parser's cost, ~1,200 instructions
/// for a 3-argument PFADD.
const WHOLE_SPLIT_ARGS: usize = 16;

/// An incremental request parser for one connection.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    /// A small request is partly buffered and left unconsumed until the rest arrives.
    partial: bool,
    /// The connection has not authenticated where it must: requests are held to
    /// [`UNAUTHENTICATED_ARGS`] arguments of [`UNAUTHENTICATED_BULK_BYTES`], as Redis holds them, so a
    /// stranger cannot make the server buffer large requests.
    unauthenticated: bool,
    /// The requests [`RequestParser::peek`] found whole at the front of the buffer and the parser has not
    /// returned yet, oldest first: parsing one takes its scan from here instead of scanning it again.
    peeked: std::collections::VecDeque<Scanned>,
    /// The address the front of the buffer must be at for `peeked` to describe it (the buffer moved or was
    /// replaced otherwise, and the scans are dropped).
    peeked_at: usize,
}

/// One whole small request as [`scan_small`] found it: where its arguments are, relative to its start,
/// and where it ends.
#[derive(Debug, Clone, Copy)]
struct Scanned {
    spans: [(u32, u32); WHOLE_SPLIT_ARGS],
    count: u8,
    end: u32,
}

/// Most arguments of a request from a connection that has not authenticated (Redis's figure).
pub const UNAUTHENTICATED_ARGS: usize = 10;
/// Longest argument of a request from a connection that has not authenticated (Redis's figure).
pub const UNAUTHENTICATED_BULK_BYTES: usize = 16384;

#[derive(Debug)]
enum State {
    /// Between requests.
    Idle,
    /// Inside a multibulk request.
    Multibulk {
        /// Arguments still to come.
        remaining: usize,
        /// Arguments parsed so far.
        args: Vec<Bytes>,
        /// The length of the bulk string being waited for, once its header is parsed.
        bulk_len: Option<usize>,
        /// Bytes of `args`, for the query buffer limit.
        args_bytes: usize,
    },
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            state: State::Idle,
            partial: false,
            unauthenticated: false,
            peeked: std::collections::VecDeque::new(),
            peeked_at: 0,
        }
    }

    /// Holds requests to the unauthenticated limits (`true`) or lifts them.
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        if self.unauthenticated != unauthenticated {
            // The peeked requests were checked against the other limits.
            self.peeked.clear();
        }
        self.unauthenticated = unauthenticated;
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes of the request in progress already taken from the buffer (its whole arguments so far): with
    /// what is still in the buffer, the client's query buffer as Redis counts it.
    pub fn buffered_bytes(&self) -> usize {
        match &self.state {
            State::Multibulk { args_bytes, .. } => *args_bytes,
            State::Idle => 0,
        }
    }

    /// The size of the argument being awaited (with its CRLF) when it is a large one (at least
    /// [`LARGE_BULK_BYTES`]), else 0: the memory its arrival takes, which Redis allocates as soon as it
    /// has read the length.
    pub fn awaited_large_bulk(&self) -> usize {
        match &self.state {
            State::Multibulk {
                bulk_len: Some(len),
                ..
            } if *len >= LARGE_BULK_BYTES => len + 2,
            _ => 0,
        }
    }

    /// Whether the parser is in the middle of a request (some of it consumed from the buffer).
    pub fn is_mid_request(&self) -> bool {
        self.partial || matches!(self.state, State::Multibulk { .. })
    }

    /// Parses the next whole request from the front of `buf`, consuming its bytes.
    ///
    /// Returns `Ok(None)` when more bytes are needed. Empty requests (`*0`, a blank line) are skipped, as
    /// Redis does. After an error the connection must be closed: the stream position is lost.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        Ok(self.parse_request(buf)?.map(Request::into_vec))
    }

    /// [`RequestParser::parse`], returning the request as a [`Request`], whose arguments a command
    /// borrows ([`Request::args`]) rather than holding a reference count each.
    pub fn parse_request(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        loop {
            match &mut self.state {
                State::Idle => {
                    let Some(&first) = buf.first() else {
                        self.partial = false;
                        self.peeked.clear();
                        return Ok(None);
                    };
                    if first != b'*' {
                        self.partial = false;
                        match self.parse_inline(buf)? {
                            Some(args) if args.is_empty() => continue,
                            other => return Ok(other.map(Request::from_list)),
                        }
                    }
                    if let Some(scan) = self.take_peeked(buf) {
                        self.partial = false;
                        let request =
                            split_whole(buf, &scan.spans[..scan.count.into()], scan.end as usize);
                        self.peeked_at = buf.as_ptr() as usize;
                        return Ok(Some(request));
                    }
                    let mut spans = [(0u32, 0u32); WHOLE_SPLIT_ARGS];
                    match scan_small(buf, &self.limits, self.unauthenticated, &mut spans) {
                        Small::Incomplete => {
                            self.partial = true;
                            return Ok(None);
                        }
                        Small::Whole { count, end } => {
                            self.partial = false;
                            return Ok(Some(split_whole(buf, &spans[..count], end)));
                        }
                        Small::Other => self.partial = false,
                    }
                    let Some(line_end) = find_line(buf, 0) else {
                        if buf.len() > self.limits.max_inline_bytes {
                            return Err(ProtocolError::TooBigMultibulkCount);
                        }
                        return Ok(None);
                    };
                    let count = parse_int(&buf[1..line_end])
                        .filter(|&n| n <= self.limits.max_multibulk_len as i64)
                        .ok_or(ProtocolError::InvalidMultibulkLength)?;
                    if self.unauthenticated && count > UNAUTHENTICATED_ARGS as i64 {
                        return Err(ProtocolError::UnauthenticatedMultibulkLength);
                    }
                    buf.advance(line_end + 2);
                    if count <= 0 {
                        continue;
                    }
                    // `count` is positive and at most `max_multibulk_len`, a usize.
                    let remaining = usize::try_from(count).unwrap_or(usize::MAX);
                    self.state = State::Multibulk {
                        remaining,
                        args: Vec::with_capacity(remaining.min(MAX_PREALLOCATED_ARGS)),
                        bulk_len: None,
                        args_bytes: 0,
                    };
                }
                State::Multibulk {
                    remaining,
                    args,
                    bulk_len,
                    args_bytes,
                } => {
                    let len = match *bulk_len {
                        Some(len) => len,
                        None => {
                            let Some(line_end) = find_line(buf, 0) else {
                                if buf.len() > self.limits.max_inline_bytes {
                                    return Err(ProtocolError::TooBigBulkCount);
                                }
                                return Ok(None);
                            };
                            if buf[0] != b'$' {
                                return Err(ProtocolError::ExpectedBulk(char::from(buf[0])));
                            }
                            let len = parse_int(&buf[1..line_end])
                                .and_then(|n| usize::try_from(n).ok())
                                .filter(|&n| n <= self.limits.max_bulk_bytes)
                                .ok_or(ProtocolError::InvalidBulkLength)?;
                            if self.unauthenticated && len > UNAUTHENTICATED_BULK_BYTES {
                                return Err(ProtocolError::UnauthenticatedBulkLength);
                            }
                            buf.advance(line_end + 2);
                            *bulk_len = Some(len);
                            len
                        }
                    };
                    // The bulk string and the CRLF after it. Like Redis, the two bytes after the data are
                    // skipped without being checked.
                    let needed = len + 2;
                    if buf.len() < needed {
                        if *args_bytes + buf.len() > self.limits.max_query_buffer_bytes {
                            return Err(ProtocolError::QueryBufferLimit {
                                limit: self.limits.max_query_buffer_bytes,
                            });
                        }
                        buf.reserve((needed - buf.len()).min(MAX_RESERVE_BYTES));
                        return Ok(None);
                    }
                    let arg = buf.split_to(len).freeze();
                    buf.advance(2);
                    *args_bytes += arg.len();
                    args.push(arg);
                    *bulk_len = None;
                    *remaining -= 1;
                    if *remaining == 0 {
                        let args = std::mem::take(args);
                        self.state = State::Idle;
                        return Ok(Some(Request::from_list(args)));
                    }
                }
            }
        }
    }

    /// Looks at the whole requests at the front of `buf` without consuming anything: calls `each` with the
    /// arguments of each, for at most `max` requests, and returns how many it saw. It stops at the first that
    /// is not a whole multibulk request of at most 16 arguments and 64 KiB (an inline command, one partly
    /// arrived, a malformed or a larger one), and sees nothing while a request is in progress, since `buf`
    /// then starts inside it. What it reports for a request is what [`RequestParser::parse`] returns for it.
    ///
    /// The scans are kept, so parsing those requests next (from the same buffer, only appended to
    /// meanwhile) does not scan them again. A server uses it to learn a pipeline's next keys before running
    /// the commands, so their cache misses can start together (strata-kv's connection loop).
    pub fn peek<'a>(
        &mut self,
        buf: &'a [u8],
        max: usize,
        mut each: impl FnMut(&[&'a [u8]]),
    ) -> usize {
        self.peeked.clear();
        if self.is_mid_request() {
            return 0;
        }
        self.peeked_at = buf.as_ptr() as usize;
        let mut pos = 0;
        while self.peeked.len() < max && buf.get(pos) == Some(&b'*') {
            let rest = &buf[pos..];
            let mut spans = [(0u32, 0u32); WHOLE_SPLIT_ARGS];
            let Small::Whole { count, end } =
                scan_small(rest, &self.limits, self.unauthenticated, &mut spans)
            else {
                break;
            };
            let mut args: [&[u8]; WHOLE_SPLIT_ARGS] = [&[]; WHOLE_SPLIT_ARGS];
            for (arg, &(start, len)) in args.iter_mut().zip(&spans[..count]) {
                *arg = &rest[start as usize..][..len as usize];
            }
            each(&args[..count]);
            // Both fit: at most WHOLE_SPLIT_ARGS arguments, a whole request of at most WHOLE_REQUEST_BYTES.
            self.peeked.push_back(Scanned {
                spans,
                count: count as u8,
                end: end as u32,
            });
            pos += end;
        }
        self.peeked.len()
    }

    /// The kept scan of the request at the front of `buf`, if [`RequestParser::peek`] scanned it: the buffer
    /// must still start where the scans left off and hold the whole request.
    fn take_peeked(&mut self, buf: &BytesMut) -> Option<Scanned> {
        let scan = *self.peeked.front()?;
        if buf.as_ptr() as usize != self.peeked_at || buf.len() < scan.end as usize {
            self.peeked.clear();
            return None;
        }
        self.peeked.pop_front();
        Some(scan)
    }

    /// Parses one inline line; `Some(vec![])` for a blank line.
    fn parse_inline(&self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > self.limits.max_inline_bytes {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(None);
        };
        if newline > self.limits.max_inline_bytes {
            return Err(ProtocolError::TooBigInline);
        }
        let line = buf.split_to(newline + 1);
        let mut text = &line[..newline];
        if let [rest @ .., b'\r'] = text {
            text = rest;
        }
        let args = split_args(text).ok_or(ProtocolError::UnbalancedQuotes)?;
        Ok(Some(args.into_iter().map(Bytes::from).collect()))
    }
}

/// What [`scan_small`] found at the front of a buffer.
enum Small {
    /// A well-formed request of at most [`WHOLE_REQUEST_BYTES`] that has not fully arrived yet.
    Incomplete,
    /// A whole well-formed request of `count` (1 to [`WHOLE_SPLIT_ARGS`]) arguments, whose spans were
    /// recorded, ending at `end`.
    Whole { count: usize, end: usize },
    /// Anything else: complete with more arguments, larger, malformed or empty. The incremental parser
    /// takes it (and reports any error, as Redis would).
    Other,
}

/// Scans the multibulk request at the front of `buf` (which starts with `*`) once, recording the
/// (start, length) of each argument in `spans` when it has at most [`WHOLE_SPLIT_ARGS`] of them.
fn scan_small(
    buf: &[u8],
    limits: &Limits,
    unauthenticated: bool,
    spans: &mut [(u32, u32); WHOLE_SPLIT_ARGS],
) -> Small {
    // Anything over a limit goes to the incremental parser at once, which refuses it as Redis does.
    let waiting = |end: usize| {
        if end <= WHOLE_REQUEST_BYTES && buf.len() <= limits.max_query_buffer_bytes {
            Small::Incomplete
        } else {
            Small::Other
        }
    };
    let (count, line_end) = match number_line(buf, 1) {
        Line::Incomplete => return waiting(buf.len()),
        Line::Num(n, end)
            if (1..=WHOLE_REQUEST_ARGS as usize).contains(&n)
                && n <= limits.max_multibulk_len
                && !(unauthenticated && n > UNAUTHENTICATED_ARGS) =>
        {
            (n, end)
        }
        _ => return Small::Other,
    };
    let mut pos = line_end + 2;
    for i in 0..count {
        match buf.get(pos) {
            None => return waiting(buf.len()),
            Some(b'$') => {}
            Some(_) if find_line(buf, pos).is_none() => return waiting(buf.len()),
            Some(_) => return Small::Other,
        }
        let (len, end) = match number_line(buf, pos + 1) {
            Line::Incomplete => return waiting(buf.len()),
            Line::Num(len, end) => (len, end),
            Line::Bad => return Small::Other,
        };
        if len > WHOLE_REQUEST_BYTES
            || len > limits.max_bulk_bytes
            || (unauthenticated && len > UNAUTHENTICATED_BULK_BYTES)
        {
            return Small::Other;
        }
        let start = end + 2;
        if let Some(span) = spans.get_mut(i) {
            // Both fit: at most WHOLE_REQUEST_ARGS arguments of WHOLE_REQUEST_BYTES each come before.
            *span = (start as u32, len as u32);
        }
        pos = start + len + 2;
        if pos > buf.len() {
            return waiting(pos);
        }
    }
    if count <= WHOLE_SPLIT_ARGS {
        Small::Whole { count, end: pos }
    } else {
        Small::Other
    }
}

/// A header line's number, as [`scan_small`] reads it.
enum Line {
    /// The number and the index of the `\r` ending its line.
    Num(usize, usize),
    /// The line has not fully arrived.
    Incomplete,
    /// The line is whole but holds no valid non-negative number.
    Bad,
}

/// The non-negative decimal number on the line starting at `from`, read in one pass: the common case
/// of [`find_line`] then [`parse_int`]. Anything unusual (a sign, a leading zero, a long number, a stray
/// byte) goes through those two, so the verdict is theirs.
#[inline]
fn number_line(buf: &[u8], from: usize) -> Line {
    let mut value = 0usize;
    let mut i = from;
    while let Some(&b) = buf.get(i) {
        match b {
            b'0'..=b'9' if i - from < 18 && (value != 0 || i == from) => {
                value = value * 10 + usize::from(b - b'0');
                i += 1;
            }
            b'\r' if i > from => {
                return if i + 1 < buf.len() {
                    Line::Num(value, i)
                } else {
                    Line::Incomplete
                };
            }
            _ => break,
        }
    }
    match find_line(buf, from) {
        None => Line::Incomplete,
        Some(end) => match parse_int(&buf[from..end]).and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Line::Num(n, end),
            None => Line::Bad,
        },
    }
}

/// Splits a whole request scanned by [`scan_small`] off the front of `buf`: each argument is taken where
/// the scan found it, without a second pass over the headers.
fn split_whole(buf: &mut BytesMut, spans: &[(u32, u32)], end: usize) -> Request {
    // One split of the whole request, which its arguments borrow (see `crate::arg`): splitting each
    // argument off the buffer cost two cursor moves and a split, a slice each a reference count.
    Request::whole(buf.split_to(end).freeze(), spans)
}

/// The index of the `\r` ending the line that starts at `from`, once the `\n` after it is buffered too.
fn find_line(buf: &[u8], from: usize) -> Option<usize> {
    let cr = from + buf.get(from..)?.iter().position(|&b| b == b'\r')?;
    (cr + 1 < buf.len()).then_some(cr)
}

/// Parses a decimal integer strictly, as Redis's `string2ll`: an optional `-`, digits, no leading zeros,
/// no spaces, no overflow.
pub(crate) fn parse_int(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, digits),
    };
    match digits {
        [] => return None,
        [b'0'] => return (!negative).then_some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(digit)?
        } else {
            value.checked_add(digit)?
        };
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut parser = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = parser.parse(&mut buf)? {
            out.push(args.iter().map(|a| a.to_vec()).collect());
        }
        Ok(out)
    }

    fn cmd(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn multibulk_and_inline_and_pipelines() {
        let got = parse_all(b"*1\r\n$4\r\nPING\r\nSET k \"a b\"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            .unwrap();
        assert_eq!(
            got,
            vec![
                cmd(&["PING"]),
                cmd(&["SET", "k", "a b"]),
                cmd(&["GET", "k"])
            ]
        );
    }

    #[test]
    fn unauthenticated_requests_are_held_to_redis_limits() {
        let parse = |input: &[u8], unauthenticated: bool| {
            let mut p = RequestParser::new(Limits::default());
            p.set_unauthenticated(unauthenticated);
            p.parse(&mut BytesMut::from(input))
                .map_err(|e| e.to_string())
        };
        // Refused at the header, before the rest arrives.
        assert_eq!(
            parse(b"*100\r\n", true),
            Err("Protocol error: unauthenticated multibulk length".to_owned())
        );
        assert_eq!(
            parse(b"*1\r\n$100000000\r\n", true),
            Err("Protocol error: unauthenticated bulk length".to_owned())
        );
        assert_eq!(
            parse(b"*11\r\n$1\r\na\r\n", true),
            Err("Protocol error: unauthenticated multibulk length".to_owned())
        );
        assert_eq!(
            parse(b"*1\r\n$16385\r\n", true),
            Err("Protocol error: unauthenticated bulk length".to_owned())
        );
        // At the limits, or once authenticated, requests wait for their bytes as usual.
        assert_eq!(parse(b"*10\r\n", true), Ok(None));
        assert_eq!(parse(b"*1\r\n$16384\r\n", true), Ok(None));
        assert_eq!(parse(b"*100\r\n", false), Ok(None));
        assert_eq!(parse(b"*1\r\n$100000000\r\n", false), Ok(None));
    }

    #[test]
    fn binary_safe_arguments() {
        let arg = b"a\r\nb\0c".to_vec();
        let got = parse_all(&encode(&[b"SET".to_vec(), arg.clone()])).unwrap();
        assert_eq!(got, vec![vec![b"SET".to_vec(), arg]]);
    }

    #[test]
    fn empty_requests_are_skipped() {
        let got = parse_all(b"*0\r\n*-1\r\n\r\n\n   \r\n*1\r\n$0\r\n\r\n").unwrap();
        assert_eq!(got, vec![vec![Vec::<u8>::new()]]);
    }

    #[test]
    fn errors_are_redis_errors() {
        let table: &[(&[u8], &str)] = &[
            (b"*abc\r\n", "Protocol error: invalid multibulk length"),
            (
                b"*2147483648\r\n",
                "Protocol error: invalid multibulk length",
            ),
            (b"*01\r\n", "Protocol error: invalid multibulk length"),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
            (
                b"*1\r\n$536870913\r\n",
                "Protocol error: invalid bulk length",
            ),
            (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
            (
                b"SET k \"abc\r\n",
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (input, message) in table {
            let err = parse_all(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                *message,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn overlong_lines_are_refused() {
        let long = vec![b'a'; 64 * 1024 + 1];
        assert_eq!(parse_all(&long).unwrap_err(), ProtocolError::TooBigInline);
        let mut mbulk = b"*".to_vec();
        mbulk.extend(std::iter::repeat_n(b'1', 64 * 1024 + 1));
        assert_eq!(
            parse_all(&mbulk).unwrap_err(),
            ProtocolError::TooBigMultibulkCount
        );
        let mut bulk = b"*1\r\n$".to_vec();
        bulk.extend(std::iter::repeat_n(b'1', 64 * 1024 + 1));
        assert_eq!(
            parse_all(&bulk).unwrap_err(),
            ProtocolError::TooBigBulkCount
        );
    }

    #[test]
    fn query_buffer_limit_is_enforced() {
        let limits = Limits {
            max_query_buffer_bytes: 100,
            ..Limits::default()
        };
        let mut parser = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*2\r\n$60\r\n"[..]);
        buf.extend_from_slice(&[b'x'; 60]);
        buf.extend_from_slice(b"\r\n$60\r\n");
        buf.extend_from_slice(&[b'y'; 50]);
        assert!(parser.parse(&mut buf).is_err());
    }

    #[test]
    fn a_small_request_stays_buffered_until_whole() {
        let mut parser = RequestParser::new(Limits::default());
        let whole = encode(&cmd(&["SET", "key", "value"]));
        let mut buf = BytesMut::new();
        for (i, &b) in whole.iter().enumerate() {
            assert_eq!(parser.parse(&mut buf).unwrap(), None);
            // Nothing is split off (and so shared) before the request is whole.
            assert_eq!(buf.len(), i);
            assert_eq!(parser.is_mid_request(), i > 0);
            buf.extend_from_slice(&[b]);
        }
        let args = parser.parse(&mut buf).unwrap().unwrap();
        assert_eq!(args, cmd(&["SET", "key", "value"]));
        assert!(buf.is_empty());
        assert!(!parser.is_mid_request());
    }

    #[test]
    fn requests_around_the_split_limit_parse_at_every_arrival_point() {
        for count in [
            1,
            WHOLE_SPLIT_ARGS - 1,
            WHOLE_SPLIT_ARGS,
            WHOLE_SPLIT_ARGS + 1,
        ] {
            let args: Vec<Vec<u8>> = (0..count).map(|i| vec![b'a' + i as u8; i]).collect();
            let wire = [encode(&args), encode(&args[..1])].concat();
            for cut in 0..=wire.len() {
                let mut parser = RequestParser::new(Limits::default());
                let mut buf = BytesMut::from(&wire[..cut]);
                let mut got = Vec::new();
                while let Some(a) = parser.parse(&mut buf).unwrap() {
                    got.push(a.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                }
                buf.extend_from_slice(&wire[cut..]);
                while let Some(a) = parser.parse(&mut buf).unwrap() {
                    got.push(a.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                }
                assert_eq!(
                    got,
                    vec![args.clone(), args[..1].to_vec()],
                    "{count} args, cut {cut}"
                );
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn a_claimed_huge_bulk_does_not_allocate_it() {
        let mut parser = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(&b"*1\r\n$536870912\r\n"[..]);
        assert_eq!(parser.parse(&mut buf).unwrap(), None);
        assert!(
            buf.capacity() <= 2 * MAX_RESERVE_BYTES,
            "{}",
            buf.capacity()
        );
    }

    #[test]
    fn strict_integers() {
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-12"), Some(-12));
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_int(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn peek_all(parser: &mut RequestParser, input: &[u8], max: usize) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let seen = parser.peek(input, max, |args| {
            out.push(args.iter().map(|a| a.to_vec()).collect());
        });
        assert_eq!(seen, out.len());
        out
    }

    #[test]
    fn peek_sees_whole_pipelined_requests_and_consumes_nothing() {
        let mut parser = RequestParser::new(Limits::default());
        let get = cmd(&["GET", "a"]);
        let eval = cmd(&["EVALSHA", "abc", "1", "k"]);
        let mut wire = encode(&get);
        wire.extend(encode(&eval));
        wire.extend(encode(&get));
        assert_eq!(
            peek_all(&mut parser, &wire, 16),
            vec![get.clone(), eval.clone(), get.clone()]
        );
        assert_eq!(
            peek_all(&mut parser, &wire, 2),
            vec![get.clone(), eval.clone()]
        );
        // It stops at a partial request, an inline one, and one of more than 16 arguments.
        assert_eq!(peek_all(&mut parser, &wire[..wire.len() - 1], 16).len(), 2);
        let mut inline = encode(&get);
        inline.extend_from_slice(b"PING\r\n");
        inline.extend(encode(&get));
        assert_eq!(peek_all(&mut parser, &inline, 16), vec![get.clone()]);
        let mset: Vec<String> = (0..17).map(|i| i.to_string()).collect();
        let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
        let mut big = encode(&cmd(&mset));
        big.extend(encode(&get));
        assert!(peek_all(&mut parser, &big, 16).is_empty());
        assert_eq!(parse_all(&wire).unwrap().len(), 3);
    }

    #[test]
    fn peek_sees_nothing_in_the_middle_of_a_request() {
        let mut parser = RequestParser::new(Limits::default());
        // A request larger than the whole-request size is taken in parts; the buffer then starts inside it.
        let big = cmd(&["SET", "k", &"v".repeat(WHOLE_REQUEST_BYTES + 10)]);
        let wire = encode(&big);
        let mut buf = BytesMut::from(&wire[..wire.len() / 2]);
        assert!(parser.parse(&mut buf).unwrap().is_none());
        assert!(parser.is_mid_request());
        let mut rest = wire[wire.len() / 2..].to_vec();
        rest.extend(encode(&cmd(&["GET", "a"])));
        assert!(peek_all(&mut parser, &rest, 16).is_empty());
    }

    #[test]
    fn peeked_scans_serve_the_next_parses_only_of_the_same_buffer() {
        let mut parser = RequestParser::new(Limits::default());
        let one = cmd(&["SET", "k", "v"]);
        let two = cmd(&["GET", "k"]);
        let mut wire = encode(&one);
        wire.extend(encode(&two));
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(peek_all(&mut parser, &buf, 16).len(), 2);
        // More arrives meanwhile (appended: the front does not move while there is room).
        buf.reserve(64);
        let front = buf.as_ptr();
        buf.extend_from_slice(&encode(&cmd(&["PING"])));
        assert_eq!(buf.as_ptr(), front);
        let mut next = |buf: &mut BytesMut| -> Vec<Vec<u8>> {
            let args = parser.parse(buf).unwrap().unwrap();
            args.iter().map(|a| a.to_vec()).collect()
        };
        assert_eq!(next(&mut buf), one);
        // A different buffer is scanned afresh, not split where the kept scans say.
        let other = cmd(&["HSET", "hash", "field", "value"]);
        let mut elsewhere = BytesMut::from(&encode(&other)[..]);
        assert_eq!(next(&mut elsewhere), other);
        // And the first buffer then too (its kept scans were dropped).
        assert_eq!(next(&mut buf), two);
        assert_eq!(next(&mut buf), cmd(&["PING"]));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_change_of_limits_drops_the_peeked_scans() {
        let mut parser = RequestParser::new(Limits::default());
        let args: Vec<String> = (0..12).map(|i| format!("a{i}")).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut buf = BytesMut::from(&encode(&cmd(&args))[..]);
        assert_eq!(peek_all(&mut parser, &buf, 16).len(), 1);
        // Twelve arguments are too many before authentication: the request is refused, not taken from the
        // scan made under the other limits.
        parser.set_unauthenticated(true);
        assert_eq!(
            parser.parse(&mut buf),
            Err(ProtocolError::UnauthenticatedMultibulkLength)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any split of a valid pipeline into reads gives the same commands (with argument counts on
        /// both sides of WHOLE_SPLIT_ARGS).
        #[test]
        fn split_reads_give_the_same_commands(
            cmds in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..24), 1..6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let wire: Vec<u8> = cmds.iter().flat_map(|c| encode(c)).collect();
            let mut cut_points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            cut_points.sort_unstable();
            let mut parser = RequestParser::new(Limits::default());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut last = 0;
            for cut in cut_points.into_iter().chain([wire.len()]) {
                buf.extend_from_slice(&wire[last..cut]);
                last = cut;
                let mut peeked = Vec::new();
                parser.peek(&buf, usize::MAX, |args| {
                    peeked.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                });
                let before = got.len();
                while let Some(args) = parser.parse(&mut buf).unwrap() {
                    got.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                }
                // The look ahead sees a prefix of what the parser returns (small requests only).
                prop_assert!(peeked.len() <= got.len() - before);
                prop_assert_eq!(&got[before..before + peeked.len()], &peeked[..]);
            }
            prop_assert_eq!(got, cmds);
            prop_assert!(buf.is_empty());
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
            crate::fuzzing::parse_requests(&data, split);
        }
    }
}
