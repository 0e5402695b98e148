//! CONFIG GET, SET, RESETSTAT, REWRITE over a table of Redis 7.0's parameters.
//!
//! Every parameter Redis 7.0 knows is in [`PARAMS`] with its type, range and default, so `CONFIG GET *`
//! lists what a Redis client expects and `CONFIG SET` validates like Redis does. The parameters strata
//! acts on are live: `maxmemory`, `maxmemory-policy`, `maxclients`, the slow log's, `notify-keyspace-events`,
//! the pub/sub output buffer limits; `port`, `databases` and `bind` report the running service. The rest
//! (encodings and tuning knobs of Redis's own data structures, replication, persistence files) are kept
//! and reported back but change nothing, because strata's engine has no such knob.
//!
//! `CONFIG SET` with several parameters is atomic: every pair is checked first (names, duplicates,
//! values) and nothing changes unless all pass.

use std::sync::atomic::Ordering;
use strata_resp::Arg;

use bytes::Bytes;
use strata_resp::Frame;

use super::CommandSpec;
use super::keys::glob_match;
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "config",
    arity: -2,
    flags: &["admin", "noscript", "loading", "stale"],
    no_auth: false,
    run: config,
}];

/// Refused by `CONFIG SET`.
const IMMUTABLE: u8 = 1;
/// Listed by `CONFIG GET` only when asked for by its exact name.
const HIDDEN: u8 = 1 << 1;
/// A secret (not shown in logs).
const SENSITIVE: u8 = 1 << 2;
/// Refused by `CONFIG SET` while `enable-protected-configs` is `no` (its default, and strata's).
const PROTECTED: u8 = 1 << 3;

/// How a parameter's value is checked and shown.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `yes` or `no`.
    Bool,
    /// An integer in the inclusive range.
    Int(i64, i64),
    /// A size in bytes with Redis's units (`1k`, `1kb`, `1mb`, ...), in the inclusive range.
    Memory(i64, i64),
    /// A memory size, or a percentage `N%` (stored negated, as Redis does).
    MemoryOrPercent(i64, i64),
    /// An octal number up to the maximum.
    Octal(i64),
    /// Any string.
    Str,
    /// One of the values.
    Enum(&'static [&'static str]),
    /// A space-separated set of the values.
    Flags(&'static [&'static str]),
    /// Checked by name (save, bind, notify-keyspace-events, ...).
    Special,
}

/// One parameter.
#[derive(Debug)]
struct Param {
    name: &'static str,
    alias: Option<&'static str>,
    flags: u8,
    kind: Kind,
    default: &'static str,
}

const fn p(
    name: &'static str,
    alias: Option<&'static str>,
    flags: u8,
    kind: Kind,
    default: &'static str,
) -> Param {
    Param {
        name,
        alias,
        flags,
        kind,
        default,
    }
}

