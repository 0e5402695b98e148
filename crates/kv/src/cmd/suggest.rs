//! Autocomplete dictionaries, RediSearch-compatible: FT.SUGADD, FT.SUGGET, FT.SUGDEL, FT.SUGLEN.
//!
//! A dictionary is a collection of type `trietype0` (RediSearch's module type name, what TYPE answers):
//! one element per suggestion, keyed by the suggestion's bytes, valued `score f32 BE | 0` or
//! `score f32 BE | 1 | payload` (`docs/kv-encoding.md`). So it is durable like any collection and
//! survives restarts; deleting the last suggestion deletes the key.
//!
//! Queries run on a [`Trie`] built from the elements on first use and cached per collection version
//! ([`TrieCache`]); every command holds the key's lock stripe while it reads or changes the trie, and a
//! write updates the cached trie only after its storage batch committed, so the trie never differs from
//! storage. A version is never reused, so a renamed, deleted or flushed dictionary cannot be answered
//! from a stale trie.
//!
//! Matching and scoring follow RediSearch's `Trie_Search`:
//! - matching is on Unicode code points, case-insensitive (both sides folded to lower case); FUZZY admits
//!   suggestions with a prefix at Levenshtein distance ≤ 1 of the query, computed by dynamic programming
//!   over the trie ([`strata_algo::trie`]);
//! - a suggestion equal to the (folded) query scores `INT_MAX`; otherwise its stored score; with FUZZY
//!   multiplied by `e^(-2 distance)`; then divided by `sqrt(1 + |length - query length|)` (the suggestion's
//!   length in code points, the query's in bytes, as RediSearch computes it); in single precision;
//! - the `MAX` (default 5) best are returned, highest score first; ties keep dictionary (code point)
//!   order, where RediSearch's order among equal scores depends on its trie's layout.
//!
//! Limits as RediSearch: a suggestion of 255 code points or more is not added; a query of 200 bytes or more
//! is refused.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use strata_resp::Arg;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_algo::trie::Trie;
use strata_resp::Frame;

use super::hashes::{load_kind, load_kind_for_write};
use super::zsets::score_frame;
use super::{CommandSpec, storage_error};
use crate::keyspace::{CollectionHeader, Entry, Kind};
use crate::{Session, Shared};

/// The commands of this family, for the dispatch table.
pub(super) static COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "ft.sugadd",
        arity: -4,
        flags: &["write", "denyoom"],
        no_auth: false,
        run: sugadd,
    },
    CommandSpec {
        name: "ft.sugdel",
        arity: 3,
        flags: &["write"],
        no_auth: false,
        run: sugdel,
    },
    CommandSpec {
        name: "ft.sugget",
        arity: -3,
        flags: &["readonly"],
        no_auth: false,
        run: sugget,
    },
    CommandSpec {
        name: "ft.suglen",
        arity: 2,
        flags: &["readonly"],
        no_auth: false,
        run: suglen,
    },
];

/// Suggestions of this many code points or more are not added (RediSearch's `TRIE_INITIAL_STRING_LEN`).
const MAX_SUGGESTION_SYMBOLS: usize = 255;
/// Queries of this many bytes or more are refused.
const MAX_QUERY_BYTES: usize = 200;
/// Most suggestions kept in cached tries, over all dictionaries (a bigger single one is still kept).
const CACHE_SUGGESTIONS: usize = 1_000_000;

/// One suggestion's score and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    score: f32,
    payload: Option<Bytes>,
}

impl Suggestion {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.score.to_bits().to_be_bytes().to_vec();
        match &self.payload {
            Some(p) => {
                v.push(1);
                v.extend_from_slice(p);
            }
            None => v.push(0),
        }
        v
    }

    fn decode(raw: &Bytes) -> Option<Suggestion> {
        let score = f32::from_bits(u32::from_be_bytes(raw.get(..4)?.try_into().ok()?));
        let payload = match raw.get(4)? {
            0 => None,
            _ => Some(raw.slice(5..)),
        };
        Some(Suggestion { score, payload })
    }
}

/// A dictionary in memory: symbols are code points, or `0x8000_0000 | byte` for bytes that are not valid
/// UTF-8, so any key round-trips exactly.
type SugTrie = Trie<u32, Suggestion>;

