//! One shard's storage and its W-TinyLFU policy, with no locking of its own.
//!
//! Entries live in a slab and are found through a hash table of slab indices, so each entry is stored once
//! and the hash is computed once per operation. The slab is split in two parallel arrays: `slots` holds
//! what a read needs (key, value, an access byte) and `meta` what only the policy needs (hash, expiry,
//! weight, list links and segment, the cached frequency estimate). For small keys and values a read then touches one 24-byte slot instead of a
//! 48-byte node that straddles cache lines half the time. Every live entry sits on exactly one of three
//! intrusive lists:
//!
//! * **window** (about 1% of the capacity): where newcomers start. Its purpose is to let a burst of
//!   accesses to a new key build up frequency before the key has to compete for a place in main. One
//!   exception: while the shard is full, a key the sketch has not seen since its last halving (estimate 1)
//!   duels main's victim at once and is usually turned away without being stored; its next access finds it
//!   known and lets it in (see `Policy::turns_away`).
//! * **probation** and **protected** (the main space, protected ≈ 80% of it): a segmented LRU. An entry
//!   leaving the window is a *candidate*; when the shard is full it is admitted only if the frequency sketch
//!   says it has been asked for more often than the *victim* at the head of probation (TinyLFU admission).
//!   A probation entry that was read since it entered is promoted to protected instead of being evicted;
//!   protected overflow is demoted back to probation.
//!
//! Reads run under the shard's read lock, so they cannot move entries between lists or write the sketch.
//! A read instead updates the entry's access byte: a `referenced` flag and a saturating count of reads not
//! yet folded into the sketch. The policy corrects list order lazily when a writer looks at an entry: a
//! referenced window entry gets a second chance at the window's tail, a referenced probation entry is
//! promoted, a referenced protected entry goes back to the protected tail. Each look folds the pending
//! count into the sketch and clears the flag, so every such pass over a list is bounded by the list's
//! length (CLOCK's argument). Each segment therefore behaves like CLOCK, an approximation of LRU, while
//! admission — what decides the hit ratio on skewed and scan-polluted workloads — compares frequencies as
//! TinyLFU does (a key's estimate is its sketch count plus any reads still pending in its entry).
//!
//! Cost model (what profiling with callgrind showed matters): an insert into a full shard probes the table
//! once and bumps one sketch line. A first-seen key (about half the inserts of a Zipf trace) then only
//! compares its estimate with the victim's and is dropped; any other newcomer is linked into the table and
//! the window, and the window's head duels probation's head and the loser is dropped. The duel reads each side's estimate from its meta (cached there whenever the policy counts
//! the key's accesses) rather than from two random sketch lines; folding pending reads has an inlined
//! nothing-pending path; the victim search has an inlined unreferenced-head path; list surgery touches only
//! metas; dropped entries are dropped in place.

use std::borrow::Borrow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use hashbrown::HashTable;

use crate::clock::Clock;
use crate::sketch::FrequencySketch;
use crate::stats::ShardCounters;

/// `expires_at_ns` of an entry without a time to live.
pub(crate) const NEVER: u64 = u64::MAX;
/// The null link of the intrusive lists.
const NIL: u32 = u32::MAX;
/// Largest number of entries one shard may hold: slab indices are `u32` and `NIL` is reserved.
const MAX_ENTRIES_PER_SHARD: u64 = (u32::MAX - 1) as u64;
/// Slab slots examined for expired entries per insert, when the shard holds any entry with a TTL.
const SWEEP_SLOTS_PER_INSERT: usize = 4;
/// The sketch starts at this width (or the capacity, if smaller) and doubles as entries arrive.
const INITIAL_SKETCH_WIDTH: usize = 1024;
/// The sketch never grows beyond this many words (128 MiB would be silly for a frequency estimate).
const MAX_SKETCH_WIDTH: usize = 1 << 24;
/// Share of the capacity given to the admission window, in percent.
const WINDOW_PERCENT: u64 = 1;
/// Share of the main space given to the protected segment, in percent.
const PROTECTED_PERCENT: u64 = 80;
/// Bit of [`Node::access`] set by any read since the policy last looked at the entry.
const REFERENCED: u8 = 0x80;
/// Bits of [`Node::access`] counting reads not yet folded into the sketch (saturating at 15).
const PENDING_MASK: u8 = 0x0F;

/// Which list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Newcomers.
    Window = 0,
    /// Main space, entries not yet re-read since admission (eviction victims come from here).
    Probation = 1,
    /// Main space, entries re-read while in probation.
    Protected = 2,
}

const WINDOW: usize = Segment::Window as usize;
const PROBATION: usize = Segment::Probation as usize;
const PROTECTED: usize = Segment::Protected as usize;

const SEGMENTS: [Segment; 3] = [Segment::Window, Segment::Probation, Segment::Protected];

