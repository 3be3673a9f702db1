//! Two nodes on one export: what one removes (a repack) is not damage to
//! the other's check.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;

use crate::harness::*;

#[test]
fn a_repack_on_one_node_is_no_bad_pack_to_the_others_check() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    let d = share.to_str().unwrap();
    // A pack half of whose chunks no backup needs any more.
    fs::write(share.join("keep"), noise(600_000, 1)).unwrap();
    fs::write(share.join("gone"), noise(600_000, 2)).unwrap();
    let both = env
        .strata(&["backup", "create", "-f", "json", d])
        .ok()
        .json();
    fs::remove_file(share.join("gone")).unwrap();
    let kept = env
        .strata(&["backup", "create", "-f", "json", d])
        .ok()
        .json();
    env.strata(&["backup", "delete", both["id"].as_str().unwrap()])
        .ok();
    // Node B indexes the repository as it is now.
    env.strata_at("b.db", &["catalog", "rebuild"]).ok();
    // Node A repacks: the old pack goes, its live chunks are in a new one.
    let repacked = env
        .strata(&["repack", "--max-unused", "0%", "-f", "json"])
        .ok()
        .json();
    assert_eq!(repacked["packs_repacked"], 1, "{repacked}");
    let check = env.strata_at("b.db", &["check", "--read-data", "-f", "json"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert_eq!(check.json()["bad_packs"], serde_json::json!([]));
    // A pack that really went, with chunks no other pack holds, is bad.
    let target = env.path("restored");
    env.restore_at("b.db", kept["id"].as_str().unwrap(), &target)
        .ok();
    for pack in walk_files(&env.repo().join("packs")) {
        fs::remove_file(pack).unwrap();
    }
    let check = env.strata_at("b.db", &["check", "-f", "json"]);
    assert_eq!(check.code, 7, "{}", check.stdout);
    assert_ne!(check.json()["bad_packs"], serde_json::json!([]));
}
