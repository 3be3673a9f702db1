//! A repository config from arbitrary bytes is either rejected or valid.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = strata_format::config::RepoConfig::decode(data) {
        assert!(config.validate().is_ok());
    }
});
