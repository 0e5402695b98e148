//! Times ordering a memtable of random keys and walking it in order, as a flush does (`mem_walk [keys]
//! [value bytes] [seq|random]`): the keys are added, ordered once, then walked four times.

use std::sync::Arc;
use std::time::Instant;

use strata_storage::memtable::{KIND_PUT, MemIter, MemTable};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(800_000), |s| s.parse())?;
    let vlen: usize = args.next().map_or(Ok(0), |s| s.parse())?;
    let random = args.next().as_deref() != Some("seq");
    let mem = Arc::new(MemTable::with_key_capacity(1, n as usize));
    let value = vec![b'v'; vlen];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for seqno in 1..=n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = if random { x } else { seqno };
        let mut k = *b"key:\0\0\0\0\0\0\0\0\0\0\0\0";
        k[8..].copy_from_slice(&id.to_be_bytes());
        mem.add(0, &k, seqno, KIND_PUT, &value);
    }
    // The first ordered read sorts the keys (a flush's first step).
    let t = Instant::now();
    let mut it = MemIter::newest_only(mem.clone());
    it.seek_to_first();
    println!("ordering: {:.3}s", t.elapsed().as_secs_f64());
    for round in 0..4 {
        let t = Instant::now();
        let mut it = MemIter::newest_only(mem.clone());
        it.seek_to_first();
        let mut seen = 0u64;
        while it.valid() {
            seen += 1;
            it.next();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "round {round}: {seen} entries in {secs:.3}s, {:.0} ns/entry",
            secs * 1e9 / seen as f64
        );
    }
    Ok(())
}
