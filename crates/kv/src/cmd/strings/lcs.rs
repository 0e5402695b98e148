//! LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]: the longest common subsequence of two
//! strings, by the dynamic-programming table Redis uses, with matches reported from the end as Redis
//! walks them.

use bytes::Bytes;
use strata_resp::Arg;
use strata_resp::Frame;

use super::super::{parse_i64, storage_error};
use super::{MAX_STRING_BYTES, syntax_error};
use crate::keyspace::Kind;
use crate::{Session, Shared};

pub fn lcs(s: &mut Session, sh: &Shared, args: &[Arg]) -> Frame {
    let mut values = Vec::with_capacity(2);
    for key in &args[1..3] {
        match sh.keyspace.get(s.db, key) {
            Ok(Some(e)) if e.kind != Kind::String => {
                return Frame::error("ERR The specified keys must contain string values");
            }
            Ok(e) => values.push(e.map(|e| e.payload).unwrap_or_default()),
            Err(e) => return storage_error(e),
        }
    }
    let (mut len, mut idx, mut with_len, mut min_len) = (false, false, false, 0usize);
    let mut j = 3;
    while j < args.len() {
        let opt = args[j].to_ascii_uppercase();
        match opt.as_slice() {
            b"IDX" => idx = true,
            b"LEN" => len = true,
            b"WITHMATCHLEN" => with_len = true,
            b"MINMATCHLEN" if j + 1 < args.len() => {
                match parse_i64(&args[j + 1]) {
                    Ok(n) => min_len = usize::try_from(n).unwrap_or(0),
                    Err(r) => return r,
                }
                j += 1;
            }
            _ => return syntax_error(),
        }
        j += 1;
    }
    if len && idx {
        return Frame::error("ERR If you want both the length and indexes, please just use IDX.");
    }
    let (a, b) = (&values[0][..], &values[1][..]);
    let cells = (a.len() as u64 + 1).saturating_mul(b.len() as u64 + 1);
    if cells.saturating_mul(4) > MAX_STRING_BYTES as u64 {
        return Frame::error(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    let width = b.len() + 1;
    let mut table = vec![0u32; (a.len() + 1) * width];
    for i in 1..=a.len() {
        for k in 1..=b.len() {
            table[i * width + k] = if a[i - 1] == b[k - 1] {
                table[(i - 1) * width + k - 1] + 1
            } else {
                table[(i - 1) * width + k].max(table[i * width + k - 1])
            };
        }
    }
    let total = table[a.len() * width + b.len()] as usize;
    if len {
        return Frame::Integer(total as i64);
    }
    // Walk back from the end, collecting the common bytes and the contiguous match ranges.
    let mut common = vec![0u8; total];
    let mut matches = Vec::new();
    let (mut i, mut k, mut pos) = (a.len(), b.len(), total);
    // The current range: (a_start, a_end, b_start, b_end), inclusive.
    let mut range: Option<(usize, usize, usize, usize)> = None;
    let emit = |r: (usize, usize, usize, usize), matches: &mut Vec<Frame>| {
        let match_len = r.1 - r.0 + 1;
        if min_len == 0 || match_len >= min_len {
            let pair = |x: usize, y: usize| {
                Frame::Array(vec![Frame::Integer(x as i64), Frame::Integer(y as i64)])
            };
            let mut m = vec![pair(r.0, r.1), pair(r.2, r.3)];
            if with_len {
                m.push(Frame::Integer(match_len as i64));
            }
            matches.push(Frame::Array(m));
        }
    };
    while i > 0 && k > 0 {
        if a[i - 1] == b[k - 1] {
            common[pos - 1] = a[i - 1];
            pos -= 1;
            range = match range {
                Some((a0, a1, b0, b1)) if a0 == i && b0 == k => Some((a0 - 1, a1, b0 - 1, b1)),
                Some(r) => {
                    emit(r, &mut matches);
                    Some((i - 1, i - 1, k - 1, k - 1))
                }
                None => Some((i - 1, i - 1, k - 1, k - 1)),
            };
            i -= 1;
            k -= 1;
            // A match reaching the start of either string ends the walk.
            if let Some(r) = range
                && (r.0 == 0 || r.2 == 0)
            {
                emit(r, &mut matches);
                range = None;
            }
        } else {
            if table[(i - 1) * width + k] > table[i * width + k - 1] {
                i -= 1;
            } else {
                k -= 1;
            }
            if let Some(r) = range.take() {
                emit(r, &mut matches);
            }
        }
    }
    if let Some(r) = range {
        emit(r, &mut matches);
    }
    if idx {
        return Frame::Map(vec![
            (Frame::bulk("matches"), Frame::Array(matches)),
            (Frame::bulk("len"), Frame::Integer(total as i64)),
        ]);
    }
    Frame::Bulk(Bytes::from(common))
}
