//! Sorted-set commands.
//!
//! A sorted set is a metadata record (version, member count) plus two groups of element records under its
//! versioned sub-key prefix (see `docs/kv-encoding.md`):
//!
//! - `b'm' ++ member` → the score as f64 bits (ZSCORE, ZMSCORE and membership are one point read);
//! - `b'i' ++ sortable(score) ++ member` → the score bits again: the score index, in (score, member) order.
//!
//! Both groups sit under the collection's prefix, so DEL, overwrite and RENAME (which copy or drop that
//! prefix) need no knowledge of sorted sets.
//!
//! Rank and range queries run on an [`OrderStatisticTree`] of `(score, member)` built from the score index
//! on first use and kept in a bounded cache ([`TreeCache`]) keyed by the collection's version. A version is
//! never reused, so a deleted, renamed, flushed or expired set can never be answered from a stale tree: the
//! next incarnation of the key has another version. Coherence with writes:
//!
//! - every writer holds the key's lock stripe, and updates the cached tree (if any) while holding the tree's
//!   write lock across the storage commit, so a reader never sees a tree older than the storage it read;
//! - a tree is only *loaded* while holding the key's stripe, so no write can slip between the scan that
//!   builds it and its insertion into the cache;
//! - every use checks the tree's length against the metadata's member count and reloads on a mismatch.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use strata_resp::Arg;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use strata_algo::OrderStatisticTree;
use strata_resp::{Frame, ProtocolVersion};

use super::CommandSpec;
use super::hashes::load_kind;
use super::strings::wrongtype;
use super::{parse_i64, storage_error};
use crate::keyspace::{CollectionHeader, Entry, Kind};
use crate::{Session, Shared};

macro_rules! spec {
    ($name:literal, $arity:expr, [$($flag:literal),*], $run:expr) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: &[$($flag),*],
            no_auth: false,
            run: $run,
        }
    };
}

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    spec!("bzmpop", -5, ["write", "blocking"], bzmpop),
    spec!(
        "bzpopmax",
        -3,
        ["write", "noscript", "fast", "blocking"],
        bzpop
    ),
    spec!(
        "bzpopmin",
        -3,
        ["write", "noscript", "fast", "blocking"],
        bzpop
    ),
    spec!("zadd", -4, ["write", "denyoom", "fast"], zadd),
    spec!("zcard", 2, ["readonly", "fast"], zcard),
    spec!("zcount", 4, ["readonly", "fast"], zcount),
    spec!("zdiff", -3, ["readonly"], zsetop),
    spec!("zdiffstore", -4, ["write", "denyoom"], zsetop_store),
    spec!("zincrby", 4, ["write", "denyoom", "fast"], zincrby),
    spec!("zinter", -3, ["readonly"], zsetop),
    spec!("zintercard", -3, ["readonly"], zintercard),
    spec!("zinterstore", -4, ["write", "denyoom"], zsetop_store),
    spec!("zlexcount", 4, ["readonly", "fast"], zlexcount),
    spec!("zmpop", -4, ["write"], zmpop),
    spec!("zmscore", -3, ["readonly", "fast"], zmscore),
    spec!("zpopmax", -2, ["write", "fast"], zpopmax),
    spec!("zpopmin", -2, ["write", "fast"], zpopmin),
    spec!("zrandmember", -2, ["readonly"], zrandmember),
    spec!("zrange", -4, ["readonly"], zrange),
    spec!("zrangebylex", -4, ["readonly"], zrange),
    spec!("zrangebyscore", -4, ["readonly"], zrange),
    spec!("zrangestore", -5, ["write", "denyoom"], zrangestore),
    spec!("zrank", -3, ["readonly", "fast"], zrank),
    spec!("zrem", -3, ["write", "fast"], zrem),
    spec!("zremrangebylex", 4, ["write"], zremrange),
    spec!("zremrangebyrank", 4, ["write"], zremrange),
    spec!("zremrangebyscore", 4, ["write"], zremrange),
    spec!("zrevrange", -4, ["readonly"], zrange),
    spec!("zrevrangebylex", -4, ["readonly"], zrange),
    spec!("zrevrangebyscore", -4, ["readonly"], zrange),
    spec!("zrevrank", -3, ["readonly", "fast"], zrank),
    spec!("zscan", -3, ["readonly"], zscan),
    spec!("zscore", 3, ["readonly", "fast"], zscore),
    spec!("zunion", -3, ["readonly"], zsetop),
    spec!("zunionstore", -4, ["write", "denyoom"], zsetop_store),
];

// ---------------------------------------------------------------------------------------------------------
// Encoding

/// Element-key tag of member records.
const MEMBER_TAG: u8 = b'm';
/// Element-key tag of score-index records.
const INDEX_TAG: u8 = b'i';

fn member_key(member: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + member.len());
    k.push(MEMBER_TAG);
    k.extend_from_slice(member);
    k
}

/// Eight bytes whose byte order is the numeric order of `score` (scores are never NaN). `-0` sorts as `0`,
/// as Redis compares them equal.
pub(crate) fn sortable(score: f64) -> [u8; 8] {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    let key = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    key.to_be_bytes()
}

fn index_key(score: f64, member: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + member.len());
    k.push(INDEX_TAG);
    k.extend_from_slice(&sortable(score));
    k.extend_from_slice(member);
    k
}

fn decode_score(v: &[u8]) -> Result<f64, Frame> {
    <[u8; 8]>::try_from(v)
        .map(|b| f64::from_bits(u64::from_be_bytes(b)))
        .map_err(|_| storage_error(crate::keyspace::KvError::Corrupt("bad zset score")))
}

// ---------------------------------------------------------------------------------------------------------
// Scores: parsing and formatting as Redis does

/// Parses a score or weight as Redis's `strtod`-based parser does: no surrounding space, no NaN, no
/// overflow to infinity or underflow to zero (spelled-out `inf`, `+inf`, `-inf` are fine).
pub(crate) fn parse_score(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    if v.is_nan() {
        return None;
    }
    let unsigned = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
    if v.is_infinite() && !unsigned.starts_with("inf") {
        return None;
    }
    if v == 0.0 {
        let mantissa = unsigned.split('e').next().unwrap_or("");
        if mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
            return None;
        }
    }
    Some(v)
}

/// A score as Redis 7.2 prints it (`d2string`): integers in ±2^62 as integers, `inf`, `-inf`, `-0`,
/// otherwise the shortest round-trip digits laid out as its `fpconv_dtoa` does (`0.1`, `1.5e-7`,
/// `1e+20`).
pub(crate) fn format_score(d: f64) -> String {
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.into();
    }
    const HALF_LLONG: f64 = (i64::MAX / 2) as f64;
    if (-HALF_LLONG..=HALF_LLONG).contains(&d) && d.fract() == 0.0 {
        return format!("{}", d as i64);
    }
    let sci = format!("{:e}", d.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let nd = digits.len() as i32;
    // The value is digits × 10^k.
    let k = exp - (nd - 1);
    let mut out = String::with_capacity(24);
    if d < 0.0 {
        out.push('-');
    }
    let abs_exp = (k + nd - 1).abs();
    if k >= 0 && abs_exp < nd + 7 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', k as usize));
    } else if k < 0 && (k > -7 || abs_exp < 4) {
        let offset = nd + k;
        if offset <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-offset) as usize));
            out.push_str(&digits);
        } else {
            out.push_str(&digits[..offset as usize]);
            out.push('.');
            out.push_str(&digits[offset as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = k + nd - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&e.abs().to_string());
    }
    out
}

fn resp3(s: &Session) -> bool {
    s.protocol == ProtocolVersion::Resp3
}

/// A score reply: a double in RESP3, a bulk string in RESP2.
pub(crate) fn score_frame(s: &Session, d: f64) -> Frame {
    if resp3(s) {
        Frame::Double(d)
    } else {
        Frame::bulk(format_score(d))
    }
}

/// Members with optional scores: a flat array in RESP2 (and without scores), `[member, score]` pairs in
/// RESP3.
fn items_reply(s: &Session, items: Vec<Item>, withscores: bool) -> Frame {
    if !withscores {
        return Frame::Array(items.into_iter().map(|i| Frame::Bulk(i.member)).collect());
    }
    if resp3(s) {
        return Frame::Array(
            items
                .into_iter()
                .map(|i| Frame::Array(vec![Frame::Bulk(i.member), Frame::Double(i.score)]))
                .collect(),
        );
    }
    let mut out = Vec::with_capacity(items.len() * 2);
    for i in items {
        out.push(Frame::Bulk(i.member));
        out.push(score_frame(s, i.score));
    }
    Frame::Array(out)
}

