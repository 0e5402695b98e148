//! The node's configuration: defaults < `strata.toml` < `STRATA_*` environment variables < command-line flags.
//!
//! Every layer is reduced to `key → value` pairs tagged with where they came from, then each pair is checked
//! against the one table of known keys ([`KEYS`]). That single path gives every source the same validation
//! and the same error shape — the key, the value given, where it came from and what is allowed — and the
//! same table drives `strata config print` and the docs.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// Where a configuration value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// A key in a TOML file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "the default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key no version of this config knows.
    #[error("unknown configuration key `{key}` in {origin}; known keys: {known}")]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was found.
        origin: Source,
        /// The known keys, comma-separated.
        known: String,
    },
    /// A known key with a value it cannot take.
    #[error("invalid value {value} for `{key}` (from {origin}): expected {allowed}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as given, quoted.
        value: String,
        /// Where it came from.
        origin: Source,
        /// What the key accepts.
        allowed: &'static str,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        err: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {err}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        err: String,
    },
    /// The settings are valid one by one but not together.
    #[error("{0}")]
    Invalid(String),
}

/// When the storage engine fsyncs its write-ahead log (Redis's `appendfsync` naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before acknowledging every write (group commit shares one fsync among concurrent writers).
    Always,
    /// About once a second; a crash loses at most about a second of acknowledged writes.
    Everysec,
    /// Never explicitly; the OS decides. For caches and benchmarks.
    No,
}

impl FsyncPolicy {
    /// The name used in configuration and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Everysec => "everysec",
            Self::No => "no",
        }
    }
}

/// How the storage engine's background threads (flush, compaction, the key-value active expiry) are
/// scheduled; see `strata_storage::BackgroundPriority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackgroundPriority {
    /// Linux's `SCHED_IDLE`: only CPU time nothing else wants, and a woken request-serving thread (or a
    /// client on the same machine) takes the core from them at once.
    Idle,
    /// nice 10: a lower share, but always a share, for machines other programs keep busy.
    Low,
}

/// A service `strata serve` can run, each on its own listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// The Redis-compatible key-value server (RESP).
    Kv,
    /// The AMQP 0-9-1 broker.
    Amqp,
    /// The admin HTTP server: health, readiness, metrics, version (and later the admin API).
    Http,
    /// The HTTP API gateway.
    Gateway,
}

impl ServiceKind {
    /// Every service strata knows of, built or planned.
    pub const ALL: [ServiceKind; 4] = [Self::Kv, Self::Amqp, Self::Http, Self::Gateway];

