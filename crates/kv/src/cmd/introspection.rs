//! COMMAND and its subcommands: COUNT, INFO, DOCS, LIST, GETKEYS, GETKEYSANDFLAGS, HELP.
//!
//! Where each command's keys are lives here, in one table keyed by command name ([`KEY_SPECS`], plus
//! [`NUMKEYS`] and SORT's STORE for the commands whose keys move with their arguments), so the
//! families' tables need no key information. Dispatch uses the same table for keyspace notifications.

use bytes::Bytes;
use strata_resp::Frame;

use super::{CommandSpec, commands, lookup};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "command",
    arity: -1,
    flags: &["loading", "stale"],
    no_auth: false,
    run: command,
}];

fn info(spec: &CommandSpec) -> Frame {
    let (first_key, last_key, step) = key_spec(spec.name);
    let mut flags: Vec<Frame> = spec
        .flags
        .iter()
        .map(|f| Frame::Simple(Bytes::from_static(f.as_bytes())))
        .collect();
    if movable_keys(spec.name) {
        flags.push(Frame::Simple(Bytes::from_static(b"movablekeys")));
    }
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(i64::from(spec.arity)),
        Frame::Set(flags),
        Frame::Integer(first_key),
        Frame::Integer(last_key),
        Frame::Integer(step),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
    ])
}

/// COMMAND GETKEYS / GETKEYSANDFLAGS: the keys of the command in `args[2..]`.
fn getkeys(args: &[Bytes], with_flags: bool) -> Frame {
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
    let keys = key_positions(spec.name, cmd_args);
    if keys.is_empty() {
        return Frame::error("ERR The command has no key arguments");
    }
    let write = spec.flags.contains(&"write");
    Frame::Array(
        keys.into_iter()
            .filter_map(|i| cmd_args.get(i))
            .map(|k| {
                if with_flags {
                    let flags = if write { "RW" } else { "RO" };
                    Frame::Array(vec![
                        Frame::Bulk(k.clone()),
                        Frame::Array(vec![Frame::Simple(Bytes::from_static(flags.as_bytes()))]),
                    ])
                } else {
                    Frame::Bulk(k.clone())
                }
            })
            .collect(),
    )
}

/// COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern].
fn list(args: &[Bytes]) -> Frame {
    let names = commands().iter().map(|s| s.name);
    match args.len() {
        2 => Frame::Array(names.map(Frame::bulk).collect()),
        5 if args[2].eq_ignore_ascii_case(b"filterby") => {
            let what = args[3].to_ascii_lowercase();
            let value = &args[4];
            match what.as_slice() {
                b"pattern" => Frame::Array(
                    names
                        .filter(|n| super::glob_match(value, n.as_bytes(), true))
                        .map(Frame::bulk)
                        .collect(),
                ),
                // strata has no modules, and the ACL categories are not tracked.
                b"module" | b"aclcat" => Frame::Array(Vec::new()),
                _ => Frame::error("ERR syntax error"),
            }
        }
        _ => Frame::error("ERR syntax error"),
    }
}

pub fn command(_s: &mut Session, _sh: &Shared, args: &[Bytes]) -> Frame {
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
                    .map(|name| lookup(name).map_or(Frame::NullArray, info))
                    .collect(),
            )
        }
        b"docs" => {
            let specs: Vec<&CommandSpec> = if args.len() == 2 {
                commands().to_vec()
            } else {
                args[2..].iter().filter_map(|n| lookup(n)).collect()
            };
            Frame::Map(
                specs
                    .into_iter()
                    .map(|spec| {
                        (
                            Frame::bulk(spec.name),
                            Frame::Map(vec![
                                (Frame::bulk("summary"), Frame::bulk("")),
                                (Frame::bulk("since"), Frame::bulk("1.0.0")),
                                (Frame::bulk("group"), Frame::bulk("generic")),
                            ]),
                        )
                    })
                    .collect(),
            )
        }
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
    name == "sort" || NUMKEYS.iter().any(|(n, ..)| *n == name)
}

/// Positions in `args` (0 is the command name) of the keys of command `name`, in order.
pub fn key_positions(name: &str, args: &[Bytes]) -> Vec<usize> {
    if let Some(&(_, at, dest)) = NUMKEYS.iter().find(|(n, ..)| *n == name) {
        let mut keys = Vec::new();
        if dest {
            keys.push(1);
        }
        let count = args
            .get(at)
            .and_then(|a| std::str::from_utf8(a).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        keys.extend((at + 1..=at + count).filter(|i| *i < args.len()));
        return keys;
    }
    let (first, last, step) = key_spec(name);
    if first <= 0 || step <= 0 {
        return Vec::new();
    }
    let n = args.len() as i64;
    let last = if last < 0 { n + last } else { last.min(n - 1) };
    let mut keys: Vec<usize> = (first..=last)
        .step_by(step as usize)
        .map(|i| i as usize)
        .collect();
    if name == "sort" {
        // SORT key ... STORE dest: the destination is a key too.
        keys.extend(super::keys::sort_store_position(args));
    }
    keys
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
    fn key_table_is_sorted() {
        assert!(KEY_SPECS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn keys_follow_specs_and_special_cases() {
        assert_eq!(key_positions("get", &args(&["get", "a"])), vec![1]);
        assert_eq!(
            key_positions("mset", &args(&["mset", "a", "1", "b", "2"])),
            vec![1, 3]
        );
        assert_eq!(
            key_positions("blpop", &args(&["blpop", "a", "b", "0"])),
            vec![1, 2]
        );
        assert_eq!(
            key_positions(
                "zunionstore",
                &args(&["zunionstore", "d", "2", "a", "b", "weights", "1", "2"])
            ),
            vec![1, 3, 4]
        );
        assert_eq!(
            key_positions(
                "sort",
                &args(&["sort", "k", "limit", "0", "1", "store", "d"])
            ),
            vec![1, 6]
        );
        assert!(key_positions("ping", &args(&["ping"])).is_empty());
    }
}
