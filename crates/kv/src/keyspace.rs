//! The keyspace: Redis keys and their values, stored in strata-storage.
//!
//! Each logical database is one storage tree (`kv0` .. `kv15`), so FLUSHDB is one range tombstone. A key's
//! *metadata record* lives at `b'm' ++ key`:
//!
//! ```text
//! type u8 | expire_at_ms u64 big-endian (0 = no expiry) | payload
//! ```
//!
//! For a string the payload is the value itself. Collections (later) keep a version and a size in the
//! payload and their elements under versioned sub-keys, so deleting one is O(1); `docs/kv-encoding.md` has
//! the full layout.
//!
//! Expiry is lazy: a read that finds an expired record treats the key as missing (and deletes it). Writes
//! that read first (INCR, APPEND, SET with conditions) hold a lock stripe for the key so concurrent
//! read-modify-writes of one key serialize while different keys proceed in parallel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{BufMut as _, Bytes, BytesMut};
use parking_lot::{Mutex, MutexGuard};
use strata_storage::{Db, StorageError, Tree, WriteBatch};

/// Prefix of metadata records.
const META_PREFIX: u8 = b'm';
/// Bytes before a record's payload.
const HEADER_BYTES: usize = 9;
/// Lock stripes for read-modify-write commands.
const LOCK_STRIPES: usize = 1024;

/// A key's type, as `TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (also integers and floats).
    String = 0,
    /// A list.
    List = 1,
    /// A hash.
    Hash = 2,
    /// A set.
    Set = 3,
    /// A sorted set.
    ZSet = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::String,
            1 => Kind::List,
            2 => Kind::Hash,
            3 => Kind::Set,
            4 => Kind::ZSet,
            _ => return None,
        })
    }

    /// The name `TYPE` replies with.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
        }
    }
}

/// A decoded metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value's type.
    pub kind: Kind,
    /// Unix time in milliseconds at which the key expires; 0 for never.
    pub expire_at_ms: u64,
    /// The string value (or a collection's header).
    pub payload: Bytes,
}

impl Entry {
    /// A string value without expiry.
    pub fn string(value: Bytes) -> Entry {
        Entry {
            kind: Kind::String,
            expire_at_ms: 0,
            payload: value,
        }
    }

    fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(HEADER_BYTES + self.payload.len());
        out.put_u8(self.kind as u8);
        out.put_u64(self.expire_at_ms);
        out.put_slice(&self.payload);
        out
    }

    fn decode(raw: Bytes) -> Result<Entry, KvError> {
        let kind = raw
            .first()
            .and_then(|&b| Kind::from_byte(b))
            .ok_or(KvError::Corrupt("unknown value type"))?;
        let expire = raw
            .get(1..HEADER_BYTES)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or(KvError::Corrupt("short metadata record"))?;
        Ok(Entry {
            kind,
            expire_at_ms: expire,
            payload: raw.slice(HEADER_BYTES..),
        })
    }
}

/// Errors of keyspace operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The storage engine failed (I/O, poisoned, closed).
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
    /// A stored record did not decode.
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
}

/// Where the current time comes from, in Unix milliseconds; tests inject their own.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> Self {
        ManualClock(AtomicU64::new(ms))
    }

    /// Moves the clock forward.
    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// All databases of the service.
#[derive(Debug)]
pub struct Keyspace {
    db: Db,
    trees: Vec<Tree>,
    clock: Arc<dyn Clock>,
    locks: Vec<Mutex<()>>,
    /// Next collection version. Starts above any version used before a restart: each version is created
    /// together with a write, so `(seqno at open + 1) << 20` exceeds every earlier one unless a million
    /// collections were created per write, which cannot happen.
    next_version: AtomicU64,
    /// Keys some connection WATCHes, with a counter bumped by every write to them.
    watched: Mutex<std::collections::HashMap<(usize, Bytes), WatchSlot>>,
    /// Number of entries in `watched`, so writes skip the map when nobody watches anything.
    watching: AtomicU64,
    /// Order-statistic trees of hot sorted sets (rank and range in O(log n)); see `cmd/zsets.rs`.
    pub(crate) zset_trees: crate::cmd::zsets::TreeCache,
}

#[derive(Debug, Default)]
struct WatchSlot {
    writes: u64,
    watchers: usize,
}

/// Prefix of collection element records.
const SUB_PREFIX: u8 = b's';

