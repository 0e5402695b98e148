//! Cache mode: `maxmemory`, the eviction policies, and the per-key access metadata behind them and
//! behind `OBJECT FREQ` / `OBJECT IDLETIME`.
//!
//! # What "used memory" means
//!
//! strata's data lives in its LSM storage engine, whose RAM is bounded by its own settings (memtables,
//! block cache) while the data set may be far larger than RAM. Deleting a key there writes a tombstone: the
//! allocator's count does not go down until a memtable is flushed, so evicting by allocator bytes would
//! keep evicting long after enough was freed and empty the cache. What `maxmemory` bounds instead is the
//! data set's *logical size*: every key is counted as an in-memory store would hold it (its name, its
//! value, and a fixed overhead per key and per collection element), plus the client-tracking table and the
//! clients' buffers (query buffers, including a request's arguments already parsed, and unsent replies and
//! pub/sub messages), as Redis's allocator count holds them. That is the figure INFO reports as
//! `used_memory` and eviction compares with `maxmemory`; the process's resident
//! size is `used_memory_rss`, and the allocator's own count (when the server injects it,
//! [`crate::KvConfig::allocated_bytes`]) is `allocator_allocated`.
//!
//! # The key table
//!
//! While cache mode is on (`maxmemory` set, or a policy other than `noeviction`), every key has an entry
//! here: its counted size, its deadline, its last access (milliseconds, for LRU and `OBJECT IDLETIME`)
//! and its LFU counter (Redis's 8-bit logarithmic counter with its minute-resolution decay time). Entries
//! are kept in sharded vectors with a hash index, so a random entry is one index away, as Redis samples its
//! dictionaries; keys with a deadline are also in a second sampled set, for the `volatile-*` policies.
//! Dispatch updates the table after each command: reads touch their keys' access data, writes measure
//! their keys again. Switching cache mode on starts a background scan that enters the keys stored before;
//! switching it off drops the table. Outside cache mode strata keeps nothing per key (the data set may be
//! larger than RAM), and `used_memory` counts no data.
//!
//! # Eviction
//!
//! Before each command, while the used memory is over `maxmemory`, keys are evicted as Redis does: with
//! `maxmemory-samples` random keys (from all keys, or from those with a TTL for `volatile-*`) feeding an
//! eviction pool of the 16 best candidates seen so far (idlest for LRU, least frequent for LFU, nearest
//! deadline for `volatile-ttl`), the best candidate goes; `*-random` takes a random key. Each eviction
//! deletes the key, counts `evicted_keys`, publishes the `evicted` keyspace event and invalidates the key
//! for client-side caching. When nothing can be evicted (`noeviction`, or no candidate left), commands
//! that may grow the data get `-OOM`. A background task does the same every 100 ms, so a lowered
//! `maxmemory` takes effect without traffic.
//!
//! # Client eviction
//!
//! With `maxmemory-clients` set (bytes, or a percentage of `maxmemory`), before each command and every
//! 100 ms the clients holding the most buffer bytes are closed until the clients' total is under it, as
//! Redis's `evictClients` does, except those with `CLIENT NO-EVICT on`. One difference remains: a client
//! that stops reading its replies is not read from either (its connection waits for the socket), so its
//! unsent replies stay bounded instead of growing with every command it keeps sending.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use strata_resp::Arg;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_resp::Frame;
use tokio_util::sync::CancellationToken;

use crate::keyspace::{CollectionHeader, Entry, Kind};
use crate::{Session, Shared};

/// Shards per database.
const SHARDS: usize = 16;
/// Candidates the eviction pool keeps (Redis's `EVPOOL_SIZE`).
const POOL_SIZE: usize = 16;
/// A new key's LFU counter (Redis's `LFU_INIT_VAL`), so it is not evicted before it had a chance.
pub const LFU_INIT: u8 = 5;
/// Bytes counted per key beyond its name and value (an in-memory store's entry, object and string
/// headers).
const KEY_OVERHEAD: u64 = 56;
/// Bytes counted per collection element beyond its data.
const ELEMENT_OVERHEAD: u64 = 16;
/// Element size assumed for a collection found by the background scan.
const SCANNED_ELEMENT_BYTES: u64 = 32;
/// Keys the background scan enters per batch.
const SCAN_BATCH: usize = 2000;
/// How often the background task checks the limit.
const TICK: Duration = Duration::from_millis(100);

/// What is kept of one key.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Counted bytes.
    size: u64,
    /// Average element bytes of a collection (0 for a string).
    element: u32,
    /// Deadline in Unix ms, 0 for none.
    expire_at_ms: u64,
    /// Last access, Unix ms.
    access_ms: u64,
    /// LFU counter.
    lfu: u8,
    /// Minutes (mod 2^16) of the LFU counter's last decrement.
    ldt: u16,
}

