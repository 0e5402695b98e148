//! `ACL` and its subcommands (CAT, DELUSER, DRYRUN, GENPASS, GETUSER, HELP, LIST, LOAD, LOG, SAVE,
//! SETUSER, USERS, WHOAMI), answering as Redis 7.0 does over the model in [`crate::acl`].
//!
//! Two pieces are shared with dispatch, which checks every call of a restricted user against the same
//! rules: [`call_keys`] (the keys a call names and the access each needs, from Redis 7.0's key specs) and
//! [`call_channels`] (the channels it publishes or subscribes to). `ACL DRYRUN` runs exactly that check
//! without running the call, and logs nothing.
//!
//! Deleting a user closes the connections authenticated as it ([`kill_clients_of`]); narrowing a user's
//! channels closes its subscribed connections that lost a subscription's channel
//! ([`kill_subscribers_denied`]). Both find a connection's user by the name its handle carries
//! ([`crate::clients::ClientNames::user`]), which `AUTH` and `HELLO` keep up to date.

use std::sync::Arc;

use bytes::Bytes;
use strata_resp::{Arg, Frame};

use super::{CommandSpec, parse_i64};
use crate::acl::{self, ChannelKind, CommandRef, KeyAccess, User};
use crate::clients::{ClientHandle, flag};
use crate::pubsub;
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "acl",
    arity: -2,
    flags: &["admin", "noscript", "loading", "stale"],
    no_auth: false,
    run: acl_command,
}];

/// How many entries `ACL LOG` shows without a count.
const DEFAULT_LOG_COUNT: i64 = 10;

/// ACL CAT | DELUSER | DRYRUN | GENPASS | GETUSER | HELP | LIST | LOAD | LOG | SAVE | SETUSER | USERS |
/// WHOAMI.
fn acl_command(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    let n = args.len();
    match sub.as_slice() {
        b"cat" => match n {
            2 => Frame::Array(
                acl::category_names()
                    .iter()
                    .map(|c| Frame::bulk(*c))
                    .collect(),
            ),
            3 => match acl::category_commands(&args[2]) {
                Ok(names) => Frame::Array(names.into_iter().map(Frame::bulk).collect()),
                Err(line) => Frame::error(line),
            },
            _ => syntax_error(args),
        },
        b"deluser" if n >= 3 => deluser(s, sh, &args[2..]),
        b"dryrun" if n >= 4 => dryrun(sh, &args[2], &args[3..]),
        b"genpass" => match n {
            2 | 3 => {
                let bits = match args.get(2).map(|a| parse_i64(a)).transpose() {
                    Ok(bits) => bits,
                    Err(e) => return e,
                };
                match acl::genpass(bits) {
                    Ok(pass) => Frame::bulk(pass),
                    Err(line) => Frame::error(line),
                }
            }
            _ => syntax_error(args),
        },
        b"getuser" if n == 3 => match sh.acl.get(&args[2]) {
            Some(user) => user.info().to_frame(),
            None => Frame::Null,
        },
        b"help" if n == 2 => help(),
        b"list" if n == 2 => Frame::Array(sh.acl.list().into_iter().map(Frame::bulk).collect()),
        b"load" | b"save" if n == 2 => Frame::error(acl::NO_ACL_FILE),
        b"log" => match n {
            2 | 3 => log(sh, args.get(2)),
            _ => syntax_error(args),
        },
        b"setuser" if n >= 3 => setuser(s, sh, &args[2], &args[3..]),
        b"users" if n == 2 => {
            Frame::Array(sh.acl.usernames().into_iter().map(Frame::bulk).collect())
        }
        b"whoami" if n == 2 => Frame::Bulk(Bytes::copy_from_slice(s.user.name())),
        b"deluser" | b"dryrun" | b"getuser" | b"help" | b"list" | b"load" | b"save"
        | b"setuser" | b"users" | b"whoami" => {
            super::wrong_arity(&format!("acl|{}", String::from_utf8_lossy(&sub)))
        }
        _ => super::unknown_subcommand(&args[1], "acl"),
    }
}

