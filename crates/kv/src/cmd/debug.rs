//! DEBUG: Redis's introspection and test hooks, the subset that means something for strata.
//!
//! Refused unless `enable-debug-command` allows it (`yes`, or `local` for a loopback client): Redis's
//! default, `no`, is strata's too. Answered: OBJECT (a key's encoding and serialized size), SLEEP, DIGEST and DIGEST-VALUE (SHA-1 digests of the data
//! set or of keys, from their DUMP serialization, so equal data digests equally across restarts), POPULATE
//! (Redis's `key:N` → `value:N` filler), LOG and ERROR. The hooks into Redis's internals that have no
//! counterpart here (RELOAD and LOADAOF, since every write is already durable; SET-ACTIVE-EXPIRE,
//! QUICKLIST-PACKED-THRESHOLD, SET-SKIP-CHECKSUM-VALIDATION, JMAP, CHANGE-REPL-ID, PAUSE-CRON, REPLYBUFFER,
//! SET-DISABLE-DENY-SCRIPTS) answer OK and change nothing. The ones that crash or corrupt the server on
//! purpose (SEGFAULT, PANIC, RESTART, CRASH-AND-RECOVER, OOM, ASSERT) are refused. SLEEP stops the worker
//! thread that runs it, so with one worker (`worker_threads 1`) the whole server waits, as in Redis.

use bytes::Bytes;
use strata_resp::{Arg, Frame};

use super::{CommandSpec, parse_i64, storage_error, unknown_subcommand};
use crate::{Session, Shared};

/// The family's dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "debug",
    arity: -2,
    flags: &["admin", "noscript", "loading", "stale", "protected"],
    no_auth: false,
    run: debug,
}];

const HELP: &[&str] = &[
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DIGEST",
    "    Output a hex signature representing the current DB content.",
    "DIGEST-VALUE <key> [<key> ...]",
    "    Output a hex signature of the values of all the specified keys.",
    "ERROR <string>",
    "    Return a Redis protocol error with <string> as message.",
    "LOG <message>",
    "    Write <message> to the server log.",
    "OBJECT <key>",
    "    Show low level info about the key and associated value.",
    "POPULATE <count> [<prefix>] [<size>]",
    "    Create <count> string keys named key:<num>. If <prefix> is specified then",
    "    it is used instead of the 'key' prefix. These are not propagated to",
    "    replicas. Cluster slots are not respected so keys not belonging to the",
    "    current node can be created in cluster mode.",
    "RELOAD",
    "    Accepted; strata's data is durable already, so there is nothing to reload.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "HELP",
    "    Print this help.",
];

/// Redis's refusal while `enable-debug-command` does not allow this client.
const NOT_ALLOWED: &str = "ERR DEBUG command not allowed. If the enable-debug-command option is set \
     to \"local\", you can run it from a local connection, otherwise you need to set this option in \
     the configuration file, and then restart the server.";

/// The digest of nothing (a missing key, an empty data set).
const ZERO_DIGEST: &str = "0000000000000000000000000000000000000000";

fn allowed(s: &Session, sh: &Shared) -> bool {
    match sh.config.enable_debug_command.as_str() {
        "yes" => true,
        "local" => s.peer.ip().is_loopback(),
        _ => false,
    }
}

fn debug(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if !allowed(s, sh) {
        return Frame::error(NOT_ALLOWED);
    }
    let sub = args[1].to_ascii_lowercase();
    match (sub.as_slice(), args.len()) {
        (b"help", 2) => Frame::Array(HELP.iter().map(|&l| Frame::simple(l)).collect()),
        (b"object", 3) => object(s, sh, &args[2]),
        (b"sleep", 3) => sleep(&args[2]),
        (b"digest", 2) => digest(s, sh),
        (b"digest-value", _) => Frame::Array(
            args[2..]
                .iter()
                .map(|key| match key_digest(s, sh, key) {
                    Ok(Some(d)) => Frame::bulk(hex(&d)),
                    Ok(None) => Frame::bulk(ZERO_DIGEST),
                    Err(reply) => reply,
                })
                .collect(),
        ),
        (b"populate", 3..=5) => populate(s, sh, args),
        (b"log", 3) => {
            tracing::warn!(message = %String::from_utf8_lossy(&args[2]), "DEBUG LOG");
            Frame::ok()
        }
        (b"error", 3) => Frame::error(String::from_utf8_lossy(&args[2]).into_owned()),
        (
            b"reload"
            | b"loadaof"
            | b"set-active-expire"
            | b"quicklist-packed-threshold"
            | b"set-skip-checksum-validation"
            | b"jmap"
            | b"change-repl-id"
            | b"pause-cron"
            | b"replybuffer"
            | b"set-disable-deny-scripts"
            | b"stringmatch-len",
            _,
        ) => Frame::ok(),
        (b"segfault" | b"panic" | b"restart" | b"crash-and-recover" | b"oom" | b"assert", _) => {
            Frame::error("ERR DEBUG subcommands that crash the server are not supported")
        }
        _ => unknown_subcommand(&args[1], "debug"),
    }
}

