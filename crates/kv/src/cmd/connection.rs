//! PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET.

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::{Frame, ProtocolVersion};

use super::CommandSpec;
use super::parse_i64;
use crate::{Session, Shared, acl};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
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
        run: auth,
    },
    CommandSpec {
        name: "monitor",
        arity: 1,
        flags: &["admin", "noscript", "loading", "stale"],
        no_auth: false,
        run: monitor,
    },
    CommandSpec {
        name: "echo",
        arity: 2,
        flags: &["fast"],
        no_auth: false,
        run: echo,
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
        run: hello,
    },
    CommandSpec {
        name: "ping",
        arity: -1,
        flags: &["fast"],
        no_auth: false,
        run: ping,
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
        run: quit,
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
        run: reset,
    },
    CommandSpec {
        name: "select",
        arity: 2,
        flags: &["loading", "stale", "fast"],
        no_auth: false,
        run: select,
    },
];

/// Redis version announced to clients: the compatibility level strata implements, so clients' version
/// checks pick the right code paths.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

pub fn ping(s: &mut Session, _sh: &Shared, args: &[Arg]) -> Frame {
    if s.in_resp2_pubsub_mode() {
        // A subscribed RESP2 client gets a pub/sub shaped reply it can tell from messages.
        return match args {
            [_] => Frame::Array(vec![Frame::bulk("pong"), Frame::bulk("")]),
            [_, msg] => Frame::Array(vec![Frame::bulk("pong"), Frame::Bulk(msg.to_bytes())]),
            _ => super::wrong_arity("ping"),
        };
    }
    match args {
        [_] => Frame::simple("PONG"),
        [_, msg] => Frame::Bulk(msg.to_bytes()),
        _ => super::wrong_arity("ping"),
    }
}

/// MONITOR: from now on the connection receives every command the service runs, as a line.
pub fn monitor(s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    if !s.monitoring {
        s.monitoring = true;
        sh.monitors.add(s.handle.clone());
    }
    Frame::ok()
}

pub fn echo(_s: &mut Session, _sh: &Shared, args: &[Arg]) -> Frame {
    Frame::Bulk(args[1].to_bytes())
}

pub fn quit(s: &mut Session, _sh: &Shared, _args: &[Arg]) -> Frame {
    s.closing = true;
    Frame::ok()
}

pub fn reset(s: &mut Session, sh: &Shared, _args: &[Arg]) -> Frame {
    s.reset(sh);
    Frame::simple("RESET")
}

pub fn select(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let index = match parse_i64(&args[1]) {
        Ok(i) => i,
        Err(reply) => return reply,
    };
    match usize::try_from(index) {
        Ok(db) if db < sh.config.databases => {
            s.db = db;
            Frame::ok()
        }
        _ => Frame::error("ERR DB index is out of range"),
    }
}

/// Authenticates the connection as `user` (the default user when `None`), answering as Redis does for
/// `AUTH` and `HELLO ... AUTH`: `None` on success, else the error. A failure is logged in ACL LOG.
fn check_password(
    s: &mut Session,
    sh: &Shared,
    user: Option<&[u8]>,
    password: &[u8],
    command: &[u8],
) -> Option<Frame> {
    let name = user.unwrap_or(acl::DEFAULT_USER);
    let Some(found) = sh.acl.authenticate(name, password) else {
        let context = if s.multi.is_some() {
            acl::LogContext::Multi
        } else {
            acl::LogContext::Toplevel
        };
        sh.acl.log.record(acl::LogEntry::new(
            acl::LogReason::Auth,
            context,
            command,
            name,
            s.info_line(),
            super::acl::log_now_ms(),
        ));
        return Some(Frame::error(acl::WRONGPASS));
    };
    s.authenticated = true;
    s.acl_generation = sh.acl.generation();
    s.acl_unrestricted = found.unrestricted();
    s.handle.names.lock().user = Bytes::copy_from_slice(found.name());
    s.user = found;
    None
}

pub fn auth(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let result = match args {
        // The one-argument form is an error while the default user needs no password, as in Redis.
        [_, _] if sh.acl.default_user().nopass() => {
            return Frame::error(acl::AUTH_WITHOUT_PASSWORD);
        }
        [command, password] => check_password(s, sh, None, password, command),
        [command, user, password] => check_password(s, sh, Some(user), password, command),
        _ => return Frame::error("ERR syntax error"),
    };
    result.unwrap_or_else(Frame::ok)
}

pub fn hello(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let mut version = None;
    let mut i = 1;
    if let Some(v) = args.get(1) {
        match parse_i64(v) {
            Ok(2) => version = Some(ProtocolVersion::Resp2),
            Ok(3) => version = Some(ProtocolVersion::Resp3),
            Ok(_) => return Frame::error("NOPROTO unsupported protocol version"),
            Err(_) => {
                return Frame::error("ERR Protocol version is not an integer or out of range");
            }
        }
        i = 2;
    }
    let mut name = None;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        let remaining = args.len() - i - 1;
        match opt.as_slice() {
            b"auth" if remaining >= 2 => {
                if let Some(err) = check_password(s, sh, Some(&args[i + 1]), &args[i + 2], &args[0])
                {
                    return err;
                }
                i += 3;
            }
            b"setname" if remaining >= 1 => {
                if let Err(reply) = super::client::valid_name(&args[i + 1]) {
                    return reply;
                }
                name = Some(args[i + 1].to_bytes());
                i += 2;
            }
            _ => {
                return Frame::error(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&args[i])
                ));
            }
        }
    }
    if !s.authenticated {
        return Frame::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> \
             AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol \
             version at the same time",
        );
    }
    if let Some(v) = version {
        s.protocol = v;
    }
    if name.is_some() {
        s.set_name(name);
    }
    let proto = match s.protocol {
        ProtocolVersion::Resp2 => 2,
        ProtocolVersion::Resp3 => 3,
    };
    Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk("redis")),
        (Frame::bulk("version"), Frame::bulk(REDIS_COMPAT_VERSION)),
        (Frame::bulk("proto"), Frame::Integer(proto)),
        (
            Frame::bulk("id"),
            Frame::Integer(i64::try_from(s.id).unwrap_or(i64::MAX)),
        ),
        (Frame::bulk("mode"), Frame::bulk("standalone")),
        (Frame::bulk("role"), Frame::bulk("master")),
        (Frame::bulk("modules"), Frame::Array(Vec::new())),
    ])
}
