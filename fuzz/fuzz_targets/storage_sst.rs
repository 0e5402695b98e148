//! Arbitrary bytes as an SSTable file (footer, index, filter, properties, blocks, range tombstones) and as one data block.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_storage::fuzzing::sst(data);
});