/// Redis 7.0's parameters (without the TLS ones, which a build without TLS does not have).
static PARAMS: &[Param] = &[
    p("rdbchecksum", None, IMMUTABLE, Kind::Bool, "yes"),
    p("daemonize", None, IMMUTABLE, Kind::Bool, "no"),
    p("io-threads-do-reads", None, IMMUTABLE, Kind::Bool, "no"),
    p("always-show-logo", None, IMMUTABLE, Kind::Bool, "no"),
    p("protected-mode", None, 0, Kind::Bool, "yes"),
    p("rdbcompression", None, 0, Kind::Bool, "yes"),
    p("rdb-del-sync-files", None, 0, Kind::Bool, "no"),
    p("activerehashing", None, 0, Kind::Bool, "yes"),
    p("stop-writes-on-bgsave-error", None, 0, Kind::Bool, "yes"),
    p("set-proc-title", None, IMMUTABLE, Kind::Bool, "yes"),
    p("dynamic-hz", None, 0, Kind::Bool, "yes"),
    p("lazyfree-lazy-eviction", None, 0, Kind::Bool, "no"),
    p("lazyfree-lazy-expire", None, 0, Kind::Bool, "no"),
    p("lazyfree-lazy-server-del", None, 0, Kind::Bool, "no"),
    p("lazyfree-lazy-user-del", None, 0, Kind::Bool, "no"),
    p("lazyfree-lazy-user-flush", None, 0, Kind::Bool, "no"),
    p("repl-disable-tcp-nodelay", None, 0, Kind::Bool, "no"),
    p("repl-diskless-sync", None, 0, Kind::Bool, "yes"),
    p("aof-rewrite-incremental-fsync", None, 0, Kind::Bool, "yes"),
    p("no-appendfsync-on-rewrite", None, 0, Kind::Bool, "no"),
    p("cluster-require-full-coverage", None, 0, Kind::Bool, "yes"),
    p("rdb-save-incremental-fsync", None, 0, Kind::Bool, "yes"),
    p("aof-load-truncated", None, 0, Kind::Bool, "yes"),
    p("aof-use-rdb-preamble", None, 0, Kind::Bool, "yes"),
    p("aof-timestamp-enabled", None, 0, Kind::Bool, "no"),
    p(
        "cluster-replica-no-failover",
        Some("cluster-slave-no-failover"),
        0,
        Kind::Bool,
        "no",
    ),
    p(
        "replica-lazy-flush",
        Some("slave-lazy-flush"),
        0,
        Kind::Bool,
        "no",
    ),
    p(
        "replica-serve-stale-data",
        Some("slave-serve-stale-data"),
        0,
        Kind::Bool,
        "yes",
    ),
    p(
        "replica-read-only",
        Some("slave-read-only"),
        0,
        Kind::Bool,
        "yes",
    ),
    p(
        "replica-ignore-maxmemory",
        Some("slave-ignore-maxmemory"),
        0,
        Kind::Bool,
        "yes",
    ),
    p("jemalloc-bg-thread", None, 0, Kind::Bool, "yes"),
    p("activedefrag", None, 0, Kind::Bool, "no"),
    p("syslog-enabled", None, IMMUTABLE, Kind::Bool, "no"),
    p("cluster-enabled", None, IMMUTABLE, Kind::Bool, "no"),
    p("appendonly", None, 0, Kind::Bool, "no"),
    p("cluster-allow-reads-when-down", None, 0, Kind::Bool, "no"),
    p(
        "cluster-allow-pubsubshard-when-down",
        None,
        0,
        Kind::Bool,
        "yes",
    ),
    p("crash-log-enabled", None, 0, Kind::Bool, "yes"),
    p("crash-memcheck-enabled", None, 0, Kind::Bool, "yes"),
    p("use-exit-on-panic", None, HIDDEN, Kind::Bool, "no"),
    p("disable-thp", None, IMMUTABLE, Kind::Bool, "yes"),
    p(
        "cluster-allow-replica-migration",
        None,
        0,
        Kind::Bool,
        "yes",
    ),
    p("replica-announced", None, 0, Kind::Bool, "yes"),
    p("latency-tracking", None, 0, Kind::Bool, "yes"),
    p("aof-disable-auto-gc", None, 0, Kind::Bool, "no"),
    p(
        "replica-ignore-disk-write-errors",
        None,
        0,
        Kind::Bool,
        "no",
    ),
    p("aclfile", None, IMMUTABLE, Kind::Str, ""),
    p("unixsocket", None, IMMUTABLE, Kind::Str, ""),
    p("pidfile", None, IMMUTABLE, Kind::Str, ""),
    p(
        "replica-announce-ip",
        Some("slave-announce-ip"),
        0,
        Kind::Str,
        "",
    ),
    p("masteruser", None, SENSITIVE, Kind::Str, ""),
    p("cluster-announce-ip", None, 0, Kind::Str, ""),
    p(
        "cluster-config-file",
        None,
        IMMUTABLE,
        Kind::Str,
        "nodes.conf",
    ),
    p("cluster-announce-hostname", None, 0, Kind::Str, ""),
    p("syslog-ident", None, IMMUTABLE, Kind::Str, "redis"),
    // SAVE writes a storage checkpoint (a directory, not an RDB file) at `<dir>/<dbfilename>`.
    p("dbfilename", None, PROTECTED, Kind::Str, DEFAULT_DBFILENAME),
    p(
        "appendfilename",
        None,
        IMMUTABLE,
        Kind::Str,
        "appendonly.aof",
    ),
    p("appenddirname", None, IMMUTABLE, Kind::Str, "appendonlydir"),
    p("server_cpulist", None, IMMUTABLE, Kind::Str, ""),
    p("bio_cpulist", None, IMMUTABLE, Kind::Str, ""),
    p("aof_rewrite_cpulist", None, IMMUTABLE, Kind::Str, ""),
    p("bgsave_cpulist", None, IMMUTABLE, Kind::Str, ""),
    p("ignore-warnings", None, 0, Kind::Str, ""),
    p(
        "proc-title-template",
        None,
        0,
        Kind::Str,
        "{title} {listen-addr} {server-mode}",
    ),
    p("bind-source-addr", None, 0, Kind::Str, ""),
    p("logfile", None, IMMUTABLE, Kind::Str, ""),
    p("masterauth", None, SENSITIVE, Kind::Str, ""),
    p("requirepass", None, SENSITIVE, Kind::Str, ""),
    p(
        "supervised",
        None,
        IMMUTABLE,
        Kind::Enum(&["upstart", "systemd", "auto", "no"]),
        "no",
    ),
    p(
        "syslog-facility",
        None,
        IMMUTABLE,
        Kind::Enum(&[
            "user", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
        ]),
        "local0",
    ),
    p(
        "repl-diskless-load",
        None,
        0,
        Kind::Enum(&["disabled", "on-empty-db", "swapdb"]),
        "disabled",
    ),
    p(
        "loglevel",
        None,
        0,
        Kind::Enum(&["debug", "verbose", "notice", "warning"]),
        "notice",
    ),
    p(
        "maxmemory-policy",
        None,
        0,
        Kind::Enum(&[
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "noeviction",
        ]),
        "noeviction",
    ),
    p(
        "appendfsync",
        None,
        0,
        Kind::Enum(&["everysec", "always", "no"]),
        "everysec",
    ),
    p(
        "oom-score-adj",
        None,
        0,
        Kind::Enum(&["no", "yes", "relative", "absolute"]),
        "no",
    ),
    p(
        "acl-pubsub-default",
        None,
        0,
        Kind::Enum(&["allchannels", "resetchannels"]),
        "resetchannels",
    ),
    p(
        "sanitize-dump-payload",
        None,
        0,
        Kind::Enum(&["no", "yes", "clients"]),
        "no",
    ),
    p(
        "enable-protected-configs",
        None,
        IMMUTABLE,
        Kind::Enum(&["no", "yes", "local"]),
        "no",
    ),
    p(
        "enable-debug-command",
        None,
        IMMUTABLE,
        Kind::Enum(&["no", "yes", "local"]),
        "no",
    ),
    p(
        "enable-module-command",
        None,
        IMMUTABLE,
        Kind::Enum(&["no", "yes", "local"]),
        "no",
    ),
    p(
        "cluster-preferred-endpoint-type",
        None,
        0,
        Kind::Enum(&["ip", "hostname", "unknown-endpoint"]),
        "ip",
    ),
    p(
        "propagation-error-behavior",
        None,
        0,
        Kind::Enum(&["ignore", "panic", "panic-on-replicas"]),
        "ignore",
    ),
    p(
        "shutdown-on-sigint",
        None,
        0,
        Kind::Flags(&["default", "save", "nosave", "now", "force"]),
        "default",
    ),
    p(
        "shutdown-on-sigterm",
        None,
        0,
        Kind::Flags(&["default", "save", "nosave", "now", "force"]),
        "default",
    ),
    p(
        "databases",
        None,
        IMMUTABLE,
        Kind::Int(1, i32::MAX as i64),
        "16",
    ),
    p("port", None, 0, Kind::Int(0, 65535), "6379"),
    p("io-threads", None, IMMUTABLE, Kind::Int(1, 128), "1"),
    p(
        "auto-aof-rewrite-percentage",
        None,
        0,
        Kind::Int(0, i32::MAX as i64),
        "100",
    ),
    p(
        "cluster-replica-validity-factor",
        Some("cluster-slave-validity-factor"),
        0,
        Kind::Int(0, i32::MAX as i64),
        "10",
    ),
    p(
        "list-max-listpack-size",
        Some("list-max-ziplist-size"),
        0,
        Kind::Int(i32::MIN as i64, i32::MAX as i64),
        "-2",
    ),
    p(
        "tcp-keepalive",
        None,
        0,
        Kind::Int(0, i32::MAX as i64),
        "300",
    ),
    p(
        "cluster-migration-barrier",
        None,
        0,
        Kind::Int(0, i32::MAX as i64),
        "1",
    ),
    p("active-defrag-cycle-min", None, 0, Kind::Int(1, 99), "1"),
    p("active-defrag-cycle-max", None, 0, Kind::Int(1, 99), "25"),
    p(
        "active-defrag-threshold-lower",
        None,
        0,
        Kind::Int(0, 1000),
        "10",
    ),
    p(
        "active-defrag-threshold-upper",
        None,
        0,
        Kind::Int(0, 1000),
        "100",
    ),
    p(
        "lfu-log-factor",
        None,
        0,
        Kind::Int(0, i32::MAX as i64),
        "10",
    ),
    p(
        "lfu-decay-time",
        None,
        0,
        Kind::Int(0, i32::MAX as i64),
        "1",
    ),
    p(
        "replica-priority",
        Some("slave-priority"),
        0,
        Kind::Int(0, i32::MAX as i64),
        "100",
    ),
    p(
        "repl-diskless-sync-delay",
        None,
        0,
        Kind::Int(0, i32::MAX as i64),
        "5",
    ),
    p(
        "maxmemory-samples",
        None,
        0,
        Kind::Int(1, i32::MAX as i64),
        "5",
    ),
    p(
        "maxmemory-eviction-tenacity",
        None,
        0,
        Kind::Int(0, 100),
        "10",
    ),
    p("timeout", None, 0, Kind::Int(0, i32::MAX as i64), "0"),
    p(
        "replica-announce-port",
        Some("slave-announce-port"),
        0,
        Kind::Int(0, 65535),
        "0",
    ),
    p(
        "tcp-backlog",
        None,
        IMMUTABLE,
        Kind::Int(0, i32::MAX as i64),
        "511",
    ),
    p("cluster-port", None, IMMUTABLE, Kind::Int(0, 65535), "0"),
    p(
        "cluster-announce-bus-port",
        None,
        0,
        Kind::Int(0, 65535),
        "0",
    ),
    p("cluster-announce-port", None, 0, Kind::Int(0, 65535), "0"),
    p(
        "cluster-announce-tls-port",
        None,
        0,
        Kind::Int(0, 65535),
        "0",
    ),
    p("repl-timeout", None, 0, Kind::Int(1, i32::MAX as i64), "60"),
    p(
        "repl-ping-replica-period",
        Some("repl-ping-slave-period"),
        0,
        Kind::Int(1, i32::MAX as i64),
        "10",
    ),
    p(
        "list-compress-depth",
        None,
        0,
        Kind::Int(0, i32::MAX as i64),
        "0",
    ),
    p(
        "rdb-key-save-delay",
        None,
        HIDDEN,
        Kind::Int(i32::MIN as i64, i32::MAX as i64),
        "0",
    ),
    p(
        "key-load-delay",
        None,
        HIDDEN,
        Kind::Int(i32::MIN as i64, i32::MAX as i64),
        "0",
    ),
    p("active-expire-effort", None, 0, Kind::Int(1, 10), "1"),
    p("hz", None, 0, Kind::Int(0, i32::MAX as i64), "10"),
    p(
        "min-replicas-to-write",
        Some("min-slaves-to-write"),
        0,
        Kind::Int(0, i32::MAX as i64),
        "0",
    ),
    p(
        "min-replicas-max-lag",
        Some("min-slaves-max-lag"),
        0,
        Kind::Int(0, i32::MAX as i64),
        "10",
    ),
    p(
        "watchdog-period",
        None,
        HIDDEN,
        Kind::Int(0, i32::MAX as i64),
        "0",
    ),
    p(
        "shutdown-timeout",
        None,
        0,
        Kind::Int(0, i32::MAX as i64),
        "10",
    ),
    p(
        "repl-diskless-sync-max-replicas",
        None,
        0,
        Kind::Int(0, i32::MAX as i64),
        "0",
    ),
    p(
        "maxclients",
        None,
        0,
        Kind::Int(1, u32::MAX as i64),
        "10000",
    ),
    p("unixsocketperm", None, IMMUTABLE, Kind::Octal(0o777), "0"),
    p(
        "socket-mark-id",
        None,
        IMMUTABLE,
        Kind::Int(0, u32::MAX as i64),
        "0",
    ),
    p(
        "active-defrag-max-scan-fields",
        None,
        0,
        Kind::Int(1, i64::MAX),
        "1000",
    ),
    p("slowlog-max-len", None, 0, Kind::Int(0, i64::MAX), "128"),
    p("acllog-max-len", None, 0, Kind::Int(0, i64::MAX), "128"),
    p(
        "busy-reply-threshold",
        Some("lua-time-limit"),
        0,
        Kind::Int(0, i64::MAX),
        "5000",
    ),
    p(
        "cluster-node-timeout",
        None,
        0,
        Kind::Int(0, i64::MAX),
        "15000",
    ),
    p(
        "slowlog-log-slower-than",
        None,
        0,
        Kind::Int(-1, i64::MAX),
        "10000",
    ),
    p(
        "latency-monitor-threshold",
        None,
        0,
        Kind::Int(0, i64::MAX),
        "0",
    ),
    p(
        "proto-max-bulk-len",
        None,
        0,
        Kind::Memory(1048576, i64::MAX),
        "536870912",
    ),
    p(
        "stream-node-max-entries",
        None,
        0,
        Kind::Int(0, i64::MAX),
        "100",
    ),
    p(
        "repl-backlog-size",
        None,
        0,
        Kind::Memory(1, i64::MAX),
        "1048576",
    ),
    p("maxmemory", None, 0, Kind::Memory(0, i64::MAX), "0"),
    p(
        "cluster-link-sendbuf-limit",
        None,
        0,
        Kind::Memory(0, i64::MAX),
        "0",
    ),
    p(
        "hash-max-listpack-entries",
        Some("hash-max-ziplist-entries"),
        0,
        Kind::Int(0, i64::MAX),
        "512",
    ),
    // Redis 7.2's listpack-encoded sets, so clients of either version can tune them.
    p(
        "set-max-listpack-entries",
        None,
        0,
        Kind::Int(0, i64::MAX),
        "128",
    ),
    p(
        "set-max-listpack-value",
        None,
        0,
        Kind::Memory(0, i64::MAX),
        "64",
    ),
    p(
        "set-max-intset-entries",
        None,
        0,
        Kind::Int(0, i64::MAX),
        "512",
    ),
    p(
        "zset-max-listpack-entries",
        Some("zset-max-ziplist-entries"),
        0,
        Kind::Int(0, i64::MAX),
        "128",
    ),
    p(
        "active-defrag-ignore-bytes",
        None,
        0,
        Kind::Memory(1, i64::MAX),
        "104857600",
    ),
    p(
        "hash-max-listpack-value",
        Some("hash-max-ziplist-value"),
        0,
        Kind::Memory(0, i64::MAX),
        "64",
    ),
    p(
        "stream-node-max-bytes",
        None,
        0,
        Kind::Memory(0, i64::MAX),
        "4096",
    ),
    p(
        "zset-max-listpack-value",
        Some("zset-max-ziplist-value"),
        0,
        Kind::Memory(0, i64::MAX),
        "64",
    ),
    p(
        "hll-sparse-max-bytes",
        None,
        0,
        Kind::Memory(0, i64::MAX),
        "3000",
    ),
    p(
        "tracking-table-max-keys",
        None,
        0,
        Kind::Int(0, i64::MAX),
        "1000000",
    ),
    p(
        "client-query-buffer-limit",
        None,
        0,
        Kind::Memory(1048576, i64::MAX),
        "1073741824",
    ),
    p(
        "maxmemory-clients",
        None,
        0,
        Kind::MemoryOrPercent(-100, i64::MAX),
        "0",
    ),
    p("repl-backlog-ttl", None, 0, Kind::Int(0, i64::MAX), "3600"),
    p(
        "auto-aof-rewrite-min-size",
        None,
        0,
        Kind::Memory(0, i64::MAX),
        "67108864",
    ),
    p(
        "loading-process-events-interval-bytes",
        None,
        HIDDEN,
        Kind::Int(1024, i32::MAX as i64),
        "2097152",
    ),
    p("dir", None, PROTECTED, Kind::Special, ""),
    // Accepted and reported as Redis does; strata persists through its LSM, not scheduled RDB saves.
    p("save", None, 0, Kind::Special, "3600 1 300 100 60 10000"),
    p("client-output-buffer-limit", None, 0, Kind::Special, ""),
    p("oom-score-adj-values", None, 0, Kind::Special, ""),
    p("notify-keyspace-events", None, 0, Kind::Special, ""),
    p("bind", None, 0, Kind::Special, ""),
    p("replicaof", Some("slaveof"), IMMUTABLE, Kind::Special, ""),
    p(
        "latency-tracking-info-percentiles",
        None,
        0,
        Kind::Special,
        "",
    ),
];

