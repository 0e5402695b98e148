//! SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, SSUBSCRIBE, SUNSUBSCRIBE, PUBLISH, SPUBLISH, PUBSUB.
//!
//! Each (un)subscription is confirmed by its own frame (`["subscribe", channel, count]`), a push frame in
//! RESP3; the registry and delivery are in [`crate::pubsub`].

use std::collections::BTreeSet;
use strata_resp::Arg;

use bytes::Bytes;
use strata_resp::Frame;

use super::CommandSpec;
use crate::pubsub::Kind;
use crate::{Session, Shared};

const PUBSUB_FLAGS: &[&str] = &["pubsub", "noscript", "loading", "stale"];

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "psubscribe",
        arity: -2,
        flags: PUBSUB_FLAGS,
        no_auth: false,
        run: subscribe,
    },
    CommandSpec {
        name: "publish",
        arity: 3,
        flags: &["pubsub", "loading", "stale", "fast"],
        no_auth: false,
        run: publish,
    },
    CommandSpec {
        name: "pubsub",
        arity: -2,
        flags: &["pubsub", "loading", "stale"],
        no_auth: false,
        run: pubsub,
    },
    CommandSpec {
        name: "punsubscribe",
        arity: -1,
        flags: PUBSUB_FLAGS,
        no_auth: false,
        run: unsubscribe,
    },
    CommandSpec {
        name: "spublish",
        arity: 3,
        flags: &["pubsub", "loading", "stale", "fast"],
        no_auth: false,
        run: publish,
    },
    CommandSpec {
        name: "ssubscribe",
        arity: -2,
        flags: PUBSUB_FLAGS,
        no_auth: false,
        run: subscribe,
    },
    CommandSpec {
        name: "subscribe",
        arity: -2,
        flags: PUBSUB_FLAGS,
        no_auth: false,
        run: subscribe,
    },
    CommandSpec {
        name: "sunsubscribe",
        arity: -1,
        flags: PUBSUB_FLAGS,
        no_auth: false,
        run: unsubscribe,
    },
    CommandSpec {
        name: "unsubscribe",
        arity: -1,
        flags: PUBSUB_FLAGS,
        no_auth: false,
        run: unsubscribe,
    },
];

fn kind_of(name: &[u8]) -> Kind {
    let name = name.to_ascii_lowercase();
    if name.starts_with(b"p") {
        Kind::Pattern
    } else if name.starts_with(b"ss") || name.starts_with(b"sun") {
        Kind::Shard
    } else {
        Kind::Channel
    }
}

fn set_of(s: &mut Session, kind: Kind) -> &mut BTreeSet<Bytes> {
    match kind {
        Kind::Channel => &mut s.channels,
        Kind::Pattern => &mut s.patterns,
        Kind::Shard => &mut s.shard_channels,
    }
}

/// The confirmation frame; counts are of every kind of subscription, as Redis counts them (shard
/// subscriptions are counted on their own).
fn confirm(s: &Session, kind: Kind, what: &str, name: Option<&Bytes>) -> Frame {
    let count = match kind {
        Kind::Shard => s.shard_channels.len(),
        _ => s.channels.len() + s.patterns.len(),
    };
    Frame::Push(vec![
        Frame::bulk(what.to_owned()),
        name.map_or(Frame::Null, |n| Frame::Bulk(n.clone())),
        Frame::Integer(count as i64),
    ])
}

/// Hands a list of confirmations to the connection: all but the last go before the reply.
fn replies(s: &mut Session, mut frames: Vec<Frame>) -> Frame {
    let last = frames.pop().unwrap_or(Frame::Null);
    s.extra_replies.extend(frames);
    last
}

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE.
pub fn subscribe(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if s.in_exec && args[0].eq_ignore_ascii_case(b"ssubscribe") {
        return Frame::error("ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client");
    }
    let kind = kind_of(&args[0]);
    let what = match kind {
        Kind::Channel => "subscribe",
        Kind::Pattern => "psubscribe",
        Kind::Shard => "ssubscribe",
    };
    let mut frames = Vec::with_capacity(args.len() - 1);
    for name in &args[1..] {
        if set_of(s, kind).insert(name.to_bytes()) {
            sh.pubsub.subscribe(kind, &name.to_bytes(), &s.handle);
        }
        frames.push(confirm(s, kind, what, Some(&name.to_bytes())));
    }
    s.publish_state();
    replies(s, frames)
}

/// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: the named ones, or all of that kind.
pub fn unsubscribe(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let kind = kind_of(&args[0]);
    let what = match kind {
        Kind::Channel => "unsubscribe",
        Kind::Pattern => "punsubscribe",
        Kind::Shard => "sunsubscribe",
    };
    let names: Vec<Bytes> = if args.len() > 1 {
        strata_resp::to_owned_args(&args[1..])
    } else {
        set_of(s, kind).iter().cloned().collect()
    };
    let mut frames = Vec::with_capacity(names.len().max(1));
    for name in &names {
        if set_of(s, kind).remove(name) {
            sh.pubsub.unsubscribe(kind, name, s.id);
        }
        frames.push(confirm(s, kind, what, Some(name)));
    }
    if frames.is_empty() {
        frames.push(confirm(s, kind, what, None));
    }
    s.publish_state();
    replies(s, frames)
}

/// PUBLISH, SPUBLISH.
pub fn publish(_s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let shard = args[0].eq_ignore_ascii_case(b"spublish");
    Frame::Integer(
        sh.pubsub
            .publish(&args[1].to_bytes(), &args[2].to_bytes(), shard) as i64,
    )
}

/// PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB / HELP.
pub fn pubsub(_s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    let bulk_list = |v: Vec<Bytes>| Frame::Array(v.into_iter().map(Frame::Bulk).collect());
    match (sub.as_slice(), args.len()) {
        (b"channels", 2 | 3) => bulk_list(
            sh.pubsub
                .channels(Kind::Channel, args.get(2).map(|p| &p[..])),
        ),
        (b"shardchannels", 2 | 3) => {
            bulk_list(sh.pubsub.channels(Kind::Shard, args.get(2).map(|p| &p[..])))
        }
        (b"numsub" | b"shardnumsub", _) => {
            let kind = if sub.starts_with(b"shard") {
                Kind::Shard
            } else {
                Kind::Channel
            };
            let mut out = Vec::with_capacity(args.len() * 2);
            for ch in &args[2..] {
                out.push(Frame::Bulk(ch.to_bytes()));
                out.push(Frame::Integer(sh.pubsub.numsub(kind, ch) as i64));
            }
            Frame::Array(out)
        }
        (b"numpat", 2) => Frame::Integer(sh.pubsub.numpat() as i64),
        (b"help", 2) => Frame::Array(
            [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern> (default: '*').",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s)",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
        ),
        (b"channels" | b"shardchannels" | b"numpat" | b"help", _) => Frame::error(format!(
            "ERR wrong number of arguments for 'pubsub|{}' command",
            String::from_utf8_lossy(&sub)
        )),
        _ => super::unknown_subcommand(&args[1], "pubsub"),
    }
}
