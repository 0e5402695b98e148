//! Server commands: INFO, CONFIG, TIME, SAVE, BGSAVE, LASTSAVE.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use strata_resp::Frame;

use super::CommandSpec;
use super::connection::REDIS_COMPAT_VERSION;
use super::keys::glob_match;
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "bgsave",
        arity: -1,
        flags: &["admin", "noscript"],
        no_auth: false,
        run: save,
    },
    CommandSpec {
        name: "config",
        arity: -2,
        flags: &["admin", "noscript", "loading", "stale"],
        no_auth: false,
        run: config,
    },
    CommandSpec {
        name: "info",
        arity: -1,
        flags: &["loading", "stale"],
        no_auth: false,
        run: info,
    },
    CommandSpec {
        name: "lastsave",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        no_auth: false,
        run: lastsave,
    },
    CommandSpec {
        name: "save",
        arity: 1,
        flags: &["admin", "noscript"],
        no_auth: false,
        run: save,
    },
    CommandSpec {
        name: "slowlog",
        arity: -2,
        flags: &["admin", "loading", "stale"],
        no_auth: false,
        run: slowlog,
    },
    CommandSpec {
        name: "time",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        no_auth: false,
        run: time,
    },
];

/// INFO's sections in Redis's order; `default` and `all` select these.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "keyspace",
];

/// Sections only `all` and `everything` (or naming them) select.
const EXTRA_SECTIONS: &[&str] = &["commandstats", "errorstats"];