/// Default `dbfilename`: the name of the checkpoint directory SAVE writes (see [`checkpoint_dir`]).
pub(crate) const DEFAULT_DBFILENAME: &str = "dump.strata";

/// Where SAVE and BGSAVE put their checkpoint (`CONFIG GET dir`): a `dir` set in the configuration
/// (relative to the working directory), else the `checkpoints` directory inside the storage engine's
/// data directory, so the checkpoint's SSTs are hard links on the same file system rather than copies.
pub(crate) fn checkpoint_dir(sh: &Shared) -> std::path::PathBuf {
    match sh.config_params.lock().get("dir") {
        Some(d) if !d.is_empty() => std::path::PathBuf::from(d),
        _ => sh.keyspace.storage().path().join("checkpoints"),
    }
}

/// The checkpoint's name inside [`checkpoint_dir`] (`CONFIG GET dbfilename`).
pub(crate) fn dbfilename(sh: &Shared) -> String {
    match sh.config_params.lock().get("dbfilename") {
        Some(n) if !n.is_empty() => n.clone(),
        _ => DEFAULT_DBFILENAME.to_owned(),
    }
}

/// A parameter by name or alias (names are lower case).
fn find(name: &str) -> Option<&'static Param> {
    PARAMS
        .iter()
        .find(|p| p.name == name || p.alias == Some(name))
}

