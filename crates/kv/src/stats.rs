//! Per-command statistics (`INFO commandstats`, `INFO errorstats`, `/metrics`), the slow log, and the
//! sampled operations-per-second INFO reports.
//!
//! The hot path is one `Instant` pair and a few adds into a fixed array indexed by the command's position
//! in the dispatch table; the error map and the slow log take a lock only when a command failed or was
//! slow. The counters every call changes are kept per thread ([`shard`]): a thread that owns its shard adds
//! with a plain load and store, where the locked add shared by all threads cost ~20 cycles each, three or
//! four per command (~3% of the worker under PFADD -P16). Readers sum the shards.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use strata_resp::Arg;

use bytes::Bytes;
use parking_lot::Mutex;

/// Counter shards: shard 0 is shared by threads without one of their own (locked adds); each of the others
/// belongs to one thread at a time.
const SHARDS: usize = 8;

/// The shards threads hold, as bits.
static SHARDS_TAKEN: AtomicU32 = AtomicU32::new(0);

/// A thread's claim on a shard, given back when the thread ends.
struct ShardClaim(usize);

impl Drop for ShardClaim {
    fn drop(&mut self) {
        if self.0 != 0 {
            SHARDS_TAKEN.fetch_and(!(1 << self.0), Ordering::AcqRel);
        }
    }
}

thread_local! {
    static SHARD: ShardClaim = claim_shard();
}

fn claim_shard() -> ShardClaim {
    let mut taken = SHARDS_TAKEN.load(Ordering::Acquire);
    loop {
        // Shard 0 is never claimed.
        let free = !taken & ((1u32 << SHARDS) - 2);
        if free == 0 {
            return ShardClaim(0);
        }
        let bit = free.trailing_zeros();
        match SHARDS_TAKEN.compare_exchange_weak(
            taken,
            taken | (1 << bit),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return ShardClaim(bit as usize),
            Err(now) => taken = now,
        }
    }
}

/// The calling thread's shard: its own (its adds are a load and a store, since no other thread adds to
/// it), or 0, the shared one, when every shard is held.
pub fn shard() -> usize {
    SHARD.try_with(|s| s.0).unwrap_or(0)
}

/// Adds `n` to `counter` of shard `shard` (see [`shard`]).
#[inline]
fn add_in(shard: usize, counter: &AtomicU64, n: u64) {
    if shard == 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    } else {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

/// A count many threads add to, kept per thread (see [`shard`]).
#[derive(Debug, Default)]
pub struct Counter {
    /// One cache line each, so threads adding to their own do not contend for a line.
    shards: [Padded; SHARDS],
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicU64);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        let s = shard();
        add_in(s, &self.shards[s].0, n);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }

    /// Sets the count to zero. An add racing with it on another thread may survive it.
    pub fn reset(&self) {
        for s in &self.shards {
            s.0.store(0, Ordering::Relaxed);
        }
    }
}

/// The counters of one command that every call changes, in one shard.
#[derive(Debug)]
struct CallCounters {
    /// Times the command ran (a blocking command counts once, when it is served or times out).
    calls: AtomicU64,
    /// Microseconds spent running it.
    usec: AtomicU64,
    /// Calls that ran and replied with an error.
    failed_calls: AtomicU64,
    /// Calls by latency: bucket `b` counts calls that took at most 2^b microseconds (and more than
    /// 2^(b-1)), for `LATENCY HISTOGRAM` and `INFO latencystats`.
    latency: [AtomicU64; LATENCY_BUCKETS],
}

