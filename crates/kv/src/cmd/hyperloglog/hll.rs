//! The HyperLogLog sketch in Redis's `HYLL` string format, so a value written by strata reads in Redis and
//! the other way round (GET/SET/DUMP of an HLL interoperate).
//!
//! Layout (all of it is the string value of the key):
//!
//! ```text
//! "HYLL" | encoding u8 (0 dense, 1 sparse) | 3 unused bytes | cached cardinality u64 little-endian
//! ```
//!
//! followed by the registers. The most significant bit of the last cardinality byte set means the cached
//! value is stale. There are 16384 registers (14 bits of the hash pick one); each holds the longest run of
//! trailing zeros + 1 seen among the remaining 50 bits, so at most 51.
//!
//! - *Dense*: 16384 registers of 6 bits, packed little-endian bit first: register `i` starts at bit `6 i`
//!   (bit 0 being the least significant bit of the first byte). 12288 bytes.
//! - *Sparse*: a run-length code of the registers, three opcodes: `00xxxxxx` (ZERO) a run of `x+1` zero
//!   registers, `01xxxxxx yyyyyyyy` (XZERO) a run of `(x << 8 | y) + 1` zero registers, and `1vvvvvxx`
//!   (VAL) a run of `x+1` registers of value `v+1`. Registers above 32 cannot be coded sparse; a sketch
//!   switches to dense then, or when its sparse code grows past `hll-sparse-max-bytes`.
//!
//! Updating a sparse sketch rewrites only the opcode covering the register (splitting a run into at most
//! three opcodes) and then merges equal neighbouring VAL runs near it, the way Redis does, so the bytes
//! come out as Redis's would for the same sequence of additions.
//!
//! The estimate is Ertl's improved raw estimator ("New cardinality estimation algorithms for HyperLogLog
//! sketches", 2017), which Redis 7 uses: from the histogram of register values,
//! `m * α∞ * m / (m σ(C0/m) + Σ ... + m τ(1 - C51/m) 2^-50)`, needing no bias tables.

/// Bits of the hash choosing a register.
const P: u32 = 14;
/// Number of registers.
pub const REGISTERS: usize = 1 << P;
/// Bits of the hash whose trailing zeros are counted.
const Q: u32 = 64 - P;
/// Bits per dense register.
pub const BITS: usize = 6;
/// Header bytes.
pub const HEADER: usize = 16;
/// Bytes of a dense sketch.
pub const DENSE_SIZE: usize = HEADER + (REGISTERS * BITS).div_ceil(8);
/// Encoding byte of a dense sketch.
pub const DENSE: u8 = 0;
/// Encoding byte of a sparse sketch.
pub const SPARSE: u8 = 1;
/// The magic the value starts with.
const MAGIC: &[u8; 4] = b"HYLL";
/// Largest register value a VAL opcode codes.
const SPARSE_VAL_MAX_VALUE: u8 = 32;
/// Longest run of a VAL opcode.
const SPARSE_VAL_MAX_LEN: usize = 4;
/// Longest run of a ZERO opcode.
const SPARSE_ZERO_MAX_LEN: usize = 64;
/// Seed of the element hash (Redis's).
const SEED: u64 = 0xadc8_3b19;
/// `1 / (2 ln 2)`, the estimator's constant for m → ∞.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// Why a value is not a usable sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HllError {
    /// Not a HyperLogLog at all: bad magic, encoding or dense length (`WRONGTYPE`).
    NotHll,
    /// Looks like one but its registers do not decode (`INVALIDOBJ`).
    Corrupt,
}

