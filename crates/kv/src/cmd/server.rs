//! Server commands: INFO, TIME, SAVE, BGSAVE (storage checkpoints), LASTSAVE.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use strata_resp::Arg;

use bytes::Bytes;
use strata_resp::Frame;

use super::CommandSpec;
use super::connection::REDIS_COMPAT_VERSION;
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "module",
        arity: -2,
        flags: &["admin", "noscript"],
        no_auth: false,
        run: module,
    },
    CommandSpec {
        name: "bgrewriteaof",
        arity: 1,
        flags: &["admin", "noscript"],
        no_auth: false,
        run: bgrewriteaof,
    },
    CommandSpec {
        name: "bgsave",
        arity: -1,
        flags: &["admin", "noscript"],
        no_auth: false,
        run: bgsave,
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
        flags: &["admin", "noscript", "no_multi"],
        no_auth: false,
        run: save,
    },
    CommandSpec {
        name: "shutdown",
        arity: -1,
        flags: &[
            "admin",
            "noscript",
            "loading",
            "stale",
            "no_multi",
            "allow_busy",
        ],
        no_auth: false,
        run: shutdown,
    },
    CommandSpec {
        name: "slowlog",
        arity: -2,
        flags: &["admin", "loading", "stale"],
        no_auth: false,
        run: slowlog,
    },
    CommandSpec {
        name: "lolwut",
        arity: -1,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: lolwut,
    },
    CommandSpec {
        name: "time",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        no_auth: false,
        run: time,
    },
];

/// INFO's sections in the order Redis prints them, each with whether a bare INFO (`default`) shows it;
/// `all` and `everything` show every one.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
];

/// The replication ID INFO shows: 40 hex digits, new each run, as Redis's `master_replid`.
static REPLICATION_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut state = super::keys::random_seed();
    (0..40)
        .map(|_| {
            // SplitMix64 steps; one hex digit from each.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            char::from_digit(((z ^ (z >> 31)) & 0xf) as u32, 16).unwrap_or('0')
        })
        .collect()
});

/// CPU time of the process and of its waited-for children, in seconds: user, system, children's user,
/// children's system (`/proc/self/stat`'s utime, stime, cutime, cstime; zeros where there is no procfs).
fn cpu_seconds() -> [f64; 4] {
    // The kernel reports these in USER_HZ ticks, 100 a second on every Linux ABI.
    const TICKS_PER_SECOND: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return [0.0; 4];
    };
    // The command name (field 2) may hold spaces; the fields after it start past its closing ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime is field 14 overall, the 12th after the command name (field 3 is the first here).
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |t| t / TICKS_PER_SECOND)
    };
    [tick(11), tick(12), tick(13), tick(14)]
}