const RAW_BYTE: u32 = 0x8000_0000;

fn to_symbols(bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars().map(u32::from));
        out.extend(chunk.invalid().iter().map(|&b| RAW_BYTE | u32::from(b)));
    }
    out
}

fn from_symbols(symbols: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(symbols.len());
    for &s in symbols {
        if s & RAW_BYTE != 0 {
            out.push((s & 0xff) as u8);
        } else if let Some(c) = char::from_u32(s) {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// Case folding of one symbol (a code point whose lower case is a single code point folds to it).
fn fold(s: u32) -> u32 {
    match char::from_u32(s) {
        Some(c) if s & RAW_BYTE == 0 => {
            let mut lower = c.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(l), None) => u32::from(l),
                _ => s,
            }
        }
        _ => s,
    }
}

/// Tries of recently used dictionaries, by collection version.
#[derive(Debug, Default)]
pub struct TrieCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// Version → (key, trie, its size when cached).
    slots: HashMap<u64, (Bytes, Arc<Mutex<SugTrie>>, usize)>,
    order: VecDeque<u64>,
    /// Sum of the sizes in `slots`.
    total: usize,
}

impl TrieCache {
    fn get(&self, key: &[u8], version: u64) -> Option<Arc<Mutex<SugTrie>>> {
        self.inner
            .lock()
            .slots
            .get(&version)
            .filter(|(k, ..)| k == key)
            .map(|(_, t, _)| t.clone())
    }

    /// Caches the trie of `key` at `version`, holding `size` suggestions; the oldest tries go once the
    /// total passes the bound. The caller holds no trie's lock.
    fn insert(&self, key: &[u8], version: u64, trie: Arc<Mutex<SugTrie>>, size: usize) {
        let mut inner = self.inner.lock();
        let slot = (Bytes::copy_from_slice(key), trie, size);
        match inner.slots.insert(version, slot) {
            Some((_, _, old)) => inner.total -= old,
            None => inner.order.push_back(version),
        }
        inner.total += size;
        while inner.total > CACHE_SUGGESTIONS && inner.order.len() > 1 {
            if let Some(old) = inner.order.pop_front()
                && let Some((_, _, n)) = inner.slots.remove(&old)
            {
                inner.total -= n;
            }
        }
    }
}

/// A stored dictionary: its record, header and trie.
type Loaded = (Entry, CollectionHeader, Arc<Mutex<SugTrie>>);

/// The dictionary at `key` with its trie: `Ok(None)` if missing; WRONGTYPE if another type. The caller
/// holds the key's stripe.
fn load(sh: &Shared, db: usize, key: &[u8]) -> Result<Option<Loaded>, Frame> {
    let Some((entry, header)) = load_kind(sh, db, key, Kind::Trie)? else {
        return Ok(None);
    };
    let cache = &sh.keyspace.sug_tries;
    if let Some(t) = cache.get(key, header.version)
        && t.lock().len() as u64 == header.size
    {
        return Ok(Some((entry, header, t)));
    }
    let mut trie = SugTrie::new();
    for (k, v) in sh
        .keyspace
        .elements(db, key, header.version)
        .map_err(storage_error)?
    {
        match Suggestion::decode(&v) {
            Some(sug) => {
                trie.insert(&to_symbols(&k), sug);
            }
            None => return Err(Frame::error("ERR corrupt suggestion record")),
        }
    }
    let size = trie.len();
    let trie = Arc::new(Mutex::new(trie));
    cache.insert(key, header.version, trie.clone(), size);
    Ok(Some((entry, header, trie)))
}

