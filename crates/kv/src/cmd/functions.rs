//! FUNCTION: the library registry of Redis 7 functions. Scripting (FUNCTION LOAD, FCALL, EVAL) is the
//! subject of a later issue; until it lands the registry is always empty, so the subcommands that only
//! read or clear it answer truthfully, and the ones that would add to it say scripting is not built.

use bytes::Bytes;
use strata_resp::Frame;

use super::{CommandSpec, unknown_subcommand};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "function",
    arity: -2,
    flags: &[],
    no_auth: false,
    run: function,
}];

fn function(_s: &mut Session, _sh: &Shared, args: &[Bytes]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    match sub.as_slice() {
        // Nothing is loaded, so flushing succeeds with nothing to do.
        b"flush" => match args.get(2).map(|a| a.to_ascii_lowercase()) {
            None if args.len() == 2 => Frame::ok(),
            Some(mode) if args.len() == 3 && (mode == b"async" || mode == b"sync") => Frame::ok(),
            _ => Frame::error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"),
        },
        b"list" => Frame::Array(Vec::new()),
        b"stats" if args.len() == 2 => Frame::Map(vec![
            (Frame::bulk("running_script"), Frame::Null),
            (Frame::bulk("engines"), Frame::Map(Vec::new())),
        ]),
        b"load" | b"delete" | b"restore" | b"dump" | b"kill" => {
            Frame::error("ERR scripting is not available in this build of strata")
        }
        _ => unknown_subcommand(&args[1], "function"),
    }
}
