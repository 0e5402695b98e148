//! Streams in RDB's encoding (object types 15, 19 and 21), read and written.
//!
//! RDB stores a stream as Redis keeps it in memory: a radix tree of listpack nodes, each keyed by its
//! master ID, followed by the header's counters, then every consumer group with its pending entries
//! (the PEL) and its consumers, each consumer listing the IDs it owns. A node's listpack starts with a
//! master entry (live count, deleted count, the master fields, a 0 terminator); every entry after it is
//! `flags, ms-diff, seq-diff`, then either the values alone (flag SAMEFIELDS: the fields are the
//! master's) or `num-fields, field, value, ...`, then `lp-count`, the number of listpack elements the
//! entry took, which lets Redis walk a node backwards. XDEL only flags an entry deleted.
//!
//! Type 15 is Redis 5 to 6.2's; 19 (Redis 7.0) adds the first ID, the largest deleted ID, the count of
//! entries ever added and each group's entries-read; 21 (Redis 7.2) adds each consumer's active time.
//! We write 19, which every Redis from 7.0 on restores (see `RDB_VERSION` in `dump.rs`).

use std::collections::HashMap;

use bytes::{BufMut as _, Bytes, BytesMut};

use super::compact::{ListpackWriter, Packed, listpack};
use super::{Reader, put_len, put_string};
use crate::cmd::streams::image::{ConsumerImage, GroupImage, PendingImage, RawId, StreamImage};

pub(super) const TYPE_STREAM_LISTPACKS: u8 = 15;
pub(super) const TYPE_STREAM_LISTPACKS_2: u8 = 19;
pub(super) const TYPE_STREAM_LISTPACKS_3: u8 = 21;

/// An entry flagged deleted by XDEL (still in its node until the node is rewritten).
const FLAG_DELETED: i64 = 1;
/// An entry whose fields are the master entry's: only its values are stored.
const FLAG_SAME_FIELDS: i64 = 2;

/// Entries per node we write (Redis's default `stream-node-max-entries`).
const NODE_MAX_ENTRIES: usize = 100;
/// Bytes of values per node past which we start a new one (Redis's default `stream-node-max-bytes`).
const NODE_MAX_BYTES: usize = 4096;

fn id_bytes((ms, seq): RawId) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&ms.to_be_bytes());
    b[8..].copy_from_slice(&seq.to_be_bytes());
    b
}

impl Reader<'_> {
    /// An RDB length as the full 64 bits (IDs and counters do not fit a `usize` on every target, and
    /// Redis writes an unknown entries-read, -1, as the length 2^64 - 1).
    fn len64(&mut self) -> Option<u64> {
        self.len_or_encoding()?.ok()
    }

    fn id(&mut self) -> Option<RawId> {
        Some((self.len64()?, self.len64()?))
    }

    fn raw_id(&mut self) -> Option<RawId> {
        let b = self.take(16)?;
        Some((
            u64::from_be_bytes(b[..8].try_into().ok()?),
            u64::from_be_bytes(b[8..].try_into().ok()?),
        ))
    }

    fn millis(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A count of records of at least `min_bytes` each, refused when the bytes left cannot hold it.
    fn bounded(&mut self, min_bytes: usize) -> Option<usize> {
        let n = self.len()?;
        (n <= self.data.len() / min_bytes.max(1)).then_some(n)
    }

    /// A stream of object type `ty` (the type byte already read).
    pub(super) fn stream(&mut self, ty: u8) -> Option<StreamImage> {
        let mut entries = Vec::new();
        // Each node is at least its 16-byte key and a listpack of a few bytes, both length-prefixed.
        for _ in 0..self.bounded(18)? {
            let master = self.string()?;
            if master.len() != 16 {
                return None;
            }
            let master = (
                u64::from_be_bytes(master[..8].try_into().ok()?),
                u64::from_be_bytes(master[8..].try_into().ok()?),
            );
            let lp = self.string()?;
            node_entries(master, &listpack(&lp)?, &mut entries)?;
        }
        let length = self.len64()?;
        let last_id = self.id()?;
        let (first_id, max_deleted, entries_added) = if ty >= TYPE_STREAM_LISTPACKS_2 {
            (self.id()?, self.id()?, self.len64()?)
        } else {
            // Before Redis 7.0 none of these were kept; Redis's loader assumes what we do.
            let first = entries.first().map_or((0, 0), |(id, _)| *id);
            (first, (0, 0), length)
        };
        if entries.len() as u64 != length {
            return None;
        }
        let mut groups = Vec::new();
        for _ in 0..self.bounded(3)? {
            groups.push(self.group(ty)?);
        }
        Some(StreamImage {
            entries,
            last_id,
            first_id,
            max_deleted,
            entries_added,
            groups,
        })
    }

    fn group(&mut self, ty: u8) -> Option<GroupImage> {
        let name = self.string()?;
        let last_id = self.id()?;
        let entries_read = if ty >= TYPE_STREAM_LISTPACKS_2 {
            Some(self.len64()? as i64)
        } else {
            None
        };
        // The group's PEL: ID, delivery time, delivery count; owners come with the consumers.
        let mut pel: Vec<(RawId, u64, u64, Option<Bytes>)> = Vec::new();
        for _ in 0..self.bounded(25)? {
            let id = self.raw_id()?;
            let time = self.millis()? as u64;
            let count = self.len64()?;
            pel.push((id, time, count, None));
        }
        pel.sort_unstable_by_key(|p| p.0);
        let at: HashMap<RawId, usize> = pel.iter().enumerate().map(|(i, p)| (p.0, i)).collect();
        if at.len() != pel.len() {
            return None;
        }
        let mut consumers = Vec::new();
        for _ in 0..self.bounded(10)? {
            let name = self.string()?;
            let seen_time = self.millis()?;
            let active_time = if ty >= TYPE_STREAM_LISTPACKS_3 {
                self.millis()?
            } else {
                // Redis 7.2 loads an older consumer with the best estimate it has.
                seen_time
            };
            for _ in 0..self.bounded(16)? {
                let id = self.raw_id()?;
                // Every ID a consumer owns is in the group's PEL, owned by nobody else.
                let owner = &mut pel.get_mut(*at.get(&id)?)?.3;
                if owner.is_some() {
                    return None;
                }
                *owner = Some(name.clone());
            }
            consumers.push(ConsumerImage {
                name,
                seen_time: seen_time as u64,
                active_time,
            });
        }
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        let pending = pel
            .into_iter()
            .map(|(id, delivery_time, delivery_count, owner)| {
                Some(PendingImage {
                    id,
                    consumer: owner?,
                    delivery_time,
                    delivery_count,
                })
            })
            .collect::<Option<_>>()?;
        Some(GroupImage {
            name,
            last_id,
            entries_read,
            pending,
            consumers,
        })
    }
}