/// `DEBUG OBJECT key`: Redis's one-line summary, with the encoding OBJECT ENCODING reports and the
/// length of the key's DUMP serialization.
fn object(s: &mut Session, sh: &Shared, key: &[u8]) -> Frame {
    let owned = [
        Bytes::from_static(b"object"),
        Bytes::from_static(b"encoding"),
        Bytes::copy_from_slice(key),
    ];
    let encoding = match super::keys::object(s, sh, &strata_resp::args_of(&owned)) {
        Frame::Bulk(name) => String::from_utf8_lossy(&name).into_owned(),
        Frame::Null => return Frame::error("ERR no such key"),
        other => return other,
    };
    let serialized = match serialized(s, sh, key) {
        Ok(Some(payload)) => payload.len(),
        Ok(None) => 0,
        Err(reply) => return reply,
    };
    Frame::Simple(Bytes::from(format!(
        "Value at:0x0 refcount:1 encoding:{encoding} serializedlength:{serialized} lru:0 \
         lru_seconds_idle:0"
    )))
}

/// The key's DUMP payload (`None` when it does not exist).
fn serialized(s: &mut Session, sh: &Shared, key: &[u8]) -> Result<Option<Bytes>, Frame> {
    let owned = [Bytes::from_static(b"dump"), Bytes::copy_from_slice(key)];
    match super::keys::dump(s, sh, &strata_resp::args_of(&owned)) {
        Frame::Bulk(payload) => Ok(Some(payload)),
        Frame::Null => Ok(None),
        other => Err(other),
    }
}

/// A key's digest: SHA-1 over its name, its serialized value (the DUMP payload without its version and
/// checksum trailer, which differ by build) and its deadline.
fn key_digest(s: &mut Session, sh: &Shared, key: &[u8]) -> Result<Option<[u8; 20]>, Frame> {
    let Some(payload) = serialized(s, sh, key)? else {
        return Ok(None);
    };
    let body = &payload[..payload.len().saturating_sub(10)];
    let deadline = match sh.keyspace.get(s.db, key) {
        Ok(Some(entry)) => entry.expire_at_ms,
        Ok(None) => return Ok(None),
        Err(e) => return Err(storage_error(e)),
    };
    let mut data = Vec::with_capacity(key.len() + body.len() + 16);
    data.extend_from_slice(&(key.len() as u64).to_le_bytes());
    data.extend_from_slice(key);
    data.extend_from_slice(body);
    data.extend_from_slice(&deadline.to_le_bytes());
    Ok(Some(crate::script::sha1::sha1(&data)))
}

/// `DEBUG DIGEST`: the XOR of every key's digest in every database, mixed with the database number, so
/// it does not depend on the order keys are visited in; all zeros for an empty data set, as in Redis.
fn digest(s: &mut Session, sh: &Shared) -> Frame {
    let selected = s.db;
    let mut total = [0u8; 20];
    let mut any = false;
    for db in 0..sh.config.databases {
        let keys = match sh.keyspace.keys(db, |_| true) {
            Ok(keys) => keys,
            Err(e) => return storage_error(e),
        };
        s.db = db;
        for key in keys {
            match key_digest(s, sh, &key) {
                Ok(Some(d)) => {
                    any = true;
                    let mixed =
                        crate::script::sha1::sha1(&[&d[..], &(db as u64).to_le_bytes()].concat());
                    total.iter_mut().zip(mixed).for_each(|(t, m)| *t ^= m);
                }
                Ok(None) => {}
                Err(reply) => {
                    s.db = selected;
                    return reply;
                }
            }
        }
    }
    s.db = selected;
    Frame::bulk(if any {
        hex(&total)
    } else {
        ZERO_DIGEST.to_owned()
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `DEBUG SLEEP seconds`: the worker thread running it sleeps, holding back every client it serves (all
/// of them with one worker, as Redis's single thread sleeping does).
fn sleep(seconds: &[u8]) -> Frame {
    let Some(secs) = std::str::from_utf8(seconds)
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite())
    else {
        return Frame::error("ERR value is not a valid float");
    };
    if secs > 0.0 {
        std::thread::sleep(std::time::Duration::from_secs_f64(secs.min(3600.0)));
    }
    Frame::ok()
}

/// `DEBUG POPULATE count [prefix] [size]`: string keys `prefix:N` holding `value:N` (zero-padded or cut
/// to `size` bytes when given), skipping names that exist.
fn populate(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let positive = |arg: &[u8]| match parse_i64(arg) {
        Ok(n) if n >= 0 => Ok(n as u64),
        Ok(_) => Err(Frame::error("ERR value is out of range, must be positive")),
        Err(reply) => Err(reply),
    };
    let count = match positive(&args[2]) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let prefix: &[u8] = args.get(3).map_or(b"key", |a| a.as_bytes());
    let size = match args.get(4).map(|a| positive(a)) {
        Some(Ok(n)) => Some(n as usize),
        Some(Err(reply)) => return reply,
        None => None,
    };
    for i in 0..count {
        let mut key = prefix.to_vec();
        key.extend_from_slice(format!(":{i}").as_bytes());
        match sh.keyspace.get(s.db, &key) {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => return storage_error(e),
        }
        let text = format!("value:{i}").into_bytes();
        let value = match size {
            Some(n) => {
                let mut v = vec![0u8; n];
                let len = n.min(text.len());
                v[..len].copy_from_slice(&text[..len]);
                v
            }
            None => text,
        };
        let entry = crate::keyspace::Entry {
            kind: crate::keyspace::Kind::String,
            expire_at_ms: 0,
            indexed_at_ms: 0,
            payload: Bytes::from(value),
        };
        if let Err(e) = sh.keyspace.put(s.db, &key, &entry) {
            return storage_error(e);
        }
    }
    Frame::ok()
}
