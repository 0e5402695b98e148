//! Arbitrary bytes through RESTORE's payload decoder (footer, RDB value types, listpacks, ziplists,
//! intsets, zipmaps, LZF), as a whole payload and under a valid footer, re-serializing what decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_kv::cmd::fuzzing::restore_payload(data);
});
