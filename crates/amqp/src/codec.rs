//! Frames on the wire: splitting the byte stream into frames, decoding methods and content headers with
//! `amq-protocol`, and encoding what the broker sends.
//!
//! The framing itself (type, channel, size, payload, frame-end) is done here so a body frame's payload is a
//! zero-copy slice of the read buffer; method and content-header payloads are decoded by amq-protocol after
//! [`check_method`] has checked that the method is one a client may send and that every field table in it
//! nests at most [`MAX_TABLE_DEPTH`] deep (the codec parses tables recursively, so unbounded nesting from the
//! network would exhaust the stack). The hot-path encoders (`basic.deliver`, content) write bytes directly;
//! everything else goes through amq-protocol's generator.
//!
//! Invariant: knows nothing of sockets, queues or storage; no input panics it.

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame};
use amq_protocol::protocol::AMQPClass;
use amq_protocol::protocol::basic::{self, AMQPProperties};
use amq_protocol::types::ShortString;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Frame type octets.
pub const FRAME_METHOD: u8 = 1;
/// Content header frame.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The frame-end octet.
pub const FRAME_END: u8 = 0xCE;
/// Bytes of framing around a payload: type, channel, size (7) and frame-end (1).
pub const FRAME_OVERHEAD_BYTES: usize = 8;
/// The smallest frame_max a peer may negotiate, and the limit before tuning (AMQP's frame-min-size).
pub const FRAME_MIN_BYTES: u32 = 4096;
/// Deepest nesting of field tables and arrays accepted in a method or content header.
pub const MAX_TABLE_DEPTH: usize = 32;
/// The protocol header a 0-9-1 client sends first, and the one the broker answers a wrong header with.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// One frame as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The frame type octet.
    pub kind: u8,
    /// The channel number.
    pub channel: u16,
    /// The payload (zero-copy from the read buffer).
    pub payload: Bytes,
}

/// Why the byte stream is not a valid sequence of frames (connection.close 501 FRAME_ERROR, or 505 for an
/// unknown frame type as RabbitMQ answers it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame's payload is larger than the negotiated frame_max.
    #[error("frame size {size_bytes} exceeds frame_max {max_bytes}")]
    TooLarge {
        /// The payload size announced.
        size_bytes: u64,
        /// The limit in force.
        max_bytes: u32,
    },
    /// The octet after the payload is not 0xCE.
    #[error("frame end marker missing (got {0:#04x})")]
    BadEnd(u8),
    /// The frame type is none of method, header, body, heartbeat.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
}

/// Takes the next whole frame off `buf`, if one is complete. `max_frame_bytes` is the negotiated frame_max
/// (total frame size, as AMQP defines it).
pub fn next_frame(
    buf: &mut BytesMut,
    max_frame_bytes: u32,
) -> Result<Option<RawFrame>, FrameError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(FrameError::UnknownType(kind));
    }
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    let limit = (max_frame_bytes as usize).saturating_sub(FRAME_OVERHEAD_BYTES);
    if size > limit {
        return Err(FrameError::TooLarge {
            size_bytes: size as u64,
            max_bytes: max_frame_bytes,
        });
    }
    if buf.len() < 7 + size + 1 {
        buf.reserve(7 + size + 1 - buf.len());
        return Ok(None);
    }
    let end = buf[7 + size];
    if end != FRAME_END {
        return Err(FrameError::BadEnd(end));
    }
    buf.advance(7);
    let payload = buf.split_to(size).freeze();
    buf.advance(1);
    Ok(Some(RawFrame {
        kind,
        channel,
        payload,
    }))
}

/// Why a method or content header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The payload is malformed (connection.close 502 SYNTAX_ERROR).
    #[error("{0}")]
    Syntax(String),
    /// A well-formed method a client may not send, or one the broker does not implement (540).
    #[error("{0}")]
    NotImplemented(String),
}

