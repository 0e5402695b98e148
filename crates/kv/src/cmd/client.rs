//! CLIENT: ID, SETNAME, GETNAME, INFO, LIST, KILL, UNBLOCK, PAUSE, UNPAUSE, SETINFO, NO-EVICT, NO-TOUCH,
//! REPLY, TRACKING, CACHING, GETREDIR, TRACKINGINFO, HELP. The other connections are seen through the client registry.

use std::sync::atomic::Ordering;
use strata_resp::Arg;

use bytes::Bytes;
use strata_resp::Frame;

use super::{CommandSpec, parse_i64};
use crate::clients::{ClientHandle, UnblockMode, flag};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "client",
    arity: -2,
    flags: &["admin", "noscript", "loading", "stale"],
    no_auth: false,
    run: client,
}];

/// A connection name may not contain spaces, newlines or other special characters (Redis's rule).
pub fn valid_name(name: &[u8]) -> Result<(), Frame> {
    if name.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        Ok(())
    } else {
        Err(Frame::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

fn text(s: &Session, body: String) -> Frame {
    match s.protocol {
        strata_resp::ProtocolVersion::Resp3 => Frame::Verbatim {
            format: *b"txt",
            text: Bytes::from(body),
        },
        strata_resp::ProtocolVersion::Resp2 => Frame::Bulk(Bytes::from(body)),
    }
}

/// The `cmd=` of another client: its last command's name.
fn command_name(c: &ClientHandle) -> String {
    if let Some(full) = c.full_name() {
        return full;
    }
    match c.last_command.load(Ordering::Relaxed) {
        0 => "NULL",
        i => super::commands()
            .get(i - 1)
            .map_or("NULL", |spec| spec.name),
    }
    .to_owned()
}

fn line_of(s: &Session, c: &ClientHandle, own_command: &str) -> String {
    if c.id == s.id {
        s.publish_state();
        c.info_line(own_command)
    } else {
        c.info_line(&command_name(c))
    }
}

fn wrong_sub_arity(sub: &[u8]) -> Frame {
    Frame::error(format!(
        "ERR wrong number of arguments for 'client|{}' command",
        String::from_utf8_lossy(sub)
    ))
}

/// Which clients `CLIENT LIST TYPE` / `CLIENT KILL TYPE` select.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ClientType {
    Normal,
    Replica,
    Master,
    PubSub,
}

fn parse_type(arg: &[u8]) -> Result<ClientType, Frame> {
    match arg.to_ascii_lowercase().as_slice() {
        b"normal" => Ok(ClientType::Normal),
        b"replica" | b"slave" => Ok(ClientType::Replica),
        b"master" => Ok(ClientType::Master),
        b"pubsub" => Ok(ClientType::PubSub),
        _ => Err(Frame::error(format!(
            "ERR Unknown client type '{}'",
            String::from_utf8_lossy(arg)
        ))),
    }
}

fn type_matches(c: &ClientHandle, t: ClientType) -> bool {
    match t {
        ClientType::Normal => !c.is_pubsub(),
        ClientType::PubSub => c.is_pubsub(),
        ClientType::Replica | ClientType::Master => false,
    }
}

fn on_off(arg: &[u8]) -> Option<bool> {
    if arg.eq_ignore_ascii_case(b"on") {
        Some(true)
    } else if arg.eq_ignore_ascii_case(b"off") {
        Some(false)
    } else {
        None
    }
}

pub fn client(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    match (sub.as_slice(), args.len()) {
        (b"id", 2) => Frame::Integer(i64::try_from(s.id).unwrap_or(i64::MAX)),
        (b"getname", 2) => s.name().map_or(Frame::Null, Frame::Bulk),
        (b"setname", 3) => match valid_name(&args[2]) {
            Ok(()) => {
                s.set_name((!args[2].is_empty()).then(|| args[2].to_bytes()));
                Frame::ok()
            }
            Err(reply) => reply,
        },
        (b"setinfo", 4) => setinfo(s, &args[2], &args[3]),
        (b"info", 2) => {
            let line = line_of(s, &s.handle, "client|info");
            text(s, format!("{line}\n"))
        }
        (b"list", _) => list(s, sh, args),
        (b"kill", 3..) => kill(s, sh, args),
        (b"unblock", 3 | 4) => unblock(sh, args),
        (b"pause", 3 | 4) => pause(sh, args),
        (b"unpause", 2) => {
            sh.pause.unpause();
            Frame::ok()
        }
        (b"no-evict" | b"no-touch", 3) => match on_off(&args[2]) {
            Some(on) => {
                let f = if sub == b"no-evict" {
                    flag::NO_EVICT
                } else {
                    flag::NO_TOUCH
                };
                s.handle.set_flag(f, on);
                Frame::ok()
            }
            None => Frame::error("ERR syntax error"),
        },
        (b"reply", 3) => match args[2].to_ascii_lowercase().as_slice() {
            b"on" => {
                s.reply_off = false;
                s.skip_replies = 0;
                Frame::ok()
            }
            b"off" => {
                // Its own reply is the first one dropped.
                s.reply_off = true;
                Frame::ok()
            }
            b"skip" => {
                // Drops its own reply and the next command's.
                if !s.reply_off {
                    s.skip_replies = 2;
                }
                Frame::ok()
            }
            _ => Frame::error("ERR syntax error"),
        },
        (b"getredir", 2) => Frame::Integer(if s.tracking.on {
            sh.tracking.redirect_of(s.id)
        } else {
            -1
        }),
        (b"tracking", 3..) => tracking(s, sh, args),
        (b"caching", 3) => caching(s, &args[2]),
        (b"trackinginfo", 2) => sh.tracking.info(s.id, &s.tracking),
        (b"help", 2) => help(),
        (
            b"id" | b"getname" | b"setname" | b"setinfo" | b"info" | b"kill" | b"unblock"
            | b"pause" | b"unpause" | b"no-evict" | b"no-touch" | b"reply" | b"getredir"
            | b"tracking" | b"caching" | b"trackinginfo" | b"help",
            _,
        ) => wrong_sub_arity(&sub),
        _ => super::unknown_subcommand(&args[1], "client"),
    }
}

/// CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX prefix ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP].
fn tracking(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let mut opts = crate::tracking::Options::default();
    let mut i = 3;
    while i < args.len() {
        let more = i + 1 < args.len();
        match args[i].to_ascii_lowercase().as_slice() {
            b"redirect" if more => {
                i += 1;
                if opts.redirect != 0 {
                    return Frame::error("ERR A client can only redirect to a single other client");
                }
                match parse_i64(&args[i]) {
                    Ok(id) => opts.redirect = u64::try_from(id).unwrap_or(0),
                    Err(e) => return e,
                }
                if opts.redirect == 0 || sh.clients.get(opts.redirect).is_none() {
                    return Frame::error("ERR The client ID you want redirect to does not exist");
                }
            }
            b"bcast" => opts.bcast = true,
            b"optin" => opts.optin = true,
            b"optout" => opts.optout = true,
            b"noloop" => opts.noloop = true,
            b"prefix" if more => {
                i += 1;
                opts.prefixes.push(args[i].to_bytes());
            }
            _ => return Frame::error("ERR syntax error"),
        }
        i += 1;
    }
    match on_off(&args[2]) {
        Some(true) => match sh.tracking.enable(sh, &s.handle, s.tracking, opts) {
            Ok(local) => {
                s.tracking = local;
                Frame::ok()
            }
            Err(e) => e,
        },
        Some(false) => {
            if s.tracking.on {
                sh.tracking.disable(s.id);
            }
            s.tracking = crate::tracking::Local::default();
            Frame::ok()
        }
        None => Frame::error("ERR syntax error"),
    }
}

/// CLIENT CACHING YES|NO: whether the next command's reads are tracked (OPTIN / OPTOUT).
fn caching(s: &mut Session, arg: &[u8]) -> Frame {
    if !s.tracking.on {
        return Frame::error(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN \
             or OPTOUT mode enabled",
        );
    }
    match arg.to_ascii_lowercase().as_slice() {
        b"yes" if s.tracking.optin => s.tracking.caching = true,
        b"yes" => {
            return Frame::error(
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            );
        }
        b"no" if s.tracking.optout => s.tracking.caching = true,
        b"no" => {
            return Frame::error(
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            );
        }
        _ => return Frame::error("ERR syntax error"),
    }
    Frame::ok()
}

fn setinfo(s: &mut Session, attr: &[u8], value: &Arg) -> Frame {
    let attr_l = attr.to_ascii_lowercase();
    let lib_name = match attr_l.as_slice() {
        b"lib-name" => true,
        b"lib-ver" => false,
        _ => {
            return Frame::error(format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(attr)
            ));
        }
    };
    if !value.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
        return Frame::error(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            String::from_utf8_lossy(&attr_l)
        ));
    }
    let v = (!value.is_empty()).then(|| value.to_bytes());
    let mut names = s.handle.names.lock();
    if lib_name {
        names.lib_name = v;
    } else {
        names.lib_ver = v;
    }
    Frame::ok()
}

