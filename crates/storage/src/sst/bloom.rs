//! A cache-local bloom filter over user keys.
//!
//! Each key hashes to one 64-byte cache line and sets `k` bits inside it, so a lookup touches one cache
//! line. For the same bits per key this has a slightly higher false-positive rate than a classic filter
//! (about 1.1% instead of 0.8% at 10 bits per key) and is much faster to probe.
//!
//! Layout: `lines * 64` bytes of bits, then one byte `k` (number of probes, 1..=30).

use bytes::Bytes;

/// Bits in one cache line.
const LINE_BITS: u64 = 512;
const LINE_BYTES: usize = 64;
/// Upper bound on probes per key: more buys nothing and would only slow lookups.
const MAX_PROBES: u32 = 30;

/// A 64-bit hash of a user key. Stable: it is persisted in every filter block, so it must never change
/// without a format version bump.
pub fn key_hash(key: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h: u64 = 0x5354_5241_5441_0001 ^ (key.len() as u64).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut a = [0u8; 8];
        a[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(a)).wrapping_mul(K).rotate_left(29);
    }
    // Murmur3's finaliser: full avalanche so both halves are usable independently.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[inline]
fn line_of(h: u64, lines: u64) -> u64 {
    // Multiply-shift maps the high 32 bits onto 0..lines without a division.
    ((h >> 32) * lines) >> 32
}

/// Collects key hashes and builds the filter block.
#[derive(Debug, Default)]
pub struct BloomBuilder {
    hashes: Vec<u64>,
}

impl BloomBuilder {
    /// Makes room for `n` more hashes at once (doubling to a million copies ~8 MB onto fresh pages).
    pub fn reserve(&mut self, n: usize) {
        self.hashes.reserve(n);
    }

    /// Adds one user key's hash ([`key_hash`]).
    pub fn add_hash(&mut self, h: u64) {
        self.hashes.push(h);
    }

    /// Number of hashes added.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// True when no key was added.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Builds the filter block for `bits_per_key` (> 0).
    pub fn finish(&self, bits_per_key: u32) -> Vec<u8> {
        let bits_per_key = u64::from(bits_per_key.max(1));
        let total_bits = (self.hashes.len() as u64).saturating_mul(bits_per_key);
        let lines = total_bits.div_ceil(LINE_BITS).max(1);
        // ln 2 * bits per key minimises the false-positive rate of a classic filter.
        let k = ((bits_per_key as f64) * 0.69)
            .round()
            .clamp(1.0, f64::from(MAX_PROBES)) as u32;
        let mut out = vec![0u8; lines as usize * LINE_BYTES + 1];
        for &h in &self.hashes {
            let base = (line_of(h, lines) as usize) * LINE_BYTES;
            let mut g = h as u32;
            for _ in 0..k {
                let bit = (g >> 23) as usize; // top 9 bits: 0..512
                out[base + bit / 8] |= 1 << (bit % 8);
                g = g.wrapping_mul(0x9E37_79B9);
            }
        }
        out[lines as usize * LINE_BYTES] = k as u8;
        out
    }
}

/// A filter read back from a file.
#[derive(Debug, Clone)]
pub struct Bloom {
    data: Bytes,
    lines: u64,
    k: u32,
}

impl Bloom {
    /// Validates a filter block; the error says what is wrong.
    pub fn from_bytes(data: Bytes) -> Result<Self, &'static str> {
        let Some(bits_len) = data.len().checked_sub(1) else {
            return Err("empty filter block");
        };
        if bits_len == 0 || bits_len % LINE_BYTES != 0 {
            return Err("filter length is not a whole number of cache lines");
        }
        let k = u32::from(data[bits_len]);
        if k == 0 || k > MAX_PROBES {
            return Err("filter probe count out of range");
        }
        Ok(Bloom {
            lines: (bits_len / LINE_BYTES) as u64,
            data,
            k,
        })
    }

    /// False means the key is certainly absent.
    #[inline]
    pub fn may_contain_hash(&self, h: u64) -> bool {
        let base = (line_of(h, self.lines) as usize) * LINE_BYTES;
        let mut g = h as u32;
        for _ in 0..self.k {
            let bit = (g >> 23) as usize;
            match self.data.get(base + bit / 8) {
                Some(byte) if byte & (1 << (bit % 8)) != 0 => {}
                _ => return false,
            }
            g = g.wrapping_mul(0x9E37_79B9);
        }
        true
    }

    /// False means the key is certainly absent.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.may_contain_hash(key_hash(user_key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_low_fp_rate() {
        let mut b = BloomBuilder::default();
        let n = 10_000u32;
        for i in 0..n {
            b.add_hash(key_hash(format!("key{i}").as_bytes()));
        }
        let f = Bloom::from_bytes(Bytes::from(b.finish(10))).unwrap();
        for i in 0..n {
            assert!(f.may_contain(format!("key{i}").as_bytes()));
        }
        let fp = (0..n)
            .filter(|i| f.may_contain(format!("other{i}").as_bytes()))
            .count();
        // About 1% expected at 10 bits per key; allow slack so the test is not flaky by design.
        assert!(fp < (n / 40) as usize, "false positives: {fp}");
    }

    #[test]
    fn tiny_and_invalid_filters() {
        let f = Bloom::from_bytes(Bytes::from(BloomBuilder::default().finish(10))).unwrap();
        assert!(!f.may_contain(b"x"));
        assert!(Bloom::from_bytes(Bytes::new()).is_err());
        assert!(Bloom::from_bytes(Bytes::from(vec![0u8; 10])).is_err());
        assert!(Bloom::from_bytes(Bytes::from(vec![0u8; 65])).is_err());
    }

    #[test]
    fn hash_is_stable() {
        // Persisted in files: a change here must come with a format version bump.
        assert_eq!(key_hash(b"strata"), 1_905_179_137_057_771_356);
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_ne!(key_hash(b"abcdefgh"), key_hash(b"abcdefgh\0"));
    }
}
