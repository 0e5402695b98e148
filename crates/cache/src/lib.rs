//! strata-cache: a generic, sharded, thread-safe in-memory cache.
//!
//! `Cache<K, V>` maps keys to cloned values under a bounded *weighted* capacity (every entry weighs 1
//! unless a weigher says otherwise), with an optional time to live per entry, W-TinyLFU admission and
//! eviction, single-flight loading ([`Cache::get_or_insert_with`] computes a missing value once however
//! many threads ask for it at the same moment) and cheap statistics. strata's storage engine uses it as
//! its block cache and the key-value service as its hot-object cache; it depends on no other strata crate.
//!
//! ```
//! use strata_cache::Cache;
//!
//! let cache: Cache<String, Vec<u8>> = Cache::builder()
//!     .max_capacity(1 << 20) // one MiB of values…
//!     .weigher(|_k, v: &Vec<u8>| v.len().try_into().unwrap_or(u32::MAX)) // …counted in bytes
//!     .build();
//! cache.insert("greeting".to_owned(), b"hello".to_vec());
//! assert_eq!(cache.get("greeting").as_deref(), Some(&b"hello"[..]));
//!
//! let v = cache.get_or_insert_with("answer".to_owned(), || b"42".to_vec());
//! assert_eq!(v, b"42");
//! assert_eq!(cache.stats().hits, 1);
//! ```
//!
//! # What it is not, and its limits
//!
//! * Values are returned by clone: wrap large values in `Arc` (or use `bytes::Bytes`) so a hit is a
//!   reference-count increment, not a copy.
//! * The capacity is split evenly across shards, so one entry may weigh at most `max_capacity / shards`;
//!   a heavier entry is not stored ([`Cache::try_insert`] reports it). Eviction is per shard: the cache as a
//!   whole approximates, not exactly implements, the policy.
//! * Expired entries are never returned, but their memory is reclaimed lazily: when read, when met by the
//!   eviction policy, and by a sweep that examines a few slots on every insert. A cache that only expires and
//!   never inserts keeps the memory until [`Cache::purge_expired`] is called.
//! * A loader passed to `get_or_insert_with` runs on the calling thread while other callers for the same key
//!   block; a loader that never returns blocks them forever. A failing or panicking loader releases them
//!   (one of them then loads in its place).
//! * No eviction listener, no async API, no refresh-ahead. At most about four billion entries per shard.
//!
//! # Design: why W-TinyLFU
//!
//! A cache earns its keep on *skewed* traffic (a few keys take most requests) that is periodically
//! *polluted* by one-off accesses (a scan, a batch job, a crawler). LRU handles skew but is flushed by every
//! scan. S3-FIFO resists scans cheaply, but it judges a newcomer only by whether it is re-read during its
//! short stay in the small queue, so on Zipf traffic with a small cache it admits many lukewarm keys. TinyLFU
//! compares a newcomer with the entry it would replace using a compact frequency history (a count-min
//! sketch of 4-bit counters, halved periodically so that it follows recent popularity, behind a
//! *doorkeeper* Bloom filter that absorbs each key's first access so one-off keys never touch the
//! counters), which approximates
//! LFU, the optimal policy for Zipf traffic, and turns scans away at the door: a key seen once cannot beat
//! an entry seen twice. A 1% *window* in front of the filter lets bursts of a new key build frequency first;
//! the main space is a segmented LRU (probation / protected) as in Caffeine. One departure from Caffeine:
//! while a shard is full, a key seen for the first time (since the sketch last halved) duels the main
//! space's victim at once rather than after its stay in the window, and nearly always loses, so it is not
//! stored; its next access finds it known and lets it into the window. That keeps the insert of a one-hit
//! wonder, most inserts of a skewed trace, down to a table probe and one sketch word.
//!
//! The speed side comes from the read path: a hit takes the shard's read lock, looks the key up, updates
//! one byte in the entry it has just loaded (a "referenced" flag and a saturating count of reads), and
//! clones the value — no allocation, no list surgery and no write to shared structures (a hot entry's byte
//! is already saturated, so even that store is skipped). The pending read counts are folded into the
//! sketch, and the lists reordered CLOCK-style, by the next writer that looks at the entry (see
//! `policy.rs`). An earlier version bumped the sketch on every read; profiling showed that random cache
//! line and its atomic writes cost more than the rest of a hit. Hit and miss counters are striped per
//! thread so they never become the shared hot spot of the read path.

