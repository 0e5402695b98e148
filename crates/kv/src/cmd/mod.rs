//! The command table and dispatch. One module per command family; each command is a function from the
//! session, the shared state and the arguments to a reply.

pub(crate) mod acl;
mod client;
mod config;
mod connection;
mod debug;
pub(crate) mod functions;
mod geo;
mod hashes;
mod hyperloglog;
pub(crate) mod introspection;
mod keys;
mod latency;
mod lists;
mod memory;

pub(crate) use connection::REDIS_COMPAT_VERSION;
pub use introspection::{first_key_at, key_positions};
pub use keys::ScanCursors;
#[doc(hidden)]
pub use keys::fuzzing;
pub use keys::glob_match;
pub(crate) use scripting::declared_no_writes;
mod pubsub;
mod replication;
mod scripting;
mod server;
pub use server::{LogRewrite, SaveState};
mod sets;
pub(crate) mod streams;
mod strings;
pub(crate) mod suggest;
mod throttle;
mod transactions;
pub(crate) mod zsets;

use strata_resp::Arg;
use strata_resp::Frame;

use crate::{Session, Shared};

/// A command's entry in the table.
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis's arity: `n > 0` means exactly n arguments including the name; `n < 0` at least `-n`.
    pub arity: i32,
    /// Flags as `COMMAND INFO` reports them.
    pub flags: &'static [&'static str],
    /// Whether the command may run before `AUTH` succeeds.
    pub no_auth: bool,
    /// Runs the command.
    pub run: fn(&mut Session, &Shared, &[Arg]) -> Frame,
}

/// Every command family's table; [`lookup`] and `COMMAND` see their union, sorted by name.
const FAMILIES: &[&[CommandSpec]] = &[
    acl::COMMANDS,
    client::COMMANDS,
    config::COMMANDS,
    connection::COMMANDS,
    debug::COMMANDS,
    functions::COMMANDS,
    geo::COMMANDS,
    hashes::COMMANDS,
    hyperloglog::COMMANDS,
    introspection::COMMANDS,
    keys::COMMANDS,
    latency::COMMANDS,
    lists::COMMANDS,
    memory::COMMANDS,
    pubsub::COMMANDS,
    replication::COMMANDS,
    scripting::COMMANDS,
    server::COMMANDS,
    sets::COMMANDS,
    streams::COMMANDS,
    strings::COMMANDS,
    suggest::COMMANDS,
    throttle::COMMANDS,
    transactions::COMMANDS,
    zsets::COMMANDS,
];

/// Every command this build knows, sorted by name (built once from the families' tables).
pub fn commands() -> &'static [&'static CommandSpec] {
    static TABLE: std::sync::LazyLock<Vec<&'static CommandSpec>> = std::sync::LazyLock::new(|| {
        let mut all: Vec<&'static CommandSpec> = FAMILIES.iter().flat_map(|f| f.iter()).collect();
        all.sort_by_key(|spec| spec.name);
        all
    });
    &TABLE
}

/// Finds a command by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    lookup_indexed(name).map(|(_, spec)| spec)
}

/// Finds a command and its position in [`commands`] (which indexes its statistics).
pub fn lookup_indexed(name: &[u8]) -> Option<(usize, &'static CommandSpec)> {
    // Lower-cased once on the stack, then found in an open-addressing table by hash: a binary search
    // over the ~240 specs touched a spec and its name at each of ~8 probes, 5% of a short script's
    // CPU (three lookups per EVALSHA).
    let mut buf = [0u8; MAX_COMMAND_NAME];
    let lower = buf.get_mut(..name.len())?;
    for (l, c) in lower.iter_mut().zip(name) {
        *l = c.to_ascii_lowercase();
    }
    let lower = &*lower;
    let index = command_index();
    let table = commands();
    let hash = name_hash(lower);
    let mut at = hash as usize & index.mask;
    loop {
        let (slot_hash, i) = index.slots[at];
        if i == EMPTY_SLOT {
            return None;
        }
        let spec = table[i as usize];
        if slot_hash == hash && spec.name.as_bytes() == lower {
            return Some((i as usize, spec));
        }
        at = (at + 1) & index.mask;
    }
}

/// The command table by name hash: linear probing over a table at most a quarter full, each slot the
/// name's hash (compared before the name) and the command's position in [`commands`].
struct CommandIndex {
    slots: Vec<(u32, u16)>,
    mask: usize,
}

const EMPTY_SLOT: u16 = u16::MAX;

fn command_index() -> &'static CommandIndex {
    static INDEX: std::sync::LazyLock<CommandIndex> = std::sync::LazyLock::new(|| {
        let table = commands();
        let size = (table.len() * 4).next_power_of_two();
        let mask = size - 1;
        let mut slots = vec![(0u32, EMPTY_SLOT); size];
        for (i, spec) in table.iter().enumerate() {
            let hash = name_hash(spec.name.as_bytes());
            let mut at = hash as usize & mask;
            while slots[at].1 != EMPTY_SLOT {
                at = (at + 1) & mask;
            }
            slots[at] = (hash, u16::try_from(i).expect("fewer than 65535 commands"));
        }
        CommandIndex { slots, mask }
    });
    &INDEX
}

