//! Arbitrary bytes through the AMQP frame splitter, the method decoder (with its field-table depth check)
//! and the content-header decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_amqp::fuzzing::frames(data);
});