/// What `CONFIG GET` shows for a parameter.
fn current(sh: &Shared, p: &Param) -> String {
    let stored = || sh.config_params.lock().get(p.name).cloned();
    match p.name {
        "databases" => sh.config.databases.to_string(),
        "maxclients" => sh.max_clients.load(Ordering::Relaxed).to_string(),
        "maxmemory" => sh.memory.limit().to_string(),
        "maxmemory-policy" => sh.memory.policy().to_owned(),
        "enable-debug-command" => sh.config.enable_debug_command.clone(),
        "slowlog-log-slower-than" => sh
            .slowlog
            .slower_than_us
            .load(Ordering::Relaxed)
            .to_string(),
        "slowlog-max-len" => sh.slowlog.max_len.load(Ordering::Relaxed).to_string(),
        "client-output-buffer-limit" => output_buffer_limits(sh),
        "notify-keyspace-events" => crate::notify::render(sh.notify.flags()),
        "requirepass" => sh.password.get().unwrap_or_default(),
        "port" => sh
            .local_addr
            .get()
            .map_or_else(|| p.default.to_owned(), |a| a.port().to_string()),
        "proto-max-bulk-len" => {
            stored().unwrap_or_else(|| sh.config.limits.max_bulk_bytes.to_string())
        }
        "client-query-buffer-limit" => {
            stored().unwrap_or_else(|| sh.config.limits.max_query_buffer_bytes.to_string())
        }
        "appendonly" => stored().unwrap_or_else(|| "yes".to_owned()),
        "dir" => checkpoint_dir(sh).display().to_string(),
        "bind" => stored().unwrap_or_else(|| "* -::*".to_owned()),
        "oom-score-adj-values" => stored().unwrap_or_else(|| "0 200 800".to_owned()),
        "latency-tracking-info-percentiles" => stored().unwrap_or_else(|| "50 99 99.9".to_owned()),
        _ => match p.kind {
            Kind::MemoryOrPercent(..) => {
                show_percent(&stored().unwrap_or_else(|| p.default.to_owned()))
            }
            _ => stored().unwrap_or_else(|| p.default.to_owned()),
        },
    }
}

