//! Entry points for fuzzers (`fuzz/fuzz_targets/storage_*.rs`) and for the proptest that feeds them random
//! bytes in CI. Each one parses untrusted bytes the way recovery or `strata storage check` does and must
//! never panic, hang or allocate without bound; errors are the expected outcome for most inputs.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;

use crate::batch::{BatchIter, BatchOp, FrameOps, WalFormat};
use crate::memtable::MemTable;

/// Bounds the work per input so a fuzzer never stalls on one case.
const MAX_STEPS: usize = 10_000;

/// An SSTable file: footer, index, filter, properties, data blocks and range tombstones, through every read
/// path (with and without checksum verification); then the bytes as a single data block, and the last
/// footer-sized window as a footer.
pub fn sst(data: &[u8]) {
    crate::sst::fuzzing::fuzz_open_and_scan(data);
    sst_block(data);
    let n = data.len().min(crate::sst::format::FOOTER_BYTES);
    let _ = crate::sst::format::Footer::decode(&data[data.len() - n..]);
}

/// One SST data block (prefix-compressed entries and restart array), iterated both ways and sought.
pub fn sst_block(data: &[u8]) {
    let Ok(mut it) = crate::sst::block::BlockIter::new(Bytes::copy_from_slice(data), 1, 0) else {
        return;
    };
    let mut keys = Vec::new();
    if it.seek_to_first().is_ok() {
        for _ in 0..MAX_STEPS {
            if !it.valid() {
                break;
            }
            if keys.len() < 4 {
                keys.push(it.key().to_vec());
            }
            let _ = it.value();
            if it.next().is_err() {
                break;
            }
        }
    }
    if it.seek_to_last().is_ok() {
        for _ in 0..MAX_STEPS {
            if !it.valid() || it.prev().is_err() {
                break;
            }
        }
    }
    let mut point_key = Vec::new();
    let probes = [Vec::new(), vec![0xff; 12]];
    for k in keys.iter().chain(&probes) {
        // A point read's seek finds what the cursor's seek finds, whenever both read the block.
        let point = crate::sst::block::seek_point(data, k, &mut point_key, 1, 0);
        if it.seek(k).is_ok()
            && let Ok(point) = point
        {
            assert_eq!(
                point.map(|v| (point_key.clone(), data[v].to_vec())),
                it.valid().then(|| (it.key().to_vec(), it.value().to_vec())),
                "seek_point and BlockIter::seek disagree"
            );
        }
        let _ = it.seek_for_prev(k);
    }
}

/// A WAL segment, v2 (starting with the segment header) or v1: frames are replayed (torn tails detected,
/// corruption reported) and every frame payload is decoded and applied to a scratch memtable, as recovery
/// does. Input without the v2 header is also tried as a v2 segment by prefixing the header, so a fuzzer
/// exercises both frame formats from any bytes.
pub fn wal(data: &[u8]) {
    let replay = |data: &[u8]| {
        let mem = MemTable::new(1);
        let logs = parking_lot::RwLock::new(HashMap::new());
        let _ =
            crate::wal::replay_segment(Path::new("fuzz.wal"), data, |format, first, payload| {
                crate::db::apply_frame(
                    format,
                    payload,
                    first,
                    0,
                    &mem,
                    &logs,
                    0,
                    None,
                    None,
                    &|t, k, s| {
                        Ok(mem
                            .get(t, k, s)
                            .filter(|e| e.1 == crate::memtable::KIND_PUT)
                            .map(|e| e.2))
                    },
                )
            });
    };
    replay(data);
    if !data.starts_with(&crate::wal::WAL_V2_MAGIC) {
        let mut v2 = crate::wal::WAL_V2_MAGIC.to_vec();
        v2.extend_from_slice(data);
        replay(&v2);
    }
    // The batch and frame-payload decoders on their own, on the raw bytes.
    write_batch(data);
}

