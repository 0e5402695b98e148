//! On a skewed (Zipf) workload and on a scan-polluted one, strata-cache's hit ratio beats plain LRU's.

use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};
use strata_cache::Cache;

const KEYS: u64 = 50_000;
const CAPACITY: u64 = 500;

/// A plain LRU: a map from key to last-use stamp and an ordered map from stamp to key.
struct Lru {
    capacity: usize,
    stamp: u64,
    by_key: HashMap<u64, u64>,
    by_stamp: BTreeMap<u64, u64>,
}

impl Lru {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            stamp: 0,
            by_key: HashMap::new(),
            by_stamp: BTreeMap::new(),
        }
    }

    /// Returns whether `key` was a hit; on a miss, inserts it (evicting the least recently used).
    fn access(&mut self, key: u64) -> bool {
        self.stamp += 1;
        if let Some(old) = self.by_key.insert(key, self.stamp) {
            self.by_stamp.remove(&old);
            self.by_stamp.insert(self.stamp, key);
            return true;
        }
        self.by_stamp.insert(self.stamp, key);
        if self.by_key.len() > self.capacity
            && let Some((_, victim)) = self.by_stamp.pop_first()
        {
            self.by_key.remove(&victim);
        }
        false
    }
}

fn zipf_keys(exponent: f64, len: usize, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(KEYS as f64, exponent).expect("valid Zipf parameters");
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| zipf.sample(&mut rng) as u64).collect()
}

/// Hit ratios of (strata-cache, LRU) on a look-aside replay of `trace`.
fn replay(trace: &[u64]) -> (f64, f64) {
    let cache: Cache<u64, u64> = Cache::new(CAPACITY);
    let mut lru = Lru::new(CAPACITY as usize);
    let (mut ours, mut theirs) = (0u64, 0u64);
    for &k in trace {
        if cache.get(&k).is_some() {
            ours += 1;
        } else {
            cache.insert(k, k);
        }
        theirs += u64::from(lru.access(k));
    }
    let n = trace.len() as f64;
    (ours as f64 / n, theirs as f64 / n)
}

#[test]
fn beats_lru_on_zipf() {
    let trace = zipf_keys(0.9, 200_000, 1);
    let (ours, lru) = replay(&trace);
    assert!(ours > lru, "strata {ours:.4} vs lru {lru:.4}");
}

#[test]
fn beats_lru_on_a_scan_polluted_workload() {
    // Zipf traffic in bursts, each followed by a scan of never-seen keys twice the cache's size.
    let zipf = zipf_keys(0.9, 200_000, 2);
    let mut trace = Vec::new();
    let mut next_scan_key = KEYS + 1;
    for burst in zipf.chunks(10_000) {
        trace.extend_from_slice(burst);
        for _ in 0..2 * CAPACITY {
            trace.push(next_scan_key);
            next_scan_key += 1;
        }
    }
    let (ours, lru) = replay(&trace);
    // Scans flush an LRU every time; the frequency filter turns them away, so the margin is wide.
    assert!(ours > lru * 1.2, "strata {ours:.4} vs lru {lru:.4}");
}