/// One shard of one database's keys.
#[derive(Debug, Default)]
struct Shard {
    index: HashMap<Bytes, usize>,
    slots: Vec<(Bytes, Meta)>,
    volatile_index: HashMap<Bytes, usize>,
    volatile: Vec<Bytes>,
}

impl Shard {
    fn get(&self, key: &[u8]) -> Option<&Meta> {
        self.index.get(key).map(|&i| &self.slots[i].1)
    }

    fn get_mut(&mut self, key: &[u8]) -> Option<&mut Meta> {
        let i = *self.index.get(key)?;
        Some(&mut self.slots[i].1)
    }

    /// Inserts or replaces; returns the previous entry.
    fn put(&mut self, key: &[u8], meta: Meta) -> Option<Meta> {
        let (stored, old) = match self.index.get(key) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.slots[i].1, meta);
                (self.slots[i].0.clone(), Some(old))
            }
            None => {
                let k = Bytes::copy_from_slice(key);
                self.index.insert(k.clone(), self.slots.len());
                self.slots.push((k.clone(), meta));
                (k, None)
            }
        };
        let was_volatile = old.is_some_and(|m| m.expire_at_ms != 0);
        match (was_volatile, meta.expire_at_ms != 0) {
            (false, true) => {
                self.volatile_index
                    .insert(stored.clone(), self.volatile.len());
                self.volatile.push(stored);
            }
            (true, false) => self.remove_volatile(key),
            _ => {}
        }
        old
    }

    fn remove(&mut self, key: &[u8]) -> Option<Meta> {
        let i = self.index.remove(key)?;
        let (_, meta) = self.slots.swap_remove(i);
        if let Some((moved, _)) = self.slots.get(i)
            && let Some(at) = self.index.get_mut(moved)
        {
            *at = i;
        }
        if meta.expire_at_ms != 0 {
            self.remove_volatile(key);
        }
        Some(meta)
    }

    fn remove_volatile(&mut self, key: &[u8]) {
        let Some(i) = self.volatile_index.remove(key) else {
            return;
        };
        self.volatile.swap_remove(i);
        if let Some(moved) = self.volatile.get(i)
            && let Some(at) = self.volatile_index.get_mut(moved)
        {
            *at = i;
        }
    }
}

/// One database's keys.
#[derive(Debug)]
struct DbTable {
    shards: Vec<Mutex<Shard>>,
    keys: AtomicUsize,
    volatile: AtomicUsize,
}

impl DbTable {
    fn new() -> Self {
        DbTable {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            keys: AtomicUsize::new(0),
            volatile: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        // FNV-1a: only spreads keys over shards.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in key {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        &self.shards[(h % SHARDS as u64) as usize]
    }
}

/// The policies, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    NoEviction,
    Lru { volatile: bool },
    Lfu { volatile: bool },
    Random { volatile: bool },
    Ttl,
}

impl Policy {
    fn parse(name: &str) -> Policy {
        match name {
            "allkeys-lru" => Policy::Lru { volatile: false },
            "volatile-lru" => Policy::Lru { volatile: true },
            "allkeys-lfu" => Policy::Lfu { volatile: false },
            "volatile-lfu" => Policy::Lfu { volatile: true },
            "allkeys-random" => Policy::Random { volatile: false },
            "volatile-random" => Policy::Random { volatile: true },
            "volatile-ttl" => Policy::Ttl,
            _ => Policy::NoEviction,
        }
    }

    fn volatile(self) -> bool {
        match self {
            Policy::Lru { volatile } | Policy::Lfu { volatile } | Policy::Random { volatile } => {
                volatile
            }
            Policy::Ttl => true,
            Policy::NoEviction => false,
        }
    }
}

/// An eviction pool entry: higher scores go first.
#[derive(Debug, Clone)]
struct Candidate {
    score: u64,
    db: usize,
    key: Bytes,
}

/// Cache mode's state.
#[derive(Debug)]
pub struct Eviction {
    active: AtomicBool,
    dbs: Vec<DbTable>,
    dataset: AtomicU64,
    evicted: AtomicU64,
    pool: Mutex<Vec<Candidate>>,
    rng: AtomicU64,
    /// `maxmemory-samples`.
    pub samples: AtomicUsize,
    /// `lfu-log-factor`.
    pub lfu_log_factor: AtomicU64,
    /// `lfu-decay-time` in minutes.
    pub lfu_decay_time: AtomicU64,
    /// Bumped on every switch of cache mode, so a running background scan knows it is stale.
    generation: AtomicU64,
    /// `maxmemory-clients` as configured: bytes, or minus a percentage of `maxmemory`; 0 for none.
    pub client_limit: std::sync::atomic::AtomicI64,
    /// Clients closed by client eviction (INFO's `evicted_clients`).
    pub evicted_clients: AtomicU64,
    /// Held while clients are evicted, so two connections over the limit at once do not each close a
    /// client for the same excess.
    client_eviction: Mutex<()>,
    /// Where the scan entering the keys stored before cache mode stands: its generation and its cursor
    /// (database, last key); `None` when there is nothing to scan.
    scan: Mutex<Option<(u64, ScanCursor)>>,
}