/// MurmurHash2, 64-bit version A (Austin Appleby's), reading 8-byte blocks little-endian.
pub fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut blocks = data.chunks_exact(8);
    for block in blocks.by_ref() {
        let mut k = u64::from_le_bytes(block.try_into().unwrap_or([0; 8]));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element lands in and the value it proposes (trailing zeros of the rest of the hash,
/// plus one).
pub fn position(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    // A sentinel bit bounds the count at Q + 1.
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// A new, empty sparse sketch (cached cardinality 0, valid).
pub fn new_sparse() -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + 2);
    v.extend_from_slice(MAGIC);
    v.push(SPARSE);
    v.extend_from_slice(&[0; 11]);
    push_xzero(&mut v, REGISTERS);
    v
}

/// Checks a string value is a sketch (Redis's `isHLLObjectOrReply`), returning its encoding.
pub fn check(value: &[u8]) -> Result<u8, HllError> {
    if value.len() < HEADER || &value[..4] != MAGIC {
        return Err(HllError::NotHll);
    }
    match value[4] {
        DENSE if value.len() == DENSE_SIZE => Ok(DENSE),
        SPARSE => Ok(SPARSE),
        _ => Err(HllError::NotHll),
    }
}

/// Whether the cached cardinality is valid.
pub fn cache_valid(hll: &[u8]) -> bool {
    hll[15] & 0x80 == 0
}

/// The cached cardinality.
pub fn cached(hll: &[u8]) -> u64 {
    u64::from_le_bytes(hll[8..16].try_into().unwrap_or([0; 8]))
}

/// Stores a cardinality in the cache (marking it valid).
pub fn set_cache(hll: &mut [u8], card: u64) {
    hll[8..16].copy_from_slice(&card.to_le_bytes());
}

/// Marks the cached cardinality stale.
pub fn invalidate_cache(hll: &mut [u8]) {
    hll[15] |= 0x80;
}

/// Dense register `i` of the register bytes `regs`.
pub fn dense_get(regs: &[u8], i: usize) -> u8 {
    let bit = i * BITS;
    let (byte, shift) = (bit / 8, bit % 8);
    let lo = u16::from(regs.get(byte).copied().unwrap_or(0));
    let hi = u16::from(regs.get(byte + 1).copied().unwrap_or(0));
    (((lo | (hi << 8)) >> shift) & 0x3f) as u8
}

/// Sets dense register `i` of `regs` to `v` (< 64).
pub fn dense_set(regs: &mut [u8], i: usize, v: u8) {
    let bit = i * BITS;
    let (byte, shift) = (bit / 8, bit % 8);
    let mask = 0x3fu16 << shift;
    let val = u16::from(v & 0x3f) << shift;
    if let Some(b) = regs.get_mut(byte) {
        *b = (*b & !(mask as u8)) | val as u8;
    }
    if let Some(b) = regs.get_mut(byte + 1) {
        *b = (*b & !((mask >> 8) as u8)) | (val >> 8) as u8;
    }
}

fn push_zero_run(out: &mut Vec<u8>, len: usize) {
    if len > SPARSE_ZERO_MAX_LEN {
        push_xzero(out, len);
    } else {
        out.push((len - 1) as u8);
    }
}

fn push_xzero(out: &mut Vec<u8>, len: usize) {
    let l = len - 1;
    out.push(0x40 | ((l >> 8) as u8 & 0x3f));
    out.push((l & 0xff) as u8);
}

fn val_op(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len - 1) as u8
}

/// One decoded sparse opcode.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A run of zero registers coded in `bytes` bytes.
    Zero { len: usize, bytes: usize },
    /// A run of registers of one value.
    Val { value: u8, len: usize },
}

/// Decodes the opcode at the start of `code`.
fn op_at(code: &[u8]) -> Op {
    let b = code[0];
    if b & 0xc0 == 0 {
        Op::Zero {
            len: usize::from(b & 0x3f) + 1,
            bytes: 1,
        }
    } else if b & 0xc0 == 0x40 {
        let lo = usize::from(code.get(1).copied().unwrap_or(0));
        Op::Zero {
            len: ((usize::from(b & 0x3f) << 8) | lo) + 1,
            bytes: 2,
        }
    } else {
        Op::Val {
            value: ((b >> 2) & 0x1f) + 1,
            len: usize::from(b & 0x3) + 1,
        }
    }
}

/// Walks the runs of a sparse code, calling `f(first register, run length, value)`; fails unless they
/// cover exactly the registers.
fn sparse_runs(code: &[u8], mut f: impl FnMut(usize, usize, u8)) -> Result<(), HllError> {
    let (mut p, mut idx) = (0, 0);
    while p < code.len() {
        let (len, value, bytes) = match op_at(&code[p..]) {
            Op::Zero { len, bytes } => (len, 0, bytes),
            Op::Val { value, len } => (len, value, 1),
        };
        // A run past the registers, or an XZERO cut off by the end of the value.
        if idx + len > REGISTERS || p + bytes > code.len() {
            return Err(HllError::Corrupt);
        }
        f(idx, len, value);
        idx += len;
        p += bytes;
    }
    if idx == REGISTERS {
        Ok(())
    } else {
        Err(HllError::Corrupt)
    }
}

