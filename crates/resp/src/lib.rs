//! strata-resp: the Redis serialization protocol (RESP2 and RESP3), as a codec and nothing more.
//!
//! - [`RequestParser`] turns the bytes a client sends into commands, accepting both the multibulk form
//!   every client library uses and the inline form people type into `telnet`. A [`Request`] holds a
//!   command's bytes, split off the read buffer without a copy; its arguments are borrowed from it as
//!   [`Arg`]s, which a command keeps as `Bytes` (still no copy) only when it stores one. Malformed input yields the exact error Redis sends
//!   (`Protocol error: invalid bulk length`, ...), after which the connection must be closed, as Redis does.
//! - [`Frame`] is a reply (or any RESP3 value); [`Frame::encode`] writes it for the connection's protocol
//!   version, downgrading RESP3-only types for RESP2 clients the way Redis does (a map becomes a flat array,
//!   a double a bulk string, a boolean an integer). [`Frame::decode`] reads any RESP2/RESP3 value, for
//!   clients, tests and tools.
//!
//! Invariant: this crate knows nothing of sockets, storage or commands. Every length read from the wire is
//! checked against [`Limits`] before anything is allocated, and no input makes it panic (see the `fuzzing`
//! module, which the fuzz targets call).
//!
//! ```
//! use bytes::BytesMut;
//! use strata_resp::{Frame, Limits, ProtocolVersion, RequestParser};
//!
//! let mut parser = RequestParser::new(Limits::default());
//! let mut buf = BytesMut::from(&b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING\r\n"[..]);
//! let echo = parser.parse(&mut buf).unwrap().unwrap();
//! assert_eq!(echo, vec![&b"ECHO"[..], &b"hi"[..]]);
//! let ping = parser.parse(&mut buf).unwrap().unwrap(); // an inline command
//! assert_eq!(ping, vec![&b"PING"[..]]);
//! assert!(parser.parse(&mut buf).unwrap().is_none()); // nothing more buffered
//!
//! let mut out = BytesMut::new();
//! Frame::Double(1.5).encode(ProtocolVersion::Resp2, &mut out);
//! assert_eq!(&out[..], b"$3\r\n1.5\r\n");
//! ```

mod arg;
mod frame;
mod inline;
mod request;

pub use arg::{Arg, Args, Request, args_of, to_owned_args};
pub use frame::{DecodeError, Frame, put_uint};
pub use inline::split_args;
pub use request::{RequestParser, UNAUTHENTICATED_ARGS, UNAUTHENTICATED_BULK_BYTES};

/// Which protocol a connection speaks, chosen with `HELLO 2|3` (RESP2 until then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolVersion {
    /// RESP2: simple strings, errors, integers, bulk strings, arrays.
    #[default]
    Resp2,
    /// RESP3: adds null, double, boolean, big number, verbatim string, map, set, push and more.
    Resp3,
}

/// Size limits on requests, Redis's defaults unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string argument (`proto-max-bulk-len`, 512 MB).
    pub max_bulk_bytes: usize,
    /// Largest number of arguments in one multibulk request (Redis accepts up to `INT_MAX`; the buffer
    /// limit bounds memory in practice).
    pub max_multibulk_len: usize,
    /// Longest inline command line, and longest length prefix line (`PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub max_inline_bytes: usize,
    /// Most bytes one client may have buffered that do not yet form a whole command
    /// (`client-query-buffer-limit`, 1 GB).
    pub max_query_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_bytes: 512 * 1024 * 1024,
            max_multibulk_len: i32::MAX as usize,
            max_inline_bytes: 64 * 1024,
            max_query_buffer_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// A request that breaks the protocol. The `Display` text is what Redis replies (after `-ERR `), and the
/// connection is closed after the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A multibulk count that is not a number, or is too large.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk length that is not a number, is negative, or exceeds `max_bulk_bytes`.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// A multibulk count over [`UNAUTHENTICATED_ARGS`] before authentication.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A bulk length over [`UNAUTHENTICATED_BULK_BYTES`] before authentication.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// A multibulk element that does not start with `$`.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A multibulk count line longer than the inline limit without a line end.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A bulk length line longer than the inline limit without a line end.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An inline command longer than the inline limit.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// An inline command with an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// More buffered bytes than the query buffer limit allows.
    #[error("Protocol error: query buffer limit exceeded ({limit} bytes)")]
    QueryBufferLimit {
        /// The configured limit.
        limit: usize,
    },
}

/// Entry points for fuzz targets: each takes arbitrary bytes and must never panic.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::BytesMut;

    use crate::{Frame, Limits, ProtocolVersion, RequestParser};

    /// Feeds `data` to a request parser in two chunks split at `split`, as a socket might deliver it, and
    /// parses commands until it needs more or fails.
    pub fn parse_requests(data: &[u8], split: usize) {
        let limits = Limits {
            max_bulk_bytes: 1 << 20,
            max_multibulk_len: 1 << 16,
            max_inline_bytes: 1 << 12,
            max_query_buffer_bytes: 1 << 22,
        };
        let mut parser = RequestParser::new(limits);
        // The split's lowest bit also picks the unauthenticated limits, so both paths are fuzzed.
        parser.set_unauthenticated(split & 1 == 1);
        let split = split.min(data.len());
        let mut buf = BytesMut::from(&data[..split]);
        for chunk in [&data[split..], &[][..]] {
            // What a look ahead reports must be what the parser then returns, request by request.
            let mut peeked: Vec<Vec<Vec<u8>>> = Vec::new();
            parser.peek(&buf, usize::MAX, |args| {
                peeked.push(args.iter().map(|a| a.to_vec()).collect());
            });
            let mut peeked = peeked.into_iter();
            loop {
                match parser.parse_request(&mut buf) {
                    Ok(Some(request)) => {
                        // The borrowed arguments, the kept ones and the list form agree.
                        let args: Vec<Vec<u8>> =
                            request.args().iter().map(|a| a.to_vec()).collect();
                        let kept: Vec<_> = request.args().iter().map(|a| a.to_bytes()).collect();
                        assert_eq!(kept, args, "a kept argument differs from its bytes");
                        assert_eq!(request.len(), args.len());
                        assert_eq!(request.into_vec(), args, "the list form differs");
                        if let Some(expected) = peeked.next() {
                            assert_eq!(args, expected, "peek disagrees with parse");
                        }
                        continue;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        assert!(
                            peeked.next().is_none(),
                            "peeked a request the parser refused: {e}"
                        );
                        return;
                    }
                }
            }
            assert!(
                peeked.next().is_none(),
                "peeked a request the parser did not return"
            );
            buf.extend_from_slice(chunk);
        }
    }

    /// Decodes `data` as RESP3 values and re-encodes each one in both versions.
    pub fn decode_frames(data: &[u8]) {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(frame)) = Frame::decode(&mut buf) {
            let mut out = BytesMut::new();
            frame.encode(ProtocolVersion::Resp3, &mut out);
            frame.encode(ProtocolVersion::Resp2, &mut out);
        }
    }
}
