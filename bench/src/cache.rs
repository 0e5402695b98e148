//! `strata-bench cache`: strata-cache against moka (sync) and quick_cache.
//!
//! Two kinds of case, each run for the three caches in turn (A B C A B C ...), the median round reported:
//!
//! * **hit_ratio/...**: one thread replays a key trace against a cache holding 1% of the key space; every
//!   miss inserts the key (the usual look-aside pattern). Traces: Zipf 0.8, Zipf 1.0, and Zipf 0.9
//!   interrupted by scans of never-seen keys (3× the capacity each). The note carries `hit_ratio`, and for
//!   peers `strata_minus_peer`; ops/s is the replay speed, misses and inserts included.
//! * **throughput/...**: 1 and 2 threads share one cache. `zipf1.0-miss` is the look-aside pattern on
//!   Zipf 1.0 over 1M keys with capacity 1% (about a third of operations insert); `hits` reads a Zipf 1.0
//!   trace over keys that all fit (the pure hit path). Latency is sampled every 32nd operation.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};

use crate::report::median;
use crate::{Record, SuiteOptions};

const SUITE: &str = "cache";
/// Distinct keys in the Zipf traces.
const KEY_SPACE: u64 = 1_000_000;
/// Cache capacity for the look-aside cases: 1% of the key space.
const CAPACITY: u64 = KEY_SPACE / 100;
/// Keys of the pure-hit case.
const HIT_KEYS: u64 = 100_000;
/// Capacity of the pure-hit case: 20% headroom, because a sharded cache splits its capacity evenly and
/// hashing never spreads keys perfectly evenly; without it a few keys would not fit and the case would
/// measure misses.
const HIT_CAPACITY: u64 = HIT_KEYS + HIT_KEYS / 5;
/// One in this many operations is timed, so timing costs little of the throughput it measures.
const LATENCY_SAMPLE_EVERY: usize = 32;

/// The operations the benchmark needs from each cache, monomorphised per cache so no dispatch is measured.
trait BenchCache: Send + Sync + 'static {
    const NAME: &'static str;
    fn with_capacity(capacity: u64) -> Self;
    fn get(&self, key: u64) -> Option<u64>;
    fn insert(&self, key: u64, value: u64);
}

struct Strata(strata_cache::Cache<u64, u64>);
struct Moka(moka::sync::Cache<u64, u64>);
struct Quick(quick_cache::sync::Cache<u64, u64>);

