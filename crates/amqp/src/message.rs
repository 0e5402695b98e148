//! A published message: routing data, the content header exactly as the publisher sent it, and the body.
//!
//! The header payload is kept as received and re-sent unchanged on delivery, so a message is never
//! re-encoded on the hot path; the parsed properties are kept beside it for routing (headers exchange),
//! persistence (delivery-mode), priority and expiration.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{self, PropertySummary};

/// An immutable message, shared (`Arc`) by every queue it was routed to.
#[derive(Debug, Clone)]
pub struct Message {
    /// The exchange it was published to.
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// The content header payload (class, weight, body size, property flags and values).
    pub header: Bytes,
    /// The body.
    pub body: Bytes,
    /// The properties the broker reads per message (the full set is parsed from `header` on demand).
    pub summary: PropertySummary,
}

impl Message {
    /// A message from its parts; `None` if the header is malformed.
    pub fn new(
        exchange: String,
        routing_key: String,
        header: Bytes,
        body: Bytes,
    ) -> Option<Message> {
        let (_, _, summary) = codec::decode_content_header(&header).ok()?;
        Some(Message {
            exchange,
            routing_key,
            header,
            body,
            summary,
        })
    }

    /// Whether delivery-mode is 2 (persistent).
    pub fn persistent(&self) -> bool {
        self.summary.delivery_mode == 2
    }

    /// The message priority (0 when unset).
    pub fn priority(&self) -> u8 {
        self.summary.priority
    }

    /// The per-message TTL in milliseconds from the `expiration` property, if set and valid.
    pub fn expiration_ms(&self) -> Option<u64> {
        self.summary.expiration_ms
    }

    /// Every property, parsed from the header.
    pub fn properties(&self) -> AMQPProperties {
        codec::parse_properties(&self.header)
    }

    /// The headers table, if set (parsed from the header).
    pub fn headers(&self) -> Option<FieldTable> {
        if !self.summary.has_headers {
            return None;
        }
        self.properties().headers().clone()
    }

    /// Bytes this message holds in memory.
    pub fn size_bytes(&self) -> usize {
        self.header.len() + self.body.len() + self.exchange.len() + self.routing_key.len()
    }

    /// A copy with new properties (the header is re-encoded): used for direct reply-to and dead-lettering.
    pub fn with_properties(&self, properties: AMQPProperties) -> Message {
        let header = codec::encode_content_header(self.body.len() as u64, &properties);
        let summary = codec::decode_content_header(&header)
            .map(|(_, _, s)| s)
            .unwrap_or_default();
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            header,
            body: self.body.clone(),
            summary,
        }
    }

    /// Drops the body in place (it is paged out) and copies the header out of the read buffer it was
    /// received in, which it would otherwise keep alive.
    pub fn drop_body(&mut self) {
        self.body = Bytes::new();
        self.header = Bytes::copy_from_slice(&self.header);
    }

    /// A copy without the body (the body is paged out; the header still gives its size). The header is
    /// copied: as received it is a slice of the connection's read buffer, which it would keep alive.
    pub fn without_body(&self) -> Message {
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            header: Bytes::copy_from_slice(&self.header),
            body: bytes::Bytes::new(),
            summary: self.summary,
        }
    }

    /// The stored form: exchange, routing key, header and body, each length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(self.size_bytes() + 16);
        put_bytes(&mut out, self.exchange.as_bytes());
        put_bytes(&mut out, self.routing_key.as_bytes());
        put_bytes(&mut out, &self.header);
        put_bytes(&mut out, &self.body);
        out.to_vec()
    }

    /// Decodes [`Message::encode`]'s output; `None` if it is damaged.
    pub fn decode(bytes: &[u8]) -> Option<Message> {
        let mut rest = bytes;
        let exchange = String::from_utf8(take_bytes(&mut rest)?.to_vec()).ok()?;
        let routing_key = String::from_utf8(take_bytes(&mut rest)?.to_vec()).ok()?;
        let header = Bytes::copy_from_slice(take_bytes(&mut rest)?);
        let body = Bytes::copy_from_slice(take_bytes(&mut rest)?);
        Message::new(exchange, routing_key, header, body)
    }
}