/// FNV-1a over a lower-case name: the table is small and fixed, so any well-spread hash will do.
fn name_hash(name: &[u8]) -> u32 {
    name.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Longer than every command name; a longer request name is unknown without a lookup.
const MAX_COMMAND_NAME: usize = 32;

/// Statistics slots: one per command of [`commands`] (at the same index), then one per subcommand of
/// each container command (`client|list`), which Redis 7 counts on its own.
struct StatSlots {
    names: Vec<&'static str>,
    /// Per command index: its subcommands' names (sorted, lower-case) and their slots.
    subs: Vec<Vec<(&'static str, usize)>>,
}

fn stat_slots() -> &'static StatSlots {
    static SLOTS: std::sync::LazyLock<StatSlots> = std::sync::LazyLock::new(|| {
        let mut names: Vec<&'static str> = commands().iter().map(|spec| spec.name).collect();
        let mut subs = Vec::with_capacity(names.len());
        for spec in commands() {
            let mut own = Vec::new();
            for full in introspection::subcommand_names(spec.name) {
                let sub = full.split_once('|').map_or(full, |(_, sub)| sub);
                own.push((sub, names.len()));
                names.push(full);
            }
            subs.push(own);
        }
        StatSlots { names, subs }
    });
    &SLOTS
}

/// The name of every statistics slot (see [`stat_slot`]).
pub fn stat_names() -> &'static [&'static str] {
    &stat_slots().names
}

/// The statistics slot of a call of command `index` with `args`: its subcommand's for a container.
pub fn stat_slot(index: usize, args: &[Arg]) -> usize {
    let slots = stat_slots();
    match (slots.subs.get(index), args.get(1)) {
        (Some(subs), Some(sub)) if !subs.is_empty() => subs
            .binary_search_by(|(name, _)| name.bytes().cmp(sub.iter().map(u8::to_ascii_lowercase)))
            .map_or(index, |i| subs[i].1),
        _ => index,
    }
}

/// Whether command `index` has subcommands (`CLIENT LIST`), which statistics and errors name.
fn is_container(index: usize) -> bool {
    stat_slots().subs.get(index).is_some_and(|s| !s.is_empty())
}

/// Commands that act on the transaction itself rather than being queued by MULTI.
const TRANSACTION_CONTROL: &[&str] = &["discard", "exec", "multi", "quit", "reset", "watch"];

/// Commands refused inside MULTI (Redis's `no-multi` flag).
const NO_MULTI: &[&str] = &["monitor", "psync", "save", "shutdown", "sync"];

/// Redis's reply to a command that may grow the data while used memory is over `maxmemory`.
const OOM_ERROR: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// Redis's reply to a write while `min-replicas-to-write` asks for more good replicas than there are.
pub(crate) const NOREPLICAS_ERROR: &str = "NOREPLICAS Not enough good replicas to write.";

/// Whether `min-replicas-to-write` refuses this command now: a write (or an EXEC whose queue holds one)
/// while replicas are required, since this server has none.
fn refused_for_replicas(
    session: &Session,
    shared: &Shared,
    spec: &CommandSpec,
    args: &[Arg],
) -> bool {
    if !shared
        .replicas_required
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return false;
    }
    has_flag_or_queues_it(session, spec, args, "write")
}

/// Whether the command `args` (of `spec`) has `flag`, or is an EXEC whose queued transaction holds a
/// command with it.
fn has_flag_or_queues_it(session: &Session, spec: &CommandSpec, args: &[Arg], flag: &str) -> bool {
    flags_of(spec, args).contains(&flag)
        || (spec.name == "exec"
            && session.multi.as_ref().is_some_and(|queue| {
                queue.iter().any(|queued| {
                    queued
                        .first()
                        .and_then(|n| lookup(n))
                        .is_some_and(|s| flags_of(s, &strata_resp::args_of(queued)).contains(&flag))
                })
            }))
}

/// Flags of the container commands' subcommands that differ from the container's own, as Redis's
/// command table gives them: `(container, subcommand, flags)`, sorted.
const SUBCOMMAND_FLAGS: &[(&str, &str, &[&str])] = &[
    ("acl", "cat", &["noscript", "loading", "stale"]),
    ("acl", "genpass", &["noscript", "loading", "stale"]),
    ("acl", "help", &["loading", "stale"]),
    ("acl", "whoami", &["noscript", "loading", "stale"]),
    ("function", "delete", &["noscript", "write"]),
    ("function", "dump", &["noscript"]),
    ("function", "flush", &["noscript", "write"]),
    ("function", "help", &["loading", "stale"]),
    ("function", "kill", &["noscript", "allow_busy"]),
    ("function", "list", &["noscript"]),
    ("function", "load", &["noscript", "write", "denyoom"]),
    ("function", "restore", &["noscript", "write", "denyoom"]),
    ("function", "stats", &["noscript", "allow_busy"]),
];

/// The flags of the command `args` of `spec`: its subcommand's where they differ (FUNCTION LOAD is a
/// write, FUNCTION LIST is not), else the command's.
pub(crate) fn flags_of(spec: &CommandSpec, args: &[Arg]) -> &'static [&'static str] {
    // FUNCTION is the only container in the table; other commands skip the lower-casing.
    if spec.name == "function"
        && let Some(sub) = args.get(1)
        && let Some(flags) = subcommand_flags(
            spec.name,
            &String::from_utf8_lossy(sub).to_ascii_lowercase(),
        )
    {
        return flags;
    }
    spec.flags
}