/// Redis's reply when a subcommand that checks its own argument count gets too many (`ACL CAT a b`):
/// the subcommand as given.
fn syntax_error(args: &[Arg]) -> Frame {
    let sub =
        String::from_utf8_lossy(&args[1][..args[1].len().min(128)]).replace(['\r', '\n'], " ");
    Frame::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try ACL HELP."
    ))
}

/// `ACL SETUSER name rules...`: all the rules or none; subscribed clients of the user that lost a
/// channel they are subscribed to are closed, as Redis does.
fn setuser(s: &mut Session, sh: &Shared, name: &[u8], rules: &[Arg]) -> Frame {
    let rules: Vec<&[u8]> = rules.iter().map(Arg::as_bytes).collect();
    match sh.acl.set_user(name, &rules) {
        Ok(changed) => {
            if changed.recheck_subscribers() {
                kill_subscribers_denied(s, sh, &changed.user);
            }
            Frame::ok()
        }
        Err(e) => Frame::error(e.error_line()),
    }
}

/// `ACL DELUSER names...`: how many were deleted; their clients are closed.
fn deluser(s: &mut Session, sh: &Shared, names: &[Arg]) -> Frame {
    let names: Vec<&[u8]> = names.iter().map(Arg::as_bytes).collect();
    match sh.acl.delete_users(&names) {
        Ok(removed) => {
            kill_clients_of(s, sh, &removed);
            Frame::Integer(i64::try_from(removed.len()).unwrap_or(i64::MAX))
        }
        Err(e) => Frame::error(e.error_line()),
    }
}

/// `ACL LOG [count | RESET]`.
fn log(sh: &Shared, arg: Option<&Arg>) -> Frame {
    let count = match arg {
        Some(a) if a.eq_ignore_ascii_case(b"reset") => {
            sh.acl.log.reset();
            return Frame::ok();
        }
        Some(a) => match parse_i64(a) {
            Ok(count) => count.max(0),
            Err(e) => return e,
        },
        None => DEFAULT_LOG_COUNT,
    };
    sh.acl
        .log
        .reply(usize::try_from(count).unwrap_or(usize::MAX), log_now_ms())
}

/// The clock of ACL LOG entries: Unix milliseconds of the wall clock, as Redis's `mstime()`. Dispatch
/// stamps the entries it records with it, and `ACL LOG` computes their age from it.
pub(crate) fn log_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `ACL DRYRUN user command [arg...]`: `OK`, or (as a bulk string) why the user could not run the call.
fn dryrun(sh: &Shared, username: &[u8], call: &[Arg]) -> Frame {
    let Some(user) = sh.acl.get(username) else {
        return Frame::error(acl::dryrun_unknown_user(username));
    };
    let Some((index, spec)) = super::lookup_indexed(&call[0]) else {
        return Frame::error(acl::dryrun_unknown_command(&call[0]));
    };
    // A container with a subcommand is checked as the subcommand, which must exist; alone, as itself.
    let slot = super::stat_slot(index, call);
    let (name, arity) = if super::is_container(index) && call.len() > 1 {
        if slot == index {
            return Frame::error(acl::dryrun_unknown_command(&call[0]));
        }
        let name = super::stat_names()[slot];
        let arity = super::introspection::docs::get(name).map_or(-2, |d| d.arity());
        (name, arity)
    } else {
        (spec.name, spec.arity)
    };
    let arity_ok = match usize::try_from(arity) {
        Ok(exact) => call.len() == exact,
        Err(_) => call.len() >= arity.unsigned_abs() as usize,
    };
    if !arity_ok {
        return super::wrong_arity(name);
    }
    let Some(command) = CommandRef::of_call(index, call) else {
        return Frame::error(acl::dryrun_unknown_command(&call[0]));
    };
    let keys = call_keys(index, spec, call);
    let channels = call_channels(spec, call);
    match user.check(command, &keys, &channels) {
        Ok(()) => Frame::ok(),
        Err(denied) => Frame::Bulk(Bytes::from(
            denied.dryrun_message(command.id, &keys, &channels),
        )),
    }
}