/// A score as RediSearch parses it (`RedisModule_StringToDouble`: no spaces, no NaN).
fn parse_score(arg: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(arg).ok()?;
    if s.is_empty() || s.trim() != s {
        return None;
    }
    let v: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

fn sugadd(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if args.len() > 7 {
        return super::wrong_arity("ft.sugadd");
    }
    let (mut incr, mut payload) = (false, None);
    let mut i = 4;
    while i < args.len() {
        let opt = &args[i];
        if opt.eq_ignore_ascii_case(b"INCR") {
            incr = true;
        } else if opt.eq_ignore_ascii_case(b"PAYLOAD") {
            i += 1;
            match args.get(i) {
                Some(p) => payload = Some(p.to_bytes()),
                None => {
                    return Frame::error(
                        "ERR Invalid payload: Expected an argument, but none provided",
                    );
                }
            }
        } else {
            return Frame::error(format!(
                "ERR Unknown argument `{}`",
                String::from_utf8_lossy(opt)
            ));
        }
        i += 1;
    }
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let existing = match load(sh, s.db, key) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let Some(score) = parse_score(&args[3]) else {
        return Frame::error("ERR invalid score");
    };
    let symbols = to_symbols(&args[2]);
    let current_size = existing.as_ref().map_or(0, |(_, h, _)| h.size);
    if symbols.is_empty() || symbols.len() >= MAX_SUGGESTION_SYMBOLS {
        return Frame::Integer(current_size as i64);
    }
    let (entry, header, trie, is_new) = match existing {
        Some((entry, header, trie)) => (entry, header, trie, false),
        None => match load_kind_for_write(sh, s.db, key, Kind::Trie) {
            Ok((entry, header)) => (entry, header, Arc::new(Mutex::new(SugTrie::new())), true),
            Err(reply) => return reply,
        },
    };
    let mut guard = trie.lock();
    let old = guard.get(&symbols).cloned();
    let sug = Suggestion {
        score: match (&old, incr) {
            (Some(o), true) => o.score + score as f32,
            _ => score as f32,
        },
        payload: payload.or_else(|| old.as_ref().and_then(|o| o.payload.clone())),
    };
    let value = sug.encode();
    let puts: [(&[u8], &[u8]); 1] = [(&args[2], &value)];
    let result = if old.is_some() {
        sh.keyspace
            .write_elements(s.db, key, header.version, &puts, &[])
    } else {
        let header = CollectionHeader {
            size: header.size + 1,
            ..header
        };
        sh.keyspace
            .write_collection(s.db, key, &entry, header, &puts, &[])
    };
    if let Err(e) = result {
        return storage_error(e);
    }
    guard.insert(&symbols, sug);
    let size = guard.len();
    drop(guard);
    if is_new {
        // A new dictionary's trie goes into the cache once the dictionary is stored.
        sh.keyspace
            .sug_tries
            .insert(key, header.version, trie, size);
    }
    Frame::Integer(size as i64)
}

fn sugdel(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let Some((entry, header, trie)) = (match load(sh, s.db, key) {
        Ok(found) => found,
        Err(reply) => return reply,
    }) else {
        return Frame::Integer(0);
    };
    let mut trie = trie.lock();
    let symbols = to_symbols(&args[2]);
    if trie.get(&symbols).is_none() {
        return Frame::Integer(0);
    }
    let deletes: [&[u8]; 1] = [&args[2]];
    let header = CollectionHeader {
        size: header.size.saturating_sub(1),
        ..header
    };
    if let Err(e) = sh
        .keyspace
        .write_collection(s.db, key, &entry, header, &[], &deletes)
    {
        return storage_error(e);
    }
    trie.remove(&symbols);
    Frame::Integer(1)
}

fn suglen(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    match load_kind(sh, s.db, &args[1], Kind::Trie) {
        Ok(Some((_, h))) => Frame::Integer(h.size as i64),
        Ok(None) => Frame::Integer(0),
        Err(reply) => reply,
    }
}

/// FT.SUGGET's options.
struct GetOptions {
    fuzzy: bool,
    with_scores: bool,
    with_payloads: bool,
    max: usize,
}

fn parse_get_options(args: &[Arg]) -> Result<GetOptions, Frame> {
    let mut o = GetOptions {
        fuzzy: false,
        with_scores: false,
        with_payloads: false,
        max: 5,
    };
    let mut i = 0;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        match opt.as_slice() {
            b"FUZZY" => o.fuzzy = true,
            b"WITHSCORES" => o.with_scores = true,
            b"WITHPAYLOADS" => o.with_payloads = true,
            // Accepted and ignored, as RediSearch's suggestions do not use them either.
            b"TRIM" | b"OPTIMIZE" => {}
            b"MAX" => {
                i += 1;
                let Some(n) = args.get(i) else {
                    return Err(Frame::error(
                        "ERR MAX: Expected an argument, but none provided",
                    ));
                };
                let n = std::str::from_utf8(n)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
                    .ok_or_else(|| {
                        Frame::error("ERR MAX: Could not convert argument to expected type")
                    })?;
                if n < 1 {
                    return Err(Frame::error("ERR MAX: Value is outside acceptable bounds"));
                }
                o.max = usize::try_from(n).unwrap_or(usize::MAX);
            }
            _ => {
                return Err(Frame::error(format!(
                    "ERR Unrecognized argument: {}",
                    String::from_utf8_lossy(&args[i])
                )));
            }
        }
        i += 1;
    }
    Ok(o)
}

