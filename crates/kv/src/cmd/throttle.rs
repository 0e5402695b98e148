//! `CL.THROTTLE key max_burst count_per_period period [quantity]`: rate limiting compatible with the
//! redis-cell module, on the GCRA of `strata-resilience` ([`strata_resilience::gcra`]).
//!
//! State: the key is a plain string holding the theoretical arrival time in Unix nanoseconds, as a
//! decimal integer, with a TTL of the time until the bucket is empty again — exactly what redis-cell keeps,
//! so a limiter moved between Redis and strata (DUMP/RESTORE, or replaying keys) goes on where it was, and
//! GET/PTTL/DEL work on it as on any string. A refused request writes nothing.
//!
//! The reply is redis-cell's five integers: limited (0/1), the limit (`max_burst + 1`), remaining units,
//! seconds until a retry may succeed (-1 if allowed, or if the request is larger than the bucket), seconds
//! until the bucket is full again; both times rounded up when a millisecond or more is left over. The
//! command holds the key's lock stripe from read to write, so it is atomic per key.
//!
//! Errors are redis-cell's (`ERR Cell error: ...`); strata also refuses parameters redis-cell would
//! compute nonsense from (a negative burst or quantity, a count or period that is not positive).

use bytes::Bytes;
use strata_resilience::gcra::{Gcra, reply_seconds};
use strata_resp::Arg;
use strata_resp::Frame;

use super::strings::wrongtype;
use super::{CommandSpec, storage_error};
use crate::keyspace::{Entry, Kind};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "cl.throttle",
    // A module command (Redis gives it arity -1) checks its own arguments: redis-cell's usage error.
    arity: -1,
    flags: &["write", "denyoom"],
    no_auth: false,
    run: cl_throttle,
}];

fn cell_error(msg: impl std::fmt::Display) -> Frame {
    Frame::error(format!("ERR Cell error: {msg}"))
}

/// An integer argument as redis-cell parses it (Rust's `i64` syntax, so `+5` is accepted).
fn parse(arg: &[u8]) -> Result<i64, Frame> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            cell_error(format!(
                "Couldn't parse as integer: {}",
                String::from_utf8_lossy(arg)
            ))
        })
}

fn cl_throttle(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if args.len() != 5 && args.len() != 6 {
        return cell_error(
            "Usage: cl.throttle <key> <max_burst> <count per period> <period> [<quantity>]",
        );
    }
    let numbers: Result<Vec<i64>, Frame> = args[2..].iter().map(|a| parse(a)).collect();
    let numbers = match numbers {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let (max_burst, count, period) = (numbers[0], numbers[1], numbers[2]);
    let quantity = numbers.get(3).copied().unwrap_or(1);
    if quantity < 0 {
        return cell_error("quantity must be zero or positive");
    }
    let gcra = match Gcra::per_period(max_burst, count, period) {
        Ok(g) => g,
        Err(e) => return cell_error(e),
    };
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let tat = match sh.keyspace.get(s.db, key) {
        Ok(None) => None,
        Ok(Some(e)) if e.kind != Kind::String => return wrongtype(),
        Ok(Some(e)) => match std::str::from_utf8(&e.payload)
            .map_err(|e| e.to_string())
            .and_then(|t| t.parse::<i64>().map_err(|e| e.to_string()))
        {
            Ok(t) => Some(t),
            Err(msg) => return cell_error(msg),
        },
        Err(e) => return storage_error(e),
    };
    let now_ms = sh.keyspace.now_ms();
    let now_ns = i64::try_from(now_ms)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    let d = gcra.decide(tat, now_ns, quantity);
    if let Some(new_tat) = d.new_tat_ns {
        // The TTL in whole milliseconds, truncated, as redis-cell sets it.
        let ttl_ms = u64::try_from(d.reset_after_ns / 1_000_000).unwrap_or(0);
        let entry = Entry {
            kind: Kind::String,
            expire_at_ms: now_ms.saturating_add(ttl_ms).max(1),
            indexed_at_ms: 0,
            payload: Bytes::from(new_tat.to_string()),
        };
        if let Err(e) = sh.keyspace.put(s.db, key, &entry) {
            return storage_error(e);
        }
    }
    Frame::Array(vec![
        Frame::Integer(i64::from(d.limited)),
        Frame::Integer(d.limit),
        Frame::Integer(d.remaining),
        Frame::Integer(reply_seconds(d.retry_after_ns)),
        Frame::Integer(reply_seconds(Some(d.reset_after_ns))),
    ])
}