fn rss_bytes() -> u64 {
    // Field 2 of /proc/self/statm is resident pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn section(out: &mut String, sh: &Shared, name: &str) {
    let _ = write!(
        out,
        "# {}{}\r\n",
        name[..1].to_ascii_uppercase(),
        &name[1..]
    );
    let uptime = sh.started.elapsed().as_secs();
    let line = |out: &mut String, k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(out, "{k}:{v}\r\n");
    };
    match name {
        "server" => {
            line(out, "redis_version", &REDIS_COMPAT_VERSION);
            line(out, "strata_version", &env!("CARGO_PKG_VERSION"));
            line(out, "redis_mode", &"standalone");
            line(
                out,
                "os",
                &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            );
            line(out, "arch_bits", &64);
            line(out, "process_id", &std::process::id());
            line(out, "uptime_in_seconds", &uptime);
            line(out, "uptime_in_days", &(uptime / 86_400));
        }
        "clients" => {
            let all = sh.clients.all();
            let max_qbuf = all
                .iter()
                .map(|c| c.qbuf.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            let max_omem = all
                .iter()
                .map(|c| c.omem.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            line(out, "connected_clients", &sh.connected_clients());
            line(out, "cluster_connections", &0);
            line(out, "maxclients", &sh.config.max_clients);
            line(out, "client_recent_max_input_buffer", &max_qbuf);
            line(out, "client_recent_max_output_buffer", &max_omem);
            line(out, "blocked_clients", &sh.blocking.blocked_clients());
            line(out, "tracking_clients", &0);
            line(
                out,
                "pubsub_clients",
                &all.iter().filter(|c| c.is_pubsub()).count(),
            );
            line(out, "watching_clients", &0);
            line(
                out,
                "clients_in_timeout_table",
                &sh.blocking.blocked_clients(),
            );
            line(out, "total_watched_keys", &0);
            line(out, "total_blocking_keys", &sh.blocking.blocking_keys());
            line(out, "total_blocking_keys_on_nokey", &0);
        }
        "memory" => {
            let rss = rss_bytes();
            line(out, "used_memory", &rss);
            line(out, "used_memory_rss", &rss);
            line(out, "maxmemory", &0);
            line(out, "maxmemory_policy", &"noeviction");
        }
        "persistence" => {
            let s = sh.keyspace.storage().stats();
            line(out, "loading", &0);
            line(out, "async_loading", &0);
            line(out, "rdb_changes_since_last_save", &0);
            line(out, "rdb_bgsave_in_progress", &0);
            line(
                out,
                "rdb_last_save_time",
                &sh.stats.last_save_unix.load(Ordering::Relaxed),
            );
            line(out, "aof_enabled", &1);
            line(out, "aof_rewrite_in_progress", &0);
            line(out, "strata_wal_bytes_written", &s.wal_bytes_written);
            line(out, "strata_wal_syncs", &s.wal_syncs);
            line(
                out,
                "strata_write_amplification",
                &format!("{:.2}", s.write_amplification()),
            );
        }
        "stats" => {
            line(
                out,
                "total_connections_received",
                &sh.stats.connections.load(Ordering::Relaxed),
            );
            line(
                out,
                "total_commands_processed",
                &sh.stats.commands.load(Ordering::Relaxed),
            );
            line(
                out,
                "rejected_connections",
                &sh.stats.rejected_connections.load(Ordering::Relaxed),
            );
            line(out, "instantaneous_ops_per_sec", &sh.ops.per_second());
            line(out, "expired_keys", &0);
            line(out, "evicted_keys", &0);
            line(out, "keyspace_hits", &0);
            line(out, "keyspace_misses", &0);
            line(
                out,
                "pubsub_channels",
                &sh.pubsub.channels(crate::pubsub::Kind::Channel, None).len(),
            );
            line(out, "pubsub_patterns", &sh.pubsub.numpat());
            line(
                out,
                "pubsubshard_channels",
                &sh.pubsub.channels(crate::pubsub::Kind::Shard, None).len(),
            );
            line(
                out,
                "client_output_buffer_limit_disconnections",
                &sh.pubsub.disconnections.load(Ordering::Relaxed),
            );
            line(
                out,
                "total_error_replies",
                &sh.command_stats.error_replies.load(Ordering::Relaxed),
            );
        }
        "replication" => {
            line(out, "role", &"master");
            line(out, "connected_slaves", &0);
        }
        "cpu" => {}
        "commandstats" => {
            let names = super::commands().iter().map(|spec| spec.name);
            for c in sh.command_stats.snapshot(names) {
                let per_call = if c.calls == 0 {
                    0.0
                } else {
                    c.usec as f64 / c.calls as f64
                };
                let _ = write!(
                    out,
                    "cmdstat_{}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},\
                     failed_calls={}\r\n",
                    c.name, c.calls, c.usec, c.rejected_calls, c.failed_calls
                );
            }
        }
        "errorstats" => {
            for (code, count) in sh.command_stats.errors() {
                let _ = write!(out, "errorstat_{code}:count={count}\r\n");
            }
        }
        "keyspace" => {
            for db in 0..sh.config.databases {
                match sh.keyspace.count(db) {
                    Ok((0, _)) | Err(_) => {}
                    Ok((keys, expires)) => {
                        let _ = write!(out, "db{db}:keys={keys},expires={expires},avg_ttl=0\r\n");
                    }
                }
            }
        }
        _ => {}
    }
    out.push_str("\r\n");
}

pub fn info(s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    let mut wanted: Vec<&str> = Vec::new();
    let asked: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let every = asked.iter().any(|a| a == "all" || a == "everything");
    if asked.is_empty() || every || asked.iter().any(|a| a == "default") {
        wanted.extend(SECTIONS);
    } else {
        wanted.extend(SECTIONS.iter().filter(|s| asked.iter().any(|a| a == *s)));
    }
    if every {
        wanted.extend(EXTRA_SECTIONS);
    } else {
        wanted.extend(
            EXTRA_SECTIONS
                .iter()
                .filter(|s| asked.iter().any(|a| a == *s)),
        );
    }
    let mut out = String::with_capacity(1024);
    for name in wanted {
        section(&mut out, sh, name);
    }
    // Redis ends the text without the last blank line.
    while out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    let text = Bytes::from(out);
    match s.protocol {
        strata_resp::ProtocolVersion::Resp3 => Frame::Verbatim {
            format: *b"txt",
            text,
        },
        strata_resp::ProtocolVersion::Resp2 => Frame::Bulk(text),
    }
}

/// Parameters CONFIG GET answers from the node's real settings.
fn builtin_params(sh: &Shared) -> Vec<(&'static str, String)> {
    vec![
        ("databases", sh.config.databases.to_string()),
        ("maxclients", sh.config.max_clients.to_string()),
        (
            "proto-max-bulk-len",
            sh.config.limits.max_bulk_bytes.to_string(),
        ),
        (
            "client-query-buffer-limit",
            sh.config.limits.max_query_buffer_bytes.to_string(),
        ),
        ("appendonly", "yes".to_owned()),
        ("save", String::new()),
        ("maxmemory", "0".to_owned()),
        ("maxmemory-policy", "noeviction".to_owned()),
        (
            "slowlog-log-slower-than",
            sh.slowlog
                .slower_than_us
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "slowlog-max-len",
            sh.slowlog.max_len.load(Ordering::Relaxed).to_string(),
        ),
        ("client-output-buffer-limit", output_buffer_limits(sh)),
        (
            "requirepass",
            sh.config
                .requirepass
                .as_ref()
                .map_or(String::new(), |_| "********".to_owned()),
        ),
    ]
}

pub fn config(_s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    match sub.as_slice() {
        b"get" if args.len() >= 3 => {
            let mut all: Vec<(String, String)> = builtin_params(sh)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            for (k, v) in sh.config_params.lock().iter() {
                if !all.iter().any(|(name, _)| name == k) {
                    all.push((k.clone(), v.clone()));
                }
            }
            let mut pairs = Vec::new();
            for (k, v) in &all {
                if args[2..]
                    .iter()
                    .any(|p| glob_match(&p.to_ascii_lowercase(), k.as_bytes(), true))
                {
                    pairs.push((Frame::bulk(k.clone()), Frame::bulk(v.clone())));
                }
            }
            Frame::Map(pairs)
        }
        b"set" if args.len() >= 4 && args.len().is_multiple_of(2) => {
            let fixed = builtin_params(sh);
            let mut params = sh.config_params.lock();
            for pair in args[2..].chunks_exact(2) {
                let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
                if let Some(applied) = apply_live_param(sh, &name, &pair[1]) {
                    if let Err(reply) = applied {
                        return reply;
                    }
                    continue;
                }
                if fixed.iter().any(|(k, _)| *k == name) && name != "save" && name != "appendonly" {
                    return Frame::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set \
                         immutable config"
                    ));
                }
                params.insert(name, String::from_utf8_lossy(&pair[1]).into_owned());
            }
            Frame::ok()
        }
        b"resetstat" if args.len() == 2 => {
            sh.stats.commands.store(0, Ordering::Relaxed);
            sh.stats.connections.store(0, Ordering::Relaxed);
            sh.stats.rejected_connections.store(0, Ordering::Relaxed);
            sh.command_stats.reset();
            sh.pubsub.disconnections.store(0, Ordering::Relaxed);
            Frame::ok()
        }
        b"rewrite" if args.len() == 2 => Frame::error(
            "ERR The server is running without a config file (strata's configuration is strata.toml)",
        ),
        b"get" | b"set" | b"resetstat" | b"rewrite" => Frame::error(format!(
            "ERR wrong number of arguments for 'config|{}' command",
            String::from_utf8_lossy(&sub)
        )),
        _ => super::unknown_subcommand(&args[1], "config"),
    }
}