mod clock;
mod flight;
mod policy;
mod sketch;
mod stats;

use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use hashbrown::DefaultHashBuilder;
use parking_lot::RwLock;

pub use clock::{Clock, ManualClock, SystemClock};
pub use stats::CacheStats;

use flight::{Flight, Flights, LeaderGuard};
use policy::{InsertOutcome, LazyNow, Lookup, NEVER, Policy};
use stats::LookupCounters;

/// Odd multiplier (SplitMix64's) that mixes every bit of a hash into the bits the shard is read from; the
/// sketch mixes with other constants, so a shard's keys still spread over its whole sketch.
const SHARD_MIX: u64 = 0xBF58_476D_1CE4_E5B9;
/// Most shards a cache may have (the shard index is read from ten bits of the mixed hash).
const MAX_SHARDS: usize = 1024;
/// Shards per available core when the builder is not told a shard count: enough that two threads rarely
/// meet on one lock.
const SHARDS_PER_CORE: usize = 4;
/// A shard gets at least this much capacity when the shard count is chosen automatically; fewer, larger
/// shards keep per-shard eviction close to what one global policy would do.
const MIN_AUTO_SHARD_CAPACITY: u64 = 256;

/// Errors of the cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The entry weighs more than one shard can hold, so it was not stored.
    #[error("entry weighs {weight}, more than the {max_weight} one shard can hold")]
    TooHeavy {
        /// What the weigher said the entry weighs.
        weight: u32,
        /// The capacity of the shard the key maps to.
        max_weight: u64,
    },
}

/// Computes an entry's weight.
type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// One shard, on its own cache lines so neighbouring shards' locks do not share a line.
#[repr(align(128))]
struct Shard<K, V> {
    policy: RwLock<Policy<K, V>>,
    flights: Flights<K, V>,
}

/// A sharded, thread-safe, weighted cache with W-TinyLFU eviction and per-entry TTL. See the crate docs.
pub struct Cache<K, V> {
    shards: Box<[Shard<K, V>]>,
    shard_mask: usize,
    hasher: DefaultHashBuilder,
    weigher: Option<Weigher<K, V>>,
    default_ttl: Option<Duration>,
    clock: Arc<dyn Clock>,
    lookups: LookupCounters,
    max_capacity: u64,
}

impl<K, V> fmt::Debug for Cache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("max_capacity", &self.max_capacity)
            .field("shards", &self.shards.len())
            .field("default_ttl", &self.default_ttl)
            .finish_non_exhaustive()
    }
}

/// Configures and builds a [`Cache`]; from [`Cache::builder`].
pub struct CacheBuilder<K, V> {
    max_capacity: u64,
    weigher: Option<Weigher<K, V>>,
    shards: Option<usize>,
    default_ttl: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
}

impl<K, V> fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("shards", &self.shards)
            .field("default_ttl", &self.default_ttl)
            .finish_non_exhaustive()
    }
}

impl<K, V> CacheBuilder<K, V>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
{
    /// Largest total weight the cache holds (the number of entries, with the default weight of 1).
    pub fn max_capacity(mut self, max_capacity: u64) -> Self {
        self.max_capacity = max_capacity;
        self
    }