/// Class and method ids of a method payload.
pub fn method_ids(payload: &[u8]) -> Option<(u16, u16)> {
    let ids = payload.get(..4)?;
    Some((
        u16::from_be_bytes([ids[0], ids[1]]),
        u16::from_be_bytes([ids[2], ids[3]]),
    ))
}

/// Decodes a method payload sent by a client. `basic.publish` and `basic.ack` (once or more per message)
/// are decoded by hand; everything else by amq-protocol.
pub fn decode_method(payload: &[u8]) -> Result<AMQPClass, DecodeError> {
    match method_ids(payload) {
        Some((60, 40)) => {
            return decode_publish(payload)
                .map(|p| AMQPClass::Basic(basic::AMQPMethod::Publish(p)))
                .ok_or_else(|| DecodeError::Syntax("malformed method frame 60/40".into()));
        }
        Some((60, 80)) => {
            return decode_ack(payload)
                .map(|a| AMQPClass::Basic(basic::AMQPMethod::Ack(a)))
                .ok_or_else(|| DecodeError::Syntax("malformed method frame 60/80".into()));
        }
        _ => {}
    }
    check_method(payload)?;
    match amq_protocol::protocol::parse_class(payload) {
        Ok((&[], class)) => Ok(class),
        Ok(_) => Err(DecodeError::Syntax("trailing bytes after method".into())),
        Err(_) => {
            let (c, m) = method_ids(payload).unwrap_or_default();
            Err(DecodeError::Syntax(format!(
                "malformed method frame {c}/{m}"
            )))
        }
    }
}

fn short_string_at(payload: &[u8], pos: &mut usize) -> Option<ShortString> {
    let len = usize::from(*payload.get(*pos)?);
    let bytes = payload.get(*pos + 1..*pos + 1 + len)?;
    *pos += 1 + len;
    ShortString::try_new(std::str::from_utf8(bytes).ok()?).ok()
}

/// basic.publish: reserved short, exchange, routing key, flag octet — nothing after.
fn decode_publish(payload: &[u8]) -> Option<basic::Publish> {
    let mut pos = 6;
    let exchange = short_string_at(payload, &mut pos)?;
    let routing_key = short_string_at(payload, &mut pos)?;
    let bits = *payload.get(pos)?;
    (payload.len() == pos + 1).then_some(basic::Publish {
        exchange,
        routing_key,
        mandatory: bits & 1 != 0,
        immediate: bits & 2 != 0,
    })
}

/// basic.ack: delivery tag, flag octet — nothing after.
fn decode_ack(payload: &[u8]) -> Option<basic::Ack> {
    if payload.len() != 13 {
        return None;
    }
    let tag = u64::from_be_bytes(payload.get(4..12)?.try_into().ok()?);
    Some(basic::Ack {
        delivery_tag: tag,
        multiple: payload[12] & 1 != 0,
    })
}

/// Checks that `payload` is a client-to-server method and that its field tables nest boundedly.
pub fn check_method(payload: &[u8]) -> Result<(), DecodeError> {
    let Some((class, method)) = method_ids(payload) else {
        return Err(DecodeError::Syntax(
            "method frame shorter than 4 bytes".into(),
        ));
    };
    let mut c = Cursor {
        buf: payload,
        pos: 4,
        failed: false,
    };
    // Where the field table sits in each client method that has one: skip the fields before it.
    let table_at = match (class, method) {
        (10, 11) => Some(()), // connection.start-ok: client-properties first
        (40, 10) => {
            // exchange.declare: reserved, exchange, type, bits, arguments
            c.skip(2);
            c.shortstr();
            c.shortstr();
            c.skip(1);
            Some(())
        }
        (40, 30) | (40, 40) | (50, 20) => {
            c.skip(2);
            c.shortstr();
            c.shortstr();
            c.shortstr();
            c.skip(1);
            Some(())
        }
        (50, 50) => {
            c.skip(2);
            c.shortstr();
            c.shortstr();
            c.shortstr();
            Some(())
        }
        (50, 10) => {
            c.skip(2);
            c.shortstr();
            c.skip(1);
            Some(())
        }
        (60, 20) => {
            c.skip(2);
            c.shortstr();
            c.shortstr();
            c.skip(1);
            Some(())
        }
        // Client methods without tables.
        (10, 21 | 31 | 40 | 50 | 51 | 71)
        | (20, 10 | 20 | 21 | 40 | 41)
        | (30, 10)
        | (40, 20)
        | (50, 30 | 40)
        | (60, 10 | 30 | 40 | 70 | 80 | 90 | 100 | 110 | 120)
        | (85, 10)
        | (90, 10 | 20 | 30) => None,
        // Methods only a server sends (connection.start, basic.deliver, ...), and unknown ones.
        _ => {
            return Err(DecodeError::NotImplemented(format!(
                "method {class}/{method} is not a client method this broker implements"
            )));
        }
    };
    if table_at.is_some() && !c.failed && c.table(0).is_none() {
        return Err(DecodeError::Syntax(format!(
            "malformed field table in method {class}/{method} (or nested deeper than {MAX_TABLE_DEPTH})"
        )));
    }
    Ok(())
}