/// Appends the live entries of the node whose master ID is `master` and listpack elements are `items`.
fn node_entries(
    master: RawId,
    items: &[Packed<'_>],
    out: &mut Vec<(RawId, Vec<Bytes>)>,
) -> Option<()> {
    let int = |i: usize| items.get(i)?.as_int();
    let count = int(0)?;
    let deleted = int(1)?;
    let nfields = usize::try_from(int(2)?).ok()?;
    let master_fields = items.get(3..3usize.checked_add(nfields)?)?;
    let mut i = 3 + nfields;
    if int(i)? != 0 {
        return None;
    }
    i += 1;
    let (mut live, mut dead) = (0i64, 0i64);
    while i < items.len() {
        let flags = int(i)?;
        let ms = master.0.wrapping_add(int(i + 1)? as u64);
        let seq = master.1.wrapping_add(int(i + 2)? as u64);
        i += 3;
        let mut fields = Vec::new();
        let elements = if flags & FLAG_SAME_FIELDS != 0 {
            let values = items.get(i..i.checked_add(nfields)?)?;
            for (f, v) in master_fields.iter().zip(values) {
                fields.push(f.to_bytes());
                fields.push(v.to_bytes());
            }
            i += nfields;
            nfields + 3
        } else {
            let n = usize::try_from(int(i)?).ok()?;
            let pairs = items.get(i + 1..(i + 1).checked_add(n.checked_mul(2)?)?)?;
            fields.extend(pairs.iter().map(Packed::to_bytes));
            i += 1 + 2 * n;
            2 * n + 4
        };
        if usize::try_from(int(i)?).ok()? != elements {
            return None;
        }
        i += 1;
        if flags & FLAG_DELETED != 0 {
            dead += 1;
        } else {
            live += 1;
            out.push(((ms, seq), fields));
        }
    }
    // A node holds at least one entry, and its header counts what it holds.
    (live + dead > 0 && live == count && dead == deleted).then_some(())
}

/// Writes `image` as object type 19.
pub(super) fn write(out: &mut BytesMut, image: &StreamImage) {
    out.put_u8(TYPE_STREAM_LISTPACKS_2);
    let mut nodes: Vec<&[(RawId, Vec<Bytes>)]> = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, fields)) in image.entries.iter().enumerate() {
        if i > start && (i - start == NODE_MAX_ENTRIES || bytes >= NODE_MAX_BYTES) {
            nodes.push(&image.entries[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += fields.iter().map(Bytes::len).sum::<usize>();
    }
    if start < image.entries.len() {
        nodes.push(&image.entries[start..]);
    }
    put_len(out, nodes.len() as u64);
    for node in nodes {
        let master = node[0].0;
        let master_fields: Vec<&Bytes> = node[0].1.iter().step_by(2).collect();
        let mut lp = ListpackWriter::new();
        lp.push_int(node.len() as i64);
        lp.push_int(0);
        lp.push_int(master_fields.len() as i64);
        for f in &master_fields {
            lp.push_str(f);
        }
        lp.push_int(0);
        for ((ms, seq), fields) in node {
            let same = fields.len() == 2 * master_fields.len()
                && fields
                    .iter()
                    .step_by(2)
                    .zip(&master_fields)
                    .all(|(a, b)| a == *b);
            lp.push_int(if same { FLAG_SAME_FIELDS } else { 0 });
            lp.push_int(ms.wrapping_sub(master.0) as i64);
            lp.push_int(seq.wrapping_sub(master.1) as i64);
            let pairs = fields.len() / 2;
            if same {
                for v in fields.iter().skip(1).step_by(2) {
                    lp.push_str(v);
                }
                lp.push_int(pairs as i64 + 3);
            } else {
                lp.push_int(pairs as i64);
                for f in fields {
                    lp.push_str(f);
                }
                lp.push_int(2 * pairs as i64 + 4);
            }
        }
        put_string(out, &id_bytes(master));
        put_string(out, &lp.finish());
    }
    put_len(out, image.entries.len() as u64);
    for id in [image.last_id, image.first_id, image.max_deleted] {
        put_len(out, id.0);
        put_len(out, id.1);
    }
    put_len(out, image.entries_added);
    put_len(out, image.groups.len() as u64);
    for g in &image.groups {
        put_string(out, &g.name);
        put_len(out, g.last_id.0);
        put_len(out, g.last_id.1);
        put_len(out, g.entries_read.unwrap_or(-1) as u64);
        put_len(out, g.pending.len() as u64);
        for p in &g.pending {
            out.put_slice(&id_bytes(p.id));
            out.put_i64_le(p.delivery_time as i64);
            put_len(out, p.delivery_count);
        }
        let mut owned: HashMap<&Bytes, Vec<RawId>> = HashMap::new();
        for p in &g.pending {
            owned.entry(&p.consumer).or_default().push(p.id);
        }
        put_len(out, g.consumers.len() as u64);
        for c in &g.consumers {
            put_string(out, &c.name);
            out.put_i64_le(c.seen_time as i64);
            let ids = owned.get(&c.name).map_or(&[][..], Vec::as_slice);
            put_len(out, ids.len() as u64);
            for id in ids {
                out.put_slice(&id_bytes(*id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{LoadError, Value, deserialize, fuzzing, serialize};
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// 250 entries over three nodes: most with the first entry's fields, some with others, IDs whose
    /// sequence goes down from a node's master (a negative seq-diff), a group with entries pending for
    /// two consumers and one consumer with none, a group that never read.
    fn image() -> StreamImage {
        let mut entries = Vec::new();
        for i in 0..250u64 {
            let fields = if i % 7 == 3 {
                vec![b("other"), b(&i.to_string()), b("x"), b("")]
            } else {
                vec![
                    b("a"),
                    b(&format!("v{i}")),
                    b("n"),
                    b(&(i as i64 - 100).to_string()),
                ]
            };
            entries.push(((1_000 + i / 3, (i % 3) * 5), fields));
        }
        let pending = |id: RawId, consumer: &str| PendingImage {
            id,
            consumer: b(consumer),
            delivery_time: 1_796_000_000_000 + id.0,
            delivery_count: id.1 + 1,
        };
        let consumer = |name: &str, seen: u64| ConsumerImage {
            name: b(name),
            seen_time: seen,
            active_time: seen as i64,
        };
        StreamImage {
            last_id: entries.last().map(|e| e.0).unwrap_or_default(),
            first_id: entries[0].0,
            max_deleted: (999, 1),
            entries_added: 260,
            entries,
            groups: vec![
                GroupImage {
                    name: b("g1"),
                    last_id: (1_010, 5),
                    entries_read: Some(40),
                    pending: vec![pending((1_000, 0), "alice"), pending((1_003, 10), "bob")],
                    consumers: vec![
                        consumer("alice", 5),
                        consumer("bob", 6),
                        consumer("carol", 7),
                    ],
                },
                GroupImage {
                    name: b("g2"),
                    last_id: (0, 0),
                    entries_read: Some(-1),
                    pending: Vec::new(),
                    consumers: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn a_stream_round_trips_through_several_nodes() {
        let value = Value::Stream(image());
        let payload = serialize(&value);
        assert_eq!(payload[0], TYPE_STREAM_LISTPACKS_2);
        assert_eq!(deserialize(&payload), Ok(value));
        // An empty stream (every entry deleted) is a stream still.
        let empty = Value::Stream(StreamImage {
            last_id: (5, 0),
            entries_added: 3,
            ..StreamImage::default()
        });
        assert_eq!(deserialize(&serialize(&empty)), Ok(empty));
    }

    #[test]
    fn a_pending_entry_nobody_owns_is_refused() {
        let mut broken = image();
        broken.groups[0].pending[1].consumer = b("nobody");
        assert_eq!(
            deserialize(&serialize(&Value::Stream(broken))),
            Err(LoadError::Format)
        );
    }

    #[test]
    fn damaged_stream_payloads_never_panic() {
        let mut small = image();
        small.entries.truncate(12);
        let payload = serialize(&Value::Stream(small));
        let body = &payload[..payload.len() - 10];
        for n in 0..body.len() {
            fuzzing::restore_payload(&body[..n]);
        }
        for i in 0..body.len() {
            for mask in [0x01, 0x10, 0x80, 0xff] {
                let mut damaged = body.to_vec();
                damaged[i] ^= mask;
                fuzzing::restore_payload(&damaged);
            }
        }
    }
}
