//! The set of SSTs per level (filled in once SSTs exist).

use bytes::Bytes;

use crate::db::DbInner;
use crate::error::Result;

/// Looks `ukey` up in the SSTs; updates `max_rt` with covering range tombstones.
pub(crate) fn get(
    _db: &DbInner,
    _ukey: &[u8],
    _read_seqno: u64,
    _max_rt: &mut u64,
) -> Result<Option<(u64, u8, Bytes)>> {
    Ok(None)
}