/// A stored `MemoryOrPercent` value as Redis shows it: negative means a percentage.
fn show_percent(v: &str) -> String {
    match v.strip_prefix('-') {
        Some(pct) => format!("{pct}%"),
        None => v.to_owned(),
    }
}

/// Redis's memory sizes: `1k` = 1000, `1kb` = 1024, likewise m/mb, g/gb; a bare number is bytes.
pub(super) fn parse_memory(s: &str) -> Option<i64> {
    let lower = s.to_ascii_lowercase();
    let (sign, rest) = match lower.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, lower.as_str()),
    };
    let split = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, unit) = rest.split_at(split);
    let n: i64 = digits.parse().ok()?;
    let mul: i64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1_024,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul).map(|v| v * sign)
}

fn in_range(v: i64, lo: i64, hi: i64) -> Result<String, String> {
    if v < lo || v > hi {
        Err(format!("argument must be between {lo} and {hi} inclusive"))
    } else {
        Ok(v.to_string())
    }
}

/// Checks a value for `p`; returns it as it will be stored and shown, or Redis's reason for refusing it.
fn validate(sh: &Shared, p: &Param, raw: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(raw);
    let value = text.as_ref();
    if p.name == "requirepass"
        && value.is_empty()
        && sh.local_addr.get().is_some_and(|a| !a.ip().is_loopback())
    {
        // strata refuses to listen beyond loopback without a password; it keeps that rule at run time.
        return Err(
            "strata listens on a non-loopback address, which requires a password".to_owned(),
        );
    }
    match p.kind {
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "yes" => Ok("yes".to_owned()),
            "no" => Ok("no".to_owned()),
            _ => Err("argument must be 'yes' or 'no'".to_owned()),
        },
        Kind::Int(lo, hi) => {
            let v = value
                .parse::<i64>()
                .map_err(|_| "argument couldn't be parsed into an integer".to_owned())?;
            if p.name == "port" {
                let own = sh.local_addr.get().map(|a| i64::from(a.port()));
                if own.is_some_and(|own| own != v) {
                    return Err(format!(
                        "Unable to listen on this port: strata does not move its listener while \
                         running (it listens on {})",
                        own.unwrap_or_default()
                    ));
                }
            }
            in_range(v, lo, hi)
        }
        Kind::Memory(lo, hi) => {
            let v =
                parse_memory(value).ok_or_else(|| "argument must be a memory value".to_owned())?;
            in_range(v, lo, hi)
        }
        Kind::MemoryOrPercent(lo, hi) => {
            if let Some(pct) = value.strip_suffix('%') {
                let v = pct
                    .parse::<i64>()
                    .ok()
                    .filter(|v| *v >= 0)
                    .ok_or_else(|| "argument must be a memory or percent value".to_owned())?;
                if v > 100 {
                    return Err("percentage argument must be less or equal to 100".to_owned());
                }
                Ok(format!("{v}%"))
            } else {
                let v = parse_memory(value)
                    .ok_or_else(|| "argument must be a memory or percent value".to_owned())?;
                in_range(v, lo.max(0), hi)
            }
        }
        Kind::Octal(max) => match i64::from_str_radix(value, 8) {
            Ok(v) if (0..=max).contains(&v) => Ok(format!("{v:o}")),
            _ => Err("argument must be an octal number".to_owned()),
        },
        Kind::Str => Ok(value.to_owned()),
        Kind::Enum(values) => {
            let lower = value.to_ascii_lowercase();
            values
                .iter()
                .find(|v| **v == lower)
                .map(|v| (*v).to_owned())
                .ok_or_else(|| one_of(values))
        }
        Kind::Flags(values) => {
            let mut chosen = Vec::new();
            for word in value.split_whitespace() {
                let lower = word.to_ascii_lowercase();
                match values.iter().find(|v| **v == lower) {
                    Some(v) if !chosen.contains(v) => chosen.push(*v),
                    Some(_) => {}
                    None => return Err(one_of(values)),
                }
            }
            if chosen.is_empty() {
                return Err(one_of(values));
            }
            Ok(chosen.join(" "))
        }
        Kind::Special => validate_special(p.name, value),
    }
}

