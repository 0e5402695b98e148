//! The command table and dispatch. One module per command family; each command is a function from the
//! session, the shared state and the arguments to a reply.

mod client;
mod connection;
mod hashes;
mod introspection;
mod keys;
mod lists;

pub use keys::ScanCursors;
mod server;
mod sets;
mod strings;
mod transactions;

use bytes::Bytes;
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
    pub run: fn(&mut Session, &Shared, &[Bytes]) -> Frame,
}

/// Every command this build knows, sorted by name.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "append",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: strings::append,
    },
    CommandSpec {
        name: "auth",
        arity: -2,
        flags: &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        no_auth: true,
        run: connection::auth,
    },
    CommandSpec {
        name: "bgsave",
        arity: -1,
        flags: &["admin", "noscript"],
        no_auth: false,
        run: server::save,
    },
    CommandSpec {
        name: "client",
        arity: -2,
        flags: &[],
        no_auth: false,
        run: client::client,
    },
    CommandSpec {
        name: "command",
        arity: -1,
        flags: &["loading", "stale"],
        no_auth: false,
        run: introspection::command,
    },
    CommandSpec {
        name: "config",
        arity: -2,
        flags: &["admin", "noscript", "loading", "stale"],
        no_auth: false,
        run: server::config,
    },
    CommandSpec {
        name: "dbsize",
        arity: 1,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: keys::dbsize,
    },
    CommandSpec {
        name: "decr",
        arity: 2,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: strings::decr,
    },
    CommandSpec {
        name: "decrby",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: strings::decrby,
    },
    CommandSpec {
        name: "del",
        arity: -2,
        flags: &["write"],
        no_auth: false,
        run: keys::del,
    },
    CommandSpec {
        name: "discard",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        no_auth: false,
        run: transactions::discard,
    },
    CommandSpec {
        name: "echo",
        arity: 2,
        flags: &["fast"],
        no_auth: false,
        run: connection::echo,
    },
    CommandSpec {
        name: "exec",
        arity: 1,
        flags: &["noscript", "loading", "stale", "skip_slowlog"],
        no_auth: false,
        run: transactions::exec_unreachable,
    },
    CommandSpec {
        name: "exists",
        arity: -2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: keys::exists,
    },
    CommandSpec {
        name: "expire",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: keys::expire,
    },
    CommandSpec {
        name: "expireat",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: keys::expireat,
    },
    CommandSpec {
        name: "expiretime",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: keys::expiretime,
    },
    CommandSpec {
        name: "flushall",
        arity: -1,
        flags: &["write"],
        no_auth: false,
        run: keys::flushall,
    },
    CommandSpec {
        name: "flushdb",
        arity: -1,
        flags: &["write"],
        no_auth: false,
        run: keys::flushdb,
    },
    CommandSpec {
        name: "get",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: strings::get,
    },
    CommandSpec {
        name: "getdel",
        arity: 2,
        flags: &["write", "fast"],
        no_auth: false,
        run: strings::getdel,
    },
    CommandSpec {
        name: "getex",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: strings::getex,
    },
    CommandSpec {
        name: "getrange",
        arity: 4,
        flags: &["readonly"],
        no_auth: false,
        run: strings::getrange,
    },
    CommandSpec {
        name: "getset",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: strings::getset,
    },
    CommandSpec {
        name: "hdel",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: hashes::hdel,
    },
    CommandSpec {
        name: "hello",
        arity: -1,
        flags: &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        no_auth: true,
        run: connection::hello,
    },
    CommandSpec {
        name: "hexists",
        arity: 3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hashes::hexists,
    },
    CommandSpec {
        name: "hget",
        arity: 3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hashes::hget,
    },
    CommandSpec {
        name: "hgetall",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: hashes::hgetall,
    },
    CommandSpec {
        name: "hincrby",
        arity: 4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hashes::hincrby,
    },
    CommandSpec {
        name: "hincrbyfloat",
        arity: 4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hashes::hincrbyfloat,
    },
    CommandSpec {
        name: "hkeys",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: hashes::hkeys,
    },
    CommandSpec {
        name: "hlen",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hashes::hlen,
    },
    CommandSpec {
        name: "hmget",
        arity: -3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hashes::hmget,
    },
    CommandSpec {
        name: "hmset",
        arity: -4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hashes::hset,
    },
    CommandSpec {
        name: "hset",
        arity: -4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hashes::hset,
    },
    CommandSpec {
        name: "hsetnx",
        arity: 4,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: hashes::hsetnx,
    },
    CommandSpec {
        name: "hstrlen",
        arity: 3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: hashes::hstrlen,
    },
    CommandSpec {
        name: "hvals",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: hashes::hvals,
    },
    CommandSpec {
        name: "incr",
        arity: 2,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: strings::incr,
    },
    CommandSpec {
        name: "incrby",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: strings::incrby,
    },
    CommandSpec {
        name: "incrbyfloat",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: strings::incrbyfloat,
    },
    CommandSpec {
        name: "info",
        arity: -1,
        flags: &["loading", "stale"],
        no_auth: false,
        run: server::info,
    },
    CommandSpec {
        name: "keys",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: keys::keys,
    },
    CommandSpec {
        name: "lastsave",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        no_auth: false,
        run: server::lastsave,
    },
    CommandSpec {
        name: "lindex",
        arity: 3,
        flags: &["readonly"],
        no_auth: false,
        run: lists::lindex,
    },
    CommandSpec {
        name: "linsert",
        arity: 5,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: lists::linsert,
    },
    CommandSpec {
        name: "llen",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: lists::llen,
    },
    CommandSpec {
        name: "lmove",
        arity: 5,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: lists::lmove,
    },
    CommandSpec {
        name: "lpop",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: lists::pop,
    },
    CommandSpec {
        name: "lpos",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: lists::lpos,
    },
    CommandSpec {
        name: "lpush",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: lists::push,
    },
    CommandSpec {
        name: "lpushx",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: lists::push,
    },
    CommandSpec {
        name: "lrange",
        arity: 4,
        flags: &["readonly"],
        no_auth: false,
        run: lists::lrange,
    },
    CommandSpec {
        name: "lrem",
        arity: 4,
        flags: &["write"],
        no_auth: false,
        run: lists::lrem,
    },
    CommandSpec {
        name: "lset",
        arity: 4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: lists::lset,
    },
    CommandSpec {
        name: "ltrim",
        arity: 4,
        flags: &["write"],
        no_auth: false,
        run: lists::ltrim,
    },
    CommandSpec {
        name: "mget",
        arity: -2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: strings::mget,
    },
    CommandSpec {
        name: "mset",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: strings::mset,
    },
    CommandSpec {
        name: "msetnx",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: strings::msetnx,
    },
    CommandSpec {
        name: "multi",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        no_auth: false,
        run: transactions::multi,
    },
    CommandSpec {
        name: "persist",
        arity: 2,
        flags: &["write", "fast"],
        no_auth: false,
        run: keys::persist,
    },
    CommandSpec {
        name: "pexpire",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: keys::pexpire,
    },
    CommandSpec {
        name: "pexpireat",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: keys::pexpireat,
    },
    CommandSpec {
        name: "pexpiretime",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: keys::pexpiretime,
    },
    CommandSpec {
        name: "ping",
        arity: -1,
        flags: &["fast"],
        no_auth: false,
        run: connection::ping,
    },
    CommandSpec {
        name: "psetex",
        arity: 4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: strings::psetex,
    },
    CommandSpec {
        name: "pttl",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: keys::pttl,
    },
    CommandSpec {
        name: "quit",
        arity: -1,
        flags: &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        no_auth: true,
        run: connection::quit,
    },
    CommandSpec {
        name: "randomkey",
        arity: 1,
        flags: &["readonly"],
        no_auth: false,
        run: keys::randomkey,
    },
    CommandSpec {
        name: "rename",
        arity: 3,
        flags: &["write"],
        no_auth: false,
        run: keys::rename,
    },
    CommandSpec {
        name: "renamenx",
        arity: 3,
        flags: &["write", "fast"],
        no_auth: false,
        run: keys::rename,
    },
    CommandSpec {
        name: "reset",
        arity: 1,
        flags: &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        no_auth: true,
        run: connection::reset,
    },
    CommandSpec {
        name: "rpop",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: lists::pop,
    },
    CommandSpec {
        name: "rpoplpush",
        arity: 3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: lists::lmove,
    },
    CommandSpec {
        name: "rpush",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: lists::push,
    },
    CommandSpec {
        name: "rpushx",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: lists::push,
    },
    CommandSpec {
        name: "sadd",
        arity: -3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: sets::sadd,
    },
    CommandSpec {
        name: "save",
        arity: 1,
        flags: &["admin", "noscript"],
        no_auth: false,
        run: server::save,
    },
    CommandSpec {
        name: "scan",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: keys::scan,
    },
    CommandSpec {
        name: "scard",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: sets::scard,
    },
    CommandSpec {
        name: "sdiff",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: sets::setop,
    },
    CommandSpec {
        name: "sdiffstore",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: sets::setop_store,
    },
    CommandSpec {
        name: "select",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        no_auth: false,
        run: connection::select,
    },
    CommandSpec {
        name: "set",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: strings::set,
    },
    CommandSpec {
        name: "setex",
        arity: 4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: strings::setex,
    },
    CommandSpec {
        name: "setnx",
        arity: 3,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: strings::setnx,
    },
    CommandSpec {
        name: "setrange",
        arity: 4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: strings::setrange,
    },
    CommandSpec {
        name: "sinter",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: sets::setop,
    },
    CommandSpec {
        name: "sintercard",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: sets::sintercard,
    },
    CommandSpec {
        name: "sinterstore",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: sets::setop_store,
    },
    CommandSpec {
        name: "sismember",
        arity: 3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: sets::sismember,
    },
    CommandSpec {
        name: "smembers",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: sets::smembers,
    },
    CommandSpec {
        name: "smismember",
        arity: -3,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: sets::smismember,
    },
    CommandSpec {
        name: "smove",
        arity: 4,
        flags: &["write", "fast"],
        no_auth: false,
        run: sets::smove,
    },
    CommandSpec {
        name: "spop",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: sets::spop,
    },
    CommandSpec {
        name: "srandmember",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: sets::srandmember,
    },
    CommandSpec {
        name: "srem",
        arity: -3,
        flags: &["write", "fast"],
        no_auth: false,
        run: sets::srem,
    },
    CommandSpec {
        name: "strlen",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: strings::strlen,
    },
    CommandSpec {
        name: "substr",
        arity: 4,
        flags: &["readonly"],
        no_auth: false,
        run: strings::getrange,
    },
    CommandSpec {
        name: "sunion",
        arity: -2,
        flags: &["readonly"],
        no_auth: false,
        run: sets::setop,
    },
    CommandSpec {
        name: "sunionstore",
        arity: -3,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: sets::setop_store,
    },
    CommandSpec {
        name: "time",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        no_auth: false,
        run: server::time,
    },
    CommandSpec {
        name: "touch",
        arity: -2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: keys::exists,
    },
    CommandSpec {
        name: "ttl",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: keys::ttl,
    },
    CommandSpec {
        name: "type",
        arity: 2,
        flags: &["readonly", "fast"],
        no_auth: false,
        run: keys::type_,
    },
    CommandSpec {
        name: "unlink",
        arity: -2,
        flags: &["write", "fast"],
        no_auth: false,
        run: keys::del,
    },
    CommandSpec {
        name: "unwatch",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        no_auth: false,
        run: transactions::unwatch,
    },
    CommandSpec {
        name: "watch",
        arity: -2,
        flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        no_auth: false,
        run: transactions::watch,
    },
];