/// A database and the last key entered from it.
type ScanCursor = (usize, Option<Bytes>);

impl Eviction {
    /// State for `databases` databases, cache mode off.
    pub fn new(databases: usize) -> Self {
        Eviction {
            active: AtomicBool::new(false),
            dbs: (0..databases.max(1)).map(|_| DbTable::new()).collect(),
            dataset: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            pool: Mutex::new(Vec::with_capacity(POOL_SIZE + 1)),
            rng: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
            samples: AtomicUsize::new(5),
            lfu_log_factor: AtomicU64::new(10),
            lfu_decay_time: AtomicU64::new(1),
            generation: AtomicU64::new(0),
            client_limit: std::sync::atomic::AtomicI64::new(0),
            evicted_clients: AtomicU64::new(0),
            client_eviction: Mutex::new(()),
            scan: Mutex::new(None),
        }
    }

    /// Whether cache mode is on (one load: the command path's check).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Keys evicted since the start (INFO's `evicted_keys`).
    pub fn evicted_keys(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Zeroes `evicted_keys` and `evicted_clients` (CONFIG RESETSTAT).
    pub fn reset_stats(&self) {
        self.evicted.store(0, Ordering::Relaxed);
        self.evicted_clients.store(0, Ordering::Relaxed);
    }

    /// The counted bytes of the data set (0 outside cache mode).
    pub fn dataset_bytes(&self) -> u64 {
        self.dataset.load(Ordering::Relaxed)
    }

    /// Turns cache mode on or off to match `maxmemory` and the policy (after CONFIG SET).
    pub fn refresh(&self, sh: &Shared) {
        let want = sh.memory.limit() > 0 || sh.memory.policy() != "noeviction";
        if want == self.is_active() {
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.active.store(want, Ordering::SeqCst);
        if want {
            *self.scan.lock() = Some((generation, (0, None)));
            // A small data set is entered at once; the background task enters the rest.
            self.scan_step(sh);
        } else {
            *self.scan.lock() = None;
            self.clear(None);
        }
    }

    /// Whether the scan of keys stored before cache mode still has work.
    fn scanning(&self) -> bool {
        self.scan.lock().is_some()
    }

    /// One batch of the scan of keys stored before cache mode.
    fn scan_step(&self, sh: &Shared) {
        let Some((generation, at)) = self.scan.lock().take() else {
            return;
        };
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if let Some(next) = scan_batch(sh, at) {
            let mut scan = self.scan.lock();
            if scan.is_none() && self.generation.load(Ordering::SeqCst) == generation {
                *scan = Some((generation, next));
            }
        }
    }

    fn next_random(&self) -> u64 {
        // xorshift64 over a shared state; races only repeat a value.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    fn minutes(now_ms: u64) -> u16 {
        ((now_ms / 60_000) & 0xffff) as u16
    }

    /// The LFU counter after decay (Redis's `LFUDecrAndReturn`).
    fn decayed(&self, meta: &Meta, now_ms: u64) -> u8 {
        let decay = self.lfu_decay_time.load(Ordering::Relaxed);
        if decay == 0 {
            return meta.lfu;
        }
        let elapsed = u64::from(Self::minutes(now_ms).wrapping_sub(meta.ldt));
        let periods = elapsed / decay;
        u8::try_from(u64::from(meta.lfu).saturating_sub(periods)).unwrap_or(0)
    }

    /// One logarithmic increment (Redis's `LFULogIncr`): the higher the counter, the less likely.
    fn log_incr(&self, counter: u8) -> u8 {
        if counter == u8::MAX {
            return counter;
        }
        let r = (self.next_random() >> 11) as f64 / (1u64 << 53) as f64;
        let base = f64::from(counter.saturating_sub(LFU_INIT));
        let factor = self.lfu_log_factor.load(Ordering::Relaxed) as f64;
        if r < 1.0 / (base * factor + 1.0) {
            counter + 1
        } else {
            counter
        }
    }

    fn access(&self, meta: &mut Meta, now_ms: u64) {
        meta.access_ms = now_ms;
        let counter = self.decayed(meta, now_ms);
        meta.lfu = self.log_incr(counter);
        meta.ldt = Self::minutes(now_ms);
    }

    /// A read of `key`: its access time and frequency move.
    pub fn touch(&self, db: usize, key: &[u8], now_ms: u64) {
        let Some(t) = self.dbs.get(db) else { return };
        if let Some(meta) = t.shard(key).lock().get_mut(key) {
            self.access(meta, now_ms);
        }
    }

    /// `OBJECT IDLETIME` in seconds and `OBJECT FREQ` of a key: (idle, freq), or a just-used key's values
    /// when it is not in the table.
    pub fn object_info(&self, db: usize, key: &[u8], now_ms: u64) -> (u64, u8) {
        let Some(t) = self.dbs.get(db) else {
            return (0, LFU_INIT);
        };
        match t.shard(key).lock().get(key) {
            Some(m) => (
                now_ms.saturating_sub(m.access_ms) / 1000,
                self.decayed(m, now_ms),
            ),
            None => (0, LFU_INIT),
        }
    }

    /// Sets a key's access data (RESTORE IDLETIME / FREQ).
    pub fn set_access(
        &self,
        db: usize,
        key: &[u8],
        idle_s: Option<u64>,
        freq: Option<u8>,
        now_ms: u64,
    ) {
        let Some(t) = self.dbs.get(db) else { return };
        if let Some(m) = t.shard(key).lock().get_mut(key) {
            if let Some(idle) = idle_s {
                m.access_ms = now_ms.saturating_sub(idle.saturating_mul(1000));
            }
            if let Some(f) = freq {
                m.lfu = f;
                m.ldt = Self::minutes(now_ms);
            }
        }
    }

    /// Enters or updates `key` with its current record (`None`: it is gone). `grown_by` is the bytes a
    /// write added per new collection element, when known; `touch` moves its access data.
    fn record(
        &self,
        db: usize,
        key: &[u8],
        entry: Option<&Entry>,
        element_hint: Option<u64>,
        now_ms: u64,
        insert_only: bool,
    ) {
        let Some(t) = self.dbs.get(db) else { return };
        let mut shard = t.shard(key).lock();
        let Some(entry) = entry else {
            if let Some(old) = shard.remove(key) {
                self.forgot(t, &old);
            }
            return;
        };
        let old = shard.get(key).copied();
        if insert_only && old.is_some() {
            return;
        }
        let (size, element) = match entry.kind {
            Kind::String => (entry.payload.len() as u64, 0),
            _ => {
                let count = CollectionHeader::from_payload(&entry.payload).map_or(0, |h| h.size);
                let old_count = old.map_or(0, |m| {
                    if m.element == 0 {
                        0
                    } else {
                        m.size.saturating_sub(key.len() as u64 + KEY_OVERHEAD)
                            / (u64::from(m.element) + ELEMENT_OVERHEAD)
                    }
                });
                let old_element = old.map_or(0, |m| u64::from(m.element));
                let element = match element_hint {
                    Some(hint) if count > old_count => {
                        (old_element * old_count + hint * (count - old_count)) / count.max(1)
                    }
                    _ if old_element > 0 => old_element,
                    _ => element_hint.unwrap_or(SCANNED_ELEMENT_BYTES),
                };
                let element = element.max(1);
                (count * (element + ELEMENT_OVERHEAD), element)
            }
        };
        let size = size + key.len() as u64 + KEY_OVERHEAD;
        let mut meta = old.unwrap_or(Meta {
            size: 0,
            element: 0,
            expire_at_ms: 0,
            access_ms: now_ms,
            lfu: LFU_INIT,
            ldt: Self::minutes(now_ms),
        });
        if old.is_some() && !insert_only {
            self.access(&mut meta, now_ms);
        }
        meta.size = size;
        meta.element = u32::try_from(element).unwrap_or(u32::MAX);
        meta.expire_at_ms = entry.expire_at_ms;
        // Accounted under the shard's lock, so the total always equals the sum of the entries.
        let replaced = shard.put(key, meta);
        match replaced {
            Some(old) => {
                self.sub_dataset(old.size);
                if old.expire_at_ms != 0 && meta.expire_at_ms == 0 {
                    t.volatile.fetch_sub(1, Ordering::Relaxed);
                } else if old.expire_at_ms == 0 && meta.expire_at_ms != 0 {
                    t.volatile.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                t.keys.fetch_add(1, Ordering::Relaxed);
                if meta.expire_at_ms != 0 {
                    t.volatile.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.dataset.fetch_add(size, Ordering::Relaxed);
        drop(shard);
    }

    fn sub_dataset(&self, bytes: u64) {
        let _ = self
            .dataset
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(bytes))
            });
    }

    fn forgot(&self, t: &DbTable, old: &Meta) {
        t.keys.fetch_sub(1, Ordering::Relaxed);
        if old.expire_at_ms != 0 {
            t.volatile.fetch_sub(1, Ordering::Relaxed);
        }
        self.sub_dataset(old.size);
    }

    /// A key is gone (expired, evicted, deleted outside a command).
    pub fn forget(&self, db: usize, key: &[u8]) {
        if !self.is_active() {
            return;
        }
        self.record(db, key, None, None, 0, false);
    }

    /// Measures `key` of `db` again from storage (after a write).
    pub fn measure(&self, sh: &Shared, db: usize, key: &[u8], element_hint: Option<u64>) {
        match sh.keyspace.get(db, key) {
            Ok(entry) => self.record(
                db,
                key,
                entry.as_ref(),
                element_hint,
                sh.keyspace.now_ms(),
                false,
            ),
            Err(e) => tracing::debug!(error = %e, "measuring a key for maxmemory"),
        }
    }

    /// Empties one database's table, or all of them (FLUSHDB, FLUSHALL, leaving cache mode).
    pub fn clear(&self, db: Option<usize>) {
        for (i, t) in self.dbs.iter().enumerate() {
            if db.is_some_and(|d| d != i) {
                continue;
            }
            let mut freed = 0;
            for s in &t.shards {
                let mut s = s.lock();
                freed += s.slots.iter().map(|(_, m)| m.size).sum::<u64>();
                *s = Shard::default();
            }
            t.keys.store(0, Ordering::Relaxed);
            t.volatile.store(0, Ordering::Relaxed);
            let _ = self
                .dataset
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                    Some(d.saturating_sub(freed))
                });
        }
        self.pool.lock().clear();
    }

    /// SWAPDB: the two databases' tables trade places.
    pub fn swap(&self, a: usize, b: usize) {
        let (Some(ta), Some(tb)) = (self.dbs.get(a), self.dbs.get(b)) else {
            return;
        };
        if a == b {
            return;
        }
        for (sa, sb) in ta.shards.iter().zip(&tb.shards) {
            std::mem::swap(&mut *sa.lock(), &mut *sb.lock());
        }
        let swap_count = |x: &AtomicUsize, y: &AtomicUsize| {
            let vx = x.load(Ordering::Relaxed);
            x.store(y.swap(vx, Ordering::Relaxed), Ordering::Relaxed);
        };
        swap_count(&ta.keys, &tb.keys);
        swap_count(&ta.volatile, &tb.volatile);
        self.pool.lock().clear();
    }

    /// A random key of the table (among those with a TTL when `volatile`), with its data.
    fn sample(&self, volatile: bool) -> Option<(usize, Bytes, Meta)> {
        let count = |t: &DbTable| {
            if volatile {
                t.volatile.load(Ordering::Relaxed)
            } else {
                t.keys.load(Ordering::Relaxed)
            }
        };
        let total: usize = self.dbs.iter().map(count).sum();
        if total == 0 {
            return None;
        }
        let mut pick = (self.next_random() % total as u64) as usize;
        let db = self.dbs.iter().position(|t| {
            let n = count(t);
            if pick < n {
                true
            } else {
                pick -= n;
                false
            }
        })?;
        let t = &self.dbs[db];
        let start = (self.next_random() % SHARDS as u64) as usize;
        for i in 0..SHARDS {
            let shard = t.shards[(start + i) % SHARDS].lock();
            let n = if volatile {
                shard.volatile.len()
            } else {
                shard.slots.len()
            };
            if n == 0 {
                continue;
            }
            let at = (self.next_random() % n as u64) as usize;
            let key = if volatile {
                shard.volatile[at].clone()
            } else {
                shard.slots[at].0.clone()
            };
            let meta = *shard.get(&key)?;
            return Some((db, key, meta));
        }
        None
    }

    /// The next key to evict under `policy`, or `None` if there is none.
    fn pick(&self, policy: Policy, now_ms: u64) -> Option<(usize, Bytes)> {
        if let Policy::Random { volatile } = policy {
            return self.sample(volatile).map(|(db, key, _)| (db, key));
        }
        let volatile = policy.volatile();
        let samples = self.samples.load(Ordering::Relaxed).max(1);
        let mut pool = self.pool.lock();
        for _ in 0..samples {
            let Some((db, key, meta)) = self.sample(volatile) else {
                break;
            };
            let score = match policy {
                Policy::Lru { .. } => now_ms.saturating_sub(meta.access_ms),
                Policy::Lfu { .. } => 255 - u64::from(self.decayed(&meta, now_ms)),
                _ => u64::MAX - meta.expire_at_ms,
            };
            if pool.iter().any(|c| c.db == db && c.key == key) {
                continue;
            }
            if pool.len() >= POOL_SIZE && pool.first().is_some_and(|c| c.score >= score) {
                continue;
            }
            let at = pool.partition_point(|c| c.score < score);
            pool.insert(at, Candidate { score, db, key });
            if pool.len() > POOL_SIZE {
                pool.remove(0);
            }
        }
        // The best candidate still in the table (a pool entry may have been deleted meanwhile).
        while let Some(c) = pool.pop() {
            let present = self.dbs[c.db]
                .shard(&c.key)
                .lock()
                .get(&c.key)
                .is_some_and(|m| !volatile || m.expire_at_ms != 0);
            if present {
                return Some((c.db, c.key));
            }
        }
        None
    }
}

/// The used memory `maxmemory` is compared with (see the module documentation): the data set, the
/// tracking table and the clients' buffers, which Redis's `used_memory` holds too.
pub fn used_memory(sh: &Shared) -> u64 {
    sh.evict.dataset_bytes() + sh.tracking.memory() + client_memory(sh)
}

/// Bytes in the clients' query buffers and unsent output.
pub fn client_memory(sh: &Shared) -> u64 {
    sh.client_memory.buffers()
}

/// The memory of all clients as Redis counts it (`mem_clients_normal`, what `maxmemory-clients`
/// bounds): their buffers and each one's reply buffer.
pub fn clients_total_memory(sh: &Shared) -> u64 {
    sh.client_memory.total()
}

/// `maxmemory-clients` in bytes (a percentage applies to `maxmemory`); 0 when client eviction is off.
pub fn client_memory_limit(sh: &Shared) -> u64 {
    match sh.evict.client_limit.load(Ordering::Relaxed) {
        0 => 0,
        bytes if bytes > 0 => bytes as u64,
        percent => {
            let max = sh.memory.limit();
            (u128::from(max) * u128::from(percent.unsigned_abs()) / 100) as u64
        }
    }
}

/// Client eviction, as Redis's `evictClients` does before a command: while the clients' memory (each
/// one's `tot-mem`: buffers and reply buffer) passes `maxmemory-clients`, the client holding the most is
/// closed (never one with `CLIENT NO-EVICT on`) and counted in `evicted_clients`. Its memory leaves the
/// count at once, as Redis frees the client there and then (the connection ends a moment later); so
/// does that of clients already closing.
pub fn evict_clients(sh: &Shared) {
    let limit = client_memory_limit(sh);
    if limit == 0 {
        return;
    }
    if clients_total_memory(sh) <= limit {
        return;
    }
    let _evicting = sh.evict.client_eviction.lock();
    // Measured again under the lock: another connection may have just evicted for this excess.
    let mut used = clients_total_memory(sh);
    if used <= limit {
        return;
    }
    let mut candidates: Vec<(usize, Arc<crate::clients::ClientHandle>)> = Vec::new();
    for c in sh.clients.all() {
        let bytes = c.total_memory();
        if c.is_killed() {
            // Closing: its memory goes when its connection ends.
            used = used.saturating_sub(c.release_memory() as u64);
        } else if !c.has_flag(crate::clients::flag::NO_EVICT) {
            candidates.push((bytes, c));
        }
    }
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (bytes, c) in candidates {
        if used <= limit {
            break;
        }
        tracing::info!(
            client = c.id,
            bytes,
            "evicting a client: clients' memory over maxmemory-clients"
        );
        c.close();
        c.release_memory();
        sh.evict.evicted_clients.fetch_add(1, Ordering::Relaxed);
        used = used.saturating_sub(bytes as u64);
    }
}

/// Closes the clients whose unsent output is past their class's limits (`client-output-buffer-limit`:
/// pub/sub for a subscriber, normal otherwise), as Redis's `clientsCron` does: the limits are also
/// checked as output is added, but a soft limit's time can run out while nothing is added.
pub fn check_output_limits(sh: &Shared) {
    for c in sh.clients.all() {
        let omem = c.omem.load(Ordering::Relaxed);
        if omem == 0 || c.is_killed() {
            continue;
        }
        let limits = if c.is_pubsub() {
            &sh.pubsub.limits
        } else {
            &sh.normal_limits
        };
        if limits.exceeded(&c, omem as u64) {
            tracing::info!(
                client = c.id,
                omem,
                "closing client for overcoming of output buffer limits"
            );
            sh.pubsub.disconnections.fetch_add(1, Ordering::Relaxed);
            c.close();
        }
    }
}

/// What [`make_room`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Within the limit (or no limit).
    Ok,
    /// Still over the limit after the time allowed; eviction goes on in the background.
    Running,
    /// Over the limit with nothing to evict.
    Full,
}

