//! A small sharded LRU block cache: the placeholder behind the SST reader's `BlockCache` trait until
//! strata-cache replaces it. Capacity is in bytes of block data; each shard evicts its least recently used
//! blocks independently.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

const SHARDS: usize = 16;

#[derive(Default)]
struct Shard {
    map: HashMap<(u64, u64), (Bytes, u64)>,
    /// Recency order: tick -> key.
    order: BTreeMap<u64, (u64, u64)>,
    tick: u64,
    bytes: u64,
}

/// A sharded LRU keyed by (file id, block offset).
pub struct LruBlockCache {
    shards: Vec<Mutex<Shard>>,
    shard_capacity_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for LruBlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LruBlockCache")
            .field(
                "capacity_bytes",
                &(self.shard_capacity_bytes * SHARDS as u64),
            )
            .finish()
    }
}

impl LruBlockCache {
    /// A cache holding about `capacity_bytes` of blocks.
    pub fn new(capacity_bytes: u64) -> Self {
        LruBlockCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity_bytes: (capacity_bytes / SHARDS as u64).max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, file_id: u64, offset: u64) -> &Mutex<Shard> {
        let h = file_id
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(offset >> 12)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    /// The cached block, marking it recently used.
    pub fn lookup(&self, file_id: u64, offset: u64) -> Option<Bytes> {
        let mut s = self.shard(file_id, offset).lock();
        s.tick += 1;
        let tick = s.tick;
        let (b, old) = match s.map.get_mut(&(file_id, offset)) {
            Some((b, t)) => {
                let old = *t;
                *t = tick;
                (b.clone(), old)
            }
            None => {
                drop(s);
                self.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        s.order.remove(&old);
        s.order.insert(tick, (file_id, offset));
        drop(s);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(b)
    }

    /// Caches a block, evicting least recently used blocks beyond capacity.
    pub fn store(&self, file_id: u64, offset: u64, block: Bytes) {
        let len = block.len() as u64;
        if len > self.shard_capacity_bytes {
            return;
        }
        let mut s = self.shard(file_id, offset).lock();
        s.tick += 1;
        let tick = s.tick;
        if let Some((old, t)) = s.map.insert((file_id, offset), (block, tick)) {
            s.bytes -= old.len() as u64;
            s.order.remove(&t);
        }
        s.order.insert(tick, (file_id, offset));
        s.bytes += len;
        while s.bytes > self.shard_capacity_bytes {
            let Some((_, key)) = s.order.pop_first() else {
                break;
            };
            if let Some((b, _)) = s.map.remove(&key) {
                s.bytes -= b.len() as u64;
            }
        }
    }

    /// (hits, misses) so far.
    pub fn hit_miss(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Bytes cached.
    pub fn used_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.lock().bytes).sum()
    }
}

impl crate::sst::BlockCache for LruBlockCache {
    fn get(&self, file_id: u64, block_offset: u64) -> Option<Bytes> {
        self.lookup(file_id, block_offset)
    }
    fn insert(&self, file_id: u64, block_offset: u64, block: Bytes) {
        self.store(file_id, block_offset, block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_capacity() {
        let c = LruBlockCache::new(16 * 100);
        for i in 0..1000u64 {
            c.store(1, i * 4096, Bytes::from(vec![0u8; 50]));
        }
        assert!(c.used_bytes() <= 16 * 100);
        c.store(2, 0, Bytes::from_static(b"x"));
        assert_eq!(c.lookup(2, 0).as_deref(), Some(&b"x"[..]));
        assert!(c.lookup(1, 0).is_none());
        let (h, m) = c.hit_miss();
        assert_eq!((h, m), (1, 1));
    }
}
