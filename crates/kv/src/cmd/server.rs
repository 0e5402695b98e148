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
            line(out, "connected_clients", &sh.connected_clients());
            line(out, "maxclients", &sh.config.max_clients);
            line(out, "blocked_clients", &0);
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
            line(out, "expired_keys", &0);
            line(out, "evicted_keys", &0);
        }
        "replication" => {
            line(out, "role", &"master");
            line(out, "connected_slaves", &0);
        }
        "cpu" => {}
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
    if asked.is_empty()
        || asked
            .iter()
            .any(|a| a == "default" || a == "all" || a == "everything")
    {
        wanted.extend(SECTIONS);
    } else {
        wanted.extend(SECTIONS.iter().filter(|s| asked.iter().any(|a| a == *s)));
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