/// Most time one call of [`make_room`] spends evicting.
const EVICTION_BUDGET: Duration = Duration::from_millis(5);

/// Evicts keys while the used memory is over `maxmemory`, as Redis's `performEvictions` does before a
/// command. `own` (the running client's id and its early replies) receives the invalidations of evicted
/// keys that client tracks, so they precede its reply.
pub fn make_room(sh: &Shared, mut own: Option<(u64, &mut Vec<Frame>)>) -> Room {
    let limit = sh.memory.limit();
    if limit == 0 || used_memory(sh) <= limit {
        return Room::Ok;
    }
    let policy = Policy::parse(sh.memory.policy());
    if policy == Policy::NoEviction || !sh.evict.is_active() {
        return Room::Full;
    }
    let _shared = sh.exec_lock.read();
    let start = Instant::now();
    let flags = sh.notify.flags();
    let mut evicted_any = false;
    let room = loop {
        if used_memory(sh) <= limit {
            break Room::Ok;
        }
        if start.elapsed() > EVICTION_BUDGET {
            break Room::Running;
        }
        let now = sh.keyspace.now_ms();
        let Some((db, key)) = sh.evict.pick(policy, now) else {
            break Room::Full;
        };
        let live = {
            let _guard = sh.keyspace.lock(db, &key);
            match sh.keyspace.delete(db, &key) {
                Ok(live) => live,
                Err(e) => {
                    tracing::warn!(error = %e, "evicting a key failed");
                    break Room::Full;
                }
            }
        };
        sh.evict.forget(db, &key);
        if live {
            evicted_any = true;
            sh.evict.evicted.fetch_add(1, Ordering::Relaxed);
            if flags & crate::notify::EVICTED != 0 {
                crate::notify::publish(sh, flags, db, &key, "evicted");
            }
            let own = own.as_mut().map(|(id, frames)| (*id, &mut **frames));
            sh.tracking.invalidate(sh, &key, None, own);
        }
    };
    if evicted_any {
        sh.tracking.flush_broadcasts(sh);
    }
    room
}