/// The part of an entry a read touches.
struct Node<K, V> {
    key: K,
    value: V,
    /// [`REFERENCED`] flag and [`PENDING_MASK`] read count, set by reads under the read lock; the policy
    /// folds the count into the sketch and clears both when it looks at the entry.
    access: AtomicU8,
    /// Whether the entry carries a TTL; only then does a read look at `Meta::expires_at_ns` and the clock.
    has_expiry: bool,
}

/// The part of an entry only the policy touches (under the write lock).
#[derive(Debug, Clone, Copy)]
struct Meta {
    hash: u64,
    /// Clock reading at which the entry stops being returned; [`NEVER`] if it has no TTL.
    expires_at_ns: u64,
    weight: u32,
    prev: u32,
    next: u32,
    /// The key's sketch estimate as of the last time the policy counted accesses to it (at insert and
    /// whenever its pending reads are folded in), halved along with the sketch. Duels read this instead of
    /// the sketch: it is on a line the policy has just touched, where the sketch's counters are a random
    /// line. (Only other keys' colliding increments can move the sketch's estimate in between, which a
    /// frequency estimate shrugs off.)
    freq: u8,
    /// Which list the entry is on (here rather than in the node: list surgery then touches only metas).
    segment: Segment,
}

/// An intrusive doubly linked list over slab indices, with its total weight.
#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    weight: u64,
    len: usize,
}

impl List {
    const EMPTY: Self = Self {
        head: NIL,
        tail: NIL,
        weight: 0,
        len: 0,
    };
}

/// Why an entry is being dropped (decides which counter moves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Evicted,
    Expired,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InsertOutcome {
    /// A new entry was stored.
    Inserted,
    /// A live entry's value was replaced.
    Replaced,
    /// The entry weighs more than the whole shard; nothing was stored (and any old value was removed).
    TooHeavy,
    /// A key seen for the first time lost its admission duel at once and was not stored (see
    /// `Policy::turns_away`).
    TurnedAway,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup<T> {
    /// A live entry.
    Live(T),
    /// An entry whose TTL has passed (not yet cleaned up).
    Expired,
    /// Nothing.
    Absent,
}

/// Reads the clock at most once per operation, and only if something needs the time.
pub(crate) struct LazyNow<'a> {
    clock: &'a dyn Clock,
    now_ns: Option<u64>,
}

impl<'a> LazyNow<'a> {
    pub(crate) fn new(clock: &'a dyn Clock) -> Self {
        Self {
            clock,
            now_ns: None,
        }
    }

    pub(crate) fn get(&mut self) -> u64 {
        *self.now_ns.get_or_insert_with(|| self.clock.now_ns())
    }
}

/// A shard: slab, hash index, the three lists, the sketch and counters.
pub(crate) struct Policy<K, V> {
    table: HashTable<u32>,
    slots: Vec<Option<Node<K, V>>>,
    meta: Vec<Meta>,
    free: Vec<u32>,
    lists: [List; 3],
    capacity: u64,
    window_capacity: u64,
    protected_capacity: u64,
    sketch: FrequencySketch,
    max_sketch_width: usize,
    /// Live entries that carry a TTL; the expiry sweep runs only while this is non-zero.
    expiring: usize,
    sweep_cursor: usize,
    pub(crate) counters: ShardCounters,
}

impl<K: Eq, V> Policy<K, V> {
    /// An empty shard holding at most `capacity` weight (and at most [`MAX_ENTRIES_PER_SHARD`] entries).
    pub(crate) fn new(capacity: u64) -> Self {
        let window_capacity = (capacity * WINDOW_PERCENT / 100).max(1).min(capacity);
        let main = capacity - window_capacity;
        let protected_capacity = main * PROTECTED_PERCENT / 100;
        let capacity_entries =
            usize::try_from(capacity.min(MAX_ENTRIES_PER_SHARD)).unwrap_or(usize::MAX);
        let max_sketch_width = capacity_entries
            .checked_next_power_of_two()
            .unwrap_or(MAX_SKETCH_WIDTH)
            .min(MAX_SKETCH_WIDTH);
        Self {
            table: HashTable::new(),
            slots: Vec::new(),
            meta: Vec::new(),
            free: Vec::new(),
            lists: [List::EMPTY; 3],
            capacity,
            window_capacity,
            protected_capacity,
            sketch: FrequencySketch::with_capacity(INITIAL_SKETCH_WIDTH.min(max_sketch_width)),
            max_sketch_width,
            expiring: 0,
            sweep_cursor: 0,
            counters: ShardCounters::default(),
        }
    }

    /// Number of live entries (expired ones not yet cleaned up included).
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Sum of the weights of the live entries.
    pub(crate) fn weighted_size(&self) -> u64 {
        self.lists.iter().map(|l| l.weight).sum()
    }