// ---------------------------------------------------------------------------------------------------------
// In-memory order: (score, member) items and the tree cache

/// One member of a sorted set with its score, ordered by score, then member bytes (Redis's order).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The score (never NaN).
    pub score: f64,
    /// The member.
    pub member: Bytes,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Item {}

impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Item {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| self.member.cmp(&other.member))
    }
}

type Tree = OrderStatisticTree<Item>;
type SharedTree = Arc<RwLock<Tree>>;

/// Most members held in cached trees, over all sorted sets; past it the least recently used trees go.
const CACHE_MEMBERS: usize = 2_000_000;
/// Most ZSCAN cursors remembered.
const MAX_ZSCAN_CURSORS: usize = 65_536;

/// Order-statistic trees of recently used sorted sets, keyed by collection version, bounded by the total
/// number of members; plus the positions of outstanding ZSCAN cursors.
#[derive(Debug)]
pub struct TreeCache {
    inner: Mutex<CacheInner>,
}

impl Default for TreeCache {
    fn default() -> Self {
        TreeCache::with_capacity(CACHE_MEMBERS)
    }
}

#[derive(Debug, Default)]
struct CacheInner {
    /// Most members held before trees are evicted.
    capacity: usize,
    slots: HashMap<u64, Slot>,
    /// Version by last-use tick, oldest first.
    lru: BTreeMap<u64, u64>,
    tick: u64,
    members: usize,
    cursors: HashMap<u64, (usize, Bytes, Bytes)>,
    cursor_order: VecDeque<u64>,
    next_cursor: u64,
}

#[derive(Debug)]
struct Slot {
    key: Bytes,
    tree: SharedTree,
    tick: u64,
    members: usize,
}

impl CacheInner {
    fn touch(&mut self, version: u64) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = self.slots.get_mut(&version) {
            self.lru.remove(&slot.tick);
            slot.tick = tick;
            self.lru.insert(tick, version);
        }
    }

    fn remove(&mut self, version: u64) {
        if let Some(slot) = self.slots.remove(&version) {
            self.lru.remove(&slot.tick);
            self.members -= slot.members;
        }
    }

    fn evict(&mut self, keep: u64) {
        while self.members > self.capacity {
            let Some((_, &oldest)) = self.lru.iter().find(|(_, v)| **v != keep) else {
                return;
            };
            self.remove(oldest);
        }
    }
}

impl TreeCache {
    /// A cache holding trees of at most `capacity` members in total (a bigger single tree is still kept
    /// while it is the only one).
    fn with_capacity(capacity: usize) -> Self {
        TreeCache {
            inner: Mutex::new(CacheInner {
                capacity,
                ..CacheInner::default()
            }),
        }
    }

    fn get(&self, key: &[u8], version: u64) -> Option<SharedTree> {
        let mut inner = self.inner.lock();
        let tree = inner
            .slots
            .get(&version)
            .filter(|s| s.key == key)
            .map(|s| s.tree.clone())?;
        inner.touch(version);
        Some(tree)
    }

    fn insert(&self, key: &[u8], version: u64, tree: SharedTree, members: usize) {
        let mut inner = self.inner.lock();
        inner.remove(version);
        inner.tick += 1;
        let tick = inner.tick;
        inner.slots.insert(
            version,
            Slot {
                key: Bytes::copy_from_slice(key),
                tree,
                tick,
                members,
            },
        );
        inner.lru.insert(tick, version);
        inner.members += members;
        inner.evict(version);
    }

    fn remove(&self, version: u64) {
        self.inner.lock().remove(version);
    }

    fn resize(&self, version: u64, members: usize) {
        let mut inner = self.inner.lock();
        if let Some(slot) = inner.slots.get_mut(&version) {
            let old = std::mem::replace(&mut slot.members, members);
            inner.members = inner.members - old + members;
            inner.evict(version);
        }
    }

    fn remember_cursor(&self, db: usize, key: &[u8], last: Bytes) -> u64 {
        let mut inner = self.inner.lock();
        inner.next_cursor += 1;
        let mut z = inner.next_cursor.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let id = (z ^ (z >> 31)).max(1);
        if inner.cursor_order.len() >= MAX_ZSCAN_CURSORS
            && let Some(old) = inner.cursor_order.pop_front()
        {
            inner.cursors.remove(&old);
        }
        inner
            .cursors
            .insert(id, (db, Bytes::copy_from_slice(key), last));
        inner.cursor_order.push_back(id);
        id
    }

    fn cursor(&self, id: u64, db: usize, key: &[u8]) -> Option<Bytes> {
        self.inner
            .lock()
            .cursors
            .get(&id)
            .filter(|(d, k, _)| *d == db && k == key)
            .map(|(_, _, last)| last.clone())
    }
}

/// An open sorted set: its metadata and its tree.
struct Z {
    entry: Entry,
    header: CollectionHeader,
    tree: SharedTree,
}

fn cache(sh: &Shared) -> &TreeCache {
    &sh.keyspace.zset_trees
}

/// The live sorted set at `key` for reading (the caller holds no lock stripe), or `Ok(None)`.
fn open_read(sh: &Shared, db: usize, key: &[u8]) -> Result<Option<Z>, Frame> {
    let Some((entry, header)) = load_kind(sh, db, key, Kind::ZSet)? else {
        return Ok(None);
    };
    if let Some(tree) = cache(sh).get(key, header.version)
        && tree.read().len() as u64 == header.size
    {
        return Ok(Some(Z {
            entry,
            header,
            tree,
        }));
    }
    let _guard = sh.keyspace.lock(db, key);
    open_locked(sh, db, key)
}

/// The live sorted set at `key` while the caller holds its lock stripe, loading its tree if needed.
fn open_locked(sh: &Shared, db: usize, key: &[u8]) -> Result<Option<Z>, Frame> {
    let Some((entry, header)) = load_kind(sh, db, key, Kind::ZSet)? else {
        return Ok(None);
    };
    if let Some(tree) = cache(sh).get(key, header.version)
        && tree.read().len() as u64 == header.size
    {
        return Ok(Some(Z {
            entry,
            header,
            tree,
        }));
    }
    let records = sh
        .keyspace
        .element_range(
            db,
            key,
            header.version,
            &[INDEX_TAG],
            &[INDEX_TAG + 1],
            usize::MAX,
        )
        .map_err(storage_error)?;
    let mut tree = Tree::new();
    for (k, v) in records {
        let member = k.slice(9.min(k.len())..);
        tree.insert(Item {
            score: decode_score(&v)?,
            member,
        });
    }
    let members = tree.len();
    let tree = Arc::new(RwLock::new(tree));
    cache(sh).insert(key, header.version, tree.clone(), members);
    Ok(Some(Z {
        entry,
        header,
        tree,
    }))
}

/// The score of `member`, read from its member record.
fn score_of(
    sh: &Shared,
    db: usize,
    key: &[u8],
    version: u64,
    member: &[u8],
) -> Result<Option<f64>, Frame> {
    match sh
        .keyspace
        .get_element(db, key, version, &member_key(member))
        .map_err(storage_error)?
    {
        Some(v) => decode_score(&v).map(Some),
        None => Ok(None),
    }
}

/// One member's change: its score before (None: absent) and after (None: removed).
struct Change {
    member: Bytes,
    old: Option<f64>,
    new: Option<f64>,
}