/// After a command ran: reads touch their keys; writes measure them again; FLUSHDB/FLUSHALL empty the
/// table.
pub fn after_command(
    sh: &Shared,
    session: &Session,
    spec: &crate::cmd::CommandSpec,
    args: &[Arg],
    keys: &[usize],
    reply: &Frame,
) {
    let ev = &sh.evict;
    if !ev.is_active() {
        return;
    }
    let ok = !matches!(reply, Frame::Error(_));
    match spec.name {
        "flushall" if ok => return ev.clear(None),
        "flushdb" if ok => return ev.clear(Some(session.db)),
        _ => {}
    }
    let db = session.db;
    if spec.flags.contains(&"write") {
        // The bytes a collection write brings per element: its arguments after the key, on average.
        let hint = (args.len() > 2).then(|| {
            let total: usize = args[2..].iter().map(|a| a.len()).sum();
            (total / (args.len() - 2)).max(1) as u64
        });
        for &i in keys {
            if let Some(key) = args.get(i) {
                ev.measure(sh, db, key, hint);
            }
        }
        // Commands that write a key of another database.
        match spec.name {
            "move" => {
                if let (Some(key), Some(to)) = (args.get(1), args.get(2).and_then(|a| parse_db(a)))
                {
                    ev.measure(sh, to, key, None);
                }
            }
            "copy" => {
                let to = args
                    .iter()
                    .position(|a| a.eq_ignore_ascii_case(b"db"))
                    .and_then(|i| args.get(i + 1))
                    .and_then(|a| parse_db(a));
                if let (Some(key), Some(to)) = (args.get(2), to) {
                    ev.measure(sh, to, key, None);
                }
            }
            "restore" if ok => {
                // RESTORE ... [IDLETIME seconds] [FREQ frequency] sets the access data it carries.
                let value_after = |name: &[u8]| {
                    args.iter()
                        .position(|a| a.eq_ignore_ascii_case(name))
                        .and_then(|i| args.get(i + 1))
                        .and_then(|a| std::str::from_utf8(a).ok()?.parse::<u64>().ok())
                };
                let freq = value_after(b"freq").and_then(|f| u8::try_from(f).ok());
                if let Some(key) = args.get(1) {
                    ev.set_access(
                        db,
                        key,
                        value_after(b"idletime"),
                        freq,
                        sh.keyspace.now_ms(),
                    );
                }
            }
            _ => {}
        }
        return;
    }
    let no_touch = matches!(
        spec.name,
        "object"
            | "type"
            | "ttl"
            | "pttl"
            | "exists"
            | "expiretime"
            | "pexpiretime"
            | "memory"
            | "dump"
            | "scan"
    ) || (spec.name != "touch"
        && session.handle.has_flag(crate::clients::flag::NO_TOUCH));
    if no_touch {
        return;
    }
    let now = sh.keyspace.now_ms();
    for &i in keys {
        if let Some(key) = args.get(i) {
            ev.touch(db, key, now);
        }
    }
}

