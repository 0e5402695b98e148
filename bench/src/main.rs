//! `strata-bench`: side-by-side benchmarks of strata against the real peer of each component.
//!
//! Every suite runs strata and its peer in the same invocation, alternating rounds, with the same load
//! generator and settings, and reports the median round plus the strata/peer ratio (see
//! `shared/design/BENCHMARKS.md`). `--quick` shortens rounds so a whole run stays under a minute; it never
//! skips the peer. Output is a table on stdout and, with `--json PATH`, a list of [`Record`]s.

mod amqp;
mod cache;
mod kv;
mod report;
mod storage;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

pub use report::Record;

/// Side-by-side benchmarks of strata against Redis, RabbitMQ, RocksDB, nginx and friends.
#[derive(Debug, Parser)]
#[command(name = "strata-bench", version, about)]
struct Cli {
    /// Short rounds so the whole run finishes in under 60 seconds (peers are still measured).
    #[arg(long, global = true)]
    quick: bool,
    /// Measured rounds per case and system; the median is reported. Default: 3, or 1 with --quick.
    #[arg(long, global = true)]
    rounds: Option<usize>,
    /// Also write the results as a JSON list of records to this path.
    #[arg(long, global = true, value_name = "PATH")]
    json: Option<PathBuf>,
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Debug, Clone, Subcommand)]
enum Suite {
    /// Storage engine vs RocksDB and fjall (db_bench-style workloads).
    Storage,
    /// Concurrent cache vs moka and quick_cache (hit ratio and throughput).
    Cache,
    /// Key-value server vs redis-server, driven by redis-benchmark.
    Kv,
    /// AMQP broker vs rabbitmq-server, driven by a lapin load generator.
    Amqp(amqp::Args),
    /// API gateway vs nginx, driven by wrk.
    Gateway,
    /// Every suite above, one after another.
    All,
}

/// Settings every suite receives.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Short rounds (see `--quick`).
    pub quick: bool,
    /// Measured rounds per case and system.
    pub rounds: usize,
}

impl SuiteOptions {
    /// A progress bar for `len` steps with a message, drawn on stderr so stdout stays a clean table.
    pub fn progress(&self, len: u64, message: &str) -> ProgressBar {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg:<32} [{bar:30}] {pos}/{len} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

fn run_suite(suite: &Suite, opts: &SuiteOptions) -> anyhow::Result<Vec<Record>> {
    match suite {
        Suite::Storage => storage::run(opts),
        Suite::Cache => cache::run(opts),
        Suite::Kv => kv::run(opts),
        Suite::Amqp(args) => amqp::run(opts, args),
        Suite::Gateway => {
            anyhow::bail!("the gateway suite is not yet built (the gateway comes first)")
        }
        Suite::All => {
            let mut all = Vec::new();
            for s in [
                Suite::Storage,
                Suite::Cache,
                Suite::Kv,
                Suite::Amqp(amqp::Args::default()),
                Suite::Gateway,
            ] {
                match run_suite(&s, opts) {
                    Ok(records) => all.extend(records),
                    Err(e) => eprintln!("{s:?}: {e:#}"),
                }
            }
            Ok(all)
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = SuiteOptions {
        quick: cli.quick,
        rounds: cli.rounds.unwrap_or(if cli.quick { 1 } else { 3 }).max(1),
    };
    println!("{}", machine_summary());
    let records = run_suite(&cli.suite, &opts)?;
    print!("{}", report::render_table(&records));
    if let Some(path) = &cli.json {
        report::write_json(path, &records)?;
        eprintln!("wrote {} records to {}", records.len(), path.display());
    }
    Ok(())
}

/// One line naming the machine, so a pasted table carries its setup.
fn machine_summary() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(0);
    format!(
        "strata-bench {} — {} cores, {:.1} GiB RAM, {} {}",
        env!("CARGO_PKG_VERSION"),
        cores,
        mem_kib as f64 / 1024.0 / 1024.0,
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}