    /// The name used in `--services` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kv => "kv",
            Self::Amqp => "amqp",
            Self::Http => "http",
            Self::Gateway => "gateway",
        }
    }

    /// The key of this service's port in `ports.json`.
    pub fn port_key(self) -> &'static str {
        match self {
            Self::Kv => "resp",
            Self::Amqp => "amqp",
            Self::Http => "http",
            Self::Gateway => "gateway",
        }
    }

    /// Whether this build contains the service. Planned services are named so that `--services` can say
    /// "not built yet" rather than "unknown".
    pub fn is_built(self) -> bool {
        matches!(self, Self::Kv | Self::Amqp | Self::Http)
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A secret value: never shown by `Debug`, `Display` or `config print`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the code that checks it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The effective configuration of a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Where all durable state lives.
    pub data_dir: PathBuf,
    /// The address every listener binds to.
    pub bind: IpAddr,
    /// RESP (Redis) port.
    pub resp_port: u16,
    /// AMQP port.
    pub amqp_port: u16,
    /// Admin HTTP port.
    pub http_port: u16,
    /// API gateway port.
    pub gateway_port: u16,
    /// The services to run.
    pub services: Vec<ServiceKind>,
    /// The storage engine's fsync policy.
    pub fsync: FsyncPolicy,
    /// How long shutdown waits for in-flight work before closing anyway.
    #[serde(serialize_with = "serialize_duration")]
    pub shutdown_timeout: Duration,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter (`info`, `warn,strata=debug`); unset means `RUST_LOG`, else `info`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// The password clients and admin requests must present; required to bind beyond loopback.
    #[serde(skip)]
    pub requirepass: Option<Secret>,
    /// The key-value service's `maxmemory` in bytes (0: none): the data set's logical size past which
    /// keys are evicted under `maxmemory_policy`, or writes refused with `-OOM`.
    pub maxmemory: u64,
    /// The key-value service's eviction policy (Redis's names).
    pub maxmemory_policy: String,
    /// Whether the key-value service answers DEBUG: `no` (Redis's default), `yes`, or `local`
    /// (loopback clients only).
    pub enable_debug_command: String,
    /// Bytes of ready AMQP messages held in memory past which their bodies are paged to storage.
    pub amqp_memory_budget: u64,
    /// Threads that run the services' connections (the async runtime's workers); 0: one per CPU core.
    pub worker_threads: usize,
    /// Bytes of writes the storage engine's active memtable holds before it is frozen and flushed.
    pub memtable_size: u64,
    /// How the storage engine's background threads are scheduled.
    pub background_priority: BackgroundPriority,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./strata-data"),
            bind: IpAddr::from([127, 0, 0, 1]),
            resp_port: 6379,
            amqp_port: 5672,
            http_port: 8080,
            gateway_port: 8000,
            services: ServiceKind::ALL
                .into_iter()
                .filter(|s| s.is_built())
                .collect(),
            fsync: FsyncPolicy::Everysec,
            shutdown_timeout: Duration::from_secs(10),
            log_format: LogFormat::Text,
            log_level: None,
            requirepass: None,
            maxmemory: 0,
            maxmemory_policy: "noeviction".to_owned(),
            enable_debug_command: "no".to_owned(),
            amqp_memory_budget: strata_amqp::AmqpConfig::default().memory_budget_bytes,
            worker_threads: 0,
            memtable_size: DEFAULT_MEMTABLE_SIZE,
            background_priority: BackgroundPriority::Idle,
        }
    }
}

/// The memtable size strata runs with unless told otherwise: 256 MiB, four times RocksDB's default. The
/// memtable is the in-memory part of the data set, so a larger one keeps more recently written keys out of
/// SSTable reads (a script's key, a stream's pending entries) and folds more overwrites of one key before
/// they are flushed: EVALSHA's CPU per call −20% and XACK's throughput +14% against 64 MiB (session 11,
/// docs/benchmarks.md). It costs memory only as writes fill it, and WAL replay time after a crash.
pub const DEFAULT_MEMTABLE_SIZE: u64 = 256 << 20;

fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

/// One known configuration key.
#[derive(Debug)]
pub struct Key {
    /// Name in `strata.toml`; the flag is `--` + name with `_` → `-`, the variable `STRATA_` + uppercase.
    pub name: &'static str,
    /// What the key accepts, for error messages.
    pub allowed: &'static str,
    apply: fn(&mut Config, &Value) -> Option<()>,
}

impl Key {
    /// The command-line flag for this key.
    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }

    /// The environment variable for this key.
    pub fn env_var(&self) -> String {
        format!("STRATA_{}", self.name.to_ascii_uppercase())
    }
}

/// A raw value from any layer: TOML gives typed values, flags and environment variables give strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (every flag and environment variable).
    Str(String),
    /// A TOML integer.
    Int(i64),
    /// A TOML boolean.
    Bool(bool),
    /// A TOML array of strings.
    List(Vec<String>),
    /// Any other TOML value, kept for the error message.
    Other(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::List(l) => write!(f, "{l:?}"),
            Value::Other(o) => write!(f, "{o}"),
        }
    }
}

impl From<&toml::Value> for Value {
    fn from(v: &toml::Value) -> Self {
        match v {
            toml::Value::String(s) => Value::Str(s.clone()),
            toml::Value::Integer(i) => Value::Int(*i),
            toml::Value::Boolean(b) => Value::Bool(*b),
            toml::Value::Array(items) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|i| i.as_str().map(str::to_owned))
                    .collect();
                strings.map_or_else(|| Value::Other(v.to_string()), Value::List)
            }
            other => Value::Other(other.to_string()),
        }
    }
}

impl Value {
    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A string parsed with `FromStr`, or an integer taken as it is.
    fn parse<T: FromStr + TryFrom<i64>>(&self) -> Option<T> {
        match self {
            Value::Str(s) => s.trim().parse().ok(),
            Value::Int(i) => T::try_from(*i).ok(),
            _ => None,
        }
    }
}

