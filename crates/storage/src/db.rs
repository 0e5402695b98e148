//! The database: open/recovery, the group-commit write path, point reads, and background threads.
//!
//! ## Write path
//! A writer encodes nothing itself beyond its [`WriteBatch`]: under the commit-queue mutex it copies the
//! batch into the pending WAL frame, takes the next seqnos (and log offsets), and receives a ticket. If no
//! leader is running it becomes the leader: it takes the whole pending frame, releases the mutex, writes the
//! frame to the WAL in one call, fsyncs it (under `fsync = always`), applies it to the memtable and logs, and
//! only then publishes the group's last seqno to readers and wakes every writer of the group. Concurrent
//! writers therefore share one write and one fsync. Any WAL write, fsync or apply failure poisons the engine.
//! A group costs few locked instructions whatever its size: the memtable's writer lock and the log map's
//! read lock are taken once for the frame (`apply_frame`), and the active memtable passes from leader to
//! leader in the commit queue.
//!
//! ## Read path
//! Reads use a seqno: the latest published one, or a snapshot's. A version is visible if its seqno is at most
//! the read seqno and no range tombstone with a larger seqno (also at most the read seqno) covers it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use crate::batch::{BatchOp, FrameOps, WalFormat, WriteBatch};
use crate::error::{IoContext, Result, StorageError};
use crate::fs::FileSystem;
use crate::log::{Log, LogInner};
use crate::manifest::{self, Edit, ManifestState, ManifestWriter};
use crate::memtable::{KIND_DELETE, KIND_PUT, MemTable, tree_key};
use crate::options::{FsyncPolicy, Options};
use crate::snapshot::Snapshot;
use crate::stats::{Stats, StatsSnapshot};
use crate::tree::Tree;
use crate::wal::{self, WalWriter};

/// Number of lock stripes serializing read-modify-write operations.
const RMW_STRIPES: usize = 64;

/// The memtables readers consult: the active one and frozen ones waiting for flush (newest first).
pub(crate) struct MemSet {
    pub(crate) active: Arc<MemTable>,
    pub(crate) imms: Vec<Arc<MemTable>>,
}

struct CommitQueue {
    /// The pending WAL frame (v2, header reserved, see [`wal::begin_frame_v2`]) or empty.
    buf: Vec<u8>,
    /// First seqno of the pending frame.
    frame_first_seqno: u64,
    spare: Vec<u8>,
    next_seqno: u64,
    next_ticket: u64,
    taken_ticket: u64,
    completed_ticket: u64,
    leader_active: bool,
    /// Next offset to assign, per log id.
    log_next: HashMap<u32, u64>,
    /// First ticket of a group that failed; it and every later ticket fail.
    failed_from_ticket: Option<u64>,
    /// Size (in batches) of the previous group; a new leader waits briefly for as many writers.
    last_group_batches: u64,
    /// Whether a leader is waiting for its group to fill (enqueuers then notify `fill_cv`).
    leader_filling: bool,
    /// Asynchronous batches enqueued since the commit thread last led a group.
    async_pending: u64,
    /// Wakers of asynchronous writers by ticket.
    wakers: Vec<(u64, Waker)>,
    /// Set when the database closes.
    shutdown: bool,
    /// Whether a batch enqueued since the last group was taken must reach the WAL file before it is
    /// acknowledged (every batch but a deferred one, see [`Db::write_deferred`]).
    immediate: bool,
    /// The active memtable as the last leader used it, handed from leader to leader (only a leader, or
    /// `force_rotate` in the leader's role, changes the active memtable): a leader then reads the
    /// memtable set only after a rotation, instead of taking its lock and a reference per group.
    active_mem: Option<Arc<MemTable>>,
}

enum FutureState {
    Waiting {
        ticket: u64,
        info: Option<CommitInfo>,
    },
    Done(Result<CommitInfo>),
    Taken,
}

/// Completes when an asynchronously submitted batch is committed (see [`Db::write_async`]).
pub struct CommitFuture {
    db: Arc<DbInner>,
    state: FutureState,
}

