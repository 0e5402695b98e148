//! COMMAND and its subcommands: COUNT, INFO, DOCS, LIST, GETKEYS, GETKEYSANDFLAGS, HELP.
//!
//! What COMMAND DOCS says comes from one line per command in [`docs::TABLE`]; the argument trees are
//! derived from each command's syntax string by [`syntax`].
//!
//! Where each command's keys are lives here, in one table keyed by command name ([`KEY_SPECS`], plus
//! [`NUMKEYS`] and SORT's STORE for the commands whose keys move with their arguments), so the
//! families' tables need no key information. Dispatch uses the same table for keyspace notifications.

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::Frame;

use super::{CommandSpec, commands, lookup};
use crate::{Session, Shared};

pub(crate) mod docs;
mod syntax;

/// The documented subcommands of `container` as `container|sub`, sorted (empty for a plain command).
pub(super) fn subcommand_names(container: &str) -> Vec<&'static str> {
    docs::subcommands(container)
        .into_iter()
        .map(|doc| doc.name)
        .collect()
}

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "command",
    arity: -1,
    flags: &["loading", "stale"],
    no_auth: false,
    run: command,
}];

fn simple_set<'a>(items: impl IntoIterator<Item = &'a str>) -> Frame {
    Frame::Set(
        items
            .into_iter()
            .map(|f| Frame::Simple(Bytes::copy_from_slice(f.as_bytes())))
            .collect(),
    )
}

/// COMMAND INFO's entry of a command: name, arity, flags, legacy key range, ACL categories, tips, key
/// specs (not reported) and its subcommands' entries.
fn info(spec: &CommandSpec) -> Frame {
    let (first_key, last_key, step) = key_spec(spec.name);
    let mut flags: Vec<&str> = spec.flags.to_vec();
    if movable_keys(spec.name) {
        flags.push("movablekeys");
    }
    let subcommands: Vec<Frame> = docs::subcommands(spec.name)
        .into_iter()
        .map(|sub| sub_info(spec, sub))
        .collect();
    let group = docs::get(spec.name).map_or("server", |d| d.group);
    let categories = if subcommands.is_empty() {
        acl_categories(spec.flags, group)
    } else {
        // A container's own entry carries no categories of its data, as in Redis.
        vec!["@slow"]
    };
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(i64::from(spec.arity)),
        simple_set(flags),
        Frame::Integer(first_key),
        Frame::Integer(last_key),
        Frame::Integer(step),
        simple_set(categories),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        if subcommands.is_empty() {
            Frame::Set(Vec::new())
        } else {
            Frame::Array(subcommands)
        },
    ])
}

/// COMMAND INFO's entry of a subcommand (`config|get`): the container's flags, the arity from the
/// syntax, and its first argument as its key when the syntax says it is one.
fn sub_info(container: &CommandSpec, sub: &docs::Doc) -> Frame {
    let takes_key = sub
        .args
        .first()
        .is_some_and(|a| a.kind == syntax::ArgType::Key);
    let (first, last, step) = if takes_key { (2, 2, 1) } else { (0, 0, 0) };
    let own = sub.name.split_once('|').map_or(sub.name, |(_, s)| s);
    let flags = super::subcommand_flags(container.name, own).unwrap_or(container.flags);
    Frame::Array(vec![
        Frame::bulk(sub.name),
        Frame::Integer(i64::from(sub.arity())),
        simple_set(flags.iter().copied()),
        Frame::Integer(first),
        Frame::Integer(last),
        Frame::Integer(step),
        simple_set(acl_categories(flags, sub.group)),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
    ])
}

/// The ACL categories of a command, from its flags and group, by Redis's rules: `@write` or `@read`,
/// `@fast` or `@slow`, `@admin` and `@dangerous` for admin commands, `@blocking`, and the data type's
/// category.
pub(crate) fn acl_categories(flags: &[&str], group: &str) -> Vec<&'static str> {
    let mut cats = Vec::new();
    if flags.contains(&"write") {
        cats.push("@write");
    }
    if flags.contains(&"readonly") {
        cats.push("@read");
    }
    if flags.contains(&"admin") {
        cats.extend(["@admin", "@dangerous"]);
    }
    if flags.contains(&"pubsub") || group == "pubsub" {
        cats.push("@pubsub");
    }
    if flags.contains(&"blocking") {
        cats.push("@blocking");
    }
    cats.push(match group {
        "string" => "@string",
        "bitmap" => "@bitmap",
        "list" => "@list",
        "hash" => "@hash",
        "set" => "@set",
        "sorted-set" => "@sortedset",
        "generic" => "@keyspace",
        "connection" => "@connection",
        "transactions" => "@transaction",
        "scripting" => "@scripting",
        "hyperloglog" => "@hyperloglog",
        "geo" => "@geo",
        "stream" => "@stream",
        _ => "",
    });
    cats.retain(|c| !c.is_empty());
    cats.dedup();
    cats.push(if flags.contains(&"fast") {
        "@fast"
    } else {
        "@slow"
    });
    cats
}

