//! The latency monitor (`LATENCY LATEST | HISTORY | RESET | GRAPH | DOCTOR`): when something takes at
//! least `latency-monitor-threshold` milliseconds, an event is recorded under its class (`command`,
//! `fast-command`, `expire-cycle`). Each class keeps its last [`HISTORY_LEN`] samples, one per second
//! (several in the same second keep the largest), and its all-time maximum, as Redis does. A threshold
//! of 0 turns the monitor off, and then recording costs one relaxed load.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Samples kept per event class (Redis's `LATENCY_TS_LEN`).
pub const HISTORY_LEN: usize = 160;

/// One recorded sample: when (Unix seconds) and how long (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Unix time in seconds.
    pub time: u64,
    /// Milliseconds.
    pub latency_ms: u64,
}

/// One event class's samples.
#[derive(Debug, Default, Clone)]
pub struct Series {
    /// Oldest first, at most [`HISTORY_LEN`].
    pub samples: VecDeque<Sample>,
    /// The largest latency ever recorded for the class (until reset).
    pub max_ms: u64,
}

/// Every event class's samples and the threshold.
#[derive(Debug, Default)]
pub struct LatencyMonitor {
    /// `latency-monitor-threshold` in milliseconds; 0 records nothing.
    pub threshold_ms: AtomicU64,
    events: Mutex<BTreeMap<&'static str, Series>>,
}

impl LatencyMonitor {
    /// Whether samples are being taken (`latency-monitor-threshold` is set).
    pub fn monitoring(&self) -> bool {
        self.threshold_ms.load(Ordering::Relaxed) != 0
    }

    /// Records that `event` took `elapsed`, if that reaches the threshold.
    pub fn observe(&self, event: &'static str, elapsed: Duration) {
        let threshold = self.threshold_ms.load(Ordering::Relaxed);
        if threshold == 0 {
            return;
        }
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if ms >= threshold {
            self.record(event, ms, unix_seconds());
        }
    }

    /// Adds a sample at `time` (Unix seconds) unconditionally.
    pub fn record(&self, event: &'static str, latency_ms: u64, time: u64) {
        let mut events = self.events.lock();
        let series = events.entry(event).or_default();
        series.max_ms = series.max_ms.max(latency_ms);
        if let Some(last) = series.samples.back_mut()
            && last.time == time
        {
            last.latency_ms = last.latency_ms.max(latency_ms);
            return;
        }
        if series.samples.len() == HISTORY_LEN {
            series.samples.pop_front();
        }
        series.samples.push_back(Sample { time, latency_ms });
    }

    /// Every class with samples: name, latest sample, all-time maximum.
    pub fn latest(&self) -> Vec<(&'static str, Sample, u64)> {
        self.events
            .lock()
            .iter()
            .filter_map(|(name, s)| s.samples.back().map(|last| (*name, *last, s.max_ms)))
            .collect()
    }

    /// One class's samples, oldest first (empty for an unknown class).
    pub fn history(&self, event: &str) -> Series {
        self.events.lock().get(event).cloned().unwrap_or_default()
    }

    /// Forgets the named classes, or all when `events` is empty; returns how many were forgotten.
    pub fn reset(&self, events: &[String]) -> usize {
        let mut all = self.events.lock();
        if events.is_empty() {
            let n = all.len();
            all.clear();
            return n;
        }
        events
            .iter()
            .filter(|e| all.remove(e.as_str()).is_some())
            .count()
    }
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_below_the_threshold_or_with_the_monitor_off_are_not_kept() {
        let m = LatencyMonitor::default();
        m.observe("command", Duration::from_secs(5));
        assert!(m.latest().is_empty());
        m.threshold_ms.store(100, Ordering::Relaxed);
        m.observe("command", Duration::from_millis(99));
        assert!(m.latest().is_empty());
        m.observe("command", Duration::from_millis(100));
        assert_eq!(m.latest().len(), 1);
    }

    #[test]
    fn one_sample_per_second_keeps_the_largest_and_history_is_bounded() {
        let m = LatencyMonitor::default();
        m.record("command", 10, 1000);
        m.record("command", 30, 1000);
        m.record("command", 20, 1000);
        let h = m.history("command");
        assert_eq!(h.samples.len(), 1);
        assert_eq!(h.samples[0].latency_ms, 30);
        for t in 0..500 {
            m.record("command", 5, 2000 + t);
        }
        let h = m.history("command");
        assert_eq!(h.samples.len(), HISTORY_LEN);
        assert_eq!(h.max_ms, 30);
        assert_eq!(h.samples.back().map(|s| s.time), Some(2499));
    }

    #[test]
    fn reset_counts_what_it_forgot() {
        let m = LatencyMonitor::default();
        m.record("command", 10, 1);
        m.record("fast-command", 10, 1);
        assert_eq!(m.reset(&["nope".to_owned()]), 0);
        assert_eq!(m.reset(&["command".to_owned()]), 1);
        assert_eq!(m.reset(&[]), 1);
        assert!(m.latest().is_empty());
    }
}