impl std::future::Future for CommitFuture {
    type Output = Result<CommitInfo>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let this = &mut *self;
        match &mut this.state {
            FutureState::Done(_) => match std::mem::replace(&mut this.state, FutureState::Taken) {
                FutureState::Done(r) => Poll::Ready(r),
                _ => Poll::Ready(Err(StorageError::Closed)),
            },
            FutureState::Taken => Poll::Ready(Err(StorageError::Closed)),
            FutureState::Waiting { ticket, info } => {
                let ticket = *ticket;
                let mut q = this.db.commit.lock();
                match this.db.ticket_result(&q, ticket) {
                    Some(r) => {
                        let info = info.take().unwrap_or_default();
                        drop(q);
                        this.state = FutureState::Taken;
                        Poll::Ready(r.map(|_| info))
                    }
                    None => {
                        if let Some(slot) = q.wakers.iter_mut().find(|(t, _)| *t == ticket) {
                            slot.1.clone_from(cx.waker());
                        } else {
                            q.wakers.push((ticket, cx.waker().clone()));
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

/// Longest a new leader waits for its group to refill to the previous group's size under
/// `fsync = always`. Without it, writers released by one fsync trickle back one at a time and the first
/// of them leads a group of one, halving the batching (measured: 16 writers, ~8 per group).
const GROUP_FILL_WAIT: Duration = Duration::from_micros(200);

/// What a committed write batch got.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitInfo {
    /// Seqno of the batch's last operation.
    pub seqno: u64,
    /// Offset of each log append in the batch, in order.
    pub log_offsets: Vec<u64>,
}

impl CommitInfo {
    /// The ticket to pass to [`Db::sync_to`] before acknowledging a deferred write.
    pub fn wal_ticket(&self) -> WalTicket {
        WalTicket(self.seqno)
    }
}

/// A deferred write's place in the WAL (see [`Db::write_deferred`]). Tickets are ordered: syncing to the
/// largest of several covers them all, so a server can keep the maximum over one event-loop iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WalTicket(u64);

impl WalTicket {
    /// The seqno of the write's last operation.
    pub fn seqno(self) -> u64 {
        self.0
    }
}

pub(crate) struct BgState {
    pub(crate) shutdown: bool,
    /// Bumped whenever a flush or compaction finishes (stalled writers wait on it).
    pub(crate) progress: u64,
    pub(crate) flush_requested: bool,
    #[allow(dead_code)] // read by the compaction thread once SSTs land
    pub(crate) compaction_requested: bool,
}

pub(crate) struct DbInner {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Options,
    pub(crate) fs: Arc<dyn FileSystem>,
    _lock: File,
    commit: Mutex<CommitQueue>,
    commit_cv: Condvar,
    fill_cv: Condvar,
    /// Wakes the commit thread; notified only when asynchronous writers wait, so synchronous commits never
    /// cost it a context switch.
    async_cv: Condvar,
    wal: Mutex<WalWriter>,
    /// Sealed WAL segments not yet fsynced (under `everysec`; see [`DbInner::rotate`]): the syncer, an
    /// explicit [`Db::sync_wal`] and a clean close fsync them before the current segment.
    sealed_unsynced: parking_lot::Mutex<Vec<Arc<dyn crate::fs::WritableFile>>>,
    /// An empty memtable the flush thread prepared for the next switch (see `flush_loop`).
    pub(crate) spare_memtable: parking_lot::Mutex<Option<MemTable>>,
    /// The most distinct keys a memtable has held (see [`DbInner::next_memtable_keys`]).
    most_memtable_keys: AtomicUsize,
    /// Mirror of the WAL writer's `written_seqno`, so [`Db::sync_to`] returns without the WAL lock when its
    /// bytes were already written.
    wal_written_seqno: AtomicU64,
    pub(crate) visible_seqno: AtomicU64,
    /// Reads in flight, for the versions a commit may drop (see [`crate::readers`]).
    pub(crate) readers: Arc<crate::readers::Readers>,
    pub(crate) mems: RwLock<Arc<MemSet>>,
    pub(crate) snapshots: Mutex<BTreeMap<u64, usize>>,
    trees: RwLock<HashMap<String, u32>>,
    logs: RwLock<HashMap<String, Arc<LogInner>>>,
    logs_by_id: RwLock<HashMap<u32, Arc<LogInner>>>,
    pub(crate) manifest: Mutex<ManifestWriter>,
    /// Block cache shared by every SST reader.
    pub(crate) lru: Arc<crate::block_cache::BlockCache>,
    pub(crate) block_cache: Option<Arc<dyn crate::sst::BlockCache>>,
    /// The SSTs readers consult.
    pub(crate) version: RwLock<Arc<crate::version::Version>>,
    /// Serializes version installs (flush and compaction both edit the version).
    #[allow(dead_code)] // used once SSTs land
    pub(crate) version_lock: Mutex<()>,
    /// Files being compacted.
    #[allow(dead_code)] // used once SSTs land
    pub(crate) compacting: Mutex<std::collections::HashSet<u64>>,
    pub(crate) next_file_id: AtomicU64,
    poisoned: AtomicBool,
    poison_cause: Mutex<Option<String>>,
    pub(crate) stats: Stats,
    rmw_locks: Vec<Mutex<()>>,
    pub(crate) bg: Mutex<BgState>,
    pub(crate) bg_cv: Condvar,
    /// Remembered runs of dead keys (see [`crate::skip_hint`]).
    pub(crate) skip_hints: Arc<crate::skip_hint::SkipHints>,
    /// Bumped before every flush or compaction install (see [`DbInner::latest`]).
    install_gen: AtomicU64,
    /// Compaction filters by tree (see [`crate::compaction::filter`]).
    pub(crate) compaction_filters: crate::compaction::filter::Registry,
}

/// Where the WAL stood while commits were paused (see `DbInner::with_commits_paused`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WalCut {
    /// The WAL segment being appended to.
    pub(crate) wal_id: u64,
    /// Its length: every applied frame ends at or before it.
    pub(crate) wal_len_bytes: u64,
    /// The last published seqno.
    pub(crate) seqno: u64,
}

/// Stops background threads when the last [`Db`] handle goes away.
struct BgGuard {
    inner: Arc<DbInner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for BgGuard {
    fn drop(&mut self) {
        self.inner.commit.lock().shutdown = true;
        self.inner.commit_cv.notify_all();
        self.inner.async_cv.notify_all();
        self.inner.bg.lock().shutdown = true;
        self.inner.bg_cv.notify_all();
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        if !self.inner.is_poisoned() {
            // A clean close writes the deferred frames (a crash would lose them, as it may under
            // `everysec` or `no` before an acknowledgement).
            let mut w = self.inner.wal.lock();
            let _ = if self.inner.opts.fsync == FsyncPolicy::No {
                w.write_deferred()
            } else {
                self.inner
                    .sync_sealed()
                    .map_err(|e| StorageError::io("fsync sealed WAL segment", e))
                    .and_then(|()| w.sync())
            };
        }
    }
}

/// An open database. Cheap to clone; every clone is the same database. Background threads stop when the
/// last clone (and every [`Tree`], [`Log`] and [`Snapshot`] made from it) is dropped.
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<DbInner>,
    _guard: Arc<BgGuard>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish()
    }
}

fn sort_ids(names: Vec<String>, parse: fn(&str) -> Option<u64>) -> Vec<u64> {
    let mut ids: Vec<u64> = names.iter().filter_map(|n| parse(n)).collect();
    ids.sort_unstable();
    ids
}

impl Db {
    /// Opens (creating if needed) the database in `dir`, recovering from its manifest and WAL.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        fs.create_dir_all(&dir)
            .ctx(|| format!("create data directory {}", dir.display()))?;
        let lock_path = dir.join("LOCK");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .ctx(|| format!("open {}", lock_path.display()))?;
        if lock.try_lock().is_err() {
            return Err(StorageError::Locked(dir));
        }

        let (mut state, old_manifest) = match manifest::recover(fs.as_ref(), &dir)? {
            Some((s, id)) => (s, Some(id)),
            None => (
                ManifestState {
                    next_file_id: 1,
                    ..ManifestState::default()
                },
                None,
            ),
        };
        let names = fs
            .list_dir(&dir)
            .ctx(|| format!("list {}", dir.display()))?;
        let wal_ids = sort_ids(names.clone(), wal::parse_wal_file_name);
        let mut next_file_id = state.next_file_id.max(old_manifest.unwrap_or(0) + 1);
        if let Some(max) = wal_ids.last() {
            next_file_id = next_file_id.max(max + 1);
        }

        // Logs.
        let logs_root = dir.join("logs");
        let mut logs_by_id = HashMap::new();
        for (id, name) in &state.logs {
            let head = state.log_heads.get(id).copied().unwrap_or(0);
            let log = LogInner::open(
                fs.clone(),
                &logs_root,
                *id,
                name.clone(),
                head,
                opts.log_segment_bytes,
            )?;
            logs_by_id.insert(*id, Arc::new(log));
        }

        // The files, opened before the WAL replay: a patch in the WAL may apply to a value in them.
        let lru = Arc::new(crate::block_cache::BlockCache::new(opts.block_cache_bytes));
        let block_cache: Option<Arc<dyn crate::sst::BlockCache>> = if opts.block_cache_bytes > 0 {
            Some(lru.clone())
        } else {
            None
        };
        let version =
            crate::version::open_version(fs.as_ref(), &dir, &state.levels, block_cache.clone())?;

        // WAL replay.
        let live_wals: Vec<u64> = wal_ids
            .iter()
            .copied()
            .filter(|id| *id >= state.wal_min)
            .collect();
        let mem = Arc::new(MemTable::new(
            live_wals.first().copied().unwrap_or(next_file_id),
        ));
        mem.reserve_keys_for(opts.memtable_size_bytes);
        let mut next_seqno = state.flushed_seqno + 1;
        // Behind a lock only because `apply_frame` takes the live map's form; nobody else sees it yet.
        let logs_lock = RwLock::new(logs_by_id);
        for (i, id) in live_wals.iter().enumerate() {
            let path = dir.join(wal::wal_file_name(*id));
            let data = fs
                .read_all(&path)
                .ctx(|| format!("read WAL segment {}", path.display()))?;
            let flushed = state.flushed_seqno;
            // The replayed segments stay until this memtable is flushed: they count toward its WAL bound.
            mem.note_wal(data.len());
            let outcome = wal::replay_segment(&path, &data, |format, first_seqno, payload| {
                apply_frame(
                    format,
                    payload,
                    first_seqno,
                    0,
                    &mem,
                    &logs_lock,
                    flushed,
                    None,
                    None,
                    &|tree, key, seqno| {
                        point_get(std::iter::once(&*mem), || &version, &dir, tree, key, seqno)
                    },
                )
            })?;
            next_seqno = next_seqno.max(outcome.next_seqno);
            if outcome.torn_bytes > 0 {
                if i + 1 != live_wals.len() {
                    // Under `always` every sealed segment was fsynced whole: this is damage. Under
                    // `everysec`/`no` a sealed segment is fsynced after the next one starts, so a machine
                    // crash can tear it: the log ends at the tear, and the later segments' frames (newer,
                    // never promised durable) go with it.
                    if opts.fsync == FsyncPolicy::Always {
                        return Err(StorageError::corruption(
                            &path,
                            outcome.valid_len,
                            "damaged WAL frame in a segment that is not the newest",
                        ));
                    }
                    let later = &live_wals[i + 1..];
                    tracing::warn!(
                        wal = %path.display(),
                        offset = outcome.valid_len,
                        torn_bytes = outcome.torn_bytes,
                        dropped_segments = later.len(),
                        "torn WAL frame in a sealed segment: recovery stops there"
                    );
                    fs.truncate(&path, outcome.valid_len)
                        .ctx(|| format!("truncate torn tail of {}", path.display()))?;
                    for id in later {
                        let p = dir.join(wal::wal_file_name(*id));
                        fs.remove_file(&p)
                            .ctx(|| format!("remove WAL segment {}", p.display()))?;
                    }
                    break;
                }
                tracing::warn!(
                    wal = %path.display(),
                    offset = outcome.valid_len,
                    torn_bytes = outcome.torn_bytes,
                    "truncating torn WAL tail"
                );
                fs.truncate(&path, outcome.valid_len)
                    .ctx(|| format!("truncate torn tail of {}", path.display()))?;
            }
        }
        let logs_by_id = logs_lock.into_inner();
        for log in logs_by_id.values() {
            log.publish();
        }

        let wal_id = next_file_id;
        let manifest_id = next_file_id + 1;
        next_file_id += 2;
        state.next_file_id = next_file_id;
        let mut wal = WalWriter::create(fs.as_ref(), &dir, wal_id)?;
        wal.written_seqno = next_seqno - 1;
        let manifest = ManifestWriter::create(fs.clone(), &dir, manifest_id, state.clone())?;
        // Remove WAL segments older than the manifest's boundary (already flushed).
        for id in &wal_ids {
            if *id < state.wal_min {
                let _ = fs.remove_file(&dir.join(wal::wal_file_name(*id)));
            }
        }

        let live: std::collections::HashSet<u64> = state
            .levels
            .iter()
            .flat_map(|l| l.keys().copied())
            .collect();
        crate::flush::remove_orphans(fs.as_ref(), &dir, &live)?;
        let mut log_next = HashMap::new();
        let mut logs = HashMap::new();
        for (id, log) in &logs_by_id {
            log_next.insert(*id, log.head_tail().1);
            logs.insert(log.name.clone(), log.clone());
        }
        let trees = state
            .trees
            .iter()
            .map(|(id, name)| (name.clone(), *id))
            .collect();

        let inner = Arc::new(DbInner {
            dir: dir.clone(),
            fs: fs.clone(),
            _lock: lock,
            commit: Mutex::new(CommitQueue {
                buf: Vec::with_capacity(64 << 10),
                frame_first_seqno: 0,
                spare: Vec::with_capacity(64 << 10),
                next_seqno,
                next_ticket: 0,
                taken_ticket: 0,
                completed_ticket: 0,
                leader_active: false,
                log_next,
                failed_from_ticket: None,
                last_group_batches: 0,
                leader_filling: false,
                async_pending: 0,
                wakers: Vec::new(),
                shutdown: false,
                immediate: false,
                active_mem: None,
            }),
            commit_cv: Condvar::new(),
            fill_cv: Condvar::new(),
            async_cv: Condvar::new(),
            wal: Mutex::new(wal),
            sealed_unsynced: parking_lot::Mutex::new(Vec::new()),
            spare_memtable: parking_lot::Mutex::new(None),
            most_memtable_keys: AtomicUsize::new(0),
            wal_written_seqno: AtomicU64::new(next_seqno - 1),
            visible_seqno: AtomicU64::new(next_seqno - 1),
            readers: Arc::default(),
            mems: RwLock::new(Arc::new(MemSet {
                active: mem,
                imms: Vec::new(),
            })),
            snapshots: Mutex::new(BTreeMap::new()),
            trees: RwLock::new(trees),
            logs: RwLock::new(logs),
            logs_by_id: RwLock::new(logs_by_id),
            manifest: Mutex::new(manifest),
            lru,
            block_cache,
            version: RwLock::new(Arc::new(version)),
            version_lock: Mutex::new(()),
            compacting: Mutex::new(std::collections::HashSet::new()),
            next_file_id: AtomicU64::new(next_file_id),
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            stats: Stats::default(),
            rmw_locks: (0..RMW_STRIPES).map(|_| Mutex::new(())).collect(),
            bg: Mutex::new(BgState {
                shutdown: false,
                progress: 0,
                flush_requested: false,
                compaction_requested: true,
            }),
            bg_cv: Condvar::new(),
            skip_hints: Arc::default(),
            install_gen: AtomicU64::new(0),
            compaction_filters: Default::default(),
            opts,
        });
        let mut threads = Vec::new();
        {
            let i = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("strata-commit".into())
                    .spawn(move || i.async_commit_loop())
                    .ctx(|| "spawn commit thread".to_string())?,
            );
        }
        if inner.opts.fsync == FsyncPolicy::EverySec {
            let i = inner.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("strata-wal-sync".into())
                    .spawn(move || i.everysec_loop())
                    .ctx(|| "spawn WAL sync thread".to_string())?,
            );
        }
        threads.extend(crate::flush::spawn_background(&inner)?);
        Ok(Db {
            _guard: Arc::new(BgGuard {
                inner: inner.clone(),
                threads: Mutex::new(threads),
            }),
            inner,
        })
    }