/// CLIENT LIST [TYPE type] [ID id ...].
fn list(s: &Session, sh: &Shared, args: &[Arg]) -> Frame {
    let mut ty = None;
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        match opt.as_slice() {
            b"type" if i + 1 < args.len() => {
                match parse_type(&args[i + 1]) {
                    Ok(t) => ty = Some(t),
                    Err(e) => return e,
                }
                i += 2;
            }
            b"id" if i + 1 < args.len() => {
                let mut v = Vec::new();
                i += 1;
                while i < args.len() {
                    match parse_i64(&args[i]) {
                        Ok(id) if id > 0 => v.push(id as u64),
                        _ => return Frame::error("ERR Invalid client ID"),
                    }
                    i += 1;
                }
                ids = Some(v);
            }
            _ => return Frame::error("ERR syntax error"),
        }
    }
    let mut out = String::new();
    for c in sh.clients.all() {
        if ty.is_some_and(|t| !type_matches(&c, t)) {
            continue;
        }
        if ids.as_ref().is_some_and(|ids| !ids.contains(&c.id)) {
            continue;
        }
        out.push_str(&line_of(s, &c, "client|list"));
        out.push('\n');
    }
    text(s, out)
}

/// CLIENT KILL addr:port, or CLIENT KILL <filter> <value> ... with ID, ADDR, LADDR, USER, TYPE, SKIPME,
/// MAXAGE.
fn kill(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if args.len() == 3 {
        // The old form: one address, OK or an error.
        let addr = String::from_utf8_lossy(&args[2]);
        let target = sh
            .clients
            .all()
            .into_iter()
            .find(|c| c.peer.to_string() == addr);
        return match target {
            Some(c) => {
                close_client(s, &c);
                Frame::ok()
            }
            None => Frame::error("ERR No such client"),
        };
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut ty = None;
    let mut skipme = true;
    let mut max_age = None;
    let mut user: Option<bytes::Bytes> = None;
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Frame::error("ERR syntax error");
        };
        match args[i].to_ascii_lowercase().as_slice() {
            b"id" => match parse_i64(value) {
                Ok(n) if n > 0 => id = Some(n as u64),
                _ => return Frame::error("ERR client-id should be greater than 0"),
            },
            b"addr" => addr = Some(String::from_utf8_lossy(value).into_owned()),
            b"laddr" => laddr = Some(String::from_utf8_lossy(value).into_owned()),
            b"type" => match parse_type(value) {
                Ok(t) => ty = Some(t),
                Err(e) => return e,
            },
            b"user" => {
                if sh.acl.get(value).is_none() {
                    return Frame::error(format!(
                        "ERR No such user '{}'",
                        String::from_utf8_lossy(value)
                    ));
                }
                user = Some(value.to_bytes());
            }
            b"skipme" => match value.to_ascii_lowercase().as_slice() {
                b"yes" => skipme = true,
                b"no" => skipme = false,
                _ => return Frame::error("ERR syntax error"),
            },
            b"maxage" => match parse_i64(value) {
                Ok(n) if n >= 0 => max_age = Some(n as u64),
                _ => return Frame::error("ERR syntax error"),
            },
            _ => return Frame::error("ERR syntax error"),
        }
        i += 2;
    }
    let mut killed = 0;
    for c in sh.clients.all() {
        let matches = id.is_none_or(|id| c.id == id)
            && addr.as_ref().is_none_or(|a| c.peer.to_string() == *a)
            && laddr
                .as_ref()
                .is_none_or(|a| c.local.is_some_and(|l| l.to_string() == *a))
            && ty.is_none_or(|t| type_matches(&c, t))
            && max_age.is_none_or(|age| c.age_us() / 1_000_000 >= age)
            && user.as_ref().is_none_or(|u| c.names.lock().user == *u)
            && !(skipme && c.id == s.id);
        if matches {
            close_client(s, &c);
            killed += 1;
        }
    }
    Frame::Integer(killed)
}

