//! SSTable round-trip, corruption and fuzz tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use bytes::Bytes;
use parking_lot::Mutex;
use proptest::prelude::*;

use super::*;
use crate::iter::InternalIterator;
use crate::key::{ValueKind, compare_internal, internal_key, parse_internal_key};

/// Model key: (user key, Reverse(seqno)) sorts like an internal key (kinds never tie: one entry per
/// user key and seqno).
type ModelKey = (Vec<u8>, std::cmp::Reverse<u64>);

#[derive(Debug, Clone)]
struct Case {
    entries: BTreeMap<ModelKey, (ValueKind, Vec<u8>)>,
    tombstones: Vec<RangeTombstone>,
    opts: SstOptions,
}

fn user_key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![Just(b'a'), Just(b'b'), Just(b'c'), Just(0u8)],
        0..6,
    )
}

fn case_strategy() -> impl Strategy<Value = Case> {
    let entry = (
        user_key_strategy(),
        0u64..50,
        any::<bool>(),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..20),
            // Compressible and occasionally larger than a block.
            (0usize..600).prop_map(|n| vec![b'x'; n]),
        ],
    );
    let ts = (user_key_strategy(), user_key_strategy(), 0u64..60);
    (
        prop::collection::vec(entry, 0..150),
        prop::collection::vec(ts, 0..4),
        256usize..1200,
        1usize..8,
        prop_oneof![Just(0u32), Just(10u32), Just(3u32)],
        any::<bool>(),
    )
        .prop_map(|(es, ts, block, restart, bloom, lz4)| {
            let mut entries = BTreeMap::new();
            for (k, s, put, v) in es {
                let (kind, v) = if put {
                    (ValueKind::Put, v)
                } else {
                    (ValueKind::Delete, Vec::new())
                };
                entries.insert((k, std::cmp::Reverse(s)), (kind, v));
            }
            let tombstones = ts
                .into_iter()
                .filter(|(a, b, _)| a < b)
                .map(|(start, end, seqno)| RangeTombstone { start, end, seqno })
                .collect();
            Case {
                entries,
                tombstones,
                opts: SstOptions {
                    block_size_bytes: block,
                    restart_interval: restart,
                    bloom_bits_per_key: bloom,
                    compression: if lz4 {
                        Compression::Lz4
                    } else {
                        Compression::None
                    },
                },
            }
        })
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn write_case(case: &Case) -> (Vec<u8>, SstMeta, Entries) {
    let mut w = SstWriter::new(Vec::new(), case.opts.clone());
    let mut flat = Vec::new();
    for ((k, s), (kind, v)) in &case.entries {
        let ik = internal_key(k, s.0, *kind);
        w.add(&ik, v).unwrap();
        flat.push((ik, v.clone()));
    }
    for t in &case.tombstones {
        w.add_range_tombstone(t.clone()).unwrap();
    }
    let (bytes, meta) = w.finish().unwrap();
    assert_eq!(meta.file_size, bytes.len() as u64);
    (bytes, meta, flat)
}

/// A HashMap block cache counting hits, for checking the cache path.
#[derive(Default)]
struct MapCache {
    map: Mutex<HashMap<(u64, u64), Bytes>>,
    hits: AtomicU64,
}

impl BlockCache for MapCache {
    fn get(&self, file_id: u64, block_offset: u64) -> Option<Bytes> {
        let r = self.map.lock().get(&(file_id, block_offset)).cloned();
        if r.is_some() {
            self.hits.fetch_add(1, AtomicOrdering::Relaxed);
        }
        r
    }
    fn insert(&self, file_id: u64, block_offset: u64, block: Bytes) {
        self.map.lock().insert((file_id, block_offset), block);
    }
}