    /// The tree named `name`, created (durably) if it does not exist.
    pub fn tree(&self, name: &str) -> Result<Tree> {
        if let Some(id) = self.inner.trees.read().get(name) {
            return Ok(Tree::new(self.clone(), *id, name));
        }
        if name.is_empty() || name.len() > 255 {
            return Err(StorageError::InvalidArgument(format!(
                "tree name must be 1..=255 bytes, got {}",
                name.len()
            )));
        }
        let mut m = self.inner.manifest.lock();
        if let Some(id) = self.inner.trees.read().get(name) {
            return Ok(Tree::new(self.clone(), *id, name));
        }
        let id = m.state.trees.keys().next_back().map_or(1, |k| k + 1);
        if id == u32::MAX {
            return Err(StorageError::InvalidArgument("too many trees".into()));
        }
        m.log_and_apply(&[Edit::CreateTree {
            id,
            name: name.to_string(),
        }])?;
        self.inner.trees.write().insert(name.to_string(), id);
        Ok(Tree::new(self.clone(), id, name))
    }

    /// Names of all trees.
    pub fn tree_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.trees.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// The log named `name`, created (durably) if it does not exist.
    pub fn log(&self, name: &str) -> Result<Log> {
        if let Some(l) = self.inner.logs.read().get(name) {
            return Ok(Log::new(self.clone(), l.clone()));
        }
        if name.is_empty() || name.len() > 255 {
            return Err(StorageError::InvalidArgument(format!(
                "log name must be 1..=255 bytes, got {}",
                name.len()
            )));
        }
        let mut m = self.inner.manifest.lock();
        if let Some(l) = self.inner.logs.read().get(name) {
            return Ok(Log::new(self.clone(), l.clone()));
        }
        let id = m.state.logs.keys().next_back().map_or(1, |k| k + 1);
        let inner = Arc::new(LogInner::open(
            self.inner.fs.clone(),
            &self.inner.dir.join("logs"),
            id,
            name.to_string(),
            0,
            self.inner.opts.log_segment_bytes,
        )?);
        m.log_and_apply(&[Edit::CreateLog {
            id,
            name: name.to_string(),
        }])?;
        self.inner.commit.lock().log_next.insert(id, 0);
        self.inner.logs_by_id.write().insert(id, inner.clone());
        self.inner
            .logs
            .write()
            .insert(name.to_string(), inner.clone());
        Ok(Log::new(self.clone(), inner))
    }

    /// Names of all logs.
    pub fn log_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.logs.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Commits `batch` atomically. Under `fsync = always` it is durable when this returns; under
    /// `everysec` and `no` its bytes were handed to the operating system (they survive a process crash).
    pub fn write(&self, batch: &WriteBatch) -> Result<CommitInfo> {
        self.write_mode(batch, false)
    }

    /// Commits `batch` atomically and makes it visible to readers, but under `fsync = everysec | no`
    /// leaves its WAL bytes in an in-memory buffer shared by all writers instead of writing them now.
    ///
    /// **Before acknowledging the write to anyone, call [`Db::sync_to`] with its
    /// [`CommitInfo::wal_ticket`]** (or with any later ticket): only then does it survive a process crash.
    /// This is Redis's AOF discipline: a server applies the commands of one event-loop iteration, then
    /// writes everyone's WAL bytes with a single `write(2)` before sending the replies. A crash before that
    /// write loses the deferred batches (whole batches only: recovery never shows half of one), even though
    /// readers could already see them. Any immediate write (e.g. [`Db::write`]) carries the buffered bytes
    /// before its own, so the WAL stays in seqno order; the buffer is also written when it exceeds 1 MiB,
    /// when the WAL segment rotates, by the `everysec` syncer, by [`Db::sync_wal`] and on a clean close.
    ///
    /// Under `fsync = always` this is [`Db::write`]: durable when it returns, and `sync_to` is free.
    pub fn write_deferred(&self, batch: &WriteBatch) -> Result<CommitInfo> {
        self.write_mode(batch, self.inner.opts.fsync != FsyncPolicy::Always)
    }

