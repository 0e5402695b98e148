//! Arbitrary bytes as a log segment: entry scan with and without a tolerated torn tail.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_storage::fuzzing::log_segment(data);
});