/// The header of a collection's metadata payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectionHeader {
    /// Distinguishes this incarnation of the key from earlier ones.
    pub version: u64,
    /// Number of elements.
    pub size: u64,
}

impl CollectionHeader {
    /// Encodes the header as a metadata payload.
    pub fn to_payload(self) -> Bytes {
        let mut b = BytesMut::with_capacity(16);
        b.put_u64(self.version);
        b.put_u64(self.size);
        b.freeze()
    }

    /// Decodes a collection's metadata payload.
    pub fn from_payload(p: &[u8]) -> Result<Self, KvError> {
        let word = |i: usize| {
            p.get(i..i + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or(KvError::Corrupt("short collection header"))
        };
        Ok(CollectionHeader {
            version: word(0)?,
            size: word(8)?,
        })
    }
}

/// The sub-key prefix of one incarnation of a collection: `b's' ++ len(key) u32 ++ key ++ version`.
pub fn sub_prefix(key: &[u8], version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + 4 + key.len() + 8);
    k.push(SUB_PREFIX);
    k.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    k.extend_from_slice(key);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

fn meta_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(META_PREFIX);
    k.extend_from_slice(key);
    k
}

impl Keyspace {
    /// Opens (creating on demand) `databases` trees in `db`.
    pub fn open(db: Db, databases: usize, clock: Arc<dyn Clock>) -> Result<Keyspace, KvError> {
        let trees = (0..databases)
            .map(|i| db.tree(&format!("kv{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let next_version = AtomicU64::new((db.seqno() + 1) << 20);
        Ok(Keyspace {
            db,
            trees,
            clock,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            next_version,
            watched: Mutex::new(std::collections::HashMap::new()),
            watching: AtomicU64::new(0),
            zset_trees: Default::default(),
        })
    }

    /// Starts watching `key`; returns the write counter to compare at EXEC.
    pub fn watch(&self, db: usize, key: &Bytes) -> u64 {
        let mut w = self.watched.lock();
        let slot = w.entry((db, key.clone())).or_default();
        slot.watchers += 1;
        let writes = slot.writes;
        self.watching.store(w.len() as u64, Ordering::Release);
        writes
    }

    /// Stops one watch of `key`.
    pub fn unwatch(&self, db: usize, key: &Bytes) {
        let mut w = self.watched.lock();
        let k = (db, key.clone());
        if let Some(slot) = w.get_mut(&k) {
            slot.watchers = slot.watchers.saturating_sub(1);
            if slot.watchers == 0 {
                w.remove(&k);
            }
        }
        self.watching.store(w.len() as u64, Ordering::Release);
    }

    /// The write counter of a watched key.
    pub fn watch_writes(&self, db: usize, key: &Bytes) -> u64 {
        self.watched
            .lock()
            .get(&(db, key.clone()))
            .map_or(u64::MAX, |s| s.writes)
    }

    /// Records a write to `key` for its watchers.
    fn touched(&self, db: usize, key: &[u8]) {
        if self.watching.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(slot) = self
            .watched
            .lock()
            .get_mut(&(db, Bytes::copy_from_slice(key)))
        {
            slot.writes += 1;
        }
    }

    /// Records a write to every watched key of `db` (or of every database).
    fn touched_all(&self, db: Option<usize>) {
        if self.watching.load(Ordering::Acquire) == 0 {
            return;
        }
        for ((d, _), slot) in self.watched.lock().iter_mut() {
            if db.is_none_or(|db| db == *d) {
                slot.writes += 1;
            }
        }
    }

    /// The storage engine underneath.
    pub fn storage(&self) -> &Db {
        &self.db
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn tree(&self, db: usize) -> &Tree {
        &self.trees[db.min(self.trees.len() - 1)]
    }

    fn stripe(db: usize, key: &[u8]) -> usize {
        // FNV-1a: cheap, and only spreads keys over stripes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ db as u64;
        for &b in key {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        (h % LOCK_STRIPES as u64) as usize
    }

    /// Locks the stripe of one key for a read-modify-write.
    pub fn lock(&self, db: usize, key: &[u8]) -> MutexGuard<'_, ()> {
        self.locks[Self::stripe(db, key)].lock()
    }

    /// Locks the stripes of several keys, in stripe order so two multi-key commands cannot deadlock.
    pub fn lock_many<'a>(
        &'a self,
        db: usize,
        keys: impl Iterator<Item = &'a [u8]>,
    ) -> Vec<MutexGuard<'a, ()>> {
        let mut stripes: Vec<usize> = keys.map(|k| Self::stripe(db, k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes.into_iter().map(|s| self.locks[s].lock()).collect()
    }

    /// The live entry of `key`, or `None` if it is missing or expired.
    pub fn get(&self, db: usize, key: &[u8]) -> Result<Option<Entry>, KvError> {
        let Some(raw) = self.tree(db).get(&meta_key(key))? else {
            return Ok(None);
        };
        let entry = Entry::decode(raw)?;
        if entry.expire_at_ms != 0 && entry.expire_at_ms <= self.now_ms() {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// Stores `entry` under `key`, replacing whatever was there (a replaced collection's elements are
    /// dropped with one range tombstone).
    pub fn put(&self, db: usize, key: &[u8], entry: &Entry) -> Result<(), KvError> {
        self.touched(db, key);
        let tree = self.tree(db);
        let mkey = meta_key(key);
        // Rewriting a collection's own metadata (EXPIRE, PERSIST) keeps its elements.
        let same_collection = |prefix: &Vec<u8>| {
            entry.kind != Kind::String
                && CollectionHeader::from_payload(&entry.payload)
                    .is_ok_and(|h| *prefix == sub_prefix(key, h.version))
        };
        match self.old_elements(db, key)?.filter(|p| !same_collection(p)) {
            None => Ok(tree.put(&mkey, &entry.encode())?),
            Some(prefix) => {
                let mut batch = WriteBatch::new();
                batch.delete_range(tree, &prefix, &prefix_end(&prefix));
                batch.put(tree, &mkey, &entry.encode());
                self.db.write(&batch)?;
                Ok(())
            }
        }
    }

    /// The element prefix of the collection (live or expired) stored at `key`, if it is one.
    fn old_elements(&self, db: usize, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let Some(raw) = self.tree(db).get(&meta_key(key))? else {
            return Ok(None);
        };
        let entry = Entry::decode(raw)?;
        if entry.kind == Kind::String {
            return Ok(None);
        }
        let h = CollectionHeader::from_payload(&entry.payload)?;
        Ok(Some(sub_prefix(key, h.version)))
    }

    /// Stores several string entries atomically.
    pub fn put_many(&self, db: usize, entries: &[(&[u8], Entry)]) -> Result<(), KvError> {
        for (key, _) in entries {
            self.touched(db, key);
        }
        let tree = self.tree(db);
        let mut batch = WriteBatch::new();
        for (key, entry) in entries {
            if let Some(prefix) = self.old_elements(db, key)? {
                batch.delete_range(tree, &prefix, &prefix_end(&prefix));
            }
            batch.put(tree, &meta_key(key), &entry.encode());
        }
        self.db.write(&batch)?;
        Ok(())
    }

    /// Moves `entry` from `from` to `to` in one atomic batch (RENAME). A collection's elements are copied
    /// under a new version (O(n), as in Redis-on-LSM designs); whatever `to` held is dropped.
    pub fn rename(&self, db: usize, from: &[u8], to: &[u8], entry: &Entry) -> Result<(), KvError> {
        self.touched(db, from);
        self.touched(db, to);
        let tree = self.tree(db);
        let mut batch = WriteBatch::new();
        if let Some(prefix) = self.old_elements(db, to)? {
            batch.delete_range(tree, &prefix, &prefix_end(&prefix));
        }
        batch.delete(tree, &meta_key(from));
        if entry.kind == Kind::String {
            batch.put(tree, &meta_key(to), &entry.encode());
        } else {
            let old = CollectionHeader::from_payload(&entry.payload)?;
            let new = CollectionHeader {
                version: self.new_version(),
                size: old.size,
            };
            let new_prefix = sub_prefix(to, new.version);
            let mut k = new_prefix.clone();
            for (element, value) in self.elements(db, from, old.version)? {
                k.truncate(new_prefix.len());
                k.extend_from_slice(&element);
                batch.put(tree, &k, &value);
            }
            let old_prefix = sub_prefix(from, old.version);
            batch.delete_range(tree, &old_prefix, &prefix_end(&old_prefix));
            // The new version replaces the first word; the rest (size, a list's head) stays valid because
            // elements keep their element keys.
            let mut payload = BytesMut::from(&entry.payload[..]);
            payload[..8].copy_from_slice(&new.version.to_be_bytes());
            let moved = Entry {
                kind: entry.kind,
                expire_at_ms: entry.expire_at_ms,
                payload: payload.freeze(),
            };
            batch.put(tree, &meta_key(to), &moved.encode());
        }
        self.db.write(&batch)?;
        Ok(())
    }

    /// Deletes `key`; returns whether a live key was there. A collection's elements go with one range
    /// tombstone, so this is O(1) whatever its size.
    pub fn delete(&self, db: usize, key: &[u8]) -> Result<bool, KvError> {
        self.touched(db, key);
        let tree = self.tree(db);
        let Some(raw) = tree.get(&meta_key(key))? else {
            return Ok(false);
        };
        let entry = Entry::decode(raw)?;
        let live = entry.expire_at_ms == 0 || entry.expire_at_ms > self.now_ms();
        // An expired record is deleted too, so its space is reclaimed.
        let mut batch = WriteBatch::new();
        batch.delete(tree, &meta_key(key));
        if entry.kind != Kind::String {
            let prefix = sub_prefix(key, CollectionHeader::from_payload(&entry.payload)?.version);
            batch.delete_range(tree, &prefix, &prefix_end(&prefix));
        }
        self.db.write(&batch)?;
        Ok(live)
    }

    /// A fresh collection version.
    pub fn new_version(&self) -> u64 {
        self.next_version.fetch_add(1, Ordering::Relaxed)
    }

    /// The live collection of type `kind` at `key`: `Ok(Some((entry, header)))`, `Ok(None)` if missing,
    /// `Err(None)` if the key holds another type.
    pub fn get_collection(
        &self,
        db: usize,
        key: &[u8],
        kind: Kind,
    ) -> Result<Option<(Entry, CollectionHeader)>, Option<KvError>> {
        match self.get(db, key).map_err(Some)? {
            None => Ok(None),
            Some(e) if e.kind != kind => Err(None),
            Some(e) => {
                let h = CollectionHeader::from_payload(&e.payload).map_err(Some)?;
                Ok(Some((e, h)))
            }
        }
    }

    /// Reads one element of a collection.
    pub fn get_element(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        element: &[u8],
    ) -> Result<Option<Bytes>, KvError> {
        let mut k = sub_prefix(key, version);
        k.extend_from_slice(element);
        Ok(self.tree(db).get(&k)?)
    }

    /// Every (element, value) of a collection, in element order.
    pub fn elements(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        let prefix = sub_prefix(key, version);
        let mut out = Vec::new();
        for item in self.tree(db).prefix(&prefix) {
            let (k, v) = item?;
            out.push((k.slice(prefix.len()..), v));
        }
        Ok(out)
    }

    /// Like [`Keyspace::write_collection`] for collections whose payload carries more than the common
    /// header (lists keep their head index): `entry` already holds the new payload; `range_deletes` are
    /// element-key ranges `[start, end)` to drop (relative to the collection's element prefix).
    #[allow(clippy::too_many_arguments)]
    pub fn write_collection_raw(
        &self,
        db: usize,
        key: &[u8],
        entry: &Entry,
        version: u64,
        size: u64,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
        range_deletes: &[(&[u8], &[u8])],
    ) -> Result<(), KvError> {
        self.touched(db, key);
        let tree = self.tree(db);
        let prefix = sub_prefix(key, version);
        let mut batch = WriteBatch::new();
        let join = |element: &[u8]| {
            let mut k = prefix.clone();
            k.extend_from_slice(element);
            k
        };
        for (start, end) in range_deletes {
            batch.delete_range(tree, &join(start), &join(end));
        }
        for element in deletes {
            batch.delete(tree, &join(element));
        }
        for (element, value) in puts {
            batch.put(tree, &join(element), value);
        }
        if size == 0 {
            batch.delete(tree, &meta_key(key));
            batch.delete_range(tree, &prefix, &prefix_end(&prefix));
        } else {
            batch.put(tree, &meta_key(key), &entry.encode());
        }
        self.db.write(&batch)?;
        Ok(())
    }

    /// Elements of a collection with element keys in `[start, end)`, in order, at most `limit`.
    pub fn element_range(
        &self,
        db: usize,
        key: &[u8],
        version: u64,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        let prefix = sub_prefix(key, version);
        let mut lo = prefix.clone();
        lo.extend_from_slice(start);
        let mut hi = prefix.clone();
        hi.extend_from_slice(end);
        let mut out = Vec::new();
        for item in self.tree(db).range(lo..hi).take(limit) {
            let (k, v) = item?;
            out.push((k.slice(prefix.len()..), v));
        }
        Ok(out)
    }

    /// Applies element puts and deletes and the new metadata record of a collection in one atomic batch;
    /// a collection left empty is deleted, as Redis does.
    pub fn write_collection(
        &self,
        db: usize,
        key: &[u8],
        entry: &Entry,
        header: CollectionHeader,
        puts: &[(&[u8], &[u8])],
        deletes: &[&[u8]],
    ) -> Result<(), KvError> {
        self.touched(db, key);
        let tree = self.tree(db);
        let prefix = sub_prefix(key, header.version);
        let mut batch = WriteBatch::new();
        let mut k = prefix.clone();
        for (element, value) in puts {
            k.truncate(prefix.len());
            k.extend_from_slice(element);
            batch.put(tree, &k, value);
        }
        for element in deletes {
            k.truncate(prefix.len());
            k.extend_from_slice(element);
            batch.delete(tree, &k);
        }
        if header.size == 0 {
            batch.delete(tree, &meta_key(key));
            batch.delete_range(tree, &prefix, &prefix_end(&prefix));
        } else {
            let updated = Entry {
                kind: entry.kind,
                expire_at_ms: entry.expire_at_ms,
                payload: header.to_payload(),
            };
            batch.put(tree, &meta_key(key), &updated.encode());
        }
        self.db.write(&batch)?;
        Ok(())
    }

    /// Removes every key of one database.
    pub fn flush_db(&self, db: usize) -> Result<(), KvError> {
        self.touched_all(Some(db));
        Ok(self.tree(db).clear()?)
    }

    /// Removes every key of every database, atomically.
    pub fn flush_all(&self) -> Result<(), KvError> {
        self.touched_all(None);
        let mut batch = WriteBatch::new();
        for tree in &self.trees {
            batch.clear_tree(tree);
        }
        self.db.write(&batch)?;
        Ok(())
    }

    /// One step of SCAN: visits up to `budget` records after `after` (from the start when `None`) and
    /// returns the live keys among them for which `keep(key, kind)` holds, plus the last key visited, or
    /// `None` when the database is exhausted.
    pub fn scan(
        &self,
        db: usize,
        after: Option<&[u8]>,
        budget: usize,
        mut keep: impl FnMut(&[u8], Kind) -> bool,
    ) -> Result<(Vec<Bytes>, Option<Bytes>), KvError> {
        use std::ops::Bound;
        let now = self.now_ms();
        let start = match after {
            Some(k) => Bound::Excluded(meta_key(k)),
            None => Bound::Included(vec![META_PREFIX]),
        };
        let end = Bound::Excluded(vec![META_PREFIX + 1]);
        let mut out = Vec::new();
        let mut last = None;
        let mut visited = 0;
        for item in self.tree(db).range::<Vec<u8>, _>((start, end)) {
            let (k, v) = item?;
            let entry = Entry::decode(v)?;
            let user_key = k.slice(1..);
            let live = entry.expire_at_ms == 0 || entry.expire_at_ms > now;
            if live && keep(&user_key, entry.kind) {
                out.push(user_key.clone());
            }
            visited += 1;
            if visited >= budget {
                last = Some(user_key);
                break;
            }
        }
        Ok((out, last))
    }

    /// The number of live keys of one database, and how many of them have a TTL.
    pub fn count(&self, db: usize) -> Result<(u64, u64), KvError> {
        let now = self.now_ms();
        let (mut keys, mut expires) = (0, 0);
        for item in self.tree(db).prefix(&[META_PREFIX]) {
            let (_k, v) = item?;
            let entry = Entry::decode(v)?;
            if entry.expire_at_ms == 0 {
                keys += 1;
            } else if entry.expire_at_ms > now {
                keys += 1;
                expires += 1;
            }
        }
        Ok((keys, expires))
    }

    /// Live keys of one database, in key order, for which `keep` holds (KEYS, DBSIZE, SCAN).
    pub fn keys(
        &self,
        db: usize,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<Bytes>, KvError> {
        let now = self.now_ms();
        let mut out = Vec::new();
        for item in self.tree(db).prefix(&[META_PREFIX]) {
            let (k, v) = item?;
            let entry = Entry::decode(v)?;
            if entry.expire_at_ms != 0 && entry.expire_at_ms <= now {
                continue;
            }
            let user_key = k.slice(1..);
            if keep(&user_key) {
                out.push(user_key);
            }
        }
        Ok(out)
    }
}