impl Default for CallCounters {
    fn default() -> Self {
        CallCounters {
            calls: AtomicU64::new(0),
            usec: AtomicU64::new(0),
            failed_calls: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// Latency buckets per command: 1 µs to 2^39 µs (about six days), doubling.
pub const LATENCY_BUCKETS: usize = 40;

/// The bucket of a call that took `usec` microseconds: the smallest `b` with `usec <= 2^b`.
fn latency_bucket(usec: u64) -> usize {
    let b = if usec <= 1 {
        0
    } else {
        (64 - (usec - 1).leading_zeros()) as usize
    };
    b.min(LATENCY_BUCKETS - 1)
}

/// A snapshot of one command's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSnapshot {
    /// The command's lower-case name.
    pub name: &'static str,
    /// Calls.
    pub calls: u64,
    /// Total microseconds.
    pub usec: u64,
    /// Refused calls.
    pub rejected_calls: u64,
    /// Failed calls.
    pub failed_calls: u64,
}

/// Most distinct error codes `errorstats` keeps (Redis's limit); later new codes are not tracked.
const MAX_ERROR_CODES: usize = 128;

/// Every command's counters plus the error-code counts.
#[derive(Debug)]
pub struct CommandStats {
    /// Per shard (see [`shard`]), each command's call counters.
    shards: Vec<Vec<CallCounters>>,
    /// Each command's calls refused before running (arity, authentication, subscribed context, ...).
    rejected: Vec<AtomicU64>,
    errors: Mutex<BTreeMap<String, u64>>,
    /// Error replies of any kind (`total_error_replies`).
    pub error_replies: AtomicU64,
    /// `latency-tracking`: whether calls are counted in the latency histograms.
    pub latency_tracking: std::sync::atomic::AtomicBool,
}

impl CommandStats {
    /// Counters for `commands` commands, all zero.
    pub fn new(commands: usize) -> Self {
        CommandStats {
            shards: (0..SHARDS)
                .map(|_| (0..commands).map(|_| CallCounters::default()).collect())
                .collect(),
            rejected: (0..commands).map(|_| AtomicU64::new(0)).collect(),
            errors: Mutex::new(BTreeMap::new()),
            error_replies: AtomicU64::new(0),
            latency_tracking: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Records one call of command `index` that took `elapsed`, and whether it replied with an error.
    pub fn record_call(&self, index: usize, elapsed: Duration, error: Option<&[u8]>) {
        let shard = shard();
        if let Some(c) = self.shards[shard].get(index) {
            let usec = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            add_in(shard, &c.calls, 1);
            add_in(shard, &c.usec, usec);
            if self.latency_tracking.load(Ordering::Relaxed) {
                add_in(shard, &c.latency[latency_bucket(usec)], 1);
            }
            if error.is_some() {
                add_in(shard, &c.failed_calls, 1);
            }
        }
        if let Some(message) = error {
            self.record_error(message);
        }
    }

    /// Records a failed call whose error was already counted where it happened (a script's `redis.call`).
    pub fn record_failed_call(&self, index: usize, elapsed: Duration) {
        self.record_call(index, elapsed, None);
        let shard = shard();
        if let Some(c) = self.shards[shard].get(index) {
            add_in(shard, &c.failed_calls, 1);
        }
    }

    /// Records a call of command `index` refused before it ran, with its error reply.
    pub fn record_rejected(&self, index: Option<usize>, message: &[u8]) {
        if let Some(c) = index.and_then(|i| self.rejected.get(i)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.record_error(message);
    }

    /// Counts an error reply under its code (the first word: `ERR`, `WRONGTYPE`, ...).
    pub fn record_error(&self, message: &[u8]) {
        self.error_replies.fetch_add(1, Ordering::Relaxed);
        let code_end = message
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(message.len());
        let code = String::from_utf8_lossy(&message[..code_end]);
        let mut errors = self.errors.lock();
        if let Some(n) = errors.get_mut(code.as_ref()) {
            *n += 1;
        } else if errors.len() < MAX_ERROR_CODES {
            errors.insert(code.into_owned(), 1);
        }
    }

    /// Commands with any activity, in table order, named by `names`.
    pub fn snapshot(&self, names: impl Iterator<Item = &'static str>) -> Vec<CommandSnapshot> {
        self.rejected
            .iter()
            .enumerate()
            .zip(names)
            .map(|((i, rejected), name)| CommandSnapshot {
                name,
                calls: self.sum(i, |c| &c.calls),
                usec: self.sum(i, |c| &c.usec),
                rejected_calls: rejected.load(Ordering::Relaxed),
                failed_calls: self.sum(i, |c| &c.failed_calls),
            })
            .filter(|s| s.calls + s.rejected_calls + s.failed_calls > 0)
            .collect()
    }

    /// Command `index`'s latency histogram as `LATENCY HISTOGRAM` reports it: its calls, and for each
    /// bucket from the lowest to the highest one used, the bucket's upper bound in microseconds and the
    /// number of calls that took at most that long. `None` when the command has no tracked calls.
    pub fn histogram(&self, index: usize) -> Option<(u64, Vec<(u64, u64)>)> {
        if index >= self.rejected.len() {
            return None;
        }
        let counts: Vec<u64> = (0..LATENCY_BUCKETS)
            .map(|b| self.sum(index, |c| &c.latency[b]))
            .collect();
        let first = counts.iter().position(|&n| n > 0)?;
        let last = counts.iter().rposition(|&n| n > 0)?;
        let mut cumulative = 0;
        let buckets = (first..=last)
            .map(|b| {
                cumulative += counts[b];
                (1u64 << b, cumulative)
            })
            .collect();
        Some((self.sum(index, |c| &c.calls), buckets))
    }

    /// Command `index`'s `counter` summed over the shards.
    fn sum(&self, index: usize, counter: impl Fn(&CallCounters) -> &AtomicU64) -> u64 {
        self.shards.iter().fold(0u64, |sum, shard| {
            sum.wrapping_add(
                shard
                    .get(index)
                    .map_or(0, |c| counter(c).load(Ordering::Relaxed)),
            )
        })
    }

    /// Latency percentiles of command `index` in microseconds (each the upper bound of the bucket holding
    /// it, as precise as the histogram is); `None` when the command has no tracked calls.
    pub fn percentiles(&self, index: usize, percentiles: &[f64]) -> Option<Vec<f64>> {
        let (_, buckets) = self.histogram(index)?;
        let total = buckets.last().map(|&(_, n)| n)?;
        Some(
            percentiles
                .iter()
                .map(|&p| {
                    let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
                    buckets
                        .iter()
                        .find(|&&(_, n)| n >= rank)
                        .or(buckets.last())
                        .map_or(0.0, |&(usec, _)| usec as f64)
                })
                .collect(),
        )
    }

    /// Error codes and their counts.
    pub fn errors(&self) -> Vec<(String, u64)> {
        self.errors
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        // A call being counted on another thread meanwhile may survive the reset.
        for c in self.shards.iter().flatten() {
            c.calls.store(0, Ordering::Relaxed);
            c.usec.store(0, Ordering::Relaxed);
            c.failed_calls.store(0, Ordering::Relaxed);
            for b in &c.latency {
                b.store(0, Ordering::Relaxed);
            }
        }
        for r in &self.rejected {
            r.store(0, Ordering::Relaxed);
        }
        self.errors.lock().clear();
        self.error_replies.store(0, Ordering::Relaxed);
    }
}

/// Most arguments a slow-log entry keeps (Redis's `SLOWLOG_ENTRY_MAX_ARGC`).
const SLOWLOG_MAX_ARGS: usize = 32;
/// Longest argument a slow-log entry keeps (Redis's `SLOWLOG_ENTRY_MAX_STRING`).
const SLOWLOG_MAX_ARG_BYTES: usize = 128;

/// One slow-log entry.
#[derive(Debug, Clone)]
pub struct SlowEntry {
    /// Increasing id.
    pub id: u64,
    /// Unix seconds when the command ran.
    pub unix_secs: u64,
    /// How long it ran, in microseconds.
    pub micros: u64,
    /// The arguments, shortened as Redis shortens them.
    pub args: Vec<Bytes>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The client's name.
    pub name: Bytes,
}

/// The slow log: commands that ran longer than `slowlog-log-slower-than`, newest first.
#[derive(Debug)]
pub struct SlowLog {
    entries: Mutex<VecDeque<SlowEntry>>,
    next_id: AtomicU64,
    /// `slowlog-log-slower-than` in microseconds; negative disables the log, 0 logs every command.
    pub slower_than_us: AtomicI64,
    /// `slowlog-max-len`.
    pub max_len: AtomicU64,
}

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog {
            entries: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            slower_than_us: AtomicI64::new(10_000),
            max_len: AtomicU64::new(128),
        }
    }
}

impl SlowLog {
    /// Whether a command that took `elapsed` belongs in the log.
    pub fn is_slow(&self, elapsed: Duration) -> bool {
        let threshold = self.slower_than_us.load(Ordering::Relaxed);
        threshold >= 0 && i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX) >= threshold
    }

    /// Adds an entry (the caller checked [`SlowLog::is_slow`]).
    pub fn push(&self, args: &[Arg], elapsed: Duration, peer: SocketAddr, name: Bytes) {
        let mut kept: Vec<Bytes> = Vec::with_capacity(args.len().min(SLOWLOG_MAX_ARGS));
        for (i, a) in args.iter().enumerate() {
            if i == SLOWLOG_MAX_ARGS - 1 && args.len() > SLOWLOG_MAX_ARGS {
                kept.push(Bytes::from(format!(
                    "... ({} more arguments)",
                    args.len() - SLOWLOG_MAX_ARGS + 1
                )));
                break;
            }
            if a.len() > SLOWLOG_MAX_ARG_BYTES {
                let mut s = a[..SLOWLOG_MAX_ARG_BYTES].to_vec();
                s.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - SLOWLOG_MAX_ARG_BYTES).as_bytes(),
                );
                kept.push(Bytes::from(s));
            } else {
                kept.push(a.to_bytes());
            }
        }
        let entry = SlowEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            unix_secs: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            args: kept,
            peer,
            name,
        };
        let max = usize::try_from(self.max_len.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let mut entries = self.entries.lock();
        entries.push_front(entry);
        entries.truncate(max);
    }

