//! HyperLogLog commands: PFADD, PFCOUNT, PFMERGE, PFDEBUG, PFSELFTEST.
//!
//! A HyperLogLog is a plain string holding Redis's `HYLL` format ([`hll`] has the layout), so GET, SET,
//! DUMP/RESTORE and SETRANGE see the same bytes Redis would, and a sketch copied between Redis and strata
//! keeps counting. Every command validates the string first: a value that is not a sketch gets
//! `WRONGTYPE Key is not a valid HyperLogLog string value.`, one whose registers do not decode
//! `INVALIDOBJ Corrupted HLL object detected`.
//!
//! PFCOUNT of one key caches the estimate in the header (writing the key back), as Redis does; PFADD and
//! PFMERGE mark the cache stale when they change a register.

pub mod hll;

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::Frame;

use super::strings::wrongtype;
use super::{CommandSpec, storage_error};
use crate::keyspace::{Entry, Kind};
use crate::{Session, Shared};

use hll::HllError;

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "pfadd",
        arity: -2,
        flags: &["write", "denyoom", "fast"],
        no_auth: false,
        run: pfadd,
    },
    CommandSpec {
        name: "pfcount",
        arity: -2,
        flags: &["readonly", "may_replicate"],
        no_auth: false,
        run: pfcount,
    },
    CommandSpec {
        name: "pfdebug",
        arity: 3,
        flags: &["write", "denyoom", "admin"],
        no_auth: false,
        run: pfdebug,
    },
    CommandSpec {
        name: "pfmerge",
        arity: -2,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: pfmerge,
    },
    CommandSpec {
        name: "pfselftest",
        arity: 1,
        flags: &["admin"],
        no_auth: false,
        run: pfselftest,
    },
];

/// Redis's reply to a value that is not a sketch.
fn not_hll() -> Frame {
    Frame::error("WRONGTYPE Key is not a valid HyperLogLog string value.")
}

/// Redis's reply to a sketch whose registers do not decode.
fn corrupt() -> Frame {
    Frame::error("INVALIDOBJ Corrupted HLL object detected")
}

fn hll_error(e: HllError) -> Frame {
    match e {
        HllError::NotHll => not_hll(),
        HllError::Corrupt => corrupt(),
    }
}

/// `hll-sparse-max-bytes` (CONFIG SET, with memory units such as `3kb`), Redis's default 3000.
fn sparse_max_bytes(sh: &Shared) -> usize {
    sh.config_params
        .lock()
        .get("hll-sparse-max-bytes")
        .and_then(|v| super::config::parse_memory(v))
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(3000)
}

