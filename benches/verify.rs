//! `check --read-data` against a restore of the same backup, in the same
//! run: both decode every chunk and check it against its id; the restore
//! also writes the files. Figures: MB/s of decoded bytes, peak RSS, and
//! the ratio (target: reading and verifying is at least as fast as a
//! restore, `verify ÷ restore ≥ 1`).
//!
//! Then half the files go, the share is backed up again and the first
//! backup deleted, and `repack` rewrites the packs (about half dead):
//! MB/s of live bytes copied, and peak RSS.
//!
//! `cargo bench -p strata-benches --bench verify`; under `cargo test` it
//! runs on a small dataset as a smoke test.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{child, generate, num, settle};

/// The faster of two runs of `args`, each after the page cache settles.
fn fastest(args: &[&str], before: impl Fn()) -> HashMap<String, String> {
    let mut best: Option<HashMap<String, String>> = None;
    for _ in 0..2 {
        before();
        settle();
        let run = child(args);
        if best
            .as_ref()
            .is_none_or(|b| num(&run, "secs") < num(b, "secs"))
        {
            best = Some(run);
        }
    }
    best.expect("two runs")
}

fn main() {
    let (_, mib) = common::dataset_mib();
    let work = tempfile::tempdir().expect("tempdir");
    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    let share = work.path().join("share");
    generate(&share, mib);
    let (catalog, repo) = (work.path().join("catalog.db"), work.path().join("repo"));
    let (catalog, repo) = (path(&catalog), path(&repo));
    let backup = child(&["backup", &catalog, &repo, &path(&share)]);
    let id = backup.get("id").expect("backup id").clone();
    let target = work.path().join("restored");
    let target_s = path(&target);
    let restore = fastest(&["restore", &catalog, &repo, &id, &target_s], || {
        let _ = std::fs::remove_dir_all(&target);
    });
    let verify = fastest(&["verify", &catalog, &repo], || {});
    let rate = |r: &HashMap<String, String>| num(r, "bytes") / 1e6 / num(r, "secs").max(1e-6);
    println!(
        "restore: {:.1} MB/s ({:.0} MB decoded, verified and written in {:.2} s), peak RSS {:.0} MiB",
        rate(&restore),
        num(&restore, "bytes") / 1e6,
        num(&restore, "secs"),
        num(&restore, "peak_rss_kib") / 1024.0
    );
    println!(
        "check --read-data: {:.1} MB/s ({:.0} MB decoded and verified from {:.0} MB read in \
         {:.2} s), peak RSS {:.0} MiB",
        rate(&verify),
        num(&verify, "bytes") / 1e6,
        num(&verify, "read") / 1e6,
        num(&verify, "secs"),
        num(&verify, "peak_rss_kib") / 1024.0
    );
    println!(
        "verify ÷ restore: {:.2} (target ≥ 1)",
        rate(&verify) / rate(&restore).max(1e-9)
    );

    // Half the dataset's files gone, backed up again, the first backup
    // deleted: about half of every pack is dead, and a repack copies the rest.
    let mut files = common::files_below(&share);
    files.sort();
    for f in files.iter().step_by(2) {
        std::fs::remove_file(f).expect("remove");
    }
    child(&["backup", &catalog, &repo, &path(&share)]);
    child(&["delete", &catalog, &repo, &id]);
    let repack = child(&["repack", &catalog, &repo]);
    println!(
        "repack: {:.1} MB/s ({:.0} packs, {:.0} MB of live chunks copied out of {:.0} MB in {:.2} s), \
         peak RSS {:.0} MiB",
        num(&repack, "bytes") / 1e6 / num(&repack, "secs").max(1e-6),
        num(&repack, "packs"),
        num(&repack, "bytes") / 1e6,
        num(&repack, "before") / 1e6,
        num(&repack, "secs"),
        num(&repack, "peak_rss_kib") / 1024.0
    );
    let verify = child(&["verify", &catalog, &repo]);
    assert!(num(&verify, "chunks") > 0.0);
}
