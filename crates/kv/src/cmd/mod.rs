//! The command table and dispatch. One module per command family; each command is a function from the
//! session, the shared state and the arguments to a reply.

mod client;
mod connection;
mod functions;
mod hashes;
mod introspection;
mod keys;
mod lists;

pub use keys::ScanCursors;
mod server;
mod sets;
mod strings;
mod transactions;
pub(crate) mod zsets;

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

/// Every command family's table; [`lookup`] and `COMMAND` see their union, sorted by name.
const FAMILIES: &[&[CommandSpec]] = &[
    client::COMMANDS,
    connection::COMMANDS,
    functions::COMMANDS,
    hashes::COMMANDS,
    introspection::COMMANDS,
    keys::COMMANDS,
    lists::COMMANDS,
    server::COMMANDS,
    sets::COMMANDS,
    strings::COMMANDS,
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
    let table = commands();
    table
        .binary_search_by(|spec| {
            let a = spec.name.as_bytes().iter();
            let b = name.iter().map(u8::to_ascii_lowercase);
            a.copied().cmp(b)
        })
        .ok()
        .map(|i| table[i])
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
    if spec.name == "swapdb" {
        return keys::swapdb_exclusive(session, shared, args);
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
        assert!(commands().windows(2).all(|w| w[0].name < w[1].name));
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
