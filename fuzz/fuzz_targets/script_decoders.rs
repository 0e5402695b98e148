//! Arbitrary bytes through the scripting libraries' decoders (`cjson.decode`, `cmsgpack.unpack`) and
//! back through their encoders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_kv::script::fuzzing::decode(data);
});