/// Closes a client; the caller itself closes after this reply is written.
fn close_client(s: &mut Session, c: &ClientHandle) {
    if c.id == s.id {
        s.closing = true;
        s.handle.set_flag(flag::CLOSE_AFTER_REPLY, true);
    } else {
        c.close();
    }
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR].
fn unblock(sh: &Shared, args: &[Arg]) -> Frame {
    let id = match parse_i64(&args[2]) {
        Ok(id) => id,
        Err(e) => return e,
    };
    let mode = match args.get(3).map(|m| m.to_ascii_lowercase()) {
        None => UnblockMode::Timeout,
        Some(m) if m == b"timeout" => UnblockMode::Timeout,
        Some(m) if m == b"error" => UnblockMode::Error,
        Some(_) => {
            return Frame::error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR");
        }
    };
    let done = u64::try_from(id)
        .ok()
        .and_then(|id| sh.clients.get(id))
        .is_some_and(|c| c.request_unblock(mode));
    if done {
        sh.blocking.note_unblocked();
    }
    Frame::Integer(i64::from(done))
}

/// CLIENT PAUSE timeout-ms [WRITE|ALL].
fn pause(sh: &Shared, args: &[Arg]) -> Frame {
    let ms = match parse_i64(&args[2]) {
        Ok(ms) if ms < 0 => return Frame::error("ERR timeout is negative"),
        Ok(ms) => ms as u64,
        Err(_) => return Frame::error("ERR timeout is not an integer or out of range"),
    };
    let all = match args.get(3).map(|m| m.to_ascii_lowercase()) {
        None => true,
        Some(m) if m == b"all" => true,
        Some(m) if m == b"write" => false,
        Some(_) => return Frame::error("ERR syntax error"),
    };
    let Some(until) = std::time::Instant::now().checked_add(std::time::Duration::from_millis(ms))
    else {
        return Frame::error("ERR timeout is not an integer or out of range");
    };
    sh.pause.pause(until, all);
    Frame::ok()
}

