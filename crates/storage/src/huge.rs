//! Large tables on transparent huge pages: one of the two modules of strata-storage that allow `unsafe`.
//!
//! The memtable's key index is tens of MB of 16-byte slots read at random (every new key probes one). On
//! 4 KiB pages each probe also misses the TLB, and on a virtual machine the page walk behind that miss is
//! two-dimensional: XADD -P16's applying thread waited ~6% of its time on its slot prefetch alone. The
//! index is sharded (16 tables, each well under 2 MiB in a 64 MiB memtable), so the shards' tables are
//! carved out of one region ([`HugeSlice::split`]), which from 2 MiB up is allocated 2 MiB-aligned, a whole
//! number of huge pages long, and marked `MADV_HUGEPAGE` before anything touches it: the kernel backs it
//! with 2 MiB pages where it has them (it falls back to small pages silently, and the system's
//! `transparent_hugepage` setting `never` turns the hint off). Only these tables ask: the whole heap on huge
//! pages (jemalloc's `thp:always`) made PFADD -P16 a third slower from huge-page zeroing and compaction
//! stalls, and grew the resident set.
#![allow(unsafe_code)]

use std::alloc::Layout;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

/// A transparent huge page on x86_64 and most Linux targets.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

/// A fixed-length slice of `T`, each element `T::default()` to start with, in a region that is on huge
/// pages when it spans at least one. The slices [`HugeSlice::split`] makes share one region, which is freed
/// with the last of them; each owns (and drops) its own elements.
pub struct HugeSlice<T> {
    ptr: NonNull<T>,
    len: usize,
    /// The memory, shared by the slices cut from it (none when the slice takes no bytes).
    _region: Option<Arc<Region>>,
}

/// One allocation, freed when the last slice in it is dropped.
struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a region is only an address range to free; nothing reads it through `Region`.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `HugeSlice::split` with this layout (non-zero size), freed once, here, after
        // every slice in it dropped its elements (each holds the `Arc` this is the last of).
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

// SAFETY: a `HugeSlice<T>` owns its elements as a `Box<[T]>` does (no other slice reaches them: slices of
// one region are disjoint); sending it sends them, and the shared region is only freed.
unsafe impl<T: Send> Send for HugeSlice<T> {}
// SAFETY: as above: `&HugeSlice<T>` only hands out `&[T]`.
unsafe impl<T: Sync> Sync for HugeSlice<T> {}

impl<T: Default> HugeSlice<T> {
    /// `len` default elements.
    pub fn new(len: usize) -> Self {
        Self::split(1, len).pop().expect("one part")
    }

    /// `parts` slices of `len` default elements each, side by side in one region.
    pub fn split(parts: usize, len: usize) -> Vec<Self> {
        let total = parts
            .checked_mul(len)
            .expect("a slice the address space can hold");
        let layout = Self::layout(total);
        if layout.size() == 0 {
            let each = || HugeSlice {
                ptr: NonNull::dangling(),
                len,
                _region: None,
            };
            return (0..parts).map(|_| each()).collect();
        }
        // SAFETY: the layout's size is non-zero.
        let raw = unsafe { std::alloc::alloc(layout) };
        let Some(base) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        let region = Arc::new(Region { ptr: base, layout });
        if layout.align() == HUGE_PAGE_BYTES {
            advise_huge(base.as_ptr(), layout.size());
        }
        let first = base.cast::<T>();
        for i in 0..total {
            // SAFETY: `i < total`, inside the allocation of `total` elements; each is written once, before
            // any read. A panicking `T::default()` leaks the region and the elements written so far.
            unsafe { first.as_ptr().add(i).write(T::default()) };
        }
        (0..parts)
            .map(|p| HugeSlice {
                // SAFETY: `p * len <= total`: at most one past the end of the allocation.
                ptr: unsafe { first.add(p * len) },
                len,
                _region: Some(region.clone()),
            })
            .collect()
    }
}

impl<T> HugeSlice<T> {
    /// The allocation of `len` elements: from one huge page up, huge-page aligned and a whole number of
    /// them long (the kernel maps only whole aligned huge pages as such).
    fn layout(len: usize) -> Layout {
        let array = Layout::array::<T>(len).expect("a slice the address space can hold");
        if array.size() >= HUGE_PAGE_BYTES {
            array
                .align_to(HUGE_PAGE_BYTES)
                .expect("a huge page is a valid alignment")
                .pad_to_align()
        } else {
            array
        }
    }
}

impl<T> Deref for HugeSlice<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised elements no other slice reaches (or is dangling with
        // nothing to read when they take no bytes), kept alive by `_region` for as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for HugeSlice<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: the elements are initialised, owned by this slice alone, and dropped once, here; the
        // memory stays allocated until `_region` (dropped after this) is released by its last slice.
        unsafe {
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.len,
            ));
        }
    }
}

/// Asks the kernel to back `[start, start + len)` with huge pages. A hint: failure changes nothing.
fn advise_huge(start: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: the range is an allocation this module owns and nothing reads yet; MADV_HUGEPAGE only changes
    // how the kernel backs it, never its contents or validity.
    unsafe {
        let _ = rustix::mm::madvise(start.cast(), len, rustix::mm::Advice::LinuxHugepage);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_start_default_and_drop_their_elements() {
        let marker = Arc::new(());
        for len in [0, 1, 1000, HUGE_PAGE_BYTES / 16, HUGE_PAGE_BYTES / 8 + 3] {
            let mut s: HugeSlice<(u64, Option<Arc<()>>)> = HugeSlice::new(len);
            assert_eq!(s.len(), len);
            assert!(s.iter().all(|(h, a)| *h == 0 && a.is_none()));
            for slot in s.iter_mut().step_by(97) {
                *slot = (7, Some(marker.clone()));
            }
            assert_eq!(Arc::strong_count(&marker), 1 + len.div_ceil(97));
            if len * 16 >= HUGE_PAGE_BYTES {
                assert_eq!(s.as_ptr() as usize % HUGE_PAGE_BYTES, 0);
            }
            drop(s);
            assert_eq!(Arc::strong_count(&marker), 1);
        }
    }

    #[test]
    fn split_slices_are_disjoint_and_outlive_each_other() {
        let marker = Arc::new(());
        let len = HUGE_PAGE_BYTES / 16 / 4;
        let mut parts: Vec<HugeSlice<(u64, Option<Arc<()>>)>> = HugeSlice::split(16, len);
        assert_eq!(parts[0].as_ptr() as usize % HUGE_PAGE_BYTES, 0);
        for (i, p) in parts.iter_mut().enumerate() {
            assert_eq!(p.len(), len);
            for slot in p.iter_mut() {
                *slot = (i as u64, Some(marker.clone()));
            }
        }
        for w in parts.windows(2) {
            assert_eq!(w[0].as_ptr_range().end, w[1].as_ptr());
        }
        // Dropped in any order: each drops its own elements; the region goes with the last.
        let last = parts.remove(7);
        drop(parts);
        assert_eq!(Arc::strong_count(&marker), 1 + len);
        assert!(last.iter().all(|(h, _)| *h == 7));
        drop(last);
        assert_eq!(Arc::strong_count(&marker), 1);
    }

    #[test]
    fn zero_sized_elements_take_no_memory() {
        let s: HugeSlice<()> = HugeSlice::new(1 << 20);
        assert_eq!(s.len(), 1 << 20);
        assert_eq!(HugeSlice::<()>::split(3, 5).len(), 3);
    }
}