/// A command or subcommand named in COMMAND INFO or DOCS: `get`, or `config|get`.
enum Named {
    Command(&'static CommandSpec),
    Sub(&'static CommandSpec, &'static docs::Doc),
}

fn find_named(name: &[u8]) -> Option<Named> {
    let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
    match lower.split_once('|') {
        None => lookup(name).map(Named::Command),
        Some((container, _)) => {
            let spec = lookup(container.as_bytes())?;
            let doc = docs::get(&lower)?;
            Some(Named::Sub(spec, doc))
        }
    }
}

/// Every command's and subcommand's full name, in COMMAND LIST's order.
fn full_names() -> impl Iterator<Item = (&'static str, &'static CommandSpec, &'static str)> {
    commands().iter().flat_map(|&spec| {
        let group = docs::get(spec.name).map_or("server", |d| d.group);
        std::iter::once((spec.name, spec, group)).chain(
            docs::subcommands(spec.name)
                .into_iter()
                .map(move |sub| (sub.name, spec, sub.group)),
        )
    })
}

/// COMMAND DOCS [name ...]: a map from each known name to its documentation (unknown names are left out).
fn docs_reply(args: &[Arg]) -> Frame {
    let entry =
        |name: &'static str| docs::get(name).map(|doc| (Frame::bulk(name), docs::reply(doc)));
    if args.len() == 2 {
        return Frame::Map(commands().iter().filter_map(|s| entry(s.name)).collect());
    }
    Frame::Map(
        args[2..]
            .iter()
            .filter_map(|n| match find_named(n)? {
                Named::Command(spec) => entry(spec.name),
                Named::Sub(_, doc) => entry(doc.name),
            })
            .collect(),
    )
}

/// COMMAND GETKEYS / GETKEYSANDFLAGS: the keys of the command in `args[2..]`.
fn getkeys(args: &[Arg], with_flags: bool) -> Frame {
    let Some(target) = args.get(2) else {
        return super::wrong_arity(if with_flags {
            "command|getkeysandflags"
        } else {
            "command|getkeys"
        });
    };
    let Some(spec) = lookup(target) else {
        return Frame::error("ERR Invalid command specified");
    };
    let cmd_args = &args[2..];
    let arity_ok = match usize::try_from(spec.arity) {
        Ok(exact) => cmd_args.len() == exact,
        Err(_) => cmd_args.len() >= spec.arity.unsigned_abs() as usize,
    };
    if !arity_ok {
        return Frame::error("ERR Invalid number of arguments specified for command");
    }
    // A subcommand whose first argument is a key (MEMORY USAGE key, OBJECT ENCODING key).
    let sub_takes_key = cmd_args.len() > 2
        && docs::get(&format!(
            "{}|{}",
            spec.name,
            String::from_utf8_lossy(&cmd_args[1]).to_ascii_lowercase()
        ))
        .and_then(|d| d.args.first())
        .is_some_and(|a| a.kind == syntax::ArgType::Key);
    let keys = if sub_takes_key {
        vec![2]
    } else {
        key_positions(spec.name, cmd_args)
    };
    if keys.is_empty() {
        if movable_keys(spec.name) {
            // A command whose keys depend on its arguments, called with none (EVAL ... 0).
            return Frame::Array(Vec::new());
        }
        return Frame::error("ERR The command has no key arguments");
    }
    Frame::Array(
        keys.iter()
            .enumerate()
            .filter_map(|(n, &i)| Some((n, cmd_args.get(i)?)))
            .map(|(n, k)| {
                if with_flags {
                    let flags = key_flags(spec, n);
                    Frame::Array(vec![
                        Frame::Bulk(k.to_bytes()),
                        Frame::Array(
                            flags
                                .split_whitespace()
                                .map(|f| Frame::Simple(Bytes::copy_from_slice(f.as_bytes())))
                                .collect(),
                        ),
                    ])
                } else {
                    Frame::Bulk(k.to_bytes())
                }
            })
            .collect(),
    )
}

/// How a command uses its keys, as COMMAND GETKEYSANDFLAGS reports it: `(name, the first key, the
/// other keys)`. RW/RO/OW/RM say whether the value is read and written, read only, overwritten or
/// removed; access/update/insert/delete say what happens to the data. Commands not listed read
/// (`RO access`) or, when they write, read and update (`RW access update`).
const KEY_FLAGS: &[(&str, &str, &str)] = &[
    ("append", "RW insert", ""),
    ("bitfield", "RW access update", ""),
    ("bitop", "OW update", "RO access"),
    ("blmove", "RW access delete", "RW insert"),
    ("blmpop", "RW access delete", ""),
    ("blpop", "RW access delete", ""),
    ("brpop", "RW access delete", ""),
    ("brpoplpush", "RW access delete", "RW insert"),
    ("bzmpop", "RW access delete", ""),
    ("bzpopmax", "RW access delete", ""),
    ("bzpopmin", "RW access delete", ""),
    ("copy", "RO access", "OW update"),
    ("del", "RM delete", ""),
    ("geoadd", "RW update", ""),
    ("geosearchstore", "OW update", "RO access"),
    ("getdel", "RW access delete", ""),
    ("hdel", "RW delete", ""),
    ("hmset", "RW update", ""),
    ("hset", "RW update", ""),
    ("hsetnx", "RW insert", ""),
    ("linsert", "RW insert", ""),
    ("lmove", "RW access delete", "RW insert"),
    ("lmpop", "RW access delete", ""),
    ("lpop", "RW access delete", ""),
    ("lpush", "RW insert", ""),
    ("lpushx", "RW insert", ""),
    ("lrem", "RW delete", ""),
    ("lset", "RW update", ""),
    ("ltrim", "RW delete", ""),
    ("migrate", "RW access delete incomplete", ""),
    ("move", "RW access delete", ""),
    ("mset", "OW update", ""),
    ("msetnx", "OW insert", ""),
    ("pfadd", "RW insert", ""),
    ("pfcount", "RW access", "RW access"),
    ("pfdebug", "RW access", ""),
    ("pfmerge", "RW access insert", "RO access"),
    ("psetex", "OW update", ""),
    ("rename", "RW access delete", "OW update"),
    ("renamenx", "RW access delete", "OW insert"),
    ("restore", "OW update", ""),
    ("rpop", "RW access delete", ""),
    ("rpoplpush", "RW access delete", "RW insert"),
    ("rpush", "RW insert", ""),
    ("rpushx", "RW insert", ""),
    ("sadd", "RW insert", ""),
    ("sdiffstore", "OW update", "RO access"),
    ("set", "OW update", ""),
    ("setex", "OW update", ""),
    ("setnx", "OW insert", ""),
    ("setrange", "RW update", ""),
    ("sinterstore", "OW update", "RO access"),
    ("smove", "RW access delete", "RW insert"),
    ("sort", "RO access", "OW update"),
    ("spop", "RW access delete", ""),
    ("srem", "RW delete", ""),
    ("sunionstore", "OW update", "RO access"),
    ("unlink", "RM delete", ""),
    ("zadd", "RW update", ""),
    ("zdiffstore", "OW update", "RO access"),
    ("zinterstore", "OW update", "RO access"),
    ("zmpop", "RW access delete", ""),
    ("zpopmax", "RW access delete", ""),
    ("zpopmin", "RW access delete", ""),
    ("zrangestore", "OW update", "RO access"),
    ("zrem", "RW delete", ""),
    ("zremrangebylex", "RW delete", ""),
    ("zremrangebyrank", "RW delete", ""),
    ("zremrangebyscore", "RW delete", ""),
    ("zunionstore", "OW update", "RO access"),
];

/// The flags of the `n`th key of a command (for SORT, the second is the STORE destination).
fn key_flags(spec: &CommandSpec, n: usize) -> &'static str {
    match KEY_FLAGS.iter().find(|(name, ..)| *name == spec.name) {
        Some((_, first, others)) if n > 0 && !others.is_empty() => others,
        Some((_, first, _)) => first,
        None if spec.flags.contains(&"write") => "RW access update",
        None => "RO access",
    }
}

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]: command and subcommand names.
fn list(args: &[Arg]) -> Frame {
    let names = full_names();
    match args.len() {
        2 => Frame::Array(names.map(|(n, ..)| Frame::bulk(n)).collect()),
        5 if args[2].eq_ignore_ascii_case(b"filterby") => {
            let what = args[3].to_ascii_lowercase();
            let value = &args[4];
            match what.as_slice() {
                b"pattern" => Frame::Array(
                    names
                        .filter(|(n, ..)| super::glob_match(value, n.as_bytes(), true))
                        .map(|(n, ..)| Frame::bulk(n))
                        .collect(),
                ),
                b"aclcat" => {
                    let wanted = String::from_utf8_lossy(value).to_ascii_lowercase();
                    if !crate::acl::CATEGORY_NAMES.contains(&wanted.as_str()) {
                        return Frame::Array(Vec::new());
                    }
                    let wanted = format!("@{wanted}");
                    Frame::Array(
                        names
                            .filter(|(n, spec, group)| {
                                let is_container = !docs::subcommands(n).is_empty();
                                let cats = if is_container {
                                    vec!["@slow"]
                                } else {
                                    acl_categories(spec.flags, group)
                                };
                                cats.contains(&wanted.as_str())
                            })
                            .map(|(n, ..)| Frame::bulk(n))
                            .collect(),
                    )
                }
                // strata has no modules.
                b"module" => Frame::Array(Vec::new()),
                _ => Frame::error("ERR syntax error"),
            }
        }
        _ => Frame::error("ERR syntax error"),
    }
}

