//! Single-flight loading: when many threads miss the same key at once, one computes and the others wait.
//!
//! Each shard keeps a short list of the loads in progress. The first thread to miss a key registers a
//! [`Flight`] and becomes its *leader*; later threads find it and wait on its condition variable. The
//! leader stores the value in the cache *before* it deregisters the flight, and a thread that finds no
//! flight re-checks the cache under the same lock, so a value is never computed twice because a thread
//! arrived between the insert and the deregistration.
//!
//! A leader that fails (its loader returned an error) or panics leaves the flight *abandoned*: its guard's
//! `Drop` marks it so and wakes the waiters, who then start over (one of them becomes the next leader).
//! Nobody waits forever on a leader that is gone.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// The state of one load.
enum State<V> {
    Running,
    Done(V),
    Abandoned,
}

/// One load in progress for one key.
pub(crate) struct Flight<K, V> {
    pub(crate) hash: u64,
    pub(crate) key: K,
    state: Mutex<State<V>>,
    finished: Condvar,
}

impl<K, V: Clone> Flight<K, V> {
    pub(crate) fn new(hash: u64, key: K) -> Self {
        Self {
            hash,
            key,
            state: Mutex::new(State::Running),
            finished: Condvar::new(),
        }
    }

    /// Blocks until the leader finishes: `Some(value)` if it succeeded, `None` if it gave up.
    pub(crate) fn wait(&self) -> Option<V> {
        let mut state = self.state.lock();
        loop {
            match &*state {
                State::Running => self.finished.wait(&mut state),
                State::Done(v) => return Some(v.clone()),
                State::Abandoned => return None,
            }
        }
    }

    fn finish(&self, outcome: State<V>) {
        *self.state.lock() = outcome;
        self.finished.notify_all();
    }
}

/// The loads in progress in one shard. Small: at most one per thread currently loading.
pub(crate) type Flights<K, V> = Mutex<Vec<Arc<Flight<K, V>>>>;

/// Held by the leader while it loads; deregisters the flight and wakes waiters however the load ends.
pub(crate) struct LeaderGuard<'a, K, V: Clone> {
    flights: &'a Flights<K, V>,
    flight: Arc<Flight<K, V>>,
    outcome: Option<V>,
}

impl<'a, K, V: Clone> LeaderGuard<'a, K, V> {
    pub(crate) fn new(flights: &'a Flights<K, V>, flight: Arc<Flight<K, V>>) -> Self {
        Self {
            flights,
            flight,
            outcome: None,
        }
    }

    /// Records success; waiters receive `value` when the guard drops.
    pub(crate) fn succeed(mut self, value: V) {
        self.outcome = Some(value);
    }
}

impl<K, V: Clone> Drop for LeaderGuard<'_, K, V> {
    fn drop(&mut self) {
        self.flights
            .lock()
            .retain(|f| !Arc::ptr_eq(f, &self.flight));
        let outcome = match self.outcome.take() {
            Some(v) => State::Done(v),
            // The loader failed or panicked (we are unwinding): waiters must retry, not hang.
            None => State::Abandoned,
        };
        self.flight.finish(outcome);
    }
}
