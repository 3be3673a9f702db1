//! Listing a pack from arbitrary bytes must fail cleanly, never panic, and
//! every listed entry must lie inside the pack.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = strata_format::pack::decode_index(data) {
        for e in entries {
            assert!(e.offset + u64::from(e.stored_len) <= data.len() as u64);
        }
    }
});