pub fn command(_s: &mut Session, _sh: &Shared, args: &[Arg]) -> Frame {
    let Some(sub) = args.get(1) else {
        return Frame::Array(commands().iter().copied().map(info).collect());
    };
    match sub.to_ascii_lowercase().as_slice() {
        b"count" if args.len() == 2 => Frame::Integer(commands().len() as i64),
        b"info" => {
            if args.len() == 2 {
                return Frame::Array(commands().iter().copied().map(info).collect());
            }
            Frame::Array(
                args[2..]
                    .iter()
                    .map(|name| match find_named(name) {
                        Some(Named::Command(spec)) => info(spec),
                        Some(Named::Sub(spec, doc)) => sub_info(spec, doc),
                        None => Frame::NullArray,
                    })
                    .collect(),
            )
        }
        b"docs" => docs_reply(args),
        b"list" => list(args),
        b"getkeys" => getkeys(args, false),
        b"getkeysandflags" => getkeys(args, true),
        b"help" if args.len() == 2 => Frame::Array(
            [
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all Redis commands.",
                "COUNT",
                "    Return the total number of commands in this Redis server.",
                "LIST",
                "    Return a list of all commands in this Redis server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple Redis commands.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple Redis commands.",
                "GETKEYS <full-command>",
                "    Return the keys from a full Redis command.",
                "GETKEYSANDFLAGS <full-command>",
                "    Return the keys and the access flags from a full Redis command.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
        ),
        b"count" | b"help" => super::wrong_arity(&format!(
            "command|{}",
            String::from_utf8_lossy(&sub.to_ascii_lowercase())
        )),
        _ => super::unknown_subcommand(sub, "command"),
    }
}

/// Legacy key positions `(first, last, step)` as COMMAND INFO reports them: `last` negative counts from
/// the end (-1: the last argument). Commands not listed take no keys. Commands whose keys move with their
/// arguments (numkeys, STORE) are handled by [`key_positions`] on top of this.
const KEY_SPECS: &[(&str, i64, i64, i64)] = &[
    ("append", 1, 1, 1),
    ("bitcount", 1, 1, 1),
    ("bitfield", 1, 1, 1),
    ("bitfield_ro", 1, 1, 1),
    ("bitop", 2, -1, 1),
    ("bitpos", 1, 1, 1),
    ("blmove", 1, 2, 1),
    ("blmpop", 0, 0, 0),
    ("blpop", 1, -2, 1),
    ("brpop", 1, -2, 1),
    ("brpoplpush", 1, 2, 1),
    ("bzmpop", 0, 0, 0),
    ("bzpopmax", 1, -2, 1),
    ("bzpopmin", 1, -2, 1),
    ("cl.throttle", 1, 1, 1),
    ("copy", 1, 2, 1),
    ("decr", 1, 1, 1),
    ("decrby", 1, 1, 1),
    ("del", 1, -1, 1),
    ("dump", 1, 1, 1),
    ("eval", 0, 0, 0),
    ("evalsha", 0, 0, 0),
    ("exists", 1, -1, 1),
    ("expire", 1, 1, 1),
    ("expireat", 1, 1, 1),
    ("expiretime", 1, 1, 1),
    ("fcall", 0, 0, 0),
    ("ft.sugadd", 1, 1, 1),
    ("ft.sugdel", 1, 1, 1),
    ("ft.sugget", 1, 1, 1),
    ("ft.suglen", 1, 1, 1),
    ("geoadd", 1, 1, 1),
    ("geodist", 1, 1, 1),
    ("geohash", 1, 1, 1),
    ("geopos", 1, 1, 1),
    ("georadius", 1, 1, 1),
    ("georadius_ro", 1, 1, 1),
    ("georadiusbymember", 1, 1, 1),
    ("georadiusbymember_ro", 1, 1, 1),
    ("geosearch", 1, 1, 1),
    ("geosearchstore", 1, 2, 1),
    ("get", 1, 1, 1),
    ("getbit", 1, 1, 1),
    ("getdel", 1, 1, 1),
    ("getex", 1, 1, 1),
    ("getrange", 1, 1, 1),
    ("getset", 1, 1, 1),
    ("hdel", 1, 1, 1),
    ("hexists", 1, 1, 1),
    ("hget", 1, 1, 1),
    ("hgetall", 1, 1, 1),
    ("hincrby", 1, 1, 1),
    ("hincrbyfloat", 1, 1, 1),
    ("hkeys", 1, 1, 1),
    ("hlen", 1, 1, 1),
    ("hmget", 1, 1, 1),
    ("hmset", 1, 1, 1),
    ("hrandfield", 1, 1, 1),
    ("hscan", 1, 1, 1),
    ("hset", 1, 1, 1),
    ("hsetnx", 1, 1, 1),
    ("hstrlen", 1, 1, 1),
    ("hvals", 1, 1, 1),
    ("incr", 1, 1, 1),
    ("incrby", 1, 1, 1),
    ("incrbyfloat", 1, 1, 1),
    ("lcs", 1, 2, 1),
    ("lindex", 1, 1, 1),
    ("linsert", 1, 1, 1),
    ("llen", 1, 1, 1),
    ("lmove", 1, 2, 1),
    ("lmpop", 0, 0, 0),
    ("lpop", 1, 1, 1),
    ("lpos", 1, 1, 1),
    ("lpush", 1, 1, 1),
    ("lpushx", 1, 1, 1),
    ("lrange", 1, 1, 1),
    ("lrem", 1, 1, 1),
    ("lset", 1, 1, 1),
    ("ltrim", 1, 1, 1),
    ("mget", 1, -1, 1),
    ("migrate", 3, 3, 1),
    ("move", 1, 1, 1),
    ("mset", 1, -1, 2),
    ("msetnx", 1, -1, 2),
    ("object", 2, 2, 1),
    ("persist", 1, 1, 1),
    ("pexpire", 1, 1, 1),
    ("pexpireat", 1, 1, 1),
    ("pexpiretime", 1, 1, 1),
    ("pfadd", 1, 1, 1),
    ("pfcount", 1, -1, 1),
    ("pfdebug", 2, 2, 1),
    ("pfmerge", 1, -1, 1),
    ("psetex", 1, 1, 1),
    ("pttl", 1, 1, 1),
    ("rename", 1, 2, 1),
    ("renamenx", 1, 2, 1),
    ("restore", 1, 1, 1),
    ("rpop", 1, 1, 1),
    ("rpoplpush", 1, 2, 1),
    ("rpush", 1, 1, 1),
    ("rpushx", 1, 1, 1),
    ("sadd", 1, 1, 1),
    ("scard", 1, 1, 1),
    ("sdiff", 1, -1, 1),
    ("sdiffstore", 1, -1, 1),
    ("set", 1, 1, 1),
    ("setbit", 1, 1, 1),
    ("setex", 1, 1, 1),
    ("setnx", 1, 1, 1),
    ("setrange", 1, 1, 1),
    ("sinter", 1, -1, 1),
    ("sintercard", 0, 0, 0),
    ("sinterstore", 1, -1, 1),
    ("sismember", 1, 1, 1),
    ("smembers", 1, 1, 1),
    ("smismember", 1, 1, 1),
    ("smove", 1, 2, 1),
    ("sort", 1, 1, 1),
    ("sort_ro", 1, 1, 1),
    ("spop", 1, 1, 1),
    ("srandmember", 1, 1, 1),
    ("srem", 1, 1, 1),
    ("sscan", 1, 1, 1),
    ("strlen", 1, 1, 1),
    ("substr", 1, 1, 1),
    ("sunion", 1, -1, 1),
    ("sunionstore", 1, -1, 1),
    ("touch", 1, -1, 1),
    ("ttl", 1, 1, 1),
    ("type", 1, 1, 1),
    ("unlink", 1, -1, 1),
    ("watch", 1, -1, 1),
    ("xack", 1, 1, 1),
    ("xadd", 1, 1, 1),
    ("xautoclaim", 1, 1, 1),
    ("xclaim", 1, 1, 1),
    ("xdel", 1, 1, 1),
    ("xgroup", 2, 2, 1),
    ("xinfo", 2, 2, 1),
    ("xlen", 1, 1, 1),
    ("xpending", 1, 1, 1),
    ("xrange", 1, 1, 1),
    ("xread", 0, 0, 0),
    ("xreadgroup", 0, 0, 0),
    ("xrevrange", 1, 1, 1),
    ("xsetid", 1, 1, 1),
    ("xtrim", 1, 1, 1),
    ("zadd", 1, 1, 1),
    ("zcard", 1, 1, 1),
    ("zcount", 1, 1, 1),
    ("zdiff", 0, 0, 0),
    ("zdiffstore", 1, 1, 1),
    ("zincrby", 1, 1, 1),
    ("zinter", 0, 0, 0),
    ("zintercard", 0, 0, 0),
    ("zinterstore", 1, 1, 1),
    ("zlexcount", 1, 1, 1),
    ("zmpop", 0, 0, 0),
    ("zmscore", 1, 1, 1),
    ("zpopmax", 1, 1, 1),
    ("zpopmin", 1, 1, 1),
    ("zrandmember", 1, 1, 1),
    ("zrange", 1, 1, 1),
    ("zrangebylex", 1, 1, 1),
    ("zrangebyscore", 1, 1, 1),
    ("zrangestore", 1, 2, 1),
    ("zrank", 1, 1, 1),
    ("zrem", 1, 1, 1),
    ("zremrangebylex", 1, 1, 1),
    ("zremrangebyrank", 1, 1, 1),
    ("zremrangebyscore", 1, 1, 1),
    ("zrevrange", 1, 1, 1),
    ("zrevrangebylex", 1, 1, 1),
    ("zrevrangebyscore", 1, 1, 1),
    ("zrevrank", 1, 1, 1),
    ("zscan", 1, 1, 1),
    ("zscore", 1, 1, 1),
    ("zunion", 0, 0, 0),
    ("zunionstore", 1, 1, 1),
];

/// Commands whose key count is an argument: (position of numkeys, whether a destination key comes
/// first at position 1).
const NUMKEYS: &[(&str, usize, bool)] = &[
    ("blmpop", 2, false),
    ("bzmpop", 2, false),
    ("eval", 2, false),
    ("eval_ro", 2, false),
    ("evalsha", 2, false),
    ("evalsha_ro", 2, false),
    ("fcall", 2, false),
    ("fcall_ro", 2, false),
    ("lmpop", 1, false),
    ("sintercard", 1, false),
    ("zdiff", 1, false),
    ("zdiffstore", 2, true),
    ("zinter", 1, false),
    ("zintercard", 1, false),
    ("zinterstore", 2, true),
    ("zmpop", 1, false),
    ("zunion", 1, false),
    ("zunionstore", 2, true),
];

/// The legacy `(first, last, step)` of a command.
fn key_spec(name: &str) -> (i64, i64, i64) {
    KEY_SPECS
        .binary_search_by(|(n, ..)| n.cmp(&name))
        .map_or((0, 0, 0), |i| {
            let (_, f, l, s) = KEY_SPECS[i];
            (f, l, s)
        })
}

/// Whether a command's keys depend on its arguments beyond the legacy range.
fn movable_keys(name: &str) -> bool {
    matches!(
        name,
        "sort" | "sort_ro" | "georadius" | "georadiusbymember" | "xread" | "xreadgroup" | "migrate"
    ) || NUMKEYS.iter().any(|(n, ..)| *n == name)
}

/// How a command's keys are found in its arguments, per command index of [`super::commands`] (built
/// once from [`KEY_SPECS`] and [`NUMKEYS`]: every command asks for its keys before it runs, for lazy
/// expiry, so the string tables are not searched per request).
#[derive(Debug, Clone, Copy)]
enum KeyRule {
    /// The legacy `(first, last, step)` range; `step` 0 means no keys.
    Range(i64, i64, i64),
    /// A key count at this position, the keys after it; `true`: position 1 is a destination key too.
    NumKeys(usize, bool),
    /// XREAD / XREADGROUP: the keys follow STREAMS.
    StreamRead,
    /// The legacy range plus SORT's STORE destination.
    Sort(i64, i64, i64),
    /// The legacy range plus GEORADIUS's STORE / STOREDIST destination.
    Geo(i64, i64, i64),
    /// MIGRATE: the key at 3, or with `""` there, the keys after KEYS.
    Migrate,
}

fn key_rules() -> &'static [KeyRule] {
    static RULES: std::sync::LazyLock<Vec<KeyRule>> = std::sync::LazyLock::new(|| {
        commands()
            .iter()
            .map(|spec| {
                let name = spec.name;
                if let Some(&(_, at, dest)) = NUMKEYS.iter().find(|(n, ..)| *n == name) {
                    return KeyRule::NumKeys(at, dest);
                }
                let (first, last, step) = key_spec(name);
                match name {
                    "xread" | "xreadgroup" => KeyRule::StreamRead,
                    "sort" => KeyRule::Sort(first, last, step),
                    "georadius" | "georadiusbymember" => KeyRule::Geo(first, last, step),
                    "migrate" => KeyRule::Migrate,
                    _ => KeyRule::Range(first, last, step),
                }
            })
            .collect()
    });
    &RULES
}

