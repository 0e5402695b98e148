//! Arbitrary bytes through the RESP2/RESP3 value decoder and back out through both encoders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_resp::fuzzing::decode_frames(data);
});
