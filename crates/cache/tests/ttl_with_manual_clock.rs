//! Expiry, driven by a manual clock so no test sleeps.

use std::sync::Arc;
use std::time::Duration;

use strata_cache::{Cache, ManualClock};

fn cache_with_clock(capacity: u64) -> (Cache<u32, String>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let cache = Cache::builder()
        .max_capacity(capacity)
        .clock(clock.clone())
        .build();
    (cache, clock)
}

#[test]
fn entry_is_returned_until_its_ttl_passes() {
    let (cache, clock) = cache_with_clock(100);
    cache.insert_with_ttl(1, "one".into(), Duration::from_secs(10));
    clock.advance(Duration::from_secs(9));
    assert_eq!(cache.get(&1).as_deref(), Some("one"));
    assert!(cache.contains(&1));
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get(&1), None);
    assert!(!cache.contains(&1));
    // The reader that noticed removed it.
    assert_eq!(cache.len(), 0);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses, stats.expirations), (1, 1, 1));
}

#[test]
fn default_ttl_applies_to_plain_inserts_and_explicit_ttl_overrides_it() {
    let clock = Arc::new(ManualClock::new());
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(100)
        .time_to_live(Duration::from_secs(5))
        .clock(clock.clone())
        .build();
    cache.insert(1, 1);
    cache.insert_with_ttl(2, 2, Duration::from_secs(60));
    clock.advance(Duration::from_secs(6));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(2));
}

#[test]
fn entries_without_ttl_never_expire() {
    let (cache, clock) = cache_with_clock(100);
    cache.insert(7, "seven".into());
    clock.advance(Duration::from_secs(1_000_000_000));
    assert_eq!(cache.get(&7).as_deref(), Some("seven"));
}

#[test]
fn reinserting_replaces_the_expiry() {
    let (cache, clock) = cache_with_clock(100);
    cache.insert_with_ttl(1, "a".into(), Duration::from_secs(1));
    cache.insert(1, "b".into()); // no TTL now
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.get(&1).as_deref(), Some("b"));
    cache.insert_with_ttl(1, "c".into(), Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.get(&1), None);
}

#[test]
fn remove_of_an_expired_entry_returns_nothing() {
    let (cache, clock) = cache_with_clock(100);
    cache.insert_with_ttl(1, "x".into(), Duration::from_millis(1));
    clock.advance(Duration::from_millis(1));
    assert_eq!(cache.remove(&1), None);
    assert_eq!(cache.len(), 0);
}

#[test]
fn expired_entries_nobody_reads_are_reclaimed_by_inserts_and_purge() {
    let (cache, clock) = cache_with_clock(10_000);
    for k in 0..1000 {
        cache.insert_with_ttl(k, "old".into(), Duration::from_secs(1));
    }
    clock.advance(Duration::from_secs(2));
    // Inserting sweeps a few slots each time: after enough inserts every expired entry is gone.
    for k in 1000..1600 {
        cache.insert(k, "new".into());
    }
    assert_eq!(cache.len(), 600, "sweep left expired entries behind");
    assert_eq!(cache.stats().expirations, 1000);

    for k in 0..100 {
        cache.insert_with_ttl(k, "old".into(), Duration::from_secs(1));
    }
    clock.advance(Duration::from_secs(2));
    cache.purge_expired();
    assert_eq!(cache.len(), 600);
}

#[test]
fn get_or_insert_with_uses_the_default_ttl() {
    let clock = Arc::new(ManualClock::new());
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .time_to_live(Duration::from_secs(1))
        .clock(clock.clone())
        .build();
    assert_eq!(cache.get_or_insert_with(1, || 10), 10);
    assert_eq!(cache.get_or_insert_with(1, || 11), 10);
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get_or_insert_with(1, || 12), 12);
}