    /// Writes the buffered WAL bytes of deferred writes up to `ticket` (and everyone else's buffered bytes,
    /// in one write call) unless they were already written. Cheap when there is nothing to do.
    pub fn sync_to(&self, ticket: WalTicket) -> Result<()> {
        if self.inner.wal_written_seqno.load(Ordering::Acquire) >= ticket.0 {
            return Ok(());
        }
        self.flush_wal_buffer()
    }

    /// How the engine's background threads are scheduled ([`crate::Options::background_priority`]), for
    /// the background threads of the layers above.
    pub fn background_priority(&self) -> crate::BackgroundPriority {
        self.inner.opts.background_priority
    }

    /// Whether deferred writes may have WAL bytes not yet written (a hint: cheap, and a `true` can be
    /// stale by the time [`Db::flush_wal_buffer`] runs).
    pub fn wal_buffer_pending(&self) -> bool {
        self.inner.wal_written_seqno.load(Ordering::Acquire)
            < self.inner.visible_seqno.load(Ordering::Acquire)
    }

    /// Writes every buffered WAL byte of deferred writes now (one write call).
    pub fn flush_wal_buffer(&self) -> Result<()> {
        self.wal_op(WalWriter::write_deferred)
    }

    /// Runs `op` on the WAL writer, publishes how far the WAL is written, and poisons the engine if `op`
    /// failed (an I/O error on the write path is never retried).
    fn wal_op(&self, op: impl FnOnce(&mut WalWriter) -> Result<()>) -> Result<()> {
        self.inner.check_poison()?;
        let mut w = self.inner.wal.lock();
        let r = op(&mut w);
        self.inner
            .wal_written_seqno
            .store(w.written_seqno, Ordering::Release);
        drop(w);
        if let Err(e) = &r {
            self.inner.poison(e);
        }
        r
    }

    fn write_mode(&self, batch: &WriteBatch, deferred: bool) -> Result<CommitInfo> {
        for op in batch.ops() {
            match op? {
                crate::batch::BatchOp::Put { key, value, .. } => {
                    self.inner.check_sizes(key, value)?;
                }
                crate::batch::BatchOp::Delete { key, .. } => self.inner.check_sizes(key, &[])?,
                crate::batch::BatchOp::Patch { key, patch, .. } => {
                    self.inner.check_key_len(key.len())?;
                    self.inner.check_value_len("value", patch.end())?;
                }
                crate::batch::BatchOp::RangeDelete { start, end, .. } => {
                    self.inner.check_sizes(start, &[])?;
                    self.inner.check_sizes(end, &[])?;
                }
                crate::batch::BatchOp::LogAppend { payload, .. } => {
                    self.inner.check_sizes(&[], payload)?;
                }
                crate::batch::BatchOp::LogTruncate { .. }
                | crate::batch::BatchOp::ClearTree { .. } => {}
            }
        }
        let mut info = CommitInfo::default();
        if !batch.conditions.is_empty() {
            let mut stripes: Vec<usize> = batch
                .conditions
                .iter()
                .map(|(t, k, _)| rmw_stripe(*t, k))
                .collect();
            stripes.sort_unstable();
            stripes.dedup();
            // Locked in ascending order, so conditional writers never deadlock.
            let _guards: Vec<_> = stripes
                .iter()
                .map(|i| self.inner.rmw_locks[*i].lock())
                .collect();
            for (t, k, expected) in &batch.conditions {
                let cur = self.inner.get_latest(*t, k)?;
                if cur.as_deref() != expected.as_deref() {
                    return Err(StorageError::ConditionFailed {
                        tree: *t,
                        key: String::from_utf8_lossy(k).into_owned(),
                    });
                }
            }
            info.seqno = self
                .inner
                .commit(batch, Some(&mut info.log_offsets), deferred)?;
            return Ok(info);
        }
        info.seqno = self
            .inner
            .commit(batch, Some(&mut info.log_offsets), deferred)?;
        Ok(info)
    }

    /// Submits `batch` for commit and returns a future that completes when it is committed, without
    /// blocking the calling thread on WAL I/O (for async runtimes). Writers waiting synchronously and
    /// asynchronously share groups and fsyncs.
    pub fn write_async(&self, batch: &WriteBatch) -> CommitFuture {
        self.inner.commit_async(batch)
    }

    /// A consistent read view at the current seqno, held until dropped.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(self.clone())
    }

    /// The latest published seqno.
    pub fn seqno(&self) -> u64 {
        self.inner.visible_seqno.load(Ordering::Acquire)
    }

    /// Writes any deferred WAL bytes and fsyncs the WAL now (useful under `everysec`/`no` before a planned
    /// shutdown).
    pub fn sync_wal(&self) -> Result<()> {
        // Under the WAL lock, so no rotation seals unsynced bytes between the two.
        self.wal_op(|w| {
            self.inner
                .sync_sealed()
                .map_err(|e| StorageError::io("fsync sealed WAL segment", e))?;
            w.sync()
        })
    }

    /// Engine counters.
    pub fn stats(&self) -> StatsSnapshot {
        let mut s = self.inner.stats.snapshot();
        {
            let mems = self.inner.mems.read();
            s.memtable_bytes = mems.active.approx_bytes() as u64;
            s.immutable_memtables = mems.imms.len() as u64;
        }
        let v = crate::version::current(&self.inner);
        s.level_files = v.level_files();
        s.level_bytes = v.level_bytes();
        (s.cache_hits, s.cache_misses) = self.inner.lru.hit_miss();
        s.skip_hint_uses = self.inner.skip_hints.used();
        s.snapshots = self
            .inner
            .snapshots
            .lock()
            .values()
            .map(|c| *c as u64)
            .sum();
        s
    }

    /// Whether an earlier I/O failure poisoned the engine.
    pub fn is_poisoned(&self) -> bool {
        self.inner.is_poisoned()
    }

    /// Freezes the active memtable and waits until every frozen memtable is flushed to an SST.
    pub fn flush(&self) -> Result<()> {
        self.inner.force_rotate()?;
        self.inner.wait_for_flushes()
    }

    /// Runs one compaction now if the picker finds work (returns whether one ran). Needed when
    /// `Options::background_compaction` is off; harmless otherwise.
    pub fn compact_once(&self) -> Result<bool> {
        self.inner.check_poison()?;
        let r = crate::compaction::job::compact_once(&self.inner);
        if let Err(e) = &r {
            self.inner.poison(e);
        }
        let mut bg = self.inner.bg.lock();
        bg.progress += 1;
        self.inner.bg_cv.notify_all();
        r
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }
}

/// The value of a key as of a seqno, over every level including the memtable a frame is applied to:
/// what a patch (see [`crate::batch::Patch`]) applies to.
pub(crate) type BaseLookup<'a> = dyn Fn(u32, &[u8], u64) -> Result<Option<Bytes>> + 'a;