/// Commands whose keys are only looked at for their existence, type or size (`EXISTS`, `STRLEN`): any
/// pattern matching the key allows them, whatever it grants.
const METADATA_KEYS: &[&str] = &[
    "exists",
    "hexists",
    "hlen",
    "hstrlen",
    "llen",
    "memory|usage",
    "object|encoding",
    "object|freq",
    "object|idletime",
    "object|refcount",
    "scard",
    "sismember",
    "strlen",
    "touch",
    "type",
    "watch",
    "xlen",
    "zcard",
];

/// Commands that read and write their keys though their flags say only one of the two (`INCR` reads
/// the value it writes, `LPOP` returns what it removes).
const READ_WRITE_KEYS: &[&str] = &[
    "bitfield",
    "blmpop",
    "blpop",
    "brpop",
    "bzmpop",
    "bzpopmax",
    "bzpopmin",
    "decr",
    "decrby",
    "eval",
    "evalsha",
    "fcall",
    "getdel",
    "getex",
    "getset",
    "hincrby",
    "hincrbyfloat",
    "incr",
    "incrby",
    "incrbyfloat",
    "lmpop",
    "lpop",
    "migrate",
    "move",
    "rpop",
    "setbit",
    "spop",
    "zincrby",
    "zmpop",
    "zpopmax",
    "zpopmin",
];

/// Commands that only read their keys though their flags do not say so: the read-only script calls,
/// `PFDEBUG`, and `XREADGROUP` (a write, for the pending list, whose key spec only reads the stream).
const READ_KEYS: &[&str] = &["eval_ro", "evalsha_ro", "fcall_ro", "pfdebug", "xreadgroup"];

/// Commands whose first key is used one way and the others another: `(name, first, others)`.
const TWO_SPEC_KEYS: &[(&str, KeyAccess, KeyAccess)] = {
    use KeyAccess::{Read, ReadWrite, Write};
    &[
        ("blmove", ReadWrite, Write),
        ("brpoplpush", ReadWrite, Write),
        ("copy", Read, Write),
        ("georadius", Read, Write),
        ("georadiusbymember", Read, Write),
        ("geosearchstore", Write, Read),
        ("lmove", ReadWrite, Write),
        ("pfmerge", ReadWrite, Read),
        ("rename", ReadWrite, Write),
        ("renamenx", ReadWrite, Write),
        ("rpoplpush", ReadWrite, Write),
        ("sdiffstore", Write, Read),
        ("sinterstore", Write, Read),
        ("smove", ReadWrite, Write),
        ("sort", Read, Write),
        ("sunionstore", Write, Read),
        ("zdiffstore", Write, Read),
        ("zinterstore", Write, Read),
        ("zrangestore", Write, Read),
        ("zunionstore", Write, Read),
    ]
};