/// Decodes a content header payload: class, body size and properties.
pub fn decode_content_header(payload: &[u8]) -> Result<(u16, u64, AMQPProperties), DecodeError> {
    let bad = |what: &str| DecodeError::Syntax(format!("malformed content header: {what}"));
    if payload.len() < 14 {
        return Err(bad("shorter than 14 bytes"));
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    let size = u64::from_be_bytes([
        payload[4],
        payload[5],
        payload[6],
        payload[7],
        payload[8],
        payload[9],
        payload[10],
        payload[11],
    ]);
    let flags = u16::from_be_bytes([payload[12], payload[13]]);
    let mut c = Cursor {
        buf: payload,
        pos: 14,
        failed: false,
    };
    if flags & (1 << 15) != 0 {
        c.shortstr();
    }
    if flags & (1 << 14) != 0 {
        c.shortstr();
    }
    if flags & (1 << 13) != 0 && !c.failed && c.table(0).is_none() {
        return Err(bad("headers table malformed or too deep"));
    }
    match amq_protocol::protocol::basic::parse_properties(&payload[12..]) {
        Ok((_rest, props)) => Ok((class, size, props)),
        Err(_) => Err(bad("properties")),
    }
}

/// Whether `buf` is a well-formed length-prefixed field table nesting at most [`MAX_TABLE_DEPTH`] deep and
/// nothing else (for tables carried inside strings, such as an AMQPLAIN response).
pub fn check_table(buf: &[u8]) -> bool {
    let mut c = Cursor {
        buf,
        pos: 0,
        failed: false,
    };
    c.table(0).is_some() && c.pos == buf.len()
}

/// A bounds-checked reader used only to find and validate field tables.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl Cursor<'_> {
    fn skip(&mut self, n: usize) -> Option<()> {
        if self.pos + n > self.buf.len() {
            self.failed = true;
            return None;
        }
        self.pos += n;
        Some(())
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.buf.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn shortstr(&mut self) -> Option<()> {
        let Some(n) = self.u8() else {
            self.failed = true;
            return None;
        };
        self.skip(n as usize)
    }

    /// Validates a field table (length-prefixed) at the cursor, at nesting `depth`.
    fn table(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_TABLE_DEPTH {
            return None;
        }
        let len = self.u32()? as usize;
        let end = self.pos.checked_add(len)?;
        if end > self.buf.len() {
            return None;
        }
        while self.pos < end {
            let n = self.u8()? as usize;
            self.skip(n)?;
            self.value(depth)?;
        }
        (self.pos == end).then_some(())
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_TABLE_DEPTH {
            return None;
        }
        let len = self.u32()? as usize;
        let end = self.pos.checked_add(len)?;
        if end > self.buf.len() {
            return None;
        }
        while self.pos < end {
            self.value(depth)?;
        }
        (self.pos == end).then_some(())
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.u8()? {
            b't' | b'b' | b'B' => self.skip(1),
            b's' | b'U' | b'u' => self.skip(2),
            b'I' | b'i' | b'f' => self.skip(4),
            b'l' | b'L' | b'd' | b'T' => self.skip(8),
            b'D' => self.skip(5),
            b'S' | b'x' => {
                let n = self.u32()? as usize;
                self.skip(n)
            }
            b'A' => self.array(depth + 1),
            b'F' => self.table(depth + 1),
            b'V' => Some(()),
            _ => None,
        }
    }
}

/// Appends a method frame to `out` (amq-protocol's generator).
pub fn put_method(out: &mut BytesMut, channel: u16, class: AMQPClass) {
    put_frame(out, &AMQPFrame::Method(channel, class));
}

/// Appends a heartbeat frame.
pub fn put_heartbeat(out: &mut BytesMut) {
    out.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

fn put_shortstr(out: &mut BytesMut, s: &[u8]) {
    let n = s.len().min(255);
    out.put_u8(n as u8);
    out.put_slice(&s[..n]);
}

/// Appends a `basic.deliver` method frame (hand-encoded: it is sent once per message).
pub fn put_deliver(
    out: &mut BytesMut,
    channel: u16,
    consumer_tag: &[u8],
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
) {
    put_deliver_like(
        out,
        channel,
        60,
        consumer_tag,
        delivery_tag,
        redelivered,
        exchange,
        routing_key,
    );
}

#[allow(clippy::too_many_arguments)]
fn put_deliver_like(
    out: &mut BytesMut,
    channel: u16,
    method: u16,
    consumer_tag: &[u8],
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
) {
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    let len_at = out.len();
    out.put_u32(0);
    let start = out.len();
    out.put_u16(60);
    out.put_u16(method);
    if method == 60 {
        put_shortstr(out, consumer_tag);
    }
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(redelivered));
    put_shortstr(out, exchange);
    put_shortstr(out, routing_key);
    let len = (out.len() - start) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Appends a `basic.get-ok` method frame.
pub fn put_get_ok(
    out: &mut BytesMut,
    channel: u16,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
    message_count: u32,
) {
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    let len_at = out.len();
    out.put_u32(0);
    let start = out.len();
    out.put_u16(60);
    out.put_u16(71);
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(redelivered));
    put_shortstr(out, exchange);
    put_shortstr(out, routing_key);
    out.put_u32(message_count);
    let len = (out.len() - start) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// Appends a content header frame (the payload as the publisher sent it) and the body split into frames of
/// at most `frame_max` bytes.
pub fn put_content(out: &mut BytesMut, channel: u16, header: &[u8], body: &[u8], frame_max: u32) {
    out.reserve(header.len() + body.len() + 2 * FRAME_OVERHEAD_BYTES);
    out.put_u8(FRAME_HEADER);
    out.put_u16(channel);
    out.put_u32(header.len() as u32);
    out.put_slice(header);
    out.put_u8(FRAME_END);
    let chunk = (frame_max as usize)
        .saturating_sub(FRAME_OVERHEAD_BYTES)
        .max(1);
    for part in body.chunks(chunk) {
        out.put_u8(FRAME_BODY);
        out.put_u16(channel);
        out.put_u32(part.len() as u32);
        out.put_slice(part);
        out.put_u8(FRAME_END);
    }
}

/// Encodes a content header payload for `properties` and `body_size` (for messages the broker builds or
/// rewrites, such as dead-lettered ones).
pub fn encode_content_header(body_size: u64, properties: &AMQPProperties) -> Bytes {
    let mut out = BytesMut::new();
    let frame = AMQPFrame::Header(
        1,
        amq_protocol::frame::AMQPContentHeader {
            class_id: 60,
            body_size,
            properties: properties.clone(),
        },
    );
    put_frame(&mut out, &frame);
    // Strip the frame's type, channel, size and end octet: the payload is what is stored.
    if out.len() >= FRAME_OVERHEAD_BYTES {
        let len = out.len();
        out.truncate(len - 1);
        out.advance(7);
    }
    out.freeze()
}

fn put_frame(out: &mut BytesMut, frame: &AMQPFrame) {
    match gen_frame(frame)(WriteContext::from(Vec::with_capacity(64))) {
        Ok(ctx) => out.put_slice(&ctx.write),
        // Only reachable with a bug in what the broker builds; the peer then gets nothing rather than half
        // a frame.
        Err(e) => tracing::error!(error = ?e, "cannot encode frame"),
    }
}

/// Entry points for `fuzz/` and the proptest below: they must never panic.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Splits arbitrary bytes into frames and decodes each method and content header.
    pub fn frames(data: &[u8]) {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(frame)) = next_frame(&mut buf, 131_072) {
            match frame.kind {
                FRAME_METHOD => {
                    let _ = decode_method(&frame.payload);
                }
                FRAME_HEADER => {
                    let _ = decode_content_header(&frame.payload);
                }
                _ => {}
            }
        }
        let _ = decode_method(data);
        let _ = decode_content_header(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::queue;
    use amq_protocol::types::{AMQPValue, FieldTable};
    use proptest::prelude::*;

    #[test]
    fn frames_split_and_check_end() {
        let mut buf = BytesMut::new();
        put_heartbeat(&mut buf);
        buf.put_slice(&[FRAME_BODY, 0, 1, 0, 0, 0, 2, b'h', b'i', FRAME_END]);
        buf.put_slice(&[FRAME_BODY, 0, 1, 0, 0]);
        let hb = next_frame(&mut buf, 4096).expect("ok").expect("frame");
        assert_eq!(
            (hb.kind, hb.channel, hb.payload.len()),
            (FRAME_HEARTBEAT, 0, 0)
        );
        let body = next_frame(&mut buf, 4096).expect("ok").expect("frame");
        assert_eq!(&body.payload[..], b"hi");
        assert_eq!(next_frame(&mut buf, 4096), Ok(None));
        let mut bad = BytesMut::from(&[FRAME_BODY, 0, 1, 0, 0, 0, 1, 0, 0][..]);
        assert_eq!(next_frame(&mut bad, 4096), Err(FrameError::BadEnd(0)));
        let mut big = BytesMut::from(&[FRAME_BODY, 0, 1, 0, 1, 0, 0][..]);
        assert!(matches!(
            next_frame(&mut big, 4096),
            Err(FrameError::TooLarge { .. })
        ));
        let mut unknown = BytesMut::from(&[9u8, 0, 0, 0, 0, 0, 0, FRAME_END][..]);
        assert_eq!(
            next_frame(&mut unknown, 4096),
            Err(FrameError::UnknownType(9))
        );
    }

    #[test]
    fn methods_round_trip_and_deep_tables_are_refused() {
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(5));
        let declare = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            durable: true,
            arguments: args.clone(),
            ..Default::default()
        }));
        let mut out = BytesMut::new();
        put_method(&mut out, 1, declare.clone());
        let frame = next_frame(&mut out, 4096).expect("ok").expect("frame");
        assert_eq!(decode_method(&frame.payload), Ok(declare));

        let mut deep = AMQPValue::Boolean(true);
        for _ in 0..(MAX_TABLE_DEPTH + 2) {
            let mut t = FieldTable::default();
            t.insert("k".into(), deep);
            deep = AMQPValue::FieldTable(t);
        }
        let mut deep_args = FieldTable::default();
        deep_args.insert("x".into(), deep);
        let declare = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            arguments: deep_args,
            ..Default::default()
        }));
        let mut out = BytesMut::new();
        put_method(&mut out, 1, declare);
        let frame = next_frame(&mut out, 1 << 20).expect("ok").expect("frame");
        assert!(matches!(
            decode_method(&frame.payload),
            Err(DecodeError::Syntax(_))
        ));

        // A server-only method from a client is refused before parsing.
        let deliver = AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver::default()));
        let mut out = BytesMut::new();
        put_method(&mut out, 1, deliver);
        let frame = next_frame(&mut out, 4096).expect("ok").expect("frame");
        assert!(matches!(
            decode_method(&frame.payload),
            Err(DecodeError::NotImplemented(_))
        ));
    }

    #[test]
    fn deliver_and_content_encode_as_amq_protocol_decodes() {
        let mut out = BytesMut::new();
        put_deliver(&mut out, 3, b"ctag", 7, true, b"ex", b"rk");
        let props = AMQPProperties::default().with_delivery_mode(2);
        let header = encode_content_header(5, &props);
        put_content(&mut out, 3, &header, b"hello", 4096 + 8);
        let (rest, frame) = amq_protocol::frame::parse_frame(&out[..]).expect("deliver");
        assert_eq!(
            frame,
            AMQPFrame::Method(
                3,
                AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                    consumer_tag: "ctag".into(),
                    delivery_tag: 7,
                    redelivered: true,
                    exchange: "ex".into(),
                    routing_key: "rk".into(),
                }))
            )
        );
        let (rest, frame) = amq_protocol::frame::parse_frame(rest).expect("header");
        match frame {
            AMQPFrame::Header(3, h) => {
                assert_eq!((h.body_size, h.properties), (5, props));
            }
            other => panic!("unexpected {other:?}"),
        }
        let (rest, frame) = amq_protocol::frame::parse_frame(rest).expect("body");
        assert_eq!(frame, AMQPFrame::Body(3, b"hello".to_vec()));
        assert!(rest.is_empty());
        let (_, size, p) = decode_content_header(&header).expect("decode");
        assert_eq!((size, p.delivery_mode()), (5, &Some(2)));
    }

    #[test]
    fn hand_decoded_publish_and_ack_match_amq_protocol() {
        for class in [
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: "ex".into(),
                routing_key: "a.b".into(),
                mandatory: true,
                immediate: false,
            })),
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish::default())),
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: u64::MAX - 3,
                multiple: true,
            })),
        ] {
            let mut out = BytesMut::new();
            put_method(&mut out, 1, class.clone());
            let frame = next_frame(&mut out, 4096).expect("ok").expect("frame");
            let generic = amq_protocol::protocol::parse_class(&frame.payload[..])
                .expect("parses")
                .1;
            assert_eq!(decode_method(&frame.payload), Ok(generic.clone()));
            assert_eq!(generic, class);
            // Truncated or extended payloads are refused.
            assert!(decode_method(&frame.payload[..frame.payload.len() - 1]).is_err());
            let mut longer = frame.payload.to_vec();
            longer.push(0);
            assert!(decode_method(&longer).is_err());
        }
    }

    #[test]
    fn body_is_split_by_frame_max() {
        let mut out = BytesMut::new();
        put_content(&mut out, 1, &[0; 14], &[7u8; 10], 12);
        let mut n = 0;
        let _header = next_frame(&mut out, 4096).expect("ok").expect("header");
        while let Some(f) = next_frame(&mut out, 4096).expect("ok") {
            assert!(f.payload.len() <= 4);
            n += f.payload.len();
        }
        assert_eq!(n, 10);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            fuzzing::frames(&data);
        }

        #[test]
        fn mutated_methods_never_panic(pos in 0usize..64, byte in any::<u8>()) {
            let mut args = FieldTable::default();
            args.insert("a".into(), AMQPValue::FieldArray(vec![AMQPValue::LongString("x".into())].into()));
            let declare = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: "q".into(),
                arguments: args,
                ..Default::default()
            }));
            let mut out = BytesMut::new();
            put_method(&mut out, 1, declare);
            let mut bytes = out.to_vec();
            if pos < bytes.len() {
                bytes[pos] = byte;
            }
            fuzzing::frames(&bytes);
        }
    }
}