/// Every configuration key, in the order `config print` shows them.
pub const KEYS: &[Key] = &[
    Key {
        name: "data_dir",
        allowed: "a directory path",
        apply: |c, v| {
            let s = v.as_str().filter(|s| !s.is_empty())?;
            c.data_dir = PathBuf::from(s);
            Some(())
        },
    },
    Key {
        name: "bind",
        allowed: "an IP address such as 127.0.0.1, ::1 or 0.0.0.0",
        apply: |c, v| {
            c.bind = v.as_str()?.trim().parse().ok()?;
            Some(())
        },
    },
    Key {
        name: "resp_port",
        allowed: "a port number from 0 to 65535 (0 picks a free port)",
        apply: |c, v| {
            c.resp_port = v.parse()?;
            Some(())
        },
    },
    Key {
        name: "amqp_port",
        allowed: "a port number from 0 to 65535 (0 picks a free port)",
        apply: |c, v| {
            c.amqp_port = v.parse()?;
            Some(())
        },
    },
    Key {
        name: "http_port",
        allowed: "a port number from 0 to 65535 (0 picks a free port)",
        apply: |c, v| {
            c.http_port = v.parse()?;
            Some(())
        },
    },
    Key {
        name: "gateway_port",
        allowed: "a port number from 0 to 65535 (0 picks a free port)",
        apply: |c, v| {
            c.gateway_port = v.parse()?;
            Some(())
        },
    },
    Key {
        name: "services",
        allowed: "a comma-separated list (or TOML array) of services built into this strata: kv, amqp, \
                  http (gateway is planned)",
        apply: |c, v| {
            let names: Vec<String> = match v {
                Value::Str(s) => s.split(',').map(|n| n.trim().to_owned()).collect(),
                Value::List(l) => l.iter().map(|n| n.trim().to_owned()).collect(),
                _ => return None,
            };
            let mut services = Vec::new();
            for name in names.iter().filter(|n| !n.is_empty()) {
                let service = ServiceKind::from_name(name).filter(|s| s.is_built())?;
                if !services.contains(&service) {
                    services.push(service);
                }
            }
            services.sort();
            (!services.is_empty()).then_some(())?;
            c.services = services;
            Some(())
        },
    },
    Key {
        name: "fsync",
        allowed: "one of always, everysec, no",
        apply: |c, v| {
            c.fsync = match v.as_str()?.trim() {
                "always" => FsyncPolicy::Always,
                "everysec" => FsyncPolicy::Everysec,
                "no" => FsyncPolicy::No,
                _ => return None,
            };
            Some(())
        },
    },
    Key {
        name: "shutdown_timeout",
        allowed: "a duration such as 10s, 500ms or 2m (a bare number is seconds), at most 1h",
        apply: |c, v| {
            let d = match v {
                Value::Int(i) => Duration::from_secs(u64::try_from(*i).ok()?),
                Value::Str(s) => parse_duration(s)?,
                _ => return None,
            };
            (d <= Duration::from_secs(3600)).then_some(())?;
            c.shutdown_timeout = d;
            Some(())
        },
    },
    Key {
        name: "log_format",
        allowed: "one of text, json",
        apply: |c, v| {
            c.log_format = match v.as_str()?.trim() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return None,
            };
            Some(())
        },
    },
    Key {
        name: "log_level",
        allowed: "error, warn, info, debug, trace, or a RUST_LOG-style filter such as info,strata=debug",
        apply: |c, v| {
            let s = v.as_str()?.trim();
            strata_telemetry::parse_filter(s).ok()?;
            c.log_level = Some(s.to_owned());
            Some(())
        },
    },
    Key {
        name: "maxmemory",
        allowed: "a size in bytes, optionally with a unit: 100mb, 1gb, 512kb (k/m/g are powers of 1000), 0 for none",
        apply: |c, v| {
            c.maxmemory = size_value(v)?;
            Some(())
        },
    },
    Key {
        name: "amqp_memory_budget",
        allowed: "a size in bytes, optionally with a unit as Redis reads them: 512mb, 1gb",
        apply: |c, v| {
            c.amqp_memory_budget = size_value(v)?;
            Some(())
        },
    },
    Key {
        name: "worker_threads",
        allowed: "a number of threads from 0 to 1024 (0: one per CPU core)",
        apply: |c, v| {
            let n = match v {
                Value::Int(i) => usize::try_from(*i).ok()?,
                Value::Str(s) => s.trim().parse().ok()?,
                _ => return None,
            };
            (n <= 1024).then_some(())?;
            c.worker_threads = n;
            Some(())
        },
    },
    Key {
        name: "memtable_size",
        allowed: "a size in bytes from 1mb to 4gb, optionally with a unit as Redis reads them: 64mb, 1gb",
        apply: |c, v| {
            let n = size_value(v)?;
            ((1 << 20)..=(4 << 30)).contains(&n).then_some(())?;
            c.memtable_size = n;
            Some(())
        },
    },
    Key {
        name: "background_priority",
        allowed: "one of idle, low",
        apply: |c, v| {
            c.background_priority = match v.as_str()?.trim() {
                "idle" => BackgroundPriority::Idle,
                "low" => BackgroundPriority::Low,
                _ => return None,
            };
            Some(())
        },
    },
    Key {
        name: "maxmemory_policy",
        allowed: "one of noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, \
                  volatile-random, volatile-ttl",
        apply: |c, v| {
            let p = v.as_str()?.trim().to_ascii_lowercase();
            strata_kv::stats::MAXMEMORY_POLICIES
                .contains(&p.as_str())
                .then_some(())?;
            c.maxmemory_policy = p;
            Some(())
        },
    },
    Key {
        name: "enable_debug_command",
        allowed: "one of no, yes, local",
        apply: |c, v| {
            let mode = v.as_str()?.trim().to_ascii_lowercase();
            ["no", "yes", "local"]
                .contains(&mode.as_str())
                .then_some(())?;
            c.enable_debug_command = mode;
            Some(())
        },
    },
    Key {
        name: "requirepass",
        allowed: "a non-empty password",
        apply: |c, v| {
            let s = v.as_str().filter(|s| !s.is_empty())?;
            c.requirepass = Some(Secret(s.to_owned()));
            Some(())
        },
    },
];