    /// How much an entry weighs against the capacity (for example its size in bytes). Called once per
    /// insert; a weight of 0 counts as 1.
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Number of shards (rounded up to a power of two, at most 1024, at most the capacity). Default: four
    /// per core, fewer for small capacities.
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// Time to live of entries inserted without an explicit one. Default: none (entries live until evicted).
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// The clock TTLs are measured with. Default: [`SystemClock`]; tests pass a [`ManualClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Cache<K, V> {
        let capacity = self.max_capacity;
        let shard_count = match self.shards {
            Some(n) => n,
            None => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let by_capacity =
                    usize::try_from(capacity / MIN_AUTO_SHARD_CAPACITY).unwrap_or(MAX_SHARDS);
                (cores * SHARDS_PER_CORE).min(by_capacity)
            }
        };
        // Every shard must be able to hold at least one entry.
        let cap_bound = usize::try_from(capacity).unwrap_or(MAX_SHARDS);
        let mut shard_count = shard_count.clamp(1, MAX_SHARDS).next_power_of_two();
        while shard_count > 1 && shard_count > cap_bound {
            shard_count /= 2;
        }
        let base = capacity / shard_count as u64;
        let remainder = capacity % shard_count as u64;
        let shards: Box<[Shard<K, V>]> = (0..shard_count as u64)
            .map(|i| Shard {
                policy: RwLock::new(Policy::new(base + u64::from(i < remainder))),
                flights: Flights::default(),
            })
            .collect();
        Cache {
            shards,
            shard_mask: shard_count - 1,
            hasher: DefaultHashBuilder::default(),
            weigher: self.weigher,
            default_ttl: self.default_ttl,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            lookups: LookupCounters::new(),
            max_capacity: capacity,
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
{
    /// A cache of at most `max_capacity` entries, with default settings.
    pub fn new(max_capacity: u64) -> Self {
        Self::builder().max_capacity(max_capacity).build()
    }

    /// A builder, with capacity 0 until [`CacheBuilder::max_capacity`] is set.
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder {
            max_capacity: 0,
            weigher: None,
            shards: None,
            default_ttl: None,
            clock: None,
        }
    }

    #[inline]
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        // hashbrown uses the hash's lowest bits for the bucket and the top seven as a tag; the shard comes
        // from the middle of the hash times an odd constant, so it is independent of both. Not the hash's own
        // middle bits: the default hasher (foldhash's fast variant) guarantees quality only where hashbrown
        // looks, and for runs of small integer keys its bits 32.. can leave a shard all but empty.
        &self.shards[(hash.wrapping_mul(SHARD_MIX) >> 40) as usize & self.shard_mask]
    }

    /// The value for `key`, if present and not expired. Counts a hit or a miss.
    // Always inlined (like the lookup below): the hit path is a few dozen instructions, and a call costs it
    // a prologue and epilogue that save and restore half the registers, which LLVM's heuristics sometimes
    // choose to pay when the caller's loop is large.
    #[inline(always)]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let found = self.lookup(hash, key);
        match found {
            Some(_) => self.lookups.hit(),
            None => self.lookups.miss(),
        }
        found
    }

    /// Looks `key` up, recording the access for the policy but not in the hit/miss counters.
    #[inline(always)]
    fn lookup<Q>(&self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        {
            let policy = self.shard(hash).policy.read();
            match policy.read(hash, key, &self.clock) {
                Lookup::Live(v) => return Some(v.clone()),
                Lookup::Absent => return None,
                Lookup::Expired => {}
            }
        }
        // Only after the read lock is released: taking the write lock under it would deadlock.
        self.remove_expired(hash, key);
        None
    }

    /// Removes `key` if it has expired: the first reader to notice does it, so the memory goes back now.
    /// Out of line so that the hit path stays small enough to inline into callers.
    #[cold]
    #[inline(never)]
    fn remove_expired<Q>(&self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut now = LazyNow::new(&*self.clock);
        self.shard(hash)
            .policy
            .write()
            .remove_if_expired(hash, key, &mut now);
    }

    /// Whether a live entry for `key` exists. Does not count as an access.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut now = LazyNow::new(&*self.clock);
        let policy = self.shard(hash).policy.read();
        matches!(policy.get(hash, key, false, &mut now), Lookup::Live(_))
    }

    /// Stores `key → value` with the default TTL, replacing any old value. An entry too heavy for a shard
    /// is not stored (see [`Cache::try_insert`]).
    pub fn insert(&self, key: K, value: V) {
        let _ = self.insert_inner(key, value, self.default_ttl);
    }

    /// Stores `key → value` that expires `ttl` from now.
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        let _ = self.insert_inner(key, value, Some(ttl));
    }

    /// Like [`Cache::insert`], but says when the entry was too heavy to store.
    pub fn try_insert(&self, key: K, value: V) -> Result<(), Error> {
        self.insert_inner(key, value, self.default_ttl)
    }

    fn insert_inner(&self, key: K, value: V, ttl: Option<Duration>) -> Result<(), Error> {
        let hash = self.hash(&key);
        self.insert_hashed(hash, key, value, ttl)
    }

    fn insert_hashed(
        &self,
        hash: u64,
        key: K,
        value: V,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let weight = self.weigher.as_ref().map_or(1, |w| w(&key, &value));
        let mut now = LazyNow::new(&*self.clock);
        let expires_at_ns = match ttl {
            Some(ttl) => now
                .get()
                .saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX))
                .min(NEVER - 1),
            None => NEVER,
        };
        let mut policy = self.shard(hash).policy.write();
        match policy.insert(hash, key, value, weight, expires_at_ns, &mut now) {
            InsertOutcome::Inserted | InsertOutcome::Replaced | InsertOutcome::TurnedAway => Ok(()),
            InsertOutcome::TooHeavy => Err(Error::TooHeavy {
                weight,
                max_weight: policy.capacity(),
            }),
        }
    }

    /// Removes `key`, returning its value if it was present and not expired.
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let mut now = LazyNow::new(&*self.clock);
        let mut policy = self.shard(hash).policy.write();
        let live = matches!(policy.get(hash, key, false, &mut now), Lookup::Live(_));
        let value = policy.remove(hash, key)?;
        live.then_some(value)
    }

    /// The value for `key`, computing it with `load` and storing it if missing.
    ///
    /// When several threads call this for the same missing key at once, `load` runs on one of them and the
    /// others wait for its value. A panicking loader releases the waiters (one of them loads instead).
    pub fn get_or_insert_with(&self, key: K, load: impl FnOnce() -> V) -> V {
        match self.try_get_or_insert_with(key, || Ok::<V, Infallible>(load())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// Like [`Cache::get_or_insert_with`] with a fallible loader. On `Err` nothing is stored, the error is
    /// returned to this caller, and threads that were waiting on this load retry (one of them loads).
    pub fn try_get_or_insert_with<E>(
        &self,
        key: K,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        let hash = self.hash(&key);
        if let Some(v) = self.lookup(hash, &key) {
            self.lookups.hit();
            return Ok(v);
        }
        self.lookups.miss();
        let shard = self.shard(hash);
        // Wait for other leaders until one succeeds or this thread becomes the leader. Each pass either
        // returns or follows a leader that gave up, and there are finitely many threads to give up.
        let flight = loop {
            let joined = {
                let mut flights = shard.flights.lock();
                match flights.iter().find(|f| f.hash == hash && f.key == key) {
                    Some(f) => Err(Arc::clone(f)),
                    None => {
                        // A leader inserts before it deregisters, so under this lock the cache is current.
                        if let Some(v) = self.lookup(hash, &key) {
                            return Ok(v);
                        }
                        let f = Arc::new(Flight::new(hash, key.clone()));
                        flights.push(Arc::clone(&f));
                        Ok(f)
                    }
                }
            };
            match joined {
                Ok(leader) => break leader,
                Err(follow) => {
                    if let Some(v) = follow.wait() {
                        return Ok(v);
                    }
                }
            }
        };
        let guard = LeaderGuard::new(&shard.flights, flight);
        let value = load()?; // on Err the guard drops unfinished: waiters are released to retry
        // A too-heavy value is still returned to every caller, just not kept.
        let _ = self.insert_hashed(hash, key, value.clone(), self.default_ttl);
        guard.succeed(value.clone());
        Ok(value)
    }

    /// Number of entries (entries that expired but were not yet cleaned up included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.policy.read().len()).sum()
    }

    /// Whether the cache holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight of the entries held.
    pub fn weighted_size(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.policy.read().weighted_size())
            .sum()
    }

    /// The configured maximum total weight.
    pub fn max_capacity(&self) -> u64 {
        self.max_capacity
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Drops every entry (statistics are kept).
    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.policy.write().clear();
        }
    }

    /// Drops every expired entry now rather than lazily.
    pub fn purge_expired(&self) {
        for s in self.shards.iter() {
            s.policy
                .write()
                .purge_expired(&mut LazyNow::new(&*self.clock));
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let (hits, misses) = self.lookups.sum();
        let mut stats = CacheStats {
            hits,
            misses,
            ..CacheStats::default()
        };
        for s in self.shards.iter() {
            let c = s.policy.read().counters;
            stats.inserts += c.inserts;
            stats.evictions += c.evictions;
            stats.expirations += c.expirations;
        }
        stats
    }
}