/// The registers of a checked sketch, one byte each.
#[cfg(test)]
pub fn registers(hll: &[u8]) -> Result<Vec<u8>, HllError> {
    let mut out = vec![0u8; REGISTERS];
    merge_into(&mut out, hll)?;
    Ok(out)
}

/// `max[i] = max(max[i], register i)` for a checked sketch.
pub fn merge_into(max: &mut [u8], hll: &[u8]) -> Result<(), HllError> {
    if hll[4] == DENSE {
        let regs = &hll[HEADER..];
        for (i, m) in max.iter_mut().enumerate().take(REGISTERS) {
            *m = (*m).max(dense_get(regs, i));
        }
        Ok(())
    } else {
        sparse_runs(&hll[HEADER..], |first, len, value| {
            if value > 0 {
                for m in &mut max[first..first + len] {
                    *m = (*m).max(value);
                }
            }
        })
    }
}

/// Converts a sparse sketch to dense in place (header, cache included, kept).
pub fn to_dense(hll: &mut Vec<u8>) -> Result<(), HllError> {
    if hll[4] == DENSE {
        return Ok(());
    }
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..HEADER].copy_from_slice(&hll[..HEADER]);
    dense[4] = DENSE;
    sparse_runs(&hll[HEADER..], |first, len, value| {
        if value > 0 {
            for i in first..first + len {
                dense_set(&mut dense[HEADER..], i, value);
            }
        }
    })?;
    *hll = dense;
    Ok(())
}

/// Raises register `index` to `count` if it is lower; returns whether it changed. A sparse sketch turns
/// dense when `count` is too big for VAL or its code would exceed `sparse_max_bytes`.
pub fn set(
    hll: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max_bytes: usize,
) -> Result<bool, HllError> {
    if hll[4] == SPARSE {
        if count <= SPARSE_VAL_MAX_VALUE {
            // `None`: the sketch must become dense first.
            if let Some(changed) = sparse_set(hll, index, count, sparse_max_bytes)? {
                return Ok(changed);
            }
        }
        to_dense(hll)?;
    }
    let regs = &mut hll[HEADER..];
    if dense_get(regs, index) < count {
        dense_set(regs, index, count);
        Ok(true)
    } else {
        Ok(false)
    }
}

/// The sparse update; `Ok(None)` when the sketch must become dense first.
fn sparse_set(
    hll: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max_bytes: usize,
) -> Result<Option<bool>, HllError> {
    // Find the opcode covering `index`.
    let (mut p, mut first, mut prev) = (HEADER, 0usize, None);
    let op = loop {
        if p >= hll.len() {
            return Err(HllError::Corrupt);
        }
        let op = op_at(&hll[p..]);
        let (len, bytes) = match op {
            Op::Zero { len, bytes } => (len, bytes),
            Op::Val { len, .. } => (len, 1),
        };
        if index < first + len {
            break op;
        }
        prev = Some(p);
        p += bytes;
        first += len;
    };
    let (runlen, oldlen) = match op {
        Op::Zero { len, bytes } => (len, bytes),
        Op::Val { len, .. } => (len, 1),
    };
    if p + oldlen > hll.len() {
        return Err(HllError::Corrupt);
    }
    let last = first + runlen - 1;
    match op {
        Op::Val { value, .. } if value >= count => return Ok(Some(false)),
        Op::Val { .. } if runlen == 1 => hll[p] = val_op(count, 1),
        Op::Zero { bytes: 1, .. } if runlen == 1 => hll[p] = val_op(count, 1),
        _ => {
            // Split the run into (before, the register, after).
            let mut seq = Vec::with_capacity(5);
            match op {
                Op::Zero { .. } => {
                    if index != first {
                        push_zero_run(&mut seq, index - first);
                    }
                    seq.push(val_op(count, 1));
                    if index != last {
                        push_zero_run(&mut seq, last - index);
                    }
                }
                Op::Val { value, .. } => {
                    if index != first {
                        seq.push(val_op(value, index - first));
                    }
                    seq.push(val_op(count, 1));
                    if index != last {
                        seq.push(val_op(value, last - index));
                    }
                }
            }
            // The limit counts the header too, as Redis's does.
            if seq.len() > oldlen && hll.len() + seq.len() - oldlen > sparse_max_bytes {
                return Ok(None);
            }
            hll.splice(p..p + oldlen, seq);
        }
    }
    // Merge equal neighbouring VAL runs, looking at a few opcodes from the one before the change.
    let mut q = prev.unwrap_or(HEADER);
    let mut scan = 5;
    while q < hll.len() && scan > 0 {
        scan -= 1;
        match op_at(&hll[q..]) {
            Op::Zero { bytes, .. } => {
                q += bytes;
                continue;
            }
            Op::Val { value, len } => {
                if let Some(&next) = hll.get(q + 1)
                    && next & 0x80 != 0
                    && let Op::Val {
                        value: v2,
                        len: len2,
                    } = op_at(&hll[q + 1..])
                    && v2 == value
                    && len + len2 <= SPARSE_VAL_MAX_LEN
                {
                    hll[q + 1] = val_op(value, len + len2);
                    hll.remove(q);
                    continue;
                }
            }
        }
        q += 1;
    }
    Ok(Some(true))
}

