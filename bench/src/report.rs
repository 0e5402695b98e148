//! The one report format every benchmark suite produces.
//!
//! A suite returns a list of [`Record`]s — one per (case, system) — and the driver prints them as a table
//! with the strata/peer ratio per case, and writes them as JSON with `--json PATH`. Keeping one shape means
//! every later suite is compared, stored and diffed the same way (see `shared/design/BENCHMARKS.md`).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One measured (suite, case, system) result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The component measured: `storage`, `cache`, `kv`, `amqp`, ...
    pub suite: String,
    /// The workload within the suite: `fillrandom/100B`, `SET -P16`, ...
    pub case: String,
    /// Which system ran it: `strata`, or the peer (`rocksdb`, `redis`, `moka`, ...).
    pub system: String,
    /// Median throughput over the measured rounds, when the case has one.
    pub ops_per_sec: Option<f64>,
    /// Median latency, microseconds, when the case has latency.
    pub p50_us: Option<f64>,
    /// 99th percentile latency, microseconds, when the case has latency.
    pub p99_us: Option<f64>,
    /// Anything else the case measures (`hit_ratio=0.731`, `write_amp=3.2`) and its settings.
    pub notes: String,
}

impl Record {
    /// A record with only identity fields set; fill in the measurements with the builder methods.
    pub fn new(suite: &str, case: &str, system: &str) -> Self {
        Self {
            suite: suite.to_owned(),
            case: case.to_owned(),
            system: system.to_owned(),
            ops_per_sec: None,
            p50_us: None,
            p99_us: None,
            notes: String::new(),
        }
    }

    /// Sets the throughput.
    pub fn ops(mut self, ops_per_sec: f64) -> Self {
        self.ops_per_sec = Some(ops_per_sec);
        self
    }

    /// Sets p50 and p99 latency in microseconds.
    pub fn latency_us(mut self, p50: f64, p99: f64) -> Self {
        self.p50_us = Some(p50);
        self.p99_us = Some(p99);
        self
    }

    /// Appends a `key=value` note.
    pub fn note(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        if !self.notes.is_empty() {
            self.notes.push(' ');
        }
        let _ = write!(self.notes, "{key}={value}");
        self
    }
}

/// Median of a list of measurements (the middle one, or the mean of the two middle ones).
#[allow(dead_code)] // the suites landing with the storage and cache crates use it
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Renders records as an aligned text table. Each case's non-strata rows get a `strata/peer` ratio of ops/s.
pub fn render_table(records: &[Record]) -> String {
    let headers = [
        "suite",
        "case",
        "system",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "strata/peer",
        "notes",
    ];
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|r| {
            let ratio = ratio_against(records, r)
                .map(|x| format!("{x:.2}x"))
                .unwrap_or_default();
            [
                r.suite.clone(),
                r.case.clone(),
                r.system.clone(),
                fmt_opt(r.ops_per_sec, 0),
                fmt_opt(r.p50_us, 1),
                fmt_opt(r.p99_us, 1),
                ratio,
                r.notes.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w.saturating_sub(cell.chars().count());
            // Numbers right-aligned, text left-aligned.
            if (3..=6).contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut out, &headers.map(str::to_owned));
    line(&mut out, &widths.map(|w| "-".repeat(w)));
    for row in &rows {
        line(&mut out, row);
    }
    out
}

/// strata's ops/s divided by this peer record's ops/s for the same suite and case.
fn ratio_against(records: &[Record], peer: &Record) -> Option<f64> {
    if peer.system == "strata" {
        return None;
    }
    let strata = records
        .iter()
        .find(|r| r.system == "strata" && r.suite == peer.suite && r.case == peer.case)?;
    let (s, p) = (strata.ops_per_sec?, peer.ops_per_sec?);
    (p > 0.0).then(|| s / p)
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|x| format!("{x:.decimals$}")).unwrap_or_default()
}

/// Writes records as a JSON list to `path`.
pub fn write_json(path: &Path, records: &[Record]) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(records)?;
    std::fs::write(path, text + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_lists() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn table_shows_ratio_for_peer_rows() {
        let records = vec![
            Record::new("kv", "SET", "strata").ops(200.0),
            Record::new("kv", "SET", "redis").ops(100.0),
        ];
        let table = render_table(&records);
        assert!(table.contains("2.00x"), "{table}");
    }

    #[test]
    fn json_round_trips_with_the_documented_field_names() {
        let r = Record::new("cache", "zipf", "moka")
            .ops(1.0)
            .latency_us(2.0, 3.0)
            .note("hit_ratio", 0.5);
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        for field in [
            "suite",
            "case",
            "system",
            "ops_per_sec",
            "p50_us",
            "p99_us",
            "notes",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["notes"], "hit_ratio=0.5");
    }
}