/// The flags of subcommand `sub` (lower case) of `container` where they differ from the container's.
pub(crate) fn subcommand_flags(container: &str, sub: &str) -> Option<&'static [&'static str]> {
    SUBCOMMAND_FLAGS
        .iter()
        .find(|(c, s, _)| *c == container && *s == sub)
        .map(|(_, _, flags)| *flags)
}

/// Refuses a command for the server's state (`-OOM`, `-NOREPLICAS`), as Redis's `rejectCommand` does:
/// counted as a rejected call, an EXEC discards its transaction, a command inside MULTI fails the EXEC.
fn reject(
    session: &mut Session,
    shared: &Shared,
    index: usize,
    spec: &CommandSpec,
    args: &[Arg],
    error: &str,
) -> Frame {
    shared
        .command_stats
        .record_rejected(Some(stat_slot(index, args)), error.as_bytes());
    if spec.name == "exec" {
        session.end_transaction(&shared.keyspace);
        return Frame::error(format!(
            "EXECABORT Transaction discarded because of: {error}"
        ));
    }
    if session.multi.is_some() {
        session.multi_failed = true;
    }
    Frame::error(error)
}

/// Whether `maxmemory` refuses this command now. Over the limit, keys are evicted first as the policy
/// allows (`evict::make_room`); if that cannot make room, a `denyoom` command, an EXEC whose queue holds
/// one, or anything but EXEC/DISCARD/QUIT/RESET queued inside MULTI (queueing costs memory too) is
/// refused, as Redis does.
fn refused_for_memory(
    session: &mut Session,
    shared: &Shared,
    spec: &CommandSpec,
    args: &[Arg],
) -> bool {
    if shared
        .evict
        .client_limit
        .load(std::sync::atomic::Ordering::Relaxed)
        != 0
    {
        crate::evict::evict_clients(shared);
    }
    if shared.memory.limit() == 0 {
        return false;
    }
    let room = crate::evict::make_room(shared, Some((session.id, &mut session.extra_replies)));
    if room != crate::evict::Room::Full {
        return false;
    }
    let denyoom = has_flag_or_queues_it(session, spec, args, "denyoom");
    let queued =
        session.multi.is_some() && !matches!(spec.name, "exec" | "discard" | "quit" | "reset");
    denyoom || queued
}

/// Runs a command's function, with keyspace notifications around a write when they are on.
///
/// `index` is the command's position in [`commands`] (its key rule's too).
fn run_spec(
    session: &mut Session,
    shared: &Shared,
    index: usize,
    spec: &CommandSpec,
    args: &[Arg],
) -> Frame {
    // A script's keys are expired by the commands it runs, when they look them up, as in Redis. Checking
    // them before the script started as well read each key twice, the first time cold (a seventh of
    // EVALSHA's CPU).
    if !scripting::runs_script(spec)
        && let Err(e) = expire_keys(session.db, shared, index, args)
    {
        return storage_error(e);
    }
    if !shared.evict.is_active() && !shared.tracking.is_active() {
        return run_notified(session, shared, spec, args);
    }
    // Cache mode and client-side caching follow the command's keys.
    let keys = introspection::key_positions_at(index, args);
    let watch = crate::tracking::Watch::begin(shared, session.db, spec, args, &keys);
    let reply = run_notified(session, shared, spec, args);
    crate::evict::after_command(shared, session, spec, args, &keys, &reply);
    crate::tracking::after_command(shared, session, spec, args, &keys, watch, &reply);
    reply
}

/// Runs a command's function, with keyspace notifications around a write when they are on.
fn run_notified(session: &mut Session, shared: &Shared, spec: &CommandSpec, args: &[Arg]) -> Frame {
    if shared.notify.flags() & crate::notify::KEY_MISS != 0 && spec.flags.contains(&"readonly") {
        crate::notify::key_misses(shared, session.db, spec.name, args);
    }
    if shared.notify.enabled() && spec.flags.contains(&"write") {
        let pending = crate::notify::Notifier::begin(shared, session.db, spec.name, args);
        let reply = (spec.run)(session, shared, args);
        crate::notify::Notifier::finish(shared, pending, spec.name, args, &reply);
        reply
    } else {
        (spec.run)(session, shared, args)
    }
}

/// Lazy expiry of a command's keys before it runs, as Redis's key lookups do: an expired key is deleted,
/// counted in `expired_keys` and announced with the `expired` keyspace event, ahead of the command's own
/// events.
fn expire_keys(
    db: usize,
    shared: &Shared,
    index: usize,
    args: &[Arg],
) -> Result<(), crate::keyspace::KvError> {
    // While writes are paused nothing expires (the keys only read as missing), as in Redis.
    if args.len() < 2
        || !shared.keyspace.may_expire()
        || (shared.pause.maybe_active() && shared.pause.paused_until(true).is_some())
    {
        return Ok(());
    }
    for i in introspection::key_positions_at(index, args) {
        let Some(key) = args.get(i) else { continue };
        let expired = {
            let _guard = shared.keyspace.lock(db, key);
            shared.keyspace.expire_if_needed(db, key)?
        };
        let flags = shared.notify.flags();
        if expired && flags & crate::notify::EXPIRED != 0 {
            crate::notify::publish(shared, flags, db, key, "expired");
        }
        if expired {
            shared.evict.forget(db, key);
            shared.tracking.invalidate(shared, key, None, None);
        }
    }
    Ok(())
}

