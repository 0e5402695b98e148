//! The keyspace's compaction filter: lets storage compaction reclaim dead records on its own (Kvrocks'
//! metadata and subkey filters do the same).
//!
//! Installed on every database tree by [`super::Keyspace::open`]. It removes:
//!
//! - a metadata record `b'm' ++ key` whose deadline has passed on the keyspace's clock — an expired key
//!   never comes back (commands read it as missing, and nothing rewrites a record it cannot see);
//! - an element record (`b's'` or `b'z'` ++ len ++ key ++ version ++ ...) whose key's current metadata is
//!   missing, expired, not a collection, or carries another version. Elements are written in the same
//!   atomic batch as their metadata and versions never repeat, so such an element is dead for good;
//! - an expiry index entry `b'x' ++ at ++ key` whose key's record now says it is listed elsewhere (the
//!   active cycle would only delete it). An entry whose key is *missing* stays: the key may have expired and been
//!   removed by this filter, and the active cycle still owes it its `expired` event and count.
//!
//! Anything else, and any record whose lookup fails or does not decode, is kept: a filter is never needed
//! for correctness, so doubt always keeps. The storage engine asks only about versions no snapshot sees.

use std::sync::Arc;

use strata_storage::{CompactionFilter, Decision, FilterContext};

use super::{
    Clock, CollectionHeader, ELEMENT_FAMILIES, EXPIRE_PREFIX, Entry, Kind, META_PREFIX, is_expired,
    meta_key,
};

/// The keyspace's compaction filter; see the module docs.
#[derive(Debug)]
pub(crate) struct KvFilter {
    clock: Arc<dyn Clock>,
}

impl KvFilter {
    /// A filter judging expiry by `clock`, the keyspace's own (tests inject theirs).
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        KvFilter { clock }
    }

    /// Whether deadline `at` (0: none) has passed. The clock is read only for a deadline: most records
    /// have none, and a compaction asks about each of its elements (a clock read per stream entry was
    /// ~9% of a compaction's CPU).
    fn expired(&self, at: u64) -> bool {
        at != 0 && is_expired(at, self.clock.now_ms())
    }

    /// The current metadata record of `key`, if present and decodable (`Err` = unknown: keep).
    fn metadata(ctx: &mut FilterContext<'_>, key: &[u8]) -> Result<Option<Entry>, ()> {
        match ctx.get(&meta_key(key)) {
            Ok(None) => Ok(None),
            Ok(Some(raw)) => Entry::decode(raw).map(Some).map_err(|_| ()),
            Err(_) => Err(()),
        }
    }

    fn element(&self, ctx: &mut FilterContext<'_>, record: &[u8]) -> Decision {
        // family u8 | len(key) u32 | key | version u64 | element
        let Some(len) = record
            .get(1..5)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_be_bytes(b) as usize)
        else {
            return Decision::Keep;
        };
        let (Some(key), Some(version)) = (
            record.get(5..5 + len),
            record
                .get(5 + len..5 + len + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes),
        ) else {
            return Decision::Keep;
        };
        let alive = match Self::metadata(ctx, key) {
            Err(()) => return Decision::Keep,
            Ok(None) => false,
            Ok(Some(meta)) => {
                meta.kind != Kind::String
                    && !self.expired(meta.expire_at_ms)
                    && CollectionHeader::from_payload(&meta.payload)
                        .is_ok_and(|h| h.version == version)
            }
        };
        if alive {
            Decision::Keep
        } else {
            Decision::Remove
        }
    }

    fn index_entry(ctx: &mut FilterContext<'_>, record: &[u8]) -> Decision {
        let Some((at, key)) = super::split_expire_key(record) else {
            return Decision::Keep;
        };
        match Self::metadata(ctx, key) {
            Ok(Some(meta)) if meta.index_at() != at => Decision::Remove,
            _ => Decision::Keep,
        }
    }
}

impl CompactionFilter for KvFilter {
    fn filter(&self, ctx: &mut FilterContext<'_>, key: &[u8], value: &[u8]) -> Decision {
        match key.first() {
            Some(&META_PREFIX) => {
                let at = value
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes);
                match at {
                    Some(at) if self.expired(at) => Decision::Remove,
                    _ => Decision::Keep,
                }
            }
            Some(&EXPIRE_PREFIX) => Self::index_entry(ctx, key),
            Some(family) if ELEMENT_FAMILIES.contains(family) => self.element(ctx, key),
            _ => Decision::Keep,
        }
    }
}
