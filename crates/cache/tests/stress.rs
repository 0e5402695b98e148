//! Bounded multi-threaded stress: mixed operations from several threads never break the capacity bound
//! nor return a value that belongs to another key.

use std::sync::{Arc, Barrier};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_cache::Cache;

const THREADS: usize = 4;
const OPS_PER_THREAD: usize = 20_000;
const KEYS: u64 = 2_000;
const CAPACITY: u64 = 500;

/// Every value stored for key `k` is `k * 1_000_000 + version`, so a reader can check ownership.
fn owner(v: u64) -> u64 {
    v / 1_000_000
}

#[test]
fn concurrent_mixed_operations_keep_every_invariant() {
    let cache: Arc<Cache<u64, u64>> = Arc::new(
        Cache::builder()
            .max_capacity(CAPACITY)
            .shards(4)
            .weigher(|k, _| (k % 3) as u32 + 1)
            .build(),
    );
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, barrier) = (cache.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(t as u64);
                barrier.wait();
                for i in 0..OPS_PER_THREAD {
                    let k = rng.random_range(0..KEYS);
                    match rng.random_range(0..10) {
                        0..=3 => {
                            if let Some(v) = cache.get(&k) {
                                assert_eq!(owner(v), k);
                            }
                        }
                        4..=6 => cache.insert(k, k * 1_000_000 + i as u64),
                        7 => {
                            if let Some(v) = cache.remove(&k) {
                                assert_eq!(owner(v), k);
                            }
                        }
                        8 => {
                            let v = cache.get_or_insert_with(k, || k * 1_000_000);
                            assert_eq!(owner(v), k);
                        }
                        _ => {
                            let _ = cache.contains(&k);
                            assert!(cache.weighted_size() <= CAPACITY);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(cache.weighted_size() <= CAPACITY);
    assert!(cache.len() as u64 <= CAPACITY);
    let stats = cache.stats();
    assert!(stats.inserts > 0 && stats.evictions > 0);
    cache.clear();
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.weighted_size(), 0);
}