/// Sends a command that ran to the MONITOR clients (admin commands are not shown, as in Redis).
fn feed_monitors(session: &Session, shared: &Shared, spec: &CommandSpec, args: &[Arg]) {
    if shared.monitors.any() && !spec.flags.contains(&"admin") {
        if session.id == crate::script::SCRIPT_CLIENT_ID {
            shared
                .monitors
                .feed_from(&shared.pubsub, session.db, "lua", args);
        } else {
            shared
                .monitors
                .feed(&shared.pubsub, session.db, session.peer, args);
        }
    }
}

/// Commands a RESP2 connection may run while subscribed.
const SUBSCRIBED_ALLOWED: &[&str] = &[
    "ping",
    "psubscribe",
    "punsubscribe",
    "quit",
    "reset",
    "ssubscribe",
    "subscribe",
    "sunsubscribe",
    "unsubscribe",
];

/// Runs one request and returns its reply. Inside MULTI, commands are checked and queued instead.
///
/// A blocking command that finds nothing to do leaves a [`crate::blocking::BlockRequest`] in
/// `session.block` (its reply is then a placeholder): the caller waits and calls [`resume`].
pub fn execute(session: &mut Session, shared: &Shared, args: &[Arg]) -> Frame {
    if args.is_empty() {
        return Frame::error("ERR empty command");
    }
    // One clock read per command in a pipeline: it starts when the one before it ended, and its wall
    // time (expiry) derives from that instant. Redis reads the clock twice per command.
    let start = session
        .clock_hint
        .take()
        .unwrap_or_else(std::time::Instant::now);
    session.command_start = Some(start);
    let _time = crate::keyspace::CommandTime::begin_at(start);
    shared.stats.commands.add(1);
    let (index, spec) = match check(session, shared, args, Some(start)) {
        Ok(found) => found,
        Err((index, reply)) => {
            if let Frame::Error(message) = &reply {
                let slot = index.map(|i| stat_slot(i, args));
                shared.command_stats.record_rejected(slot, message);
            }
            if session.multi.is_some() {
                session.multi_failed = true;
            }
            return reply;
        }
    };
    if !session.acl_unrestricted || shared.acl.generation() != session.acl_generation {
        let context = if session.multi.is_some() {
            crate::acl::LogContext::Multi
        } else {
            crate::acl::LogContext::Toplevel
        };
        if let Some((denied, command)) = acl_denied(session, shared, index, spec, args, context) {
            if session.multi.is_some() {
                session.multi_failed = true;
            }
            let message = denied.noperm(command);
            shared
                .command_stats
                .record_rejected(Some(stat_slot(index, args)), message.as_bytes());
            return Frame::error(message);
        }
    }
    if shared.scripting.run.active()
        && !allowed_while_busy(spec, args)
        && let Some(busy) = shared.scripting.run.busy_error(session.id)
    {
        shared.command_stats.record_rejected(Some(index), b"BUSY");
        if spec.name == "exec" && session.multi.is_some() {
            // As Redis: the transaction is discarded rather than half run after the script.
            session.end_transaction(&shared.keyspace);
            let Frame::Error(message) = &busy else {
                return busy;
            };
            return Frame::error(format!(
                "EXECABORT Transaction discarded because of: {}",
                String::from_utf8_lossy(message)
            ));
        }
        if session.multi.is_some() {
            session.multi_failed = true;
        }
        return busy;
    }
    if session.multi.is_some() && NO_MULTI.contains(&spec.name) {
        session.multi_failed = true;
        let reply = Frame::error("ERR Command not allowed inside a transaction");
        shared
            .command_stats
            .record_rejected(Some(stat_slot(index, args)), b"ERR");
        return reply;
    }
    if refused_for_replicas(session, shared, spec, args) {
        return reject(session, shared, index, spec, args, NOREPLICAS_ERROR);
    }
    if refused_for_memory(session, shared, spec, args) {
        return reject(session, shared, index, spec, args, OOM_ERROR);
    }
    if session.handle.is_killed() {
        // Evicted by `maxmemory-clients` just now (Redis's processCommand evicts clients first and runs
        // nothing for one it evicted); the connection closes without a reply.
        return Frame::Null;
    }
    if session.multi.is_some() && !TRANSACTION_CONTROL.contains(&spec.name) {
        if let Some(queue) = session.multi.as_mut() {
            queue.push(strata_resp::to_owned_args(args));
            session.multi_bytes += args.iter().map(|a| a.len() + 16).sum::<usize>();
        }
        return Frame::simple("QUEUED");
    }
    let reply = if spec.name == "exec" {
        session.in_exec = true;
        let reply = transactions::exec(session, shared);
        session.in_exec = false;
        reply
    } else if spec.name == "swapdb" {
        // SWAPDB takes the exclusive lock itself, like EXEC, so no command runs across the swap.
        let reply = keys::swapdb_exclusive(session, shared, args);
        if reply == Frame::ok()
            && let (Some(a), Some(b)) = (args.get(1), args.get(2))
            && let (Ok(a), Ok(b)) = (parse_i64(a), parse_i64(b))
        {
            shared.evict.swap(a as usize, b as usize);
        }
        reply
    } else if scripting::RUNS_SCRIPT.contains(&spec.name) {
        // MONITOR shows the script before the commands it calls, as Redis does.
        feed_monitors(session, shared, spec, args);
        // A script takes the exclusive lock itself, like EXEC, so it runs with nothing interleaved.
        let reply = run_spec(session, shared, index, spec, args);
        session.clock_hint = finish(session, shared, index, spec, args, start, &reply, true);
        return reply;
    } else {
        if spec.name == "shutdown" {
            // SHUTDOWN (NOSAVE) stops a running script whatever it did.
            shared.scripting.run.abort();
        }
        let _shared_lock = match shared_lock(session, shared, spec, args) {
            Ok(guard) => guard,
            Err(busy) => {
                shared.command_stats.record_rejected(Some(index), b"BUSY");
                return busy;
            }
        };
        run_spec(session, shared, index, spec, args)
    };
    session.clock_hint = finish(session, shared, index, spec, args, start, &reply, true);
    feed_monitors(session, shared, spec, args);
    shared.tracking.flush_broadcasts(shared);
    // `CLIENT CACHING` applies to the next command only (or the next transaction).
    if session.tracking.caching && session.multi.is_none() && spec.name != "client" {
        session.tracking.caching = false;
    }
    reply
}

