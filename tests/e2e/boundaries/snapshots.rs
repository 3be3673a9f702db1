//! `share snapshot create --path` registers only a snapshot of the share:
//! never `/`, a directory elsewhere, or a path through a symlink.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::os::unix::fs::symlink;

use crate::harness::*;

#[test]
fn only_the_shares_own_snapshot_locations_are_registered() {
    let env = Env::new();
    let share = env.path("share");
    let outside = env.path("outside");
    fs::create_dir_all(share.join(".snapshot")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"not the share's").unwrap();
    let d = share.display().to_string();
    env.strata(&["share", "create", "--name", "s", "--path", &d])
        .ok();
    let register = |path: &str| env.strata(&["share", "snapshot", "create", "s", "--path", path]);
    register("/").fails(2, "not a snapshot location");
    register(outside.to_str().unwrap()).fails(2, "not a snapshot location");
    register(&d).fails(2, "not a snapshot location");
    register(&format!("{d}/.snapshot/../../outside")).fails(2, "not normalized");
    register("relative/.snapshot/x").fails(2, "not absolute");
    // A symlink inside the share's snapshot directory, pointing outside.
    symlink(&outside, share.join(".snapshot/evil")).unwrap();
    register(&format!("{d}/.snapshot/evil")).fails(2, "symlink");
    // The snapshot directory itself a symlink to a tree outside.
    let other = env.path("other");
    fs::create_dir_all(other.join("snapshot/x")).unwrap();
    symlink(&other, share.join(".zfs")).unwrap();
    register(&format!("{d}/.zfs/snapshot/x")).fails(2, "symlink");
    // A real snapshot of the share is registered, and a configured root
    // admits the storage's snapshots kept elsewhere.
    fs::create_dir_all(share.join(".snapshot/hourly.0")).unwrap();
    fs::write(share.join(".snapshot/hourly.0/f"), b"snapshotted").unwrap();
    register(&format!("{d}/.snapshot/hourly.0")).ok();
    let roots = env.path("snaps");
    fs::create_dir_all(roots.join("vol-1")).unwrap();
    let config = env.path("strata.toml");
    fs::write(
        &config,
        format!("snapshot_roots = [{:?}]\n", roots.display().to_string()),
    )
    .unwrap();
    let c = config.display().to_string();
    let vol = roots.join("vol-1").display().to_string();
    register(&vol).fails(2, "not a snapshot location");
    env.strata(&[
        "--config", &c, "share", "snapshot", "create", "s", "--name", "r", "--path", &vol,
    ])
    .ok();
    // Swapped for a symlink after it was registered: the backup refuses.
    fs::remove_dir(roots.join("vol-1")).unwrap();
    symlink(&outside, roots.join("vol-1")).unwrap();
    env.strata(&["--config", &c, "backup", "create", "--snapshot", "r", "s"])
        .fails(2, "symlink");
    let backups = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert!(backups.as_array().unwrap().is_empty(), "{backups}");
}
