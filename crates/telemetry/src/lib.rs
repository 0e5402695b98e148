//! strata-telemetry: logging and metrics, and nothing else.
//!
//! - [`init_logging`] installs a `tracing` subscriber, human-readable or JSON, with a level filter taken from
//!   the node's configuration or `RUST_LOG`.
//! - [`Metrics`] is the one Prometheus registry of a node. The server creates it; every service registers its
//!   own metrics in it under a prefix (`strata_kv_…`, `strata_storage_…`); `GET /metrics` encodes it.
//!   Process metrics (CPU, memory, threads, file descriptors), uptime and build info are collected at scrape
//!   time by [`process::ProcessCollector`].
//!
//! This crate holds no business logic and knows nothing of services: it is a foundation every other crate may
//! depend on. It never logs secrets because it never sees them — configuration values that are secret are a
//! redacting type in the server, so that no `Debug` of a config can leak one.
//!
//! ```
//! use prometheus_client::metrics::counter::Counter;
//! let metrics = strata_telemetry::Metrics::new("0.1.0");
//! let requests: Counter = Counter::default();
//! metrics.register("strata_example_requests", "Requests served", requests.clone());
//! requests.inc();
//! let text = metrics.encode();
//! assert!(text.contains("strata_example_requests_total 1"));
//! ```

pub mod process;

use std::fmt;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Errors from setting up telemetry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The log level filter did not parse.
    #[error(
        "invalid log level `{value}`: {reason} (allowed: error, warn, info, debug, trace, or a RUST_LOG-style filter such as `info,strata=debug`)"
    )]
    BadLogLevel {
        /// The filter as given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A global subscriber was already installed (logging can be set up once per process).
    #[error("logging was already initialised in this process")]
    AlreadyInitialised,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global `tracing` subscriber, writing to stderr.
///
/// `level` is a filter in `RUST_LOG` syntax (`info`, `warn,strata=debug`). When it is `None`, `RUST_LOG` is
/// used, and when that is unset too, `info`.
pub fn init_logging(format: LogFormat, level: Option<&str>) -> Result<(), TelemetryError> {
    let filter = match level {
        Some(level) => parse_filter(level)?,
        None => match std::env::var("RUST_LOG") {
            Ok(env) if !env.trim().is_empty() => parse_filter(&env)?,
            _ => EnvFilter::new("info"),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in files or log shippers.
        .with_ansi(std::io::stderr().is_terminal())
        .with_span_events(FmtSpan::NONE);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadyInitialised)
}

/// Parses a log filter, rejecting anything `EnvFilter` would silently ignore.
pub fn parse_filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| TelemetryError::BadLogLevel {
            value: level.to_owned(),
            reason: e.to_string(),
        })
}

/// The node's metrics registry, shared by every service.
///
/// Cheap to clone; all clones see the same registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry holding the process collector and `strata_build_info{version}`.
    pub fn new(version: &str) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(process::ProcessCollector::new(Instant::now())));
        let build_info: Family<Vec<(String, String)>, Gauge> = Family::default();
        build_info
            .get_or_create(&vec![
                ("version".to_owned(), version.to_owned()),
                ("target".to_owned(), std::env::consts::ARCH.to_owned()),
            ])
            .set(1);
        registry.register(
            "strata_build_info",
            "Build information; the value is always 1",
            build_info,
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
        }
    }

    /// Registers a metric. `name` must be unique in the node; services prefix it with `strata_<service>_`.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().register(name, help, metric);
    }

    /// Registers a collector that produces metrics at scrape time (for values another crate already counts,
    /// such as storage statistics).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry.lock().register_collector(collector);
    }

    /// Encodes every metric in the text exposition format (OpenMetrics 1.0, which Prometheus also reads as
    /// its text format 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail; an error here could only come from a collector that returned
        // one, in which case the partial text is still the best answer we have.
        if let Err(e) = encode(&mut out, &self.registry.lock()) {
            tracing::warn!(error = %e, "a metrics collector failed while encoding");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filter_is_rejected_with_the_value() {
        let err = parse_filter("info,=[").unwrap_err();
        assert!(err.to_string().contains("info,=["), "{err}");
    }

    #[test]
    fn good_filters_parse() {
        for f in ["info", "warn,strata=debug", "trace"] {
            parse_filter(f).unwrap();
        }
    }

    #[test]
    fn encode_has_process_and_build_metrics() {
        let text = Metrics::new("9.9.9").encode();
        assert!(text.contains("strata_build_info{"), "{text}");
        assert!(text.contains("version=\"9.9.9\""), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
        assert!(text.contains("strata_uptime_seconds"), "{text}");
    }
}