    /// The newest `n` entries.
    pub fn newest(&self, n: usize) -> Vec<SlowEntry> {
        self.entries.lock().iter().take(n).cloned().collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `SLOWLOG RESET`.
    pub fn reset(&self) {
        self.entries.lock().clear();
    }

    /// Applies a new `slowlog-max-len`, dropping the oldest entries past it.
    pub fn set_max_len(&self, max: u64) {
        self.max_len.store(max, Ordering::Relaxed);
        self.entries
            .lock()
            .truncate(usize::try_from(max).unwrap_or(usize::MAX));
    }
}

/// Samples of the command counter taken every 100 ms, for `instantaneous_ops_per_sec` (Redis averages
/// the last 16 samples the same way).
#[derive(Debug, Default)]
pub struct OpsSampler {
    samples: Mutex<VecDeque<(std::time::Instant, u64)>>,
}

/// Samples kept.
const OPS_SAMPLES: usize = 16;

impl OpsSampler {
    /// Records the command counter now.
    pub fn sample(&self, commands: u64) {
        let mut s = self.samples.lock();
        s.push_back((std::time::Instant::now(), commands));
        while s.len() > OPS_SAMPLES + 1 {
            s.pop_front();
        }
    }

    /// Commands per second over the sampled window.
    pub fn per_second(&self) -> u64 {
        let s = self.samples.lock();
        match (s.front(), s.back()) {
            (Some(&(t0, c0)), Some(&(t1, c1))) if t1 > t0 => {
                let secs = t1.duration_since(t0).as_secs_f64();
                (c1.saturating_sub(c0) as f64 / secs).round() as u64
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_more_threads_than_shards_all_add_up() {
        // More threads than shards: some own one (plain adds), the rest share shard 0 (locked adds).
        let counter = Counter::default();
        let stats = CommandStats::new(3);
        let threads = SHARDS * 2;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..10_000 {
                        counter.add(1);
                        stats.record_call(1, Duration::from_micros(3), None);
                    }
                    stats.record_call(2, Duration::from_micros(1), Some(b"ERR x"));
                });
            }
        });
        let n = (threads * 10_000) as u64;
        assert_eq!(counter.get(), n);
        let snap = stats.snapshot(["a", "b", "c"].into_iter());
        assert_eq!(snap.len(), 2);
        assert_eq!((snap[0].name, snap[0].calls, snap[0].usec), ("b", n, 3 * n));
        assert_eq!(
            (snap[1].calls, snap[1].failed_calls),
            (threads as u64, threads as u64)
        );
        let (calls, buckets) = stats.histogram(1).expect("calls were timed");
        assert_eq!((calls, buckets), (n, vec![(4, n)]));
        counter.reset();
        stats.reset();
        assert_eq!(counter.get(), 0);
        assert!(stats.snapshot(["a", "b", "c"].into_iter()).is_empty());
    }

    #[test]
    fn slowlog_shortens_long_arguments_and_keeps_newest_first() {
        let log = SlowLog::default();
        log.set_max_len(2);
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal address");
        let long = Bytes::from(vec![b'x'; 130]);
        let many: Vec<Bytes> = (0..40).map(|i| Bytes::from(i.to_string())).collect();
        log.push(
            &[strata_resp::Arg::of(&long)],
            Duration::from_micros(5),
            peer,
            Bytes::new(),
        );
        log.push(
            &strata_resp::args_of(&many),
            Duration::from_micros(6),
            peer,
            Bytes::new(),
        );
        log.push(
            &strata_resp::args_of(&many),
            Duration::from_micros(7),
            peer,
            Bytes::new(),
        );
        let entries = log.newest(10);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].id, 2);
        assert_eq!(entries[0].args.len(), 32);
        assert_eq!(&entries[0].args[31][..], b"... (9 more arguments)");
        let log = SlowLog::default();
        log.push(
            &[strata_resp::Arg::borrowed(&[b'x'; 130])],
            Duration::ZERO,
            peer,
            Bytes::new(),
        );
        assert!(log.newest(1)[0].args[0].ends_with(b"... (2 more bytes)"));
    }

    #[test]
    fn error_codes_are_the_first_word() {
        let stats = CommandStats::new(1);
        stats.record_call(0, Duration::from_micros(3), Some(b"WRONGTYPE Operation"));
        stats.record_rejected(Some(0), b"ERR wrong number");
        assert_eq!(
            stats.errors(),
            vec![("ERR".to_owned(), 1), ("WRONGTYPE".to_owned(), 1)]
        );
        let snap = stats.snapshot(["get"].into_iter());
        assert_eq!(snap[0].calls, 1);
        assert_eq!(snap[0].failed_calls, 1);
        assert_eq!(snap[0].rejected_calls, 1);
    }
}