/// Whether a command may run while a script is busy (Redis's `allow_busy`): transaction control,
/// AUTH/HELLO/QUIT/RESET, SHUTDOWN, SCRIPT KILL, FUNCTION KILL and FUNCTION STATS.
fn allowed_while_busy(spec: &CommandSpec, args: &[Arg]) -> bool {
    if spec.flags.contains(&"allow_busy")
        || matches!(spec.name, "auth" | "hello" | "quit" | "reset" | "shutdown")
    {
        return true;
    }
    let sub = args.get(1).map(|a| a.to_ascii_lowercase());
    match spec.name {
        "script" => sub.as_deref() == Some(b"kill"),
        "function" => matches!(sub.as_deref(), Some(b"kill" | b"stats")),
        _ => false,
    }
}

/// How long a command waits for the execution lock on its async worker before it hands the worker's core to
/// another thread and goes on waiting there: a script or transaction usually finishes well within it, and
/// a worker blocked for longer would strand the tasks queued on it (a blocked worker's queue is not
/// always stolen), SCRIPT KILL among them.
const LOCK_WAIT_ON_WORKER: std::time::Duration = std::time::Duration::from_millis(1);

/// Runs `wait` off the async worker's core (see [`LOCK_WAIT_ON_WORKER`]) on a multi-threaded runtime.
fn wait_off_worker<T>(wait: impl FnOnce() -> T) -> T {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}

/// The shared execution lock for one command. While a script holds the exclusive lock the command
/// waits, until the script passes `busy-reply-threshold`: then it gets `-BUSY`, or runs without the
/// lock if it is one of the few commands Redis allows while busy.
fn shared_lock<'a>(
    session: &Session,
    shared: &'a Shared,
    spec: &CommandSpec,
    args: &[Arg],
) -> Result<Option<parking_lot::RwLockReadGuard<'a, ()>>, Frame> {
    if let Some(guard) = shared.exec_lock.try_read() {
        return Ok(Some(guard));
    }
    if !shared.scripting.run.active()
        && let Some(guard) = shared.exec_lock.try_read_for(LOCK_WAIT_ON_WORKER)
    {
        return Ok(Some(guard));
    }
    wait_off_worker(|| {
        loop {
            if shared.scripting.run.active()
                && let Some(busy) = shared.scripting.run.busy_error(session.id)
            {
                if allowed_while_busy(spec, args) {
                    return Ok(None);
                }
                return Err(busy);
            }
            if let Some(guard) = shared
                .exec_lock
                .try_read_for(std::time::Duration::from_millis(2))
            {
                return Ok(Some(guard));
            }
        }
    })
}

/// The exclusive lock a script (EVAL, FCALL) runs under: none inside EXEC, which already holds it.
pub(crate) fn script_lock<'a>(
    s: &Session,
    shared: &'a Shared,
) -> Result<Option<parking_lot::RwLockWriteGuard<'a, ()>>, Frame> {
    if s.in_exec {
        return Ok(None);
    }
    exclusive_lock(s.id, shared).map(Some)
}

/// The exclusive execution lock, for a script, EXEC or SWAPDB: waited for like [`shared_lock`], and
/// refused with `-BUSY` once a running script passes `busy-reply-threshold`, as Redis refuses them.
pub(crate) fn exclusive_lock<'a>(
    session_id: u64,
    shared: &'a Shared,
) -> Result<parking_lot::RwLockWriteGuard<'a, ()>, Frame> {
    if let Some(guard) = shared.exec_lock.try_write() {
        return Ok(guard);
    }
    if !shared.scripting.run.active()
        && let Some(guard) = shared.exec_lock.try_write_for(LOCK_WAIT_ON_WORKER)
    {
        return Ok(guard);
    }
    wait_off_worker(|| {
        loop {
            if shared.scripting.run.active()
                && let Some(busy) = shared.scripting.run.busy_error(session_id)
            {
                return Err(busy);
            }
            if let Some(guard) = shared
                .exec_lock
                .try_write_for(std::time::Duration::from_millis(2))
            {
                return Ok(guard);
            }
        }
    })
}

/// Brings `session.user` up to date with the user table, which changed since it was fetched. A
/// session whose user was deleted is closed (DELUSER closes such clients; this one raced it) and keeps
/// its old user, which then has nothing left to run.
fn refresh_user(session: &mut Session, shared: &Shared) {
    let generation = shared.acl.generation();
    if generation == session.acl_generation {
        return;
    }
    match shared.acl.current(&session.user) {
        Some(user) => {
            session.acl_unrestricted = user.unrestricted();
            session.user = user;
            session.acl_generation = generation;
        }
        None => session.handle.close(),
    }
}