/// Writes `changes` to the sorted set at `key` (the caller holds its stripe; `entry` and `header` are its
/// current metadata, or a fresh incarnation's) and to its cached tree. An emptied set is deleted.
fn commit(
    sh: &Shared,
    db: usize,
    key: &[u8],
    entry: &Entry,
    header: CollectionHeader,
    changes: &[Change],
) -> Result<(), Frame> {
    let mut size = header.size;
    let mut put_keys: Vec<(Vec<u8>, [u8; 8])> = Vec::new();
    let mut del_keys: Vec<Vec<u8>> = Vec::new();
    for c in changes {
        if c.old.map(f64::to_bits) == c.new.map(f64::to_bits) {
            continue;
        }
        if let Some(old) = c.old {
            del_keys.push(index_key(old, &c.member));
        }
        match c.new {
            Some(new) => {
                let bits = new.to_bits().to_be_bytes();
                put_keys.push((member_key(&c.member), bits));
                put_keys.push((index_key(new, &c.member), bits));
            }
            None => del_keys.push(member_key(&c.member)),
        }
        match (c.old, c.new) {
            (None, Some(_)) => size += 1,
            (Some(_), None) => size -= 1,
            _ => {}
        }
    }
    if put_keys.is_empty() && del_keys.is_empty() {
        return Ok(());
    }
    // An index key of the old score equal to a put (same sortable bytes, e.g. 0 → -0) must not be deleted.
    del_keys.retain(|d| !put_keys.iter().any(|(p, _)| p == d));
    let puts: Vec<(&[u8], &[u8])> = put_keys.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    let deletes: Vec<&[u8]> = del_keys.iter().map(|k| &k[..]).collect();
    let new_header = CollectionHeader {
        version: header.version,
        size,
    };
    let write = || {
        if size == header.size && size > 0 {
            // Scores of existing members changed, the count did not: the metadata record stays.
            sh.keyspace
                .write_elements(db, key, header.version, &puts, &deletes)
                .map_err(storage_error)
        } else {
            sh.keyspace
                .write_collection(db, key, entry, new_header, &puts, &deletes)
                .map_err(storage_error)
        }
    };
    let cached = cache(sh).get(key, header.version);
    let Some(tree) = cached else {
        return write();
    };
    let mut t = tree.write();
    if t.len() as u64 != header.size {
        drop(t);
        cache(sh).remove(header.version);
        return write();
    }
    // The tree's write lock is held across the commit: readers see the old or the new set, never storage
    // newer than the tree.
    write()?;
    for c in changes {
        if let Some(old) = c.old {
            t.remove(&Item {
                score: old,
                member: c.member.clone(),
            });
        }
        if let Some(new) = c.new {
            t.insert(Item {
                score: new,
                member: c.member.clone(),
            });
        }
    }
    let len = t.len();
    drop(t);
    if size == 0 {
        cache(sh).remove(header.version);
    } else {
        cache(sh).resize(header.version, len);
    }
    Ok(())
}

/// The metadata of a new, empty sorted set.
fn fresh(sh: &Shared) -> (Entry, CollectionHeader) {
    let header = CollectionHeader {
        version: sh.keyspace.new_version(),
        size: 0,
    };
    let entry = Entry {
        kind: Kind::ZSet,
        expire_at_ms: 0,
        indexed_at_ms: 0,
        payload: header.to_payload(),
    };
    (entry, header)
}

/// Replaces whatever `dst` holds with a sorted set of `items` (deleting it when empty); returns the size.
fn store(sh: &Shared, db: usize, dst: &[u8], items: &[(Bytes, f64)]) -> Result<i64, Frame> {
    sh.keyspace.delete(db, dst).map_err(storage_error)?;
    if items.is_empty() {
        return Ok(0);
    }
    let (entry, header) = fresh(sh);
    let changes: Vec<Change> = items
        .iter()
        .map(|(m, s)| Change {
            member: m.clone(),
            old: None,
            new: Some(*s),
        })
        .collect();
    commit(sh, db, dst, &entry, header, &changes)?;
    Ok(items.len() as i64)
}

// ---------------------------------------------------------------------------------------------------------
// What the GEO commands use: they keep points in sorted sets, each scored by its 52-bit geohash.

/// A sorted set opened for reading by a GEO command.
pub(crate) struct ZRead<'a> {
    sh: &'a Shared,
    db: usize,
    key: &'a [u8],
    version: u64,
    tree: &'a Tree,
}

impl ZRead<'_> {
    /// The score of `member`, if it is in the set.
    pub(crate) fn score(&self, member: &[u8]) -> Result<Option<f64>, Frame> {
        score_of(self.sh, self.db, self.key, self.version, member)
    }

    /// The members with scores in `[min, max)`, in score order.
    pub(crate) fn in_range(&self, min: f64, max: f64) -> Vec<Item> {
        let range = Range::Score(ScoreRange {
            min,
            min_ex: false,
            max,
            max_ex: true,
        });
        select(self.tree, &range, false, 0, -1)
    }
}

