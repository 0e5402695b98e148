//! LATENCY: the latency monitor's events (LATEST, HISTORY, RESET, GRAPH, DOCTOR) and the per-command
//! latency histograms (HISTOGRAM) that `INFO latencystats` summarizes.

use std::fmt::Write as _;
use strata_resp::Arg;

use bytes::Bytes;
use strata_resp::Frame;

use super::CommandSpec;
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "latency",
    arity: -2,
    flags: &["admin", "noscript", "loading", "stale"],
    no_auth: false,
    run: latency,
}];

fn bulk(text: impl Into<String>) -> Frame {
    Frame::Bulk(Bytes::from(text.into()))
}

/// LATENCY LATEST | HISTORY event | RESET [event ...] | GRAPH event | DOCTOR | HISTOGRAM [command ...]
/// | HELP.
pub fn latency(_s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    let wrong_arity = || {
        Frame::error(format!(
            "ERR wrong number of arguments for 'latency|{}' command",
            String::from_utf8_lossy(&sub)
        ))
    };
    match sub.as_slice() {
        b"latest" if args.len() == 2 => Frame::Array(
            sh.latency
                .latest()
                .into_iter()
                .map(|(name, last, max)| {
                    Frame::Array(vec![
                        bulk(name),
                        Frame::Integer(last.time as i64),
                        Frame::Integer(last.latency_ms as i64),
                        Frame::Integer(max as i64),
                    ])
                })
                .collect(),
        ),
        b"history" if args.len() == 3 => {
            let event = String::from_utf8_lossy(&args[2]);
            Frame::Array(
                sh.latency
                    .history(&event)
                    .samples
                    .iter()
                    .map(|s| {
                        Frame::Array(vec![
                            Frame::Integer(s.time as i64),
                            Frame::Integer(s.latency_ms as i64),
                        ])
                    })
                    .collect(),
            )
        }
        b"reset" => {
            let events: Vec<String> = args[2..]
                .iter()
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect();
            Frame::Integer(sh.latency.reset(&events) as i64)
        }
        b"graph" if args.len() == 3 => {
            let event = String::from_utf8_lossy(&args[2]);
            let series = sh.latency.history(&event);
            if series.samples.is_empty() {
                return Frame::error(format!("ERR No samples available for event '{event}'"));
            }
            bulk(graph(&event, &series))
        }
        b"doctor" if args.len() == 2 => bulk(doctor(sh)),
        b"histogram" => histogram(sh, &args[2..]),
        b"help" if args.len() == 2 => Frame::Array(
            HELP.iter()
                .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
                .collect(),
        ),
        b"latest" | b"history" | b"graph" | b"doctor" | b"help" => wrong_arity(),
        _ => super::unknown_subcommand(&args[1], "latency"),
    }
}

const HELP: &[&str] = &[
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Print this help.",
];

/// The statistics slots named by `names` (a container names all its subcommands), or every slot.
fn slots_named(names: &[Arg]) -> Vec<usize> {
    let all = super::stat_names();
    if names.is_empty() {
        return (0..all.len()).collect();
    }
    let mut slots = Vec::new();
    for name in names {
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let prefix = format!("{name}|");
        for (slot, full) in all.iter().enumerate() {
            if (*full == name || full.starts_with(&prefix)) && !slots.contains(&slot) {
                slots.push(slot);
            }
        }
    }
    slots
}

fn histogram(sh: &Shared, names: &[Arg]) -> Frame {
    let all = super::stat_names();
    let mut entries = Vec::new();
    for slot in slots_named(names) {
        let Some((calls, buckets)) = sh.command_stats.histogram(slot) else {
            continue;
        };
        let buckets = buckets
            .into_iter()
            .map(|(usec, n)| (Frame::Integer(usec as i64), Frame::Integer(n as i64)))
            .collect();
        entries.push((
            bulk(all[slot]),
            Frame::Map(vec![
                (bulk("calls"), Frame::Integer(calls as i64)),
                (bulk("histogram_usec"), Frame::Map(buckets)),
            ]),
        ));
    }
    Frame::Map(entries)
}

