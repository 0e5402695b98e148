//! SORT and SORT_RO: lists, sets and sorted sets, numerically or ALPHA, BY and GET patterns (with `#` and
//! `->field`), LIMIT, ASC/DESC and STORE, following Redis's `sortCommandGeneric`.

use std::cmp::Ordering;
use strata_resp::Arg;

use bytes::Bytes;
use strata_resp::Frame;

use super::super::strings::wrongtype;
use super::super::{parse_i64, storage_error};
use crate::keyspace::{CollectionHeader, Entry, Kind};
use crate::{Session, Shared};

/// A new list's head index (lists grow both ways from the middle of the index space).
const LIST_HEAD: u64 = 1 << 63;

struct Options {
    desc: bool,
    alpha: bool,
    limit: (i64, i64),
    by: Option<Bytes>,
    dont_sort: bool,
    gets: Vec<Bytes>,
    store: Option<Bytes>,
}

/// `full_key_access`: the user may read every key, which BY and GET patterns need.
fn parse(args: &[Arg], readonly: bool, full_key_access: bool) -> Result<Options, Frame> {
    let mut o = Options {
        desc: false,
        alpha: false,
        limit: (0, -1),
        by: None,
        dont_sort: false,
        gets: Vec::new(),
        store: None,
    };
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        let a = args[j].to_ascii_lowercase();
        match a.as_slice() {
            b"asc" => o.desc = false,
            b"desc" => o.desc = true,
            b"alpha" => o.alpha = true,
            b"limit" if left >= 2 => {
                o.limit = (parse_i64(&args[j + 1])?, parse_i64(&args[j + 2])?);
                j += 2;
            }
            b"store" if !readonly && left >= 1 => {
                o.store = Some(args[j + 1].to_bytes());
                j += 1;
            }
            b"by" if left >= 1 => {
                // A pattern without `*` is constant: nothing to sort by.
                o.dont_sort = !args[j + 1].contains(&b'*');
                if !o.dont_sort && !full_key_access {
                    return Err(Frame::error(
                        "ERR BY option of SORT denied due to insufficient ACL permissions.",
                    ));
                }
                o.by = Some(args[j + 1].to_bytes());
                j += 1;
            }
            b"get" if left >= 1 => {
                if !full_key_access {
                    return Err(Frame::error(
                        "ERR GET option of SORT denied due to insufficient ACL permissions.",
                    ));
                }
                o.gets.push(args[j + 1].to_bytes());
                j += 1;
            }
            _ => return Err(Frame::error("ERR syntax error")),
        }
        j += 1;
    }
    Ok(o)
}

