//! Consumer groups: XGROUP, XREADGROUP's reading (`read_group`), XACK, XPENDING, XCLAIM, XAUTOCLAIM.
//!
//! A group's pending entries list is kept twice, as Redis keeps it: `p` records by ID (the group's
//! list, holding owner, delivery time and count) and `q` records by consumer and ID (each consumer's
//! list), both changed in the batch that changes the group. Counts live in the group and consumer
//! records so XPENDING's summary and XINFO read no lists.

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::Frame;

use super::{
    Consumer, Group, Id, Nack, Stream, consumer_prefix, cpending_prefix, entry_frame, group_key,
    int_arg, load, notify, parse_bound, parse_id, pending_prefix, prefix_end,
};
use crate::{Session, Shared};

fn nogroup(key: &[u8], group: &[u8]) -> Frame {
    Frame::error(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        String::from_utf8_lossy(key),
        String::from_utf8_lossy(group)
    ))
}

fn subcommand_syntax(args: &[Arg]) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        String::from_utf8_lossy(&args[1][..args[1].len().min(128)]),
        String::from_utf8_lossy(&args[0]).to_ascii_uppercase()
    ))
}

/// The consumer `name` of `group`, created if missing (with its event); its seen time becomes now, and
/// its active time too when it is `active` (it is getting entries).
fn touch_consumer(
    st: &mut Stream<'_>,
    group: &[u8],
    g: &mut Group,
    name: &[u8],
    now: u64,
    active: bool,
) -> Result<(), Frame> {
    let mut c = match st.consumer(group, name)? {
        Some(mut c) => {
            c.seen_time = now;
            c
        }
        None => {
            g.consumers += 1;
            notify(st.sh, st.key, "xgroup-createconsumer");
            Consumer {
                seen_time: now,
                active_time: -1,
                pel_count: 0,
            }
        }
    };
    if active {
        c.active_time = now as i64;
    }
    st.put_consumer(group, name, c);
    Ok(())
}

/// Serves one stream of an XREADGROUP from its group `g` (as read by the caller): `after` is `None` for `>`
/// (new entries), else the history of the consumer after that ID. `Ok(None)` when there is nothing to serve
/// now.
pub(super) fn read_group(
    st: &mut Stream<'_>,
    group: &[u8],
    mut g: Group,
    consumer: &[u8],
    after: Option<Id>,
    count: usize,
    noack: bool,
) -> Result<Option<Frame>, Frame> {
    // New entries are read before anything changes: none past the group's last ID means nothing to
    // serve (Redis compares with the last entry's ID), and the consumer is then not created.
    let fresh = match after {
        Some(_) => None,
        None => {
            let next = match g.last_id.incr() {
                Some(next) if st.m.length > 0 && st.m.last_id > g.last_id => next,
                _ => return Ok(None),
            };
            let entries = st.entries_for_group(group, next, count)?;
            if entries.is_empty() {
                return Ok(None);
            }
            Some(entries)
        }
    };
    let from = after.unwrap_or(g.last_id);
    let now = st.sh.keyspace.now_ms();
    // As in Redis, new entries that enter the pending list make the consumer active; history and NOACK
    // reads do not.
    touch_consumer(st, group, &mut g, consumer, now, after.is_none() && !noack)?;
    let Some(start) = from.incr() else {
        st.put_group(group, &g);
        return Ok(Some(Frame::Array(Vec::new())));
    };
    let limit = if count == 0 { usize::MAX } else { count };
    let mut out = Vec::new();
    if after.is_some() {
        // History: the consumer's own pending entries.
        for id in st.pending(group, Some(consumer), start, Id::MAX, limit)? {
            match st.entry(id)? {
                Some(e) => {
                    if let Some(mut n) = st.nack(group, id)? {
                        n.delivery_time = now;
                        n.delivery_count += 1;
                        st.put(super::pending_key(group, id), n.encode());
                    }
                    out.push(entry_frame(id, e.fields));
                }
                None => out.push(Frame::Array(vec![id.frame(), Frame::NullArray])),
            }
        }
    } else {
        for (id, e) in fresh.unwrap_or_default() {
            if id > g.last_id {
                if g.entries_read != -1 && !st.range_has_tombstones(Some(id)) {
                    g.entries_read += 1;
                } else if st.m.entries_added > 0 {
                    g.entries_read = st.estimate_distance(id);
                }
                g.last_id = id;
            }
            if !noack {
                // Only an ID at or below the highest ever made pending can have a pending entry.
                let known = if id <= g.pel_max {
                    st.nack(group, id)?
                } else {
                    None
                };
                g.pel_max = g.pel_max.max(id);
                match known {
                    Some(mut n) => {
                        let old = n.consumer.clone();
                        n.delivery_time = now;
                        n.delivery_count = 1;
                        st.move_nack(group, id, Some(&old), consumer, &mut n)?;
                    }
                    None => {
                        let mut n = Nack {
                            delivery_time: now,
                            delivery_count: 1,
                            consumer: Bytes::copy_from_slice(consumer),
                        };
                        st.move_nack(group, id, None, consumer, &mut n)?;
                    }
                }
            }
            out.push(entry_frame(id, e.fields));
        }
    }
    st.put_group(group, &g);
    Ok(Some(Frame::Array(out)))
}

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