/// Applies one WAL frame payload written in `format` (see [`FrameOps`]) to `mem` and the logs. Tree ops
/// with a seqno at or below `skip_upto` are already in SSTs and skipped. Returns the next seqno. `touched`
/// collects the logs written. A version whose successor is at or below `horizon` is dropped (0: none is;
/// see [`crate::readers`]).
///
/// The memtable's writer lock is taken once for the frame, and the log map's read lock only when the
/// frame holds a log op: each lock is a pair of locked read-modify-writes, which with a lock per op were
/// a tenth of a single-key commit's cost.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_frame(
    format: WalFormat,
    payload: &[u8],
    first_seqno: u64,
    horizon: u64,
    mem: &MemTable,
    logs: &RwLock<HashMap<u32, Arc<LogInner>>>,
    skip_upto: u64,
    mut touched: Option<&mut Vec<Arc<LogInner>>>,
    hints: Option<&crate::skip_hint::SkipHints>,
    base: &BaseLookup<'_>,
) -> Result<u64> {
    let bad = |what: &str| StorageError::corruption("", 0, what.to_string());
    let mut seq = first_seqno;
    let mut writer = mem.writer();
    let mut log_map = None;
    let mut hints = hints.map(crate::skip_hint::SkipHints::checking);
    let mut apply = |op: BatchOp<'_>, seq: u64| -> Result<()> {
        match op {
            BatchOp::Put { tree, key, value } => {
                if let Some(h) = &mut hints {
                    h.on_put(tree, key);
                }
                if seq > skip_upto {
                    writer.add_at(tree, key, seq, KIND_PUT, value, horizon);
                }
            }
            BatchOp::Delete { tree, key } => {
                if seq > skip_upto {
                    writer.add_at(tree, key, seq, KIND_DELETE, &[], horizon);
                }
            }
            BatchOp::Patch { tree, key, patch } => {
                if let Some(h) = &mut hints {
                    h.on_put(tree, key);
                }
                if seq > skip_upto {
                    // The base lookup reads the memtable as any reader does: the writer lock does not
                    // stand in its way.
                    let base = base(tree, key, seq - 1)?.unwrap_or_default();
                    writer.add_patched(tree, key, seq, &base, &patch, horizon);
                }
            }
            BatchOp::RangeDelete { tree, start, end } => {
                if seq > skip_upto {
                    mem.add_range_delete(tree, start, end, seq);
                }
            }
            BatchOp::ClearTree { tree } => {
                if seq > skip_upto {
                    mem.add_tree_clear(tree, seq);
                }
            }
            BatchOp::LogAppend {
                log,
                offset,
                payload,
            } => {
                let l = log_map
                    .get_or_insert_with(|| logs.read())
                    .get(&log)
                    .ok_or_else(|| bad(&format!("append to unknown log {log}")))?;
                l.apply_append(offset, payload)?;
                // Log bytes count toward the memtable size so a log-only workload still rotates the
                // WAL (and a flush then lets old WAL segments be deleted).
                mem.note_bytes(payload.len());
                if let Some(t) = touched.as_deref_mut()
                    && !t.iter().any(|x| x.id == log)
                {
                    t.push(l.clone());
                }
            }
            BatchOp::LogTruncate { log, before } => {
                let l = log_map
                    .get_or_insert_with(|| logs.read())
                    .get(&log)
                    .ok_or_else(|| bad(&format!("truncate of unknown log {log}")))?;
                l.apply_truncate(before)?;
            }
        }
        Ok(())
    };
    // v2 (every live frame) iterates the ops directly; v1 goes through its batch framing.
    match format {
        WalFormat::V2 => {
            for op in crate::batch::BatchIter::new(payload)? {
                apply(op?, seq)?;
                seq += 1;
            }
        }
        WalFormat::V1 => {
            for op in FrameOps::new(format, payload) {
                apply(op?, seq)?;
                seq += 1;
            }
        }
    }
    // Log-only frames take seqnos too; the memtable's max seqno becomes the manifest's FlushedSeqno, which
    // must cover every seqno whose WAL may be deleted so seqnos never go backwards after recovery.
    if seq > first_seqno {
        mem.note_seqno(seq - 1);
    }
    Ok(seq)
}

