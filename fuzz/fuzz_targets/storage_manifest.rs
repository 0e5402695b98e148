//! Arbitrary bytes as a manifest: record replay and version-edit decoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_storage::fuzzing::manifest(data);
});