/// Positions in `args` (0 is the command name) of the keys of command `name`, in order.
pub fn key_positions(name: &str, args: &[Arg]) -> Vec<usize> {
    match super::lookup_indexed(name.as_bytes()) {
        Some((index, _)) => key_positions_at(index, args),
        None => Vec::new(),
    }
}

/// Where the first key of the command at `index` of [`super::commands`] is in `args` (0 is the name), as
/// [`key_positions_at`] would put it first, without allocating; `None` for keyless commands and for those
/// whose keys follow a keyword (XREAD, XREADGROUP). For a pipeline's look ahead, which only hints.
pub fn first_key_at(index: usize, args: &[&[u8]]) -> Option<usize> {
    let at = match *key_rules().get(index)? {
        KeyRule::NumKeys(_, true) => 1,
        KeyRule::NumKeys(at, false) => {
            key_count(args.get(at)?).filter(|&count| count > 0)?;
            at + 1
        }
        KeyRule::StreamRead => return None,
        KeyRule::Migrate => {
            let keys = migrate_key_positions(args.len(), |i| args[i]);
            if keys.is_empty() {
                return None;
            }
            keys.start
        }
        KeyRule::Range(first, last, step)
        | KeyRule::Sort(first, last, step)
        | KeyRule::Geo(first, last, step) => key_range(first, last, step, args.len())?.0,
    };
    (at < args.len()).then_some(at)
}

