//! Parsing a repository location (`--repository`, or the seeds'
//! `backup_mount_export` and `backup_mount_options`) from arbitrary text
//! must fail cleanly, and an NFS location that parses must print back to
//! itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_engine::repository::objects::Location;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Location::Nfs(url)) = Location::parse(text) {
        let again = Location::parse(&url.to_string()).expect("a printed location parses");
        assert_eq!(again, Location::Nfs(url.clone()));
        let _ = url.client_url();
    }
    let (export, options) = text.split_once('\n').unwrap_or((text, ""));
    let _ = Location::from_mount_export(export, options);
});
