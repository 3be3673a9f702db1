//! `strata repack`: packs with unused chunks rewritten, nothing lost — not
//! by a dry run, not by a restore running meanwhile, not by another node's
//! catalog, not by kill -9 at random points.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn packs(env: &Env) -> BTreeSet<PathBuf> {
    walk_files(&env.repo().join("packs")).into_iter().collect()
}

fn full(env: &Env, share: &Path) -> String {
    backup(env, share)["id"].as_str().unwrap().to_string()
}

/// A pack half of whose bytes no backup needs any more: `keep` and `drop`
/// backed up together, `drop` removed, backed up again, the first backup
/// deleted. Returns the backup that holds `keep`.
fn half_dead(env: &Env, share: &Path, n: u64) -> String {
    fs::write(share.join(format!("keep{n}")), noise(1 << 20, 1000 + n)).unwrap();
    fs::write(share.join(format!("drop{n}")), noise(1 << 20, 2000 + n)).unwrap();
    let first = full(env, share);
    fs::remove_file(share.join(format!("drop{n}"))).unwrap();
    let kept = full(env, share);
    env.strata(&["backup", "delete", &first]).ok();
    kept
}

fn restores_exactly(env: &Env, id: &str, share: &Path, tag: &str) {
    let target = env.path(&format!("restored-{tag}"));
    let _ = fs::remove_dir_all(&target);
    restore_to(env, id, &target).ok();
    assert_same(&snapshot(share), &snapshot(&target));
}

fn read_data_clean(env: &Env) {
    let run = env.strata(&["check", "--read-data", "-f", "json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}

#[test]
fn a_partly_dead_pack_is_rewritten_and_a_dry_run_changes_nothing() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    let kept = half_dead(&env, &share, 0);
    let before = packs(&env);
    assert_eq!(before.len(), 1, "one pack, half of it dead");

    let dry = env
        .strata(&["repack", "--dry-run", "-f", "json"])
        .ok()
        .json();
    assert_eq!(dry["packs_repacked"], 1, "{dry}");
    assert_eq!(packs(&env), before, "a dry run changes nothing");
    let nothing = env
        .strata(&["repack", "--max-unused", "60%", "-f", "json"])
        .ok()
        .json();
    assert_eq!(nothing["packs_repacked"], 0, "{nothing}");

    let size = |set: &BTreeSet<PathBuf>| -> u64 {
        set.iter().map(|p| fs::metadata(p).unwrap().len()).sum()
    };
    let before_size = size(&before);
    let done = env.strata(&["repack", "-f", "json"]).ok().json();
    assert_eq!(done["packs_repacked"], 1, "{done}");
    assert_eq!(done["packs_written"], 1, "{done}");
    let after = packs(&env);
    assert!(after.is_disjoint(&before), "the old pack is gone");
    assert!(
        size(&after) < before_size * 6 / 10,
        "half the bytes are freed"
    );
    restores_exactly(&env, &kept, &share, "after");
    read_data_clean(&env);
    env.strata(&["repack", "--max-unused", "x"])
        .fails(2, "percentage");
    env.strata(&["repack", "--max-unused", "101%"])
        .fails(2, "percentage");
}

#[test]
fn a_restore_during_a_repack_succeeds_and_another_nodes_catalog_follows() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    for n in 0..4 {
        half_dead(&env, &share, n);
    }
    let big = env.path("big");
    fs::create_dir_all(&big).unwrap();
    for n in 0..60u64 {
        fs::write(big.join(format!("b{n}")), noise(1 << 20, 5000 + n)).unwrap();
    }
    let big_id = full(&env, &big);
    // Another node backs up the same share into the same repository.
    let other = env
        .strata_at("other.db", &["backup", "create", "-f", "json", s(&share)])
        .ok()
        .json();
    let other_id = other["id"].as_str().unwrap().to_string();
    assert_eq!(
        other["new_bytes"], 0,
        "it learnt the packs already there: {other}"
    );

    let target = env.path("restored-big");
    let mut restore = env.spawn(&["backup", "restore", &big_id, "--target-dir", s(&target)]);
    std::thread::sleep(Duration::from_millis(50));
    let repack = env.strata(&["repack", "-f", "json"]).ok().json();
    assert_eq!(repack["packs_repacked"], 4, "{repack}");
    let out = restore.wait().unwrap();
    assert!(out.success());
    assert_same(&snapshot(&big), &snapshot(&target));
    // The other node's index still names the packs that are gone; its
    // restore learns where the chunks went.
    let theirs = env.path("theirs");
    env.restore_at("other.db", &other_id, &theirs).ok();
    assert_same(&snapshot(&share), &snapshot(&theirs));
    read_data_clean(&env);
}

#[test]
fn a_repack_killed_anywhere_loses_nothing() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    let mut seed = 0x5eed_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut killed_running = 0;
    for round in 0..30u64 {
        let kept = half_dead(&env, &share, round);
        let mut child = env.spawn(&["repack", "--max-unused", "10%"]);
        // Once it holds the lock (its work has begun), at a random point.
        if kill_after_exclusive_lock(&env, &mut child, Duration::from_millis(next() % 10)) {
            killed_running += 1;
        }
        env.strata(&["cleanup", "--wait", "5"]).ok();
        restores_exactly(&env, &kept, &share, &round.to_string());
        read_data_clean(&env);
    }
    eprintln!("{killed_running} of 30 repacks were killed while they ran");
    assert!(
        killed_running >= 20,
        "{killed_running} kills hit a running repack"
    );
    env.strata(&["repack", "--max-unused", "10%"]).ok();
    let left = env
        .strata(&["repack", "--dry-run", "--max-unused", "10%", "-f", "json"])
        .ok()
        .json();
    assert_eq!(left["packs_repacked"], 0, "{left}");
    let checked = env
        .strata(&["check", "--read-data", "-f", "json"])
        .ok()
        .json();
    assert_eq!(checked["temp_files"], 0);
    assert!(!env.repo().join("locks").join("exclusive").exists());
    let ids: Vec<String> = env.backup_ids();
    let last = ids.last().unwrap();
    restores_exactly(&env, last, &share, "final");
}