impl BenchCache for Strata {
    const NAME: &'static str = "strata";
    fn with_capacity(capacity: u64) -> Self {
        Self(strata_cache::Cache::new(capacity))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
}

impl BenchCache for Moka {
    const NAME: &'static str = "moka";
    fn with_capacity(capacity: u64) -> Self {
        Self(moka::sync::Cache::new(capacity))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
}

impl BenchCache for Quick {
    const NAME: &'static str = "quick_cache";
    fn with_capacity(capacity: u64) -> Self {
        Self(quick_cache::sync::Cache::new(
            usize::try_from(capacity).unwrap_or(usize::MAX),
        ))
    }
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.get(&key)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        self.0.insert(key, value);
    }
}

/// Sizes of one run.
struct Sizes {
    trace_ops: usize,
    thread_ops: usize,
}

/// Runs the cache suite.
pub fn run(opts: &SuiteOptions) -> anyhow::Result<Vec<Record>> {
    let sizes = if opts.quick {
        Sizes {
            trace_ops: 600_000,
            thread_ops: 400_000,
        }
    } else {
        Sizes {
            trace_ops: 4_000_000,
            thread_ops: 2_000_000,
        }
    };
    let traces = [
        (
            "hit_ratio/zipf0.8",
            zipf_trace(0.8, KEY_SPACE, sizes.trace_ops, 1)?,
        ),
        (
            "hit_ratio/zipf1.0",
            zipf_trace(1.0, KEY_SPACE, sizes.trace_ops, 2)?,
        ),
        (
            "hit_ratio/zipf0.9+scans",
            scan_polluted_trace(sizes.trace_ops, 3)?,
        ),
    ];
    let thread_counts = [1usize, 2];
    let throughput_cases = 2 * thread_counts.len();
    let steps = (traces.len() + throughput_cases) * opts.rounds * 3;
    let bar = opts.progress(steps as u64, "cache");
    let mut records = Vec::new();

    for (case, trace) in &traces {
        let mut rounds: [Vec<(f64, f64)>; 3] = Default::default();
        for _ in 0..opts.rounds {
            rounds[0].push(replay::<Strata>(trace));
            bar.inc(1);
            rounds[1].push(replay::<Moka>(trace));
            bar.inc(1);
            rounds[2].push(replay::<Quick>(trace));
            bar.inc(1);
        }
        let medians: Vec<(f64, f64)> = rounds.iter().map(|r| median_pair(r)).collect();
        let strata_ratio = medians[0].0;
        for (i, name) in [Strata::NAME, Moka::NAME, Quick::NAME].iter().enumerate() {
            let (ratio, ops) = medians[i];
            let mut r = Record::new(SUITE, case, name)
                .ops(ops)
                .note("hit_ratio", format!("{ratio:.4}"));
            if i > 0 {
                r = r.note("strata_minus_peer", format!("{:+.4}", strata_ratio - ratio));
            }
            records.push(
                r.note("keys", KEY_SPACE)
                    .note("capacity", CAPACITY)
                    .note("ops", trace.len()),
            );
        }
    }

    // Per-thread traces; thread i of a case uses trace i, so every system replays the same keys.
    let miss_traces: Vec<Vec<u64>> = (0..2)
        .map(|i| zipf_trace(1.0, KEY_SPACE, sizes.thread_ops, 10 + i))
        .collect::<anyhow::Result<_>>()?;
    let hit_traces: Vec<Vec<u64>> = (0..2)
        .map(|i| zipf_trace(1.0, HIT_KEYS, sizes.thread_ops, 20 + i))
        .collect::<anyhow::Result<_>>()?;
    let warmup = zipf_trace(1.0, KEY_SPACE, (CAPACITY * 20) as usize, 30)?;
    let miss_traces = Arc::new(miss_traces);
    let hit_traces = Arc::new(hit_traces);
    for &threads in &thread_counts {
        for (case, kind) in [
            (
                format!("throughput/zipf1.0-miss {threads}t"),
                Kind::LookAside,
            ),
            (format!("throughput/hits {threads}t"), Kind::Hits),
        ] {
            let (traces, capacity) = match kind {
                Kind::LookAside => (&miss_traces, CAPACITY),
                Kind::Hits => (&hit_traces, HIT_CAPACITY),
            };
            let mut rounds: [Vec<Throughput>; 3] = Default::default();
            for _ in 0..opts.rounds {
                rounds[0].push(throughput::<Strata>(
                    kind, capacity, &warmup, traces, threads,
                )?);
                bar.inc(1);
                rounds[1].push(throughput::<Moka>(
                    kind, capacity, &warmup, traces, threads,
                )?);
                bar.inc(1);
                rounds[2].push(throughput::<Quick>(
                    kind, capacity, &warmup, traces, threads,
                )?);
                bar.inc(1);
            }
            for (i, name) in [Strata::NAME, Moka::NAME, Quick::NAME].iter().enumerate() {
                let m = Throughput::median(&rounds[i]);
                records.push(
                    Record::new(SUITE, &case, name)
                        .ops(m.ops_per_sec)
                        .latency_us(m.p50_us, m.p99_us)
                        .note("hit_ratio", format!("{:.3}", m.hit_ratio))
                        .note("threads", threads)
                        .note("capacity", capacity)
                        .note("ops_per_thread", sizes.thread_ops),
                );
            }
        }
    }
    bar.finish_and_clear();
    Ok(records)
}

/// Replays `trace` look-aside style on a fresh cache; returns (hit ratio, ops/s).
fn replay<C: BenchCache>(trace: &[u64]) -> (f64, f64) {
    let cache = C::with_capacity(CAPACITY);
    let mut hits = 0u64;
    let start = Instant::now();
    for &k in trace {
        if cache.get(k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, k);
        }
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    (
        hits as f64 / trace.len().max(1) as f64,
        trace.len() as f64 / elapsed,
    )
}

fn median_pair(rounds: &[(f64, f64)]) -> (f64, f64) {
    let mut a: Vec<f64> = rounds.iter().map(|r| r.0).collect();
    let mut b: Vec<f64> = rounds.iter().map(|r| r.1).collect();
    (median(&mut a).unwrap_or(0.0), median(&mut b).unwrap_or(0.0))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// get; on a miss, insert.
    LookAside,
    /// get only, every key present.
    Hits,
}

#[derive(Debug, Clone, Copy, Default)]
struct Throughput {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    hit_ratio: f64,
}

impl Throughput {
    fn median(rounds: &[Self]) -> Self {
        let pick = |f: fn(&Self) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(f).collect();
            median(&mut v).unwrap_or(0.0)
        };
        Self {
            ops_per_sec: pick(|t| t.ops_per_sec),
            p50_us: pick(|t| t.p50_us),
            p99_us: pick(|t| t.p99_us),
            hit_ratio: pick(|t| t.hit_ratio),
        }
    }
}

