//! MULTI, EXEC, DISCARD, WATCH, UNWATCH with Redis's semantics: commands are checked and queued after
//! MULTI; a command refused while queueing makes EXEC fail with EXECABORT; EXEC replies nil when a
//! WATCHed key was written since WATCH; EXEC runs the queue with every other command held off.

use strata_resp::Arg;
use strata_resp::Frame;

use super::CommandSpec;
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "discard",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        no_auth: false,
        run: discard,
    },
    CommandSpec {
        name: "exec",
        arity: 1,
        flags: &["noscript", "loading", "stale", "skip_slowlog"],
        no_auth: false,
        run: exec_unreachable,
    },
    CommandSpec {
        name: "multi",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        no_auth: false,
        run: multi,
    },
    CommandSpec {
        name: "unwatch",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        no_auth: false,
        run: unwatch,
    },
    CommandSpec {
        name: "watch",
        arity: -2,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        no_auth: false,
        run: watch,
    },
];

pub fn multi(s: &mut Session, _sh: &Shared, _args: &[Arg]) -> Frame {
    if s.multi.is_some() {
        return Frame::error("ERR MULTI calls can not be nested");
    }
    s.multi = Some(Vec::new());
    s.multi_failed = false;
    s.multi_bytes = 0;
    Frame::ok()
}

pub fn discard(s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    if s.multi.is_none() {
        return Frame::error("ERR DISCARD without MULTI");
    }
    s.end_transaction(&sh.keyspace);
    Frame::ok()
}

pub fn watch(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if s.multi.is_some() {
        return Frame::error("ERR WATCH inside MULTI is not allowed");
    }
    for key in &args[1..] {
        if s.watched.iter().any(|(db, k, ..)| *db == s.db && k == key) {
            continue;
        }
        let writes = sh.keyspace.watch(s.db, &key.to_bytes());
        let exists = matches!(sh.keyspace.get(s.db, key), Ok(Some(_)));
        s.watched.push((s.db, key.to_bytes(), writes, exists));
    }
    Frame::ok()
}

pub fn unwatch(s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    for (db, key, ..) in s.watched.drain(..) {
        sh.keyspace.unwatch(db, &key);
    }
    Frame::ok()
}

/// The table entry for EXEC; dispatch calls [`exec`] directly because it needs the exclusive lock.
pub fn exec_unreachable(s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    exec(s, sh)
}

pub fn exec(s: &mut Session, sh: &Shared) -> Frame {
    let Some(queue) = s.multi.take() else {
        return Frame::error("ERR EXEC without MULTI");
    };
    if s.multi_failed {
        s.end_transaction(&sh.keyspace);
        return Frame::error("EXECABORT Transaction discarded because of previous errors.");
    }
    let _exclusive = match super::exclusive_lock(s.id, sh) {
        Ok(guard) => guard,
        Err(busy) => {
            s.end_transaction(&sh.keyspace);
            return busy;
        }
    };
    let changed = s.watched.iter().any(|(db, key, writes, existed)| {
        sh.keyspace.watch_writes(*db, key) != *writes
            || (*existed && !matches!(sh.keyspace.get(*db, key), Ok(Some(_))))
    });
    if changed {
        s.end_transaction(&sh.keyspace);
        return Frame::NullArray;
    }
    let mut replies = Vec::with_capacity(queue.len());
    for args in &queue {
        let args = strata_resp::args_of(args);
        // The user's rules may have changed since the command was queued (Redis checks again).
        if (!s.acl_unrestricted || sh.acl.generation() != s.acl_generation)
            && let Some((index, spec)) = super::lookup_indexed(&args[0])
            && let Some((denied, _)) =
                super::acl_denied(s, sh, index, spec, &args, crate::acl::LogContext::Multi)
        {
            replies.push(Frame::error(denied.exec_error()));
            continue;
        }
        replies.push(super::run_queued(s, sh, &args));
    }
    s.end_transaction(&sh.keyspace);
    Frame::Array(replies)
}
