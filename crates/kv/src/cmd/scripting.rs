//! EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT LOAD / EXISTS / FLUSH / KILL.
//!
//! A script runs atomically: it takes the exclusive execution lock EXEC takes (inside EXEC it already
//! holds it), so no other command interleaves with its calls. Scripts may touch keys they were not given
//! in KEYS, as Redis allows. The cache of compiled scripts lives in memory until SCRIPT FLUSH, as in
//! Redis.

use std::time::Instant;
use strata_resp::Arg;

use bytes::Bytes;
use strata_resp::Frame;

use super::{CommandSpec, parse_i64, unknown_subcommand};
use crate::script::{CachedScript, Engine, EvalState, RunCtx, Running, flags, parse_shebang, sha1};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "eval",
        arity: -3,
        flags: &[
            "noscript",
            "skip_monitor",
            "may_replicate",
            "no_mandatory_keys",
            "stale",
        ],
        no_auth: false,
        run: eval,
    },
    CommandSpec {
        name: "eval_ro",
        arity: -3,
        flags: &["noscript", "skip_monitor", "no_mandatory_keys", "stale"],
        no_auth: false,
        run: eval_ro,
    },
    CommandSpec {
        name: "evalsha",
        arity: -3,
        flags: &[
            "noscript",
            "skip_monitor",
            "may_replicate",
            "no_mandatory_keys",
            "stale",
        ],
        no_auth: false,
        run: evalsha,
    },
    CommandSpec {
        name: "evalsha_ro",
        arity: -3,
        flags: &["noscript", "skip_monitor", "no_mandatory_keys", "stale"],
        no_auth: false,
        run: evalsha_ro,
    },
    CommandSpec {
        name: "script",
        arity: -2,
        flags: &["noscript"],
        no_auth: false,
        run: script,
    },
];

/// Commands that run a script: dispatch runs them without the shared lock, since they take the
/// exclusive one.
pub(super) const RUNS_SCRIPT: &[&str] = &[
    "eval",
    "eval_ro",
    "evalsha",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];

/// Whether `spec` is one of [`RUNS_SCRIPT`] (the first letter rules out nearly every other command).
pub(super) fn runs_script(spec: &CommandSpec) -> bool {
    matches!(spec.name.as_bytes().first(), Some(b'e' | b'f')) && RUNS_SCRIPT.contains(&spec.name)
}

/// `busy-reply-threshold` (alias `lua-time-limit`) in milliseconds, Redis's default 5000.
pub(crate) fn busy_threshold_ms(sh: &Shared) -> u64 {
    // Stored plus one, so that zero (the `Default`) means never set.
    match sh
        .scripting
        .busy_threshold_ms
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        0 => 5000,
        set => (set - 1) as u64,
    }
}

/// Whether used memory is over `maxmemory` even after what eviction may free (Redis's OOM state
/// before a command).
/// Scripts and function libraries count too, as Lua's memory does in Redis.
pub(crate) fn over_memory(sh: &Shared) -> bool {
    let limit = sh.memory.limit();
    if limit == 0 {
        return false;
    }
    crate::evict::make_room(sh, None) == crate::evict::Room::Full
        || crate::evict::used_memory(sh) + sh.scripting.code_bytes() > limit
}

