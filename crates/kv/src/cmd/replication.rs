//! Replication commands as a single node answers them: ROLE, WAIT, WAITAOF, REPLICAOF / SLAVEOF, and
//! CLUSTER as a server without cluster support answers it.
//!
//! A strata node is a master without replicas (cluster replication is Raft, later), so clients and
//! tools that ask find the answers Redis gives in that state: ROLE says `master`, WAIT counts no
//! replica (and, asked for some, waits out its timeout as Redis does), and WAITAOF's local count is the
//! real thing — it makes this client's writes durable in the storage WAL before answering.

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::Frame;

use super::{CommandSpec, parse_i64};
use crate::blocking::BlockRequest;
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "cluster",
        arity: -2,
        flags: &["noscript", "loading", "stale"],
        no_auth: false,
        run: cluster,
    },
    CommandSpec {
        name: "readonly",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        no_auth: false,
        run: cluster_only,
    },
    CommandSpec {
        name: "readwrite",
        arity: 1,
        flags: &["loading", "stale", "fast"],
        no_auth: false,
        run: cluster_only,
    },
    CommandSpec {
        name: "replicaof",
        arity: 3,
        flags: &["admin", "noscript", "stale", "no_async_loading"],
        no_auth: false,
        run: replicaof,
    },
    CommandSpec {
        name: "role",
        arity: 1,
        flags: &["noscript", "loading", "stale", "fast"],
        no_auth: false,
        run: role,
    },
    CommandSpec {
        name: "slaveof",
        arity: 3,
        flags: &["admin", "noscript", "stale", "no_async_loading"],
        no_auth: false,
        run: replicaof,
    },
    CommandSpec {
        name: "wait",
        arity: 3,
        flags: &[],
        no_auth: false,
        run: wait,
    },
    CommandSpec {
        name: "waitaof",
        arity: 4,
        flags: &["noscript"],
        no_auth: false,
        run: waitaof,
    },
];

/// CLUSTER: what a Redis server started without `cluster-enabled` answers, which is how clients tell
/// a standalone server from a cluster node (strata's own cluster mode speaks Raft, not this protocol).
pub fn cluster(_s: &mut Session, _sh: &Shared, _args: &[Arg]) -> Frame {
    Frame::error("ERR This instance has cluster support disabled")
}

/// ROLE: `master`, the replication offset, and no replicas.
pub fn role(_s: &mut Session, _sh: &Shared, _args: &[Arg]) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(Bytes::from_static(b"master")),
        Frame::Integer(0),
        Frame::Array(Vec::new()),
    ])
}

/// REPLICAOF NO ONE is accepted (this node is already a master); following another server is not
/// something a strata node does.
pub fn replicaof(_s: &mut Session, _sh: &Shared, args: &[Arg]) -> Frame {
    if args[1].eq_ignore_ascii_case(b"no") && args[2].eq_ignore_ascii_case(b"one") {
        return Frame::ok();
    }
    if parse_i64(&args[2]).is_err() {
        return Frame::error("ERR Invalid master port");
    }
    Frame::error(
        "ERR REPLICAOF is not supported: a strata node does not follow a Redis master; \
         strata replicates through its cluster mode",
    )
}

/// Parses WAIT's and WAITAOF's millisecond timeout into a blocking deadline (`None` waits forever).
fn timeout(arg: &[u8]) -> Result<Option<std::time::Instant>, Frame> {
    let ms = parse_i64(arg)
        .map_err(|_| Frame::error("ERR timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(Frame::error("ERR timeout is negative"));
    }
    if ms == 0 {
        return Ok(None);
    }
    let wait = std::time::Duration::from_millis(ms.unsigned_abs());
    Ok(std::time::Instant::now().checked_add(wait))
}

/// WAIT numreplicas timeout: 0 replicas acknowledged. Asked for at least one, it waits out the timeout
/// first (forever for 0), as Redis does when no replica is connected; inside MULTI it answers at once.
pub fn wait(s: &mut Session, _sh: &Shared, args: &[Arg]) -> Frame {
    let Ok(wanted) = parse_i64(&args[1]) else {
        return Frame::error("ERR value is not an integer or out of range");
    };
    let deadline = match timeout(&args[2]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    if wanted <= 0 {
        return Frame::Integer(0);
    }
    block_until(s, deadline, Frame::Integer(0))
}

/// WAITAOF numlocal numreplicas timeout: with numlocal > 0, fsyncs the storage WAL so every write this
/// client made is durable whatever the node's fsync policy, and counts 1 local; no replica ever
/// acknowledges, so asked for some it waits out the timeout first (forever for 0), as Redis does.
pub fn waitaof(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let (Ok(local), Ok(replicas)) = (parse_i64(&args[1]), parse_i64(&args[2])) else {
        return Frame::error("ERR value is not an integer or out of range");
    };
    let deadline = match timeout(&args[3]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    if local < 0 || replicas < 0 {
        return Frame::error("ERR value is out of range, must be positive");
    }
    let synced = if local > 0 {
        match sh.keyspace.storage().sync_wal() {
            Ok(()) => 1,
            Err(e) => return Frame::error(format!("ERR WAITAOF failed to fsync: {e}")),
        }
    } else {
        0
    };
    let reply = Frame::Array(vec![Frame::Integer(synced), Frame::Integer(0)]);
    if replicas > 0 {
        return block_until(s, deadline, reply);
    }
    reply
}

/// Waits until `deadline` (forever for `None`) with no key to wake the client, then answers `reply`.
/// The retry right after registering blocks again; the wait keeps its first deadline.
fn block_until(s: &mut Session, deadline: Option<std::time::Instant>, reply: Frame) -> Frame {
    s.block_on(BlockRequest {
        keys: Vec::new(),
        deadline,
        timeout_reply: reply,
    })
}

/// READONLY and READWRITE (reads from a cluster replica): a server without cluster support refuses them,
/// as Redis does.
fn cluster_only(_: &mut Session, _: &Shared, _: &[Arg]) -> Frame {
    Frame::error("ERR This instance has cluster support disabled")
}
