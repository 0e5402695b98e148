//! XINFO STREAM [FULL [COUNT n]], XINFO GROUPS, XINFO CONSUMERS, XINFO HELP (Redis 7.0's replies).

use strata_resp::Arg;
use strata_resp::Frame;

use super::{Id, Stream, entry_frame, int_arg, load, u64_at};
use crate::{Session, Shared};

fn subcommand_syntax(args: &[Arg]) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try XINFO HELP.",
        String::from_utf8_lossy(&args[1][..args[1].len().min(128)])
    ))
}

const HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

fn field(name: &'static str, value: Frame) -> (Frame, Frame) {
    (Frame::bulk(name), value)
}

fn int(v: u64) -> Frame {
    Frame::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

fn opt_int(v: Option<i64>) -> Frame {
    v.map_or(Frame::Null, Frame::Integer)
}

/// XINFO STREAM | GROUPS | CONSUMERS | HELP.
pub fn xinfo(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    // Each subcommand's arity, as Redis 7's command table checks it.
    let arity: i32 = match sub.as_slice() {
        b"consumers" => 4,
        b"groups" => 3,
        b"stream" => -3,
        b"help" => 2,
        _ => return super::super::unknown_subcommand(&args[1], "xinfo"),
    };
    if !super::arity_ok(arity, args.len()) {
        return super::super::wrong_arity(&format!("xinfo|{}", String::from_utf8_lossy(&sub)));
    }
    if sub == b"help" {
        return Frame::Array(HELP.iter().map(|&l| Frame::simple(l)).collect());
    }
    let key = &args[2];
    let st = match load(sh, s.db, key) {
        Ok(Some(st)) => st,
        Ok(None) => return Frame::error("ERR no such key"),
        Err(r) => return r,
    };
    let result = match (sub.as_slice(), args.len()) {
        (b"consumers", 4) => consumers(&st, key, &args[3]),
        (b"groups", 3) => groups(&st),
        (b"stream", _) => stream(&st, args),
        _ => Err(subcommand_syntax(args)),
    };
    result.unwrap_or_else(|r| r)
}

fn consumers(st: &Stream<'_>, key: &[u8], group: &[u8]) -> Result<Frame, Frame> {
    if st.group(group)?.is_none() {
        return Err(Frame::error(format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            String::from_utf8_lossy(group),
            String::from_utf8_lossy(key)
        )));
    }
    let now = st.sh.keyspace.now_ms();
    let tally = st.tally(group)?;
    Ok(Frame::Array(
        st.consumers(group)?
            .into_iter()
            .map(|(name, c)| {
                let pending = tally.of(&name);
                Frame::Map(vec![
                    field("name", Frame::Bulk(name)),
                    field("pending", int(pending)),
                    field("idle", int(now.saturating_sub(c.seen_time))),
                    field(
                        "inactive",
                        Frame::Integer(if c.active_time < 0 {
                            -1
                        } else {
                            (now as i64).saturating_sub(c.active_time)
                        }),
                    ),
                ])
            })
            .collect(),
    ))
}

fn groups(st: &Stream<'_>) -> Result<Frame, Frame> {
    let mut out = Vec::new();
    for (name, g) in st.groups()? {
        let pending = st.tally(&name)?.total;
        out.push((name, g, pending));
    }
    Ok(Frame::Array(
        out.into_iter()
            .map(|(name, g, pending)| {
                Frame::Map(vec![
                    field("name", Frame::Bulk(name)),
                    field("consumers", int(g.consumers)),
                    field("pending", int(pending)),
                    field("last-delivered-id", g.last_id.frame()),
                    field(
                        "entries-read",
                        opt_int((g.entries_read != -1).then_some(g.entries_read)),
                    ),
                    field("lag", opt_int(st.lag(&g))),
                ])
            })
            .collect(),
    ))
}

/// Radix tree keys as Redis would count them: the nodes between the first entry's and the tail.
fn tree_keys(st: &Stream<'_>) -> Result<u64, Frame> {
    if st.m.length == 0 {
        return Ok(0);
    }
    let first_node = st
        .scan(&[super::ENTRY], &[super::ENTRY + 1], false, 1)?
        .first()
        .map_or(st.m.tail_node, |(_, v)| u64_at(v, 0));
    Ok(st.m.tail_node.saturating_sub(first_node) + 1)
}

