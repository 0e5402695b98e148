//! The generic cell rate algorithm (GCRA): a leaky bucket kept as one number per key, the *theoretical
//! arrival time* (TAT) — when the bucket would be empty again if no more requests came.
//!
//! With an emission interval `T = period / count` (the time one unit of the rate "leaks") and a delay
//! variation tolerance `τ = T × (max_burst + 1)` (the size of the bucket), a request of `q` units at time
//! `now` computes `new_tat = max(tat, now) + q T`. It is allowed if `new_tat − τ ≤ now`, and then the stored
//! TAT becomes `new_tat` (kept for `new_tat − now`, after which the bucket is empty and the key may go);
//! otherwise it is refused and nothing changes.
//!
//! The arithmetic (integer nanoseconds, the emission interval truncated from a float division, `remaining`
//! from microseconds, `retry_after` only when the request could ever fit) is redis-cell's, so `CL.THROTTLE`
//! built on [`Gcra::decide`] gives redis-cell's replies.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::Clock;

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Invalid limiter parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcraError {
    /// `max_burst` is negative.
    NegativeBurst,
    /// `count` is not positive.
    NonPositiveCount,
    /// `period` is not positive.
    NonPositivePeriod,
    /// The parameters overflow nanosecond arithmetic.
    Overflow,
}

impl std::fmt::Display for GcraError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GcraError::NegativeBurst => "max_burst must be zero or positive",
            GcraError::NonPositiveCount => "count per period must be positive",
            GcraError::NonPositivePeriod => "period must be positive",
            GcraError::Overflow => "rate parameters are too large",
        })
    }
}

impl std::error::Error for GcraError {}

/// One limit: `count` units per `period`, with bursts of up to `max_burst + 1` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// `T`, nanoseconds per unit.
    pub emission_interval_ns: i64,
    /// `τ`, the bucket's size in nanoseconds.
    pub delay_tolerance_ns: i64,
    /// `max_burst + 1`: the most units accepted at once.
    pub limit: i64,
}

/// The outcome of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraDecision {
    /// Whether the request was refused.
    pub limited: bool,
    /// `max_burst + 1`.
    pub limit: i64,
    /// Units that could still be taken right now.
    pub remaining: i64,
    /// When refused, how long until the same request would be allowed; `None` when it never fits (larger
    /// than the bucket) or was allowed.
    pub retry_after_ns: Option<i64>,
    /// How long until the bucket is empty again (the stored TAT's time to live).
    pub reset_after_ns: i64,
    /// The TAT to store when allowed (`None` when refused: nothing changes).
    pub new_tat_ns: Option<i64>,
}

impl Gcra {
    /// `count` units per `period_secs` seconds with bursts of `max_burst + 1`.
    pub fn per_period(max_burst: i64, count: i64, period_secs: i64) -> Result<Gcra, GcraError> {
        if max_burst < 0 {
            return Err(GcraError::NegativeBurst);
        }
        if count <= 0 {
            return Err(GcraError::NonPositiveCount);
        }
        if period_secs <= 0 {
            return Err(GcraError::NonPositivePeriod);
        }
        let period_ns = period_secs
            .checked_mul(NANOS_PER_SEC)
            .ok_or(GcraError::Overflow)?;
        // redis-cell divides as floats and truncates.
        let emission = (period_ns as f64 / count as f64) as i64;
        Gcra::new(max_burst, emission)
    }

    /// A limit with an explicit emission interval (nanoseconds per unit).
    pub fn new(max_burst: i64, emission_interval_ns: i64) -> Result<Gcra, GcraError> {
        if max_burst < 0 {
            return Err(GcraError::NegativeBurst);
        }
        let limit = max_burst.checked_add(1).ok_or(GcraError::Overflow)?;
        let delay_tolerance_ns = emission_interval_ns
            .checked_mul(limit)
            .ok_or(GcraError::Overflow)?;
        Ok(Gcra {
            emission_interval_ns,
            delay_tolerance_ns,
            limit,
        })
    }

