//! Weighted capacity: the weigher, heavy entries, updates that change weight.

use strata_cache::{Cache, Error};

fn byte_cache(capacity: u64) -> Cache<u32, Vec<u8>> {
    Cache::builder()
        .max_capacity(capacity)
        .shards(1)
        .weigher(|_k, v: &Vec<u8>| u32::try_from(v.len()).unwrap_or(u32::MAX))
        .build()
}

#[test]
fn weighted_size_never_exceeds_capacity() {
    let cache = byte_cache(1000);
    for k in 0..500u32 {
        cache.insert(k, vec![0; (k % 97) as usize + 1]);
        assert!(cache.weighted_size() <= 1000);
    }
    assert!(cache.stats().evictions > 0);
}

#[test]
fn an_entry_heavier_than_a_shard_is_refused_and_reported() {
    let cache = byte_cache(100);
    cache.insert(1, vec![1; 10]);
    assert_eq!(
        cache.try_insert(2, vec![0; 101]),
        Err(Error::TooHeavy {
            weight: 101,
            max_weight: 100
        })
    );
    assert_eq!(cache.get(&2), None);
    // An update to a too-heavy value drops the old one rather than leaving it stale.
    cache.insert(1, vec![0; 500]);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.weighted_size(), 0);
}

#[test]
fn growing_an_entry_evicts_others_to_make_room() {
    let cache = byte_cache(100);
    for k in 0..10 {
        cache.insert(k, vec![0; 10]);
    }
    assert_eq!(cache.weighted_size(), 100);
    cache.insert(0, vec![0; 55]);
    assert!(cache.weighted_size() <= 100);
    assert!(cache.len() < 10);
}

#[test]
fn zero_weight_counts_as_one() {
    let cache: Cache<u32, ()> = Cache::builder().max_capacity(10).weigher(|_, _| 0).build();
    for k in 0..100 {
        cache.insert(k, ());
    }
    assert!(cache.len() <= 10);
}

#[test]
fn capacity_is_split_across_shards_and_never_exceeded() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(1001).shards(8).build();
    assert_eq!(cache.shard_count(), 8);
    for k in 0..10_000 {
        cache.insert(k, k);
    }
    assert!(cache.len() <= 1001);
    assert!(
        cache.len() > 900,
        "shards should be nearly full: {}",
        cache.len()
    );
}

#[test]
fn tiny_capacities_use_fewer_shards() {
    let cache: Cache<u64, u64> = Cache::builder().max_capacity(3).shards(64).build();
    assert!(cache.shard_count() <= 2);
    let empty: Cache<u64, u64> = Cache::new(0);
    empty.insert(1, 1);
    assert_eq!(empty.get(&1), None);
    assert_eq!(empty.len(), 0);
}