/// Finds a key by its TOML name.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

fn known_keys() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// The layers a configuration is built from, before validation.
#[derive(Debug, Default)]
pub struct Layers {
    /// The config file to read: given explicitly (must exist), or `./strata.toml` if present.
    pub file: Option<PathBuf>,
    /// Whether `file` was named explicitly (a missing explicit file is an error).
    pub file_explicit: bool,
    /// Environment variables (normally `std::env::vars()`); only `STRATA_*` ones are looked at.
    pub env: Vec<(String, String)>,
    /// Flags given on the command line, as `(key name, value)`.
    pub flags: Vec<(&'static str, String)>,
}

/// Environment variables that are not configuration keys but are still strata's own.
const ENV_NOT_KEYS: &[&str] = &["STRATA_CONFIG"];

impl Layers {
    /// Applies every layer in order and validates the result.
    pub fn resolve(&self) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = &self.file
            && (self.file_explicit || path.exists())
        {
            for (key, value) in read_file(path)? {
                set(&mut config, &key, &value, Source::File(path.clone()))?;
            }
        }
        let mut env: Vec<&(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("STRATA_") && !ENV_NOT_KEYS.contains(&k.as_str()))
            .collect();
        env.sort();
        for (var, value) in env {
            let name = var["STRATA_".len()..].to_ascii_lowercase();
            set(
                &mut config,
                &name,
                &Value::Str(value.clone()),
                Source::Env(var.clone()),
            )?;
        }
        for (name, value) in &self.flags {
            let flag = key(name).map_or_else(|| (*name).to_owned(), Key::flag);
            set(
                &mut config,
                name,
                &Value::Str(value.clone()),
                Source::Flag(flag),
            )?;
        }
        Ok(config)
    }
}

fn set(config: &mut Config, name: &str, value: &Value, source: Source) -> Result<(), ConfigError> {
    let Some(key) = key(name) else {
        let shown = match &source {
            Source::Env(var) => var.clone(),
            _ => name.to_owned(),
        };
        return Err(ConfigError::UnknownKey {
            key: shown,
            origin: source,
            known: known_keys(),
        });
    };
    (key.apply)(config, value).ok_or_else(|| ConfigError::BadValue {
        key: key.name,
        value: if key.name == "requirepass" {
            "<redacted>".to_owned()
        } else {
            value.to_string()
        },
        origin: source,
        allowed: key.allowed,
    })
}

