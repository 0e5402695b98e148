//! The command line: `strata serve`, `strata config print`, `strata storage ...`, and `strata user ...` /
//! `strata vhost ...` (administration of a running node through its management API).
//!
//! Every configuration flag is taken as a string and handed to [`crate::config`], so a flag, an environment
//! variable and a config-file key are validated by the same code and fail with the same message. Defaults are
//! therefore not clap defaults (which would make every flag look "given"); the help text states them, and a
//! test checks the help against [`Config::default`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Layers};

/// strata: one binary running a complete backend platform — a Redis-compatible key-value store, an AMQP
/// broker, an API gateway, identity and log search — on one machine or as a cluster.
#[derive(Debug, Parser)]
#[command(name = "strata", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: every enabled service on its own listener, until SIGINT or SIGTERM.
    Serve(ConfigArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect a data directory offline (safe on a copy or a stopped node; read-only).
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Manage the users and permissions of a running node (through its management API, like rabbitmqctl).
    #[command(subcommand)]
    User(crate::user_cli::UserCommand),
    /// Manage the AMQP virtual hosts of a running node (through its management API).
    #[command(subcommand)]
    Vhost(crate::user_cli::VHostCommand),
}

/// `strata storage ...`
#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Verify every checksum of the WAL, manifest, SSTables and log segments; exit 1 naming the file and
    /// offset of the first damage.
    Check {
        /// The data directory (`--data-dir` of the node) or its `storage/` subdirectory.
        dir: PathBuf,
    },
    /// Print levels, file counts, sizes and space amplification, trees and logs.
    Stats {
        /// The data directory (`--data-dir` of the node) or its `storage/` subdirectory.
        dir: PathBuf,
    },
}

/// `strata config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults < strata.toml < STRATA_* variables < flags) as TOML.
    Print(ConfigArgs),
}

/// The configuration flags shared by `serve` and `config print`. Each key can also be set in strata.toml
/// (same name with underscores) or as a `STRATA_<KEY>` environment variable.
#[derive(Debug, Args, Default)]
pub struct ConfigArgs {
    /// Config file to read [default: ./strata.toml if present] [env: STRATA_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Directory holding all durable state, created if missing and locked while in use [default:
    /// ./strata-data] [env: STRATA_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Address every listener binds to; a non-loopback address requires requirepass [default: 127.0.0.1]
    /// [env: STRATA_BIND]
    #[arg(long, value_name = "IP")]
    pub bind: Option<String>,
    /// Port of the Redis-compatible (RESP) service; 0 picks a free port [default: 6379] [env:
    /// STRATA_RESP_PORT]
    #[arg(long, value_name = "PORT")]
    pub resp_port: Option<String>,
    /// Port of the AMQP 0-9-1 broker; 0 picks a free port [default: 5672] [env: STRATA_AMQP_PORT]
    #[arg(long, value_name = "PORT")]
    pub amqp_port: Option<String>,
    /// Port of the admin HTTP server (/healthz, /readyz, /metrics, /version); 0 picks a free port [default:
    /// 8080] [env: STRATA_HTTP_PORT]
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<String>,
    /// Port of the API gateway; 0 picks a free port [default: 8000] [env: STRATA_GATEWAY_PORT]
    #[arg(long, value_name = "PORT")]
    pub gateway_port: Option<String>,
    /// Comma-separated services to run: kv, amqp, http, gateway [default: every service built into this
    /// binary] [env: STRATA_SERVICES]
    #[arg(long, value_name = "LIST")]
    pub services: Option<String>,
    /// When storage fsyncs its write-ahead log: always, everysec or no [default: everysec] [env:
    /// STRATA_FSYNC]
    #[arg(long, value_name = "POLICY")]
    pub fsync: Option<String>,
    /// How long shutdown waits for in-flight work, e.g. 10s, 500ms, 2m [default: 10s] [env:
    /// STRATA_SHUTDOWN_TIMEOUT]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
    /// Log line format: text or json [default: text] [env: STRATA_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Log filter: error, warn, info, debug, trace or a RUST_LOG-style filter [default: $RUST_LOG, else info]
    /// [env: STRATA_LOG_LEVEL]
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Key-value data set size past which keys are evicted (or writes refused), e.g. 100mb, 1gb; 0 for none
    /// [default: 0] [env: STRATA_MAXMEMORY]
    #[arg(long, value_name = "BYTES")]
    pub maxmemory: Option<String>,
    /// How keys are evicted at maxmemory: noeviction, allkeys-lru, allkeys-lfu, allkeys-random,
    /// volatile-lru, volatile-lfu, volatile-random or volatile-ttl [default: noeviction] [env:
    /// STRATA_MAXMEMORY_POLICY]
    #[arg(long, value_name = "POLICY")]
    pub maxmemory_policy: Option<String>,
    /// Whether the key-value service answers DEBUG: no, yes, or local (loopback clients only)
    /// [default: no] [env: STRATA_ENABLE_DEBUG_COMMAND]
    #[arg(long, value_name = "MODE")]
    pub enable_debug_command: Option<String>,
    /// Bytes of ready AMQP messages held in memory past which their bodies are paged to storage, e.g.
    /// 512mb [default: 1 GiB] [env: STRATA_AMQP_MEMORY_BUDGET]
    #[arg(long, value_name = "BYTES")]
    pub amqp_memory_budget: Option<String>,
    /// Threads that serve connections (the async runtime's workers); 0 is one per CPU core [default: 0]
    /// [env: STRATA_WORKER_THREADS]
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<String>,
    /// Bytes of writes the storage engine keeps in its active memtable before flushing them to an
    /// SSTable, e.g. 64mb; more keeps more recent writes in memory for reads [default: 256mb] [env:
    /// STRATA_MEMTABLE_SIZE]
    #[arg(long, value_name = "BYTES")]
    pub memtable_size: Option<String>,
    /// How storage's background threads (flush, compaction, key expiry) are scheduled: idle (Linux's
    /// SCHED_IDLE: only CPU time nothing else wants) or low (nice 10: always a share, for machines other
    /// programs keep busy) [default: idle] [env: STRATA_BACKGROUND_PRIORITY]
    #[arg(long, value_name = "PRIORITY")]
    pub background_priority: Option<String>,
    /// Password clients and admin requests must present; prefer the environment variable, since flags are
    /// visible in the process list [default: none] [env: STRATA_REQUIREPASS]
    #[arg(long, value_name = "PASSWORD")]
    pub requirepass: Option<String>,
}