/// Finds a command by name, case-insensitively, without allocating.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    COMMANDS
        .binary_search_by(|spec| {
            let a = spec.name.as_bytes().iter();
            let b = name.iter().map(u8::to_ascii_lowercase);
            a.copied().cmp(b)
        })
        .ok()
        .map(|i| &COMMANDS[i])
}

/// Commands that act on the transaction itself rather than being queued by MULTI.
const TRANSACTION_CONTROL: &[&str] = &["discard", "exec", "multi", "quit", "reset", "watch"];

/// Runs one request and returns its reply. Inside MULTI, commands are checked and queued instead.
pub fn execute(session: &mut Session, shared: &Shared, args: &[Bytes]) -> Frame {
    if args.is_empty() {
        return Frame::error("ERR empty command");
    }
    shared
        .stats
        .commands
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let spec = match check(session, args) {
        Ok(spec) => spec,
        Err(reply) => {
            if session.multi.is_some() {
                session.multi_failed = true;
            }
            return reply;
        }
    };
    if session.multi.is_some() && !TRANSACTION_CONTROL.contains(&spec.name) {
        if let Some(queue) = session.multi.as_mut() {
            queue.push(args.to_vec());
        }
        return Frame::simple("QUEUED");
    }
    if spec.name == "exec" {
        return transactions::exec(session, shared);
    }
    let _shared_lock = shared.exec_lock.read();
    (spec.run)(session, shared, args)
}