/// The copy of `msg` that dead-lettering publishes: the `x-death` header gains (or bumps the count of) an
/// entry for (`queue`, `reason`) and moves it first, as RabbitMQ writes it (`count`, `reason`, `queue`,
/// `time`, `exchange`, `routing-keys`, and `original-expiration` when a per-message TTL is removed);
/// `x-first-death-*` are set once and `x-last-death-*` every time. It is published to `dlx` with
/// `dl_routing_key`, or its own routing key.
pub fn dead_lettered(
    msg: &Message,
    queue: &str,
    reason: &str,
    dlx: &str,
    dl_routing_key: Option<&str>,
    now_secs: u64,
) -> Message {
    let lstr = |s: &str| AMQPValue::LongString(s.as_bytes().into());
    let props = msg.properties();
    let mut headers = props.headers().clone().unwrap_or_default();
    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |t: &FieldTable| {
        t.inner().get("queue").and_then(str_arg).as_deref() == Some(queue)
            && t.inner().get("reason").and_then(str_arg).as_deref() == Some(reason)
    };
    let existing = deaths
        .iter()
        .position(|d| matches!(d, AMQPValue::FieldTable(t) if same(t)));
    let entry = match existing {
        Some(i) => {
            let AMQPValue::FieldTable(mut t) = deaths.remove(i) else {
                return msg.clone();
            };
            let count = t.inner().get("count").and_then(int_arg).unwrap_or(0);
            t.insert("count".into(), AMQPValue::LongLongInt(count + 1));
            t.insert("time".into(), AMQPValue::Timestamp(now_secs));
            t
        }
        None => {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            t.insert("reason".into(), lstr(reason));
            t.insert("queue".into(), lstr(queue));
            t.insert("time".into(), AMQPValue::Timestamp(now_secs));
            t.insert("exchange".into(), lstr(&msg.exchange));
            t.insert(
                "routing-keys".into(),
                AMQPValue::FieldArray(vec![lstr(&msg.routing_key)].into()),
            );
            if let Some(exp) = props.expiration() {
                t.insert("original-expiration".into(), lstr(exp.as_str()));
            }
            t
        }
    };
    deaths.insert(0, AMQPValue::FieldTable(entry));
    headers.insert("x-death".into(), AMQPValue::FieldArray(deaths.into()));
    if !headers.contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), lstr(reason));
        headers.insert("x-first-death-queue".into(), lstr(queue));
        headers.insert("x-first-death-exchange".into(), lstr(&msg.exchange));
    }
    headers.insert("x-last-death-reason".into(), lstr(reason));
    headers.insert("x-last-death-queue".into(), lstr(queue));
    headers.insert("x-last-death-exchange".into(), lstr(&msg.exchange));
    let props = without_expiration(&props).with_headers(headers);
    let mut out = msg.with_properties(props);
    out.exchange = dlx.to_owned();
    out.routing_key = dl_routing_key.unwrap_or(&msg.routing_key).to_owned();
    out
}

/// The (queue, reason) pairs of a message's `x-death` header, most recent first; an entry that is not a
/// table counts as a rejection (a client wrote it, so a cycle through it is not automatic).
pub fn death_path(msg: &Message) -> Vec<(String, String)> {
    let Some(headers) = msg.headers() else {
        return Vec::new();
    };
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        return Vec::new();
    };
    deaths
        .as_slice()
        .iter()
        .map(|d| match d {
            AMQPValue::FieldTable(t) => (
                t.inner().get("queue").and_then(str_arg).unwrap_or_default(),
                t.inner()
                    .get("reason")
                    .and_then(str_arg)
                    .unwrap_or_default(),
            ),
            _ => (String::new(), "rejected".to_owned()),
        })
        .collect()
}

/// RabbitMQ's dead-letter cycle rule: dead-lettering into `queue` is a cycle when `queue` appears in the
/// death path and every death up to and including its most recent one there was automatic (not
/// `rejected`). Such a copy is dropped; a rejection in the loop makes it a deliberate retry.
pub fn is_death_cycle(queue: &str, path: &[(String, String)]) -> bool {
    match path.iter().position(|(q, _)| q == queue) {
        None => false,
        Some(i) => path[..=i].iter().all(|(_, reason)| reason != "rejected"),
    }
}

/// A copy of `p` without the expiration property (dead-lettering removes it, as RabbitMQ does).
fn without_expiration(p: &AMQPProperties) -> AMQPProperties {
    copy_properties(p, false, true)
}

/// A copy of `p`, with or without its expiration and user-id (the properties a broker may drop when it
/// passes a message on: dead-lettering drops the expiration, federation the user-id unless trusted).
/// `AMQPProperties` has private fields, so a copy that leaves one out is built property by property.
pub(crate) fn copy_properties(
    p: &AMQPProperties,
    keep_expiration: bool,
    keep_user_id: bool,
) -> AMQPProperties {
    let mut out = AMQPProperties::default();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = p.headers() {
        out = out.with_headers(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if keep_expiration && let Some(v) = p.expiration() {
        out = out.with_expiration(v.clone());
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(v.clone());
    }
    if keep_user_id && let Some(v) = p.user_id() {
        out = out.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(v.clone());
    }
    out
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn take_bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let b = rest.get(4..4 + len)?;
    *rest = &rest[4 + len..];
    Some(b)
}

/// An integer argument (any AMQP integer type), as RabbitMQ accepts them.
pub fn int_arg(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(i) => i64::from(*i),
        AMQPValue::ShortShortUInt(i) => i64::from(*i),
        AMQPValue::ShortInt(i) => i64::from(*i),
        AMQPValue::ShortUInt(i) => i64::from(*i),
        AMQPValue::LongInt(i) => i64::from(*i),
        AMQPValue::LongUInt(i) => i64::from(*i),
        AMQPValue::LongLongInt(i) => *i,
        AMQPValue::Timestamp(i) => i64::try_from(*i).ok()?,
        _ => return None,
    })
}

/// A string argument (long or short string).
pub fn str_arg(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips() {
        let props = AMQPProperties::default()
            .with_delivery_mode(2)
            .with_priority(3)
            .with_expiration("1500".into());
        let m = Message::new(
            "ex".into(),
            "rk".into(),
            codec::encode_content_header(3, &props),
            Bytes::from_static(b"abc"),
        )
        .expect("valid header");
        let d = Message::decode(&m.encode()).expect("decodes");
        assert_eq!(
            (d.exchange.as_str(), d.routing_key.as_str(), &d.body[..]),
            ("ex", "rk", &b"abc"[..])
        );
        assert!(d.persistent());
        assert_eq!((d.priority(), d.expiration_ms()), (3, Some(1500)));
        assert!(Message::decode(&m.encode()[..5]).is_none());
    }
}
