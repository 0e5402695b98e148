//! Process metrics read from `/proc` at scrape time, named as the Prometheus client libraries name them
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), so existing dashboards work.
//!
//! On systems without `/proc` only the uptime is reported.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Collects process CPU, memory, threads, file descriptors and uptime on each scrape.
#[derive(Debug)]
pub struct ProcessCollector {
    started: Instant,
    start_unix_secs: f64,
}

impl ProcessCollector {
    /// A collector measuring uptime from `started`.
    pub fn new(started: Instant) -> Self {
        let start_unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
            - started.elapsed().as_secs_f64();
        Self {
            started,
            start_unix_secs,
        }
    }
}

/// The fields of `/proc/self/stat` this collector uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStat {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Number of threads.
    pub threads: i64,
    /// Virtual memory size in bytes.
    pub virtual_bytes: i64,
    /// Resident set size in bytes.
    pub resident_bytes: i64,
}

/// Parses the text of `/proc/self/stat`.
///
/// The second field (the command name) is in parentheses and may itself contain spaces and parentheses, so
/// the fields are counted from the *last* `)`.
pub fn parse_proc_stat(text: &str, ticks_per_second: u64, page_size: u64) -> Option<ProcStat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // `fields[0]` is field 3 of proc(5) (state); field n is at index n - 3.
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = ticks_per_second.max(1) as f64;
    Some(ProcStat {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: i64::try_from(field(20)?).ok()?,
        virtual_bytes: i64::try_from(field(23)?).ok()?,
        resident_bytes: i64::try_from(field(24)?.saturating_mul(page_size)).ok()?,
    })
}

fn open_fds() -> Option<i64> {
    let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
    i64::try_from(count).ok()
}

fn max_fds() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn gauge<N>(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> std::fmt::Result
where
    ConstGauge<N>: EncodeMetric,
{
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        gauge(
            &mut encoder,
            "strata_uptime_seconds",
            "Seconds since this strata process started",
            self.started.elapsed().as_secs_f64(),
        )?;
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            self.start_unix_secs,
        )?;
        let ticks = rustix::param::clock_ticks_per_second();
        let page = rustix::param::page_size() as u64;
        if let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t, ticks, page))
        {
            let cpu = ConstCounter::new(stat.cpu_seconds);
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent, in seconds",
                None,
                cpu.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stat.resident_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.virtual_bytes,
            )?;
            gauge(
                &mut encoder,
                "process_threads",
                "Number of OS threads in the process",
                stat.threads,
            )?;
        }
        if let Some(n) = open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                n,
            )?;
        }
        if let Some(n) = max_fds() {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors",
                n,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_and_parens_in_the_command_name() {
        // Fields 3..=24 after a tricky comm; utime=100, stime=50, threads=7, vsize=4096000, rss=250.
        let text = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 100 50 0 0 20 0 7 0 \
                    555 4096000 250 18446744073709551615";
        let stat = parse_proc_stat(text, 100, 4096).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                cpu_seconds: 1.5,
                threads: 7,
                virtual_bytes: 4_096_000,
                resident_bytes: 250 * 4096,
            }
        );
    }

    #[test]
    fn truncated_stat_is_none_not_a_panic() {
        assert_eq!(parse_proc_stat("1 (x) S 1 2", 100, 4096), None);
        assert_eq!(parse_proc_stat("", 100, 4096), None);
    }

    #[test]
    fn reads_this_process() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let stat = parse_proc_stat(&text, 100, 4096).unwrap();
        assert!(stat.threads >= 1);
        assert!(stat.resident_bytes > 0);
    }
}