fn parse_db(arg: &[u8]) -> Option<usize> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Enters up to [`SCAN_BATCH`] stored keys into the table, continuing after `cursor` (db, last key);
/// returns where to continue, or `None` when every database was visited.
fn scan_batch(sh: &Shared, cursor: ScanCursor) -> Option<ScanCursor> {
    let (mut db, mut after) = cursor;
    let mut budget = SCAN_BATCH;
    while db < sh.keyspace.databases() && budget > 0 {
        let (keys, last) = match sh.keyspace.scan(db, after.as_deref(), budget, |_, _| true) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "scanning keys for maxmemory; giving up");
                return None;
            }
        };
        let now = sh.keyspace.now_ms();
        for key in &keys {
            if let Ok(entry) = sh.keyspace.get(db, key) {
                sh.evict.record(db, key, entry.as_ref(), None, now, true);
            }
        }
        if let Some(last) = last {
            // The budget ran out inside this database.
            return Some((db, Some(last)));
        }
        budget = budget.saturating_sub(keys.len());
        db += 1;
        after = None;
    }
    (db < sh.keyspace.databases()).then_some((db, after))
}

/// The background task: enters the keys stored before cache mode was switched on, and evicts every
/// 100 ms while over the limit (so a lowered `maxmemory` acts without traffic).
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        while shared.evict.scanning() && !shutdown.is_cancelled() {
            let sh = shared.clone();
            if tokio::task::spawn_blocking(move || sh.evict.scan_step(&sh))
                .await
                .is_err()
            {
                tracing::error!("the maxmemory key scan panicked");
                break;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        evict_clients(&shared);
        check_output_limits(&shared);
        if shared.evict.is_active() && shared.memory.limit() > 0 {
            let sh = shared.clone();
            let _ = tokio::task::spawn_blocking(move || make_room(&sh, None)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64, expire_at_ms: u64) -> Meta {
        Meta {
            size,
            element: 0,
            expire_at_ms,
            access_ms: 0,
            lfu: LFU_INIT,
            ldt: 0,
        }
    }

    /// Every index entry points at its slot, and the volatile set holds exactly the keys with a deadline.
    fn check(shard: &Shard) {
        assert_eq!(shard.index.len(), shard.slots.len());
        for (i, (k, m)) in shard.slots.iter().enumerate() {
            assert_eq!(shard.index.get(k), Some(&i));
            assert_eq!(shard.volatile_index.contains_key(k), m.expire_at_ms != 0);
        }
        assert_eq!(shard.volatile_index.len(), shard.volatile.len());
        for (i, k) in shard.volatile.iter().enumerate() {
            assert_eq!(shard.volatile_index.get(k), Some(&i));
        }
    }

    #[test]
    fn shard_indexes_stay_consistent_through_swap_removes() {
        let mut shard = Shard::default();
        for i in 0..50u64 {
            shard.put(
                format!("k{i}").as_bytes(),
                meta(i, if i % 3 == 0 { 100 + i } else { 0 }),
            );
        }
        check(&shard);
        for i in (0..50u64).step_by(4) {
            assert_eq!(
                shard.remove(format!("k{i}").as_bytes()).map(|m| m.size),
                Some(i)
            );
            check(&shard);
        }
        // A deadline added and removed moves the key in and out of the volatile set.
        shard.put(b"k1", meta(1, 5));
        check(&shard);
        shard.put(b"k3", meta(3, 0));
        check(&shard);
        assert!(shard.remove(b"missing").is_none());
        assert_eq!(shard.slots.len(), 50 - 13);
    }

    #[test]
    fn the_lfu_counter_grows_logarithmically_and_decays_per_period() {
        let ev = Eviction::new(1);
        let mut m = meta(0, 0);
        let now = 10 * 60_000;
        m.ldt = Eviction::minutes(now);
        for _ in 0..1000 {
            ev.access(&mut m, now);
        }
        // With lfu-log-factor 10, a thousand hits reach about 18 (Redis's table: 100 hits ~ 10,
        // 1000 ~ 18).
        assert!((12..=25).contains(&m.lfu), "{}", m.lfu);
        let counter = m.lfu;
        assert_eq!(ev.decayed(&m, now + 5 * 60_000), counter - 5);
        ev.lfu_decay_time.store(0, Ordering::Relaxed);
        assert_eq!(ev.decayed(&m, now + 5 * 60_000), counter);
    }

    #[test]
    fn policies_parse_from_redis_names() {
        assert_eq!(Policy::parse("volatile-ttl"), Policy::Ttl);
        assert!(Policy::parse("volatile-lfu").volatile());
        assert!(!Policy::parse("allkeys-random").volatile());
        assert_eq!(Policy::parse("noeviction"), Policy::NoEviction);
    }
}
