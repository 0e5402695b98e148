//! The active expiry task: removes expired keys nobody reads, with bounded work per tick.
//!
//! Like Redis's `activeExpireCycle`, it runs ten times a second and spends at most a quarter of each tick.
//! Redis samples random keys with a TTL and repeats while more than a quarter of a sample was expired;
//! strata's expiry index is ordered by deadline, so a pass visits exactly the due keys, and it repeats
//! while a pass used its whole budget (more may be due) and the tick's time is not used up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::Shared;

/// Time between ticks (Redis's `hz 10`).
const TICK: Duration = Duration::from_millis(100);
/// Most time one tick spends (Redis's 25% of a tick).
const TICK_BUDGET: Duration = Duration::from_millis(25);
/// Index entries visited per pass, over all databases.
const PASS_BUDGET: usize = 200;

/// Runs active expiry for `shared` until `shutdown` is cancelled, then waits for the tick in progress.
///
/// The ticks run on a thread of their own at the engine's background priority (see
/// [`strata_storage::flush::background_priority`]), as flushes and compactions do: removing expired keys
/// nobody reads is background work, and on a small machine it should take the cores the connections and
/// their clients leave idle rather than theirs. (Redis runs it on its one thread, a quarter of each tick.)
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    // One tick at most waits: a tick still running when the next is due takes its place.
    let (due, ticks) = std::sync::mpsc::sync_channel::<()>(1);
    let sh = shared.clone();
    let priority = shared.keyspace.storage().background_priority();
    let spawned = std::thread::Builder::new()
        .name("strata-expire".into())
        .spawn(move || {
            strata_storage::flush::background_priority(priority);
            while ticks.recv().is_ok() {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one_tick(&sh))).is_err()
                {
                    tracing::error!("active expiry tick panicked");
                }
            }
        });
    let thread = match spawned {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the active expiry thread; keys expire when read");
            return;
        }
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let _ = due.try_send(());
    }
    drop(due);
    let _ = tokio::task::spawn_blocking(move || thread.join()).await;
}

/// One tick: passes until nothing more is due or the tick's time is used up. Returns the keys removed.
pub fn one_tick(sh: &Shared) -> usize {
    // While writes are paused (CLIENT PAUSE) keys are not removed, as in Redis.
    if sh.pause.maybe_active() && sh.pause.paused_until(true).is_some() {
        return 0;
    }
    let started = Instant::now();
    let deadline = started + TICK_BUDGET;
    let mut total = 0;
    let total = loop {
        // Shared with commands, exclusive with EXEC and SWAPDB: a transaction never sees a key vanish
        // half-way through, as in Redis.
        let removed = {
            // Never waits for a long script (or SCRIPT KILL could find no free worker): the tick is
            // skipped instead.
            let Some(_shared) = sh
                .exec_lock
                .try_read_for(std::time::Duration::from_millis(10))
            else {
                return total;
            };
            let flags = sh.notify.flags();
            sh.keyspace
                .expire_cycle_with(sh.keyspace.now_ms(), PASS_BUDGET, |db, key| {
                    if flags & crate::notify::EXPIRED != 0 {
                        crate::notify::publish(sh, flags, db, key, "expired");
                    }
                    sh.evict.forget(db, key);
                    sh.tracking.invalidate(sh, key, None, None);
                })
        };
        sh.tracking.flush_broadcasts(sh);
        match removed {
            Ok(n) => {
                total += n;
                if n < PASS_BUDGET || Instant::now() >= deadline {
                    break total;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "active expiry failed");
                break total;
            }
        }
    };
    sh.latency.observe("expire-cycle", started.elapsed());
    total
}
