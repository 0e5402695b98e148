//! OBJECT ENCODING / FREQ / IDLETIME / REFCOUNT / HELP.
//!
//! strata stores every type the same way (a metadata record plus element records), so the encoding it
//! reports is the one Redis would use for a value of that size: the thresholds are Redis's defaults, or
//! what CONFIG SET gave the corresponding `*-max-listpack-*` parameter.

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::Frame;

use super::super::{storage_error, unknown_subcommand, wrong_arity};
use crate::keyspace::{CollectionHeader, Entry, Kind};
use crate::{Session, Shared};

/// Redis's `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`.
const EMBSTR_MAX: usize = 44;
/// Redis's shared integers 0..10000 report this reference count (`OBJ_SHARED_REFCOUNT`).
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

const HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

pub fn object(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    let sub = sub.as_slice();
    match (sub, args.len()) {
        (b"help", 2) => Frame::Array(HELP.iter().map(|&l| Frame::simple(l)).collect()),
        (b"help", _) => wrong_arity("object|help"),
        (b"encoding" | b"freq" | b"idletime" | b"refcount", 3) => {
            let entry = match sh.keyspace.get(s.db, &args[2]) {
                Ok(Some(e)) => e,
                Ok(None) => return Frame::Null,
                Err(e) => return storage_error(e),
            };
            match sub {
                b"encoding" => match encoding(sh, s.db, &args[2], &entry) {
                    Ok(name) => Frame::bulk(name),
                    Err(r) => r,
                },
                b"freq" if !lfu(sh) => Frame::error(
                    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
                     Please note that when switching between policies at runtime LRU and LFU data \
                     will take some time to adjust.",
                ),
                b"freq" => Frame::Integer(i64::from(
                    sh.evict.object_info(s.db, &args[2], sh.keyspace.now_ms()).1,
                )),
                b"idletime" if lfu(sh) => Frame::error(
                    "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note \
                     that when switching between policies at runtime LRU and LFU data will take \
                     some time to adjust.",
                ),
                // Outside cache mode access times are not kept; every key reads as just used.
                b"idletime" => Frame::Integer(
                    i64::try_from(sh.evict.object_info(s.db, &args[2], sh.keyspace.now_ms()).0)
                        .unwrap_or(i64::MAX),
                ),
                // Redis shares small integers unless maxmemory is set with an LRU or LFU policy (each
                // key then needs its own access time).
                _ => Frame::Integer(
                    if entry.kind == Kind::String
                        && as_int(&entry.payload).is_some_and(|n| (0..10_000).contains(&n))
                        && (sh.memory.limit() == 0
                            || !["lru", "lfu"]
                                .iter()
                                .any(|p| sh.memory.policy().contains(p)))
                    {
                        SHARED_REFCOUNT
                    } else {
                        1
                    },
                ),
            }
        }
        (b"encoding" | b"freq" | b"idletime" | b"refcount", _) => {
            wrong_arity(&format!("object|{}", String::from_utf8_lossy(sub)))
        }
        _ => unknown_subcommand(&args[1], "object"),
    }
}

/// Whether `maxmemory-policy` is an LFU policy.
fn lfu(sh: &Shared) -> bool {
    sh.memory.policy().contains("lfu")
}

/// A numeric parameter set with CONFIG SET under `name` (or its pre-7 `ziplist` alias), else `default`.
fn param(sh: &Shared, name: &str, default: i64) -> i64 {
    let params = sh.config_params.lock();
    params
        .get(name)
        .or_else(|| params.get(&name.replace("listpack", "ziplist")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The value as Redis's strict `string2ll` reads it: no sign but `-`, no leading zeros, no spaces.
fn as_int(v: &[u8]) -> Option<i64> {
    let n: i64 = std::str::from_utf8(v).ok()?.parse().ok()?;
    (n.to_string().as_bytes() == v).then_some(n)
}

fn encoding(sh: &Shared, db: usize, key: &[u8], entry: &Entry) -> Result<&'static str, Frame> {
    if entry.kind == Kind::String {
        let v = &entry.payload;
        return Ok(if v.len() <= 20 && as_int(v).is_some() {
            "int"
        } else if v.len() <= EMBSTR_MAX {
            "embstr"
        } else {
            "raw"
        });
    }
    let h = CollectionHeader::from_payload(&entry.payload).map_err(storage_error)?;
    let size = i64::try_from(h.size).unwrap_or(i64::MAX);
    // The elements, read only when the size alone does not decide.
    let elements = || {
        sh.keyspace
            .elements(db, key, h.version)
            .map_err(storage_error)
    };
    let small = |prefix: &str, elements: &[(Bytes, Bytes)], with_values: bool| {
        let max =
            usize::try_from(param(sh, &format!("{prefix}-max-listpack-value"), 64)).unwrap_or(0);
        elements
            .iter()
            .all(|(k, v)| k.len() <= max && (!with_values || v.len() <= max))
    };
    Ok(match entry.kind {
        Kind::String => "raw",
        Kind::Stream => "stream",
        // A module type has no encodings of its own.
        Kind::Trie => "raw",
        Kind::List => {
            // `list-max-listpack-size`: negative is a byte limit per node (-2 = 8 KB), positive a count.
            let fill = param(sh, "list-max-listpack-size", -2);
            let fits = if fill > 0 {
                size <= fill
            } else {
                let limit = 4096i64 << (fill.clamp(-5, -1).unsigned_abs() - 1);
                // Each entry costs at least two bytes, so a longer list cannot fit.
                size <= limit / 2 && {
                    let bytes: i64 = elements()?
                        .iter()
                        .map(|(_, v)| v.len() as i64 + 2 + i64::from(v.len() > 63))
                        .sum();
                    7 + bytes <= limit
                }
            };
            if fits { "listpack" } else { "quicklist" }
        }
        Kind::Hash => {
            if size <= param(sh, "hash-max-listpack-entries", 128)
                && small("hash", &elements()?, true)
            {
                "listpack"
            } else {
                "hashtable"
            }
        }
        Kind::Set => {
            let intset_max = param(sh, "set-max-intset-entries", 512);
            let listpack_max = param(sh, "set-max-listpack-entries", 128);
            if size > intset_max.max(listpack_max) {
                "hashtable"
            } else {
                let members = elements()?;
                if size <= intset_max && members.iter().all(|(m, _)| as_int(m).is_some()) {
                    "intset"
                } else if size <= listpack_max && small("set", &members, false) {
                    "listpack"
                } else {
                    "hashtable"
                }
            }
        }
        Kind::ZSet => {
            let members: Vec<(Bytes, Bytes)> = crate::cmd::zsets::read_source(sh, db, key)?
                .unwrap_or_default()
                .into_iter()
                .map(|(m, _)| (m, Bytes::new()))
                .collect();
            if size <= param(sh, "zset-max-listpack-entries", 128) && small("zset", &members, false)
            {
                "listpack"
            } else {
                "skiplist"
            }
        }
    })
}