fn help() -> Frame {
    Frame::Array(
        [
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "KILL <ip:port>",
            "    Kill connection made from <ip:port>.",
            "KILL <option> <value> [<option> <value> [...]]",
            "    Kill connections. Options are:",
            "    * ADDR (<ip:port>|<unixsocket>:0)",
            "      Kill connections made from the specified address",
            "    * LADDR (<ip:port>|<unixsocket>:0)",
            "      Kill connections made to specified local address",
            "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
            "      Kill connections by type.",
            "    * USER <username>",
            "      Kill connections authenticated by <username>.",
            "    * SKIPME (YES|NO)",
            "      Skip killing current connection (default: yes).",
            "    * ID <client-id>",
            "      Kill connections by client id.",
            "    * MAXAGE <maxage>",
            "      Kill connections older than the specified age.",
            "LIST [options ...]",
            "    Return information about client connections. Options:",
            "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
            "      Return clients of specified type.",
            "UNPAUSE",
            "    Stop the current client pause, resuming traffic.",
            "PAUSE <timeout> [WRITE|ALL]",
            "    Suspend all, or just write, clients for <timeout> milliseconds.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <option> <value>",
            "    Set client meta attr. Options are:",
            "    * LIB-NAME: the client lib name.",
            "    * LIB-VER: the client lib version.",
            "UNBLOCK <clientid> [TIMEOUT|ERROR]",
            "    Unblock the specified blocked client.",
            "NO-EVICT (ON|OFF)",
            "    Protect current client connection from eviction.",
            "NO-TOUCH (ON|OFF)",
            "    Will not touch LRU/LFU stats when this mode is on.",
            "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
            "         [OPTIN] [OPTOUT] [NOLOOP]",
            "    Control server assisted client side caching.",
            "CACHING (YES|NO)",
            "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
            "GETREDIR",
            "    Return the client ID we are redirecting to when tracking is enabled.",
            "TRACKINGINFO",
            "    Report tracking status for the current connection.",
            "HELP",
            "    Print this help.",
        ]
        .into_iter()
        .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
        .collect(),
    )
}