/// The positions of MIGRATE's keys among `n` arguments (`arg(i)` is the `i`th), as Redis's
/// `migrateGetKeys` finds them: the key at 3, or, when KEYS follows among the options, the arguments
/// after it (none if the key at 3 is not the empty string, which MIGRATE refuses).
fn migrate_key_positions<'a>(n: usize, arg: impl Fn(usize) -> &'a [u8]) -> std::ops::Range<usize> {
    if n < 4 {
        return 0..0;
    }
    let mut i = 6;
    while i < n {
        let word = arg(i);
        if word.eq_ignore_ascii_case(b"keys") {
            return if arg(3).is_empty() { i + 1..n } else { 0..0 };
        }
        if word.eq_ignore_ascii_case(b"auth") {
            i += 1;
        } else if word.eq_ignore_ascii_case(b"auth2") {
            i += 2;
        }
        i += 1;
    }
    3..4
}

/// The first and last positions of a legacy `(first, last, step)` key range among `n` arguments, if any.
fn key_range(first: i64, last: i64, step: i64, n: usize) -> Option<(usize, usize)> {
    let n = n as i64;
    let last = if last < 0 { n + last } else { last.min(n - 1) };
    (first > 0 && step > 0 && first <= last).then_some((first as usize, last as usize))
}

