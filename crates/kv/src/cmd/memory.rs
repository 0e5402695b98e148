//! MEMORY USAGE / STATS / DOCTOR / MALLOC-STATS / PURGE / HELP.
//!
//! strata keeps values in its LSM engine rather than in heap objects, so MEMORY USAGE is an estimate of
//! what the key costs in memory the way Redis would hold it: the key and its value bytes plus a fixed
//! per-key and per-element overhead. Like Redis, a collection's element bytes are sampled (`SAMPLES n`,
//! 5 by default, 0 for all) and extrapolated to its size.

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::Frame;

use super::CommandSpec;
use super::{parse_i64, storage_error, unknown_subcommand, wrong_arity};
use crate::keyspace::{CollectionHeader, Entry, Kind};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "memory",
    arity: -2,
    flags: &[],
    no_auth: false,
    run: memory,
}];

/// Elements sampled by MEMORY USAGE without SAMPLES (Redis's `OBJ_COMPUTE_SIZE_DEF_SAMPLES`).
const DEFAULT_SAMPLES: usize = 5;
/// A key's fixed cost: its hash-table entry, the value's object header and the key string's header.
const KEY_OVERHEAD: usize = 24 + 16 + 4;
/// A collection's fixed cost (its container's header).
const COLLECTION_OVERHEAD: usize = 48;

const HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

pub fn memory(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    match (sub.as_slice(), args.len()) {
        (b"help", 2) => Frame::Array(HELP.iter().map(|&l| Frame::simple(l)).collect()),
        (b"usage", n) if n >= 3 => usage(s, sh, args),
        (b"doctor", 2) => Frame::Verbatim {
            format: *b"txt",
            text: Bytes::from_static(
                b"Hi Sam, I can't find any memory issue in your instance. I can only account for what \
                  occurs on this base.",
            ),
        },
        (b"malloc-stats", 2) => Frame::Verbatim {
            format: *b"txt",
            text: Bytes::from_static(b"Stats not supported for the current allocator"),
        },
        (b"purge", 2) => Frame::ok(),
        (b"stats", 2) => stats(sh),
        (b"help" | b"usage" | b"doctor" | b"malloc-stats" | b"purge" | b"stats", _) => {
            wrong_arity(&format!("memory|{}", String::from_utf8_lossy(&sub)))
        }
        _ => unknown_subcommand(&args[1], "memory"),
    }
}

/// MEMORY USAGE key [SAMPLES count].
fn usage(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let mut samples = DEFAULT_SAMPLES;
    let mut j = 3;
    while j < args.len() {
        if args[j].eq_ignore_ascii_case(b"samples") && j + 1 < args.len() {
            match parse_i64(&args[j + 1]) {
                Ok(0) => samples = usize::MAX,
                Ok(n) if n > 0 => samples = usize::try_from(n).unwrap_or(usize::MAX),
                Ok(_) => return Frame::error("ERR syntax error"),
                Err(r) => return r,
            }
            j += 2;
        } else {
            return Frame::error("ERR syntax error");
        }
    }
    let key = &args[2];
    let entry = match sh.keyspace.get(s.db, key) {
        Ok(Some(e)) => e,
        Ok(None) => return Frame::Null,
        Err(e) => return storage_error(e),
    };
    match estimate(sh, s.db, key, &entry, samples) {
        Ok(n) => Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
        Err(r) => r,
    }
}

/// Redis's strict integer form, which it stores inside the object header rather than as bytes.
fn is_int(v: &[u8]) -> bool {
    v.len() <= 20
        && std::str::from_utf8(v)
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
            .is_some_and(|n| n.to_string().as_bytes() == v)
}

/// Bytes of one element beyond its payload, by the structure Redis would use for a large collection:
/// a list node entry, a hash/set table entry with its strings' headers, a sorted-set table entry plus
/// skiplist node.
fn element_overhead(kind: Kind) -> usize {
    match kind {
        Kind::String => 0,
        Kind::List => 11,
        Kind::Hash => 24 + 2 * 4,
        Kind::Set => 24 + 4,
        Kind::ZSet => 24 + 4 + 8 + 32,
        // Entries packed in listpacks: flags, ID deltas and lengths.
        Kind::Stream => 4,
        // A trie node per suggestion: score, payload pointer, child links.
        Kind::Trie => 24 + 4 + 8 + 16,
    }
}

