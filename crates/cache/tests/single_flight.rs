//! `get_or_insert_with` computes a missing value once, however many threads ask at the same moment, and a
//! failing or panicking loader does not leave the others waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use strata_cache::Cache;

const THREADS: usize = 8;

/// Spins (yielding) until `arrived` reaches `n` or a generous deadline passes. Used by loaders to stay in
/// flight until every other thread has at least called into the cache; it polls, it does not sleep.
fn wait_for_arrivals(arrived: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while arrived.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        std::thread::yield_now();
    }
}

#[test]
fn many_threads_missing_one_key_compute_it_once() {
    let cache: Arc<Cache<u32, u64>> = Arc::new(Cache::new(1000));
    for round in 0..20u32 {
        let loads = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (cache, loads, arrived, barrier) = (
                    cache.clone(),
                    loads.clone(),
                    arrived.clone(),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    arrived.fetch_add(1, Ordering::SeqCst);
                    cache.get_or_insert_with(round, || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        wait_for_arrivals(&arrived, THREADS);
                        u64::from(round) * 100
                    })
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), u64::from(round) * 100);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(cache.get(&round), Some(u64::from(round) * 100));
    }
}

#[test]
fn different_keys_load_in_parallel() {
    let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(1000));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2u32)
        .map(|k| {
            let (cache, in_flight, barrier) = (cache.clone(), in_flight.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                cache.get_or_insert_with(k, || {
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    // Both loaders must be running at once; if loads of different keys were serialised this
                    // would time out and see only one.
                    wait_for_arrivals(&in_flight, 2);
                    in_flight.load(Ordering::SeqCst) as u32
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 2);
    }
}

#[test]
fn a_failing_loader_releases_the_waiters_and_one_of_them_loads() {
    let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(100));
    let attempts = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, attempts, arrived, barrier) = (
                cache.clone(),
                attempts.clone(),
                arrived.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                arrived.fetch_add(1, Ordering::SeqCst);
                cache.try_get_or_insert_with(1, || {
                    if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                        wait_for_arrivals(&arrived, THREADS);
                        Err("backend down")
                    } else {
                        Ok(42)
                    }
                })
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert!(results.iter().filter(|r| r.is_ok()).all(|r| *r == Ok(42)));
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get(&1), Some(42));
}

#[test]
fn a_panicking_loader_does_not_wedge_the_waiters() {
    let cache: Arc<Cache<u32, u32>> = Arc::new(Cache::new(100));
    let attempts = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (cache, attempts, arrived, barrier) = (
                cache.clone(),
                attempts.clone(),
                arrived.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                arrived.fetch_add(1, Ordering::SeqCst);
                cache.get_or_insert_with(1, || {
                    if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                        wait_for_arrivals(&arrived, THREADS);
                        panic!("loader blew up (expected by the test)");
                    }
                    7
                })
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .all(|&v| v == 7)
    );
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get(&1), Some(7));
}

#[test]
fn a_hit_does_not_run_the_loader() {
    let cache: Cache<&str, u32> = Cache::new(10);
    cache.insert("k", 1);
    assert_eq!(cache.get_or_insert_with("k", || unreachable!()), 1);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (1, 0));
}