/// Runs `f` on the sorted set at `key` (`None` when there is none; WRONGTYPE for another type).
pub(crate) fn read_zset<R>(
    sh: &Shared,
    db: usize,
    key: &[u8],
    f: impl FnOnce(Option<&ZRead<'_>>) -> Result<R, Frame>,
) -> Result<R, Frame> {
    match open_read(sh, db, key)? {
        None => f(None),
        Some(z) => {
            let tree = z.tree.read();
            f(Some(&ZRead {
                sh,
                db,
                key,
                version: z.header.version,
                tree: &tree,
            }))
        }
    }
}

/// Runs `f` on the sorted set at `src` with both `src` and `dst` locked, and replaces `dst` with the
/// sorted set of what `f` returns (deleting it when empty); returns the stored size.
pub(crate) fn read_zset_and_store(
    sh: &Shared,
    db: usize,
    src: &[u8],
    dst: &[u8],
    f: impl FnOnce(Option<&ZRead<'_>>) -> Result<Vec<(Bytes, f64)>, Frame>,
) -> Result<i64, Frame> {
    let _guards = sh.keyspace.lock_many(db, [dst, src].into_iter());
    let items = match open_locked(sh, db, src)? {
        None => f(None)?,
        Some(z) => {
            let tree = z.tree.read();
            f(Some(&ZRead {
                sh,
                db,
                key: src,
                version: z.header.version,
                tree: &tree,
            }))?
        }
    };
    store(sh, db, dst, &items)
}

/// GEOADD's write: ZADD with its NX, XX and CH flags.
pub(crate) fn add_scores(
    s: &Session,
    sh: &Shared,
    key: &[u8],
    (nx, xx, ch): (bool, bool, bool),
    pairs: &[(f64, Bytes)],
) -> Frame {
    let flags = AddFlags {
        nx,
        xx,
        ch,
        ..AddFlags::default()
    };
    add_generic(s, sh, key, flags, pairs)
}

// ---------------------------------------------------------------------------------------------------------
// Ranges

/// A score interval as ZRANGEBYSCORE takes it: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
#[derive(Debug, Clone, Copy)]
struct ScoreRange {
    min: f64,
    min_ex: bool,
    max: f64,
    max_ex: bool,
}

fn parse_score_bound(arg: &[u8]) -> Option<(f64, bool)> {
    match arg.first() {
        Some(b'(') => parse_score(&arg[1..]).map(|v| (v, true)),
        _ => parse_score(arg).map(|v| (v, false)),
    }
}

fn parse_score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, Frame> {
    match (parse_score_bound(min), parse_score_bound(max)) {
        (Some((min, min_ex)), Some((max, max_ex))) => Ok(ScoreRange {
            min,
            min_ex,
            max,
            max_ex,
        }),
        _ => Err(Frame::error("ERR min or max is not a float")),
    }
}

/// One end of a lexicographic range: `-`, `+`, `[member` (inclusive), `(member` (exclusive).
#[derive(Debug, Clone)]
enum LexBound {
    NegInf,
    PosInf,
    Incl(Bytes),
    Excl(Bytes),
}

fn parse_lex_bound(arg: &Bytes) -> Option<LexBound> {
    match arg.first()? {
        b'-' if arg.len() == 1 => Some(LexBound::NegInf),
        b'+' if arg.len() == 1 => Some(LexBound::PosInf),
        b'[' => Some(LexBound::Incl(arg.slice(1..))),
        b'(' => Some(LexBound::Excl(arg.slice(1..))),
        _ => None,
    }
}

fn parse_lex_range(min: &Bytes, max: &Bytes) -> Result<(LexBound, LexBound), Frame> {
    match (parse_lex_bound(min), parse_lex_bound(max)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(Frame::error("ERR min or max not valid string range item")),
    }
}

/// Whether `m` lies before the lower bound `b`.
fn below_min(m: &[u8], b: &LexBound) -> bool {
    match b {
        LexBound::NegInf => false,
        LexBound::PosInf => true,
        LexBound::Incl(x) => m < &x[..],
        LexBound::Excl(x) => m <= &x[..],
    }
}

/// Whether `m` lies at or before the upper bound `b`.
fn within_max(m: &[u8], b: &LexBound) -> bool {
    match b {
        LexBound::NegInf => false,
        LexBound::PosInf => true,
        LexBound::Incl(x) => m <= &x[..],
        LexBound::Excl(x) => m < &x[..],
    }
}

/// What a range command selects.
#[derive(Debug, Clone)]
enum Range {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexBound, LexBound),
}

/// The ranks `[start, end)` of the members inside a score or lex range: two O(log n) descents.
fn span(t: &Tree, range: &Range) -> (usize, usize) {
    let (start, end) = match range {
        Range::Score(r) => (
            t.count_before(|i| {
                if r.min_ex {
                    i.score <= r.min
                } else {
                    i.score < r.min
                }
            }),
            t.count_before(|i| {
                if r.max_ex {
                    i.score < r.max
                } else {
                    i.score <= r.max
                }
            }),
        ),
        Range::Lex(min, max) => (
            t.count_before(|i| below_min(&i.member, min)),
            t.count_before(|i| within_max(&i.member, max)),
        ),
        Range::Rank(..) => (0, t.len()),
    };
    (start, end.max(start))
}

/// Ranks `[start, end]` (inclusive) of a Redis rank range over `len` members, or None when empty.
fn rank_bounds(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut end = if end < 0 { len + end } else { end };
    if start < 0 {
        start = 0;
    }
    if start > end || start >= len {
        return None;
    }
    if end >= len {
        end = len - 1;
    }
    Some((start as usize, end as usize))
}

/// The members `range` selects, in order (descending with `rev`), after skipping `offset` and taking at
/// most `limit` (negative: all) — LIMIT applies to score and lex ranges only.
fn select(t: &Tree, range: &Range, rev: bool, offset: i64, limit: i64) -> Vec<Item> {
    if let Range::Rank(start, end) = *range {
        let Some((start, end)) = rank_bounds(start, end, t.len()) else {
            return Vec::new();
        };
        let n = end - start + 1;
        return if rev {
            t.iter_rev_from(t.len() - 1 - start)
                .take(n)
                .cloned()
                .collect()
        } else {
            t.iter_from(start).take(n).cloned().collect()
        };
    }
    let (lo, hi) = span(t, range);
    if offset < 0 {
        return Vec::new();
    }
    let n = hi - lo;
    let skip = usize::try_from(offset).unwrap_or(usize::MAX).min(n);
    let take = if limit < 0 {
        n - skip
    } else {
        usize::try_from(limit).unwrap_or(usize::MAX).min(n - skip)
    };
    if take == 0 {
        return Vec::new();
    }
    if rev {
        t.iter_rev_from(hi - 1 - skip).take(take).cloned().collect()
    } else {
        t.iter_from(lo + skip).take(take).cloned().collect()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Writes: ZADD, ZINCRBY, ZREM

/// Pending per-member state of one write command: the score before and the score now.
#[derive(Default)]
struct Pending {
    order: Vec<Bytes>,
    states: HashMap<Bytes, (Option<f64>, Option<f64>)>,
}

impl Pending {
    /// Reads the scores of several members at once (one consistent multi-get instead of a point read
    /// each); [`Pending::current`] then finds them here.
    fn prefetch<'a>(
        &mut self,
        sh: &Shared,
        db: usize,
        key: &[u8],
        version: Option<u64>,
        members: impl Iterator<Item = &'a Bytes>,
    ) -> Result<(), Frame> {
        let Some(version) = version else {
            return Ok(());
        };
        let mut unique: Vec<&Bytes> = Vec::new();
        for m in members {
            if !self.states.contains_key(m) && !unique.contains(&m) {
                unique.push(m);
            }
        }
        if unique.len() < 2 {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = unique.iter().map(|m| member_key(m)).collect();
        let scores = sh
            .keyspace
            .get_elements(db, key, version, &keys)
            .map_err(storage_error)?;
        for (m, v) in unique.into_iter().zip(scores) {
            let old = v.map(|v| decode_score(&v)).transpose()?;
            self.order.push(m.clone());
            self.states.insert(m.clone(), (old, old));
        }
        Ok(())
    }

    fn current(
        &mut self,
        sh: &Shared,
        db: usize,
        key: &[u8],
        version: Option<u64>,
        member: &Bytes,
    ) -> Result<Option<f64>, Frame> {
        if let Some((_, now)) = self.states.get(member) {
            return Ok(*now);
        }
        let old = match version {
            Some(v) => score_of(sh, db, key, v, member)?,
            None => None,
        };
        self.order.push(member.clone());
        self.states.insert(member.clone(), (old, old));
        Ok(old)
    }

    fn set(&mut self, member: &Bytes, score: Option<f64>) {
        if let Some(state) = self.states.get_mut(member) {
            state.1 = score;
        }
    }

    fn changes(self) -> Vec<Change> {
        let mut states = self.states;
        self.order
            .into_iter()
            .filter_map(|m| {
                let (old, new) = states.remove(&m)?;
                Some(Change {
                    member: m,
                    old,
                    new,
                })
            })
            .collect()
    }
}

#[derive(Default, Clone, Copy)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// What ZADD did to one element.
enum Added {
    New(f64),
    Updated(f64),
    Unchanged(f64),
    Skipped,
}

fn nan_error() -> Frame {
    Frame::error("ERR resulting score is not a number (NaN)")
}

/// ZADD's per-element rule (Redis's `zsetAdd`).
fn add_one(f: AddFlags, current: Option<f64>, score: f64) -> Result<Added, Frame> {
    match current {
        Some(cur) => {
            if f.nx {
                return Ok(Added::Skipped);
            }
            let new = if f.incr {
                let v = cur + score;
                if v.is_nan() {
                    return Err(nan_error());
                }
                v
            } else {
                score
            };
            if (f.lt && new >= cur) || (f.gt && new <= cur) {
                return Ok(Added::Skipped);
            }
            if new == cur {
                Ok(Added::Unchanged(cur))
            } else {
                Ok(Added::Updated(new))
            }
        }
        None if f.xx => Ok(Added::Skipped),
        None => Ok(Added::New(score)),
    }
}

/// ZADD and ZINCRBY's shared body: applies `pairs` under the key's stripe.
fn add_generic(s: &Session, sh: &Shared, key: &[u8], f: AddFlags, pairs: &[(f64, Bytes)]) -> Frame {
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let existing = load_kind(sh, s.db, key, Kind::ZSet)?;
        if existing.is_none() && f.xx {
            return Ok(if f.incr {
                Frame::Null
            } else {
                Frame::Integer(0)
            });
        }
        let version = existing.as_ref().map(|(_, h)| h.version);
        let (entry, header) = existing.unwrap_or_else(|| fresh(sh));
        let mut pending = Pending::default();
        if pairs.len() <= 64 {
            pending.prefetch(sh, s.db, key, version, pairs.iter().map(|(_, m)| m))?;
        }
        let (mut added, mut updated) = (0i64, 0i64);
        let mut last = None;
        for (score, member) in pairs {
            let cur = pending.current(sh, s.db, key, version, member)?;
            match add_one(f, cur, *score)? {
                Added::New(v) => {
                    added += 1;
                    pending.set(member, Some(v));
                    last = Some(v);
                }
                Added::Updated(v) => {
                    updated += 1;
                    pending.set(member, Some(v));
                    last = Some(v);
                }
                Added::Unchanged(v) => last = Some(v),
                Added::Skipped => last = None,
            }
        }
        commit(sh, s.db, key, &entry, header, &pending.changes())?;
        Ok(if f.incr {
            last.map_or(Frame::Null, |v| score_frame(s, v))
        } else if f.ch {
            Frame::Integer(added + updated)
        } else {
            Frame::Integer(added)
        })
    })();
    result.unwrap_or_else(|r| r)
}

pub fn zadd(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let mut f = AddFlags::default();
    let mut i = 2;
    while i < args.len() {
        // Upper-cased on the stack: the first argument checked is usually a score, not a flag.
        let mut word = [0u8; 4];
        let arg = &args[i];
        if arg.len() > word.len() {
            break;
        }
        word[..arg.len()].copy_from_slice(arg);
        word.make_ascii_uppercase();
        match &word[..arg.len()] {
            b"NX" => f.nx = true,
            b"XX" => f.xx = true,
            b"GT" => f.gt = true,
            b"LT" => f.lt = true,
            b"CH" => f.ch = true,
            b"INCR" => f.incr = true,
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Frame::error("ERR syntax error");
    }
    if f.nx && f.xx {
        return Frame::error("ERR XX and NX options at the same time are not compatible");
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return Frame::error("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if f.incr && rest.len() > 2 {
        return Frame::error("ERR INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for p in rest.chunks_exact(2) {
        let Some(score) = parse_score(&p[0]) else {
            return Frame::error("ERR value is not a valid float");
        };
        pairs.push((score, p[1].to_bytes()));
    }
    add_generic(s, sh, &args[1], f, &pairs)
}

pub fn zincrby(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let Some(delta) = parse_score(&args[2]) else {
        return Frame::error("ERR value is not a valid float");
    };
    let f = AddFlags {
        incr: true,
        ..AddFlags::default()
    };
    add_generic(s, sh, &args[1], f, &[(delta, args[3].to_bytes())])
}

pub fn zrem(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let Some((entry, header)) = load_kind(sh, s.db, key, Kind::ZSet)? else {
            return Ok(0);
        };
        let mut pending = Pending::default();
        let members = strata_resp::to_owned_args(&args[2..]);
        if args.len() <= 66 {
            pending.prefetch(sh, s.db, key, Some(header.version), members.iter())?;
        }
        let mut removed = 0;
        for m in &members {
            if pending
                .current(sh, s.db, key, Some(header.version), m)?
                .is_some()
            {
                removed += 1;
                pending.set(m, None);
            }
        }
        commit(sh, s.db, key, &entry, header, &pending.changes())?;
        Ok(removed)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

// ---------------------------------------------------------------------------------------------------------
// Point reads

pub fn zscore(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let result = (|| {
        let Some((_, h)) = load_kind(sh, s.db, &args[1], Kind::ZSet)? else {
            return Ok(Frame::Null);
        };
        Ok(score_of(sh, s.db, &args[1], h.version, &args[2])?
            .map_or(Frame::Null, |v| score_frame(s, v)))
    })();
    result.unwrap_or_else(|r| r)
}

pub fn zmscore(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let result = (|| {
        let Some((_, h)) = load_kind(sh, s.db, &args[1], Kind::ZSet)? else {
            return Ok(Frame::Array(vec![Frame::Null; args.len() - 2]));
        };
        let mut out = Vec::with_capacity(args.len() - 2);
        for m in &args[2..] {
            out.push(
                score_of(sh, s.db, &args[1], h.version, m)?
                    .map_or(Frame::Null, |v| score_frame(s, v)),
            );
        }
        Ok(Frame::Array(out))
    })();
    result.unwrap_or_else(|r| r)
}

pub fn zcard(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load_kind(sh, s.db, &args[1], Kind::ZSet) {
        Ok(h) => Frame::Integer(h.map_or(0, |(_, h)| h.size as i64)),
        Err(r) => r,
    }
}

fn count_range(s: &Session, sh: &Shared, key: &[u8], range: Range) -> Frame {
    match open_read(sh, s.db, key) {
        Ok(None) => Frame::Integer(0),
        Ok(Some(z)) => {
            let (lo, hi) = span(&z.tree.read(), &range);
            Frame::Integer((hi - lo) as i64)
        }
        Err(r) => r,
    }
}

pub fn zcount(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match parse_score_range(&args[2], &args[3]) {
        Ok(r) => count_range(s, sh, &args[1], Range::Score(r)),
        Err(e) => e,
    }
}

pub fn zlexcount(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match parse_lex_range(&args[2].to_bytes(), &args[3].to_bytes()) {
        Ok((a, b)) => count_range(s, sh, &args[1], Range::Lex(a, b)),
        Err(e) => e,
    }
}

/// ZRANK and ZREVRANK [WITHSCORE].
pub fn zrank(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let rev = args[0].eq_ignore_ascii_case(b"zrevrank");
    if args.len() > 4 {
        return super::wrong_arity(if rev { "zrevrank" } else { "zrank" });
    }
    let withscore = match args.get(3) {
        None => false,
        Some(a) if a.eq_ignore_ascii_case(b"withscore") => true,
        Some(_) => return Frame::error("ERR syntax error"),
    };
    let missing = if withscore {
        Frame::NullArray
    } else {
        Frame::Null
    };
    let (key, member) = (&args[1], &args[2]);
    // Read the member's score while holding the tree's read lock (writers hold its write lock across their
    // commits), so both describe one state; a tree evicted meanwhile is retried under the key's stripe.
    let lookup = |z: &Z| -> Result<Option<Option<(usize, f64)>>, Frame> {
        let t = z.tree.read();
        let Some(score) = score_of(sh, s.db, key, z.header.version, member)? else {
            return Ok(Some(None));
        };
        let item = Item {
            score,
            member: member.to_bytes(),
        };
        Ok(t.rank(&item)
            .map(|r| Some((if rev { t.len() - 1 - r } else { r }, score))))
    };
    let result = (|| {
        let Some(z) = open_read(sh, s.db, key)? else {
            return Ok(None);
        };
        if let Some(found) = lookup(&z)? {
            return Ok(found);
        }
        let _guard = sh.keyspace.lock(s.db, key);
        let Some(z) = open_locked(sh, s.db, key)? else {
            return Ok(None);
        };
        Ok(lookup(&z)?.flatten())
    })();
    match result {
        Err(r) => r,
        Ok(None) => missing,
        Ok(Some((rank, score))) if withscore => {
            Frame::Array(vec![Frame::Integer(rank as i64), score_frame(s, score)])
        }
        Ok(Some((rank, _))) => Frame::Integer(rank as i64),
    }
}

// ---------------------------------------------------------------------------------------------------------
// ZRANGE and friends

/// A parsed range request.
struct RangeRequest {
    key: Bytes,
    range: Range,
    rev: bool,
    offset: i64,
    limit: i64,
    withscores: bool,
}

#[derive(PartialEq, Clone, Copy)]
enum RangeKind {
    Auto,
    Rank,
    Score,
    Lex,
}

/// Parses ZRANGE-family arguments (Redis's `zrangeGenericCommand`). `args` starts at the key; the legacy
/// commands fix the kind and direction; ZRANGESTORE (`store`) takes no WITHSCORES.
fn parse_range(
    args: &[Arg],
    kind: RangeKind,
    rev_fixed: Option<bool>,
    store: bool,
) -> Result<RangeRequest, Frame> {
    let mut kind = kind;
    let mut rev = rev_fixed;
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = args[j].to_ascii_lowercase();
        if !store && a == b"withscores" {
            withscores = true;
        } else if a == b"limit" && left >= 2 {
            offset = parse_i64(&args[j + 1])?;
            limit = parse_i64(&args[j + 2])?;
            j += 2;
        } else if rev.is_none() && a == b"rev" {
            rev = Some(true);
        } else if kind == RangeKind::Auto && a == b"bylex" {
            kind = RangeKind::Lex;
        } else if kind == RangeKind::Auto && a == b"byscore" {
            kind = RangeKind::Score;
        } else {
            return Err(Frame::error("ERR syntax error"));
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    if kind == RangeKind::Auto {
        kind = RangeKind::Rank;
    }
    if limit != -1 && kind == RangeKind::Rank {
        return Err(Frame::error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && kind == RangeKind::Lex {
        return Err(Frame::error(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut min, mut max) = (&args[1], &args[2]);
    if rev && kind != RangeKind::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    let range = match kind {
        RangeKind::Score => Range::Score(parse_score_range(min, max)?),
        RangeKind::Lex => {
            let (a, b) = parse_lex_range(&min.to_bytes(), &max.to_bytes())?;
            Range::Lex(a, b)
        }
        _ => Range::Rank(parse_i64(min)?, parse_i64(max)?),
    };
    Ok(RangeRequest {
        key: args[0].to_bytes(),
        range,
        rev,
        offset,
        limit,
        withscores,
    })
}

fn range_command_shape(name: &[u8]) -> (RangeKind, Option<bool>) {
    match name.to_ascii_lowercase().as_slice() {
        b"zrangebyscore" => (RangeKind::Score, Some(false)),
        b"zrevrangebyscore" => (RangeKind::Score, Some(true)),
        b"zrangebylex" => (RangeKind::Lex, Some(false)),
        b"zrevrangebylex" => (RangeKind::Lex, Some(true)),
        b"zrevrange" => (RangeKind::Rank, Some(true)),
        _ => (RangeKind::Auto, None),
    }
}

/// ZRANGE, ZREVRANGE, ZRANGEBYSCORE, ZREVRANGEBYSCORE, ZRANGEBYLEX, ZREVRANGEBYLEX.
pub fn zrange(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (kind, rev) = range_command_shape(&args[0]);
    let req = match parse_range(&args[1..], kind, rev, false) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match open_read(sh, s.db, &req.key) {
        Ok(None) => Frame::Array(Vec::new()),
        Ok(Some(z)) => {
            let items = select(&z.tree.read(), &req.range, req.rev, req.offset, req.limit);
            items_reply(s, items, req.withscores)
        }
        Err(r) => r,
    }
}

pub fn zrangestore(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let req = match parse_range(&args[2..], RangeKind::Auto, None, true) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let dst = &args[1];
    let _guards = sh
        .keyspace
        .lock_many(s.db, [&dst[..], &req.key[..]].into_iter());
    let result = (|| {
        let items = match open_locked(sh, s.db, &req.key)? {
            None => Vec::new(),
            Some(z) => select(&z.tree.read(), &req.range, req.rev, req.offset, req.limit),
        };
        let pairs: Vec<(Bytes, f64)> = items.into_iter().map(|i| (i.member, i.score)).collect();
        store(sh, s.db, dst, &pairs)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

/// ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX.
pub fn zremrange(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let range = match args[0].to_ascii_lowercase().as_slice() {
        b"zremrangebyrank" => match (parse_i64(&args[2]), parse_i64(&args[3])) {
            (Ok(a), Ok(b)) => Range::Rank(a, b),
            (Err(e), _) | (_, Err(e)) => return e,
        },
        b"zremrangebyscore" => match parse_score_range(&args[2], &args[3]) {
            Ok(r) => Range::Score(r),
            Err(e) => return e,
        },
        _ => match parse_lex_range(&args[2].to_bytes(), &args[3].to_bytes()) {
            Ok((a, b)) => Range::Lex(a, b),
            Err(e) => return e,
        },
    };
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let result = (|| {
        let Some(z) = open_locked(sh, s.db, key)? else {
            return Ok(0);
        };
        let items = select(&z.tree.read(), &range, false, 0, -1);
        remove_items(sh, s.db, key, &z, &items)?;
        Ok(items.len() as i64)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

fn remove_items(sh: &Shared, db: usize, key: &[u8], z: &Z, items: &[Item]) -> Result<(), Frame> {
    let changes: Vec<Change> = items
        .iter()
        .map(|i| Change {
            member: i.member.clone(),
            old: Some(i.score),
            new: None,
        })
        .collect();
    commit(sh, db, key, &z.entry, z.header, &changes)
}

// ---------------------------------------------------------------------------------------------------------
// Pops

/// Removes and returns up to `count` lowest-scored (or, with `max`, highest-scored) members of the sorted
/// set at `key`; the caller holds the key's lock stripe. Empty when the key is missing. For ZPOPMIN,
/// ZPOPMAX, ZMPOP and the blocking BZPOPMIN, BZPOPMAX, BZMPOP.
pub(crate) fn pop_locked(
    sh: &Shared,
    db: usize,
    key: &[u8],
    max: bool,
    count: usize,
) -> Result<Vec<Item>, Frame> {
    let Some(z) = open_locked(sh, db, key)? else {
        return Ok(Vec::new());
    };
    let items: Vec<Item> = {
        let t = z.tree.read();
        if max {
            t.iter_rev_from(t.len().saturating_sub(1))
                .take(count)
                .cloned()
                .collect()
        } else {
            t.iter().take(count).cloned().collect()
        }
    };
    remove_items(sh, db, key, &z, &items)?;
    Ok(items)
}

/// [`pop_locked`], taking the key's lock stripe itself.
pub(crate) fn pop(
    sh: &Shared,
    db: usize,
    key: &[u8],
    max: bool,
    count: usize,
) -> Result<Vec<Item>, Frame> {
    let _guard = sh.keyspace.lock(db, key);
    pop_locked(sh, db, key, max, count)
}

/// The reply of ZMPOP and BZMPOP for popped `items` of `key`: `[key, [[member, score], ...]]`.
pub(crate) fn mpop_reply(s: &Session, key: Bytes, items: Vec<Item>) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(key),
        Frame::Array(
            items
                .into_iter()
                .map(|i| Frame::Array(vec![Frame::Bulk(i.member), score_frame(s, i.score)]))
                .collect(),
        ),
    ])
}

fn zpop_generic(s: &Session, sh: &Shared, args: &[Arg], max: bool) -> Frame {
    if args.len() > 3 {
        return Frame::error("ERR syntax error");
    }
    // Redis's getPositiveLong...: one message for a non-integer and a negative count.
    let count = match args.get(2).map(|c| parse_i64(c)) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        Some(_) => return Frame::error("ERR value is out of range, must be positive"),
    };
    let items = match pop(sh, s.db, &args[1], max, count.unwrap_or(1)) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if count.is_some() && resp3(s) {
        return items_reply(s, items, true);
    }
    let mut out = Vec::with_capacity(items.len() * 2);
    for i in items {
        out.push(Frame::Bulk(i.member));
        out.push(score_frame(s, i.score));
    }
    Frame::Array(out)
}

pub fn zpopmin(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    zpop_generic(s, sh, args, false)
}

pub fn zpopmax(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    zpop_generic(s, sh, args, true)
}

/// Parses `numkeys key... MIN|MAX [COUNT n]` (ZMPOP from `args[1]`, BZMPOP after its timeout): the keys,
/// whether MAX, and the count.
pub(crate) fn parse_mpop(args: &[Arg]) -> Result<(Vec<Bytes>, bool, usize), Frame> {
    let numkeys = match parse_i64(&args[0]) {
        Ok(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
        _ => return Err(Frame::error("ERR numkeys should be greater than 0")),
    };
    let where_idx = numkeys.saturating_add(1);
    let Some(which) = args.get(where_idx) else {
        return Err(Frame::error("ERR syntax error"));
    };
    let max = if which.eq_ignore_ascii_case(b"min") {
        false
    } else if which.eq_ignore_ascii_case(b"max") {
        true
    } else {
        return Err(Frame::error("ERR syntax error"));
    };
    let mut count = None;
    let mut j = where_idx + 1;
    while j < args.len() {
        if count.is_none() && args[j].eq_ignore_ascii_case(b"count") && j + 1 < args.len() {
            j += 1;
            match parse_i64(&args[j]) {
                Ok(n) if n >= 1 => count = Some(usize::try_from(n).unwrap_or(usize::MAX)),
                _ => return Err(Frame::error("ERR count should be greater than 0")),
            }
        } else {
            return Err(Frame::error("ERR syntax error"));
        }
        j += 1;
    }
    Ok((
        strata_resp::to_owned_args(&args[1..where_idx]),
        max,
        count.unwrap_or(1),
    ))
}

/// Pops from the first of `keys` holding a non-empty sorted set: that key and what was popped, or
/// `None` when every key is empty. A key of another type is an error, except while a blocked command
/// retries after a wake-up: Redis keeps such a client waiting.
fn pop_first(
    s: &Session,
    sh: &Shared,
    keys: &[Arg],
    max: bool,
    count: usize,
) -> Result<Option<(Bytes, Vec<Item>)>, Frame> {
    // Every key's stripe at once: no push to an earlier key can slip in between the checks, so the pop
    // comes from the first non-empty key at one instant, as in Redis.
    let _guards = sh.keyspace.lock_many(s.db, keys.iter().map(|k| &k[..]));
    for key in keys {
        let items = match pop_locked(sh, s.db, key, max, count) {
            Ok(items) => items,
            Err(e) if s.retrying_block && e == wrongtype() => continue,
            Err(e) => return Err(e),
        };
        if !items.is_empty() {
            return Ok(Some((key.to_bytes(), items)));
        }
    }
    Ok(None)
}

pub fn zmpop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (keys, max, count) = match parse_mpop(&args[1..]) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let found = pop_first(s, sh, &strata_resp::args_of(&keys), max, count);
    match found {
        Ok(Some((key, items))) => mpop_reply(s, key, items),
        Ok(None) => Frame::NullArray,
        Err(r) => r,
    }
}

/// BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]: ZMPOP, waiting while every key is empty.
pub fn bzmpop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (keys, max, count) = match parse_mpop(&args[2..]) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let deadline = match crate::blocking::parse_timeout(&args[1]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let found = pop_first(s, sh, &strata_resp::args_of(&keys), max, count);
    match found {
        Ok(Some((key, items))) => mpop_reply(s, key, items),
        Ok(None) => s.block_on(crate::blocking::BlockRequest {
            keys,
            deadline,
            timeout_reply: Frame::NullArray,
        }),
        Err(r) => r,
    }
}

/// BZPOPMIN key [key ...] timeout, BZPOPMAX key [key ...] timeout: pops one member of the first
/// non-empty sorted set (`[key, member, score]`), waiting while every key is empty.
pub fn bzpop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let max = args[0].eq_ignore_ascii_case(b"bzpopmax");
    let deadline = match crate::blocking::parse_timeout(&args[args.len() - 1]) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let keys = &args[1..args.len() - 1];
    match pop_first(s, sh, keys, max, 1) {
        Ok(Some((key, mut items))) => match items.pop() {
            Some(item) => Frame::Array(vec![
                Frame::Bulk(key),
                Frame::Bulk(item.member),
                score_frame(s, item.score),
            ]),
            None => Frame::NullArray,
        },
        Ok(None) => s.block_on(crate::blocking::BlockRequest {
            keys: strata_resp::to_owned_args(keys),
            deadline,
            timeout_reply: Frame::NullArray,
        }),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------------------------------------------------
// ZRANDMEMBER

fn rng_seed(sh: &Shared, key: &[u8]) -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    key.iter().fold(
        sh.keyspace.now_ms() ^ c.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3),
    ) | 1
}

fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

pub fn zrandmember(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if args.len() > 4 || (args.len() == 4 && !args[3].eq_ignore_ascii_case(b"withscores")) {
        return Frame::error("ERR syntax error");
    }
    let withscores = args.len() == 4;
    let count = match args.get(2).map(|c| parse_i64(c)) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(r)) => return r,
    };
    if count == Some(i64::MIN) {
        return Frame::error(format!(
            "ERR value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        ));
    }
    if withscores && count.is_some_and(|n| n < -(i64::MAX / 2)) {
        return Frame::error("ERR value is out of range");
    }
    let z = match open_read(sh, s.db, &args[1]) {
        Ok(Some(z)) => z,
        Ok(None) if count.is_none() => return Frame::Null,
        Ok(None) => return Frame::Array(Vec::new()),
        Err(r) => return r,
    };
    let t = z.tree.read();
    let len = t.len();
    if len == 0 {
        return if count.is_none() {
            Frame::Null
        } else {
            Frame::Array(Vec::new())
        };
    }
    let mut state = rng_seed(sh, &args[1]);
    let Some(n) = count else {
        return match t.get((next_rand(&mut state) % len.max(1) as u64) as usize) {
            Some(i) => Frame::Bulk(i.member.clone()),
            None => Frame::Null,
        };
    };
    if n < 0 && super::reply_over_limit(s, sh, n.unsigned_abs(), 6) {
        return Frame::Null;
    }
    let items: Vec<Item> = if n < 0 {
        (0..n.unsigned_abs())
            .filter_map(|_| {
                t.get((next_rand(&mut state) % len as u64) as usize)
                    .cloned()
            })
            .collect()
    } else {
        let want = usize::try_from(n).unwrap_or(usize::MAX).min(len);
        if want * 2 >= len {
            // Most of the set: shuffle all of it and keep a prefix.
            let mut all: Vec<Item> = t.iter().cloned().collect();
            for i in 0..want {
                let j = i + (next_rand(&mut state) % (len - i) as u64) as usize;
                all.swap(i, j);
            }
            all.truncate(want);
            all
        } else {
            // A few distinct ranks, each fetched in O(log n).
            let mut picked = std::collections::HashSet::with_capacity(want);
            let mut out = Vec::with_capacity(want);
            while out.len() < want {
                let r = (next_rand(&mut state) % len as u64) as usize;
                if picked.insert(r)
                    && let Some(i) = t.get(r)
                {
                    out.push(i.clone());
                }
            }
            out
        }
    };
    drop(t);
    items_reply(s, items, withscores)
}

// ---------------------------------------------------------------------------------------------------------
// ZUNION, ZINTER, ZDIFF, their STORE forms, ZINTERCARD

/// The members and scores of the sorted set or set at `key` (a set's members score 1), in member order;
/// None if missing, WRONGTYPE otherwise. Other families (SORT, COPY-like paths) should read sorted sets
/// through this: a sorted set's element keys are tagged (`m`/`i`), not bare members.
pub(crate) fn read_source(
    sh: &Shared,
    db: usize,
    key: &[u8],
) -> Result<Option<Vec<(Bytes, f64)>>, Frame> {
    let Some(entry) = sh.keyspace.get(db, key).map_err(storage_error)? else {
        return Ok(None);
    };
    let header = CollectionHeader::from_payload(&entry.payload).map_err(storage_error);
    match entry.kind {
        Kind::ZSet => {
            let records = sh
                .keyspace
                .element_range(
                    db,
                    key,
                    header?.version,
                    &[MEMBER_TAG],
                    &[MEMBER_TAG + 1],
                    usize::MAX,
                )
                .map_err(storage_error)?;
            let mut out = Vec::with_capacity(records.len());
            for (k, v) in records {
                out.push((k.slice(1..), decode_score(&v)?));
            }
            Ok(Some(out))
        }
        Kind::Set => Ok(Some(
            sh.keyspace
                .elements(db, key, header?.version)
                .map_err(storage_error)?
                .into_iter()
                .map(|(m, _)| (m, 1.0))
                .collect(),
        )),
        _ => Err(wrongtype()),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

fn aggregate(agg: Aggregate, acc: f64, v: f64) -> f64 {
    match agg {
        Aggregate::Sum => {
            let s = acc + v;
            if s.is_nan() { 0.0 } else { s }
        }
        Aggregate::Min => acc.min(v),
        Aggregate::Max => acc.max(v),
    }
}

/// Parsed `numkeys key... [WEIGHTS w...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES] [LIMIT n]`.
struct SetOpRequest {
    weights: Vec<f64>,
    agg: Aggregate,
    withscores: bool,
    limit: usize,
}

/// Parses the arguments from `numkeys` on (Redis's `zunionInterDiffGenericCommand`); sources are read
/// (and type-checked) between the key count and the options, as Redis does, so a wrong type wins over a
/// syntax error. Returns the request and the sources.
#[allow(clippy::type_complexity)]
fn parse_setop(
    sh: &Shared,
    db: usize,
    args: &[Arg],
    command: &str,
    op: SetOp,
    store: bool,
    card_only: bool,
) -> Result<(SetOpRequest, Vec<Option<Vec<(Bytes, f64)>>>), Frame> {
    let numkeys = parse_i64(&args[0])?;
    if numkeys < 1 {
        return Err(Frame::error(format!(
            "ERR at least 1 input key is needed for '{command}' command"
        )));
    }
    let numkeys = usize::try_from(numkeys).unwrap_or(usize::MAX);
    if numkeys > args.len() - 1 {
        return Err(Frame::error("ERR syntax error"));
    }
    let mut sources = Vec::with_capacity(numkeys);
    for k in &args[1..=numkeys] {
        sources.push(read_source(sh, db, k)?);
    }
    let mut req = SetOpRequest {
        weights: vec![1.0; numkeys],
        agg: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    let mut j = numkeys + 1;
    while j < args.len() {
        let remaining = args.len() - j;
        let a = args[j].to_ascii_lowercase();
        if op != SetOp::Diff && !card_only && remaining > numkeys && a == b"weights" {
            for i in 0..numkeys {
                req.weights[i] = parse_score(&args[j + 1 + i])
                    .ok_or_else(|| Frame::error("ERR weight value is not a float"))?;
            }
            j += 1 + numkeys;
        } else if op != SetOp::Diff && !card_only && remaining >= 2 && a == b"aggregate" {
            req.agg = match args[j + 1].to_ascii_lowercase().as_slice() {
                b"sum" => Aggregate::Sum,
                b"min" => Aggregate::Min,
                b"max" => Aggregate::Max,
                _ => return Err(Frame::error("ERR syntax error")),
            };
            j += 2;
        } else if !store && !card_only && a == b"withscores" {
            req.withscores = true;
            j += 1;
        } else if card_only && remaining >= 2 && a == b"limit" {
            req.limit = match parse_i64(&args[j + 1]) {
                Ok(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(Frame::error("ERR LIMIT can't be negative")),
            };
            j += 2;
        } else {
            return Err(Frame::error("ERR syntax error"));
        }
    }
    Ok((req, sources))
}

/// Computes a union, intersection or difference, sorted by (score, member).
fn compute_setop(
    op: SetOp,
    req: &SetOpRequest,
    sources: Vec<Option<Vec<(Bytes, f64)>>>,
) -> Vec<Item> {
    let weighted = |v: f64, w: f64| {
        let x = v * w;
        if x.is_nan() { 0.0 } else { x }
    };
    let mut srcs: Vec<(Vec<(Bytes, f64)>, f64)> = sources
        .into_iter()
        .zip(req.weights.iter())
        .map(|(s, w)| (s.unwrap_or_default(), *w))
        .collect();
    let mut out: Vec<Item> = match op {
        SetOp::Diff => {
            let mut it = srcs.into_iter();
            let Some((first, _)) = it.next() else {
                return Vec::new();
            };
            let others: Vec<std::collections::HashSet<Bytes>> = it
                .map(|(s, _)| s.into_iter().map(|(m, _)| m).collect())
                .collect();
            first
                .into_iter()
                .filter(|(m, _)| !others.iter().any(|o| o.contains(m)))
                .map(|(member, score)| Item { score, member })
                .collect()
        }
        SetOp::Union => {
            // Smallest sources first, as Redis orders them (it matters for floating-point sums).
            srcs.sort_by_key(|(s, _)| s.len());
            let mut acc: HashMap<Bytes, f64> = HashMap::new();
            for (s, w) in srcs {
                for (m, v) in s {
                    let v = weighted(v, w);
                    acc.entry(m)
                        .and_modify(|a| *a = aggregate(req.agg, *a, v))
                        .or_insert(v);
                }
            }
            acc.into_iter()
                .map(|(member, score)| Item { score, member })
                .collect()
        }
        SetOp::Inter => {
            srcs.sort_by_key(|(s, _)| s.len());
            let mut it = srcs.into_iter();
            let Some((first, w0)) = it.next() else {
                return Vec::new();
            };
            let others: Vec<(HashMap<Bytes, f64>, f64)> =
                it.map(|(s, w)| (s.into_iter().collect(), w)).collect();
            first
                .into_iter()
                .filter_map(|(m, v)| {
                    let mut acc = weighted(v, w0);
                    for (o, w) in &others {
                        acc = aggregate(req.agg, acc, weighted(*o.get(&m)?, *w));
                    }
                    Some(Item {
                        score: acc,
                        member: m,
                    })
                })
                .collect()
        }
    };
    out.sort();
    out
}

fn setop_kind(name: &[u8]) -> SetOp {
    let n = name.to_ascii_lowercase();
    if n.starts_with(b"zunion") {
        SetOp::Union
    } else if n.starts_with(b"zinter") {
        SetOp::Inter
    } else {
        SetOp::Diff
    }
}

/// ZUNION, ZINTER, ZDIFF.
pub fn zsetop(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let op = setop_kind(&args[0]);
    let command = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    match parse_setop(sh, s.db, &args[1..], &command, op, false, false) {
        Ok((req, sources)) => {
            let items = compute_setop(op, &req, sources);
            items_reply(s, items, req.withscores)
        }
        Err(e) => e,
    }
}

/// ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE: the result replaces the destination (deleted when empty).
pub fn zsetop_store(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let op = setop_kind(&args[0]);
    let command = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let dst = &args[1];
    let _guards = sh.keyspace.lock_many(
        s.db,
        std::iter::once(&dst[..]).chain(args[3..].iter().map(|k| &k[..])),
    );
    let result = (|| {
        let (req, sources) = parse_setop(sh, s.db, &args[2..], &command, op, true, false)?;
        let items = compute_setop(op, &req, sources);
        let pairs: Vec<(Bytes, f64)> = items.into_iter().map(|i| (i.member, i.score)).collect();
        store(sh, s.db, dst, &pairs)
    })();
    result.map_or_else(|r| r, Frame::Integer)
}

pub fn zintercard(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match parse_setop(
        sh,
        s.db,
        &args[1..],
        "zintercard",
        SetOp::Inter,
        false,
        true,
    ) {
        Ok((req, sources)) => {
            let n = compute_setop(SetOp::Inter, &req, sources).len();
            let n = if req.limit == 0 { n } else { n.min(req.limit) };
            Frame::Integer(n as i64)
        }
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------------------
// ZSCAN

/// Sets up to this size are returned whole by one ZSCAN call (Redis does so for its compact encoding).
const ZSCAN_WHOLE: u64 = 128;

pub fn zscan(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let Some(cursor) = std::str::from_utf8(&args[2])
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return Frame::error("ERR invalid cursor");
    };
    let (mut pattern, mut count) = (None, 10usize);
    let mut i = 3;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Frame::error("ERR syntax error");
        };
        match args[i].to_ascii_uppercase().as_slice() {
            b"MATCH" => pattern = Some(*value),
            b"COUNT" => match parse_i64(value) {
                Ok(n) if n >= 1 => count = usize::try_from(n).unwrap_or(usize::MAX),
                Ok(_) => return Frame::error("ERR syntax error"),
                Err(r) => return r,
            },
            _ => return Frame::error("ERR syntax error"),
        }
        i += 2;
    }
    let result = (|| {
        let Some((_, h)) = load_kind(sh, s.db, key, Kind::ZSet)? else {
            return Ok((0, Vec::new()));
        };
        // A small set comes whole, in score order as Redis's compact encoding does; a big one in member
        // order from after the cursor's last member.
        let whole = h.size <= ZSCAN_WHOLE;
        let (tag, skip) = if whole {
            (INDEX_TAG, 9)
        } else {
            (MEMBER_TAG, 1)
        };
        let mut start = vec![tag];
        if !whole
            && cursor != 0
            && let Some(last) = cache(sh).cursor(cursor, s.db, key)
        {
            start.extend_from_slice(&last);
            start.push(0);
        }
        let budget = if whole {
            usize::MAX
        } else {
            count.min(100_000)
        };
        let records = sh
            .keyspace
            .element_range(s.db, key, h.version, &start, &[tag + 1], budget)
            .map_err(storage_error)?;
        let next = if records.len() == budget {
            match records.last() {
                Some((k, _)) => cache(sh).remember_cursor(s.db, key, k.slice(skip..)),
                None => 0,
            }
        } else {
            0
        };
        let mut out = Vec::new();
        for (k, v) in records {
            let member = k.slice(skip.min(k.len())..);
            if pattern
                .as_ref()
                .is_none_or(|p| super::keys::glob_match(p, &member, false))
            {
                out.push(Frame::Bulk(member));
                out.push(Frame::bulk(format_score(decode_score(&v)?)));
            }
        }
        Ok((next, out))
    })();
    match result {
        Ok((next, out)) => Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(out)]),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_of(n: usize) -> SharedTree {
        let mut t = Tree::new();
        for i in 0..n {
            t.insert(Item {
                score: i as f64,
                member: Bytes::from(i.to_string()),
            });
        }
        Arc::new(RwLock::new(t))
    }

    #[test]
    fn cache_evicts_least_recently_used_trees_and_checks_keys() {
        let c = TreeCache::with_capacity(10);
        c.insert(b"a", 1, tree_of(4), 4);
        c.insert(b"b", 2, tree_of(4), 4);
        assert!(c.get(b"a", 1).is_some());
        // Over capacity: "b" is the least recently used.
        c.insert(b"c", 3, tree_of(4), 4);
        assert!(c.get(b"b", 2).is_none());
        assert!(c.get(b"a", 1).is_some());
        assert!(c.get(b"c", 3).is_some());
        // A version is only ever answered for its own key.
        assert!(c.get(b"other", 1).is_none());
        // Growth is accounted: "a" grows past the bound and "c" (older) goes.
        c.resize(1, 9);
        assert!(c.get(b"c", 3).is_none());
        assert!(c.get(b"a", 1).is_some());
        // One tree bigger than the whole bound stays while it is the only one.
        c.insert(b"huge", 4, tree_of(20), 20);
        assert!(c.get(b"huge", 4).is_some());
        assert!(c.get(b"a", 1).is_none());
        c.remove(4);
        assert!(c.get(b"huge", 4).is_none());
        let inner = c.inner.lock();
        assert_eq!(
            (inner.slots.len(), inner.members, inner.lru.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn scores_format_like_redis_7_2() {
        let cases: &[(f64, &str)] = &[
            (0.1, "0.1"),
            (1.5, "1.5"),
            (3.0, "3"),
            (-2.0, "-2"),
            (0.0, "0"),
            (-0.0, "-0"),
            (1e8, "100000000"),
            (1e17, "100000000000000000"),
            (1e19, "1e+19"),
            (1.5e-7, "1.5e-7"),
            (1e-7, "1e-7"),
            (1e-6, "0.000001"),
            (123456.789, "123456.789"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-3.25, "-3.25"),
            (12345678.5, "12345678.5"),
        ];
        for (d, want) in cases {
            assert_eq!(format_score(*d), *want, "{d:e}");
        }
    }

    #[test]
    fn scores_parse_like_redis() {
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_score(b"0"), Some(0.0));
        for bad in [&b"nan"[..], b"", b" 1", b"1 ", b"abc", b"1e400", b"1e-400"] {
            assert_eq!(parse_score(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn sortable_bytes_follow_numeric_order() {
        let mut v = vec![
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -1e-300,
            0.0,
            1e-300,
            1.0,
            2.5,
            1e300,
            f64::INFINITY,
        ];
        let sorted = v.clone();
        v.reverse();
        v.sort_by_key(|d| sortable(*d));
        assert_eq!(v, sorted);
        assert_eq!(sortable(-0.0), sortable(0.0));
    }
}