fn stream(st: &Stream<'_>, args: &[Arg]) -> Result<Frame, Frame> {
    let opts = &args[3..];
    let mut count: i64 = 10;
    let full = !opts.is_empty();
    if full {
        if (opts.len() != 1 && opts.len() != 3) || !opts[0].eq_ignore_ascii_case(b"full") {
            return Err(subcommand_syntax(args));
        }
        if opts.len() == 3 {
            if !opts[1].eq_ignore_ascii_case(b"count") {
                return Err(subcommand_syntax(args));
            }
            count = int_arg(&opts[2], None)?;
            if count < 0 {
                count = 10;
            }
        }
    }
    let m = &st.m;
    let keys = tree_keys(st)?;
    let mut map = vec![
        field("length", int(m.length)),
        field("radix-tree-keys", int(keys)),
        field(
            "radix-tree-nodes",
            int(if keys == 0 { 1 } else { keys * 2 }),
        ),
        field("last-generated-id", m.last_id.frame()),
        field("max-deleted-entry-id", m.max_deleted.frame()),
        field("entries-added", int(m.entries_added)),
        field("recorded-first-entry-id", m.first_id.frame()),
    ];
    if !full {
        let groups = st.groups()?.len();
        map.push(field("groups", int(groups as u64)));
        let edge = |rev: bool| -> Result<Frame, Frame> {
            Ok(st
                .entries(Id::MIN, Id::MAX, rev, 1)?
                .into_iter()
                .next()
                .map_or(Frame::Null, |(id, e)| entry_frame(id, e.fields)))
        };
        map.push(field("first-entry", edge(false)?));
        map.push(field("last-entry", edge(true)?));
        return Ok(Frame::Map(map));
    }
    let limit = usize::try_from(count).unwrap_or(usize::MAX);
    let entries = st.entries(Id::MIN, Id::MAX, false, limit)?;
    map.push(field(
        "entries",
        Frame::Array(
            entries
                .into_iter()
                .map(|(id, e)| entry_frame(id, e.fields))
                .collect(),
        ),
    ));
    let pel_limit = if count == 0 { usize::MAX } else { limit };
    let mut groups = Vec::new();
    for (name, g) in st.groups()? {
        let tally = st.tally(&name)?;
        let mut pending = Vec::new();
        for id in st.pending(&name, None, Id::MIN, Id::MAX, pel_limit)? {
            if let Some(n) = st.nack(&name, id)? {
                pending.push(Frame::Array(vec![
                    id.frame(),
                    Frame::Bulk(n.consumer),
                    int(n.delivery_time),
                    int(n.delivery_count),
                ]));
            }
        }
        let mut consumers = Vec::new();
        for (cname, c) in st.consumers(&name)? {
            let mut cpending = Vec::new();
            for id in st.pending(&name, Some(&cname), Id::MIN, Id::MAX, pel_limit)? {
                if let Some(n) = st.nack(&name, id)? {
                    cpending.push(Frame::Array(vec![
                        id.frame(),
                        int(n.delivery_time),
                        int(n.delivery_count),
                    ]));
                }
            }
            let pel_count = tally.of(&cname);
            consumers.push(Frame::Map(vec![
                field("name", Frame::Bulk(cname)),
                field("seen-time", int(c.seen_time)),
                field("active-time", Frame::Integer(c.active_time)),
                field("pel-count", int(pel_count)),
                field("pending", Frame::Array(cpending)),
            ]));
        }
        groups.push(Frame::Map(vec![
            field("name", Frame::Bulk(name)),
            field("last-delivered-id", g.last_id.frame()),
            field(
                "entries-read",
                opt_int((g.entries_read != -1).then_some(g.entries_read)),
            ),
            field("lag", opt_int(st.lag(&g))),
            field("pel-count", int(tally.total)),
            field("pending", Frame::Array(pending)),
            field("consumers", Frame::Array(consumers)),
        ]));
    }
    map.push(field("groups", Frame::Array(groups)));
    Ok(Frame::Map(map))
}
