//! `strata-bench storage`: db_bench-style workloads on strata-storage, RocksDB and fjall, side by side.
//!
//! Every engine gets the same keys (16 bytes), the same values (100 B and 1 KiB), the same block cache
//! budget and the same durability (WAL on, no fsync per write — except `fillsync`, which fsyncs every write
//! from 16 threads). Each (workload, engine) pair runs on a fresh directory; engines alternate within a
//! round and the median round is reported.
//!
//! Write amplification is measured the same way for every engine: bytes the process wrote to the block
//! layer (`write_bytes` in `/proc/self/io`) during the workload and a final memtable flush, divided by the
//! user bytes written. Space amplification is the directory's size afterwards divided by the live user
//! bytes. RocksDB is compiled only with `--features rocksdb` (its C++ build takes minutes).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};

use crate::SuiteOptions;
use crate::report::{Record, median};

/// Key length of every workload, in bytes (db_bench's default).
const KEY_BYTES: usize = 16;
/// Entries the `seekrandom` case reads after each seek.
const SEEK_NEXT: usize = 100;
/// Writer threads of `fillsync`.
const SYNC_WRITERS: usize = 16;

/// What the workloads need from an engine. Implementations map each call to the engine's idiomatic API.
pub trait Engine: Send + Sync {
    /// Inserts or overwrites.
    fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()>;
    /// Inserts and makes it durable (fsync) before returning.
    fn put_sync(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()>;
    /// The value's length, if present (the value is read in full).
    fn get(&self, key: &[u8]) -> anyhow::Result<Option<usize>>;
    /// Deletes.
    fn delete(&self, key: &[u8]) -> anyhow::Result<()>;
    /// Reads up to `n` entries from the first key >= `start`; returns how many were read.
    fn scan(&self, start: &[u8], n: usize) -> anyhow::Result<usize>;
    /// The first key >= `start`, if any.
    fn first_from(&self, start: &[u8]) -> anyhow::Result<Option<Vec<u8>>>;
    /// Flushes memtables to disk (end of a write workload).
    fn flush(&self) -> anyhow::Result<()>;
}

/// How to open one engine.
pub struct EngineKind {
    /// Name in the report.
    pub name: &'static str,
    /// Whether this is strata (the others are peers).
    pub is_strata: bool,
    /// Opens the engine in `dir` with a block cache of `cache_bytes`; `durable` when the workload writes
    /// with `put_sync` (engines whose durability is a database-wide policy set it here).
    pub open: fn(&Path, u64, bool) -> anyhow::Result<Box<dyn Engine>>,
}

#[cfg_attr(not(feature = "rocksdb"), allow(unused_mut))]
fn engines() -> Vec<EngineKind> {
    let mut all = vec![
        EngineKind {
            name: "strata",
            is_strata: true,
            open: strata_engine::open,
        },
        EngineKind {
            name: "fjall",
            is_strata: false,
            open: fjall_engine::open,
        },
    ];
    #[cfg(feature = "rocksdb")]
    all.push(EngineKind {
        name: "rocksdb",
        is_strata: false,
        open: rocksdb_engine::open,
    });
    all
}

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Scale {
    /// Entries loaded by fill workloads with 100-byte values.
    entries_small: u64,
    /// Entries loaded with 1 KiB values.
    entries_large: u64,
    /// Reads in read workloads.
    reads: u64,
    /// Seeks in `seekrandom`.
    seeks: u64,
    /// Queue length kept by the queue workload, and its operations.
    queue_len: u64,
    queue_ops: u64,
    /// Writes of `fillsync`, over all threads.
    sync_writes: u64,
    /// Block cache for the hot cases (everything fits).
    hot_cache_bytes: u64,
}

impl Scale {
    fn new(quick: bool) -> Self {
        if quick {
            Scale {
                entries_small: 100_000,
                entries_large: 20_000,
                reads: 50_000,
                seeks: 5_000,
                queue_len: 10_000,
                queue_ops: 20_000,
                sync_writes: 2_000,
                hot_cache_bytes: 64 << 20,
            }
        } else {
            Scale {
                entries_small: 1_000_000,
                entries_large: 200_000,
                reads: 500_000,
                seeks: 50_000,
                queue_len: 100_000,
                queue_ops: 200_000,
                sync_writes: 20_000,
                hot_cache_bytes: 256 << 20,
            }
        }
    }
}

fn key(i: u64) -> [u8; KEY_BYTES] {
    // Big-endian in the last 8 bytes so numeric order is key order; a fixed prefix fills the rest.
    let mut k = *b"key:\0\0\0\0\0\0\0\0\0\0\0\0";
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(rng: &mut rand::rngs::SmallRng, len: usize) -> Vec<u8> {
    // Half random, half repeated, so compression (where an engine uses it) sees db_bench's 0.5 ratio.
    let mut v = vec![b'v'; len];
    rng.fill(&mut v[..len / 2]);
    v
}

/// One measured run of one workload on one engine.
struct Measured {
    ops: u64,
    seconds: f64,
    hist: Histogram<u64>,
    write_amp: Option<f64>,
    space_amp: Option<f64>,
}

impl Measured {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }
}

fn new_hist() -> Histogram<u64> {
    // 1 ns .. 60 s with 3 significant digits; the bounds cannot be invalid.
    Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Process-wide bytes written to the block layer so far.
fn disk_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += dir_size(&entry.path()),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}

/// Asks the kernel to drop clean page-cache pages so "cold" reads reach the disk. Needs root; best effort.
fn drop_page_cache() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

#[derive(Debug, Clone, Copy)]
enum Workload {
    FillSeq,
    FillRandom,
    Overwrite,
    ReadHot,
    ReadCold,
    SeekRandom,
    Queue,
    FillSync,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::FillSeq => "fillseq",
            Workload::FillRandom => "fillrandom",
            Workload::Overwrite => "overwrite",
            Workload::ReadHot => "readrandom hot",
            Workload::ReadCold => "readrandom cold",
            Workload::SeekRandom => "seekrandom+next100",
            Workload::Queue => "queue push/pop",
            Workload::FillSync => "fillsync 16 threads",
        }
    }
}

