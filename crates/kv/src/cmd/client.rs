//! CLIENT ID, SETNAME, GETNAME, INFO, LIST, HELP (KILL and the tracking subcommands come with the client
//! registry).

use bytes::Bytes;
use strata_resp::Frame;

use super::CommandSpec;
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "client",
    arity: -2,
    flags: &[],
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

pub fn client(s: &mut Session, _sh: &Shared, args: &[Bytes]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    match (sub.as_slice(), args.len()) {
        (b"id", 2) => Frame::Integer(i64::try_from(s.id).unwrap_or(i64::MAX)),
        (b"getname", 2) => s.name.clone().map_or(Frame::Null, Frame::Bulk),
        (b"setname", 3) => match valid_name(&args[2]) {
            Ok(()) => {
                s.name = (!args[2].is_empty()).then(|| args[2].clone());
                Frame::ok()
            }
            Err(reply) => reply,
        },
        (b"info", 2) => Frame::Verbatim {
            format: *b"txt",
            text: Bytes::from(format!("{}\n", s.info_line())),
        },
        // Until the registry of all connections exists, a client sees itself.
        (b"list", _) => Frame::Verbatim {
            format: *b"txt",
            text: Bytes::from(format!("{}\n", s.info_line())),
        },
        (b"help", 2) => Frame::Array(
            [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "LIST",
                "    Return information about client connections.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(|l| Frame::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
        ),
        (b"id" | b"getname" | b"setname" | b"info" | b"help", _) => Frame::error(format!(
            "ERR wrong number of arguments for 'client|{}' command",
            String::from_utf8_lossy(&sub)
        )),
        _ => super::unknown_subcommand(&args[1], "client"),
    }
}