impl DbInner {
    /// Every log.
    #[allow(dead_code)] // used by flush once SSTs land
    pub(crate) fn all_logs(&self) -> Vec<Arc<LogInner>> {
        self.logs_by_id.read().values().cloned().collect()
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn check_poison(&self) -> Result<()> {
        if self.is_poisoned() {
            let cause = self
                .poison_cause
                .lock()
                .clone()
                .unwrap_or_else(|| "unknown".into());
            return Err(StorageError::Poisoned { cause });
        }
        Ok(())
    }

    /// Marks the engine poisoned after an I/O failure (first cause wins).
    pub(crate) fn poison(&self, e: &StorageError) {
        let mut c = self.poison_cause.lock();
        if c.is_none() {
            tracing::error!(error = %e, "storage engine poisoned");
            *c = Some(e.to_string());
        }
        self.poisoned.store(true, Ordering::Release);
        drop(c);
        self.bg_cv.notify_all();
        self.commit_cv.notify_all();
    }

    /// The commit path (see the module docs). Returns the seqno of the batch's last op.
    /// A `deferred` batch may leave its WAL bytes buffered (see [`Db::write_deferred`]).
    pub(crate) fn commit(
        &self,
        batch: &WriteBatch,
        offsets: Option<&mut Vec<u64>>,
        deferred: bool,
    ) -> Result<u64> {
        if batch.is_empty() {
            return Ok(self.visible_seqno.load(Ordering::Acquire));
        }
        let mut q = self.commit.lock();
        let (ticket, last_seqno) = self.enqueue(&mut q, batch, offsets)?;
        if !deferred {
            q.immediate = true;
        }
        loop {
            if let Some(r) = self.ticket_result(&q, ticket) {
                return r.map(|_| last_seqno);
            }
            if !q.leader_active && q.taken_ticket <= ticket {
                self.lead_group(&mut q);
                continue;
            }
            self.commit_cv.wait(&mut q);
        }
    }

    /// Enqueues a batch for commit without waiting; the returned future completes when it is durable (per
    /// the fsync policy) and visible. A commit thread leads groups that only asynchronous writers wait for,
    /// so the caller's thread never blocks on I/O.
    pub(crate) fn commit_async(self: &Arc<Self>, batch: &WriteBatch) -> CommitFuture {
        if batch.is_empty() {
            return CommitFuture {
                db: self.clone(),
                state: FutureState::Done(Ok(CommitInfo {
                    seqno: self.visible_seqno.load(Ordering::Acquire),
                    log_offsets: Vec::new(),
                })),
            };
        }
        let mut offsets = Vec::new();
        let mut q = self.commit.lock();
        let state = match self.enqueue(&mut q, batch, Some(&mut offsets)) {
            Ok((ticket, seqno)) => {
                q.async_pending += 1;
                q.immediate = true;
                FutureState::Waiting {
                    ticket,
                    info: Some(CommitInfo {
                        seqno,
                        log_offsets: offsets,
                    }),
                }
            }
            Err(e) => FutureState::Done(Err(e)),
        };
        drop(q);
        self.async_cv.notify_one();
        CommitFuture {
            db: self.clone(),
            state,
        }
    }

    /// Appends a batch to the pending frame, assigning seqnos and log offsets; returns (ticket, last seqno).
    fn enqueue(
        &self,
        q: &mut MutexGuard<'_, CommitQueue>,
        batch: &WriteBatch,
        offsets: Option<&mut Vec<u64>>,
    ) -> Result<(u64, u64)> {
        let size = batch.rep.len();
        within("write batch", size, self.opts.max_batch_bytes)?;
        loop {
            self.check_poison()?;
            if q.shutdown {
                return Err(StorageError::Closed);
            }
            if q.buf.len() < self.opts.max_pending_write_bytes || !q.leader_active {
                break;
            }
            self.commit_cv.wait(q);
        }
        for (log, _) in &batch.log_slots {
            if !q.log_next.contains_key(log) {
                return Err(StorageError::InvalidArgument(format!(
                    "log id {log} does not exist in this database"
                )));
            }
        }
        if q.buf.is_empty() {
            let s = q.next_seqno;
            wal::begin_frame_v2(&mut q.buf, s);
            q.frame_first_seqno = s;
        }
        let last_seqno = q.next_seqno + u64::from(batch.count) - 1;
        q.next_seqno = last_seqno + 1;
        let base = q.buf.len();
        q.buf.extend_from_slice(&batch.rep);
        if !batch.log_slots.is_empty() {
            let mut offsets = offsets;
            for (log, pos) in &batch.log_slots {
                let o = q.log_next.get(log).copied().unwrap_or(0);
                q.log_next.insert(*log, o + 1);
                q.buf[base + pos..base + pos + 8].copy_from_slice(&o.to_le_bytes());
                if let Some(v) = offsets.as_deref_mut() {
                    v.push(o);
                }
            }
        }
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        if q.leader_filling {
            self.fill_cv.notify_one();
        }
        // Under the commit queue's lock.
        Stats::add_exclusive(&self.stats.writes, 1);
        Stats::add_exclusive(&self.stats.user_bytes_written, size as u64);
        Ok((ticket, last_seqno))
    }

    /// The outcome of `ticket` once its group completed.
    fn ticket_result(&self, q: &CommitQueue, ticket: u64) -> Option<Result<()>> {
        if q.completed_ticket <= ticket {
            return None;
        }
        if q.failed_from_ticket.is_some_and(|f| ticket >= f) {
            return Some(self.check_poison().and(Err(StorageError::Poisoned {
                cause: "commit group failed".into(),
            })));
        }
        Some(Ok(()))
    }

    /// Leads one group: takes every pending batch, commits them, and wakes their writers.
    /// Precondition: no leader is active and some ticket is not taken.
    fn lead_group(&self, q: &mut MutexGuard<'_, CommitQueue>) {
        q.leader_active = true;
        if self.opts.fsync == FsyncPolicy::Always
            && q.next_ticket - q.taken_ticket < q.last_group_batches
        {
            let deadline = Instant::now() + GROUP_FILL_WAIT;
            q.leader_filling = true;
            while q.next_ticket - q.taken_ticket < q.last_group_batches
                && q.buf.len() < self.opts.max_pending_write_bytes
                && !self.fill_cv.wait_until(q, deadline).timed_out()
            {}
            q.leader_filling = false;
        }
        let spare = std::mem::take(&mut q.spare);
        let mut buf = std::mem::replace(&mut q.buf, spare);
        let first_ticket = q.taken_ticket;
        let end_ticket = q.next_ticket;
        q.last_group_batches = end_ticket - first_ticket;
        q.taken_ticket = end_ticket;
        let group_last = q.next_seqno - 1;
        let group_first = q.frame_first_seqno;
        let write_now = std::mem::take(&mut q.immediate) || self.opts.fsync == FsyncPolicy::Always;
        let mut active = q.active_mem.take();
        let res = MutexGuard::unlocked(q, || {
            self.lead(&mut buf, group_first, group_last, write_now, &mut active)
        });
        q.active_mem = active;
        buf.clear();
        q.spare = buf;
        q.completed_ticket = end_ticket;
        if res.is_err() && q.failed_from_ticket.is_none() {
            q.failed_from_ticket = Some(first_ticket);
        }
        q.leader_active = false;
        if !q.wakers.is_empty() {
            let mut i = 0;
            while i < q.wakers.len() {
                if q.wakers[i].0 < end_ticket {
                    let (_, w) = q.wakers.swap_remove(i);
                    w.wake();
                } else {
                    i += 1;
                }
            }
        }
        if q.async_pending > 0 {
            self.async_cv.notify_one();
        }
        self.commit_cv.notify_all();
    }

    /// The commit thread: leads groups that have only asynchronous writers waiting.
    fn async_commit_loop(self: Arc<Self>) {
        let mut q = self.commit.lock();
        loop {
            if q.shutdown && q.taken_ticket == q.next_ticket {
                return;
            }
            if !q.leader_active && q.async_pending > 0 && q.taken_ticket < q.next_ticket {
                q.async_pending = 0;
                self.lead_group(&mut q);
                continue;
            }
            if q.taken_ticket == q.next_ticket {
                // Synchronous leaders took every asynchronous batch; they complete them.
                q.async_pending = 0;
            }
            self.async_cv.wait(&mut q);
        }
    }

    /// The leader's work for one group: room, WAL write (+fsync) or deferral (`write_now` false), apply,
    /// publish. `active` is the queue's [`CommitQueue::active_mem`].
    fn lead(
        &self,
        buf: &mut [u8],
        first_seqno: u64,
        last_seqno: u64,
        write_now: bool,
        active: &mut Option<Arc<MemTable>>,
    ) -> Result<()> {
        self.check_poison()?;
        let mem = self.make_room(active)?;
        let frame_start = wal::finish_frame_v2(buf);
        let ops_start = wal::V2_RESERVED_BYTES + crate::batch::varint_len(first_seqno);
        let (frame, ops) = (&buf[frame_start..], &buf[ops_start..]);
        {
            let mut w = self.wal.lock();
            let r = if write_now {
                w.append(frame, last_seqno).and_then(|_| {
                    if self.opts.fsync == FsyncPolicy::Always {
                        Stats::add(&self.stats.wal_syncs, 1);
                        w.sync()
                    } else {
                        Ok(())
                    }
                })
            } else {
                w.defer(frame, last_seqno)
            };
            self.wal_written_seqno
                .store(w.written_seqno, Ordering::Release);
            if let Err(e) = r {
                self.poison(&e);
                return Err(e);
            }
        }
        // Only the leader counts these.
        Stats::add_exclusive(&self.stats.wal_bytes_written, frame.len() as u64);
        mem.note_wal(frame.len());
        Stats::add_exclusive(&self.stats.commit_groups, 1);
        // Only this thread rotates memtables, so `mem` stays the active one a patch's base lookup reads
        // (at the patch's seqno minus one: earlier ops of the group are applied, though not yet visible).
        let mut touched = Vec::new();
        // Before any put of the group reaches the memtable (see `skip_hint` for the handshake).
        let check_hints = self.skip_hints.begin_apply(last_seqno);
        // Versions no read in flight or to come can see are dropped as the group applies.
        let horizon = self.readers.horizon(&self.visible_seqno);
        let r = apply_frame(
            WalFormat::V2,
            ops,
            first_seqno,
            horizon,
            mem,
            &self.logs_by_id,
            0,
            Some(&mut touched),
            check_hints.then_some(&*self.skip_hints),
            &|tree, key, seqno| self.get(tree, key, seqno),
        );
        if let Err(e) = r {
            self.poison(&e);
            return Err(e);
        }
        for l in touched {
            l.publish();
        }
        self.visible_seqno.store(last_seqno, Ordering::Release);
        Ok(())
    }

    /// How many keys to size the index of the memtable after `last` for: the most any memtable has held.
    /// Sized by the last one alone, the index changed size whenever the mix of commands did: a memtable
    /// with more keys than the one before doubled its index on the applying thread (tens of MB of fresh
    /// pages the kernel zeroes, ~4% of XACK -P16's worker after XREADGROUP), and a released index no
    /// longer fit the memtable after it, so the flush thread zeroed a new one too. Held at the most, the
    /// index settles at one size and the released ones are reused.
    pub(crate) fn next_memtable_keys(&self, last: &MemTable) -> usize {
        let keys = last.distinct_keys();
        self.most_memtable_keys
            .fetch_max(keys, Ordering::Relaxed)
            .max(keys)
    }

    /// Freezes the active memtable when it is full, stalling while too many frozen memtables (or L0 files)
    /// wait. Only the commit leader calls this, so the WAL and the memtable set change under one owner.
    ///
    /// Returns the active memtable, kept in `active` (the last leader's, when it is still not full).
    fn make_room<'c>(&self, active: &'c mut Option<Arc<MemTable>>) -> Result<&'c MemTable> {
        let limit = self.opts.memtable_size_bytes;
        if let Some(mem) = active.take()
            && !mem.is_full(limit)
        {
            return Ok(active.insert(mem));
        }
        // Nothing holds the full memtable from here on, so the flush thread gets it whole.
        let mem = self.mems.read().active.clone();
        if !mem.is_full(limit) {
            return Ok(active.insert(mem));
        }
        drop(mem);
        self.stall_and_rotate()?;
        Ok(active.insert(self.mems.read().active.clone()))
    }

    /// [`DbInner::make_room`]'s rotation of a full memtable, after waiting while too many frozen memtables
    /// (or L0 files) wait.
    fn stall_and_rotate(&self) -> Result<()> {
        let mut stalled: Option<Instant> = None;
        loop {
            self.check_poison()?;
            // Read the progress counter before the condition: work the background threads finish after
            // this point bumps it, so the wait below cannot miss it (reading it after the condition did,
            // and a writer then waited for progress that had already happened).
            let p = self.bg.lock().progress;
            let imms = self.mems.read().imms.len();
            let l0 = crate::flush::l0_files(self);
            if imms < self.opts.max_immutable_memtables && l0 < self.opts.l0_stall_files {
                break;
            }
            if stalled.is_none() {
                stalled = Some(Instant::now());
                Stats::add(&self.stats.stalls, 1);
                tracing::debug!(imms, l0, "write stall");
            }
            let mut bg = self.bg.lock();
            if bg.shutdown {
                return Err(StorageError::Closed);
            }
            bg.flush_requested = true;
            self.bg_cv.notify_all();
            while bg.progress == p && !bg.shutdown && !self.is_poisoned() {
                // A bounded wait: flush/compaction progress normally wakes us much earlier.
                self.bg_cv.wait_for(&mut bg, Duration::from_millis(100));
            }
        }
        if let Some(s) = stalled {
            Stats::add(&self.stats.stall_micros, s.elapsed().as_micros() as u64);
        }
        self.rotate()
    }

    /// Seals the WAL segment and the active memtable, starting new ones, and wakes the flush thread.
    fn rotate(&self) -> Result<()> {
        let id = self.next_file_id.fetch_add(1, Ordering::SeqCst);
        let mut w = self.wal.lock();
        // Under `always` every frame is already durable. Under `everysec` the sealed segment is fsynced by
        // the syncer, before the new one: fsyncing a second of writes here, on the commit path, stalled
        // every writer for ~40-50 ms at each rotation. A machine crash can then leave the sealed segment
        // torn while the new one holds later frames; recovery under `everysec`/`no` stops at the tear (the
        // writes of that last second are lost, as the policy allows). Under `no` nothing is fsynced.
        let r = match self.opts.fsync {
            FsyncPolicy::Always => w.sync(),
            FsyncPolicy::EverySec => w.write_deferred().map(|()| {
                self.sealed_unsynced.lock().push(w.file());
            }),
            FsyncPolicy::No => w.write_deferred(),
        }
        .and_then(|_| w.successor(self.fs.as_ref(), &self.dir, id));
        self.wal_written_seqno
            .store(w.written_seqno, Ordering::Release);
        match r {
            Ok(new) => *w = new,
            Err(e) => {
                self.poison(&e);
                return Err(e);
            }
        }
        drop(w);
        // Usually prepared by the flush thread right after the last switch; else built here, before the
        // memtable set is locked: sizing its index for as many keys as the last one had writes tens of MB,
        // and neither readers nor (when prepared) writers should wait for that.
        let keys = self.next_memtable_keys(&self.mems.read().active);
        let fresh = Arc::new(match self.spare_memtable.lock().take() {
            Some(mut spare) => {
                spare.wal_id = id;
                spare
            }
            None => {
                let m = MemTable::with_key_capacity(id, keys);
                m.reserve_keys_for(self.opts.memtable_size_bytes);
                m
            }
        });
        {
            let mut m = self.mems.write();
            let mut imms = Vec::with_capacity(m.imms.len() + 1);
            imms.push(m.active.clone());
            imms.extend(m.imms.iter().cloned());
            *m = Arc::new(MemSet {
                active: fresh,
                imms,
            });
        }
        let mut bg = self.bg.lock();
        bg.flush_requested = true;
        self.bg_cv.notify_all();
        Ok(())
    }

    /// Rotates now if the active memtable has data (used by [`Db::flush`]). Goes through the commit queue so
    /// it never races with a leader.
    fn force_rotate(&self) -> Result<()> {
        let mut q = self.commit.lock();
        while q.leader_active {
            self.commit_cv.wait(&mut q);
        }
        q.leader_active = true;
        // The leaders' kept memtable goes stale if this rotates: the next leader reads the set again.
        q.active_mem = None;
        let r = MutexGuard::unlocked(&mut q, || {
            self.check_poison()?;
            if self.mems.read().active.approx_bytes() == 0 {
                return Ok(());
            }
            self.rotate()
        });
        q.leader_active = false;
        self.commit_cv.notify_all();
        r
    }

    /// Runs `f` while no commit group runs (the checkpoint hook, see [`crate::checkpoint`]): every batch
    /// whose group started is applied and published, no new group starts until `f` returns, and the WAL
    /// file holds every applied frame (deferred frames are written out first). `f` gets the cut.
    pub(crate) fn with_commits_paused<T>(&self, f: impl FnOnce(WalCut) -> Result<T>) -> Result<T> {
        let mut q = self.commit.lock();
        while q.leader_active {
            self.commit_cv.wait(&mut q);
        }
        q.leader_active = true;
        let r = MutexGuard::unlocked(&mut q, || {
            self.check_poison()?;
            let cut = {
                let mut w = self.wal.lock();
                let r = w.write_deferred();
                self.wal_written_seqno
                    .store(w.written_seqno, Ordering::Release);
                if let Err(e) = r {
                    self.poison(&e);
                    return Err(e);
                }
                WalCut {
                    wal_id: w.id,
                    wal_len_bytes: w.len_bytes,
                    seqno: self.visible_seqno.load(Ordering::Acquire),
                }
            };
            f(cut)
        });
        q.leader_active = false;
        self.commit_cv.notify_all();
        if q.async_pending > 0 {
            self.async_cv.notify_one();
        }
        r
    }

    fn wait_for_flushes(&self) -> Result<()> {
        let mut bg = self.bg.lock();
        loop {
            self.check_poison()?;
            if self.mems.read().imms.is_empty() {
                return Ok(());
            }
            if bg.shutdown {
                return Err(StorageError::Closed);
            }
            bg.flush_requested = true;
            self.bg_cv.notify_all();
            self.bg_cv.wait_for(&mut bg, Duration::from_millis(100));
        }
    }

    /// Fsyncs the sealed segments not yet known durable. A segment leaves the list only after its fsync
    /// returned, so a caller never returns while the syncer is still fsyncing one it took.
    fn sync_sealed(&self) -> std::io::Result<()> {
        let sealed = self.sealed_unsynced.lock().clone();
        if sealed.is_empty() {
            return Ok(());
        }
        for f in &sealed {
            Stats::add(&self.stats.wal_syncs, 1);
            f.sync_data()?;
        }
        self.sealed_unsynced
            .lock()
            .retain(|f| !sealed.iter().any(|s| Arc::ptr_eq(s, f)));
        Ok(())
    }

    fn everysec_loop(self: Arc<Self>) {
        let mut bg = self.bg.lock();
        while !bg.shutdown {
            self.bg_cv.wait_for(&mut bg, Duration::from_secs(1));
            if bg.shutdown || self.is_poisoned() {
                break;
            }
            let file = {
                let mut w = self.wal.lock();
                let r = w.write_deferred();
                self.wal_written_seqno
                    .store(w.written_seqno, Ordering::Release);
                if let Err(e) = r {
                    self.poison(&e);
                    break;
                }
                w.file()
            };
            let r = MutexGuard::unlocked(&mut bg, || {
                // Sealed segments first: a later segment is never more durable than an earlier one.
                self.sync_sealed()?;
                Stats::add(&self.stats.wal_syncs, 1);
                file.sync_data()
            });
            if let Err(e) = r {
                self.poison(&StorageError::io("fsync WAL (everysec)", e));
            }
        }
    }

    /// Lock stripe for read-modify-write of `key` in `tree`.
    pub(crate) fn rmw_lock(&self, tree: u32, key: &[u8]) -> MutexGuard<'_, ()> {
        self.rmw_locks[rmw_stripe(tree, key)].lock()
    }

    /// Checks key and value sizes against the limits.
    pub(crate) fn check_sizes(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key_len(key.len())?;
        self.check_value_len("value", value.len())
    }

    /// Refuses a key longer than `max_key_bytes`.
    pub(crate) fn check_key_len(&self, len: usize) -> Result<()> {
        within("key", len, self.opts.max_key_bytes)
    }

    /// Refuses a value (`what`: "value", "log entry") longer than `max_value_bytes`.
    pub(crate) fn check_value_len(&self, what: &'static str, len: usize) -> Result<()> {
        within(what, len, self.opts.max_value_bytes)
    }

    /// Registers a snapshot at the current seqno; the guard keeps its read entered (see
    /// [`crate::readers`]) while the snapshot lives.
    pub(crate) fn acquire_snapshot(&self) -> (u64, crate::readers::OwnedReadGuard) {
        let reading = self.readers.enter_owned();
        let mut s = self.snapshots.lock();
        let seq = self.visible_seqno.load(Ordering::SeqCst);
        *s.entry(seq).or_insert(0) += 1;
        (seq, reading)
    }

    pub(crate) fn release_snapshot(&self, seq: u64) {
        let mut s = self.snapshots.lock();
        if let Some(c) = s.get_mut(&seq) {
            *c -= 1;
            if *c == 0 {
                s.remove(&seq);
            }
        }
    }

    /// Announces a flush or compaction install; call before swapping the memtable set or version.
    pub(crate) fn bump_install_gen(&self) {
        self.install_gen.fetch_add(1, Ordering::SeqCst);
    }

    /// Runs `read` at the latest published seqno, retrying if a flush or compaction installed meanwhile.
    ///
    /// Flush and compaction keep every version a registered snapshot can see, but a plain read takes its
    /// seqno `r` first and the memtables and SSTs a moment later. If an install lands in between, the new
    /// SST may lack a version visible at `r` that a newer version (published after `r` was taken) shadowed.
    /// A read whose seqno and sources were both taken within one install generation is safe: any install
    /// after it started leaves the sources it already holds untouched.
    ///
    /// The read is entered in [`DbInner::readers`] before it takes its seqno, so no commit drops a memtable
    /// version it could see.
    pub(crate) fn latest<T>(&self, mut read: impl FnMut(u64) -> T) -> T {
        let _reading = self.readers.enter();
        loop {
            let g = self.install_gen.load(Ordering::SeqCst);
            let seq = self.visible_seqno.load(Ordering::SeqCst);
            let out = read(seq);
            if self.install_gen.load(Ordering::SeqCst) == g {
                return out;
            }
        }
    }

    /// Point lookup of `key` in `tree` at the latest seqno.
    pub(crate) fn get_latest(&self, tree: u32, key: &[u8]) -> Result<Option<Bytes>> {
        self.latest(|seq| self.get(tree, key, seq))
    }

    /// Point lookup of `key` in `tree` as of `read_seqno`.
    pub(crate) fn get(&self, tree: u32, key: &[u8], read_seqno: u64) -> Result<Option<Bytes>> {
        Stats::add(&self.stats.gets, 1);
        let mems = self.mems.read().clone();
        let v = point_get(
            std::iter::once(&*mems.active).chain(mems.imms.iter().map(|m| &**m)),
            || crate::version::current(self),
            &self.dir,
            tree,
            key,
            read_seqno,
        )?;
        if let Some(v) = &v {
            Stats::add(&self.stats.bytes_read, v.len() as u64);
        }
        Ok(v)
    }
}