/// Runs one workload on a fresh engine in a fresh directory.
fn run_one(
    kind: &EngineKind,
    workload: Workload,
    value_bytes: usize,
    entries: u64,
    scale: &Scale,
    base: &Path,
) -> anyhow::Result<Measured> {
    let dir = base.join(format!(
        "{}-{}",
        kind.name,
        workload.name().replace([' ', '/', '+'], "_")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let data_bytes = entries * (KEY_BYTES + value_bytes) as u64;
    let cache_bytes = match workload {
        // Four times more data than cache.
        Workload::ReadCold => (data_bytes / 4).max(1 << 20),
        _ => scale.hot_cache_bytes,
    };
    let durable = matches!(workload, Workload::FillSync);
    let engine: Arc<dyn Engine> = Arc::from((kind.open)(&dir, cache_bytes, durable)?);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    let mut order: Vec<u64> = (0..entries).collect();
    order.shuffle(&mut rng);

    let load = |engine: &dyn Engine,
                order: &[u64],
                rng: &mut rand::rngs::SmallRng|
     -> anyhow::Result<()> {
        for &i in order {
            engine.put(&key(i), &value(rng, value_bytes))?;
        }
        engine.flush()
    };

    let mut hist = new_hist();
    let mut user_bytes = 0u64;
    let mut live_bytes = data_bytes;
    let ops;
    let written_before;
    let start;
    match workload {
        Workload::FillSeq | Workload::FillRandom => {
            let seq: Vec<u64> = (0..entries).collect();
            let keys = if matches!(workload, Workload::FillSeq) {
                &seq
            } else {
                &order
            };
            let values: Vec<Vec<u8>> = (0..1024).map(|_| value(&mut rng, value_bytes)).collect();
            written_before = disk_write_bytes();
            start = Instant::now();
            for (n, &i) in keys.iter().enumerate() {
                let t = Instant::now();
                engine.put(&key(i), &values[n % values.len()])?;
                let _ = hist.record(t.elapsed().as_nanos() as u64);
            }
            engine.flush()?;
            ops = entries;
            user_bytes = data_bytes;
        }
        Workload::Overwrite => {
            load(&*engine, &order, &mut rng)?;
            let values: Vec<Vec<u8>> = (0..1024).map(|_| value(&mut rng, value_bytes)).collect();
            written_before = disk_write_bytes();
            start = Instant::now();
            for n in 0..entries {
                let i = rng.random_range(0..entries);
                let t = Instant::now();
                engine.put(&key(i), &values[n as usize % values.len()])?;
                let _ = hist.record(t.elapsed().as_nanos() as u64);
            }
            engine.flush()?;
            ops = entries;
            user_bytes = data_bytes;
        }
        Workload::ReadHot | Workload::ReadCold => {
            load(&*engine, &order, &mut rng)?;
            if matches!(workload, Workload::ReadCold) {
                drop_page_cache();
            }
            written_before = disk_write_bytes();
            start = Instant::now();
            for _ in 0..scale.reads {
                let i = rng.random_range(0..entries);
                let t = Instant::now();
                let found = engine.get(&key(i))?;
                let _ = hist.record(t.elapsed().as_nanos() as u64);
                anyhow::ensure!(found == Some(value_bytes), "{}: key {i} lost", kind.name);
            }
            ops = scale.reads;
        }
        Workload::SeekRandom => {
            load(&*engine, &order, &mut rng)?;
            written_before = disk_write_bytes();
            start = Instant::now();
            for _ in 0..scale.seeks {
                let i = rng.random_range(0..entries);
                let t = Instant::now();
                let n = engine.scan(&key(i), SEEK_NEXT)?;
                let _ = hist.record(t.elapsed().as_nanos() as u64);
                anyhow::ensure!(
                    n == SEEK_NEXT.min((entries - i) as usize),
                    "{}: short scan",
                    kind.name
                );
            }
            ops = scale.seeks;
        }
        Workload::Queue => {
            // A work queue: push at the tail, pop the head (find the first key, delete it). Dead keys pile
            // up at the head, which an LSM must not make every pop scan over.
            let v = value(&mut rng, value_bytes);
            for i in 0..scale.queue_len {
                engine.put(&key(i), &v)?;
            }
            let (mut head, mut tail) = (0u64, scale.queue_len);
            written_before = disk_write_bytes();
            start = Instant::now();
            for _ in 0..scale.queue_ops {
                let t = Instant::now();
                engine.put(&key(tail), &v)?;
                tail += 1;
                // From the start of the queue's key range, as a consumer that does not track the head
                // does: the dead keys before `head` are what an LSM must not scan over on every pop.
                let first = engine
                    .first_from(&key(0))?
                    .context("queue unexpectedly empty")?;
                anyhow::ensure!(first == key(head), "{}: queue order broken", kind.name);
                engine.delete(&first)?;
                head += 1;
                let _ = hist.record(t.elapsed().as_nanos() as u64);
            }
            engine.flush()?;
            ops = scale.queue_ops;
            user_bytes = scale.queue_ops * (KEY_BYTES + value_bytes) as u64;
            live_bytes = scale.queue_len * (KEY_BYTES + value_bytes) as u64;
        }
        Workload::FillSync => {
            let per_thread = scale.sync_writes / SYNC_WRITERS as u64;
            written_before = disk_write_bytes();
            start = Instant::now();
            let hists = std::thread::scope(|s| {
                let handles: Vec<_> = (0..SYNC_WRITERS as u64)
                    .map(|t| {
                        let engine = engine.clone();
                        s.spawn(move || -> anyhow::Result<Histogram<u64>> {
                            let mut rng = rand::rngs::SmallRng::seed_from_u64(t);
                            let v = value(&mut rng, value_bytes);
                            let mut h = new_hist();
                            for n in 0..per_thread {
                                let i = t * per_thread + n;
                                let at = Instant::now();
                                engine.put_sync(&key(i), &v)?;
                                let _ = h.record(at.elapsed().as_nanos() as u64);
                            }
                            Ok(h)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().map_err(|_| anyhow::anyhow!("writer panicked"))?)
                    .collect::<anyhow::Result<Vec<_>>>()
            })?;
            for h in hists {
                let _ = hist.add(h);
            }
            ops = per_thread * SYNC_WRITERS as u64;
            user_bytes = ops * (KEY_BYTES + value_bytes) as u64;
            live_bytes = user_bytes;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let written = disk_write_bytes().saturating_sub(written_before);
    let write_amp = (user_bytes > 0).then(|| written as f64 / user_bytes as f64);
    drop(engine);
    let space_amp = Some(dir_size(&dir) as f64 / live_bytes.max(1) as f64);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measured {
        ops,
        seconds,
        hist,
        write_amp,
        space_amp,
    })
}

/// Runs the storage suite.
pub fn run(opts: &SuiteOptions) -> anyhow::Result<Vec<Record>> {
    let engines = engines();
    if !engines.iter().any(|e| e.is_strata) {
        anyhow::bail!(
            "the storage suite needs strata-storage, which is not built yet (issue 3); peers available: {}",
            engines
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !cfg!(feature = "rocksdb") {
        eprintln!(
            "note: RocksDB is not compiled in; run with `--features rocksdb` (needs clang and libclang-dev) to \
             compare against it"
        );
    }
    let scale = Scale::new(opts.quick);
    let base = bench_dir()?;
    let mut cases: Vec<(Workload, usize, u64)> = Vec::new();
    for (value_bytes, entries) in [(100, scale.entries_small), (1024, scale.entries_large)] {
        for w in [
            Workload::FillSeq,
            Workload::FillRandom,
            Workload::Overwrite,
            Workload::ReadHot,
            Workload::ReadCold,
            Workload::SeekRandom,
            Workload::Queue,
            Workload::FillSync,
        ] {
            cases.push((w, value_bytes, entries));
        }
    }
    let bar = opts.progress(
        (cases.len() * engines.len() * opts.rounds) as u64,
        "storage",
    );
    let mut records = Vec::new();
    for &(workload, value_bytes, entries) in &cases {
        let case = format!("{} {}B", workload.name(), value_bytes);
        let mut runs: Vec<Vec<Measured>> = engines.iter().map(|_| Vec::new()).collect();
        for _ in 0..opts.rounds {
            for (e, kind) in engines.iter().enumerate() {
                bar.set_message(format!("{case} {}", kind.name));
                let m = run_one(kind, workload, value_bytes, entries, &scale, &base)
                    .with_context(|| format!("{case} on {}", kind.name))?;
                runs[e].push(m);
                bar.inc(1);
            }
        }
        for (kind, mut measured) in engines.iter().zip(runs) {
            let mut rates: Vec<f64> = measured.iter().map(Measured::ops_per_sec).collect();
            let rate = median(&mut rates).unwrap_or(0.0);
            // The round closest to the median rate supplies latency and amplification.
            measured.sort_by(|a, b| {
                (a.ops_per_sec() - rate)
                    .abs()
                    .total_cmp(&(b.ops_per_sec() - rate).abs())
            });
            let Some(m) = measured.first() else { continue };
            let mut record = Record::new("storage", &case, kind.name)
                .ops(rate)
                .latency_us(
                    m.hist.value_at_quantile(0.5) as f64 / 1000.0,
                    m.hist.value_at_quantile(0.99) as f64 / 1000.0,
                );
            if let Some(wa) = m.write_amp {
                record = record.note("write_amp", format!("{wa:.2}"));
            }
            if let Some(sa) = m.space_amp {
                record = record.note("space_amp", format!("{sa:.2}"));
            }
            records.push(record.note("ops", m.ops));
        }
    }
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&base);
    Ok(records)
}

/// A scratch directory on a real disk (not tmpfs), so I/O is measured.
fn bench_dir() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("STRATA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("strata-bench-{}", std::process::id()))
        });
    std::fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    Ok(base)
}

mod strata_engine {
    use std::path::Path;

    use strata_storage::{Db, FsyncPolicy, Options, Tree};

    use super::Engine;

    struct Strata {
        db: Db,
        tree: Tree,
        durable: bool,
    }

    pub fn open(dir: &Path, cache_bytes: u64, durable: bool) -> anyhow::Result<Box<dyn Engine>> {
        // Durable writes use the engine's own path: `FsyncPolicy::Always` with group commit, so the 16
        // writers of `fillsync` share fsyncs as they would in the server.
        let opts = Options {
            fsync: if durable {
                FsyncPolicy::Always
            } else {
                FsyncPolicy::No
            },
            block_cache_bytes: cache_bytes,
            ..Options::default()
        };
        let db = Db::open(dir, opts)?;
        let tree = db.tree("bench")?;
        Ok(Box::new(Strata { db, tree, durable }))
    }

    impl Engine for Strata {
        fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
            Ok(self.tree.put(key, value)?)
        }
        fn put_sync(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
            self.tree.put(key, value)?;
            if !self.durable {
                self.db.sync_wal()?;
            }
            Ok(())
        }
        fn get(&self, key: &[u8]) -> anyhow::Result<Option<usize>> {
            Ok(self.tree.get(key)?.map(|v| v.len()))
        }
        fn delete(&self, key: &[u8]) -> anyhow::Result<()> {
            Ok(self.tree.delete(key)?)
        }
        fn scan(&self, start: &[u8], n: usize) -> anyhow::Result<usize> {
            let mut read = 0;
            for item in self.tree.range(start..).take(n) {
                let (_k, v) = item?;
                read += usize::from(!v.is_empty());
            }
            Ok(read)
        }
        fn first_from(&self, start: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
            match self.tree.range(start..).next() {
                Some(item) => Ok(Some(item?.0.to_vec())),
                None => Ok(None),
            }
        }
        fn flush(&self) -> anyhow::Result<()> {
            Ok(self.db.flush()?)
        }
    }
}

mod fjall_engine {
    use std::path::Path;

    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    use super::Engine;

    struct Fjall {
        db: Database,
        tree: Keyspace,
    }

    pub fn open(dir: &Path, cache_bytes: u64, _durable: bool) -> anyhow::Result<Box<dyn Engine>> {
        let db = Database::builder(dir).cache_size(cache_bytes).open()?;
        let tree = db.keyspace("bench", KeyspaceCreateOptions::default)?;
        Ok(Box::new(Fjall { db, tree }))
    }

    impl Engine for Fjall {
        fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
            Ok(self.tree.insert(key, value)?)
        }
        fn put_sync(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
            self.tree.insert(key, value)?;
            Ok(self.db.persist(PersistMode::SyncData)?)
        }
        fn get(&self, key: &[u8]) -> anyhow::Result<Option<usize>> {
            Ok(self.tree.get(key)?.map(|v| v.len()))
        }
        fn delete(&self, key: &[u8]) -> anyhow::Result<()> {
            Ok(self.tree.remove(key)?)
        }
        fn scan(&self, start: &[u8], n: usize) -> anyhow::Result<usize> {
            let mut read = 0;
            for guard in self.tree.range(start..).take(n) {
                let (_k, v) = guard.into_inner()?;
                read += usize::from(!v.is_empty());
            }
            Ok(read)
        }
        fn first_from(&self, start: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
            match self.tree.range(start..).next() {
                Some(guard) => Ok(Some(guard.key()?.to_vec())),
                None => Ok(None),
            }
        }
        fn flush(&self) -> anyhow::Result<()> {
            Ok(self.tree.rotate_memtable_and_wait()?)
        }
    }
}

#[cfg(feature = "rocksdb")]
mod rocksdb_engine {
    use std::path::Path;

    use rocksdb::{BlockBasedOptions, Cache, DB, Options, WriteOptions};

    use super::Engine;

    struct Rocks {
        db: DB,
        sync: WriteOptions,
    }

    pub fn open(dir: &Path, cache_bytes: u64, _durable: bool) -> anyhow::Result<Box<dyn Engine>> {
        let mut table = BlockBasedOptions::default();
        let cache = Cache::new_lru_cache(usize::try_from(cache_bytes)?);
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.increase_parallelism(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&opts, dir)?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(Box::new(Rocks { db, sync }))
    }

    impl Engine for Rocks {
        fn put(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
            Ok(self.db.put(key, value)?)
        }
        fn put_sync(&self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
            Ok(self.db.put_opt(key, value, &self.sync)?)
        }
        fn get(&self, key: &[u8]) -> anyhow::Result<Option<usize>> {
            Ok(self.db.get_pinned(key)?.map(|v| v.len()))
        }
        fn delete(&self, key: &[u8]) -> anyhow::Result<()> {
            Ok(self.db.delete(key)?)
        }
        fn scan(&self, start: &[u8], n: usize) -> anyhow::Result<usize> {
            let mut it = self.db.raw_iterator();
            it.seek(start);
            let mut read = 0;
            while it.valid() && read < n {
                read += usize::from(it.value().is_some());
                it.next();
            }
            it.status()?;
            Ok(read)
        }
        fn first_from(&self, start: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
            let mut it = self.db.raw_iterator();
            it.seek(start);
            let key = it.valid().then(|| it.key().map(<[u8]>::to_vec)).flatten();
            it.status()?;
            Ok(key)
        }
        fn flush(&self) -> anyhow::Result<()> {
            Ok(self.db.flush()?)
        }
    }
}
