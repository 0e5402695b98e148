//! Reads in flight, so a commit knows when an old memtable version can no longer be read by anyone.
//!
//! Every read takes its seqno from `visible_seqno`: a point read for the moment it runs
//! ([`crate::db::DbInner::latest`]), an iterator and a snapshot for as long as they live. Each of them
//! first *enters* here (an increment of one of a few counters), then loads the seqno. A commit leader
//! loads `visible_seqno` first and then sums the counters ([`Readers::horizon`]): when nobody is reading,
//! every read that starts later enters after that sum and so loads a seqno at least the one the leader
//! loaded. A memtable version whose successor is at or below that seqno is then shadowed for every
//! present and future reader, and the memtable drops it as the leader applies its group
//! ([`crate::memtable::MemTable::add`]): a key rewritten a million times keeps two versions, not a million.
//!
//! The counters are striped by thread so concurrent readers do not share a cache line; a guard may end
//! on another thread than it began (an iterator sent elsewhere), which the wrapping sum tolerates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const STRIPES: usize = 8;

#[repr(align(64))]
#[derive(Default)]
struct Stripe(AtomicUsize);

/// The count of reads in flight, striped by thread.
#[derive(Default)]
pub(crate) struct Readers {
    stripes: [Stripe; STRIPES],
}

/// This thread's stripe.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

impl Readers {
    /// Enters a read for the life of the guard. Take the read's seqno after this.
    pub(crate) fn enter(&self) -> ReadGuard<'_> {
        let stripe = stripe();
        self.stripes[stripe].0.fetch_add(1, Ordering::SeqCst);
        ReadGuard {
            readers: self,
            stripe,
        }
    }

    /// [`Readers::enter`] for a reader that outlives the borrow (an iterator, a snapshot).
    pub(crate) fn enter_owned(self: &Arc<Self>) -> OwnedReadGuard {
        let stripe = stripe();
        self.stripes[stripe].0.fetch_add(1, Ordering::SeqCst);
        OwnedReadGuard {
            readers: self.clone(),
            stripe,
        }
    }

    /// The seqno at or below which a version's successor makes it unreadable: `visible` as loaded now
    /// when no read is in flight, else 0 (nothing may be dropped).
    pub(crate) fn horizon(&self, visible: &std::sync::atomic::AtomicU64) -> u64 {
        let seqno = visible.load(Ordering::SeqCst);
        let in_flight = self
            .stripes
            .iter()
            .fold(0usize, |n, s| n.wrapping_add(s.0.load(Ordering::SeqCst)));
        if in_flight == 0 { seqno } else { 0 }
    }

    fn leave(&self, stripe: usize) {
        self.stripes[stripe].0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A read in flight (see [`Readers::enter`]).
pub(crate) struct ReadGuard<'a> {
    readers: &'a Readers,
    stripe: usize,
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.readers.leave(self.stripe);
    }
}

/// A read in flight that owns its handle on the counters.
pub(crate) struct OwnedReadGuard {
    readers: Arc<Readers>,
    stripe: usize,
}

impl Drop for OwnedReadGuard {
    fn drop(&mut self) {
        self.readers.leave(self.stripe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn the_horizon_is_zero_while_anyone_reads() {
        let readers = Arc::new(Readers::default());
        let visible = AtomicU64::new(42);
        assert_eq!(readers.horizon(&visible), 42);
        let g = readers.enter();
        assert_eq!(readers.horizon(&visible), 0);
        let owned = readers.enter_owned();
        drop(g);
        assert_eq!(readers.horizon(&visible), 0);
        // An owned guard may end on another thread (another stripe).
        std::thread::spawn(move || drop(owned)).join().unwrap();
        assert_eq!(readers.horizon(&visible), 42);
    }
}