/// Point lookup of `key` in `tree` as of `read_seqno` over `mems` (newest first), then the files of
/// `version` (asked for only when no memtable has the key).
fn point_get<'m, V: std::ops::Deref<Target = crate::version::Version>>(
    mems: impl Iterator<Item = &'m MemTable>,
    version: impl FnOnce() -> V,
    dir: &Path,
    tree: u32,
    key: &[u8],
    read_seqno: u64,
) -> Result<Option<Bytes>> {
    let lookup = crate::memtable::LookupKey::new(tree, key, read_seqno);
    let ukey = lookup.user_key();
    let mut max_rt = 0u64;
    let mut found = None;
    for m in mems {
        if m.has_range_tombstones()
            && let Some(rt) = m.max_range_tombstone(ukey, read_seqno)
        {
            max_rt = max_rt.max(rt);
        }
        if let Some(hit) = m.get_lookup(&lookup) {
            found = Some(hit);
            break;
        }
    }
    if found.is_none() {
        found = crate::version::get(&version(), dir, ukey, read_seqno, &mut max_rt)?;
    }
    Ok(match found {
        Some((seq, KIND_PUT, v)) if seq > max_rt => Some(v),
        _ => None,
    })
}

/// `TooLarge` unless `len <= limit`.
fn within(what: &'static str, len: usize, limit: usize) -> Result<()> {
    if len > limit {
        return Err(StorageError::TooLarge {
            what,
            size_bytes: len as u64,
            limit_bytes: limit as u64,
        });
    }
    Ok(())
}

