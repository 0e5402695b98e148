//! COMMAND, COMMAND COUNT, COMMAND INFO, COMMAND DOCS (enough for redis-cli's hints).

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
    let (first_key, last_key, step) = (0, 0, 0);
    Frame::Array(vec![
        Frame::bulk(spec.name),
        Frame::Integer(i64::from(spec.arity)),
        Frame::Set(
            spec.flags
                .iter()
                .map(|f| Frame::Simple(Bytes::from_static(f.as_bytes())))
                .collect(),
        ),
        Frame::Integer(first_key),
        Frame::Integer(last_key),
        Frame::Integer(step),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
        Frame::Set(Vec::new()),
    ])
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
        b"count" => super::wrong_arity("command|count"),
        _ => super::unknown_subcommand(sub, "command"),
    }
}
