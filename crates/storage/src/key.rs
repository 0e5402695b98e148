//! Internal keys: a user key plus an 8-byte trailer carrying the sequence number and the kind of entry.
//!
//! The encoding is `user_key ++ be64((seqno << 8) | kind)`. Internal keys order by user key ascending, then
//! by sequence number **descending**, then by kind descending, so that for one user key the newest version
//! comes first and a lookup key `(k, read_seqno, ValueKind::RangeDelete)` positions an iterator at the newest
//! version visible at `read_seqno`.

use std::cmp::Ordering;

use crate::sst::SstError;

/// A sequence number: the commit order of a write. Only the low 56 bits are used.
pub type SeqNo = u64;

/// The largest sequence number that fits into an internal key trailer.
pub const MAX_SEQNO: SeqNo = (1 << 56) - 1;

/// Length of the trailer appended to every user key.
pub const TRAILER_BYTES: usize = 8;

/// What an internal key's entry means.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValueKind {
    /// A point deletion (tombstone); its value is empty.
    Delete = 0,
    /// A value.
    Put = 1,
    /// A range deletion; also the largest kind, used in lookup keys.
    RangeDelete = 2,
}

impl TryFrom<u8> for ValueKind {
    type Error = u8;

    fn try_from(b: u8) -> Result<Self, u8> {
        match b {
            0 => Ok(ValueKind::Delete),
            1 => Ok(ValueKind::Put),
            2 => Ok(ValueKind::RangeDelete),
            other => Err(other),
        }
    }
}

/// Packs a sequence number and kind into the trailer's integer form.
#[inline]
pub fn pack_trailer(seqno: SeqNo, kind: ValueKind) -> u64 {
    debug_assert!(seqno <= MAX_SEQNO, "seqno {seqno} exceeds MAX_SEQNO");
    ((seqno & MAX_SEQNO) << 8) | kind as u64
}

/// Appends the internal key for `(user_key, seqno, kind)` to `buf`.
#[inline]
pub fn encode_internal_key(buf: &mut Vec<u8>, user_key: &[u8], seqno: SeqNo, kind: ValueKind) {
    buf.reserve(user_key.len() + TRAILER_BYTES);
    buf.extend_from_slice(user_key);
    buf.extend_from_slice(&pack_trailer(seqno, kind).to_be_bytes());
}

/// Returns the internal key for `(user_key, seqno, kind)`.
pub fn internal_key(user_key: &[u8], seqno: SeqNo, kind: ValueKind) -> Vec<u8> {
    let mut buf = Vec::with_capacity(user_key.len() + TRAILER_BYTES);
    encode_internal_key(&mut buf, user_key, seqno, kind);
    buf
}

/// A decoded internal key borrowing the user key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    /// The user's key.
    pub user_key: &'a [u8],
    /// Commit sequence number of this version.
    pub seqno: SeqNo,
    /// Kind of the entry.
    pub kind: ValueKind,
}

/// Decodes an internal key; fails on keys shorter than the trailer or with an unknown kind byte.
pub fn parse_internal_key(k: &[u8]) -> Result<ParsedKey<'_>, SstError> {
    let Some(split) = k.len().checked_sub(TRAILER_BYTES) else {
        return Err(SstError::InvalidKey {
            len: k.len(),
            what: "internal key shorter than its 8-byte trailer",
        });
    };
    let (user_key, trailer) = k.split_at(split);
    let mut t = [0u8; 8];
    t.copy_from_slice(trailer);
    let packed = u64::from_be_bytes(t);
    let kind = ValueKind::try_from((packed & 0xff) as u8).map_err(|_| SstError::InvalidKey {
        len: k.len(),
        what: "unknown value kind in internal key trailer",
    })?;
    Ok(ParsedKey {
        user_key,
        seqno: packed >> 8,
        kind,
    })
}

/// The user-key part of an internal key (the whole input when it is shorter than a trailer).
#[inline]
pub fn user_key(k: &[u8]) -> &[u8] {
    match k.len().checked_sub(TRAILER_BYTES) {
        Some(split) => &k[..split],
        None => k,
    }
}

/// The packed trailer of an internal key (0 when the key is shorter than a trailer).
#[inline]
pub fn trailer(k: &[u8]) -> u64 {
    match k.len().checked_sub(TRAILER_BYTES) {
        Some(split) => {
            let mut t = [0u8; 8];
            t.copy_from_slice(&k[split..]);
            u64::from_be_bytes(t)
        }
        None => 0,
    }
}

/// Orders two encoded internal keys: user key ascending, then trailer (seqno, kind) descending.
///
/// Never panics: a key shorter than 8 bytes compares as a user key with trailer 0.
#[inline]
pub fn compare_internal(a: &[u8], b: &[u8]) -> Ordering {
    user_key(a)
        .cmp(user_key(b))
        .then_with(|| trailer(b).cmp(&trailer(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let k = internal_key(b"hello", 42, ValueKind::Put);
        assert_eq!(k.len(), 13);
        let p = parse_internal_key(&k).unwrap();
        assert_eq!(p.user_key, b"hello");
        assert_eq!(p.seqno, 42);
        assert_eq!(p.kind, ValueKind::Put);
        let k = internal_key(b"", MAX_SEQNO, ValueKind::RangeDelete);
        let p = parse_internal_key(&k).unwrap();
        assert_eq!(p.seqno, MAX_SEQNO);
        assert_eq!(p.kind, ValueKind::RangeDelete);
    }

    #[test]
    fn parse_rejects_bad_keys() {
        assert!(parse_internal_key(b"short").is_err());
        let mut k = internal_key(b"a", 1, ValueKind::Put);
        *k.last_mut().unwrap() = 7;
        assert!(parse_internal_key(&k).is_err());
    }

    #[test]
    fn ordering_newest_first() {
        let a1 = internal_key(b"a", 1, ValueKind::Put);
        let a5 = internal_key(b"a", 5, ValueKind::Put);
        let a5d = internal_key(b"a", 5, ValueKind::Delete);
        let b0 = internal_key(b"b", 0, ValueKind::Delete);
        assert_eq!(compare_internal(&a5, &a1), Ordering::Less);
        assert_eq!(compare_internal(&a5, &a5d), Ordering::Less);
        assert_eq!(compare_internal(&a1, &b0), Ordering::Less);
        // "a" with trailer sorts before "a\0" regardless of seqno.
        let a0 = internal_key(b"a\0", MAX_SEQNO, ValueKind::Put);
        assert_eq!(compare_internal(&a1, &a0), Ordering::Less);
        // A lookup key positions at the newest version visible at the read seqno.
        let lookup = internal_key(b"a", 3, ValueKind::RangeDelete);
        assert_eq!(compare_internal(&lookup, &a1), Ordering::Less);
        assert_eq!(compare_internal(&a5, &lookup), Ordering::Less);
    }

    #[test]
    fn short_keys_do_not_panic() {
        assert_eq!(compare_internal(b"ab", b"ab"), Ordering::Equal);
        assert_eq!(compare_internal(b"", b"a"), Ordering::Less);
        let k = internal_key(b"ab", 0, ValueKind::Delete);
        assert_eq!(compare_internal(b"ab", &k), Ordering::Equal);
    }
}
