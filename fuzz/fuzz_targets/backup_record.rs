//! An exported backup record (`backup import`) and the values a user, a
//! REST body or a repository hands the engine: any bytes are refused
//! cleanly, never a panic; what the rules accept is what they promise.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_engine::decode_backup_record;
use strata_engine::validate;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = decode_backup_record("strata", text);
    if validate::text("name", Some(text), true).is_ok() {
        assert!(!text.chars().any(char::is_control));
    }
    if validate::share_path(text).is_ok() {
        assert!(text.starts_with('/') && !text.contains("/../") && !text.contains("//"));
    }
    let _ = validate::share_name(text);
});