    /// Decides a request of `quantity` units at `now_ns`, given the stored TAT (`None` if there is none).
    /// `quantity` 0 only looks. Saturating arithmetic: absurd inputs give absurd numbers, never a panic.
    pub fn decide(&self, tat_ns: Option<i64>, now_ns: i64, quantity: i64) -> GcraDecision {
        let increment = self.emission_interval_ns.saturating_mul(quantity);
        let tat = tat_ns.unwrap_or(now_ns);
        let new_tat = tat.max(now_ns).saturating_add(increment);
        let allow_at = new_tat.saturating_sub(self.delay_tolerance_ns);
        let diff = now_ns.saturating_sub(allow_at);
        let (limited, retry_after_ns, ttl, stored) = if diff < 0 {
            let retry = (increment <= self.delay_tolerance_ns).then(|| diff.saturating_neg());
            (true, retry, tat.saturating_sub(now_ns), None)
        } else {
            (false, None, new_tat.saturating_sub(now_ns), Some(new_tat))
        };
        let next = self.delay_tolerance_ns.saturating_sub(ttl);
        let remaining = if next > self.emission_interval_ns.saturating_neg() {
            // Microseconds, truncated, then a float division truncated: redis-cell's rounding.
            ((next / 1000) as f64 / (self.emission_interval_ns / 1000) as f64) as i64
        } else {
            0
        };
        GcraDecision {
            limited,
            limit: self.limit,
            remaining,
            retry_after_ns,
            reset_after_ns: ttl,
            new_tat_ns: stored,
        }
    }
}

/// Nanoseconds as whole seconds for a reply, rounded up when there is at least a millisecond left over (so
/// a fast client does not retry too early), as redis-cell reports them; `None` is -1.
pub fn reply_seconds(ns: Option<i64>) -> i64 {
    let Some(ns) = ns else { return -1 };
    let secs = ns / NANOS_PER_SEC;
    let sub_ms = (ns % NANOS_PER_SEC) / 1_000_000;
    if sub_ms > 0 { secs + 1 } else { secs }
}