fn scan_forward(it: &mut SstIterator) -> Entries {
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next().unwrap();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn round_trip_matches_model(case in case_strategy(),
                                probes in prop::collection::vec((user_key_strategy(), 0u64..55), 20)) {
        let (bytes, meta, flat) = write_case(&case);
        let cache: Arc<dyn BlockCache> = Arc::new(MapCache::default());
        let r = SstReader::open(Arc::new(bytes), 3, Some(cache)).unwrap();
        prop_assert_eq!(r.meta(), &meta);
        prop_assert_eq!(meta.entries, flat.len() as u64);
        let dels = case.entries.values().filter(|(k, _)| *k == ValueKind::Delete).count();
        prop_assert_eq!(meta.point_tombstones, dels as u64);
        let mut ts = case.tombstones.clone();
        ts.sort_by(|a, b| a.start.cmp(&b.start).then(b.seqno.cmp(&a.seqno)).then(a.end.cmp(&b.end)));
        ts.dedup();
        prop_assert_eq!(r.range_tombstones(), ts.as_slice());
        let report = r.verify().unwrap();
        prop_assert_eq!(report.entries, flat.len() as u64);

        // Forward and reverse scans.
        let mut it = r.iter();
        it.seek_to_first().unwrap();
        prop_assert_eq!(&scan_forward(&mut it), &flat);
        it.seek_to_last().unwrap();
        let mut rev = Vec::new();
        while it.valid() {
            rev.push((it.key().to_vec(), it.value().to_vec()));
            it.prev().unwrap();
        }
        rev.reverse();
        prop_assert_eq!(&rev, &flat);

        for (uk, read_seqno) in probes {
            // get: newest version of uk with seqno <= read_seqno.
            let expect = case
                .entries
                .range((uk.clone(), std::cmp::Reverse(read_seqno))..)
                .next()
                .filter(|((k, _), _)| *k == uk)
                .map(|((_, s), (kind, v))| (s.0, *kind, v.clone()));
            let got = r.get(&uk, read_seqno).unwrap().map(|(s, k, v)| (s, k, v.to_vec()));
            prop_assert_eq!(got, expect.clone());
            if expect.is_some() {
                prop_assert!(r.may_contain(&uk));
            }

            // seek / seek_for_prev against the flat sorted list, then a step each way.
            let target = internal_key(&uk, read_seqno, ValueKind::Put);
            let p = flat.partition_point(|e| compare_internal(&e.0, &target).is_lt());
            it.seek(&target).unwrap();
            prop_assert_eq!(it.valid().then(|| it.key().to_vec()), flat.get(p).map(|e| e.0.clone()));
            if it.valid() {
                it.prev().unwrap();
                let want = p.checked_sub(1).map(|q| flat[q].0.clone());
                prop_assert_eq!(it.valid().then(|| it.key().to_vec()), want);
            }
            let q = flat.partition_point(|e| compare_internal(&e.0, &target).is_le());
            it.seek_for_prev(&target).unwrap();
            let want = q.checked_sub(1).map(|i| flat[i].0.clone());
            prop_assert_eq!(it.valid().then(|| it.key().to_vec()), want);
            if it.valid() {
                it.next().unwrap();
                prop_assert_eq!(it.valid().then(|| it.key().to_vec()), flat.get(q).map(|e| e.0.clone()));
            }
        }
    }

    #[test]
    fn fuzz_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::fuzz_open_and_scan(&bytes);
    }

    #[test]
    fn fuzz_mutated_tables(case in case_strategy(),
                           flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..6)) {
        let (mut bytes, _, _) = write_case(&case);
        for (i, x) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        fuzzing::fuzz_open_and_scan(&bytes);
    }
}

/// A table with several blocks of every kind, small enough to flip every byte of.
fn sample_table(compression: Compression) -> Vec<u8> {
    let mut w = SstWriter::new(
        Vec::new(),
        SstOptions {
            block_size_bytes: 256,
            restart_interval: 4,
            bloom_bits_per_key: 10,
            compression,
        },
    );
    for i in 0..60u32 {
        let kind = if i % 7 == 0 {
            ValueKind::Delete
        } else {
            ValueKind::Put
        };
        let v = format!("value-{i}-{}", "z".repeat((i % 5) as usize * 10));
        w.add(
            &internal_key(format!("key{i:04}").as_bytes(), u64::from(i) + 1, kind),
            v.as_bytes(),
        )
        .unwrap();
    }
    w.add_range_tombstone(RangeTombstone {
        start: b"key0010".to_vec(),
        end: b"key0020".to_vec(),
        seqno: 99,
    })
    .unwrap();
    w.finish().unwrap().0
}