/// The ACL check of a call of command `index` (`spec`) by the session's user: `None` when the user may
/// run it, else why not and the command or subcommand refused. A denial is logged in ACL LOG with
/// `context`, as Redis logs refusals at the top level, in MULTI and in scripts.
pub(crate) fn acl_denied(
    session: &mut Session,
    shared: &Shared,
    index: usize,
    spec: &CommandSpec,
    args: &[Arg],
    context: crate::acl::LogContext,
) -> Option<(crate::acl::Denied, crate::acl::CommandId)> {
    refresh_user(session, shared);
    if session.handle.is_killed() {
        return Some((
            crate::acl::Denied::Command,
            crate::acl::CommandRef::of_call(index, args)?.id,
        ));
    }
    if session.acl_unrestricted {
        return None;
    }
    let command = crate::acl::CommandRef::of_call(index, args)?;
    let keys = acl::call_keys(index, spec, args);
    let channels = acl::call_channels(spec, args);
    let denied = session.user.check(command, &keys, &channels).err()?;
    let object = denied.log_object(command.id, &keys, &channels);
    shared.acl.log.record(crate::acl::LogEntry::new(
        denied.log_reason(),
        context,
        object,
        session.user.name(),
        session.info_line(),
        acl::log_now_ms(),
    ));
    Some((denied, command.id))
}

/// Runs one command called by a script (`redis.call`), with Redis's checks for scripts; an `Err` is
/// the error the script receives (with its code).
pub(crate) fn run_from_script(
    ctx: &mut crate::script::RunCtx,
    args: &[Arg],
) -> Result<Frame, String> {
    let Some(spec) = lookup(&args[0]) else {
        return Err("ERR Unknown Redis command called from script".to_owned());
    };
    let arity_ok = match usize::try_from(spec.arity) {
        Ok(exact) => args.len() == exact,
        Err(_) => args.len() >= spec.arity.unsigned_abs() as usize,
    };
    if !arity_ok {
        return Err("ERR Wrong number of args calling Redis command from script".to_owned());
    }
    let flags = flags_of(spec, args);
    if flags.contains(&"noscript") {
        return Err("ERR This Redis command is not allowed from script".to_owned());
    }
    if matches!(spec.name, "xread" | "xreadgroup")
        && args
            .iter()
            .skip(1)
            .any(|a| a.eq_ignore_ascii_case(b"block"))
    {
        return Err(format!(
            "ERR {} command is not allowed with BLOCK option from scripts",
            spec.name
        ));
    }
    if (!ctx.client.acl_unrestricted || ctx.shared.acl.generation() != ctx.client.acl_generation)
        && let Some((index, _)) = lookup_indexed(&args[0])
        && let Some((denied, _)) = acl_denied(
            &mut ctx.client,
            &ctx.shared.clone(),
            index,
            spec,
            args,
            crate::acl::LogContext::Lua,
        )
    {
        return Err(format!("ERR {}", denied.script_error()));
    }
    let writes = flags.contains(&"write");
    if ctx.read_only && (writes || matches!(spec.name, "publish" | "spublish")) {
        return Err("ERR Write commands are not allowed from read-only scripts.".to_owned());
    }
    if ctx.oom_at_start
        && !ctx.dirty
        && ctx.flags & crate::script::flags::ALLOW_OOM == 0
        && flags.contains(&"denyoom")
    {
        return Err(OOM_ERROR.to_owned());
    }
    // As Redis: a script that already wrote is not failed halfway on this state.
    if writes
        && !ctx.dirty
        && ctx
            .shared
            .replicas_required
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(NOREPLICAS_ERROR.to_owned());
    }
    if writes {
        ctx.dirty = true;
        ctx.shared.scripting.run.note_write();
    }
    let shared = ctx.shared.clone();
    let reply = run_queued(&mut ctx.client, &shared, args);
    if spec.flags.contains(&"readonly")
        && let Some(keys) = ctx.track_keys.take()
        && let Some(caller) = ctx.client.script_caller
    {
        shared
            .tracking
            .remember(&shared, caller, keys.iter().map(strata_resp::Arg::of));
    }
    Ok(reply)
}

/// Counts a command a script called and `run_from_script` refused: its rejected call (when it is a
/// command) and the error, as Redis counts refusals in `scriptCall`.
pub(crate) fn record_script_rejection(shared: &Shared, args: &[Arg], message: &str) {
    let index = args
        .first()
        .and_then(|name| lookup_indexed(name))
        .map(|(index, _)| stat_slot(index, args));
    shared
        .command_stats
        .record_rejected(index, message.as_bytes());
}

/// Runs a blocked command again after a wake-up (the connection holds its place in the wait queues).
/// If it is still blocked, `session.block` is set again.
pub fn resume(session: &mut Session, shared: &Shared, args: &[Arg]) -> Frame {
    let Some((index, spec)) = args.first().and_then(|name| lookup_indexed(name)) else {
        return Frame::error("ERR empty command");
    };
    let _time = crate::keyspace::CommandTime::begin();
    let start = std::time::Instant::now();
    let reply = {
        let _shared_lock = shared.exec_lock.read();
        run_spec(session, shared, index, spec, args)
    };
    // The connection signals the keys once it has left the wait queues.
    let _ = finish(session, shared, index, spec, args, start, &reply, false);
    shared.tracking.flush_broadcasts(shared);
    reply
}