fn read_file(path: &Path) -> Result<Vec<(String, Value)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        path: path.to_owned(),
        err,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_owned(),
            err: e.to_string(),
        })?;
    Ok(table
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v)))
        .collect())
}

impl Config {
    /// Checks that hold across keys, at `serve` time.
    ///
    /// Binding beyond loopback without a password is refused: anyone who can reach the port would own the
    /// data (Redis's protected mode, made strict).
    pub fn check_serve(&self) -> Result<(), ConfigError> {
        if !self.bind.is_loopback() && self.requirepass.is_none() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {} without authentication: anyone who can reach it could read and \
                 change all data. Set a password with STRATA_REQUIREPASS=<password> (or `requirepass` in \
                 strata.toml, or --requirepass), or bind to a loopback address such as 127.0.0.1",
                self.bind
            )));
        }
        Ok(())
    }

    /// The port configured for a service.
    pub fn port(&self, service: ServiceKind) -> u16 {
        match service {
            ServiceKind::Kv => self.resp_port,
            ServiceKind::Amqp => self.amqp_port,
            ServiceKind::Http => self.http_port,
            ServiceKind::Gateway => self.gateway_port,
        }
    }

    /// The configuration as TOML, as `strata config print` shows it. A set password is shown as a comment,
    /// never its value.
    pub fn to_toml(&self) -> String {
        let mut text = String::from("# strata effective configuration\n");
        match toml::to_string(self) {
            Ok(body) => text.push_str(&body),
            Err(e) => text.push_str(&format!("# cannot render: {e}\n")),
        }
        if self.requirepass.is_some() {
            text.push_str("# requirepass is set (value not shown)\n");
        }
        text
    }
}

/// A size setting's value: a number of bytes, or a string with a unit as Redis reads them.
fn size_value(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::Str(s) => parse_memory(s),
        _ => None,
    }
}