/// A `numkeys` argument's count (`None` when it is not a number).
fn key_count(arg: &[u8]) -> Option<usize> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// For a command at `index` of [`super::commands`] that counts its keys (`EVAL script numkeys ...`):
/// the position of the count when it names more keys than there are arguments after it. Redis's key
/// specs then yield none of the counted keys (the command itself refuses the call), which ACL checks
/// follow: [`key_positions_at`] keeps the ones present, for the command's own use.
pub(crate) fn numkeys_overflow_at(index: usize, args: &[Arg]) -> Option<usize> {
    match *key_rules().get(index)? {
        KeyRule::NumKeys(at, _) => {
            let count = key_count(args.get(at)?)?;
            (count > 0 && at + count >= args.len()).then_some(at)
        }
        _ => None,
    }
}

/// [`key_positions`] of the command at `index` of [`super::commands`].
pub fn key_positions_at(index: usize, args: &[Arg]) -> Vec<usize> {
    let Some(&rule) = key_rules().get(index) else {
        return Vec::new();
    };
    let range = |first: i64, last: i64, step: i64| -> Vec<usize> {
        key_range(first, last, step, args.len()).map_or_else(Vec::new, |(first, last)| {
            (first..=last).step_by(step as usize).collect()
        })
    };
    match rule {
        KeyRule::NumKeys(at, dest) => {
            let mut keys = Vec::new();
            if dest {
                keys.push(1);
            }
            let count = args.get(at).and_then(|a| key_count(a)).unwrap_or(0);
            keys.extend((at + 1..=at + count).filter(|i| *i < args.len()));
            keys
        }
        KeyRule::StreamRead => super::streams::read_key_positions(args),
        KeyRule::Migrate => migrate_key_positions(args.len(), |i| &args[i][..]).collect(),
        KeyRule::Range(first, last, step) => range(first, last, step),
        KeyRule::Sort(first, last, step) => {
            // SORT key ... STORE dest: the destination is a key too.
            let mut keys = range(first, last, step);
            keys.extend(super::keys::sort_store_position(args));
            keys
        }
        KeyRule::Geo(first, last, step) => {
            let mut keys = range(first, last, step);
            keys.extend(super::geo::store_position(args));
            keys
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn the_first_key_is_the_first_of_key_positions() {
        let cases: &[&[&str]] = &[
            &["get", "a"],
            &["GET", "a"],
            &["mset", "a", "1", "b", "2"],
            &["evalsha", "abc", "2", "k1", "k2", "arg"],
            &["eval", "return 1", "0", "arg"],
            &["zunionstore", "d", "2", "a", "b"],
            &["sort", "list", "store", "dest"],
            &["ping"],
            &["get"],
            &["evalsha", "abc", "x"],
            &["migrate", "h", "1", "k", "0", "10"],
            &[
                "migrate", "h", "1", "", "0", "10", "AUTH2", "u", "p", "KEYS", "a", "b",
            ],
            &["migrate", "h", "1", "k", "0", "10", "KEYS", "a"],
            &["migrate", "h", "1", "", "0", "10", "KEYS"],
        ];
        for words in cases {
            let name = words[0].to_ascii_lowercase();
            let (index, _) = super::super::lookup_indexed(name.as_bytes()).unwrap();
            let raw: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
            let expected = key_positions(&name, &strata_resp::args_of(&args(words)))
                .first()
                .copied();
            assert_eq!(first_key_at(index, &raw), expected, "{words:?}");
        }
        // XREAD and XREADGROUP name their keys after STREAMS: not looked for.
        let (index, _) = super::super::lookup_indexed(b"xreadgroup").unwrap();
        let raw: Vec<&[u8]> = ["xreadgroup", "group", "g", "c", "streams", "s", ">"]
            .iter()
            .map(|w| w.as_bytes())
            .collect();
        assert_eq!(first_key_at(index, &raw), None);
    }

    #[test]
    fn key_table_is_sorted() {
        assert!(KEY_SPECS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn keys_follow_specs_and_special_cases() {
        assert_eq!(
            key_positions("get", &strata_resp::args_of(&args(&["get", "a"]))),
            vec![1]
        );
        assert_eq!(
            key_positions(
                "mset",
                &strata_resp::args_of(&args(&["mset", "a", "1", "b", "2"]))
            ),
            vec![1, 3]
        );
        assert_eq!(
            key_positions(
                "blpop",
                &strata_resp::args_of(&args(&["blpop", "a", "b", "0"]))
            ),
            vec![1, 2]
        );
        assert_eq!(
            key_positions(
                "zunionstore",
                &strata_resp::args_of(&args(&[
                    "zunionstore",
                    "d",
                    "2",
                    "a",
                    "b",
                    "weights",
                    "1",
                    "2"
                ]))
            ),
            vec![1, 3, 4]
        );
        assert_eq!(
            key_positions(
                "sort",
                &strata_resp::args_of(&args(&["sort", "k", "limit", "0", "1", "store", "d"]))
            ),
            vec![1, 6]
        );
        assert!(key_positions("ping", &strata_resp::args_of(&args(&["ping"]))).is_empty());
    }
}