fn section(out: &mut String, sh: &Shared, name: &str) {
    if name == "cpu" {
        out.push_str("# CPU\r\n");
    } else {
        let _ = write!(
            out,
            "# {}{}\r\n",
            name[..1].to_ascii_uppercase(),
            &name[1..]
        );
    }
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
            line(out, "tracking_clients", &sh.tracking.clients());
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
            // What maxmemory counts: the data set's logical size and the tracking table (see evict.rs).
            let used = crate::evict::used_memory(sh);
            let rss = crate::stats::rss_bytes();
            line(out, "used_memory", &used);
            line(out, "used_memory_human", &human_bytes(used));
            line(out, "used_memory_rss", &rss);
            line(out, "used_memory_rss_human", &human_bytes(rss));
            line(out, "used_memory_dataset", &sh.evict.dataset_bytes());
            if let Some(allocated) = sh.config.allocated_bytes {
                line(out, "allocator_allocated", &allocated());
            }
            line(out, "mem_not_counted_for_evict", &0);
            // Deletes are tombstones in the storage engine: nothing is ever pending a lazy free.
            line(out, "lazyfree_pending_objects", &0);
            line(
                out,
                "mem_clients_normal",
                &crate::evict::clients_total_memory(sh),
            );
            line(out, "tracking_total_memory", &sh.tracking.memory());
            line(out, "maxmemory", &sh.memory.limit());
            line(out, "maxmemory_human", &human_bytes(sh.memory.limit()));
            line(out, "maxmemory_policy", &sh.memory.policy());
            line(
                out,
                "number_of_cached_scripts",
                &sh.scripting.cached_scripts(),
            );
        }
        "persistence" => {
            let s = sh.keyspace.storage().stats();
            line(out, "loading", &0);
            line(out, "async_loading", &0);
            persistence_save_lines(out, sh);
            line(out, "aof_enabled", &1);
            persistence_rewrite_lines(out, sh);
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
            line(out, "total_commands_processed", &sh.stats.commands.get());
            line(
                out,
                "rejected_connections",
                &sh.stats.rejected_connections.load(Ordering::Relaxed),
            );
            line(out, "instantaneous_ops_per_sec", &sh.ops.per_second());
            line(out, "expired_keys", &sh.keyspace.expired_keys());
            line(out, "evicted_keys", &sh.evict.evicted_keys());
            line(
                out,
                "evicted_clients",
                &sh.evict.evicted_clients.load(Ordering::Relaxed),
            );
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
            line(out, "tracking_total_keys", &sh.tracking.total_keys());
            line(out, "tracking_total_items", &sh.tracking.total_items());
            line(
                out,
                "tracking_total_prefixes",
                &sh.tracking.total_prefixes(),
            );
            line(
                out,
                "total_error_replies",
                &sh.command_stats.error_replies.load(Ordering::Relaxed),
            );
        }
        "replication" => {
            // A master without replicas, in Redis's words (monitoring tools and sentinel-aware clients
            // read these fields).
            line(out, "role", &"master");
            line(out, "connected_slaves", &0);
            line(out, "master_failover_state", &"no-failover");
            line(out, "master_replid", &*REPLICATION_ID);
            line(out, "master_replid2", &"0".repeat(40));
            line(out, "master_repl_offset", &0);
            line(out, "second_repl_offset", &-1);
            line(out, "repl_backlog_active", &0);
            line(out, "repl_backlog_size", &1_048_576);
            line(out, "repl_backlog_first_byte_offset", &0);
            line(out, "repl_backlog_histlen", &0);
        }
        "cpu" => {
            let [user, sys, cuser, csys] = cpu_seconds();
            line(out, "used_cpu_sys", &format!("{sys:.6}"));
            line(out, "used_cpu_user", &format!("{user:.6}"));
            line(out, "used_cpu_sys_children", &format!("{csys:.6}"));
            line(out, "used_cpu_user_children", &format!("{cuser:.6}"));
        }
        "commandstats" => {
            let names = super::stat_names().iter().copied();
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
        "latencystats" => {
            let configured = sh
                .config_params
                .lock()
                .get("latency-tracking-info-percentiles")
                .cloned()
                .unwrap_or_else(|| "50 99 99.9".to_owned());
            let percentiles: Vec<f64> = configured
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            super::latency::info_section(sh, &percentiles, out);
        }
        "errorstats" => {
            for (code, count) in sh.command_stats.errors() {
                let _ = write!(out, "errorstat_{code}:count={count}\r\n");
            }
        }
        // No modules load into strata; the header alone, as Redis prints it without any.
        "modules" => {}
        // A strata cluster is not a Redis Cluster: to Redis clients every node is a standalone server.
        "cluster" => line(out, "cluster_enabled", &0),
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

/// Bytes as Redis's `*_human` fields show them (`1.50M`).
fn human_bytes(n: u64) -> String {
    let f = n as f64;
    match n {
        0..1024 => format!("{n}B"),
        1024..1_048_576 => format!("{:.2}K", f / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.2}M", f / 1_048_576.0),
        _ => format!("{:.2}G", f / 1_073_741_824.0),
    }
}

pub fn info(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let asked: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let every = asked.iter().any(|a| a == "all" || a == "everything");
    let defaults = asked.is_empty() || asked.iter().any(|a| a == "default");
    // Always in Redis's order, whatever order they were asked in.
    let wanted = SECTIONS.iter().filter(|(name, default)| {
        every || (defaults && *default) || asked.iter().any(|a| a == name)
    });
    let mut out = String::with_capacity(1024);
    for (name, _) in wanted {
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

/// LOLWUT [VERSION version [n ...]]: Redis's bit of computer art and its version. strata draws its own
/// picture, rock strata: `n` are the width in characters and the number of layers (defaults 40 and 8);
/// the last line is Redis's, which clients check for.
pub fn lolwut(s: &mut Session, _sh: &Shared, args: &[Arg]) -> Frame {
    let mut numbers = Vec::new();
    let mut i = 1;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"version") && i + 1 < args.len() {
            if let Err(reply) = super::parse_i64(&args[i + 1]) {
                return reply;
            }
            i += 2;
            continue;
        }
        match super::parse_i64(&args[i]) {
            Ok(n) => numbers.push(n),
            Err(reply) => return reply,
        }
        i += 1;
    }
    let width = numbers.first().map_or(40, |&n| n.clamp(1, 1000) as usize);
    let layers = numbers.get(1).map_or(8, |&n| n.clamp(1, 1000) as usize);
    let mut text = String::with_capacity((width + 1) * layers + 64);
    // Each layer is a run of one texture whose edge wanders a little, like sediment.
    let textures = ['#', '=', '-', '~', '.', ':', '+', '%'];
    let mut seed: u64 = 0x5eed_1a7e_u64;
    for layer in 0..layers {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let edge = (seed >> 33) as usize % (width / 4 + 1);
        let texture = textures[layer % textures.len()];
        let other = textures[(layer + 1) % textures.len()];
        for x in 0..width {
            text.push(if x < edge { other } else { texture });
        }
        text.push('\n');
    }
    text.push_str("\nstrata: layers laid down one write at a time. Redis ver. ");
    text.push_str(super::connection::REDIS_COMPAT_VERSION);
    text.push('\n');
    let text = Bytes::from(text);
    match s.protocol {
        strata_resp::ProtocolVersion::Resp3 => Frame::Verbatim {
            format: *b"txt",
            text,
        },
        strata_resp::ProtocolVersion::Resp2 => Frame::Bulk(text),
    }
}

pub fn time(_s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = sh;
    Frame::Array(vec![
        Frame::bulk(now.as_secs().to_string()),
        Frame::bulk(now.subsec_micros().to_string()),
    ])
}

/// State of SAVE/BGSAVE for one service: what INFO persistence and LASTSAVE report. Held by [`Shared`]
/// behind an `Arc`, so a background save updates it without holding the whole service alive.
#[derive(Debug)]
pub struct SaveState {
    inner: parking_lot::Mutex<SaveInner>,
}

impl Default for SaveState {
    fn default() -> Self {
        SaveState {
            inner: parking_lot::Mutex::new(SaveInner {
                last_bgsave_secs: -1,
                ..SaveInner::default()
            }),
        }
    }
}

#[derive(Debug, Default)]
struct SaveInner {
    /// When the running save (SAVE or BGSAVE) started.
    running_since: Option<std::time::Instant>,
    /// Whether the running save is a BGSAVE.
    running_bg: bool,
    /// `Keyspace::dirty` when the last successful save started (the baseline of
    /// `rdb_changes_since_last_save`).
    dirty_at_last_save: u64,
    /// Unix seconds of the last successful save (0: none yet).
    last_save_unix: u64,
    /// Whether the last save failed.
    last_failed: bool,
    /// Seconds the last BGSAVE took (-1: none yet).
    last_bgsave_secs: i64,
    /// Successful saves.
    saves: u64,
}

fn save_state(sh: &Shared) -> std::sync::Arc<SaveState> {
    sh.save_state.clone()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds of the last successful save; before the first, the service's start (as Redis does).
fn last_save_unix(sh: &Shared, st: &SaveInner) -> u64 {
    if st.last_save_unix > 0 {
        return st.last_save_unix;
    }
    let stored = sh.stats.last_save_unix.load(Ordering::Relaxed);
    if stored > 0 {
        return stored;
    }
    unix_now().saturating_sub(sh.started.elapsed().as_secs())
}

/// A checkpoint job: the storage engine, where to put the checkpoint, and what to record.
struct SaveJob {
    db: strata_storage::Db,
    dir: std::path::PathBuf,
    name: String,
    dirty: u64,
    state: std::sync::Arc<SaveState>,
}

/// Makes each checkpoint directory name unique within the process.
static CHECKPOINT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl SaveJob {
    fn new(sh: &Shared, state: std::sync::Arc<SaveState>) -> SaveJob {
        SaveJob {
            db: sh.keyspace.storage().clone(),
            dir: super::config::checkpoint_dir(sh),
            name: super::config::dbfilename(sh),
            dirty: sh.keyspace.dirty(),
            state,
        }
    }

    /// Writes a checkpoint to `<dir>/<name>.<unix ms>-<n>`, then points the symlink `<dir>/<name>` at it
    /// (a new link renamed over the old one: atomic) and removes the previous checkpoint.
    fn checkpoint(&self) -> Result<strata_storage::CheckpointInfo, String> {
        use std::path::Path;
        if self.name.is_empty() || self.name.contains('/') || self.name == "." || self.name == ".."
        {
            return Err(format!("invalid dbfilename '{}'", self.name));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let seq = CHECKPOINT_SEQ.fetch_add(1, Ordering::Relaxed);
        let real_name = format!("{}.{ms}-{seq}", self.name);
        let real = self.dir.join(&real_name);
        let info = self.db.checkpoint(&real).map_err(|e| e.to_string())?;
        let link = self.dir.join(&self.name);
        let previous = std::fs::read_link(&link).ok();
        let tmp_link = self.dir.join(format!(".{}.link-{ms}-{seq}", self.name));
        let swapped = std::os::unix::fs::symlink(Path::new(&real_name), &tmp_link)
            .and_then(|()| std::fs::rename(&tmp_link, &link))
            .and_then(|()| std::fs::File::open(&self.dir)?.sync_all());
        if let Err(e) = swapped {
            let _ = std::fs::remove_file(&tmp_link);
            let _ = std::fs::remove_dir_all(&real);
            return Err(format!(
                "cannot point {} at the new checkpoint: {e}",
                link.display()
            ));
        }
        // The previous checkpoint, if it is one of ours (a sibling named `<name>.<...>`).
        if let Some(prev) = previous
            && prev.components().count() == 1
            && prev != Path::new(&real_name)
            && prev
                .to_str()
                .is_some_and(|p| p.starts_with(&format!("{}.", self.name)))
        {
            let _ = std::fs::remove_dir_all(self.dir.join(prev));
        }
        Ok(info)
    }

    /// Runs the checkpoint and records the outcome; returns the error message if it failed.
    fn run(self, background: bool) -> Result<(), String> {
        let started = std::time::Instant::now();
        let r = self.checkpoint();
        let mut st = self.state.inner.lock();
        st.running_since = None;
        st.running_bg = false;
        if background {
            st.last_bgsave_secs = i64::try_from(started.elapsed().as_secs()).unwrap_or(i64::MAX);
        }
        match r {
            Ok(info) => {
                st.last_failed = false;
                st.last_save_unix = unix_now();
                st.dirty_at_last_save = self.dirty;
                st.saves += 1;
                tracing::info!(
                    dir = %self.dir.display(),
                    name = %self.name,
                    seqno = info.seqno,
                    linked = info.files_linked,
                    copied_bytes = info.bytes_copied,
                    background,
                    "checkpoint saved"
                );
                Ok(())
            }
            Err(e) => {
                st.last_failed = true;
                tracing::error!(error = %e, background, "checkpoint failed");
                Err(e)
            }
        }
    }
}

/// Claims the save slot, or returns Redis's error if a BGSAVE is running.
fn begin_save(state: &SaveState, background: bool) -> Result<(), Frame> {
    let mut st = state.inner.lock();
    if st.running_since.is_some() {
        return Err(Frame::error("ERR Background save already in progress"));
    }
    st.running_since = Some(std::time::Instant::now());
    st.running_bg = background;
    Ok(())
}

/// SAVE: writes a storage checkpoint — a consistent copy of the whole data set at one point, which
/// `strata serve --data-dir` opens — at `<dir>/<dbfilename>` (see [`super::config::checkpoint_dir`]),
/// replacing the previous one atomically, and waits for it.
pub fn save(_s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    let state = save_state(sh);
    if let Err(e) = begin_save(&state, false) {
        return e;
    }
    let job = SaveJob::new(sh, state);
    match job.run(false) {
        Ok(()) => {
            sh.stats.last_save_unix.store(unix_now(), Ordering::Relaxed);
            Frame::ok()
        }
        Err(e) => Frame::error(format!("ERR {e}")),
    }
}

/// BGSAVE [SCHEDULE]: SAVE on a background thread. Inside MULTI/EXEC it replies "Background saving
/// scheduled" (as Redis does, which cannot fork there) and starts at once.
pub fn bgsave(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match args.len() {
        1 => {}
        2 if args[1].eq_ignore_ascii_case(b"schedule") => {}
        _ => return Frame::error("ERR syntax error"),
    }
    let state = save_state(sh);
    if let Err(e) = begin_save(&state, true) {
        return e;
    }
    let job = SaveJob::new(sh, state.clone());
    let spawned = std::thread::Builder::new()
        .name("strata-bgsave".into())
        .spawn(move || {
            let _ = job.run(true);
        });
    if let Err(e) = spawned {
        let mut st = state.inner.lock();
        st.running_since = None;
        st.running_bg = false;
        st.last_failed = true;
        return Frame::error(format!("ERR cannot start the background save: {e}"));
    }
    if s.in_exec {
        Frame::simple("Background saving scheduled")
    } else {
        Frame::simple("Background saving started")
    }
}

/// BGREWRITEAOF's progress, for INFO persistence.
#[derive(Debug, Default)]
pub struct LogRewrite {
    inner: parking_lot::Mutex<LogRewriteInner>,
}

#[derive(Debug)]
struct LogRewriteInner {
    running_since: Option<std::time::Instant>,
    last_failed: bool,
    /// Seconds the last rewrite took (-1: none yet).
    last_secs: i64,
    rewrites: u64,
}

impl Default for LogRewriteInner {
    fn default() -> Self {
        LogRewriteInner {
            running_since: None,
            last_failed: false,
            last_secs: -1,
            rewrites: 0,
        }
    }
}

/// BGREWRITEAOF. strata's append-only file is the storage engine's write-ahead log; what Redis's
/// rewrite achieves (a log no longer than the data needs) is a memtable flush, after which the log
/// segments it covered are deleted. Runs on a background thread; inside MULTI/EXEC it replies
/// "scheduled", as Redis does there.
pub fn bgrewriteaof(s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    let state = sh.log_rewrite.clone();
    {
        let mut st = state.inner.lock();
        if st.running_since.is_some() {
            return Frame::error("ERR Background append only file rewriting already in progress");
        }
        st.running_since = Some(std::time::Instant::now());
    }
    let db = sh.keyspace.storage().clone();
    let job_state = state.clone();
    let spawned = std::thread::Builder::new()
        .name("strata-logrewrite".into())
        .spawn(move || {
            let result = db.flush();
            let mut st = job_state.inner.lock();
            let started = st.running_since.take();
            st.last_secs = started.map_or(0, |t| {
                i64::try_from(t.elapsed().as_secs()).unwrap_or(i64::MAX)
            });
            st.last_failed = result.is_err();
            match result {
                Ok(()) => {
                    st.rewrites += 1;
                    tracing::info!("BGREWRITEAOF: memtable flushed, covered log segments released");
                }
                Err(e) => tracing::error!(error = %e, "BGREWRITEAOF failed"),
            }
        });
    if let Err(e) = spawned {
        let mut st = state.inner.lock();
        st.running_since = None;
        st.last_failed = true;
        return Frame::error(format!("ERR cannot start the log rewrite: {e}"));
    }
    if s.in_exec {
        Frame::simple("Background append only file rewriting scheduled")
    } else {
        Frame::simple("Background append only file rewriting started")
    }
}

/// INFO persistence's log-rewrite fields, as Redis reports its AOF rewrite.
fn persistence_rewrite_lines(out: &mut String, sh: &Shared) {
    let st = sh.log_rewrite.inner.lock();
    let current = st.running_since.map_or(-1, |t| {
        i64::try_from(t.elapsed().as_secs()).unwrap_or(i64::MAX)
    });
    let _ = write!(
        out,
        "aof_rewrite_in_progress:{}\r\naof_rewrite_scheduled:0\r\naof_last_rewrite_time_sec:{}\r\n\
         aof_current_rewrite_time_sec:{current}\r\naof_last_bgrewrite_status:{}\r\naof_rewrites:{}\r\n",
        u8::from(st.running_since.is_some()),
        st.last_secs,
        if st.last_failed { "err" } else { "ok" },
        st.rewrites,
    );
}

/// INFO persistence's save fields, as Redis reports them.
fn persistence_save_lines(out: &mut String, sh: &Shared) {
    let line = |out: &mut String, k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(out, "{k}:{v}\r\n");
    };
    let state = save_state(sh);
    let st = state.inner.lock();
    let changes = sh.keyspace.dirty().saturating_sub(st.dirty_at_last_save);
    line(out, "rdb_changes_since_last_save", &changes);
    line(
        out,
        "rdb_bgsave_in_progress",
        &u8::from(st.running_since.is_some() && st.running_bg),
    );
    line(out, "rdb_last_save_time", &last_save_unix(sh, &st));
    line(
        out,
        "rdb_last_bgsave_status",
        &if st.last_failed { "err" } else { "ok" },
    );
    line(out, "rdb_last_bgsave_time_sec", &st.last_bgsave_secs);
    let current = match st.running_since {
        Some(t) if st.running_bg => i64::try_from(t.elapsed().as_secs()).unwrap_or(i64::MAX),
        _ => -1,
    };
    line(out, "rdb_current_bgsave_time_sec", &current);
    line(out, "rdb_saves", &st.saves);
}

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]. strata's data is always on disk, so "saving" is a final
/// WAL fsync; if that fails the shutdown is refused unless FORCE. NOW changes nothing (there are no
/// replicas to wait for), and no shutdown is ever pending for ABORT to cancel. On success the client gets
/// no reply: the connection closes and the node stops as on SIGTERM.
pub fn shutdown(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (mut nosave, mut save, mut force, mut now, mut abort) = (false, false, false, false, false);
    for arg in &args[1..] {
        let flag = match arg.to_ascii_lowercase().as_slice() {
            b"nosave" => &mut nosave,
            b"save" => &mut save,
            b"now" => &mut now,
            b"force" => &mut force,
            b"abort" => &mut abort,
            _ => return Frame::error("ERR syntax error"),
        };
        *flag = true;
    }
    if (abort && (nosave || save || now || force)) || (nosave && save) {
        return Frame::error("ERR syntax error");
    }
    if abort {
        return Frame::error("ERR No shutdown in progress.");
    }
    if !nosave && let Err(e) = sh.keyspace.storage().sync_wal() {
        tracing::error!(error = %e, "SHUTDOWN: the final storage sync failed");
        if !force {
            return Frame::error("ERR Errors trying to SHUTDOWN. Check logs.");
        }
    }
    tracing::info!(client = s.id, "SHUTDOWN requested by a client");
    s.shutting_down = true;
    sh.config.shutdown_request.cancel();
    Frame::ok()
}

pub fn lastsave(_s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    let state = save_state(sh);
    let st = state.inner.lock();
    Frame::Integer(i64::try_from(last_save_unix(sh, &st)).unwrap_or(i64::MAX))
}

/// SLOWLOG GET [count] | LEN | RESET | HELP.
pub fn slowlog(_s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
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

/// MODULE LIST | LOAD | LOADEX | UNLOAD | HELP. strata loads no modules: the features Redis users add
/// with the popular ones (rate limiting, autocomplete) are built in, so LIST is empty and LOAD fails
/// the way Redis fails for a library it cannot load.
pub fn module(_s: &mut Session, _sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    match (sub.as_slice(), args.len()) {
        (b"list", 2) => Frame::Array(Vec::new()),
        (b"load" | b"loadex", n) if n >= 3 => {
            Frame::error("ERR Error loading the extension. Please check the server logs.")
        }
        (b"unload", 3) => {
            Frame::error("ERR Error unloading module: no such module with that name")
        }
        (b"help", 2) => Frame::Array(
            [
                "MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "LIST",
                "    Return a list of loaded modules.",
                "LOAD <path> [<arg> ...]",
                "    Load a module library from <path>, passing to it any optional arguments.",
                "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
                "    Load a module library from <path>, while passing it module configurations and optional arguments.",
                "UNLOAD <name>",
                "    Unload a module.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
        ),
        (b"list" | b"load" | b"loadex" | b"unload" | b"help", _) => Frame::error(format!(
            "ERR wrong number of arguments for 'module|{}' command",
            String::from_utf8_lossy(&sub)
        )),
        _ => super::unknown_subcommand(&args[1], "module"),
    }
}

#[cfg(test)]
mod save_tests {
    use super::*;

    #[test]
    fn a_second_save_while_one_runs_is_refused_as_redis_does() {
        let state = SaveState::default();
        assert!(begin_save(&state, true).is_ok());
        match begin_save(&state, true) {
            Err(Frame::Error(e)) => assert_eq!(&e[..], b"ERR Background save already in progress"),
            other => panic!("{other:?}"),
        }
        assert!(begin_save(&state, false).is_err());
        state.inner.lock().running_since = None;
        assert!(begin_save(&state, false).is_ok());
    }
}
