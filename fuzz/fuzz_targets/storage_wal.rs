//! Arbitrary bytes as a WAL segment: frame replay, torn-tail detection, write-batch decoding and apply.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_storage::fuzzing::wal(data);
});
