//! Keyspace notifications (`notify-keyspace-events`): after a write command, a message on
//! `__keyspace@<db>__:<key>` (payload: the event) and/or `__keyevent@<db>__:<event>` (payload: the key)
//! for each key it changed, with Redis's event names.
//!
//! The families' command code knows nothing of this: dispatch asks [`Notifier::begin`] before a write
//! command runs (only when notifications are on), which notes whether each of the command's keys existed
//! and watches it through the keyspace's write counters; [`Notifier::finish`] then names the events from
//! the command, its reply and which keys were written, and publishes them.
//!
//! Stream commands name their events themselves, as they happen ([`stream_event`]: XADD's `xadd` then
//! `xtrim`, `xgroup-createconsumer` from XREADGROUP, ...); they are published after the command's `new`.
//!
//! `expired` is published by lazy expiry in dispatch and by the active cycle, `evicted` by eviction
//! (`evict.rs`), `keymiss` ([`key_misses`]) before a read command that looks up a missing key. Not
//! emitted: module events.

use std::sync::atomic::{AtomicU32, Ordering};
use strata_resp::Arg;

use bytes::Bytes;
use strata_resp::Frame;

use crate::Shared;

/// `K`: publish on `__keyspace@<db>__:<key>`.
pub const KEYSPACE: u32 = 1;
/// `E`: publish on `__keyevent@<db>__:<event>`.
pub const KEYEVENT: u32 = 1 << 1;
/// `g`: generic commands (DEL, EXPIRE, RENAME, ...).
pub const GENERIC: u32 = 1 << 2;
/// `$`: string commands.
pub const STRING: u32 = 1 << 3;
/// `l`: list commands.
pub const LIST: u32 = 1 << 4;
/// `s`: set commands.
pub const SET: u32 = 1 << 5;
/// `h`: hash commands.
pub const HASH: u32 = 1 << 6;
/// `z`: sorted set commands.
pub const ZSET: u32 = 1 << 7;
/// `x`: expired keys.
pub const EXPIRED: u32 = 1 << 8;
/// `e`: evicted keys.
pub const EVICTED: u32 = 1 << 9;
/// `t`: stream commands.
pub const STREAM: u32 = 1 << 10;
/// `m`: key misses.
pub const KEY_MISS: u32 = 1 << 11;
/// `d`: module events.
pub const MODULE: u32 = 1 << 12;
/// `n`: new keys.
pub const NEW: u32 = 1 << 13;
/// `A`: `g$lshzxetd`.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

const CLASSES: &[(char, u32)] = &[
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('d', MODULE),
];

/// Parses a `notify-keyspace-events` value; `None` for an unknown character.
pub fn parse(value: &str) -> Option<u32> {
    let mut flags = 0;
    for c in value.chars() {
        flags |= match c {
            'A' => ALL,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            'm' => KEY_MISS,
            'n' => NEW,
            _ => CLASSES.iter().find(|(ch, _)| *ch == c)?.1,
        };
    }
    Some(flags)
}

/// A flag set as `CONFIG GET notify-keyspace-events` shows it (Redis's order: `A` or the classes, then
/// `K`, `E`, `m`, `n`).
pub fn render(flags: u32) -> String {
    let mut s = String::new();
    if flags & ALL == ALL {
        s.push('A');
    } else {
        s.extend(
            CLASSES
                .iter()
                .filter(|(_, f)| flags & f != 0)
                .map(|(c, _)| *c),
        );
    }
    for (c, f) in [
        ('K', KEYSPACE),
        ('E', KEYEVENT),
        ('m', KEY_MISS),
        ('n', NEW),
    ] {
        if flags & f != 0 {
            s.push(c);
        }
    }
    s
}

/// The configured classes.
#[derive(Debug, Default)]
pub struct Notifier {
    flags: AtomicU32,
}

/// What [`Notifier::begin`] noted about one key of a command.
#[derive(Debug)]
pub struct KeyState {
    key: Bytes,
    existed: bool,
    writes: u64,
}

/// The state of one write command's keys before it ran.
#[derive(Debug)]
pub struct Pending {
    db: usize,
    keys: Vec<KeyState>,
}

