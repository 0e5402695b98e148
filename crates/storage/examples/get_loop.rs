//! A point-get loop for profiling the read path (`perf stat -e instructions target/release/examples/get_loop`):
//! `get_loop [mem|l0|l1|miss|all] [reads] [memtable entries]`, fsync off, 16-byte keys and 100-byte values.
//!
//! Setup: 200k keys compacted into L1, 100k more flushed to L0, then `memtable entries` (default 300k) keys
//! left in the active memtable. Each mode then reads random keys of one group: `mem` (memtable hits), `l0`
//! and `l1` (SST hits behind a full memtable), `miss` (absent keys), `all` (a mix). Run once with 0 reads
//! and once with N reads and divide the instruction difference by N for a load-independent cost per get.

use std::time::Instant;

use strata_storage::{Db, FsyncPolicy, Options};

fn key(group: u8, id: u64) -> [u8; 16] {
    let mut k = *b"key:\0\0\0\0\0\0\0\0\0\0\0\0";
    k[4] = group;
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "all".into());
    let reads: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let mem_entries: u64 = args.next().map_or(Ok(300_000), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::No,
            background_compaction: false,
            ..Options::default()
        },
    )?;
    let tree = db.tree("bench")?;
    let value = vec![b'v'; 100];
    let (n1, n0) = (200_000u64, 100_000u64);
    for i in 0..n1 {
        tree.put(&key(1, i), &value)?;
    }
    db.flush()?;
    while db.compact_once()? {}
    for i in 0..n0 {
        tree.put(&key(2, i), &value)?;
    }
    db.flush()?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || -> u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // Distinct keys inserted in a scattered order (an odd multiplier permutes the u64s).
    for i in 0..mem_entries {
        tree.put(&key(3, scatter(i)), &value)?;
    }
    let s = db.stats();
    eprintln!(
        "levels {:?}, memtable bytes {}",
        s.level_files, s.memtable_bytes
    );
    let t = Instant::now();
    let found = read_loop(&tree, &mode, reads, mem_entries, &mut rnd)?;
    let secs = t.elapsed().as_secs_f64();
    let s2 = db.stats();
    eprintln!(
        "{mode}: {reads} gets ({found} found) {:.0} ns/get, cache hits {} misses {}",
        secs * 1e9 / reads.max(1) as f64,
        s2.cache_hits - s.cache_hits,
        s2.cache_misses - s.cache_misses
    );
    Ok(())
}

/// Spreads `i` over the key space (an odd multiplier permutes the u64s).
fn scatter(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The measured loop (a separate function so `callgrind --toggle-collect=*read_loop*` counts only it).
#[inline(never)]
fn read_loop(
    tree: &strata_storage::Tree,
    mode: &str,
    reads: u64,
    mem_entries: u64,
    rnd: &mut impl FnMut() -> u64,
) -> Result<u64, Box<dyn std::error::Error>> {
    let (n1, n0) = (200_000u64, 100_000u64);
    let mut found = 0u64;
    for i in 0..reads {
        let r = rnd();
        let m = if mode == "all" {
            ["mem", "l0", "l1", "miss"][(i % 4) as usize]
        } else {
            mode
        };
        let k = match m {
            "mem" => key(3, scatter(r % mem_entries)),
            "l0" => key(2, r % n0),
            "l1" => key(1, r % n1),
            _ => key(4, r),
        };
        if tree.get(&k)?.is_some() {
            found += 1;
        }
    }
    Ok(found)
}