fn open_and_verify(bytes: Vec<u8>) -> Result<VerifyReport, SstError> {
    let r = SstReader::open(Arc::new(bytes), 9, None)?;
    r.verify()
}

#[test]
fn every_byte_flip_is_detected() {
    for compression in [Compression::None, Compression::Lz4] {
        let good = sample_table(compression);
        assert!(open_and_verify(good.clone()).is_ok());
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= x;
                match open_and_verify(bad) {
                    Err(e) => assert!(e.is_corruption(), "byte {i}: {e}"),
                    Ok(_) => panic!("flip of byte {i} by {x:#x} went undetected"),
                }
            }
        }
    }
}

#[test]
fn every_truncation_is_detected() {
    let good = sample_table(Compression::Lz4);
    for len in 0..good.len() {
        let e = open_and_verify(good[..len].to_vec()).unwrap_err();
        assert!(e.is_corruption(), "truncated to {len}: {e}");
    }
    // Appended garbage moves the footer: also detected.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0u8; 7]);
    assert!(open_and_verify(longer).unwrap_err().is_corruption());
}

#[test]
fn lz4_shrinks_compressible_blocks() {
    let raw = sample_table(Compression::None);
    let lz4 = sample_table(Compression::Lz4);
    assert!(lz4.len() < raw.len(), "{} vs {}", lz4.len(), raw.len());
}

#[test]
fn cache_is_used_for_data_blocks() {
    let cache = Arc::new(MapCache::default());
    let dyn_cache: Arc<dyn BlockCache> = cache.clone();
    let r = SstReader::open(Arc::new(sample_table(Compression::Lz4)), 1, Some(dyn_cache)).unwrap();
    assert!(r.get(b"key0003", 100).unwrap().is_some());
    assert!(r.get(b"key0003", 100).unwrap().is_some());
    assert!(cache.hits.load(AtomicOrdering::Relaxed) >= 1);
    // A key the filter rules out never reaches the cache or the file.
    let before = cache.hits.load(AtomicOrdering::Relaxed);
    let misses = (0..200)
        .filter(|i| !r.may_contain(format!("absent{i}").as_bytes()))
        .count();
    assert!(misses > 150);
    assert_eq!(cache.hits.load(AtomicOrdering::Relaxed), before);
}

#[test]
fn get_sees_deletes_and_respects_read_seqno() {
    let r = SstReader::open(Arc::new(sample_table(Compression::None)), 1, None).unwrap();
    let (s, k, _) = r.get(b"key0007", 100).unwrap().unwrap();
    assert_eq!((s, k), (8, ValueKind::Delete));
    assert!(r.get(b"key0007", 7).unwrap().is_none());
    let (s, k, v) = r.get(b"key0008", 9).unwrap().unwrap();
    assert_eq!(
        (s, k, &v[..]),
        (
            9,
            ValueKind::Put,
            &b"value-8-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"[..]
        )
    );
    assert!(r.get(b"key9999", 100).unwrap().is_none());
    assert!(r.get(b"", 100).unwrap().is_none());
}

