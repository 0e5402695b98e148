//! The block cache behind the SST reader's `BlockCache` trait: a [`strata_cache::Cache`] (sharded,
//! W-TinyLFU, so a one-off scan does not flush the hot blocks) keyed by (file id, block offset) and weighted
//! by the block's bytes. Capacity is [`crate::Options::block_cache_bytes`].

use bytes::Bytes;
use strata_cache::Cache;

/// Blocks larger than this are not cached (the cache's weights are `u32`; SST blocks are far smaller).
const MAX_CACHED_BLOCK_BYTES: usize = u32::MAX as usize;

/// Decoded SST blocks shared by every reader of one database.
pub struct BlockCache {
    cache: Cache<(u64, u64), Bytes>,
    capacity_bytes: u64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("capacity_bytes", &self.capacity_bytes)
            .field("used_bytes", &self.used_bytes())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding about `capacity_bytes` of blocks.
    pub fn new(capacity_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity_bytes.max(1))
            .weigher(|_k: &(u64, u64), v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX).max(1))
            .build();
        BlockCache {
            cache,
            capacity_bytes,
        }
    }

    /// The cached block, if any (counts a hit or a miss).
    pub fn lookup(&self, file_id: u64, offset: u64) -> Option<Bytes> {
        self.cache.get(&(file_id, offset))
    }

    /// Caches a block; the cache's admission policy may decline it or evict colder blocks.
    pub fn store(&self, file_id: u64, offset: u64, block: Bytes) {
        if block.len() <= MAX_CACHED_BLOCK_BYTES {
            self.cache.insert((file_id, offset), block);
        }
    }

    /// Drops a block (e.g. of a deleted file); harmless if absent.
    pub fn forget(&self, file_id: u64, offset: u64) {
        let _ = self.cache.remove(&(file_id, offset));
    }

    /// (hits, misses) so far.
    pub fn hit_miss(&self) -> (u64, u64) {
        let s = self.cache.stats();
        (s.hits, s.misses)
    }

    /// Bytes cached.
    pub fn used_bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Configured capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }
}

impl crate::sst::BlockCache for BlockCache {
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
    fn stays_within_capacity_and_counts_hits() {
        let c = BlockCache::new(64 * 1024);
        for i in 0..1000u64 {
            c.store(1, i * 4096, Bytes::from(vec![0u8; 512]));
        }
        assert!(c.used_bytes() <= 64 * 1024, "{}", c.used_bytes());
        // A fresh cache admits a block while it has room.
        let c = BlockCache::new(64 * 1024);
        c.store(2, 0, Bytes::from_static(b"x"));
        let before = c.hit_miss();
        assert_eq!(c.lookup(2, 0).as_deref(), Some(&b"x"[..]));
        assert!(c.lookup(3, 0).is_none());
        let after = c.hit_miss();
        assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));
        c.forget(2, 0);
        assert!(c.lookup(2, 0).is_none());
    }
}