    /// Largest total weight this shard holds.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The slab index of `key`, if present.
    #[inline]
    fn find_index<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slots = &self.slots;
        self.table
            .find(
                hash,
                |&i| matches!(slots.get(i as usize), Some(Some(n)) if n.key.borrow() == key),
            )
            .copied()
    }

    /// Whether the entry in slot `idx` has expired; reads the clock only for entries with a TTL.
    #[inline]
    fn is_expired(&self, idx: u32, now: &mut LazyNow<'_>) -> bool {
        match (self.slots.get(idx as usize), self.meta.get(idx as usize)) {
            (Some(Some(n)), Some(m)) => n.has_expiry && now.get() >= m.expires_at_ns,
            _ => false,
        }
    }

    /// Finds `key`'s slot and node. The probe hands back the node it matched, so the slot is looked up (and
    /// bounds-checked) once.
    #[inline]
    fn probe<Q>(&self, hash: u64, key: &Q) -> Option<(u32, &Node<K, V>)>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slots = &self.slots;
        let mut found = None;
        let &idx = self.table.find(hash, |&i| match slots.get(i as usize) {
            Some(Some(n)) if n.key.borrow() == key => {
                found = Some(n);
                true
            }
            _ => false,
        })?;
        found.map(|node| (idx, node))
    }

    /// Looks `key` up. If `record`, a live hit counts as a read for the policy. Runs under the read lock.
    #[inline]
    pub(crate) fn get<Q>(
        &self,
        hash: u64,
        key: &Q,
        record: bool,
        now: &mut LazyNow<'_>,
    ) -> Lookup<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some((idx, node)) = self.probe(hash, key) else {
            return Lookup::Absent;
        };
        if node.has_expiry && self.is_expired(idx, now) {
            return Lookup::Expired;
        }
        if record {
            record_read(&node.access);
        }
        Lookup::Live(&node.value)
    }

    /// Looks `key` up for a read, counting a live hit for the policy. Runs under the read lock.
    ///
    /// The hit path of the whole cache: the probe hands back the node it matched (one slab lookup), and the
    /// clock is dereferenced only for an entry that carries a TTL.
    #[inline]
    pub(crate) fn read<Q>(&self, hash: u64, key: &Q, clock: &Arc<dyn Clock>) -> Lookup<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some((idx, node)) = self.probe(hash, key) else {
            return Lookup::Absent;
        };
        if node.has_expiry
            && self
                .meta
                .get(idx as usize)
                .is_some_and(|m| clock.now_ns() >= m.expires_at_ns)
        {
            return Lookup::Expired;
        }
        record_read(&node.access);
        Lookup::Live(&node.value)
    }

    /// Stores `key → value`, then evicts until the shard fits its capacity again.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        weight: u32,
        expires_at_ns: u64,
        now: &mut LazyNow<'_>,
    ) -> InsertOutcome {
        // Weight zero would let a shard hold unboundedly many entries.
        let weight = weight.max(1);
        if u64::from(weight) > self.capacity {
            // Dropping the old value too: after a rejected update, readers must not see the stale one.
            self.remove(hash, &key);
            return InsertOutcome::TooHeavy;
        }
        let has_expiry = expires_at_ns != NEVER;
        let existing = self.find_index(hash, &key);
        if let Some(idx) = existing {
            let (Some(Some(node)), Some(meta)) = (
                self.slots.get_mut(idx as usize),
                self.meta.get_mut(idx as usize),
            ) else {
                debug_assert!(false, "hash table points at an empty slot");
                return InsertOutcome::TooHeavy;
            };
            node.value = value;
            // An update counts as an access, like a read.
            record_read_mut(node.access.get_mut());
            match (node.has_expiry, has_expiry) {
                (false, true) => self.expiring += 1,
                (true, false) => self.expiring -= 1,
                _ => {}
            }
            node.has_expiry = has_expiry;
            meta.expires_at_ns = expires_at_ns;
            let old_weight = std::mem::replace(&mut meta.weight, weight);
            let list = &mut self.lists[meta.segment as usize];
            list.weight = list.weight - u64::from(old_weight) + u64::from(weight);
            self.maintain(now);
            return InsertOutcome::Replaced;
        }
        let (freq, aged) = self.sketch.add(hash, 1);
        // The sketch's estimate of a key it had not seen since the last halving is exactly 1 (its doorkeeper
        // bit), and only then.
        let first_seen = freq == 1;
        let freq = if aged {
            self.age_pending();
            freq >> 1
        } else {
            freq
        };
        if first_seen && self.turns_away(weight, now) {
            self.counters.inserts += 1;
            self.counters.evictions += 1;
            self.sweep_expired(now, SWEEP_SLOTS_PER_INSERT);
            return InsertOutcome::TurnedAway;
        }
        if has_expiry {
            self.expiring += 1;
        }
        let node = Node {
            key,
            value,
            access: AtomicU8::new(0),
            has_expiry,
        };
        let meta = Meta {
            hash,
            expires_at_ns,
            weight,
            prev: NIL,
            next: NIL,
            freq,
            segment: Segment::Window,
        };
        let idx = self.alloc(node, meta);
        let metas = &self.meta;
        self.table
            .insert_unique(hash, idx, |&i| metas.get(i as usize).map_or(0, |m| m.hash));
        self.push_tail(WINDOW, idx);
        self.counters.inserts += 1;
        self.maintain(now);
        self.sweep_expired(now, SWEEP_SLOTS_PER_INSERT);
        self.grow_sketch_if_needed();
        InsertOutcome::Inserted
    }

    /// Whether a key seen for the first time (since the sketch last halved), weighing `weight`, is turned
    /// away at the door instead of entering the window.
    ///
    /// When the shard is full, a newcomer entering the window pushes the window's oldest entry out, and that
    /// entry must beat main's victim to stay. A first-seen key's estimate is 1, and ties go to the incumbent,
    /// so unless it is read while in the window it loses that duel a few inserts later: it is linked into the
    /// table and the window only to be unlinked again. Deciding its duel now, against the victim it would
    /// meet if it left the window at once, skips that round trip; it is what makes the insert of a one-hit
    /// wonder cheap. The cost: such a key is not cached on its first access, so a second access soon after
    /// misses too (and then, with an estimate of 2, enters the window as usual). Keys seen before, and every
    /// insert while the shard has room or the victim is expired or has an estimate of 0, take the normal
    /// path, so bursts of a recurring key and scans still behave as W-TinyLFU's window intends.
    fn turns_away(&mut self, weight: u32, now: &mut LazyNow<'_>) -> bool {
        let w = u64::from(weight);
        if self.weighted_size() + w <= self.capacity
            || self.lists[WINDOW].weight + w <= self.window_capacity
        {
            return false;
        }
        let Some(victim) = self.pick_victim() else {
            return false;
        };
        if self.expiring > 0 && self.is_expired(victim, now) {
            return false;
        }
        // The newcomer's estimate is 1: it wins only against a victim with an estimate of 0.
        self.frequency(victim) >= 1
    }

    /// Removes `key`, returning its value (even if it had expired but was not yet cleaned up).
    pub(crate) fn remove<Q>(&mut self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let idx = self.find_index(hash, key)?;
        self.take(idx).map(|n| n.value)
    }

    /// Removes `key` if it is present and expired; returns whether it did.
    pub(crate) fn remove_if_expired<Q>(&mut self, hash: u64, key: &Q, now: &mut LazyNow<'_>) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(idx) = self.find_index(hash, key) else {
            return false;
        };
        let expired = self.is_expired(idx, now);
        if expired {
            self.drop_entry(idx, Cause::Expired);
        }
        expired
    }

    /// Drops every entry; counters and capacity stay.
    pub(crate) fn clear(&mut self) {
        self.table.clear();
        self.slots.clear();
        self.meta.clear();
        self.free.clear();
        self.lists = [List::EMPTY; 3];
        self.expiring = 0;
        self.sweep_cursor = 0;
    }

    /// Removes every expired entry now (a full pass over the slab).
    pub(crate) fn purge_expired(&mut self, now: &mut LazyNow<'_>) {
        let slots = self.slots.len();
        self.sweep_expired(now, slots);
    }

    /// Examines up to `budget` slab slots from the sweep cursor and drops expired entries among them.
    ///
    /// Called with a small budget on every insert, this bounds how long an expired entry that nobody reads
    /// can keep its memory: one full lap of the cursor over the slab, i.e. `len / 4` inserts.
    fn sweep_expired(&mut self, now: &mut LazyNow<'_>, budget: usize) {
        let n = self.slots.len();
        if self.expiring == 0 || n == 0 {
            return;
        }
        for _ in 0..budget.min(n) {
            if self.sweep_cursor >= n {
                self.sweep_cursor = 0;
            }
            // sweep_cursor < slots.len() ≤ u32::MAX by construction of alloc.
            let idx = self.sweep_cursor as u32;
            self.sweep_cursor += 1;
            if self.is_expired(idx, now) {
                self.drop_entry(idx, Cause::Expired);
            }
        }
    }

    /// Moves window overflow into the main space, admitting or rejecting each candidate, then evicts until
    /// the shard fits.
    fn maintain(&mut self, now: &mut LazyNow<'_>) {
        // Each node gets at most one second chance per pass, so the loop ends.
        let mut second_chances = self.lists[WINDOW].len;
        while self.lists[WINDOW].weight > self.window_capacity {
            let candidate = self.lists[WINDOW].head;
            if candidate == NIL {
                break;
            }
            if second_chances > 0 && self.take_reference(candidate) {
                second_chances -= 1;
                self.unlink(candidate);
                self.push_tail(WINDOW, candidate);
                continue;
            }
            // Decide before moving: most candidates of a full shard are one-hit wonders that lose their duel,
            // and evicting them straight from the window saves relinking them into probation first.
            if self.admit(candidate, now) {
                self.unlink(candidate);
                self.push_tail(PROBATION, candidate);
            }
        }
        // Still too heavy: the main space was empty, or an update made an entry heavier.
        while self.weighted_size() > self.capacity || self.len() as u64 > MAX_ENTRIES_PER_SHARD {
            let victim = match self.pick_victim() {
                Some(v) => v,
                None if self.lists[WINDOW].head != NIL => self.lists[WINDOW].head,
                None => break,
            };
            let cause = self.cause_for(victim, now);
            self.drop_entry(victim, cause);
        }
    }

    /// TinyLFU admission of `candidate` (the window's head, about to leave it): while the shard is over
    /// capacity, the candidate duels the main space's victim and the less frequently used of the two is
    /// evicted. Returns whether the candidate survived.
    fn admit(&mut self, candidate: u32, now: &mut LazyNow<'_>) -> bool {
        let mut candidate_freq = None;
        while self.weighted_size() > self.capacity {
            let Some(victim) = self.pick_victim() else {
                let cause = self.cause_for(candidate, now);
                self.drop_entry(candidate, cause);
                return false;
            };
            if self.expiring > 0 {
                if self.is_expired(victim, now) {
                    self.drop_entry(victim, Cause::Expired);
                    continue;
                }
                if self.is_expired(candidate, now) {
                    self.drop_entry(candidate, Cause::Expired);
                    return false;
                }
            }
            // The candidate's estimate cannot change while victims are dropped: compute it once.
            let candidate_freq = match candidate_freq {
                Some(f) => f,
                None => *candidate_freq.insert(self.frequency(candidate)),
            };
            let victim_freq = self.frequency(victim);
            // Ties go to the incumbent: a one-hit wonder must never push out an entry of equal standing,
            // which is what makes a scan of new keys unable to flush the cache.
            if candidate_freq > victim_freq {
                self.drop_entry(victim, Cause::Evicted);
            } else {
                self.drop_entry(candidate, Cause::Evicted);
                return false;
            }
        }
        true
    }

    /// The next eviction victim in main: the head of probation, after promoting referenced entries to
    /// protected (and demoting protected overflow). Falls back to protected's head when probation is empty.
    #[inline]
    fn pick_victim(&mut self) -> Option<u32> {
        // Fast path, what nearly every insert into a full shard sees: probation's head was not re-read.
        let head = self.lists[PROBATION].head;
        if head == NIL {
            let p = self.lists[PROTECTED].head;
            return (p != NIL).then_some(p);
        }
        if !self.take_reference(head) {
            return Some(head);
        }
        self.promote_and_pick_victim(head)
    }

    /// [`Policy::pick_victim`] after finding probation's head `first` referenced (its flag now cleared):
    /// promotes it, and every further referenced head, to protected, demoting protected overflow.
    #[inline(never)]
    fn promote_and_pick_victim(&mut self, first: u32) -> Option<u32> {
        // Every pass clears a flag, so this many steps always suffice; the bound only guards the invariant.
        let mut budget = 2 * (self.lists[PROBATION].len + self.lists[PROTECTED].len) + 2;
        let mut head = first;
        loop {
            budget -= 1;
            self.unlink(head);
            self.push_tail(PROTECTED, head);
            while self.lists[PROTECTED].weight > self.protected_capacity {
                let p = self.lists[PROTECTED].head;
                if p == NIL {
                    break;
                }
                self.unlink(p);
                if budget > 0 && self.take_reference(p) {
                    budget -= 1;
                    self.push_tail(PROTECTED, p);
                } else {
                    self.push_tail(PROBATION, p);
                }
            }
            head = self.lists[PROBATION].head;
            if head == NIL {
                let p = self.lists[PROTECTED].head;
                return (p != NIL).then_some(p);
            }
            if budget == 0 || !self.take_reference(head) {
                return Some(head);
            }
        }
    }

    fn cause_for(&self, idx: u32, now: &mut LazyNow<'_>) -> Cause {
        if self.is_expired(idx, now) {
            Cause::Expired
        } else {
            Cause::Evicted
        }
    }

    /// The entry's estimated recent access count: its sketch estimate, after folding in its pending reads.
    fn frequency(&mut self, idx: u32) -> u8 {
        self.fold(idx, false);
        self.meta.get(idx as usize).map_or(0, |m| m.freq)
    }

    /// Clears the entry's referenced flag, returning its previous value, and folds its pending reads into
    /// the sketch.
    fn take_reference(&mut self, idx: u32) -> bool {
        self.fold(idx, true)
            .is_some_and(|(_, referenced)| referenced)
    }

    /// Moves the entry's pending read count into the sketch, clearing the referenced flag too if `clear`.
    /// Returns the entry's hash and whether it was referenced, or `None` for an empty slot.
    ///
    /// The policy folds an entry several times per insert (as candidate, as victim, when dropping it) and
    /// most folds find nothing pending, so that case is kept small enough to inline.
    #[inline]
    fn fold(&mut self, idx: u32, clear: bool) -> Option<(u64, bool)> {
        let (Some(Some(n)), Some(m)) = (
            self.slots.get_mut(idx as usize),
            self.meta.get(idx as usize),
        ) else {
            return None;
        };
        let access = n.access.get_mut();
        let before = *access;
        *access = if clear { 0 } else { before & REFERENCED };
        let hash = m.hash;
        let pending = before & PENDING_MASK;
        if pending > 0 {
            self.count_reads(idx, hash, pending);
        }
        Some((hash, before & REFERENCED != 0))
    }

    /// Adds `pending` reads of the entry in slot `idx` to the sketch and refreshes its cached estimate.
    #[inline(never)]
    fn count_reads(&mut self, idx: u32, hash: u64, pending: u8) {
        let (freq, aged) = self.sketch.add(hash, pending);
        if let Some(m) = self.meta.get_mut(idx as usize) {
            m.freq = freq;
        }
        if aged {
            self.age_pending();
        }
    }

    /// Halves every entry's pending read count and cached estimate, because the sketch just halved its
    /// counters: an estimate is sketch + pending, and all of it must age together.
    fn age_pending(&mut self) {
        for (slot, m) in self.slots.iter_mut().zip(self.meta.iter_mut()) {
            if let Some(n) = slot {
                let access = n.access.get_mut();
                *access = (*access & REFERENCED) | ((*access & PENDING_MASK) >> 1);
                m.freq >>= 1;
            }
        }
    }

    /// Drops an entry for `cause`, counting it.
    fn drop_entry(&mut self, idx: u32, cause: Cause) {
        if let Some(slot) = self.vacate(idx) {
            // Dropped in place: moving the node out only to drop it costs a copy through the stack.
            *slot = None;
            match cause {
                Cause::Evicted => self.counters.evictions += 1,
                Cause::Expired => self.counters.expirations += 1,
            }
        }
    }

    /// Unlinks and frees slot `idx`, returning its node. Its reads are folded into the sketch first, so
    /// the key's popularity outlives its eviction (what lets a returning popular key win admission).
    fn take(&mut self, idx: u32) -> Option<Node<K, V>> {
        self.vacate(idx).and_then(Option::take)
    }

    /// Unlinks live slot `idx` from its list and the table and puts it on the free list, returning the
    /// slot for the caller to empty (or `None` if it was vacant). Its reads are folded into the sketch.
    fn vacate(&mut self, idx: u32) -> Option<&mut Option<Node<K, V>>> {
        let (hash, _) = self.fold(idx, true)?;
        self.unlink(idx);
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.free.push(idx);
        // The slot's meta is left stale: nothing reads a vacant slot's meta, and alloc overwrites it.
        let slot = self.slots.get_mut(idx as usize)?;
        if slot.as_ref().is_some_and(|n| n.has_expiry) {
            self.expiring -= 1;
        }
        Some(slot)
    }

    fn alloc(&mut self, node: Node<K, V>, meta: Meta) -> u32 {
        if let Some(idx) = self.free.pop()
            && let (Some(slot), Some(m)) = (
                self.slots.get_mut(idx as usize),
                self.meta.get_mut(idx as usize),
            )
        {
            *slot = Some(node);
            *m = meta;
            return idx;
        }
        // The capacity bound (≤ MAX_ENTRIES_PER_SHARD entries of weight ≥ 1) keeps this below NIL.
        let idx = self.slots.len() as u32;
        self.slots.push(Some(node));
        self.meta.push(meta);
        idx
    }

    /// Appends `idx` (currently unlinked) to list `seg`.
    fn push_tail(&mut self, seg: usize, idx: u32) {
        let tail = self.lists[seg].tail;
        debug_assert!(matches!(self.slots.get(idx as usize), Some(Some(_))));
        let Some(m) = self.meta.get_mut(idx as usize) else {
            return;
        };
        m.segment = SEGMENTS[seg];
        m.prev = tail;
        m.next = NIL;
        let weight = m.weight;
        if tail == NIL {
            self.lists[seg].head = idx;
        } else if let Some(t) = self.meta.get_mut(tail as usize) {
            t.next = idx;
        }
        let list = &mut self.lists[seg];
        list.tail = idx;
        list.weight += u64::from(weight);
        list.len += 1;
    }

    /// Removes `idx` (a live entry) from whichever list it is on.
    fn unlink(&mut self, idx: u32) {
        debug_assert!(matches!(self.slots.get(idx as usize), Some(Some(_))));
        let Some(m) = self.meta.get_mut(idx as usize) else {
            return;
        };
        let seg = m.segment as usize;
        let (prev, next, weight) = (m.prev, m.next, m.weight);
        m.prev = NIL;
        m.next = NIL;
        if prev == NIL {
            self.lists[seg].head = next;
        } else if let Some(p) = self.meta.get_mut(prev as usize) {
            p.next = next;
        }
        if next == NIL {
            self.lists[seg].tail = prev;
        } else if let Some(n) = self.meta.get_mut(next as usize) {
            n.prev = prev;
        }
        let list = &mut self.lists[seg];
        list.weight -= u64::from(weight);
        list.len -= 1;
    }

    /// Doubles the sketch while the shard holds more entries than the sketch is sized for.
    ///
    /// Weighted caches cannot know their entry count up front; sizing the sketch by weight would waste
    /// memory on caches of large entries, so it follows the live entry count instead (the history of keys not
    /// in the cache is lost on a resize, which happens at most log2(capacity) times).
    fn grow_sketch_if_needed(&mut self) {
        let width = self.sketch.width();
        if self.len() > width && width < self.max_sketch_width {
            self.sketch = FrequencySketch::with_capacity((width * 2).min(self.max_sketch_width));
            // Residents keep their history; only that of keys not in the cache is lost.
            for (slot, m) in self.slots.iter().zip(self.meta.iter()) {
                if slot.is_some() && m.freq > 0 {
                    self.sketch.seed(m.hash, m.freq);
                }
            }
        }
    }

    /// Checks every structural invariant; for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut seen = 0usize;
        for seg in [WINDOW, PROBATION, PROTECTED] {
            let list = self.lists[seg];
            let (mut idx, mut prev, mut len, mut weight) = (list.head, NIL, 0usize, 0u64);
            while idx != NIL {
                let n = self.slots[idx as usize]
                    .as_ref()
                    .expect("listed slot is live");
                let m = self.meta[idx as usize];
                assert_eq!(m.prev, prev);
                assert_eq!(m.segment as usize, seg);
                assert_eq!(self.find_index(m.hash, &n.key), Some(idx));
                assert_eq!(n.has_expiry, m.expires_at_ns != NEVER);
                weight += u64::from(m.weight);
                len += 1;
                prev = idx;
                idx = m.next;
            }
            assert_eq!(list.tail, prev);
            assert_eq!(list.len, len);
            assert_eq!(list.weight, weight);
            seen += len;
        }
        assert_eq!(seen, self.table.len());
        assert_eq!(
            self.slots.iter().filter(|s| s.is_some()).count(),
            self.table.len()
        );
        assert_eq!(self.slots.len(), self.meta.len());
        assert!(self.weighted_size() <= self.capacity);
        assert_eq!(
            self.expiring,
            self.slots.iter().flatten().filter(|n| n.has_expiry).count()
        );
    }

    /// Which segment `key` is in; for tests.
    #[cfg(test)]
    pub(crate) fn segment_of<Q>(&self, hash: u64, key: &Q) -> Option<Segment>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let idx = self.find_index(hash, key)?;
        self.meta.get(idx as usize).map(|m| m.segment)
    }
}