/// The keys the call `args` (name first) of the command at `index` of [`super::commands`] (`spec`) names,
/// in argument order, each with the access an ACL key pattern must grant for it, as Redis 7.0's key
/// specs say: what dispatch checks a restricted user's call against, and what `ACL DRYRUN` checks.
pub(crate) fn call_keys<'a>(
    index: usize,
    spec: &CommandSpec,
    args: &[Arg<'a>],
) -> Vec<(&'a [u8], KeyAccess)> {
    let name = full_name(index, spec, args);
    let positions = if name == "memory|usage" {
        // The table of key positions has no entry for MEMORY's subcommands.
        if args.len() > 2 { vec![2] } else { Vec::new() }
    } else {
        let mut positions = super::introspection::key_positions_at(index, args);
        // A key count past the arguments: Redis's key spec yields none of the counted keys.
        if let Some(count_at) = super::introspection::numkeys_overflow_at(index, args) {
            positions.retain(|&p| p < count_at);
        }
        positions
    };
    let flags = super::flags_of(spec, args);
    let plain = if METADATA_KEYS.contains(&name) {
        KeyAccess::Metadata
    } else if name == "bitfield" && !bitfield_writes(args) {
        // Only GETs: Redis's key spec for BITFIELD then reads the key without writing it.
        KeyAccess::Read
    } else if READ_WRITE_KEYS.contains(&name) || (name == "set" && set_has_get(args)) {
        KeyAccess::ReadWrite
    } else if READ_KEYS.contains(&name) || flags.contains(&"readonly") {
        KeyAccess::Read
    } else if flags.contains(&"write") {
        KeyAccess::Write
    } else {
        KeyAccess::ReadWrite
    };
    let two_specs = TWO_SPEC_KEYS.iter().find(|(n, ..)| *n == name);
    positions
        .iter()
        .enumerate()
        .filter_map(|(nth, &at)| {
            let key = args.get(at)?.as_bytes();
            let access = match two_specs {
                Some(&(_, first, others)) => {
                    if nth == 0 {
                        first
                    } else {
                        others
                    }
                }
                // BITOP op dest src...: the destination is written, the sources read.
                None if name == "bitop" => {
                    if at == 2 {
                        KeyAccess::Write
                    } else {
                        KeyAccess::Read
                    }
                }
                None => plain,
            };
            Some((key, access))
        })
        .collect()
}

/// The command's full name: `get`, or `object|encoding` for a container's known subcommand.
fn full_name(index: usize, spec: &CommandSpec, args: &[Arg]) -> &'static str {
    super::stat_names()
        .get(super::stat_slot(index, args))
        .copied()
        .unwrap_or(spec.name)
}

/// Whether a BITFIELD call has a SET or INCRBY operation (else it only reads).
fn bitfield_writes(args: &[Arg]) -> bool {
    args.iter()
        .skip(2)
        .any(|a| a.eq_ignore_ascii_case(b"set") || a.eq_ignore_ascii_case(b"incrby"))
}

/// Whether `SET key value [options]` has the `GET` option (it then returns the old value it replaces).
fn set_has_get(args: &[Arg]) -> bool {
    args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get"))
}

/// The channels the call `args` (name first) of `spec` publishes or subscribes to, in argument order,
/// with how each is named: `PUBLISH`/`SPUBLISH` their channel, `SUBSCRIBE`/`SSUBSCRIBE` every channel,
/// `PSUBSCRIBE` every pattern. Unsubscribing names none (it is never refused for its channels).
pub(crate) fn call_channels<'a>(
    spec: &CommandSpec,
    args: &[Arg<'a>],
) -> Vec<(&'a [u8], ChannelKind)> {
    let named = |from: usize, to: usize, kind: ChannelKind| -> Vec<(&'a [u8], ChannelKind)> {
        args.get(from..to.min(args.len()))
            .unwrap_or_default()
            .iter()
            .map(|a| (a.as_bytes(), kind))
            .collect()
    };
    match spec.name {
        "publish" | "spublish" => named(1, 2, ChannelKind::Name),
        "subscribe" | "ssubscribe" => named(1, args.len(), ChannelKind::Name),
        "psubscribe" => named(1, args.len(), ChannelKind::Pattern),
        _ => Vec::new(),
    }
}

/// Closes the clients `wanted` selects; the caller's own connection closes once this reply is written.
/// Returns how many were closed.
fn close_clients_where(
    s: &mut Session,
    sh: &Shared,
    wanted: impl Fn(&ClientHandle) -> bool,
) -> usize {
    let mut closed = 0;
    for client in sh.clients.all() {
        if !wanted(&client) {
            continue;
        }
        if client.id == s.id {
            s.closing = true;
            s.handle.set_flag(flag::CLOSE_AFTER_REPLY, true);
        } else {
            client.close();
        }
        closed += 1;
    }
    closed
}

/// Whether `client` runs as the user called `name` (by the name its handle carries).
fn runs_as(client: &ClientHandle, name: &[u8]) -> bool {
    client.names.lock().user.as_ref() == name
}

