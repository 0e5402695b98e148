//! A put loop for profiling the write path (`perf record -g target/release/examples/put_loop`):
//! `put_loop [entries] [value bytes] [seq|random]`, fsync off, 16-byte keys as in `strata-bench`.

use std::time::Instant;

use strata_storage::{Db, FsyncPolicy, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(1_000_000), |s| s.parse())?;
    let vlen: usize = args.next().map_or(Ok(100), |s| s.parse())?;
    let random = args.next().as_deref() != Some("seq");
    let dir = tempfile::tempdir()?;
    let db = Db::open(
        dir.path(),
        Options {
            fsync: FsyncPolicy::No,
            ..Options::default()
        },
    )?;
    let tree = db.tree("bench")?;
    let value = vec![b'v'; vlen];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let start = Instant::now();
    for i in 0..n {
        let id = if random {
            // xorshift: a cheap stand-in for a shuffled order.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        } else {
            i
        };
        let mut k = *b"key:\0\0\0\0\0\0\0\0\0\0\0\0";
        k[8..].copy_from_slice(&id.to_be_bytes());
        tree.put(&k, &value)?;
    }
    let put_secs = start.elapsed().as_secs_f64();
    db.flush()?;
    let secs = start.elapsed().as_secs_f64();
    println!("puts {put_secs:.3}s, flush {:.3}s", secs - put_secs);
    let s = db.stats();
    println!(
        "{n} puts in {secs:.2}s: {:.0} ops/s, write amp (engine) {:.2}, levels {:?}, wal {} flush {} compaction {}",
        n as f64 / secs,
        s.write_amplification(),
        s.level_files,
        s.wal_bytes_written,
        s.flush_bytes_written,
        s.compaction_bytes_written
    );
    // Then random point reads (every key exists), to see the read path and the block cache.
    let t = Instant::now();
    let reads = n.min(200_000);
    for _ in 0..reads {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut k = *b"key:\0\0\0\0\0\0\0\0\0\0\0\0";
        k[8..].copy_from_slice(&(x % n).to_be_bytes());
        tree.get(&k)?;
    }
    let s2 = db.stats();
    println!(
        "{reads} gets: {:.0} ops/s, cache hits {} misses {}",
        reads as f64 / t.elapsed().as_secs_f64(),
        s2.cache_hits - s.cache_hits,
        s2.cache_misses - s.cache_misses
    );
    Ok(())
}