/// `INFO latencystats`: one line per command with tracked calls, its percentiles in microseconds.
pub fn info_section(sh: &Shared, percentiles: &[f64], out: &mut String) {
    if !sh
        .command_stats
        .latency_tracking
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return;
    }
    for (slot, name) in super::stat_names().iter().enumerate() {
        let Some(values) = sh.command_stats.percentiles(slot, percentiles) else {
            continue;
        };
        let _ = write!(out, "latency_percentiles_usec_{name}:");
        for (i, (p, v)) in percentiles.iter().zip(values).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "p{}={v:.3}", format_percentile(*p));
        }
        out.push_str("\r\n");
    }
}

/// `50`, `99.9`: a percentile as Redis prints it (`%g`-like: no trailing zeros).
fn format_percentile(p: f64) -> String {
    let text = format!("{p:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// An ASCII chart of one event class's samples: one column per sample, oldest on the left, the height
/// proportional to the latency, with the range and the age of the oldest and newest samples.
fn graph(event: &str, series: &crate::latency::Series) -> String {
    const ROWS: u64 = 4;
    let max = series
        .samples
        .iter()
        .map(|s| s.latency_ms)
        .max()
        .unwrap_or(0);
    let min = series
        .samples
        .iter()
        .map(|s| s.latency_ms)
        .min()
        .unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = format!(
        "{event} - high {max} ms, low {min} ms (all time high {} ms)\n",
        series.max_ms
    );
    out.push_str(&"-".repeat(80));
    out.push('\n');
    for row in (1..=ROWS).rev() {
        for s in &series.samples {
            let height = if max == 0 {
                0
            } else {
                (s.latency_ms * ROWS).div_ceil(max)
            };
            out.push(if height >= row { '#' } else { ' ' });
        }
        out.push('\n');
    }
    let ages: Vec<String> = series
        .samples
        .iter()
        .map(|s| format!("{}s", now.saturating_sub(s.time)))
        .collect();
    if let (Some(first), Some(last)) = (ages.first(), ages.last()) {
        let _ = writeln!(out, "oldest sample {first} ago, newest {last} ago");
    }
    out
}

fn doctor(sh: &Shared) -> String {
    let threshold = sh
        .latency
        .threshold_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let latest = sh.latency.latest();
    let mut out = String::from("Latency spikes observed in this strata instance:\n");
    if threshold == 0 {
        return "The latency monitor is off: set latency-monitor-threshold to a number of \
                milliseconds (CONFIG SET latency-monitor-threshold 100) to record events that take \
                at least that long.\n"
            .to_owned();
    }
    if latest.is_empty() {
        return format!(
            "No latency spikes of {threshold} ms or more were observed since the monitor started or \
             was last reset.\n"
        );
    }
    for (i, (name, _, max)) in latest.iter().enumerate() {
        let series = sh.latency.history(name);
        let n = series.samples.len().max(1) as u64;
        let avg = series.samples.iter().map(|s| s.latency_ms).sum::<u64>() / n;
        let _ = writeln!(
            out,
            "{}. {name}: {} latency spikes (average {avg} ms, worst {max} ms).",
            i + 1,
            series.samples.len()
        );
    }
    out.push_str("\nAdvice:\n");
    for (name, _, _) in &latest {
        let advice = match *name {
            "command" => {
                "- Slow commands ran: check SLOWLOG GET for O(N) commands on large values (KEYS, \
                 SMEMBERS, LRANGE 0 -1, SORT) and prefer their SCAN or bounded forms."
            }
            "fast-command" => {
                "- O(1) commands were slow: the machine was likely overloaded (CPU steal, swapping) \
                 or storage reads missed the cache; check INFO cpu and the storage metrics."
            }
            "expire-cycle" => {
                "- The active expiry cycle was slow: many keys expired at once; spread their TTLs."
            }
            _ => "- Look at the events' history with LATENCY HISTORY <event>.",
        };
        out.push_str(advice);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_print_without_trailing_zeros() {
        assert_eq!(format_percentile(50.0), "50");
        assert_eq!(format_percentile(99.9), "99.9");
        assert_eq!(format_percentile(0.0), "0");
        assert_eq!(format_percentile(100.0), "100");
    }
}