/// Fills a fresh cache, then runs `threads` threads over their traces at once.
fn throughput<C: BenchCache>(
    kind: Kind,
    capacity: u64,
    warmup: &[u64],
    traces: &Arc<Vec<Vec<u64>>>,
    threads: usize,
) -> anyhow::Result<Throughput> {
    let cache = Arc::new(C::with_capacity(capacity));
    match kind {
        Kind::LookAside => {
            for &k in warmup {
                if cache.get(k).is_none() {
                    cache.insert(k, k);
                }
            }
        }
        Kind::Hits => {
            for k in 0..HIT_KEYS {
                cache.insert(scramble(k + 1), k);
            }
            // Let every cache settle (moka applies inserts in batches) before the read-only phase.
            for k in 0..HIT_KEYS {
                let _ = cache.get(scramble(k + 1));
            }
        }
    }
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let cache = Arc::clone(&cache);
            let traces = Arc::clone(traces);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> anyhow::Result<(Histogram<u64>, u64, Duration)> {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
                let trace = traces.get(t).map(Vec::as_slice).unwrap_or(&[]);
                let mut hits = 0u64;
                barrier.wait();
                let start = Instant::now();
                for (i, &k) in trace.iter().enumerate() {
                    let timed = i % LATENCY_SAMPLE_EVERY == 0;
                    let t0 = timed.then(Instant::now);
                    match kind {
                        Kind::LookAside => {
                            if cache.get(k).is_some() {
                                hits += 1;
                            } else {
                                cache.insert(k, k);
                            }
                        }
                        Kind::Hits => {
                            hits += u64::from(cache.get(k).is_some());
                        }
                    }
                    if let Some(t0) = t0 {
                        let ns = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        hist.saturating_record(ns.max(1));
                    }
                }
                Ok((hist, hits, start.elapsed()))
            })
        })
        .collect();
    barrier.wait();
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut ops, mut hits, mut slowest) = (0u64, 0u64, Duration::ZERO);
    for (t, h) in handles.into_iter().enumerate() {
        let (hist, thread_hits, elapsed) = h
            .join()
            .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))??;
        total.add(&hist)?;
        ops += traces.get(t).map_or(0, |v| v.len() as u64);
        hits += thread_hits;
        slowest = slowest.max(elapsed);
    }
    Ok(Throughput {
        ops_per_sec: ops as f64 / slowest.as_secs_f64().max(1e-9),
        p50_us: total.value_at_quantile(0.50) as f64 / 1000.0,
        p99_us: total.value_at_quantile(0.99) as f64 / 1000.0,
        hit_ratio: hits as f64 / ops.max(1) as f64,
    })
}

/// `len` keys drawn from Zipf(`exponent`) over `keys` ranks; rank r becomes key `scramble(r)` so that
/// popular keys are not numerically adjacent.
fn zipf_trace(exponent: f64, keys: u64, len: usize, seed: u64) -> anyhow::Result<Vec<u64>> {
    let zipf = Zipf::new(keys as f64, exponent)?;
    let mut rng = StdRng::seed_from_u64(seed);
    Ok((0..len)
        .map(|_| scramble(zipf.sample(&mut rng) as u64))
        .collect())
}

/// Zipf 0.9 traffic in bursts of 20× the capacity, each followed by a scan of 3× the capacity of keys never
/// seen before (the pattern of a batch job or crawler walking a table).
fn scan_polluted_trace(len: usize, seed: u64) -> anyhow::Result<Vec<u64>> {
    let burst = (CAPACITY * 20) as usize;
    let scan = (CAPACITY * 3) as usize;
    let zipf = zipf_trace(0.9, KEY_SPACE, len, seed)?;
    let mut out = Vec::with_capacity(len);
    let mut next_scan_key = KEY_SPACE + 1;
    let mut z = zipf.into_iter();
    while out.len() < len {
        out.extend(z.by_ref().take(burst.min(len - out.len())));
        for _ in 0..scan.min(len - out.len()) {
            out.push(scramble(next_scan_key));
            next_scan_key += 1;
        }
    }
    Ok(out)
}

/// A bijection on u64 (an odd multiply and xor-shifts), to spread ranks over the key space.
fn scramble(x: u64) -> u64 {
    let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ (x >> 31)
}