/// XGROUP CREATE | SETID | DESTROY | CREATECONSUMER | DELCONSUMER | HELP.
pub fn xgroup(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    let sub = sub.as_slice();
    // Each subcommand's arity, as Redis 7's command table checks it.
    let arity: i32 = match sub {
        b"create" | b"setid" => -5,
        b"createconsumer" | b"delconsumer" => 5,
        b"destroy" => 4,
        b"help" => 2,
        _ => return super::super::unknown_subcommand(&args[1], "xgroup"),
    };
    if !super::arity_ok(arity, args.len()) {
        return super::super::wrong_arity(&format!("xgroup|{}", String::from_utf8_lossy(sub)));
    }
    if sub == b"help" {
        return Frame::Array(XGROUP_HELP.iter().map(|&l| Frame::simple(l)).collect());
    }
    let mut mkstream = false;
    let mut entries_read: i64 = -1;
    let mut i = 5;
    while i < args.len() {
        if sub == b"create" && args[i].eq_ignore_ascii_case(b"mkstream") {
            mkstream = true;
            i += 1;
        } else if (sub == b"create" || sub == b"setid")
            && args[i].eq_ignore_ascii_case(b"entriesread")
            && i + 1 < args.len()
        {
            entries_read = match int_arg(&args[i + 1], None) {
                Ok(n) if n < 0 && n != -1 => {
                    return Frame::error("ERR value for ENTRIESREAD must be positive or -1");
                }
                Ok(n) => n,
                Err(r) => return r,
            };
            i += 2;
        } else {
            return subcommand_syntax(args);
        }
    }
    let key = &args[2];
    let group = &args[3];
    let _guard = sh.keyspace.lock(s.db, key);
    let st = match load(sh, s.db, key) {
        Ok(st) => st,
        Err(r) => return r,
    };
    let g = match &st {
        Some(st) => match st.group(group) {
            Ok(g) => g,
            Err(r) => return r,
        },
        None => None,
    };
    if !mkstream {
        if st.is_none() {
            return Frame::error(
                "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may \
                 want to use the MKSTREAM option to create an empty stream automatically.",
            );
        }
        if g.is_none() && matches!(sub, b"setid" | b"createconsumer" | b"delconsumer") {
            return Frame::error(format!(
                "NOGROUP No such consumer group '{}' for key name '{}'",
                String::from_utf8_lossy(group),
                String::from_utf8_lossy(key)
            ));
        }
    }
    let n = args.len();
    match sub {
        b"create" if (5..=8).contains(&n) => {
            let id = if &args[4][..] == b"$" {
                st.as_ref().map_or(Id::MIN, |st| st.m.last_id)
            } else {
                match parse_id(&args[4], 0, true) {
                    Ok(id) => id,
                    Err(r) => return r,
                }
            };
            if g.is_some() {
                return Frame::error("BUSYGROUP Consumer Group name already exists");
            }
            let mut st = st.unwrap_or_else(|| super::create(sh, s.db, key));
            let version = st.m.version;
            st.put_group(
                group,
                &Group {
                    last_id: id,
                    entries_read,
                    pel_count: 0,
                    consumers: 0,
                    pel_max: Id::MIN,
                },
            );
            if let Err(r) = st.commit() {
                return r;
            }
            // A new group has nothing pending: its counts are known from the start, which also lets
            // XACK trust the remembered owners of its entries to be all of them (`pending_owners.rs`).
            sh.keyspace
                .pel_counts
                .insert(version, group, super::Tally::default());
            notify(sh, key, "xgroup-create");
            Frame::ok()
        }
        b"setid" if n == 5 || n == 7 => {
            let (Some(mut st), Some(mut g)) = (st, g) else {
                return subcommand_syntax(args);
            };
            let id = if &args[4][..] == b"$" {
                st.m.last_id
            } else {
                match parse_id(&args[4], 0, false) {
                    Ok(id) => id,
                    Err(r) => return r,
                }
            };
            g.last_id = id;
            g.entries_read = entries_read;
            st.put_group(group, &g);
            if let Err(r) = st.commit() {
                return r;
            }
            notify(sh, key, "xgroup-setid");
            Frame::ok()
        }
        b"destroy" if n == 4 => {
            let (Some(mut st), Some(_)) = (st, g) else {
                return Frame::Integer(0);
            };
            st.del(group_key(group));
            for prefix in [
                consumer_prefix(group),
                pending_prefix(group),
                cpending_prefix(group, None),
            ] {
                let end = prefix_end(&prefix);
                st.write.ranges.push((prefix, end));
            }
            let version = st.m.version;
            if let Err(r) = st.commit() {
                return r;
            }
            sh.keyspace.pel_counts.forget(version, group);
            notify(sh, key, "xgroup-destroy");
            Frame::Integer(1)
        }
        b"createconsumer" if n == 5 => {
            let (Some(mut st), Some(mut g)) = (st, g) else {
                return subcommand_syntax(args);
            };
            match st.consumer(group, &args[4]) {
                Ok(Some(_)) => return Frame::Integer(0),
                Ok(None) => {}
                Err(r) => return r,
            }
            let now = sh.keyspace.now_ms();
            if let Err(r) = touch_consumer(&mut st, group, &mut g, &args[4], now, false) {
                return r;
            }
            st.put_group(group, &g);
            match st.commit() {
                Ok(()) => Frame::Integer(1),
                Err(r) => r,
            }
        }
        b"delconsumer" if n == 5 => {
            let (Some(mut st), Some(mut g)) = (st, g) else {
                return subcommand_syntax(args);
            };
            let name = &args[4];
            match st.consumer(group, name) {
                Ok(Some(_)) => {}
                Ok(None) => return Frame::Integer(0),
                Err(r) => return r,
            }
            let ids = match st.pending(group, Some(name), Id::MIN, Id::MAX, usize::MAX) {
                Ok(ids) => ids,
                Err(r) => return r,
            };
            for id in &ids {
                st.del(super::pending_key(group, *id));
                st.del(super::cpending_key(group, name, *id));
            }
            let n = ids.len() as i64;
            st.count_pending(group, name, -n, -n);
            g.consumers = g.consumers.saturating_sub(1);
            st.del(super::consumer_key(group, name));
            st.put_group(group, &g);
            if let Err(r) = st.commit() {
                return r;
            }
            notify(sh, key, "xgroup-delconsumer");
            Frame::Integer(ids.len() as i64)
        }
        _ => subcommand_syntax(args),
    }
}