fn one_of(values: &[&str]) -> String {
    format!(
        "argument(s) must be one of the following: {}",
        values.join(", ")
    )
}

fn validate_special(name: &str, value: &str) -> Result<String, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    match name {
        "save" => {
            if !words.len().is_multiple_of(2) || words.iter().any(|w| w.parse::<u64>().is_err()) {
                return Err("Invalid save parameters".to_owned());
            }
            Ok(words.join(" "))
        }
        "notify-keyspace-events" => crate::notify::parse(value)
            .map(crate::notify::render)
            .ok_or_else(|| "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_owned()),
        "client-output-buffer-limit" => {
            parse_output_limits(value)?;
            Ok(value.to_owned())
        }
        "oom-score-adj-values" => {
            if words.len() != 3 || words.iter().any(|w| w.parse::<i32>().is_err()) {
                return Err("Invalid oom-score-adj-values".to_owned());
            }
            Ok(words.join(" "))
        }
        "latency-tracking-info-percentiles" => {
            if words.iter().any(|w| {
                w.parse::<f64>()
                    .map_or(true, |v| !(0.0..=100.0).contains(&v))
            }) {
                return Err("latency-tracking-info-percentiles: Invalid percentile".to_owned());
            }
            // Stored as Redis prints them: `%f` with trailing zeros trimmed ("50.0" reads back "50").
            Ok(words
                .iter()
                .map(|w| {
                    let fixed = format!("{:.6}", w.parse::<f64>().unwrap_or(0.0));
                    fixed.trim_end_matches('0').trim_end_matches('.').to_owned()
                })
                .collect::<Vec<_>>()
                .join(" "))
        }
        _ => Ok(value.to_owned()),
    }
}

/// The `(hard, soft, soft seconds)` of the normal, replica and pub/sub classes of a
/// `client-output-buffer-limit` value, for those it names.
type ClassLimits = [Option<(u64, u64, u64)>; 3];