pub fn time(_s: &mut Session, sh: &Shared, _args: &[Bytes]) -> Frame {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = sh;
    Frame::Array(vec![
        Frame::bulk(now.as_secs().to_string()),
        Frame::bulk(now.subsec_micros().to_string()),
    ])
}

/// SAVE and BGSAVE make everything acknowledged durable (the WAL is fsynced), which is what a Redis user
/// asks of an RDB snapshot; there is no separate dump file to write.
pub fn save(_s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    match sh.keyspace.storage().sync_wal() {
        Ok(()) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            sh.stats.last_save_unix.store(now, Ordering::Relaxed);
            if args[0].eq_ignore_ascii_case(b"bgsave") {
                Frame::simple("Background saving started")
            } else {
                Frame::ok()
            }
        }
        Err(e) => super::storage_error(e.into()),
    }
}

pub fn lastsave(_s: &mut Session, sh: &Shared, _args: &[Bytes]) -> Frame {
    Frame::Integer(sh.stats.last_save_unix.load(Ordering::Relaxed) as i64)
}

/// `client-output-buffer-limit` as CONFIG GET shows it (only the pub/sub class is enforced).
fn output_buffer_limits(sh: &Shared) -> String {
    let l = &sh.pubsub.limits;
    format!(
        "normal 0 0 0 slave 268435456 67108864 60 pubsub {} {} {}",
        l.hard.load(Ordering::Relaxed),
        l.soft.load(Ordering::Relaxed),
        l.soft_seconds.load(Ordering::Relaxed)
    )
}