/// Redis's `lookupKeyByPattern`: `#` is the element itself; otherwise the first `*` is replaced by the
/// element, and a `->field` suffix reads a hash field instead of a string.
fn lookup(sh: &Shared, db: usize, pattern: &[u8], element: &Bytes) -> Result<Option<Bytes>, Frame> {
    if pattern == b"#" {
        return Ok(Some(element.clone()));
    }
    let Some(star) = pattern.iter().position(|&c| c == b'*') else {
        return Ok(None);
    };
    let arrow = pattern[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|p| star + 1 + p)
        .filter(|&p| p + 2 < pattern.len());
    let (key_end, field) = match arrow {
        Some(p) => (p, Some(&pattern[p + 2..])),
        None => (pattern.len(), None),
    };
    let mut key = Vec::with_capacity(key_end + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(&pattern[star + 1..key_end]);
    let Some(entry) = sh.keyspace.get(db, &key).map_err(storage_error)? else {
        return Ok(None);
    };
    match field {
        Some(f) if entry.kind == Kind::Hash => {
            let h = CollectionHeader::from_payload(&entry.payload).map_err(storage_error)?;
            sh.keyspace
                .get_element(db, &key, h.version, f)
                .map_err(storage_error)
        }
        None if entry.kind == Kind::String => Ok(Some(entry.payload)),
        _ => Ok(None),
    }
}

/// A weight as C's `strtod` reads it for SORT: leading blanks allowed, the whole rest must be a number,
/// no overflow, no NaN; the empty string is 0.
fn weight(v: &[u8]) -> Option<f64> {
    if v.is_empty() {
        return Some(0.0);
    }
    let s = std::str::from_utf8(v).ok()?;
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let x: f64 = t.parse().ok()?;
    let literal_inf = t
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("inf");
    (!x.is_nan() && (x.is_finite() || literal_inf)).then_some(x)
}

struct Item {
    element: Bytes,
    score: f64,
    by: Option<Bytes>,
}

/// SORT and SORT_RO.
pub fn sort(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let readonly = args[0].eq_ignore_ascii_case(b"sort_ro");
    // BY and GET patterns reach keys no check saw: Redis allows them only to a user who may read every key.
    let full_key_access = s.acl_unrestricted
        || crate::cmd::lookup_indexed(&args[0]).is_some_and(|(index, spec)| {
            crate::acl::CommandRef::of_call(index, args).is_some_and(|command| {
                let keys = crate::cmd::acl::call_keys(index, spec, args);
                s.user
                    .check_with_all_keys(command, &keys, &[], crate::acl::KeyAccess::Read)
            })
        });
    let mut o = match parse(args, readonly, full_key_access) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let _guard = o.store.as_ref().map(|k| sh.keyspace.lock(s.db, k));
    let entry = match sh.keyspace.get(s.db, &args[1]) {
        Ok(e) => e,
        Err(e) => return storage_error(e),
    };
    let kind = entry.as_ref().map(|e| e.kind);
    if matches!(
        kind,
        Some(Kind::String | Kind::Hash | Kind::Trie | Kind::Stream)
    ) {
        return wrongtype();
    }
    // A set has no order of its own: with STORE, sort it so the result is deterministic.
    if o.dont_sort && kind == Some(Kind::Set) && o.store.is_some() {
        o.dont_sort = false;
        o.alpha = true;
        o.by = None;
    }
    let mut elements = match load(sh, s.db, &args[1], entry.as_ref()) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let len = elements.len() as i64;
    let mut start = o.limit.0.max(0).min(len);
    let count = o.limit.1.max(-1).min(len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    end = end.min(len - 1);
    // Lists and sorted sets keep their own order when nothing is sorted; DESC reverses it.
    if o.dont_sort && o.desc && matches!(kind, Some(Kind::List | Kind::ZSet)) {
        elements.reverse();
    }
    let mut items: Vec<Item> = elements
        .into_iter()
        .map(|element| Item {
            element,
            score: 0.0,
            by: None,
        })
        .collect();
    if !o.dont_sort {
        let mut conversion_error = false;
        for item in &mut items {
            let by = match &o.by {
                Some(pattern) => match lookup(sh, s.db, pattern, &item.element) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(r) => return r,
                },
                None => item.element.clone(),
            };
            if o.alpha {
                if o.by.is_some() {
                    item.by = Some(by);
                }
            } else {
                match weight(&by) {
                    Some(x) => item.score = x,
                    None => conversion_error = true,
                }
            }
        }
        if conversion_error {
            return Frame::error("ERR One or more scores can't be converted into double");
        }
        let by_pattern = o.by.is_some();
        items.sort_by(|a, b| {
            let cmp = if !o.alpha {
                a.score
                    .partial_cmp(&b.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| a.element.cmp(&b.element))
            } else if by_pattern {
                // A missing BY value sorts first.
                a.by.cmp(&b.by)
            } else {
                a.element.cmp(&b.element)
            };
            if o.desc { cmp.reverse() } else { cmp }
        });
    }
    let selected = if end >= start {
        &items[start as usize..=end as usize]
    } else {
        &[]
    };
    let mut out: Vec<Option<Bytes>> = Vec::new();
    for item in selected {
        if o.gets.is_empty() {
            out.push(Some(item.element.clone()));
        }
        for pattern in &o.gets {
            match lookup(sh, s.db, pattern, &item.element) {
                Ok(v) => out.push(v),
                Err(r) => return r,
            }
        }
    }
    match &o.store {
        None => Frame::Array(
            out.into_iter()
                .map(|v| v.map_or(Frame::Null, Frame::Bulk))
                .collect(),
        ),
        Some(dest) => match store_list(sh, s.db, dest, out) {
            Ok(n) => Frame::Integer(n),
            Err(r) => r,
        },
    }
}

/// The elements of the list, set or sorted set `entry` in their own order (sorted sets by score).
fn load(sh: &Shared, db: usize, key: &[u8], entry: Option<&Entry>) -> Result<Vec<Bytes>, Frame> {
    let Some(entry) = entry else {
        return Ok(Vec::new());
    };
    if entry.kind == Kind::ZSet {
        // Sorted sets keep members and a score index under one prefix; read them through their module.
        let mut scored = crate::cmd::zsets::read_source(sh, db, key)?.unwrap_or_default();
        scored.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        return Ok(scored.into_iter().map(|(m, _)| m).collect());
    }
    let h = CollectionHeader::from_payload(&entry.payload).map_err(storage_error)?;
    let raw = sh
        .keyspace
        .elements(db, key, h.version)
        .map_err(storage_error)?;
    Ok(match entry.kind {
        Kind::List => raw.into_iter().map(|(_, v)| v).collect(),
        _ => raw.into_iter().map(|(m, _)| m).collect(),
    })
}

/// SORT ... STORE: the result replaces `dest` as a list (missing GET values stored as empty strings);
/// an empty result deletes it. Returns the number of elements.
fn store_list(
    sh: &Shared,
    db: usize,
    dest: &[u8],
    values: Vec<Option<Bytes>>,
) -> Result<i64, Frame> {
    let header = CollectionHeader {
        version: sh.keyspace.new_version(),
        size: values.len() as u64,
    };
    let mut payload = header.to_payload().to_vec();
    payload.extend_from_slice(&LIST_HEAD.to_be_bytes());
    let entry = Entry {
        kind: Kind::List,
        expire_at_ms: 0,
        indexed_at_ms: 0,
        payload: payload.into(),
    };
    let keys: Vec<[u8; 8]> = (0..values.len() as u64)
        .map(|i| (LIST_HEAD + i).to_be_bytes())
        .collect();
    let values: Vec<Bytes> = values.into_iter().map(Option::unwrap_or_default).collect();
    let elements: Vec<(&[u8], &[u8])> = keys
        .iter()
        .zip(&values)
        .map(|(k, v)| (&k[..], &v[..]))
        .collect();
    sh.keyspace
        .replace_collection(db, dest, &entry, &elements)
        .map_err(storage_error)?;
    Ok(elements.len() as i64)
}

/// Where SORT's STORE destination is among `args` (0 is the command name), found as Redis's
/// `sortGetKeys` does: LIMIT's, GET's and BY's arguments are skipped (so `GET store` names a pattern, not
/// an option), and the last STORE wins, as it does when SORT runs.
pub fn store_position(args: &[Arg]) -> Option<usize> {
    let mut found = None;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if a.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"get") || a.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"store") && i + 1 < args.len() {
            found = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    found
}
