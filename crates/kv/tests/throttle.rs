//! CL.THROTTLE against a table of replies computed from the GCRA definition, with an injected clock:
//! T = period / count, τ = T (max_burst + 1), new_tat = max(tat, now) + q T, allowed iff new_tat − τ ≤ now;
//! remaining = (τ − ttl) / T, retry_after = −(now − (new_tat − τ)), reset_after = ttl, both rounded up to
//! seconds when a millisecond is left over. Also: the key's stored state, errors and atomicity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::Server;
use strata_kv::{KvConfig, ManualClock};

const T0: u64 = 1_700_000_000_000;

fn throttle(c: &mut redis::Connection, args: &[&str]) -> Vec<i64> {
    let mut cmd = redis::cmd("CL.THROTTLE");
    for a in args {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap()
}

fn error(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd("CL.THROTTLE");
    for a in args {
        cmd.arg(*a);
    }
    match cmd.query::<redis::Value>(c) {
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn replies_follow_the_gcra_table() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = Server::start_with_clock(KvConfig::default(), clock.clone());
    let mut c = server.client();
    // Limit 5 (max_burst 4), one per second: T = 1 s, τ = 5 s.
    // (ms since start, quantity, expected reply)
    let table: &[(u64, &str, [i64; 5])] = &[
        // Larger than the bucket: refused, no retry time, nothing stored.
        (0, "6", [1, 5, 5, -1, 0]),
        (0, "1", [0, 5, 4, -1, 1]),
        (0, "1", [0, 5, 3, -1, 2]),
        (0, "1", [0, 5, 2, -1, 3]),
        (0, "1", [0, 5, 1, -1, 4]),
        (0, "1", [0, 5, 0, -1, 5]),
        // Full: retry in τ − ... = 1 s.
        (0, "1", [1, 5, 0, 1, 5]),
        (3000, "1", [0, 5, 2, -1, 3]),
        // 3.9 s to empty: rounded up to 4.
        (3100, "1", [0, 5, 1, -1, 4]),
        (4000, "1", [0, 5, 1, -1, 4]),
        (8000, "1", [0, 5, 4, -1, 1]),
        (9500, "1", [0, 5, 4, -1, 1]),
        // Quantity 0 only looks.
        (9500, "0", [0, 5, 4, -1, 1]),
        (9500, "2", [0, 5, 2, -1, 3]),
        (9500, "5", [1, 5, 2, 3, 3]),
    ];
    let mut at = 0;
    for (i, (ms, q, expected)) in table.iter().enumerate() {
        clock.advance_ms(ms - at);
        at = *ms;
        let reply = throttle(&mut c, &["k", "4", "1", "1", q]);
        assert_eq!(reply, expected, "row {i} at {ms} ms, quantity {q}");
    }
}

#[test]
fn fractional_intervals_and_the_stored_state() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = Server::start_with_clock(KvConfig::default(), clock.clone());
    let mut c = server.client();
    // redis-cell's README example: 30 per minute, bursts of 16. T = 2 s, τ = 32 s.
    assert_eq!(
        throttle(&mut c, &["user123", "15", "30", "60"]),
        [0, 16, 15, -1, 2]
    );
    // The key is a string: the TAT in Unix nanoseconds, expiring when the bucket is empty.
    let tat: String = redis::cmd("GET").arg("user123").query(&mut c).unwrap();
    assert_eq!(tat, ((T0 + 2000) * 1_000_000).to_string());
    let pttl: i64 = redis::cmd("PTTL").arg("user123").query(&mut c).unwrap();
    assert_eq!(pttl, 2000);
    let kind: String = redis::cmd("TYPE").arg("user123").query(&mut c).unwrap();
    assert_eq!(kind, "string");
    // 10 per 3 s: T = 300 ms. Burst 0 → one at a time.
    assert_eq!(throttle(&mut c, &["f", "0", "10", "3"]), [0, 1, 0, -1, 1]);
    // Refused for 300 ms: rounded up to 1 s; the bucket empties in 300 ms: 1.
    assert_eq!(throttle(&mut c, &["f", "0", "10", "3"]), [1, 1, 0, 1, 1]);
    clock.advance_ms(300);
    assert_eq!(throttle(&mut c, &["f", "0", "10", "3"]), [0, 1, 0, -1, 1]);
    // Once the bucket is empty the key expires.
    clock.advance_ms(301);
    let exists: i64 = redis::cmd("EXISTS").arg("f").query(&mut c).unwrap();
    assert_eq!(exists, 0);
}

#[test]
fn errors_are_redis_cell_s() {
    let server = Server::start(KvConfig::default());
    let mut c = server.client();
    assert_eq!(
        error(&mut c, &[]),
        "ERR Cell error: Usage: cl.throttle <key> <max_burst> <count per period> <period> [<quantity>]"
    );
    assert_eq!(
        error(&mut c, &["k"]),
        "ERR Cell error: Usage: cl.throttle <key> <max_burst> <count per period> <period> [<quantity>]"
    );
    assert_eq!(
        error(&mut c, &["k", "1", "2", "3", "4", "5"]),
        "ERR Cell error: Usage: cl.throttle <key> <max_burst> <count per period> <period> [<quantity>]"
    );
    assert_eq!(
        error(&mut c, &["k", "x", "1", "1"]),
        "ERR Cell error: Couldn't parse as integer: x"
    );
    assert_eq!(
        error(&mut c, &["k", "1", "0", "1"]),
        "ERR Cell error: count per period must be positive"
    );
    assert_eq!(
        error(&mut c, &["k", "1", "1", "1", "-1"]),
        "ERR Cell error: quantity must be zero or positive"
    );
    redis::cmd("SET")
        .arg("s")
        .arg("abc")
        .query::<()>(&mut c)
        .unwrap();
    assert_eq!(
        error(&mut c, &["s", "1", "1", "1"]),
        "ERR Cell error: invalid digit found in string"
    );
    redis::cmd("LPUSH")
        .arg("l")
        .arg("x")
        .query::<()>(&mut c)
        .unwrap();
    assert!(error(&mut c, &["l", "1", "1", "1"]).starts_with("WRONGTYPE"));
}

#[test]
fn concurrent_clients_share_one_bucket_atomically() {
    let server = Server::start_without_fsync(KvConfig::default());
    let allowed: i64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let mut c = server.client();
                    (0..50)
                        .map(|_| {
                            i64::from(throttle(&mut c, &["shared", "19", "1", "3600"])[0] == 0)
                        })
                        .sum::<i64>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    // A burst of 20 and a refill of one per hour: exactly 20 of 200 get through.
    assert_eq!(allowed, 20);
}

/// The reply the GCRA definition gives, derived here independently of `strata-resilience`: the model
/// keeps the stored TAT and its expiry as Redis would.
struct Model {
    tat_ns: Option<i64>,
    expire_at_ms: u64,
}

impl Model {
    fn step(&mut self, now_ms: u64, burst: i64, count: i64, period: i64, q: i64) -> [i64; 5] {
        const S: i64 = 1_000_000_000;
        let secs = |ns: i64| ns / S + i64::from((ns % S) / 1_000_000 > 0);
        let now = now_ms as i64 * 1_000_000;
        // A key past its TTL is gone (alive through the millisecond of its deadline).
        let stored = self.tat_ns.filter(|_| now_ms <= self.expire_at_ms);
        let t = (period as f64 * S as f64 / count as f64) as i64;
        let tau = t * (burst + 1);
        let inc = t * q;
        let tat = stored.unwrap_or(now);
        let new_tat = tat.max(now) + inc;
        let (limited, retry, ttl) = if new_tat - tau > now {
            let retry = if inc <= tau {
                secs(new_tat - tau - now)
            } else {
                -1
            };
            (1, retry, tat - now)
        } else {
            self.tat_ns = Some(new_tat);
            self.expire_at_ms = now_ms + ((new_tat - now) / 1_000_000) as u64;
            (0, -1, new_tat - now)
        };
        let next = tau - ttl;
        let remaining = if next > -t {
            ((next / 1000) as f64 / (t / 1000) as f64) as i64
        } else {
            0
        };
        [limited, burst + 1, remaining, retry, secs(ttl)]
    }
}

#[test]
fn random_sequences_match_the_gcra_model() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = Server::start_with_clock(KvConfig::default(), clock.clone());
    let mut c = server.client();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let params: Vec<(i64, i64, i64)> = (0..6)
        .map(|_| (next(6) as i64, next(10) as i64 + 1, next(5) as i64 + 1))
        .collect();
    let mut models: Vec<Model> = params
        .iter()
        .map(|_| Model {
            tat_ns: None,
            expire_at_ms: 0,
        })
        .collect();
    let mut now = T0;
    for step in 0..600 {
        let dt = next(1500);
        clock.advance_ms(dt);
        now += dt;
        let k = next(params.len() as u64) as usize;
        let (burst, count, period) = params[k];
        let q = next(4) as i64;
        let expected = models[k].step(now, burst, count, period, q);
        let key = format!("m{k}");
        let args = [
            key.clone(),
            burst.to_string(),
            count.to_string(),
            period.to_string(),
            q.to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = throttle(&mut c, &args);
        assert_eq!(reply, expected, "step {step}: {args:?} at +{} ms", now - T0);
    }
}