/// Counts a blocked command answered without running again (timeout, CLIENT UNBLOCK).
pub fn record_unblocked(shared: &Shared, args: &[Arg], reply: &Frame) {
    if let Some((index, _)) = args.first().and_then(|name| lookup_indexed(name)) {
        let index = stat_slot(index, args);
        let error = match reply {
            Frame::Error(m) => Some(&m[..]),
            _ => None,
        };
        shared
            .command_stats
            .record_call(index, std::time::Duration::ZERO, error);
    }
}

/// After a command ran: its statistics, the slow log, and waking clients blocked on keys it wrote.
/// Returns when it ended (`None` for a command that blocked: its connection waits).
#[allow(clippy::too_many_arguments)]
fn finish(
    session: &mut Session,
    shared: &Shared,
    index: usize,
    spec: &CommandSpec,
    args: &[Arg],
    start: std::time::Instant,
    reply: &Frame,
    signal: bool,
) -> Option<std::time::Instant> {
    if session.block.is_some() {
        // Counted once the wait ends.
        return None;
    }
    let end = std::time::Instant::now();
    let elapsed = end.saturating_duration_since(start);
    let error = match reply {
        Frame::Error(m) => Some(&m[..]),
        _ => None,
    };
    if error.is_some() && std::mem::take(&mut session.error_counted) {
        shared
            .command_stats
            .record_failed_call(stat_slot(index, args), elapsed);
    } else {
        shared
            .command_stats
            .record_call(stat_slot(index, args), elapsed, error);
    }
    if shared.latency.monitoring() {
        let event = if spec.flags.contains(&"fast") {
            "fast-command"
        } else {
            "command"
        };
        shared.latency.observe(event, elapsed);
    }
    if shared.slowlog.is_slow(elapsed) && !spec.flags.contains(&"skip_slowlog") {
        shared.slowlog.push(
            args,
            elapsed,
            session.peer,
            session.name().unwrap_or_default(),
        );
    }
    if signal && shared.blocking.has_waiters() && spec.flags.contains(&"write") {
        signal_keys(shared, args, &mut session.woken);
    }
    Some(end)
}

/// Wakes clients blocked on any key among a write command's arguments (a superset of the keys it
/// wrote; a spurious wake-up costs only a retry), adding them to `woken`. Swapping or emptying
/// databases wakes every blocked client (a blocked XREADGROUP must learn its stream is gone).
pub fn signal_keys(shared: &Shared, args: &[Arg], woken: &mut Vec<crate::blocking::Woken>) {
    if args.first().is_some_and(|n| {
        n.eq_ignore_ascii_case(b"swapdb")
            || n.eq_ignore_ascii_case(b"flushall")
            || n.eq_ignore_ascii_case(b"flushdb")
    }) {
        shared.blocking.signal_all(woken);
        return;
    }
    // A stream write (XADD, XGROUP DESTROY, XSETID, ...) wakes every reader blocked on its key; a
    // served XREAD / XREADGROUP passes the wake-up on as a pop does (the others were woken already).
    let stream_write = args.first().is_some_and(|n| {
        n.first().is_some_and(|c| c.eq_ignore_ascii_case(&b'x'))
            && !n.eq_ignore_ascii_case(b"xread")
            && !n.eq_ignore_ascii_case(b"xreadgroup")
    });
    for arg in args.iter().skip(1) {
        if stream_write {
            shared.blocking.signal_every(arg, woken);
        } else {
            shared.blocking.signal(arg, woken);
        }
    }
}

/// Looks a request up and checks authentication, arity and the subscribed context; a refusal carries
/// the command's position when it was found.
///
/// A command from the connection (`arrived` is when it started) stamps its arrival and becomes the
/// client's last command; one run by EXEC or a script (`arrived` is `None`) does not, as in Redis,
/// where CLIENT LIST shows `cmd=exec` or `cmd=evalsha` for the client that ran them.
fn check(
    session: &mut Session,
    shared: &Shared,
    args: &[Arg],
    arrived: Option<std::time::Instant>,
) -> Result<(usize, &'static CommandSpec), (Option<usize>, Frame)> {
    let name = &args[0];
    let Some((index, spec)) = lookup_indexed(name) else {
        return Err((None, Frame::error(unknown_command(name, &args[1..]))));
    };
    if let Some(now) = arrived {
        session.last_command_at = now;
        session.last_command = spec.name;
        session.handle.touch(index, now);
        session
            .handle
            .set_full_name((is_container(index) && args.len() > 1).then(|| full_name(spec, args)));
    }
    if !session.authenticated && !spec.no_auth && shared.auth_required() {
        return Err((Some(index), Frame::error("NOAUTH Authentication required.")));
    }
    let arity_ok = match usize::try_from(spec.arity) {
        Ok(exact) => args.len() == exact,
        Err(_) => args.len() >= spec.arity.unsigned_abs() as usize,
    };
    if !arity_ok {
        return Err((Some(index), wrong_arity(spec.name)));
    }
    if session.in_resp2_pubsub_mode() && !SUBSCRIBED_ALLOWED.contains(&spec.name) {
        return Err((
            Some(index),
            Frame::error(format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
                 are allowed in this context",
                full_name(spec, args)
            )),
        ));
    }
    Ok((index, spec))
}

/// `get`, or `client|list` for a container command.
pub fn full_name(spec: &CommandSpec, args: &[Arg]) -> String {
    match args.get(1) {
        Some(sub) if !introspection::subcommand_names(spec.name).is_empty() => format!(
            "{}|{}",
            spec.name,
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        ),
        _ => spec.name.to_owned(),
    }
}