#[test]
fn empty_and_tombstone_only_tables() {
    let (bytes, meta) = SstWriter::new(Vec::new(), SstOptions::default())
        .finish()
        .unwrap();
    assert_eq!(meta.entries, 0);
    let r = SstReader::open(Arc::new(bytes), 1, None).unwrap();
    assert!(!r.may_contain(b"a"));
    assert!(r.get(b"a", 5).unwrap().is_none());
    let mut it = r.iter();
    it.seek_to_first().unwrap();
    assert!(!it.valid());
    it.seek_for_prev(b"zzzzzzzzzz").unwrap();
    assert!(!it.valid());
    r.verify().unwrap();

    let mut w = SstWriter::new(Vec::new(), SstOptions::default());
    w.add_range_tombstone(RangeTombstone {
        start: b"b".to_vec(),
        end: b"d".to_vec(),
        seqno: 4,
    })
    .unwrap();
    w.add_range_tombstone(RangeTombstone {
        start: b"a".to_vec(),
        end: b"c".to_vec(),
        seqno: 2,
    })
    .unwrap();
    let (bytes, meta) = w.finish().unwrap();
    assert_eq!(
        (
            meta.smallest_user_key.as_slice(),
            meta.largest_user_key.as_slice()
        ),
        (&b"a"[..], &b"d"[..])
    );
    assert_eq!(
        (meta.min_seqno, meta.max_seqno, meta.range_tombstones),
        (2, 4, 2)
    );
    let r = SstReader::open(Arc::new(bytes), 1, None).unwrap();
    assert_eq!(r.range_tombstones().len(), 2);
    assert!(r.range_tombstones()[0].covers(b"a", 1));
    r.verify().unwrap();
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = SstWriter::new(Vec::new(), SstOptions::default());
    w.add(&internal_key(b"b", 5, ValueKind::Put), b"").unwrap();
    let e = w
        .add(&internal_key(b"b", 5, ValueKind::Put), b"")
        .unwrap_err();
    assert!(matches!(e, SstError::KeyOrder { .. }));
    assert!(w.add(&internal_key(b"a", 9, ValueKind::Put), b"").is_err());
    assert!(w.add(&internal_key(b"b", 6, ValueKind::Put), b"").is_err());
    assert!(
        w.add(&internal_key(b"c", 1, ValueKind::RangeDelete), b"")
            .is_err()
    );
    assert!(w.add(b"short", b"").is_err());
    let empty = RangeTombstone {
        start: b"x".to_vec(),
        end: b"x".to_vec(),
        seqno: 1,
    };
    assert!(w.add_range_tombstone(empty).is_err());
    // The writer is still usable after rejected input.
    w.add(&internal_key(b"b", 4, ValueKind::Delete), b"")
        .unwrap();
    let (_, meta) = w.finish().unwrap();
    assert_eq!(meta.entries, 2);
}

/// Fails every write after `budget` bytes.
struct FailingWriter {
    budget: usize,
}

impl std::io::Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() > self.budget {
            return Err(std::io::Error::other("disk full"));
        }
        self.budget -= buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_error_poisons_writer() {
    let mut w = SstWriter::new(
        FailingWriter { budget: 300 },
        SstOptions {
            block_size_bytes: 256,
            ..SstOptions::default()
        },
    );
    let mut err = None;
    for i in 0..100u32 {
        if let Err(e) = w.add(
            &internal_key(format!("k{i:04}").as_bytes(), 1, ValueKind::Put),
            &[7u8; 40],
        ) {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(err, Some(SstError::Io { .. })));
    assert!(matches!(
        w.add(&internal_key(b"z", 1, ValueKind::Put), b""),
        Err(SstError::WriterFailed)
    ));
    assert!(matches!(w.finish(), Err(SstError::WriterFailed)));
}

#[test]
fn reads_from_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000001.sst");
    let file = std::fs::File::create(&path).unwrap();
    let mut w = SstWriter::new(std::io::BufWriter::new(file), SstOptions::default());
    for i in 0..1000u32 {
        w.add(
            &internal_key(&i.to_be_bytes(), 1, ValueKind::Put),
            &i.to_le_bytes(),
        )
        .unwrap();
    }
    let (out, meta) = w.finish().unwrap();
    out.into_inner().unwrap().sync_all().unwrap();
    let r = SstReader::open(Arc::new(std::fs::File::open(&path).unwrap()), 1, None).unwrap();
    assert_eq!(r.meta(), &meta);
    assert_eq!(
        r.verify().unwrap().data_blocks,
        r.verify().unwrap().data_blocks
    );
    let (_, _, v) = r.get(&500u32.to_be_bytes(), 1).unwrap().unwrap();
    assert_eq!(&v[..], &500u32.to_le_bytes());
    let mut it = r.iter();
    it.seek_to_first().unwrap();
    assert_eq!(scan_forward(&mut it).len(), 1000);
    assert_eq!(
        parse_internal_key(&internal_key(b"k", 1, ValueKind::Put))
            .unwrap()
            .seqno,
        1
    );
}

#[test]
fn readers_and_iterators_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<SstReader>();
    send::<SstIterator>();
    send_sync::<SstError>();
}