/// A keyed GCRA limiter in memory (the gateway's per-client limits): one TAT per key, forgotten once its
/// bucket is empty.
#[derive(Debug)]
pub struct GcraLimiter<K> {
    gcra: Gcra,
    clock: Arc<dyn Clock>,
    tats: Mutex<HashMap<K, i64>>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> GcraLimiter<K> {
    /// A limiter applying `gcra` per key, reading `clock`, pruning empty buckets once it holds more than
    /// `max_keys` keys.
    pub fn new(gcra: Gcra, clock: Arc<dyn Clock>, max_keys: usize) -> Self {
        GcraLimiter {
            gcra,
            clock,
            tats: Mutex::new(HashMap::new()),
            max_keys: max_keys.max(1),
        }
    }

    /// Takes `quantity` units for `key` if the limit allows.
    pub fn check(&self, key: &K, quantity: i64) -> GcraDecision {
        let now = self.clock.now_ns();
        let mut tats = self.tats.lock();
        let stored = tats.get(key).copied().filter(|&t| t > now);
        let d = self.gcra.decide(stored, now, quantity);
        if let Some(t) = d.new_tat_ns {
            if tats.len() >= self.max_keys && !tats.contains_key(key) {
                tats.retain(|_, &mut t| t > now);
            }
            tats.insert(key.clone(), t);
        }
        d
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.tats.lock().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = NANOS_PER_SEC;
    const MS: i64 = 1_000_000;

    /// redis-cell's own table: limit 5, one per second.
    #[test]
    fn redis_cell_reference_sequence() {
        let g = Gcra::per_period(4, 1, 1).expect("valid");
        let start = 1_000 * S;
        let mut tat = None;
        // (now offset ms, quantity, limited, remaining, reset_after ms, retry_after ms)
        type Case = (i64, i64, bool, i64, i64, Option<i64>);
        let cases: &[Case] = &[
            (0, 6, true, 5, 0, None),
            (0, 1, false, 4, 1000, None),
            (0, 1, false, 3, 2000, None),
            (0, 1, false, 2, 3000, None),
            (0, 1, false, 1, 4000, None),
            (0, 1, false, 0, 5000, None),
            (0, 1, true, 0, 5000, Some(1000)),
            (3000, 1, false, 2, 3000, None),
            (3100, 1, false, 1, 3900, None),
            (4000, 1, false, 1, 4000, None),
            (8000, 1, false, 4, 1000, None),
            (9500, 1, false, 4, 1000, None),
            (9500, 0, false, 4, 1000, None),
            (9500, 2, false, 2, 3000, None),
            (9500, 5, true, 2, 3000, Some(3000)),
        ];
        for (i, &(at, q, limited, remaining, reset_ms, retry_ms)) in cases.iter().enumerate() {
            let now = start + at * MS;
            // The store forgets a TAT once it is in the past (its TTL ran out).
            let live = tat.filter(|&t| t > now);
            let d = g.decide(live, now, q);
            assert_eq!(d.limited, limited, "case {i}");
            assert_eq!(d.remaining, remaining, "case {i}");
            assert_eq!(d.reset_after_ns, reset_ms * MS, "case {i}");
            assert_eq!(d.retry_after_ns, retry_ms.map(|r| r * MS), "case {i}");
            if let Some(t) = d.new_tat_ns {
                tat = Some(t);
            }
        }
    }

    #[test]
    fn reply_seconds_round_up_partial_seconds() {
        assert_eq!(reply_seconds(None), -1);
        assert_eq!(reply_seconds(Some(0)), 0);
        assert_eq!(reply_seconds(Some(S)), 1);
        assert_eq!(reply_seconds(Some(S + MS)), 2);
        assert_eq!(reply_seconds(Some(S + MS / 2)), 1);
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert_eq!(Gcra::per_period(-1, 1, 1), Err(GcraError::NegativeBurst));
        assert_eq!(Gcra::per_period(1, 0, 1), Err(GcraError::NonPositiveCount));
        assert_eq!(Gcra::per_period(1, 1, 0), Err(GcraError::NonPositivePeriod));
        assert_eq!(Gcra::per_period(1, 1, i64::MAX), Err(GcraError::Overflow));
        assert_eq!(Gcra::per_period(i64::MAX, 1, 1), Err(GcraError::Overflow));
    }

    #[test]
    fn keyed_limiter_prunes_empty_buckets() {
        let clock = Arc::new(crate::ManualClock::new(0));
        let l = GcraLimiter::new(Gcra::per_period(0, 1, 1).expect("valid"), clock.clone(), 2);
        assert!(!l.check(&"a", 1).limited);
        assert!(l.check(&"a", 1).limited);
        assert!(!l.check(&"b", 1).limited);
        clock.advance(std::time::Duration::from_secs(2));
        assert!(!l.check(&"c", 1).limited);
        assert_eq!(l.len(), 1);
        assert!(!l.check(&"a", 1).limited);
    }

    proptest::proptest! {
        /// Over any window, allowed units never exceed the burst plus what the rate refills.
        #[test]
        fn never_admits_more_than_burst_plus_rate(
            burst in 0i64..10,
            count in 1i64..20,
            period in 1i64..5,
            steps in proptest::collection::vec((0i64..2_000, 0i64..4), 1..200),
        ) {
            let g = Gcra::per_period(burst, count, period).expect("valid");
            let (mut now, mut tat, mut admitted) = (0i64, None, 0i64);
            for (dt, q) in steps {
                now += dt * MS;
                let d = g.decide(tat.filter(|&t| t > now), now, q);
                if let Some(t) = d.new_tat_ns { tat = Some(t); admitted += q; }
                proptest::prop_assert!(d.remaining >= 0);
            }
            let refilled = now / g.emission_interval_ns;
            proptest::prop_assert!(admitted <= g.limit + refilled + 1);
        }
    }
}