fn parse_output_limits(value: &str) -> Result<ClassLimits, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".to_owned());
    }
    let mut classes: ClassLimits = [None; 3];
    for w in words.chunks_exact(4) {
        let class = w[0].to_ascii_lowercase();
        if !matches!(class.as_str(), "normal" | "slave" | "replica" | "pubsub") {
            return Err("Invalid client class specified in buffer limit configuration.".to_owned());
        }
        let (Some(hard), Some(soft), Ok(secs)) =
            (parse_memory(w[1]), parse_memory(w[2]), w[3].parse::<u64>())
        else {
            return Err(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                    .to_owned(),
            );
        };
        let (Ok(hard), Ok(soft)) = (u64::try_from(hard), u64::try_from(soft)) else {
            return Err(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                    .to_owned(),
            );
        };
        let at = match class.as_str() {
            "normal" => 0,
            "pubsub" => 2,
            _ => 1,
        };
        classes[at] = Some((hard, soft, secs));
    }
    Ok(classes)
}

/// The limits of each class, in CONFIG GET's order (strata has no replica clients: that class is kept
/// only to be shown).
fn limit_classes(sh: &Shared) -> [(&'static str, &crate::pubsub::OutputLimits); 3] {
    [
        ("normal", &sh.normal_limits),
        ("slave", &sh.replica_limits),
        ("pubsub", &sh.pubsub.limits),
    ]
}

/// `client-output-buffer-limit` as CONFIG GET shows it.
fn output_buffer_limits(sh: &Shared) -> String {
    limit_classes(sh)
        .iter()
        .map(|(name, l)| {
            format!(
                "{name} {} {} {}",
                l.hard.load(Ordering::Relaxed),
                l.soft.load(Ordering::Relaxed),
                l.soft_seconds.load(Ordering::Relaxed)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes a checked value take effect.
fn apply(sh: &Shared, p: &Param, value: String) {
    match p.name {
        "requirepass" => {
            // Kept only in `Shared::password`, not among the other parameters.
            sh.password
                .set((!value.is_empty()).then_some(value), &sh.acl);
            return;
        }
        "maxclients" => {
            if let Ok(n) = value.parse::<usize>() {
                sh.max_clients.store(n, Ordering::Relaxed);
            }
        }
        "maxmemory" => {
            if let Ok(n) = value.parse::<u64>() {
                sh.memory.set_limit(n);
                sh.evict.refresh(sh);
            }
        }
        "acllog-max-len" => {
            if let Ok(n) = value.parse::<usize>() {
                sh.acl.log.set_max_len(n);
            }
        }
        "acl-pubsub-default" => sh
            .acl
            .set_pubsub_default_all_channels(value == "allchannels"),
        "maxmemory-policy" => {
            sh.memory.set_policy(&value);
            sh.evict.refresh(sh);
        }
        "maxmemory-clients" => {
            // A percentage of `maxmemory` is kept negated.
            let limit = match value.strip_suffix('%') {
                Some(pct) => pct.parse::<i64>().map(|p| -p),
                None => value.parse::<i64>(),
            };
            if let Ok(n) = limit {
                sh.evict.client_limit.store(n, Ordering::Relaxed);
            }
        }
        "maxmemory-samples" => {
            if let Ok(n) = value.parse::<usize>() {
                sh.evict.samples.store(n, Ordering::Relaxed);
            }
        }
        "lfu-log-factor" | "lfu-decay-time" => {
            if let Ok(n) = value.parse::<u64>() {
                let target = if p.name == "lfu-log-factor" {
                    &sh.evict.lfu_log_factor
                } else {
                    &sh.evict.lfu_decay_time
                };
                target.store(n, Ordering::Relaxed);
            }
        }
        "tracking-table-max-keys" => {
            if let Ok(n) = value.parse::<usize>() {
                sh.tracking.set_max_keys(sh, n);
            }
        }
        "slowlog-log-slower-than" => {
            if let Ok(v) = value.parse::<i64>() {
                sh.slowlog.slower_than_us.store(v, Ordering::Relaxed);
            }
        }
        "slowlog-max-len" => {
            if let Ok(v) = value.parse::<u64>() {
                sh.slowlog.set_max_len(v);
            }
        }
        "busy-reply-threshold" => {
            if let Ok(v) = value.parse::<i64>() {
                sh.scripting
                    .busy_threshold_ms
                    .store(v.saturating_add(1).max(1), Ordering::Relaxed);
            }
        }
        "latency-monitor-threshold" => {
            if let Ok(v) = value.parse::<u64>() {
                sh.latency.threshold_ms.store(v, Ordering::Relaxed);
            }
        }
        "latency-tracking" => {
            let on = value.eq_ignore_ascii_case("yes");
            sh.command_stats
                .latency_tracking
                .store(on, Ordering::Relaxed);
        }
        "min-replicas-to-write" | "min-replicas-max-lag" => {
            let other = if p.name == "min-replicas-to-write" {
                "min-replicas-max-lag"
            } else {
                "min-replicas-to-write"
            };
            let other_value = sh
                .config_params
                .lock()
                .get(other)
                .cloned()
                .unwrap_or_else(|| {
                    if other == "min-replicas-max-lag" {
                        "10"
                    } else {
                        "0"
                    }
                    .to_owned()
                });
            let non_zero = |v: &str| v.trim().parse::<i64>().is_ok_and(|n| n != 0);
            sh.replicas_required.store(
                non_zero(&value) && non_zero(&other_value),
                Ordering::Relaxed,
            );
        }
        "stream-node-max-entries" | "stream-node-max-bytes" => {
            if let Ok(n) = value.parse::<u64>() {
                sh.stream_nodes.set(p.name == "stream-node-max-entries", n);
            }
        }
        "notify-keyspace-events" => {
            if let Some(flags) = crate::notify::parse(&value) {
                sh.notify.set_flags(flags);
            }
        }
        "client-output-buffer-limit" => {
            if let Ok(classes) = parse_output_limits(&value) {
                for ((_, limits), class) in limit_classes(sh).into_iter().zip(classes) {
                    if let Some((hard, soft, secs)) = class {
                        limits.hard.store(hard, Ordering::Relaxed);
                        limits.soft.store(soft, Ordering::Relaxed);
                        limits.soft_seconds.store(secs, Ordering::Relaxed);
                    }
                }
            }
        }
        _ => {}
    }
    let stored = match p.kind {
        Kind::MemoryOrPercent(..) => value
            .strip_suffix('%')
            .map_or_else(|| value.clone(), |pct| format!("-{pct}")),
        _ => value,
    };
    sh.config_params.lock().insert(p.name.to_owned(), stored);
}

fn set_failed(name: &str, reason: &str) -> Frame {
    Frame::error(format!(
        "ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"
    ))
}

fn config_set(sh: &Shared, args: &[Arg]) -> Frame {
    let mut checked: Vec<(&'static Param, String)> = Vec::new();
    for pair in args[2..].chunks_exact(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let Some(p) = find(&name) else {
            return Frame::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            ));
        };
        if p.flags & IMMUTABLE != 0 {
            return set_failed(&name, "can't set immutable config");
        }
        if p.flags & PROTECTED != 0 {
            return set_failed(&name, "can't set protected config");
        }
        if checked.iter().any(|(q, _)| q.name == p.name) {
            return set_failed(&name, "duplicate parameter");
        }
        match validate(sh, p, &pair[1]) {
            Ok(v) => checked.push((p, v)),
            Err(reason) => return set_failed(&name, &reason),
        }
    }
    for (p, v) in checked {
        apply(sh, p, v);
    }
    Frame::ok()
}

fn config_get(sh: &Shared, args: &[Arg]) -> Frame {
    let mut pairs: Vec<(&'static str, String)> = Vec::new();
    let mut add = |name: &'static str, p: &Param| {
        if !pairs.iter().any(|(n, _)| *n == name) {
            pairs.push((name, current(sh, p)));
        }
    };
    for pattern in &args[2..] {
        let pattern = pattern.to_ascii_lowercase();
        let is_glob = pattern.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
        for p in PARAMS {
            for name in std::iter::once(p.name).chain(p.alias) {
                let hit = if is_glob {
                    p.flags & HIDDEN == 0 && glob_match(&pattern, name.as_bytes(), true)
                } else {
                    pattern == name.as_bytes()
                };
                if hit {
                    add(name, p);
                }
            }
        }
    }
    Frame::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Frame::bulk(k), Frame::bulk(v)))
            .collect(),
    )
}

pub fn config(_s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    match sub.as_slice() {
        b"get" if args.len() >= 3 => config_get(sh, args),
        b"set" if args.len() >= 4 && args.len().is_multiple_of(2) => config_set(sh, args),
        b"resetstat" if args.len() == 2 => {
            sh.stats.commands.reset();
            sh.stats.connections.store(0, Ordering::Relaxed);
            sh.stats.rejected_connections.store(0, Ordering::Relaxed);
            sh.command_stats.reset();
            sh.pubsub.disconnections.store(0, Ordering::Relaxed);
            // As Redis's resetServerStats: the eviction and expiry counters too.
            sh.evict.reset_stats();
            sh.keyspace.reset_expired_keys();
            Frame::ok()
        }
        b"rewrite" if args.len() == 2 => Frame::error(
            "ERR The server is running without a config file (strata's configuration is strata.toml)",
        ),
        b"help" if args.len() == 2 => Frame::Array(
            [
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
                "REWRITE",
                "    Rewrite the configuration file.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
        ),
        b"get" | b"set" | b"resetstat" | b"rewrite" | b"help" => Frame::error(format!(
            "ERR wrong number of arguments for 'config|{}' command",
            String::from_utf8_lossy(&sub)
        )),
        _ => super::unknown_subcommand(&args[1], "config"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units_follow_redis() {
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("1KB"), Some(1024));
        assert_eq!(parse_memory("700mb"), Some(734_003_200));
        assert_eq!(parse_memory("x"), None);
        assert_eq!(parse_memory("1tb"), None);
    }

    #[test]
    fn aliases_find_their_parameter() {
        assert_eq!(find("slaveof").map(|p| p.name), Some("replicaof"));
        assert_eq!(
            find("hash-max-ziplist-entries").map(|p| p.name),
            Some("hash-max-listpack-entries")
        );
        assert!(find("no-such-thing").is_none());
    }
}