/// A write batch representation, decoded op by op as v2 (the current encoding) and as v1, and as the
/// payload of a v1 frame (batches with length prefixes).
pub fn write_batch(data: &[u8]) {
    let consume = |ops: &mut dyn Iterator<Item = crate::Result<BatchOp<'_>>>| {
        for op in ops.take(MAX_STEPS) {
            match op {
                Ok(BatchOp::Put { key, value, .. }) => {
                    let _ = (key.len(), value.len());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    };
    if let Ok(mut it) = BatchIter::new(data) {
        consume(&mut it);
    }
    if let Ok(mut it) = BatchIter::new_v1(data) {
        consume(&mut it);
    }
    consume(&mut FrameOps::new(WalFormat::V1, data));
}

/// A manifest file: records are replayed like WAL frames and their edits decoded and applied to a state.
pub fn manifest(data: &[u8]) {
    let mut state = crate::manifest::ManifestState::default();
    let _ = crate::wal::replay(Path::new("fuzz.manifest"), data, |_, payload| {
        if let Some(edits) = crate::manifest::decode_edits(payload) {
            for e in &edits {
                state.apply(e);
            }
        }
        Ok(0)
    });
    // The edit decoder on its own, on the raw bytes.
    if let Some(edits) = crate::manifest::decode_edits(data) {
        for e in &edits {
            state.apply(e);
        }
    }
}

/// A log segment: scanned as recovery does (with and without a tolerated torn tail), from offset 0 and from
/// the offset in the first entry's header.
pub fn log_segment(data: &[u8]) {
    for allow_torn_tail in [true, false] {
        let _ = crate::log::fuzz_scan_segment(data, 0, allow_torn_tail);
        if let Some(b) = data.get(8..16) {
            let mut o = [0u8; 8];
            o.copy_from_slice(b);
            let _ = crate::log::fuzz_scan_segment(data, u64::from_le_bytes(o), allow_torn_tail);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::batch::WriteBatch;
    use crate::manifest::{Edit, FileMeta};

    fn sample_batch(f: u8) -> WriteBatch {
        let mut b = WriteBatch::new();
        b.put_raw(1, b"alpha", b"one");
        b.delete_raw(1, &[f]);
        b.delete_range_raw(2, b"a", b"m");
        b.clear_tree_raw(300);
        b
    }

    /// A v1 WAL segment (as builds before WAL v2 wrote): two frames holding every kind of tree op.
    fn sample_wal() -> Vec<u8> {
        let mut out = Vec::new();
        let mut seq = 1;
        for f in 0..2u8 {
            let b = sample_batch(f).encode_v1();
            let start = crate::wal::begin_frame(&mut out, seq);
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(&b);
            crate::wal::finish_frame(&mut out, start);
            seq += 4;
        }
        out
    }

    /// A v2 WAL segment: the header, then two frames of two batches each.
    fn sample_wal_v2() -> Vec<u8> {
        let mut out = crate::wal::WAL_V2_MAGIC.to_vec();
        let mut seq = 1;
        for f in 0..2u8 {
            let mut buf = Vec::new();
            crate::wal::begin_frame_v2(&mut buf, seq);
            buf.extend_from_slice(&sample_batch(f).rep);
            buf.extend_from_slice(&sample_batch(f + 2).rep);
            let start = crate::wal::finish_frame_v2(&mut buf);
            out.extend_from_slice(&buf[start..]);
            seq += 8;
        }
        out
    }

    /// A manifest: two records of edits of every kind.
    fn sample_manifest() -> Vec<u8> {
        let edits = [
            Edit::CreateTree {
                id: 1,
                name: "t".into(),
            },
            Edit::CreateLog {
                id: 1,
                name: "l".into(),
            },
            Edit::LogHead { id: 1, head: 5 },
            Edit::WalMin(3),
            Edit::NextFileId(9),
            Edit::FlushedSeqno(40),
            Edit::AddFile {
                level: 1,
                meta: FileMeta {
                    id: 7,
                    size: 100,
                    smallest: b"a".to_vec(),
                    largest: b"z".to_vec(),
                    min_seqno: 1,
                    max_seqno: 40,
                    entries: 10,
                    tombstones: 1,
                },
            },
            Edit::DeleteFile { level: 0, id: 6 },
        ];
        let mut out = Vec::new();
        for chunk in edits.chunks(4) {
            let start = crate::wal::begin_frame(&mut out, 0);
            crate::manifest::encode_edits(&mut out, chunk);
            crate::wal::finish_frame(&mut out, start);
        }
        out
    }

    fn sample_log_segment() -> Vec<u8> {
        let mut out = Vec::new();
        for o in 0..5u64 {
            crate::log::encode_entry(&mut out, o, &vec![o as u8; o as usize * 3]);
        }
        out
    }

    #[test]
    fn samples_parse() {
        for (wal, next) in [(sample_wal(), 9), (sample_wal_v2(), 17)] {
            let mem = crate::memtable::MemTable::new(1);
            let r = crate::wal::replay_segment(std::path::Path::new("w"), &wal, |f, s, p| {
                crate::db::apply_frame(
                    f,
                    p,
                    s,
                    0,
                    &mem,
                    &Default::default(),
                    0,
                    None,
                    None,
                    &|_, _, _| Ok(None),
                )
            })
            .unwrap();
            assert_eq!((r.frames, r.torn_bytes, r.next_seqno), (2, 0, next));
            assert_eq!(mem.get(1, b"alpha", 100).unwrap().2.as_ref(), b"one");
        }
        let mut state = crate::manifest::ManifestState::default();
        let m = sample_manifest();
        let r = crate::wal::replay(std::path::Path::new("m"), &m, |_, p| {
            for e in crate::manifest::decode_edits(p).unwrap() {
                state.apply(&e);
            }
            Ok(0)
        })
        .unwrap();
        assert_eq!(r.frames, 2);
        assert_eq!(state.next_file_id, 9);
        let seg = sample_log_segment();
        assert_eq!(
            crate::log::fuzz_scan_segment(&seg, 0, false).unwrap(),
            (5, seg.len() as u64)
        );
    }

    fn mutate(
        mut data: Vec<u8>,
        flips: &[(prop::sample::Index, u8)],
        cut: Option<prop::sample::Index>,
    ) -> Vec<u8> {
        for (i, x) in flips {
            if !data.is_empty() {
                let i = i.index(data.len());
                data[i] ^= x;
            }
        }
        if let Some(c) = cut {
            data.truncate(c.index(data.len() + 1));
        }
        data
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
            super::sst(&data);
            super::wal(&data);
            super::manifest(&data);
            super::log_segment(&data);
        }

        #[test]
        fn damaged_valid_inputs_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
            cut in prop::option::of(any::<prop::sample::Index>()),
        ) {
            super::wal(&mutate(sample_wal(), &flips, cut));
            super::wal(&mutate(sample_wal_v2(), &flips, cut));
            super::manifest(&mutate(sample_manifest(), &flips, cut));
            super::log_segment(&mutate(sample_log_segment(), &flips, cut));
            // Edits and batches without their checksummed frames, so the decoders see damage directly.
            let m = sample_manifest();
            super::manifest(&mutate(m[crate::wal::FRAME_HEADER_BYTES..].to_vec(), &flips, cut));
            let w = sample_wal();
            super::write_batch(&mutate(w[crate::wal::FRAME_HEADER_BYTES + 4..].to_vec(), &flips, cut));
            super::write_batch(&mutate(sample_batch(1).rep, &flips, cut));
        }
    }
}