impl Notifier {
    /// The configured flags.
    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Sets the flags.
    pub fn set_flags(&self, flags: u32) {
        self.flags.store(flags, Ordering::Relaxed);
    }

    /// Whether any event would be published (a class and a channel kind are both on).
    pub fn enabled(&self) -> bool {
        let f = self.flags();
        f & (KEYSPACE | KEYEVENT) != 0 && f & (ALL | NEW) != 0
    }

    /// Before a write command runs: notes its keys' existence and write counters.
    pub fn begin(sh: &Shared, db: usize, name: &str, args: &[Arg]) -> Pending {
        STREAM_EVENTS.with(|e| e.borrow_mut().clear());
        let keys = crate::cmd::key_positions(name, args)
            .into_iter()
            .filter_map(|i| args.get(i))
            .map(|key| KeyState {
                key: key.to_bytes(),
                existed: exists(sh, db, key),
                writes: sh.keyspace.watch(db, &key.to_bytes()),
            })
            .collect();
        Pending { db, keys }
    }

    /// After the command ran: publishes the events for the keys it wrote.
    pub fn finish(sh: &Shared, pending: Pending, name: &str, args: &[Arg], reply: &Frame) {
        let failed = matches!(reply, Frame::Error(_) | Frame::Null | Frame::NullArray)
            || (COUNTING.contains(&name) && matches!(reply, Frame::Integer(0)));
        let flags = sh.notify.flags();
        for (i, k) in pending.keys.iter().enumerate() {
            let written = sh.keyspace.watch_writes(pending.db, &k.key) != k.writes;
            sh.keyspace.unwatch(pending.db, &k.key);
            if failed || !written {
                continue;
            }
            let exists_now = exists(sh, pending.db, &k.key);
            let mut events: Vec<(u32, &str)> = Vec::new();
            if !k.existed && exists_now {
                events.push((NEW, "new"));
            }
            let event = event_for(name, args, i, pending.keys.len());
            match event {
                Some((class, ev)) if class == GENERIC && ev == "expire" && !exists_now => {
                    events.push((GENERIC, "del"));
                }
                Some((_, ev)) if ev.ends_with("store") && !exists_now => {
                    events.extend(k.existed.then_some((GENERIC, "del")));
                }
                Some(e) => {
                    events.push(e);
                    let deleting =
                        e.1 == "del" || e.1.starts_with("rename_from") || e.1 == "move_from";
                    if k.existed && !exists_now && !deleting {
                        events.push((GENERIC, "del"));
                    }
                    if ev_sets_ttl(name, args) && exists_now {
                        events.push((GENERIC, "expire"));
                    }
                }
                None => {}
            }
            for (class, ev) in events {
                if flags & class != 0 {
                    publish(sh, flags, pending.db, &k.key, ev);
                }
            }
        }
        let stream_events = STREAM_EVENTS.with(|e| std::mem::take(&mut *e.borrow_mut()));
        if flags & STREAM != 0 {
            for (key, ev) in stream_events {
                publish(sh, flags, pending.db, &key, ev);
            }
        }
    }
}

