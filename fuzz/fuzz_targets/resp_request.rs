//! Arbitrary bytes, split into two reads at a fuzzer-chosen point, through the RESP request parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (split, rest) = match data.split_first() {
        Some((&first, rest)) => (usize::from(first), rest),
        None => (0, data),
    };
    strata_resp::fuzzing::parse_requests(rest, split);
});
