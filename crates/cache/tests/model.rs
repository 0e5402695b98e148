//! Model-based test: random operation sequences against the cache and a `HashMap` reference.
//!
//! A cache may drop any entry at any time (eviction), so the model tracks what the cache *may* hold: a value
//! the cache returns must be the last one inserted for that key, a removed key is gone, and with room for
//! every key the cache must behave exactly like a map.

use std::collections::HashMap;

use proptest::prelude::*;
use strata_cache::Cache;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u16),
    Get(u8),
    Remove(u8),
    GetOrInsert(u8, u16),
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..40, any::<u16>()).prop_map(|(k, v)| Op::Insert(k, v)),
        4 => (0u8..40).prop_map(Op::Get),
        2 => (0u8..40).prop_map(Op::Remove),
        2 => (0u8..40, any::<u16>()).prop_map(|(k, v)| Op::GetOrInsert(k, v)),
        1 => Just(Op::Clear),
    ]
}

/// Runs `ops`; `exact` says the cache has room for every key, so nothing may ever be evicted.
fn run(ops: &[Op], capacity: u64, shards: usize, exact: bool) -> Result<(), TestCaseError> {
    let cache: Cache<u8, u16> = Cache::builder()
        .max_capacity(capacity)
        .shards(shards)
        .build();
    let mut model: HashMap<u8, u16> = HashMap::new();
    let mut lookups = 0u64;
    for op in ops {
        match *op {
            Op::Insert(k, v) => {
                cache.insert(k, v);
                model.insert(k, v);
                // A key just inserted is present unless the admission policy turned it away at once.
                if cache.contains(&k) {
                    prop_assert_eq!(cache.get(&k), Some(v));
                    lookups += 1;
                }
            }
            Op::Get(k) => {
                let got = cache.get(&k);
                lookups += 1;
                match (got, model.get(&k)) {
                    (Some(g), Some(&m)) => prop_assert_eq!(g, m),
                    (Some(g), None) => {
                        prop_assert!(false, "{k} -> {g} was never inserted or was removed")
                    }
                    (None, Some(_)) => prop_assert!(!exact, "{k} vanished from a cache with room"),
                    (None, None) => {}
                }
            }
            Op::Remove(k) => {
                let got = cache.remove(&k);
                if let Some(g) = got {
                    prop_assert_eq!(Some(&g), model.get(&k));
                } else {
                    prop_assert!(!exact || !model.contains_key(&k));
                }
                model.remove(&k);
                prop_assert!(!cache.contains(&k));
            }
            Op::GetOrInsert(k, v) => {
                let got = cache.get_or_insert_with(k, || v);
                lookups += 1;
                match model.get(&k) {
                    Some(&m) if got == m => {}
                    // The cached value was evicted, so the loader ran and its value is now the truth.
                    Some(_) => prop_assert!(!exact && got == v),
                    None => prop_assert_eq!(got, v),
                }
                model.insert(k, got);
            }
            Op::Clear => {
                cache.clear();
                model.clear();
            }
        }
        prop_assert!(cache.len() as u64 <= capacity);
        prop_assert!(cache.weighted_size() <= capacity);
        // Forget what the cache evicted: from now on it must not come back without a new insert.
        model.retain(|k, _| cache.contains(k));
        if exact {
            prop_assert_eq!(cache.len(), model.len());
        }
    }
    let stats = cache.stats();
    prop_assert_eq!(stats.hits + stats.misses, lookups);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn small_cache_never_returns_a_wrong_value(ops in proptest::collection::vec(op(), 1..200),
                                               capacity in 1u64..12, shards in 1usize..4) {
        run(&ops, capacity, shards, false)?;
    }

    #[test]
    fn cache_with_room_for_every_key_behaves_like_a_map(ops in proptest::collection::vec(op(), 1..200)) {
        // 40 keys; even one shard's window cannot overflow, so nothing is ever evicted.
        run(&ops, 1000, 1, true)?;
    }
}
