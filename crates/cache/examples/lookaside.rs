//! Look-aside replay for profiling: the instruction-count measure behind the cache section of
//! `docs/benchmarks.md`.
//!
//! Replays 4M Zipf-distributed keys over 1M distinct keys against a cache of 10,000 entries on one thread;
//! every miss inserts the key (the `throughput/zipf1.0-miss` pattern of `strata-bench cache`). Usage:
//!
//! ```text
//! cargo build --release -p strata-cache --example lookaside
//! valgrind --tool=callgrind target/release/examples/lookaside strata 1.0
//! valgrind --tool=callgrind target/release/examples/lookaside quick 1.0   # quick_cache, same trace
//! valgrind --tool=callgrind target/release/examples/lookaside none 1.0    # trace generation alone
//! ```
//!
//! Subtract the `none` run's count from the others. The default hasher's seed depends on addresses, so a
//! run's count depends a little (±0.2%) on the stack layout: average three runs with environments of
//! different sizes (for example `PAD=a`, `PAD=aaaa…` of 40 and of 130 characters). `N=<ops>` changes the
//! trace length. Wall-clock numbers printed here are only a sanity check; `strata-bench cache` is the
//! benchmark.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};

/// Distinct keys of the trace.
const KEYS: u64 = 1_000_000;
/// Cache capacity: 1% of the keys.
const CAPACITY: u64 = 10_000;

/// A bijection on u64, so that popular ranks are not numerically adjacent keys (as in `strata-bench`).
fn scramble(x: u64) -> u64 {
    let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 31)
}

fn trace(exponent: f64, len: usize) -> Result<Vec<u64>, rand_distr::ZipfError> {
    let zipf = Zipf::new(KEYS as f64, exponent)?;
    let mut rng = StdRng::seed_from_u64(2);
    Ok((0..len)
        .map(|_| scramble(zipf.sample(&mut rng) as u64))
        .collect())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let system = args.get(1).map_or("strata", String::as_str);
    let exponent: f64 = args.get(2).map_or(Ok(1.0), |s| s.parse())?;
    let len: usize = std::env::var("N").map_or(Ok(4_000_000), |s| s.parse())?;
    let keys = trace(exponent, len)?;
    let mut hits = 0u64;
    let start = std::time::Instant::now();
    match system {
        "strata" => {
            let cache = strata_cache::Cache::<u64, u64>::new(CAPACITY);
            for &k in &keys {
                if cache.get(&k).is_some() {
                    hits += 1;
                } else {
                    cache.insert(k, k);
                }
            }
        }
        "quick" => {
            let cache = quick_cache::sync::Cache::<u64, u64>::new(CAPACITY as usize);
            for &k in &keys {
                if cache.get(&k).is_some() {
                    hits += 1;
                } else {
                    cache.insert(k, k);
                }
            }
        }
        "none" => {}
        other => return Err(format!("unknown system {other:?}: strata, quick or none").into()),
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    println!(
        "{system}: hit ratio {:.4}, {:.0} ops/s",
        hits as f64 / len.max(1) as f64,
        len as f64 / secs
    );
    Ok(())
}
