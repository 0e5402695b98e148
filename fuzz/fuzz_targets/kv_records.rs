//! Arbitrary bytes through the key-value service's stored-record decoders (metadata records with and
//! without an index deadline, collection headers, expiry index keys), re-encoding what decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    strata_kv::keyspace::fuzzing::decode(data);
});
