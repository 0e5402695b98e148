//! Retry policies: how many attempts, and how long to wait before each, growing exponentially with
//! optional jitter (AWS's "full" and "equal" jitter) so that many clients do not retry in lockstep.

use std::time::Duration;

/// How a delay is randomized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// The computed delay exactly.
    None,
    /// Uniform in `[0, delay]`.
    Full,
    /// `delay / 2` plus uniform in `[0, delay / 2]`.
    Equal,
}

/// Exponential backoff: `base × multiplier^attempt`, capped at `max`, then jittered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub base: Duration,
    /// The largest delay.
    pub max: Duration,
    /// Growth per attempt (2.0 doubles).
    pub multiplier: f64,
    /// Randomization.
    pub jitter: Jitter,
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry); `unit` is a uniform random number
    /// in `[0, 1)` used by the jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let raw =
            self.base.as_secs_f64() * self.multiplier.max(1.0).powi(attempt.min(1_000) as i32);
        let capped = raw.min(self.max.as_secs_f64());
        let unit = unit.clamp(0.0, 1.0);
        let secs = match self.jitter {
            Jitter::None => capped,
            Jitter::Full => capped * unit,
            Jitter::Equal => capped / 2.0 + capped / 2.0 * unit,
        };
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// At most `max_attempts` attempts in all, waiting per `backoff` between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first (at least 1).
    pub max_attempts: u32,
    /// Delays between attempts.
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// After `attempts_made` attempts failed, the delay before the next one, or `None` to give up.
    pub fn next_delay(&self, attempts_made: u32, unit: f64) -> Option<Duration> {
        (attempts_made < self.max_attempts.max(1))
            .then(|| self.backoff.delay(attempts_made.saturating_sub(1), unit))
    }

    /// Runs `op` until it succeeds, `retryable` says an error is final, or attempts run out, calling
    /// `sleep` between attempts and `rand` for jitter. Returns the last result.
    pub fn run<T, E>(
        &self,
        mut op: impl FnMut(u32) -> Result<T, E>,
        retryable: impl Fn(&E) -> bool,
        mut sleep: impl FnMut(Duration),
        mut rand: impl FnMut() -> f64,
    ) -> Result<T, E> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op(attempt) {
                Ok(v) => return Ok(v),
                Err(e) => match self.next_delay(attempt, rand()) {
                    Some(d) if retryable(&e) => sleep(d),
                    _ => return Err(e),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            backoff: Backoff {
                base: Duration::from_millis(100),
                max: Duration::from_millis(500),
                multiplier: 2.0,
                jitter,
            },
        }
    }

    #[test]
    fn delays_grow_and_cap() {
        let p = policy(Jitter::None);
        let delays: Vec<_> = (1..6).map(|a| p.next_delay(a, 0.5)).collect();
        let ms = |m| Some(Duration::from_millis(m));
        assert_eq!(delays, vec![ms(100), ms(200), ms(400), ms(500), None]);
        assert_eq!(
            policy(Jitter::Full).backoff.delay(1, 0.5),
            Duration::from_millis(100)
        );
        assert_eq!(
            policy(Jitter::Equal).backoff.delay(1, 0.5),
            Duration::from_millis(150)
        );
    }

    #[test]
    fn run_retries_retryable_errors_only() {
        let p = policy(Jitter::None);
        let mut slept = Vec::new();
        let r: Result<u32, &str> = p.run(
            |a| if a < 3 { Err("busy") } else { Ok(a) },
            |e| *e == "busy",
            |d| slept.push(d),
            || 0.0,
        );
        assert_eq!(r, Ok(3));
        assert_eq!(slept.len(), 2);
        let r: Result<u32, &str> = p.run(|_| Err("fatal"), |e| *e == "busy", |_| {}, || 0.0);
        assert_eq!(r, Err("fatal"));
        let mut calls = 0;
        let r: Result<u32, &str> = p.run(
            |_| {
                calls += 1;
                Err("busy")
            },
            |_| true,
            |_| {},
            || 0.0,
        );
        assert_eq!((r, calls), (Err("busy"), 5));
    }
}