/// Looks a request up and checks authentication and arity.
fn check(session: &mut Session, args: &[Bytes]) -> Result<&'static CommandSpec, Frame> {
    let name = &args[0];
    let Some(spec) = lookup(name) else {
        return Err(Frame::error(unknown_command(name, &args[1..])));
    };
    session.last_command_at = std::time::Instant::now();
    session.last_command = spec.name;
    if !session.authenticated && !spec.no_auth {
        return Err(Frame::error("NOAUTH Authentication required."));
    }
    let arity_ok = match usize::try_from(spec.arity) {
        Ok(exact) => args.len() == exact,
        Err(_) => args.len() >= spec.arity.unsigned_abs() as usize,
    };
    if !arity_ok {
        return Err(wrong_arity(spec.name));
    }
    Ok(spec)
}

/// Runs a queued command of a transaction (EXEC holds the exclusive lock already).
pub(crate) fn run_queued(session: &mut Session, shared: &Shared, args: &[Bytes]) -> Frame {
    match check(session, args) {
        Ok(spec) => (spec.run)(session, shared, args),
        Err(reply) => reply,
    }
}

/// `ERR unknown command 'x', with args beginning with: 'a' 'b' ` exactly as Redis words it.
fn unknown_command(name: &[u8], args: &[Bytes]) -> String {
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
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.is_empty() && !s.starts_with('+') && s.trim() == *s)
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| Frame::error("ERR value is not an integer or out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_lookup_ignores_case() {
        assert!(COMMANDS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(lookup(b"PiNg").map(|s| s.name), Some("ping"));
        assert!(lookup(b"nope").is_none());
    }

    #[test]
    fn unknown_command_message_matches_redis() {
        let msg = unknown_command(
            b"foo",
            &[Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        );
        assert_eq!(
            msg,
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
    }
}