/// Runs a queued command of a transaction (EXEC holds the exclusive lock already).
pub(crate) fn run_queued(session: &mut Session, shared: &Shared, args: &[Arg]) -> Frame {
    match check(session, shared, args, None) {
        Ok((index, spec)) => {
            // As in a pipeline, one clock read per command: each starts when the one before it ended
            // (the script's or transaction's own command sets the hint again when it finishes).
            let start = session
                .clock_hint
                .take()
                .unwrap_or_else(std::time::Instant::now);
            session.command_start = Some(start);
            let reply = run_spec(session, shared, index, spec, args);
            session.clock_hint = finish(session, shared, index, spec, args, start, &reply, true);
            feed_monitors(session, shared, spec, args);
            reply
        }
        Err((_, reply)) => reply,
    }
}

/// Whether a reply of `elements` elements, each at least `min_element_bytes` encoded, would pass the
/// normal class's output buffer hard limit, or [`MAX_UNBOUNDED_REPLY_BYTES`] when there is none. If so
/// the client is marked to be closed without it (Redis closes such a client mid-reply), so a command
/// like `HRANDFIELD key -999999999` is refused before it builds a reply of billions of elements. Only
/// for replies whose size does not follow from the data (random members with repetition).
pub(crate) fn reply_over_limit(
    s: &mut Session,
    sh: &Shared,
    elements: u64,
    min_element_bytes: u64,
) -> bool {
    let hard = match sh
        .normal_limits
        .hard
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        0 => MAX_UNBOUNDED_REPLY_BYTES,
        hard => hard,
    };
    let over = elements.saturating_mul(min_element_bytes) > hard;
    if over {
        s.over_output_limit = true;
    }
    over
}

/// The largest reply a command whose reply size does not follow from the data may build when no
/// normal-class output limit is set. Redis would stream ~15 GB for `HRANDFIELD key -999999999`; strata
/// builds its reply before sending it, at several times the bytes, and one command must not take the
/// process down.
const MAX_UNBOUNDED_REPLY_BYTES: u64 = 1 << 30;

/// `ERR unknown command 'x', with args beginning with: 'a' 'b' ` exactly as Redis words it.
fn unknown_command(name: &[u8], args: &[Arg]) -> String {
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        shown(name, 128)
    );
    for a in args.iter().take(64) {
        msg.push('\'');
        msg.push_str(&shown(a, 128));
        msg.push_str("' ");
    }
    msg
}

/// `ERR wrong number of arguments for 'get' command`.
pub fn wrong_arity(name: &str) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// `ERR unknown subcommand 'x'. Try CLIENT HELP.`
pub fn unknown_subcommand(sub: &[u8], command: &str) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        shown(sub, 128),
        command.to_ascii_uppercase()
    ))
}

/// An argument as it may appear inside an error line: at most `max` bytes, with line breaks replaced.
fn shown(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).replace(['\r', '\n'], " ")
}

/// The reply for a storage failure. The engine refuses writes after an I/O error (it is poisoned), so this
/// is what clients see until the node is restarted.
pub fn storage_error(e: crate::keyspace::KvError) -> Frame {
    tracing::error!(error = %e, "key-value storage error");
    Frame::error(format!("ERR {e}"))
}

/// Parses an integer argument as Redis does, or returns its error reply.
pub fn parse_i64(arg: &[u8]) -> Result<i64, Frame> {
    string_to_i64(arg).ok_or_else(|| Frame::error("ERR value is not an integer or out of range"))
}

/// Redis's `string2ll`: an optional `-` and decimal digits with no leading zero (`"0"` alone is fine;
/// `"010"`, `"-0"`, `"+1"`, `" 1"` and the empty string are not integers), within `i64`.
pub fn string_to_i64(arg: &[u8]) -> Option<i64> {
    let digits = arg.strip_prefix(b"-").unwrap_or(arg);
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == arg.len(),
        [first, rest @ ..] => (b'1'..=b'9').contains(first) && rest.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(arg).ok()?.parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_lookup_ignores_case() {
        assert!(commands().windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(lookup(b"PiNg").map(|s| s.name), Some("ping"));
        for unknown in [&b"nope"[..], b"", b"ge", b"gett", b"get\0", b"xreadgroupx"] {
            assert!(lookup(unknown).is_none(), "{unknown:?}");
        }
        assert!(lookup(&[b'a'; MAX_COMMAND_NAME + 1]).is_none());
        // Every command is found by its upper-cased name (and fits the lookup's buffer).
        for (i, spec) in commands().iter().enumerate() {
            let upper = spec.name.to_ascii_uppercase();
            assert_eq!(lookup_indexed(upper.as_bytes()).map(|(at, _)| at), Some(i));
        }
    }

    #[test]
    fn integers_follow_redis_string2ll() {
        for ok in [
            "0",
            "1",
            "-1",
            "10",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert!(string_to_i64(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in [
            "",
            "-",
            "-0",
            "010",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "9223372036854775808",
            "0x1",
        ] {
            assert!(string_to_i64(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn unknown_command_message_matches_redis() {
        let msg = unknown_command(
            b"foo",
            &[
                strata_resp::Arg::borrowed(b"a"),
                strata_resp::Arg::borrowed(b"b"),
            ],
        );
        assert_eq!(
            msg,
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
    }
}