/// The estimated footprint of `key` holding `entry`, sampling at most `samples` elements.
fn estimate(
    sh: &Shared,
    db: usize,
    key: &[u8],
    entry: &Entry,
    samples: usize,
) -> Result<usize, Frame> {
    let base = KEY_OVERHEAD + key.len() + 1;
    if entry.kind == Kind::String {
        let v = &entry.payload;
        return Ok(base + if is_int(v) { 0 } else { v.len() + 4 });
    }
    let h = CollectionHeader::from_payload(&entry.payload).map_err(storage_error)?;
    let size = usize::try_from(h.size).unwrap_or(usize::MAX);
    let sampled = sh
        .keyspace
        .elements_after(db, key, h.version, None, samples.min(size.max(1)))
        .map_err(storage_error)?;
    let per_element = element_overhead(entry.kind);
    let bytes: usize = sampled
        .iter()
        .map(|(k, v)| {
            // A list's element key is its position, not data; a sorted set's carries a one-byte tag.
            let k = match entry.kind {
                Kind::List => 0,
                Kind::ZSet => k.len().saturating_sub(1),
                _ => k.len(),
            };
            k + v.len() + per_element
        })
        .sum();
    let total = if sampled.is_empty() {
        0
    } else {
        bytes.saturating_mul(size) / sampled.len()
    };
    Ok(base + COLLECTION_OVERHEAD + total)
}

/// Resident memory of the process, from /proc (0 where it is not available).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

/// MEMORY STATS: Redis's field names; what strata cannot tell apart is reported in the dataset.
fn stats(sh: &Shared) -> Frame {
    let total = resident_bytes();
    let mut fields: Vec<(Frame, Frame)> = Vec::new();
    let mut int = |name: &str, v: u64| {
        fields.push((
            Frame::bulk(name.to_owned()),
            Frame::Integer(i64::try_from(v).unwrap_or(i64::MAX)),
        ));
    };
    int("peak.allocated", total);
    int("total.allocated", total);
    int("startup.allocated", 0);
    int("replication.backlog", 0);
    int("clients.slaves", 0);
    int("clients.normal", 0);
    int("cluster.links", 0);
    int("aof.buffer", 0);
    int("lua.caches", 0);
    int("functions.caches", 0);
    let mut keys_total = 0u64;
    for db in 0..sh.keyspace.databases() {
        let Ok((keys, expires)) = sh.keyspace.count(db) else {
            continue;
        };
        if keys == 0 {
            continue;
        }
        keys_total += keys;
        fields.push((
            Frame::bulk(format!("db.{db}")),
            Frame::Map(vec![
                (
                    Frame::bulk("overhead.hashtable.main"),
                    Frame::Integer(i64::try_from(keys * 24).unwrap_or(i64::MAX)),
                ),
                (
                    Frame::bulk("overhead.hashtable.expires"),
                    Frame::Integer(i64::try_from(expires * 24).unwrap_or(i64::MAX)),
                ),
            ]),
        ));
    }
    let mut int = |name: &str, v: u64| {
        fields.push((
            Frame::bulk(name.to_owned()),
            Frame::Integer(i64::try_from(v).unwrap_or(i64::MAX)),
        ));
    };
    int("overhead.total", 0);
    int("keys.count", keys_total);
    int(
        "keys.bytes-per-key",
        total.checked_div(keys_total).unwrap_or(0),
    );
    int("dataset.bytes", total);
    let mut pct = |name: &str, v: f64| {
        fields.push((Frame::bulk(name.to_owned()), Frame::Double(v)));
    };
    pct("dataset.percentage", 100.0);
    pct("peak.percentage", 100.0);
    let mut int = |name: &str, v: u64| {
        fields.push((
            Frame::bulk(name.to_owned()),
            Frame::Integer(i64::try_from(v).unwrap_or(i64::MAX)),
        ));
    };
    int("allocator.allocated", total);
    int("allocator.active", total);
    int("allocator.resident", total);
    int("allocator-fragmentation.bytes", 0);
    int("allocator.rss-bytes", 0);
    int("rss-overhead.bytes", 0);
    int("fragmentation.bytes", 0);
    let mut pct = |name: &str, v: f64| {
        fields.push((Frame::bulk(name.to_owned()), Frame::Double(v)));
    };
    pct("allocator-fragmentation.ratio", 1.0);
    pct("allocator.rss-ratio", 1.0);
    pct("rss-overhead.ratio", 1.0);
    pct("fragmentation", 1.0);
    Frame::Map(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_recognised_strictly() {
        assert!(is_int(b"12345"));
        assert!(is_int(b"-7"));
        assert!(!is_int(b"007"));
        assert!(!is_int(b"+7"));
        assert!(!is_int(b"1 "));
    }
}