/// A scored match of FT.SUGGET, ordered best first: higher score, then found earlier.
struct Ranked<'a> {
    score: f32,
    seq: u64,
    key: Vec<u32>,
    sug: &'a Suggestion,
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked<'_> {}

fn sugget(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    if args.len() > 10 {
        return super::wrong_arity("ft.sugget");
    }
    let query = &args[2];
    if query.len() >= MAX_QUERY_BYTES {
        return Frame::error("ERR Invalid query length");
    }
    let o = match parse_get_options(&args[3..]) {
        Ok(o) => o,
        Err(reply) => return reply,
    };
    let key = &args[1];
    let _guard = sh.keyspace.lock(s.db, key);
    let trie = match load(sh, s.db, key) {
        Ok(Some((_, _, trie))) => trie,
        Ok(None) => return Frame::Null,
        Err(reply) => return reply,
    };
    let trie = trie.lock();
    let q = to_symbols(query);
    let folded: Vec<u32> = q.iter().map(|&c| fold(c)).collect();
    let distance = usize::from(o.fuzzy);
    // The best `max` matches, kept in a heap whose top is the worst kept (lowest score, latest found):
    // a match replaces it only with a strictly higher score, so ties keep the earlier ones.
    let mut best: BinaryHeap<Ranked<'_>> = BinaryHeap::new();
    let mut seq = 0u64;
    trie.visit_fuzzy_prefix(&q, distance, fold, |key, sug, dist| {
        let mut score = if !key.is_empty() && key == folded.as_slice() {
            i32::MAX as f32
        } else {
            sug.score
        };
        if o.fuzzy {
            score = (f64::from(score) * (-2.0_f64 * dist as f64).exp()) as f32;
        }
        let diff = key.len().abs_diff(query.len());
        score = (f64::from(score) / (1.0_f64 + diff as f64).sqrt()) as f32;
        seq += 1;
        if best.len() < o.max {
            best.push(Ranked {
                score,
                seq,
                key: key.to_vec(),
                sug,
            });
        } else if best
            .peek()
            .is_some_and(|worst| score.total_cmp(&worst.score).is_gt())
        {
            best.pop();
            best.push(Ranked {
                score,
                seq,
                key: key.to_vec(),
                sug,
            });
        }
    });
    // Ascending in `Ranked`'s order: best first.
    let scored = best.into_sorted_vec();
    let mut out = Vec::with_capacity(scored.len() * 3);
    for Ranked {
        score, key, sug, ..
    } in scored
    {
        out.push(Frame::Bulk(Bytes::from(from_symbols(&key))));
        if o.with_scores {
            out.push(score_frame(s, f64::from(score)));
        }
        if o.with_payloads {
            out.push(sug.payload.clone().map_or(Frame::Null, Frame::Bulk));
        }
    }
    Frame::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip_any_bytes() {
        for b in [&b"hello"[..], "héllo wörld".as_bytes(), b"\xff\xfe ok \xc3"] {
            assert_eq!(from_symbols(&to_symbols(b)), b);
        }
        assert_eq!(fold(u32::from('H')), u32::from('h'));
        assert_eq!(fold(RAW_BYTE | 0x41), RAW_BYTE | 0x41);
    }

    #[test]
    fn records_round_trip() {
        for sug in [
            Suggestion {
                score: 1.5,
                payload: None,
            },
            Suggestion {
                score: -3.0,
                payload: Some(Bytes::from_static(b"")),
            },
            Suggestion {
                score: 0.25,
                payload: Some(Bytes::from_static(b"data")),
            },
        ] {
            assert_eq!(Suggestion::decode(&Bytes::from(sug.encode())), Some(sug));
        }
    }
}