/// Redis's memory sizes: `1k` = 1000, `1kb` = 1024, likewise m/mb, g/gb; a bare number is bytes.
fn parse_memory(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mul = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1_024,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Parameters CONFIG SET changes the running service with; `None` for any other name.
fn apply_live_param(sh: &Shared, name: &str, value: &[u8]) -> Option<Result<(), Frame>> {
    let text = String::from_utf8_lossy(value);
    let invalid = |reason: &str| {
        Frame::error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}"
        ))
    };
    Some(match name {
        "slowlog-log-slower-than" => match text.parse::<i64>() {
            Ok(v) => {
                sh.slowlog.slower_than_us.store(v, Ordering::Relaxed);
                Ok(())
            }
            Err(_) => Err(invalid("argument couldn't be parsed into an integer")),
        },
        "slowlog-max-len" => match text.parse::<i64>() {
            Ok(v) if v >= 0 => {
                sh.slowlog.set_max_len(v as u64);
                Ok(())
            }
            Ok(_) => Err(invalid(
                "argument must be between 0 and 9223372036854775807 inclusive",
            )),
            Err(_) => Err(invalid("argument couldn't be parsed into an integer")),
        },
        "client-output-buffer-limit" => {
            let words: Vec<&str> = text.split_whitespace().collect();
            if words.is_empty() || !words.len().is_multiple_of(4) {
                return Some(Err(invalid(
                    "Wrong number of arguments in buffer limit configuration.",
                )));
            }
            let mut pubsub = None;
            for w in words.chunks_exact(4) {
                let class = w[0].to_ascii_lowercase();
                if !matches!(class.as_str(), "normal" | "slave" | "replica" | "pubsub") {
                    return Some(Err(invalid(
                        "Invalid client class specified in buffer limit configuration.",
                    )));
                }
                let (Some(hard), Some(soft), Ok(secs)) =
                    (parse_memory(w[1]), parse_memory(w[2]), w[3].parse::<u64>())
                else {
                    return Some(Err(invalid(
                        "Error in hard, soft or soft_seconds setting in buffer limit configuration.",
                    )));
                };
                if class == "pubsub" {
                    pubsub = Some((hard, soft, secs));
                }
            }
            if let Some((hard, soft, secs)) = pubsub {
                let l = &sh.pubsub.limits;
                l.hard.store(hard, Ordering::Relaxed);
                l.soft.store(soft, Ordering::Relaxed);
                l.soft_seconds.store(secs, Ordering::Relaxed);
            }
            Ok(())
        }
        _ => return None,
    })
}

/// SLOWLOG GET [count] | LEN | RESET | HELP.
pub fn slowlog(_s: &mut Session, sh: &Shared, args: &[Bytes]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    match (sub.as_slice(), args.len()) {
        (b"get", 2 | 3) => {
            let count = match args.get(2).map(|c| super::parse_i64(c)) {
                None => 10,
                Some(Ok(-1)) => usize::MAX,
                Some(Ok(n)) if n >= 0 => n as usize,
                Some(Ok(_)) | Some(Err(_)) => {
                    return Frame::error("ERR count should be greater than or equal to -1");
                }
            };
            let entries = sh.slowlog.newest(count);
            Frame::Array(
                entries
                    .into_iter()
                    .map(|e| {
                        Frame::Array(vec![
                            Frame::Integer(e.id as i64),
                            Frame::Integer(e.unix_secs as i64),
                            Frame::Integer(e.micros as i64),
                            Frame::Array(e.args.into_iter().map(Frame::Bulk).collect()),
                            Frame::bulk(e.peer.to_string()),
                            Frame::Bulk(e.name),
                        ])
                    })
                    .collect(),
            )
        }
        (b"len", 2) => Frame::Integer(sh.slowlog.len() as i64),
        (b"reset", 2) => {
            sh.slowlog.reset();
            Frame::ok()
        }
        (b"help", 2) => Frame::Array(
            [
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
        ),
        (b"get" | b"len" | b"reset" | b"help", _) => Frame::error(format!(
            "ERR wrong number of arguments for 'slowlog|{}' command",
            String::from_utf8_lossy(&sub)
        )),
        _ => super::unknown_subcommand(&args[1], "slowlog"),
    }
}