/// Counts a read in an entry's access byte (see [`Policy::get`] for why a plain load and store suffice).
///
/// Two racing readers may count one read instead of two, which a frequency estimate shrugs off. A hot
/// entry's byte is saturated, so the store is skipped and its cache line stays shared between the reading
/// cores instead of bouncing between them.
#[inline]
fn record_read(access: &AtomicU8) {
    let v = access.load(Ordering::Relaxed);
    let pending = v & PENDING_MASK;
    let new = REFERENCED | (pending + u8::from(pending < PENDING_MASK));
    if new != v {
        access.store(new, Ordering::Relaxed);
    }
}

/// [`record_read`] with exclusive access.
fn record_read_mut(access: &mut u8) {
    let pending = *access & PENDING_MASK;
    *access = REFERENCED | (pending + u8::from(pending < PENDING_MASK));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn h(k: u64) -> u64 {
        let x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 32)
    }

    fn put(p: &mut Policy<u64, u64>, clock: &ManualClock, k: u64) -> InsertOutcome {
        p.insert(h(k), k, k * 10, 1, NEVER, &mut LazyNow::new(clock))
    }

    fn read(p: &Policy<u64, u64>, k: u64) -> Option<u64> {
        let clock = ManualClock::new();
        match p.get(h(k), &k, true, &mut LazyNow::new(&clock)) {
            Lookup::Live(v) => Some(*v),
            _ => None,
        }
    }

    #[test]
    fn fills_to_capacity_then_evicts() {
        let clock = ManualClock::new();
        let mut p = Policy::new(100);
        for k in 0..100 {
            assert_eq!(put(&mut p, &clock, k), InsertOutcome::Inserted);
        }
        assert_eq!(p.len(), 100);
        assert_eq!(p.counters.evictions, 0);
        for k in 100..300 {
            put(&mut p, &clock, k);
            p.check_invariants();
        }
        assert_eq!(p.len(), 100);
        assert_eq!(p.counters.evictions, 200);
    }

    #[test]
    fn frequent_keys_survive_a_scan_of_new_keys() {
        let clock = ManualClock::new();
        let mut p = Policy::new(100);
        for k in 0..100 {
            put(&mut p, &clock, k);
        }
        // Keys 0..50 become hot.
        for _ in 0..5 {
            for k in 0..50 {
                assert!(read(&p, k).is_some());
            }
        }
        // A scan of 1000 one-hit wonders.
        for k in 1000..2000 {
            put(&mut p, &clock, k);
        }
        p.check_invariants();
        let survivors = (0..50).filter(|&k| read(&p, k).is_some()).count();
        assert_eq!(survivors, 50, "the scan flushed hot keys");
    }

    #[test]
    fn reread_probation_entries_are_promoted_to_protected() {
        let clock = ManualClock::new();
        let mut p = Policy::new(100);
        for k in 0..100 {
            put(&mut p, &clock, k);
        }
        // Key 0 is the oldest, at the head of probation: the next victim, unless it was re-read.
        assert_eq!(p.segment_of(h(0), &0), Some(Segment::Probation));
        read(&p, 0);
        put(&mut p, &clock, 100);
        assert_eq!(p.segment_of(h(0), &0), Some(Segment::Protected));
        p.check_invariants();
    }

    #[test]
    fn new_key_is_admitted_once_more_frequent_than_the_victim() {
        let clock = ManualClock::new();
        let mut p = Policy::new(100);
        for k in 0..100 {
            put(&mut p, &clock, k);
        }
        // Key 500 is asked for (inserted) repeatedly; each time it loses while its frequency is low, then wins.
        let mut admitted = false;
        for _ in 0..5 {
            put(&mut p, &clock, 500);
            for k in 600..602 {
                put(&mut p, &clock, k); // push 500 out of the window
            }
            admitted |= p.find_index(h(500), &500).is_some();
        }
        assert!(admitted);
    }

    #[test]
    fn first_seen_key_is_turned_away_from_a_full_shard_and_enters_on_its_second_access() {
        let clock = ManualClock::new();
        let mut p = Policy::new(1000); // a window of 10 entries
        for k in 0..1000 {
            put(&mut p, &clock, k);
        }
        // Every resident has an estimate of at least 1, so a newcomer cannot beat main's victim.
        let (inserts, evictions) = (p.counters.inserts, p.counters.evictions);
        assert_eq!(put(&mut p, &clock, 5000), InsertOutcome::TurnedAway);
        assert_eq!(p.find_index(h(5000), &5000), None);
        assert_eq!(p.len(), 1000);
        // Counted as an insert its admission duel lost, as if it had passed through the window.
        assert_eq!(p.counters.inserts, inserts + 1);
        assert_eq!(p.counters.evictions, evictions + 1);
        p.check_invariants();
        // Seen before now: it enters the window and can be read there.
        assert_eq!(put(&mut p, &clock, 5000), InsertOutcome::Inserted);
        assert_eq!(read(&p, 5000), Some(50_000));
        assert_eq!(p.segment_of(h(5000), &5000), Some(Segment::Window));
        p.check_invariants();
    }

    #[test]
    fn first_seen_key_enters_while_the_shard_has_room() {
        let clock = ManualClock::new();
        let mut p = Policy::new(100);
        for k in 0..100 {
            assert_eq!(put(&mut p, &clock, k), InsertOutcome::Inserted);
            assert_eq!(read(&p, k), Some(k * 10));
        }
    }

    #[test]
    fn weights_count_against_capacity() {
        let clock = ManualClock::new();
        let mut p: Policy<u64, u64> = Policy::new(100);
        let mut now = LazyNow::new(&clock);
        for k in 0..10 {
            p.insert(h(k), k, k, 30, NEVER, &mut now);
            p.check_invariants();
            assert!(p.weighted_size() <= 100);
        }
        assert!(p.len() <= 3);
        assert_eq!(
            p.insert(h(99), 99, 0, 101, NEVER, &mut now),
            InsertOutcome::TooHeavy
        );
        // Updating to a heavier weight evicts to make room.
        let k = p
            .slots
            .iter()
            .flatten()
            .map(|n| n.key)
            .next()
            .expect("one entry");
        p.insert(h(k), k, 1, 100, NEVER, &mut now);
        p.check_invariants();
        assert_eq!(p.weighted_size(), 100);
    }

    #[test]
    fn expired_entries_are_swept_by_inserts() {
        let clock = ManualClock::new();
        let mut p: Policy<u64, u64> = Policy::new(1000);
        for k in 0..100 {
            p.insert(h(k), k, k, 1, 1_000, &mut LazyNow::new(&clock));
        }
        clock.advance(std::time::Duration::from_micros(2));
        for k in 1000..1030 {
            put(&mut p, &clock, k);
        }
        p.check_invariants();
        assert_eq!(p.counters.expirations, 100);
        assert_eq!(p.len(), 30);
    }

    #[test]
    fn tiny_capacities_work() {
        let clock = ManualClock::new();
        for cap in 1..5 {
            let mut p = Policy::new(cap);
            for k in 0..50 {
                put(&mut p, &clock, k % 7);
                read(&p, k % 3);
                p.check_invariants();
            }
            assert!(p.len() as u64 <= cap);
        }
    }

    #[test]
    fn remove_and_clear() {
        let clock = ManualClock::new();
        let mut p = Policy::new(10);
        put(&mut p, &clock, 1);
        put(&mut p, &clock, 2);
        assert_eq!(p.remove(h(1), &1), Some(10));
        assert_eq!(p.remove(h(1), &1), None);
        p.check_invariants();
        p.clear();
        assert_eq!(p.len(), 0);
        put(&mut p, &clock, 3);
        p.check_invariants();
    }
}