/// Closes every client authenticated as one of `users` (just deleted, as `ACL DELUSER` does); the
/// caller's own connection, if among them, closes after its reply. Returns how many were closed.
pub(crate) fn kill_clients_of(s: &mut Session, sh: &Shared, users: &[Arc<User>]) -> usize {
    if users.is_empty() {
        return 0;
    }
    close_clients_where(s, sh, |c| users.iter().any(|u| runs_as(c, u.name())))
}

/// After `ACL SETUSER` narrowed `user`'s channels ([`acl::SetUser::recheck_subscribers`]): closes its
/// clients subscribed to a channel, pattern or shard channel the new rules no longer permit, as Redis
/// does. Returns how many were closed.
pub(crate) fn kill_subscribers_denied(s: &mut Session, sh: &Shared, user: &User) -> usize {
    let subscriptions = sh.pubsub.subscriptions_where(|c| runs_as(c, user.name()));
    let denied: Vec<u64> = subscriptions
        .into_iter()
        .filter(|(_, subs)| {
            subs.iter().any(|(kind, name)| {
                let kind = match kind {
                    pubsub::Kind::Pattern => ChannelKind::Pattern,
                    pubsub::Kind::Channel | pubsub::Kind::Shard => ChannelKind::Name,
                };
                !user.channel_permitted(name, kind)
            })
        })
        .map(|(id, _)| id)
        .collect();
    if denied.is_empty() {
        return 0;
    }
    close_clients_where(s, sh, |c| denied.contains(&c.id))
}