/// The process's resident set size in bytes (0 where `/proc` is not available).
pub fn rss_bytes() -> u64 {
    // Field 2 of /proc/self/statm is resident pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `maxmemory` and `maxmemory-policy`. What counts as used memory and how keys are evicted is in
/// [`crate::evict`].
#[derive(Debug)]
pub struct MemoryLimit {
    limit: AtomicU64,
    policy: parking_lot::Mutex<&'static str>,
}

impl Default for MemoryLimit {
    fn default() -> Self {
        MemoryLimit {
            limit: AtomicU64::new(0),
            policy: parking_lot::Mutex::new("noeviction"),
        }
    }
}

/// The policies `maxmemory-policy` accepts.
pub const MAXMEMORY_POLICIES: &[&str] = &[
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "noeviction",
];

impl MemoryLimit {
    /// The limit in bytes, 0 for none.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Sets the limit (0: none).
    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// The eviction policy's name.
    pub fn policy(&self) -> &'static str {
        *self.policy.lock()
    }

    /// Sets the policy; an unknown name is ignored (CONFIG SET checked it).
    pub fn set_policy(&self, name: &str) {
        if let Some(p) = MAXMEMORY_POLICIES.iter().find(|p| **p == name) {
            *self.policy.lock() = p;
        }
    }
}
