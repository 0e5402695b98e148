//! A whole stream as one value: what DUMP reads out of a stream's records and RESTORE writes back.
//!
//! The image holds what Redis's RDB encoding of a stream holds (entries, the header's IDs and counters,
//! groups with their pending entries and consumers), so `cmd/keys/dump.rs` can translate it to and from
//! Redis's bytes without knowing how strata lays a stream out in storage.

use bytes::Bytes;
use strata_resp::Frame;

use super::{Consumer, Group, Id, Nack, Stream, cpending_key, create, load, pending_key};
use crate::Shared;

/// A stream ID as `(ms, seq)`.
pub(crate) type RawId = (u64, u64);

/// A stream's metadata payload and its sub-records (element key, value).
pub(crate) type Records = (Bytes, Vec<(Vec<u8>, Vec<u8>)>);

/// A stream's content, as DUMP carries it.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct StreamImage {
    /// The entries in ID order, each with its fields and values alternating.
    pub(crate) entries: Vec<(RawId, Vec<Bytes>)>,
    pub(crate) last_id: RawId,
    /// The first entry's ID as recorded (Redis's `recorded-first-entry-id`).
    pub(crate) first_id: RawId,
    pub(crate) max_deleted: RawId,
    pub(crate) entries_added: u64,
    pub(crate) groups: Vec<GroupImage>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupImage {
    pub(crate) name: Bytes,
    pub(crate) last_id: RawId,
    /// `Some(-1)`: unknown, as Redis records it; `None`: not given (a payload older than Redis 7.0),
    /// estimated from the stream on restore as Redis does.
    pub(crate) entries_read: Option<i64>,
    /// Pending entries in ID order.
    pub(crate) pending: Vec<PendingImage>,
    /// Consumers in name order.
    pub(crate) consumers: Vec<ConsumerImage>,
}

/// A pending entry of a group.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingImage {
    pub(crate) id: RawId,
    pub(crate) consumer: Bytes,
    pub(crate) delivery_time: u64,
    pub(crate) delivery_count: u64,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConsumerImage {
    pub(crate) name: Bytes,
    pub(crate) seen_time: u64,
    /// -1: never active.
    pub(crate) active_time: i64,
}

fn raw(id: Id) -> RawId {
    (id.ms, id.seq)
}

fn id((ms, seq): RawId) -> Id {
    Id { ms, seq }
}

/// The stream at `key` as an image, `None` if there is no key (the caller checked it is a stream).
pub(crate) fn read(sh: &Shared, db: usize, key: &[u8]) -> Result<Option<StreamImage>, Frame> {
    let Some(st) = load(sh, db, key)? else {
        return Ok(None);
    };
    let entries = st
        .entries(Id::MIN, Id::MAX, false, 0)?
        .into_iter()
        .map(|(id, e)| (raw(id), e.fields))
        .collect();
    let mut groups = Vec::new();
    for (name, g) in st.groups()? {
        let mut pending = Vec::new();
        for pid in st.pending(&name, None, Id::MIN, Id::MAX, usize::MAX)? {
            if let Some(n) = st.nack(&name, pid)? {
                pending.push(PendingImage {
                    id: raw(pid),
                    consumer: n.consumer,
                    delivery_time: n.delivery_time,
                    delivery_count: n.delivery_count,
                });
            }
        }
        let consumers = st
            .consumers(&name)?
            .into_iter()
            .map(|(name, c)| ConsumerImage {
                name,
                seen_time: c.seen_time,
                active_time: c.active_time,
            })
            .collect();
        groups.push(GroupImage {
            name,
            last_id: raw(g.last_id),
            entries_read: Some(g.entries_read),
            pending,
            consumers,
        });
    }
    Ok(Some(StreamImage {
        entries,
        last_id: raw(st.m.last_id),
        first_id: raw(st.m.first_id),
        max_deleted: raw(st.m.max_deleted),
        entries_added: st.m.entries_added,
        groups,
    }))
}

/// The stored records of `image` as a new stream: its metadata payload (under a new collection version)
/// and every sub-record, for `Keyspace::replace_collection`. `None` if the image does not hold together:
/// entries out of order or past the last ID, a group or consumer named twice, a pending entry whose
/// consumer is not in the group.
pub(crate) fn records(sh: &Shared, db: usize, key: &[u8], image: &StreamImage) -> Option<Records> {
    let mut st = create(sh, db, key);
    let mut previous: Option<RawId> = None;
    for (entry_id, fields) in &image.entries {
        if previous.is_some_and(|p| p >= *entry_id) || *entry_id > image.last_id {
            return None;
        }
        previous = Some(*entry_id);
        if fields.len() % 2 != 0 {
            return None;
        }
        st.append(id(*entry_id), &strata_resp::args_of(fields));
    }
    // `append` counted what it added; the header's own counters are the payload's.
    st.m.last_id = id(image.last_id);
    st.m.first_id = id(image.first_id);
    st.m.max_deleted = id(image.max_deleted);
    st.m.entries_added = image.entries_added.max(st.m.length);
    let mut names = std::collections::HashSet::new();
    for g in &image.groups {
        if !names.insert(&g.name) {
            return None;
        }
        let mut consumers = std::collections::HashSet::new();
        for c in &g.consumers {
            if !consumers.insert(&c.name) {
                return None;
            }
            st.put_consumer(
                &g.name,
                &c.name,
                Consumer {
                    seen_time: c.seen_time,
                    active_time: c.active_time,
                    pel_count: 0,
                },
            );
        }
        let mut pel_max = Id::MIN;
        let mut previous: Option<RawId> = None;
        for p in &g.pending {
            if previous.is_some_and(|q| q >= p.id) || !consumers.contains(&p.consumer) {
                return None;
            }
            previous = Some(p.id);
            pel_max = id(p.id);
            let nack = Nack {
                delivery_time: p.delivery_time,
                delivery_count: p.delivery_count,
                consumer: p.consumer.clone(),
            };
            st.put(pending_key(&g.name, id(p.id)), nack.encode());
            st.put(cpending_key(&g.name, &p.consumer, id(p.id)), Vec::new());
        }
        let last_id = id(g.last_id);
        let entries_read = match g.entries_read {
            Some(n) => n,
            None => st.estimate_distance(last_id),
        };
        st.put_group(
            &g.name,
            &Group {
                last_id,
                entries_read,
                pel_count: 0,
                consumers: g.consumers.len() as u64,
                pel_max,
            },
        );
    }
    let Stream { m, write, .. } = st;
    let records = write
        .ops
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    Some((m.payload(), records))
}