/// XACK key group id [id ...]
pub fn xack(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (key, group) = (&args[1], &args[2]);
    let _guard = sh.keyspace.lock(s.db, key);
    let mut st = match load(sh, s.db, key) {
        Ok(Some(st)) => st,
        Ok(None) => return Frame::Integer(0),
        Err(r) => return r,
    };
    match st.group(group) {
        Ok(Some(_)) => {}
        Ok(None) => return Frame::Integer(0),
        Err(r) => return r,
    }
    let mut ids = Vec::with_capacity(args.len() - 3);
    for a in &args[3..] {
        match parse_id(a, 0, true) {
            Ok(id) => ids.push(id),
            Err(r) => return r,
        }
    }
    let mut acked = 0;
    for id in ids {
        let owner = match st.pending_owner(group, id) {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(r) => return r,
        };
        st.drop_nack(group, id, &owner);
        acked += 1;
    }
    if acked > 0 {
        // The group's record does not change: its counts are kept in memory (`pel_counts.rs`).
        if let Err(r) = st.commit() {
            return r;
        }
        sh.keyspace.add_dirty(acked - 1);
    }
    Frame::Integer(acked as i64)
}

/// XPENDING key group [[IDLE min-idle] start end count [consumer]]
pub fn xpending(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let n = args.len();
    if n != 3 && !(6..=9).contains(&n) {
        return Frame::error("ERR syntax error");
    }
    let (key, group) = (&args[1], &args[2]);
    let mut range = None;
    let mut min_idle = 0i64;
    let mut consumer: Option<&Arg> = None;
    if n >= 6 {
        let mut at = 3;
        if args[3].eq_ignore_ascii_case(b"idle") {
            min_idle = match int_arg(&args[4], None) {
                Ok(v) => v,
                Err(r) => return r,
            };
            if n < 8 {
                return Frame::error("ERR syntax error");
            }
            at += 2;
        }
        let count = match args.get(at + 2).map(|a| int_arg(a, None)) {
            Some(Ok(c)) => c.max(0) as usize,
            Some(Err(r)) => return r,
            None => return Frame::error("ERR syntax error"),
        };
        let (start, end) = match super::parse_range(&args[at], &args[at + 1]) {
            Ok(r) => r,
            Err(r) => return r,
        };
        consumer = args.get(at + 3);
        if at + 4 < n {
            return Frame::error("ERR syntax error");
        }
        range = Some((start, end, count));
    }
    let st = match load(sh, s.db, key) {
        Ok(Some(st)) => st,
        Ok(None) => return nogroup(key, group),
        Err(r) => return r,
    };
    match st.group(group) {
        Ok(Some(_)) => {}
        Ok(None) => return nogroup(key, group),
        Err(r) => return r,
    }
    let Some((start, end, count)) = range else {
        // The summary.
        let tally = match st.tally(group) {
            Ok(t) => t,
            Err(r) => return r,
        };
        if tally.total == 0 {
            return Frame::Array(vec![
                Frame::Integer(0),
                Frame::Null,
                Frame::Null,
                Frame::NullArray,
            ]);
        }
        let prefix = pending_prefix(group);
        let edge = |rev: bool| -> Result<Id, Frame> {
            Ok(st
                .scan(&prefix, &prefix_end(&prefix), rev, 1)?
                .first()
                .and_then(|(k, _)| Id::from_bytes(&k[prefix.len()..]))
                .unwrap_or_default())
        };
        let (first, last) = match (edge(false), edge(true)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let consumers = match st.consumers(group) {
            Ok(c) => c,
            Err(r) => return r,
        };
        return Frame::Array(vec![
            Frame::Integer(tally.total as i64),
            first.frame(),
            last.frame(),
            Frame::Array(
                consumers
                    .into_iter()
                    .filter_map(|(name, _)| {
                        let n = tally.of(&name);
                        (n > 0).then(|| {
                            Frame::Array(vec![
                                Frame::Bulk(name),
                                Frame::Bulk(Bytes::from(n.to_string())),
                            ])
                        })
                    })
                    .collect(),
            ),
        ]);
    };
    if let Some(c) = consumer {
        match st.consumer(group, c) {
            Ok(Some(_)) => {}
            Ok(None) => return Frame::Array(Vec::new()),
            Err(r) => return r,
        }
    }
    if count == 0 {
        return Frame::Array(Vec::new());
    }
    let now = sh.keyspace.now_ms() as i64;
    // With IDLE, entries are filtered after reading: read in chunks until `count` are found.
    let mut out = Vec::new();
    let mut from = start;
    loop {
        let chunk = if min_idle > 0 { 1024 } else { count };
        let ids = match st.pending(group, consumer.map(|c| &c[..]), from, end, chunk) {
            Ok(ids) => ids,
            Err(r) => return r,
        };
        let done = ids.len() < chunk;
        for id in &ids {
            let nack = match st.nack(group, *id) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(r) => return r,
            };
            let idle = now - nack.delivery_time as i64;
            if min_idle > 0 && idle < min_idle {
                continue;
            }
            out.push(Frame::Array(vec![
                id.frame(),
                Frame::Bulk(nack.consumer.clone()),
                Frame::Integer(idle.max(0)),
                Frame::Integer(nack.delivery_count as i64),
            ]));
            if out.len() == count {
                return Frame::Array(out);
            }
        }
        match ids.last().and_then(|l| l.incr()) {
            Some(next) if !done => from = next,
            _ => break,
        }
    }
    Frame::Array(out)
}

/// XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME ms] [RETRYCOUNT n] [FORCE]
/// [JUSTID] [LASTID id]
pub fn xclaim(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (key, group, name) = (&args[1], &args[2], &args[3]);
    let _guard = sh.keyspace.lock(s.db, key);
    let mut st = match load(sh, s.db, key) {
        Ok(Some(st)) => st,
        Ok(None) => return nogroup(key, group),
        Err(r) => return r,
    };
    let mut g = match st.group(group) {
        Ok(Some(g)) => g,
        Ok(None) => return nogroup(key, group),
        Err(r) => return r,
    };
    let min_idle = match int_arg(&args[4], Some("Invalid min-idle-time argument for XCLAIM")) {
        Ok(v) => v.max(0),
        Err(r) => return r,
    };
    let mut ids = Vec::new();
    let mut j = 5;
    while j < args.len() {
        match parse_id(&args[j], 0, true) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    let now = sh.keyspace.now_ms() as i64;
    let (mut force, mut justid) = (false, false);
    let mut delivery_time: i64 = -1;
    let mut retry_count: i64 = -1;
    let mut last_id = Id::MIN;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = &args[j];
        if opt.eq_ignore_ascii_case(b"force") {
            force = true;
        } else if opt.eq_ignore_ascii_case(b"justid") {
            justid = true;
        } else if opt.eq_ignore_ascii_case(b"idle") && more > 0 {
            j += 1;
            match int_arg(&args[j], Some("Invalid IDLE option argument for XCLAIM")) {
                Ok(v) => delivery_time = now - v,
                Err(r) => return r,
            }
        } else if opt.eq_ignore_ascii_case(b"time") && more > 0 {
            j += 1;
            match int_arg(&args[j], Some("Invalid TIME option argument for XCLAIM")) {
                Ok(v) => delivery_time = v,
                Err(r) => return r,
            }
        } else if opt.eq_ignore_ascii_case(b"retrycount") && more > 0 {
            j += 1;
            match int_arg(
                &args[j],
                Some("Invalid RETRYCOUNT option argument for XCLAIM"),
            ) {
                Ok(v) => retry_count = v,
                Err(r) => return r,
            }
        } else if opt.eq_ignore_ascii_case(b"lastid") && more > 0 {
            j += 1;
            match parse_id(&args[j], 0, true) {
                Ok(id) => last_id = id,
                Err(r) => return r,
            }
        } else {
            return Frame::error(format!(
                "ERR Unrecognized XCLAIM option '{}'",
                String::from_utf8_lossy(opt)
            ));
        }
        j += 1;
    }
    if last_id > g.last_id {
        g.last_id = last_id;
        st.put_group(group, &g);
    }
    if delivery_time < 0 || delivery_time > now {
        delivery_time = now;
    }
    let mut out = Vec::new();
    let mut have_consumer = false;
    for id in ids {
        let nack = match st.nack(group, id) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let entry = match st.entry(id) {
            Ok(e) => e,
            Err(r) => return r,
        };
        let Some(entry) = entry else {
            // The entry is gone: its pending entry goes too.
            if let Some(n) = nack {
                st.drop_nack(group, id, &n.consumer);
            }
            continue;
        };
        let (mut nack, old) = match nack {
            Some(n) => {
                let old = n.consumer.clone();
                (n, Some(old))
            }
            None if force => {
                g.pel_max = g.pel_max.max(id);
                (
                    Nack {
                        delivery_time: now as u64,
                        delivery_count: 1,
                        consumer: Bytes::new(),
                    },
                    None,
                )
            }
            None => continue,
        };
        if old.is_some() && min_idle > 0 && now - (nack.delivery_time as i64) < min_idle {
            continue;
        }
        if !have_consumer {
            if let Err(r) = touch_consumer(&mut st, group, &mut g, name, now as u64, true) {
                return r;
            }
            have_consumer = true;
        }
        nack.delivery_time = delivery_time as u64;
        if retry_count >= 0 {
            nack.delivery_count = retry_count as u64;
        } else if !justid {
            nack.delivery_count += 1;
        }
        if let Err(r) = st.move_nack(group, id, old.as_ref(), name, &mut nack) {
            return r;
        }
        out.push(if justid {
            id.frame()
        } else {
            entry_frame(id, entry.fields)
        });
    }
    st.put_group(group, &g);
    if let Err(r) = st.commit() {
        return r;
    }
    Frame::Array(out)
}

/// XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]
pub fn xautoclaim(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (key, group, name) = (&args[1], &args[2], &args[3]);
    let min_idle = match int_arg(
        &args[4],
        Some("Invalid min-idle-time argument for XAUTOCLAIM"),
    ) {
        Ok(v) => v.max(0),
        Err(r) => return r,
    };
    let start = match parse_bound(&args[5], 0) {
        Ok((id, false)) => id,
        Ok((id, true)) => match id.incr() {
            Some(id) => id,
            None => return Frame::error("ERR invalid start ID for the interval"),
        },
        Err(r) => return r,
    };
    let mut count: i64 = 100;
    let mut justid = false;
    let mut j = 6;
    while j < args.len() {
        let more = args.len() - 1 - j;
        if args[j].eq_ignore_ascii_case(b"count") && more > 0 {
            let max = i64::MAX / 16;
            count = match super::super::string_to_i64(&args[j + 1]) {
                Some(c) if (1..=max).contains(&c) => c,
                _ => return Frame::error("ERR COUNT must be > 0"),
            };
            j += 1;
        } else if args[j].eq_ignore_ascii_case(b"justid") {
            justid = true;
        } else {
            return Frame::error("ERR syntax error");
        }
        j += 1;
    }
    let _guard = sh.keyspace.lock(s.db, key);
    let mut st = match load(sh, s.db, key) {
        Ok(Some(st)) => st,
        Ok(None) => return nogroup(key, group),
        Err(r) => return r,
    };
    let mut g = match st.group(group) {
        Ok(Some(g)) => g,
        Ok(None) => return nogroup(key, group),
        Err(r) => return r,
    };
    let mut attempts = count.saturating_mul(10);
    // The pending entries this call may visit, plus one for the next cursor.
    let candidates = match st.pending(
        group,
        None,
        start,
        Id::MAX,
        usize::try_from(attempts.saturating_add(1)).unwrap_or(usize::MAX),
    ) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let now = sh.keyspace.now_ms() as i64;
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let mut have_consumer = false;
    let mut next = Id::MIN;
    let mut it = candidates.into_iter();
    for id in it.by_ref() {
        if attempts == 0 || count == 0 {
            next = id;
            break;
        }
        attempts -= 1;
        let Some(mut nack) = (match st.nack(group, id) {
            Ok(n) => n,
            Err(r) => return r,
        }) else {
            continue;
        };
        let entry = match st.entry(id) {
            Ok(e) => e,
            Err(r) => return r,
        };
        let Some(entry) = entry else {
            st.drop_nack(group, id, &nack.consumer);
            deleted.push(id.frame());
            count -= 1;
            continue;
        };
        if min_idle > 0 && now - (nack.delivery_time as i64) < min_idle {
            continue;
        }
        if !have_consumer {
            if let Err(r) = touch_consumer(&mut st, group, &mut g, name, now as u64, true) {
                return r;
            }
            have_consumer = true;
        }
        let old = nack.consumer.clone();
        nack.delivery_time = now as u64;
        if !justid {
            nack.delivery_count += 1;
        }
        if let Err(r) = st.move_nack(group, id, Some(&old), name, &mut nack) {
            return r;
        }
        claimed.push(if justid {
            id.frame()
        } else {
            entry_frame(id, entry.fields)
        });
        count -= 1;
    }
    st.put_group(group, &g);
    if let Err(r) = st.commit() {
        return r;
    }
    Frame::Array(vec![
        next.frame(),
        Frame::Array(claimed),
        Frame::Array(deleted),
    ])
}