/// Parses a size as Redis's config does: a number with an optional unit, `k`/`m`/`g` for powers of 1000
/// and `kb`/`mb`/`gb` for powers of 1024.
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Parses `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit.trim() {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(pairs: &[(&'static str, &str)]) -> Layers {
        Layers {
            flags: pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            ..Layers::default()
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Layers::default().resolve().unwrap();
        assert_eq!(c.resp_port, 6379);
        assert_eq!(c.amqp_port, 5672);
        assert_eq!(c.http_port, 8080);
        assert_eq!(c.gateway_port, 8000);
        assert_eq!(c.fsync, FsyncPolicy::Everysec);
        assert_eq!(c.maxmemory, 0);
        assert_eq!(c.maxmemory_policy, "noeviction");
        assert_eq!(c.amqp_memory_budget, 1 << 30);
        assert_eq!(c.worker_threads, 0);
        assert_eq!(c.memtable_size, 256 << 20);
        assert_eq!(c.background_priority, BackgroundPriority::Idle);
        assert_eq!(
            flags(&[("background_priority", "low")])
                .resolve()
                .unwrap()
                .background_priority,
            BackgroundPriority::Low
        );
        assert_eq!(
            flags(&[("memtable_size", "64mb")])
                .resolve()
                .unwrap()
                .memtable_size,
            64 << 20
        );
        assert_eq!(
            flags(&[("worker_threads", "1")])
                .resolve()
                .unwrap()
                .worker_threads,
            1
        );
        assert_eq!(
            flags(&[("amqp_memory_budget", "512mb")])
                .resolve()
                .unwrap()
                .amqp_memory_budget,
            512 << 20
        );
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.data_dir, PathBuf::from("./strata-data"));
        assert!(c.bind.is_loopback());
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "resp_port = 1\namqp_port = 2\nhttp_port = 3\n").unwrap();
        let layers = Layers {
            file: Some(path),
            file_explicit: true,
            env: vec![
                ("STRATA_AMQP_PORT".into(), "20".into()),
                ("STRATA_HTTP_PORT".into(), "30".into()),
                ("HOME".into(), "/root".into()),
            ],
            flags: vec![("http_port", "300".into())],
        };
        let c = layers.resolve().unwrap();
        assert_eq!((c.resp_port, c.amqp_port, c.http_port), (1, 20, 300));
    }

    #[test]
    fn bad_values_name_key_value_source_and_allowed() {
        let table: &[(&'static str, &str, &str)] = &[
            ("resp_port", "70000", "port number"),
            ("resp_port", "abc", "port number"),
            ("bind", "example.com", "IP address"),
            ("fsync", "sometimes", "always, everysec, no"),
            ("shutdown_timeout", "10 parsecs", "duration"),
            ("services", "gateway", "services built into this strata"),
            ("services", "bogus", "services built into this strata"),
            ("log_format", "xml", "text, json"),
            ("maxmemory", "lots", "size in bytes"),
            ("maxmemory_policy", "lru", "allkeys-lru"),
            ("amqp_memory_budget", "lots", "size in bytes"),
            ("worker_threads", "many", "number of threads"),
            ("worker_threads", "5000", "number of threads"),
            ("memtable_size", "lots", "size in bytes"),
            ("memtable_size", "1kb", "from 1mb to 4gb"),
            ("background_priority", "high", "idle, low"),
        ];
        for (key, value, allowed) in table {
            let err = flags(&[(key, value)]).resolve().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            assert!(err.contains(value), "{err}");
            assert!(err.contains(allowed), "{err}");
            assert!(err.contains("--"), "source missing: {err}");
        }
    }

    #[test]
    fn unknown_file_key_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "resp_prot = 1\n").unwrap();
        let layers = Layers {
            file: Some(path),
            file_explicit: true,
            ..Layers::default()
        };
        let err = layers.resolve().unwrap_err().to_string();
        assert!(
            err.contains("unknown configuration key `resp_prot`"),
            "{err}"
        );
        assert!(err.contains("resp_port"), "known keys listed: {err}");
    }

    #[test]
    fn unknown_env_var_is_refused_with_its_name() {
        let layers = Layers {
            env: vec![("STRATA_RESP_PROT".into(), "1".into())],
            ..Layers::default()
        };
        let err = layers.resolve().unwrap_err().to_string();
        assert!(err.contains("STRATA_RESP_PROT"), "{err}");
    }

    #[test]
    fn bad_toml_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "resp_port = \"x\"\nfsync = 3\n").unwrap();
        let layers = Layers {
            file: Some(path),
            file_explicit: true,
            ..Layers::default()
        };
        let err = layers.resolve().unwrap_err().to_string();
        assert!(err.contains("resp_port") || err.contains("fsync"), "{err}");
    }

    #[test]
    fn missing_explicit_file_is_an_error_but_missing_default_file_is_not() {
        let layers = Layers {
            file: Some(PathBuf::from("/nonexistent/strata.toml")),
            file_explicit: true,
            ..Layers::default()
        };
        assert!(layers.resolve().is_err());
        let layers = Layers {
            file: Some(PathBuf::from("/nonexistent/strata.toml")),
            file_explicit: false,
            ..Layers::default()
        };
        assert!(layers.resolve().is_ok());
    }

    #[test]
    fn non_loopback_bind_needs_a_password() {
        let c = flags(&[("bind", "0.0.0.0")]).resolve().unwrap();
        let err = c.check_serve().unwrap_err().to_string();
        assert!(err.contains("STRATA_REQUIREPASS"), "{err}");
        let c = flags(&[("bind", "0.0.0.0"), ("requirepass", "s3cret")])
            .resolve()
            .unwrap();
        c.check_serve().unwrap();
    }

    #[test]
    fn secrets_never_show() {
        let c = flags(&[("requirepass", "s3cret")]).resolve().unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!c.to_toml().contains("s3cret"));
    }

    #[test]
    fn printed_config_reads_back_the_same() {
        let c = flags(&[
            ("shutdown_timeout", "1500ms"),
            ("fsync", "always"),
            ("log_level", "debug"),
        ])
        .resolve()
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, c.to_toml()).unwrap();
        let back = Layers {
            file: Some(path),
            file_explicit: true,
            ..Layers::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
    }
}