fn help() -> Frame {
    Frame::Array(
        [
            "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CAT [<category>]",
            "    List all commands that belong to <category>, or all command categories",
            "    when no category is specified.",
            "DELUSER <username> [<username> ...]",
            "    Delete a list of users.",
            "DRYRUN <username> <command> [<arg> ...]",
            "    Returns whether the user can execute the given command without executing the command.",
            "GETUSER <username>",
            "    Get the user's details.",
            "GENPASS [<bits>]",
            "    Generate a secure 256-bit user password. The optional `bits` argument can",
            "    be used to specify a different size.",
            "LIST",
            "    Show users details in config file format.",
            "LOAD",
            "    Reload users from the ACL file.",
            "LOG [<count> | RESET]",
            "    Show the ACL log entries.",
            "SAVE",
            "    Save the current config to the ACL file.",
            "SETUSER <username> <attribute> [<attribute> ...]",
            "    Create or modify a user with the specified attributes.",
            "USERS",
            "    List all the registered usernames.",
            "WHOAMI",
            "    Return the current connection username.",
            "HELP",
            "    Prints this help.",
        ]
        .into_iter()
        .map(Frame::simple)
        .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(words: &[&str]) -> Vec<(String, KeyAccess)> {
        let owned: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let args = strata_resp::args_of(&owned);
        let (index, spec) = super::super::lookup_indexed(words[0].as_bytes()).expect("known");
        call_keys(index, spec, &args)
            .into_iter()
            .map(|(k, a)| (String::from_utf8_lossy(k).into_owned(), a))
            .collect()
    }

    fn channels_of(words: &[&str]) -> Vec<(String, ChannelKind)> {
        let owned: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let args = strata_resp::args_of(&owned);
        let spec = super::super::lookup(words[0].as_bytes()).expect("known");
        call_channels(spec, &args)
            .into_iter()
            .map(|(c, k)| (String::from_utf8_lossy(c).into_owned(), k))
            .collect()
    }

    fn k(key: &str, access: KeyAccess) -> (String, KeyAccess) {
        (key.to_owned(), access)
    }

    #[test]
    fn key_access_follows_redis_key_specs() {
        use KeyAccess::{Metadata, Read, ReadWrite, Write};
        assert_eq!(keys_of(&["get", "a"]), [k("a", Read)]);
        assert_eq!(keys_of(&["set", "a", "1"]), [k("a", Write)]);
        assert_eq!(
            keys_of(&["bitfield", "a", "get", "u4", "0"]),
            [k("a", Read)]
        );
        assert_eq!(
            keys_of(&["bitfield", "a", "get", "u4", "0", "incrby", "u4", "0", "1"]),
            [k("a", ReadWrite)]
        );
        assert_eq!(
            keys_of(&["SET", "a", "1", "EX", "5", "get"]),
            [k("a", ReadWrite)]
        );
        assert_eq!(keys_of(&["incr", "a"]), [k("a", ReadWrite)]);
        assert_eq!(
            keys_of(&["exists", "a", "b"]),
            [k("a", Metadata), k("b", Metadata)]
        );
        assert_eq!(keys_of(&["object", "encoding", "a"]), [k("a", Metadata)]);
        assert_eq!(keys_of(&["memory", "usage", "a"]), [k("a", Metadata)]);
        assert_eq!(
            keys_of(&["bitop", "and", "d", "s1", "s2"]),
            [k("d", Write), k("s1", Read), k("s2", Read)]
        );
        assert_eq!(
            keys_of(&["lmove", "a", "b", "left", "right"]),
            [k("a", ReadWrite), k("b", Write)]
        );
        assert_eq!(
            keys_of(&["sort", "a", "store", "b"]),
            [k("a", Read), k("b", Write)]
        );
        assert_eq!(keys_of(&["sort", "a"]), [k("a", Read)]);
        assert_eq!(
            keys_of(&["zunionstore", "d", "2", "a", "b"]),
            [k("d", Write), k("a", Read), k("b", Read)]
        );
        assert_eq!(
            keys_of(&["pfmerge", "d", "a"]),
            [k("d", ReadWrite), k("a", Read)]
        );
        assert_eq!(
            keys_of(&["eval", "", "2", "a", "b", "x"]),
            [k("a", ReadWrite), k("b", ReadWrite)]
        );
        assert_eq!(keys_of(&["eval_ro", "", "1", "a"]), [k("a", Read)]);
        assert_eq!(
            keys_of(&["georadius", "a", "0", "0", "1", "m", "storedist", "b"]),
            [k("a", Read), k("b", Write)]
        );
        assert_eq!(keys_of(&["lpush", "a", "x"]), [k("a", Write)]);
        assert_eq!(keys_of(&["ping"]), []);
        assert_eq!(keys_of(&["publish", "ch", "m"]), []);
        assert_eq!(keys_of(&["spublish", "ch", "m"]), []);
    }

    #[test]
    fn channels_of_publish_and_subscribe() {
        use ChannelKind::{Name, Pattern};
        let c = |name: &str, kind| (name.to_owned(), kind);
        assert_eq!(channels_of(&["publish", "ch", "m"]), [c("ch", Name)]);
        assert_eq!(channels_of(&["spublish", "ch", "m"]), [c("ch", Name)]);
        assert_eq!(
            channels_of(&["subscribe", "a", "b"]),
            [c("a", Name), c("b", Name)]
        );
        assert_eq!(channels_of(&["ssubscribe", "a"]), [c("a", Name)]);
        assert_eq!(
            channels_of(&["psubscribe", "a*", "b?"]),
            [c("a*", Pattern), c("b?", Pattern)]
        );
        assert_eq!(channels_of(&["unsubscribe", "a"]), []);
        assert_eq!(channels_of(&["get", "a"]), []);
    }

    #[test]
    fn acl_subcommands_are_in_the_catalog() {
        let catalog = acl::catalog();
        for sub in [
            "cat", "deluser", "dryrun", "genpass", "getuser", "help", "list", "load", "log",
            "save", "setuser", "users", "whoami",
        ] {
            let name = format!("acl|{sub}");
            assert!(catalog.lookup(name.as_bytes()).is_some(), "{name}");
        }
        let slow = acl::category_commands(b"slow").expect("known");
        assert!(slow.contains(&"acl|whoami"));
        let admin = acl::category_commands(b"admin").expect("known");
        assert!(admin.contains(&"acl|setuser"));
        assert!(!admin.contains(&"acl|whoami"));
        assert!(!admin.contains(&"acl|cat"));
    }
}