/// Lock stripe index of `key` in `tree` (FNV-1a: cheap and good enough to spread keys).
fn rmw_stripe(tree: u32, key: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(tree);
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (h as usize) % RMW_STRIPES
}

/// The smallest key greater than every key starting with `prefix`, if any.
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < 0xff {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

impl DbInner {
    /// An iterator over `tree` keys within the bounds, reading at `read_seqno`.
    pub(crate) fn iter(
        &self,
        tree: u32,
        lower: std::ops::Bound<&[u8]>,
        upper: std::ops::Bound<&[u8]>,
        read_seqno: u64,
    ) -> crate::db_iter::DbIter {
        use crate::db_iter::{DbIter, Fragments, IterSpec, SourceIter};
        use crate::memtable::MemIter;
        use std::ops::Bound;
        let prefix = tree.to_be_bytes();
        let with_prefix = |k: &[u8]| {
            let mut v = Vec::with_capacity(4 + k.len());
            tree_key(&mut v, tree, k);
            v
        };
        let lower = match lower {
            Bound::Included(k) => Bound::Included(with_prefix(k)),
            Bound::Excluded(k) => Bound::Excluded(with_prefix(k)),
            Bound::Unbounded => Bound::Included(prefix.to_vec()),
        };
        let tree_end = match tree.checked_add(1) {
            Some(n) => Bound::Excluded(n.to_be_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let upper = match upper {
            Bound::Included(k) => Bound::Included(with_prefix(k)),
            Bound::Excluded(k) => Bound::Excluded(with_prefix(k)),
            Bound::Unbounded => tree_end,
        };
        let mems = self.mems.read().clone();
        let view = crate::version::current(self);
        // Only the tombstones overlapping the iterator's range matter; the indexes find them without
        // walking the rest.
        let lo: &[u8] = match &lower {
            Bound::Included(k) | Bound::Excluded(k) => k,
            Bound::Unbounded => &prefix,
        };
        let hi: Bound<&[u8]> = match &upper {
            Bound::Included(k) => Bound::Included(k),
            Bound::Excluded(k) => Bound::Excluded(k),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut runs = Vec::new();
        for m in std::iter::once(&mems.active).chain(mems.imms.iter()) {
            if m.has_range_tombstones() {
                m.range_tombstone_runs(lo, hi, &mut runs);
            }
        }
        crate::version::range_runs(&view, lo, hi, &mut runs);
        let start_at = match &lower {
            Bound::Included(l) => self.skip_hints.lookup(l, read_seqno),
            _ => None,
        };
        // The memtables need order only where the iterator reads.
        let bounds = (lower.clone(), upper.clone());
        let spec = IterSpec {
            read_seqno,
            lower,
            upper,
            prefix_len: 4,
            rts: Fragments::view(runs, read_seqno),
            start_at,
        };
        let make = move || {
            let mut v: Vec<Box<dyn SourceIter>> = Vec::new();
            for m in std::iter::once(&mems.active).chain(mems.imms.iter()) {
                v.push(Box::new(MemIter::within(m.clone(), bounds.clone())));
            }
            crate::version::sources(&view, &mut v);
            v
        };
        DbIter::new(spec, Box::new(make))
            .with_hints(self.skip_hints.clone())
            .with_reader(self.readers.enter_owned())
    }
}
