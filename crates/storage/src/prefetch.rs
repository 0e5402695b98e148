//! Cache prefetch hints, for one instruction: one of the two modules of strata-storage that allow
//! `unsafe` (with [`crate::huge`]).
//!
//! The memtable's key index is tens of MB, so a write of a new key misses the cache (and the TLB) on its
//! index slot. A command that knows early which new keys it will write (XADD its entry, XREADGROUP its
//! pending records) asks for their slots then, and the misses overlap the rest of its work instead of
//! stalling the commit ([`crate::Tree::prefetch_write`]). It is public so the crates above can hint at their
//! own tables the same way (strata-kv's plain-key filter) without an `unsafe` of their own.
#![allow(unsafe_code)]

/// Asks the CPU to start loading the cache line that holds `p`. Any address is allowed (null, freed,
/// unmapped): the hint never faults and changes nothing but the cache.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint with no architectural effect; it does not fault on any address, so `p`
    // need not be valid, aligned or even mapped. SSE, which it belongs to, is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::prefetch;

    #[test]
    fn any_address_is_a_harmless_hint() {
        let live = vec![7u64; 64];
        prefetch(live.as_ptr());
        prefetch(live.as_ptr().wrapping_add(1 << 40));
        prefetch(std::ptr::null::<u64>());
        let freed = {
            let v = vec![1u64; 1024];
            v.as_ptr()
        };
        prefetch(freed);
        prefetch(usize::MAX as *const u8);
        assert_eq!(live.iter().sum::<u64>(), 7 * 64);
    }
}