impl ConfigArgs {
    /// The layers these flags, the process environment and the config file make.
    pub fn layers(&self) -> Layers {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let (file, file_explicit) = match (&self.config, env_value(&env, "STRATA_CONFIG")) {
            (Some(path), _) => (path.clone(), true),
            (None, Some(path)) => (PathBuf::from(path), true),
            (None, None) => (PathBuf::from("strata.toml"), false),
        };
        let given = [
            ("data_dir", &self.data_dir),
            ("bind", &self.bind),
            ("resp_port", &self.resp_port),
            ("amqp_port", &self.amqp_port),
            ("http_port", &self.http_port),
            ("gateway_port", &self.gateway_port),
            ("services", &self.services),
            ("fsync", &self.fsync),
            ("shutdown_timeout", &self.shutdown_timeout),
            ("log_format", &self.log_format),
            ("log_level", &self.log_level),
            ("maxmemory", &self.maxmemory),
            ("maxmemory_policy", &self.maxmemory_policy),
            ("enable_debug_command", &self.enable_debug_command),
            ("amqp_memory_budget", &self.amqp_memory_budget),
            ("worker_threads", &self.worker_threads),
            ("memtable_size", &self.memtable_size),
            ("background_priority", &self.background_priority),
            ("requirepass", &self.requirepass),
        ];
        Layers {
            file: Some(file),
            file_explicit,
            env,
            flags: given
                .into_iter()
                .filter_map(|(name, value)| value.as_ref().map(|v| (name, v.clone())))
                .collect(),
        }
    }

    /// The effective configuration.
    pub fn resolve(&self) -> Result<Config, crate::config::ConfigError> {
        self.layers().resolve()
    }
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Exit status for a configuration the node refuses (as `sysexits.h`'s `EX_CONFIG`).
const EXIT_CONFIG: u8 = 78;

/// Parses the command line and runs it; the binary's whole `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Print(args)) => match args.resolve() {
            Ok(config) => {
                print!("{}", config.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("strata: error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Storage(cmd) => crate::storage_cli::run(cmd),
        Command::User(cmd) => crate::user_cli::run_user(cmd),
        Command::Vhost(cmd) => crate::user_cli::run_vhost(cmd),
        Command::Serve(args) => {
            let config = match args.resolve().and_then(|c| c.check_serve().map(|()| c)) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("strata: error: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let format = match config.log_format {
                crate::config::LogFormat::Text => strata_telemetry::LogFormat::Text,
                crate::config::LogFormat::Json => strata_telemetry::LogFormat::Json,
            };
            if let Err(e) = strata_telemetry::init_logging(format, config.log_level.as_deref()) {
                eprintln!("strata: error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
            match crate::node::serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("strata: error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_help_states_every_default() {
        let mut cmd = Cli::command();
        let serve = cmd
            .find_subcommand_mut("serve")
            .expect("serve subcommand")
            .render_long_help()
            .to_string();
        let d = Config::default();
        for expected in [
            format!("[default: {}]", d.resp_port),
            format!("[default: {}]", d.amqp_port),
            format!("[default: {}]", d.http_port),
            format!("[default: {}]", d.gateway_port),
            format!("[default: {}]", d.bind),
            format!("[default: {}]", d.data_dir.display()),
            "[default: everysec]".to_owned(),
            "[default: 10s]".to_owned(),
            "[default: text]".to_owned(),
        ] {
            assert!(serve.contains(&expected), "help lacks {expected}:\n{serve}");
        }
        for key in crate::config::KEYS {
            assert!(serve.contains(&key.flag()), "help lacks {}", key.flag());
            assert!(
                serve.contains(&key.env_var()),
                "help lacks {}",
                key.env_var()
            );
        }
    }
}