/// `numkeys key... arg...` of EVAL and FCALL.
pub(crate) fn split_keys<'r, 'a>(
    args: &'r [Arg<'a>],
) -> Result<(&'r [Arg<'a>], &'r [Arg<'a>]), Frame> {
    let n = parse_i64(&args[2])?;
    let rest = &args[3..];
    if n > rest.len() as i64 {
        return Err(Frame::error(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if n < 0 {
        return Err(Frame::error("ERR Number of keys can't be negative"));
    }
    Ok(rest.split_at(n as usize))
}

/// Whether EVAL, EVALSHA or FCALL (`args`) runs a script declared `no-writes` (a shebang flag or a
/// function flag), which CLIENT PAUSE WRITE lets through as Redis does. Scripts without a shebang, and
/// unknown ones, may write.
pub(crate) fn declared_no_writes(sh: &Shared, args: &[Arg]) -> bool {
    let Some(target) = args.get(1) else {
        return false;
    };
    let flags = match args[0].to_ascii_lowercase().as_slice() {
        b"eval" | b"eval_ro" => crate::script::parse_shebang(target).ok().map(|(f, _)| f),
        b"evalsha" | b"evalsha_ro" => sh.scripting.eval.try_lock().and_then(|state| {
            let sha = String::from_utf8_lossy(target).to_ascii_lowercase();
            state.as_ref()?.scripts.get(&sha).map(|script| script.flags)
        }),
        b"fcall" | b"fcall_ro" => super::functions::function_flags(sh, target),
        _ => None,
    };
    flags.is_some_and(|f| f & flags::EVAL_COMPAT == 0 && f & flags::NO_WRITES != 0)
}

/// The checks Redis makes before running a script with declared flags (`#!lua flags=...` or a
/// function's flags).
pub(crate) fn check_flags(sh: &Shared, script_flags: u32, ro: bool) -> Result<(), Frame> {
    if script_flags & flags::EVAL_COMPAT != 0 {
        return Ok(());
    }
    if script_flags & flags::NO_WRITES == 0 && ro {
        return Err(Frame::error(
            "ERR Can not execute a script with write flag using *_ro command.",
        ));
    }
    if script_flags & flags::NO_WRITES == 0
        && sh
            .replicas_required
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(Frame::error(super::NOREPLICAS_ERROR));
    }
    if script_flags & (flags::ALLOW_OOM | flags::NO_WRITES) == 0 && over_memory(sh) {
        return Err(Frame::error(
            "OOM allow-oom flag is not set on the script, can not run it when used memory > 'maxmemory'",
        ));
    }
    Ok(())
}

fn eval(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    eval_generic(s, sh, args, false, false)
}

fn eval_ro(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    eval_generic(s, sh, args, false, true)
}

fn evalsha(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    eval_generic(s, sh, args, true, false)
}

fn evalsha_ro(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    eval_generic(s, sh, args, true, true)
}

fn new_state() -> Result<EvalState, Frame> {
    Ok(EvalState {
        engine: Engine::new(false)
            .map_err(|e| Frame::error(format!("ERR cannot start Lua: {e}")))?,
        scripts: std::collections::HashMap::new(),
    })
}

/// Compiles `body` into the cache if it is not there; returns its SHA-1.
fn cache_script(sh: &Shared, state: &mut EvalState, body: &Bytes) -> Result<String, Frame> {
    let sha = sha1::sha1_hex(body);
    if state.scripts.contains_key(&sha) {
        return Ok(sha);
    }
    let (script_flags, skip) = parse_shebang(body).map_err(Frame::error)?;
    let function = state
        .engine
        .compile(&body[skip..], "@user_script")
        .map_err(|e| Frame::error(format!("ERR Error compiling script (new function): {e}")))?;
    sh.scripting
        .script_bytes
        .fetch_add(body.len(), std::sync::atomic::Ordering::Relaxed);
    state.scripts.insert(
        sha.clone(),
        CachedScript {
            function,
            flags: script_flags,
        },
    );
    Ok(sha)
}

fn eval_generic(s: &mut Session, sh: &Shared, args: &[Arg], by_sha: bool, ro: bool) -> Frame {
    let (keys, argv) = match split_keys(args) {
        Ok(split) => split,
        Err(e) => return e,
    };
    let Some(me) = sh.arc() else {
        return Frame::error("ERR the service is shutting down");
    };
    let _exclusive = match super::script_lock(s, sh) {
        Ok(guard) => guard,
        Err(busy) => return busy,
    };
    let mut guard = sh.scripting.eval.lock();
    if guard.is_none() {
        match new_state() {
            Ok(state) => *guard = Some(state),
            Err(e) => return e,
        }
    }
    let Some(state) = guard.as_mut() else {
        return Frame::error("ERR cannot start Lua");
    };
    let sha = if by_sha {
        // Digests are listed in lower case, as SCRIPT LOAD returns them; a missing one is answered below.
        match std::str::from_utf8(&args[1]) {
            Ok(sha) if !sha.bytes().any(|b| b.is_ascii_uppercase()) => sha.to_owned(),
            _ => String::from_utf8_lossy(&args[1]).to_ascii_lowercase(),
        }
    } else {
        match cache_script(sh, state, &args[1].to_bytes()) {
            Ok(sha) => {
                sh.scripting
                    .cached
                    .store(state.scripts.len(), std::sync::atomic::Ordering::Relaxed);
                sha
            }
            Err(e) => return e,
        }
    };
    let EvalState { engine, scripts } = state;
    let Some(script) = scripts.get(&sha) else {
        return Frame::error("NOSCRIPT No matching script. Please use EVAL.");
    };
    if let Err(e) = check_flags(sh, script.flags, ro) {
        return e;
    }
    let compat = script.flags & flags::EVAL_COMPAT != 0;
    let Some(mut client) = engine.client.take() else {
        return Frame::error("ERR the script client is in use");
    };
    client.db = s.db;
    client.script_caller = Some(s.id);
    client.user = s.user.clone();
    client.acl_generation = s.acl_generation;
    client.acl_unrestricted = s.acl_unrestricted;
    let ctx = RunCtx {
        shared: me,
        client,
        read_only: ro || (!compat && script.flags & flags::NO_WRITES != 0),
        flags: script.flags,
        oom_at_start: super::scripting::over_memory(sh),
        dirty: false,
        counted_error: None,
        track_keys: RunCtx::keys_to_track(s, keys),
    };
    let running = Running {
        client: s.id,
        started: s.command_start.take().unwrap_or_else(Instant::now),
        threshold_ms: busy_threshold_ms(sh),
        eval: true,
        name: sha,
        command: strata_resp::to_owned_args(args),
    };
    let function = script.function.clone();
    // The first key's memtable slot started loading when the command was parsed (`crate::lookahead`);
    // its node loads now, while the interpreter starts the script, instead of stalling the script's first
    // command (the slot, the node and the plain-filter bit were each a cache miss in a row there).
    if let Some(key) = keys.first() {
        sh.keyspace.prefetch_record_node(s.db, key);
    }
    let reply = engine.run(&sh.scripting.run, running, &function, keys, argv, ctx);
    s.error_counted = engine.last_error_counted;
    reply
}

fn script(_s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    let wrong = || {
        Frame::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try SCRIPT HELP.",
            String::from_utf8_lossy(&args[1]).to_ascii_lowercase()
        ))
    };
    match sub.as_slice() {
        b"kill" if args.len() == 2 => sh.scripting.run.kill(true),
        b"load" if args.len() == 3 => {
            let mut guard = sh.scripting.eval.lock();
            if guard.is_none() {
                match new_state() {
                    Ok(state) => *guard = Some(state),
                    Err(e) => return e,
                }
            }
            let Some(state) = guard.as_mut() else {
                return Frame::error("ERR cannot start Lua");
            };
            let reply = match cache_script(sh, state, &args[2].to_bytes()) {
                Ok(sha) => Frame::Bulk(Bytes::from(sha)),
                Err(e) => e,
            };
            sh.scripting
                .cached
                .store(state.scripts.len(), std::sync::atomic::Ordering::Relaxed);
            reply
        }
        b"exists" if args.len() >= 3 => {
            let guard = sh.scripting.eval.lock();
            Frame::Array(
                args[2..]
                    .iter()
                    .map(|sha| {
                        let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
                        let found = guard
                            .as_ref()
                            .is_some_and(|st| st.scripts.contains_key(&sha));
                        Frame::Integer(i64::from(found))
                    })
                    .collect(),
            )
        }
        b"flush" if args.len() <= 3 => {
            if let Some(mode) = args.get(2)
                && !mode.eq_ignore_ascii_case(b"sync")
                && !mode.eq_ignore_ascii_case(b"async")
            {
                return Frame::error("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
            }
            // A fresh interpreter, as Redis does: globals and cached functions go away.
            *sh.scripting.eval.lock() = None;
            sh.scripting
                .cached
                .store(0, std::sync::atomic::Ordering::Relaxed);
            sh.scripting
                .script_bytes
                .store(0, std::sync::atomic::Ordering::Relaxed);
            Frame::ok()
        }
        b"debug" if args.len() == 3 => {
            let mode = args[2].to_ascii_lowercase();
            if mode == b"no" {
                Frame::ok()
            } else if mode == b"yes" || mode == b"sync" {
                Frame::error("ERR SCRIPT DEBUG is not supported by strata")
            } else {
                Frame::error("ERR Use SCRIPT DEBUG YES/SYNC/NO")
            }
        }
        b"help" if args.len() == 2 => {
            let lines = [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DEBUG (YES|SYNC|NO)",
                "    Set the debug mode for subsequent scripts executed.",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache. Very dangerous on replicas.",
                "KILL",
                "    Kill the currently executing Lua script.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Print this help.",
            ];
            Frame::Array(lines.iter().map(|l| Frame::simple(l)).collect())
        }
        b"kill" | b"load" | b"exists" | b"flush" | b"debug" | b"help" => wrong(),
        _ => unknown_subcommand(&args[1], "script"),
    }
}
