//! A path accepted as stored must stay inside whatever directory it is joined to.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if strata_format::path::validate(data).is_ok() {
        assert!(data[0] != b'/');
        assert!(!data
            .split(|&b| b == b'/')
            .any(|c| c == b".." || c.is_empty()));
    }
});