/// Adds an element; returns whether a register changed.
pub fn add(hll: &mut Vec<u8>, element: &[u8], sparse_max_bytes: usize) -> Result<bool, HllError> {
    let (index, count) = position(element);
    set(hll, index, count, sparse_max_bytes)
}

/// The histogram of register values of a checked sketch.
pub fn histogram(hll: &[u8]) -> Result<[u32; 64], HllError> {
    let mut h = [0u32; 64];
    if hll[4] == DENSE {
        let regs = &hll[HEADER..];
        for i in 0..REGISTERS {
            h[usize::from(dense_get(regs, i))] += 1;
        }
    } else {
        sparse_runs(&hll[HEADER..], |_, len, value| {
            h[usize::from(value)] += len as u32;
        })?;
    }
    Ok(h)
}

/// The histogram of raw registers (one byte each, as a union builds them).
pub fn histogram_raw(regs: &[u8]) -> [u32; 64] {
    let mut h = [0u32; 64];
    for &r in regs {
        h[usize::from(r & 0x3f)] += 1;
    }
    h
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

/// The cardinality estimate from a register histogram.
pub fn estimate(h: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - f64::from(h[q + 1])) / m);
    for j in (1..=q).rev() {
        z += f64::from(h[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(h[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

/// `PFDEBUG DECODE`: the sparse code as `z:len`, `Z:len` and `v:value,len` items.
pub fn decode_sparse(hll: &[u8]) -> Result<String, HllError> {
    let code = &hll[HEADER..];
    let mut out = Vec::new();
    let mut p = 0;
    while p < code.len() {
        match op_at(&code[p..]) {
            Op::Zero { len, bytes: 1 } => {
                out.push(format!("z:{len}"));
                p += 1;
            }
            Op::Zero { len, bytes } => {
                out.push(format!("Z:{len}"));
                p += bytes;
            }
            Op::Val { value, len } => {
                out.push(format!("v:{value},{len}"));
                p += 1;
            }
        }
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes Redis 7.0.15 stores after `PFADD h a b c d e f g` (read back with GET from redis-server):
    /// same hash, same registers, same sparse code.
    #[test]
    fn sparse_bytes_match_redis() {
        let mut h = new_sparse();
        for e in ["a", "b", "c", "d", "e", "f", "g"] {
            add(&mut h, e.as_bytes(), 3000).expect("add");
        }
        invalidate_cache(&mut h);
        let mut expected = b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80".to_vec();
        expected.extend_from_slice(&[
            0x46, 0x6d, 0x80, 0x56, 0x0c, 0x80, 0x44, 0x3c, 0x84, 0x38, 0x80, 0x50, 0xb1, 0x84,
            0x49, 0x8c, 0x80, 0x42, 0x6d, 0x80, 0x42, 0x5a,
        ]);
        assert_eq!(h, expected);
        assert_eq!(
            decode_sparse(&h).expect("decode"),
            "Z:1646 v:1,1 Z:5645 v:1,1 Z:1085 v:2,1 z:57 v:1,1 Z:4274 v:2,1 Z:2445 v:1,1 Z:622 v:1,1 Z:603"
        );
    }

    #[test]
    fn truncated_or_overlong_sparse_codes_are_corrupt() {
        let mut h = new_sparse();
        h.pop();
        assert_eq!(histogram(&h), Err(HllError::Corrupt));
        assert_eq!(add(&mut h, b"x", 3000), Err(HllError::Corrupt));
        let mut h = new_sparse();
        h.push(0x00);
        assert_eq!(histogram(&h), Err(HllError::Corrupt));
        // Every one-byte corruption of a small sketch is either still valid or reported, never a panic.
        let mut base = new_sparse();
        for e in 0..50u32 {
            add(&mut base, &e.to_le_bytes(), 3000).expect("add");
        }
        for pos in HEADER..base.len() {
            for b in [0x00, 0x3f, 0x40, 0x7f, 0x80, 0xff] {
                let mut h = base.clone();
                h[pos] = b;
                let _ = histogram(&h);
                let _ = add(&mut h, b"more", 3000);
                let _ = to_dense(&mut h);
            }
        }
    }

    #[test]
    fn dense_registers_round_trip() {
        let mut regs = vec![0u8; DENSE_SIZE - HEADER];
        let mut x: u64 = 7;
        let mut model = vec![0u8; REGISTERS];
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % REGISTERS;
            let v = ((x >> 32) % 64) as u8;
            dense_set(&mut regs, i, v);
            model[i] = v;
        }
        for (i, &v) in model.iter().enumerate() {
            assert_eq!(dense_get(&regs, i), v);
        }
    }

    #[test]
    fn sparse_and_dense_agree() {
        let mut sparse = new_sparse();
        let mut dense = new_sparse();
        to_dense(&mut dense).expect("dense");
        for i in 0..2000u32 {
            let e = i.to_string();
            let a = add(&mut sparse, e.as_bytes(), 3000).expect("add");
            let b = add(&mut dense, e.as_bytes(), 3000).expect("add");
            assert_eq!(a, b);
            assert_eq!(
                registers(&sparse).expect("regs"),
                registers(&dense).expect("regs")
            );
        }
        assert_eq!(
            estimate(&histogram(&sparse).expect("h")),
            estimate(&histogram(&dense).expect("h"))
        );
    }

    /// The relative error over independent sets of a million distinct elements: its root mean square is
    /// the standard error 1.04 / sqrt(16384) = 0.81% (deterministic: fixed element sets).
    #[test]
    fn error_on_a_million_elements_is_the_standard_error() {
        const N: u64 = 1_000_000;
        const SETS: u64 = 12;
        let mut sum_sq = 0.0;
        let mut worst: f64 = 0.0;
        for set in 0..SETS {
            let mut h = new_sparse();
            for i in 0..N {
                let e = format!("set{set}:{i}");
                add(&mut h, e.as_bytes(), 3000).expect("add");
            }
            let est = estimate(&histogram(&h).expect("h")) as f64;
            let err = (est - N as f64) / N as f64;
            sum_sq += err * err;
            worst = worst.max(err.abs());
        }
        let rms = (sum_sq / SETS as f64).sqrt();
        println!(
            "HLL on {SETS} sets of {N}: rms error {:.3}%, worst {:.3}%",
            rms * 100.0,
            worst * 100.0
        );
        assert!(rms <= 0.0081, "rms error {rms}");
        assert!(worst <= 3.0 * 0.0081, "worst error {worst}");
    }

    proptest::proptest! {
        /// In-place sparse updates (run splitting, VAL merging, promotion at any size limit) keep the
        /// registers equal to a plain array of maxima, and the code always decodes.
        #[test]
        fn sparse_updates_match_a_register_model(
            ops in proptest::collection::vec((0usize..REGISTERS, 1u8..=51), 0..400),
            clustered in proptest::bool::ANY,
            max_bytes in 20usize..3000,
        ) {
            let mut h = new_sparse();
            let mut model = vec![0u8; REGISTERS];
            for (i, v) in ops {
                // Clustered indexes exercise splits and merges of neighbouring runs.
                let i = if clustered { i % 64 } else { i };
                let changed = set(&mut h, i, v, max_bytes).expect("set");
                proptest::prop_assert_eq!(changed, v > model[i]);
                model[i] = model[i].max(v);
                if h[4] == SPARSE {
                    proptest::prop_assert!(h.len() <= max_bytes.max(HEADER + 2) || h.len() == 18);
                }
            }
            proptest::prop_assert_eq!(registers(&h).expect("registers"), model);
        }
    }

    #[test]
    fn empty_counts_zero_and_small_sets_are_exact() {
        let mut h = new_sparse();
        assert_eq!(h.len(), 18);
        assert_eq!(estimate(&histogram(&h).expect("h")), 0);
        for e in ["1", "2", "3", "4", "5"] {
            add(&mut h, e.as_bytes(), 3000).expect("add");
        }
        assert_eq!(estimate(&histogram(&h).expect("h")), 5);
    }
}