/// The sketch stored at `key`: `Ok(None)` if missing; the wrong-type and not-a-sketch errors otherwise.
fn load(sh: &Shared, db: usize, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>, Frame> {
    match sh.keyspace.get(db, key).map_err(storage_error)? {
        None => Ok(None),
        Some(e) if e.kind != Kind::String => Err(wrongtype()),
        Some(e) => {
            hll::check(&e.payload).map_err(hll_error)?;
            Ok(Some((e.payload.to_vec(), e.expire_at_ms)))
        }
    }
}

/// Stores a sketch back under `key`, keeping its deadline.
fn store(
    sh: &Shared,
    db: usize,
    key: &[u8],
    value: Vec<u8>,
    expire_at_ms: u64,
) -> Result<(), Frame> {
    let entry = Entry {
        kind: Kind::String,
        expire_at_ms,
        indexed_at_ms: 0,
        payload: Bytes::from(value),
    };
    sh.keyspace.put(db, key, &entry).map_err(storage_error)
}

fn pfadd(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let stored = match sh.keyspace.get(s.db, key) {
        Ok(stored) => stored,
        Err(e) => return storage_error(e),
    };
    let (mut value, expire_at_ms, mut updated) = match stored {
        None => (hll::new_sparse(), 0, 1),
        Some(e) if e.kind != Kind::String => return wrongtype(),
        Some(e) => {
            let encoding = match hll::check(&e.payload) {
                Ok(encoding) => encoding,
                Err(err) => return hll_error(err),
            };
            // Most elements added to a big sketch change no register: decide on the stored bytes
            // before copying all 12 KiB of them.
            if encoding == hll::DENSE {
                return pfadd_dense(sh, s.db, key, &e.payload, &args[2..]);
            }
            (e.payload.to_vec(), e.expire_at_ms, 0u64)
        }
    };
    // Read only now: most PFADDs to a big sketch return above, and this is a lock of the config map.
    let max_bytes = sparse_max_bytes(sh);
    for element in &args[2..] {
        match hll::add(&mut value, element, max_bytes) {
            Ok(true) => updated += 1,
            Ok(false) => {}
            Err(e) => return hll_error(e),
        }
    }
    if updated == 0 {
        return Frame::Integer(0);
    }
    hll::invalidate_cache(&mut value);
    if let Err(reply) = store(sh, s.db, key, value, expire_at_ms) {
        return reply;
    }
    sh.keyspace.add_dirty(updated - 1);
    Frame::Integer(1)
}

/// PFADD to a dense sketch: most elements change no register, and one that does changes one or two
/// bytes of the 12 KiB string, so only those bytes (and the header's cache-stale bit) are written, as a
/// patch of the stored string.
fn pfadd_dense(sh: &Shared, db: usize, key: &[u8], stored: &[u8], elements: &[Arg]) -> Frame {
    let regs = &stored[hll::HEADER..];
    // (byte index in `regs`, new value), in order: a later entry for the same byte wins.
    let mut changed: Vec<(usize, u8)> = Vec::new();
    let byte_at = |changed: &[(usize, u8)], i: usize| {
        changed
            .iter()
            .rev()
            .find(|(b, _)| *b == i)
            .map_or_else(|| regs.get(i).copied().unwrap_or(0), |c| c.1)
    };
    let mut updated = 0u64;
    for element in elements {
        let (index, count) = hll::position(element);
        let (byte, shift) = (index * hll::BITS / 8, index * hll::BITS % 8);
        let word =
            u16::from(byte_at(&changed, byte)) | (u16::from(byte_at(&changed, byte + 1)) << 8);
        if ((word >> shift) & 0x3f) as u8 >= count {
            continue;
        }
        updated += 1;
        let word = (word & !(0x3f << shift)) | (u16::from(count) << shift);
        changed.push((byte, word as u8));
        if byte + 1 < regs.len() {
            changed.push((byte + 1, (word >> 8) as u8));
        }
    }
    if updated == 0 {
        return Frame::Integer(0);
    }
    let stale = [stored[15] | 0x80];
    let pieces = std::iter::once((15, &stale[..])).chain(
        changed
            .iter()
            .map(|(b, v)| (hll::HEADER + b, std::slice::from_ref(v))),
    );
    if let Err(e) = sh.keyspace.patch_string(db, key, pieces) {
        return storage_error(e);
    }
    sh.keyspace.add_dirty(updated - 1);
    Frame::Integer(1)
}

fn pfcount(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if args.len() > 2 {
        // The union of several sketches, in raw registers; nothing is cached.
        let mut max = vec![0u8; hll::REGISTERS];
        for key in &args[1..] {
            match load(sh, s.db, key) {
                Ok(Some((v, _))) => {
                    if let Err(e) = hll::merge_into(&mut max, &v) {
                        return hll_error(e);
                    }
                }
                Ok(None) => {}
                Err(reply) => return reply,
            }
        }
        return Frame::Integer(hll::estimate(&hll::histogram_raw(&max)) as i64);
    }
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let (value, _) = match load(sh, s.db, key) {
        Ok(Some(found)) => found,
        Ok(None) => return Frame::Integer(0),
        Err(reply) => return reply,
    };
    if hll::cache_valid(&value) {
        return Frame::Integer(hll::cached(&value) as i64);
    }
    let card = match hll::histogram(&value) {
        Ok(h) => hll::estimate(&h),
        Err(e) => return hll_error(e),
    };
    // Only the 8 cache bytes change: written as a patch of the string.
    let mut header = [0u8; hll::HEADER];
    hll::set_cache(&mut header, card);
    if let Err(e) = sh.keyspace.patch_string(s.db, key, [(8, &header[8..])]) {
        return storage_error(e);
    }
    Frame::Integer(card as i64)
}

fn pfmerge(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let max_bytes = sparse_max_bytes(sh);
    let _guards = sh
        .keyspace
        .lock_many(s.db, args[1..].iter().map(|k| &k[..]));
    let mut max = vec![0u8; hll::REGISTERS];
    let mut use_dense = false;
    let mut dest = None;
    // The destination is one of the inputs.
    for (i, key) in args[1..].iter().enumerate() {
        match load(sh, s.db, key) {
            Ok(Some((v, at))) => {
                use_dense |= v[4] == hll::DENSE;
                if let Err(e) = hll::merge_into(&mut max, &v) {
                    return hll_error(e);
                }
                if i == 0 {
                    dest = Some((v, at));
                }
            }
            Ok(None) => {}
            Err(reply) => return reply,
        }
    }
    let (mut value, expire_at_ms) = dest.unwrap_or_else(|| (hll::new_sparse(), 0));
    if use_dense && let Err(e) = hll::to_dense(&mut value) {
        return hll_error(e);
    }
    for (i, &m) in max.iter().enumerate() {
        if m > 0
            && let Err(e) = hll::set(&mut value, i, m, max_bytes)
        {
            return hll_error(e);
        }
    }
    hll::invalidate_cache(&mut value);
    match store(sh, s.db, &args[1], value, expire_at_ms) {
        Ok(()) => Frame::ok(),
        Err(reply) => reply,
    }
}

fn pfdebug(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let sub = args[1].to_ascii_lowercase();
    let key = &args[2];
    let _guard = sh.keyspace.lock(s.db, key);
    let (mut value, expire_at_ms) = match load(sh, s.db, key) {
        Ok(Some(found)) => found,
        Ok(None) => return Frame::error("ERR The specified key does not exist"),
        Err(reply) => return reply,
    };
    match sub.as_slice() {
        b"getreg" => {
            if value[4] == hll::SPARSE {
                if let Err(e) = hll::to_dense(&mut value) {
                    return hll_error(e);
                }
                if let Err(reply) = store(sh, s.db, key, value.clone(), expire_at_ms) {
                    return reply;
                }
            }
            let regs = &value[hll::HEADER..];
            Frame::Array(
                (0..hll::REGISTERS)
                    .map(|i| Frame::Integer(i64::from(hll::dense_get(regs, i))))
                    .collect(),
            )
        }
        b"decode" => {
            if value[4] != hll::SPARSE {
                return Frame::error("ERR HLL encoding is not sparse");
            }
            match hll::decode_sparse(&value) {
                Ok(text) => Frame::Bulk(Bytes::from(text)),
                Err(e) => hll_error(e),
            }
        }
        b"encoding" => Frame::simple(if value[4] == hll::SPARSE {
            "sparse"
        } else {
            "dense"
        }),
        b"todense" => {
            if value[4] == hll::DENSE {
                return Frame::Integer(0);
            }
            if let Err(e) = hll::to_dense(&mut value) {
                return hll_error(e);
            }
            match store(sh, s.db, key, value, expire_at_ms) {
                Ok(()) => Frame::Integer(1),
                Err(reply) => reply,
            }
        }
        _ => Frame::error(format!(
            "ERR Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

/// Checks the register packing and the estimator on a few thousand to a few hundred thousand elements, in
/// both encodings; replies OK or the first failure.
fn pfselftest(_s: &mut Session, _sh: &Shared, _args: &[Arg]) -> Frame {
    match self_test() {
        Ok(()) => Frame::ok(),
        Err(msg) => Frame::error(format!("ERR TESTFAILED {msg}")),
    }
}

fn self_test() -> Result<(), String> {
    // Dense registers: every register written with a pseudo-random value reads back.
    let mut regs = vec![0u8; hll::DENSE_SIZE - hll::HEADER];
    let mut model = vec![0u8; hll::REGISTERS];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..4 {
        for (i, m) in model.iter_mut().enumerate() {
            let v = (next() % 64) as u8;
            hll::dense_set(&mut regs, i, v);
            *m = v;
        }
        for (i, &m) in model.iter().enumerate() {
            if hll::dense_get(&regs, i) != m {
                return Err(format!("register {i} reads back wrong"));
            }
        }
    }
    // Estimates: sparse and dense agree, and stay within 5 standard errors (1.04/sqrt(m) each).
    let mut sparse = hll::new_sparse();
    let mut dense = hll::new_sparse();
    hll::to_dense(&mut dense).map_err(|e| format!("{e:?}"))?;
    let bound = 5.0 * 1.04 / (hll::REGISTERS as f64).sqrt();
    let mut checkpoint = 10u64;
    for n in 1..=200_000u64 {
        let element = next().to_le_bytes();
        hll::add(&mut sparse, &element, 3000).map_err(|e| format!("{e:?}"))?;
        hll::add(&mut dense, &element, 3000).map_err(|e| format!("{e:?}"))?;
        if n == checkpoint {
            checkpoint *= 10;
            let a = hll::estimate(&hll::histogram(&sparse).map_err(|e| format!("{e:?}"))?);
            let b = hll::estimate(&hll::histogram(&dense).map_err(|e| format!("{e:?}"))?);
            if a != b {
                return Err(format!("sparse {a} and dense {b} estimates differ at {n}"));
            }
            let err = (b as f64 - n as f64).abs() / n as f64;
            if n >= 1000 && err > bound {
                return Err(format!("estimate {b} of {n} is off by {err}"));
            }
        }
    }
    Ok(())
}