thread_local! {
    /// Events stream commands named while running, published by [`Notifier::finish`].
    static STREAM_EVENTS: std::cell::RefCell<Vec<(Bytes, &'static str)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A stream command did `event` to `key` (`xadd`, `xtrim`, `xgroup-create`, ...): published after the
/// command when the `t` class is on. Commands run on one thread from [`Notifier::begin`] to
/// [`Notifier::finish`], so the events are kept per thread.
pub fn stream_event(sh: &Shared, key: &[u8], event: &'static str) {
    if sh.notify.enabled() && sh.notify.flags() & STREAM != 0 {
        STREAM_EVENTS.with(|e| e.borrow_mut().push((Bytes::copy_from_slice(key), event)));
    }
}

/// Commands whose integer reply counts what they changed: 0 means nothing happened.
const COUNTING: &[&str] = &[
    "del",
    "unlink",
    "sadd",
    "srem",
    "zrem",
    "hdel",
    "lrem",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "zremrangebyscore",
    "zremrangebyrank",
    "zremrangebylex",
    "smove",
    "renamenx",
    "move",
    "copy",
    "hsetnx",
    "msetnx",
    "setnx",
];

fn exists(sh: &Shared, db: usize, key: &[u8]) -> bool {
    matches!(sh.keyspace.get(db, key), Ok(Some(_)))
}

/// Whether a SET-like command also gives the key a TTL (Redis then emits `expire` after `set`).
fn ev_sets_ttl(name: &str, args: &[Arg]) -> bool {
    match name {
        "setex" | "psetex" => true,
        "set" => args.iter().skip(3).any(|a| {
            let a = a.to_ascii_lowercase();
            matches!(a.as_slice(), b"ex" | b"px" | b"exat" | b"pxat")
        }),
        _ => false,
    }
}

fn side(arg: Option<&Arg>) -> bool {
    arg.is_some_and(|a| a.eq_ignore_ascii_case(b"left"))
}

/// The event of command `name` for its `i`-th key (of `n`).
fn event_for(name: &str, args: &[Arg], i: usize, n: usize) -> Option<(u32, &'static str)> {
    let last = i + 1 == n;
    Some(match name {
        "set" | "setnx" | "setex" | "psetex" | "mset" | "msetnx" | "getset" => (STRING, "set"),
        "append" => (STRING, "append"),
        "setrange" => (STRING, "setrange"),
        "incr" | "decr" | "incrby" | "decrby" => (STRING, "incrby"),
        "incrbyfloat" => (STRING, "incrbyfloat"),
        "pfadd" | "pfmerge" => (STRING, "pfadd"),
        "getdel" => (GENERIC, "del"),
        "getex" => {
            if args
                .iter()
                .skip(2)
                .any(|a| a.eq_ignore_ascii_case(b"persist"))
            {
                (GENERIC, "persist")
            } else {
                (GENERIC, "expire")
            }
        }
        "setbit" => (STRING, "setbit"),
        "bitop" => (STRING, "set"),
        "bitfield" => (STRING, "setbit"),
        "lpush" | "lpushx" => (LIST, "lpush"),
        "rpush" | "rpushx" => (LIST, "rpush"),
        "lpop" | "blpop" => (LIST, "lpop"),
        "rpop" | "brpop" => (LIST, "rpop"),
        "lmpop" | "blmpop" => {
            let numkeys_at = if name == "blmpop" { 2 } else { 1 };
            let count = args
                .get(numkeys_at)
                .and_then(|a| std::str::from_utf8(a).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            if side(args.get(numkeys_at + 1 + count)) {
                (LIST, "lpop")
            } else {
                (LIST, "rpop")
            }
        }
        "linsert" => (LIST, "linsert"),
        "lset" => (LIST, "lset"),
        "lrem" => (LIST, "lrem"),
        "ltrim" => (LIST, "ltrim"),
        "rpoplpush" | "brpoplpush" => {
            if last && n > 1 {
                (LIST, "lpush")
            } else {
                (LIST, "rpop")
            }
        }
        "lmove" | "blmove" => {
            if last && n > 1 {
                if side(args.get(4)) {
                    (LIST, "lpush")
                } else {
                    (LIST, "rpush")
                }
            } else if side(args.get(3)) {
                (LIST, "lpop")
            } else {
                (LIST, "rpop")
            }
        }
        "sadd" => (SET, "sadd"),
        "srem" => (SET, "srem"),
        "spop" => (SET, "spop"),
        "smove" => {
            if i == 0 {
                (SET, "srem")
            } else {
                (SET, "sadd")
            }
        }
        "sinterstore" | "sunionstore" | "sdiffstore" if i == 0 => match name {
            "sinterstore" => (SET, "sinterstore"),
            "sunionstore" => (SET, "sunionstore"),
            _ => (SET, "sdiffstore"),
        },
        "hset" | "hmset" | "hsetnx" => (HASH, "hset"),
        "hdel" => (HASH, "hdel"),
        "hincrby" => (HASH, "hincrby"),
        "hincrbyfloat" => (HASH, "hincrbyfloat"),
        "zadd" | "geoadd" => (ZSET, "zadd"),
        "georadius" | "georadiusbymember" if i > 0 => (ZSET, "georadiusstore"),
        "geosearchstore" if i == 0 => (ZSET, "geosearchstore"),
        "zincrby" => (ZSET, "zincr"),
        "zrem" => (ZSET, "zrem"),
        "zremrangebyscore" => (ZSET, "zremrangebyscore"),
        "zremrangebyrank" => (ZSET, "zremrangebyrank"),
        "zremrangebylex" => (ZSET, "zremrangebylex"),
        "zpopmin" | "bzpopmin" => (ZSET, "zpopmin"),
        "zpopmax" | "bzpopmax" => (ZSET, "zpopmax"),
        "zmpop" | "bzmpop" => {
            let numkeys_at = if name == "bzmpop" { 2 } else { 1 };
            let count = args
                .get(numkeys_at)
                .and_then(|a| std::str::from_utf8(a).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            if args
                .get(numkeys_at + 1 + count)
                .is_some_and(|a| a.eq_ignore_ascii_case(b"min"))
            {
                (ZSET, "zpopmin")
            } else {
                (ZSET, "zpopmax")
            }
        }
        "zunionstore" | "zinterstore" | "zdiffstore" | "zrangestore" if i == 0 => match name {
            "zunionstore" => (ZSET, "zunionstore"),
            "zinterstore" => (ZSET, "zinterstore"),
            "zdiffstore" => (ZSET, "zdiffstore"),
            _ => (ZSET, "zrangestore"),
        },
        "del" | "unlink" => (GENERIC, "del"),
        "expire" | "pexpire" | "expireat" | "pexpireat" => (GENERIC, "expire"),
        "persist" => (GENERIC, "persist"),
        "rename" | "renamenx" => {
            if i == 0 {
                (GENERIC, "rename_from")
            } else {
                (GENERIC, "rename_to")
            }
        }
        "move" => (GENERIC, "move_from"),
        "copy" if i == 1 => (GENERIC, "copy_to"),
        "restore" => (GENERIC, "restore"),
        "sort" if i > 0 => (GENERIC, "sortstore"),
        _ => return None,
    })
}

/// Read commands whose lookups do not announce misses, as in Redis (they only ask whether keys exist or
/// describe them).
const NO_KEYMISS: &[&str] = &["exists", "memory", "object"];

/// Before a read-only command runs with class `m` on: publishes `keymiss` for each of its keys that does
/// not exist, as Redis's read lookups do.
pub fn key_misses(sh: &Shared, db: usize, name: &str, args: &[Arg]) {
    let flags = sh.notify.flags();
    if flags & KEY_MISS == 0 || flags & (KEYSPACE | KEYEVENT) == 0 || NO_KEYMISS.contains(&name) {
        return;
    }
    for i in crate::cmd::key_positions(name, args) {
        if let Some(key) = args.get(i)
            && !exists(sh, db, key)
        {
            publish(sh, flags, db, key, "keymiss");
        }
    }
}

/// Publishes one event for one key on the channels the flags select.
pub fn publish(sh: &Shared, flags: u32, db: usize, key: &[u8], event: &str) {
    if flags & KEYSPACE != 0 {
        let mut channel = format!("__keyspace@{db}__:").into_bytes();
        channel.extend_from_slice(key);
        sh.pubsub.publish(
            &Bytes::from(channel),
            &Bytes::copy_from_slice(event.as_bytes()),
            false,
        );
    }
    if flags & KEYEVENT != 0 {
        sh.pubsub.publish(
            &Bytes::from(format!("__keyevent@{db}__:{event}")),
            &Bytes::copy_from_slice(key),
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_render_in_redis_order() {
        assert_eq!(parse("KA").map(render).as_deref(), Some("AK"));
        assert_eq!(parse("gKE").map(render).as_deref(), Some("gKE"));
        assert_eq!(parse("$lshzxeKE").map(render).as_deref(), Some("$lshzxeKE"));
        assert_eq!(parse("Q"), None);
        assert_eq!(parse("").map(render).as_deref(), Some(""));
    }
}
