//! Several catalogs (nodes) on one repository, and a catalog that was lost:
//! whichever catalog deletes or cleans up, no backup of another is ever
//! harmed, and a cleanup on an empty catalog removes nothing anyone needs.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::path::Path;

use crate::ganesha::Ganesha;
use crate::harness::*;

fn share(env: &Env, name: &str, seed: u64) -> std::path::PathBuf {
    let dir = env.path(name);
    fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..6 {
        let len = 300_000 + i * 97_000;
        fs::write(dir.join(format!("f{i}")), noise(len, seed * 100 + i as u64)).unwrap();
    }
    fs::write(dir.join("sub/small"), format!("small {seed}")).unwrap();
    dir
}

fn create(env: &Env, catalog: &str, name: &str, dir: &Path) -> String {
    let run = env
        .strata_at(
            catalog,
            &[
                "backup",
                "create",
                "--name",
                name,
                "-f",
                "json",
                dir.to_str().unwrap(),
            ],
        )
        .ok();
    run.json()["id"].as_str().unwrap().to_string()
}

/// Restores `backup` with `catalog` into a fresh directory and compares it
/// with `source`.
fn restores_exact(env: &Env, catalog: &str, backup: &str, source: &Path, n: &mut u32) {
    *n += 1;
    let target = env.path(&format!("out-{catalog}-{n}"));
    let run = env.restore_at(catalog, backup, &target);
    assert_eq!(run.code, 0, "{catalog} restoring {backup}: {}", run.stderr);
    assert_same(&snapshot(source), &snapshot(&target));
}

fn cleanup_removes(env: &Env, catalog: &str) -> u64 {
    let run = env.strata_at(catalog, &["cleanup", "-f", "json"]).ok();
    run.json()["packs_removed"].as_u64().unwrap()
}

fn packs(env: &Env) -> usize {
    walk_files(&env.repo().join("packs")).len()
}

/// The scenario and more: three catalogs on one repository with
/// interleaved backups, deletes, cleanups and restores.
pub(crate) fn three_catalogs(env: &Env, count_packs: bool) {
    let dir_a = share(env, "a", 1);
    let dir_b = share(env, "b", 2);
    let mut n = 0;
    let ba = create(env, "A.db", "ba", &dir_a);
    let bb = create(env, "B.db", "bb", &dir_b);
    // A deletes its backup: only A's packs may go.
    env.strata_at("A.db", &["backup", "delete", &ba]).ok();
    restores_exact(env, "B.db", &bb, &dir_b, &mut n);
    let ba2 = create(env, "A.db", "ba2", &dir_a);
    // B's cleanup must not take A's packs (B does not know them).
    cleanup_removes(env, "B.db");
    restores_exact(env, "A.db", &ba2, &dir_a, &mut n);
    // A third catalog, empty (a lost one, or a new node): its cleanup
    // removes nothing anybody references.
    let before = packs(env);
    assert_eq!(cleanup_removes(env, "C.db"), 0);
    if count_packs {
        assert_eq!(packs(env), before);
    }
    restores_exact(env, "A.db", &ba2, &dir_a, &mut n);
    restores_exact(env, "B.db", &bb, &dir_b, &mut n);
    // C backs up B's tree too (its own packs), then deletes it: B's stay.
    let bc = create(env, "C.db", "bc", &dir_b);
    env.strata_at("C.db", &["backup", "delete", &bc]).ok();
    cleanup_removes(env, "A.db");
    restores_exact(env, "B.db", &bb, &dir_b, &mut n);
    // Each catalog's check is clean: the others' backups are foreign, not junk.
    for catalog in ["A.db", "B.db", "C.db"] {
        let check = env.strata_at(catalog, &["check", "-f", "json"]);
        assert_eq!(check.code, 0, "{catalog}: {}", check.stdout);
    }
    // A knows B's backup only as a layer of another catalog; B's packs
    // it has indexed (a backup or restore learns the packs it does not
    // know), so they are neither junk nor unknown.
    let a = env.strata_at("A.db", &["check", "-f", "json"]).json();
    assert!(a["foreign_layers"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(a["garbage_packs"], 0, "{a}");
    // Once every backup is deleted, the last cleanup leaves no pack.
    env.strata_at("A.db", &["backup", "delete", &ba2]).ok();
    env.strata_at("B.db", &["backup", "delete", &bb]).ok();
    cleanup_removes(env, "C.db");
    if count_packs {
        assert_eq!(packs(env), 0);
    }
}

#[test]
fn three_catalogs_on_one_repository_never_harm_each_other() {
    three_catalogs(&Env::new(), true);
}

#[test]
fn three_catalogs_on_one_nfs_export_never_harm_each_other() {
    let env = Env::new();
    let Some(g) = Ganesha::start("three_catalogs_nfs", &env.path("export")) else {
        return;
    };
    let env = Env {
        repository: g.url("repo"),
        ..env
    };
    three_catalogs(&env, false);
}

#[test]
fn cleanup_after_the_catalog_is_lost_removes_no_pack() {
    let env = Env::new();
    let dir = share(&env, "s", 3);
    backup(&env, &dir);
    let before = packs(&env);
    assert!(before > 0);
    fs::remove_file(env.path("catalog.db")).unwrap();
    let run = env.strata(&["cleanup", "-f", "json"]).ok();
    assert_eq!(run.json()["packs_removed"], 0, "{}", run.stdout);
    assert_eq!(packs(&env), before);
    // The loss is not silent.
    let list = env.strata(&["backup", "list"]).ok();
    assert!(
        list.stderr.contains("knows no backup") && list.stderr.contains("1 backup layer"),
        "{}",
        list.stderr
    );
}

/// A catalog put back from an old copy still names packs another cleanup
/// removed since: its next backup must not deduplicate against them.
#[test]
fn a_stale_index_never_makes_a_backup_lean_on_removed_packs() {
    let env = Env::new();
    let dir = share(&env, "s", 4);
    let first = backup(&env, &dir)["id"].as_str().unwrap().to_string();
    fs::copy(env.path("catalog.db"), env.path("old.db")).unwrap();
    env.strata(&["backup", "delete", &first]).ok();
    assert_eq!(packs(&env), 0, "the delete removes the backup's packs");
    // The old copy still believes in those packs.
    let again = create(&env, "old.db", "again", &dir);
    let mut n = 0;
    restores_exact(&env, "old.db", &again, &dir, &mut n);
    // The old copy's only fault is its record of the deleted backup.
    let check = env.strata_at("old.db", &["check", "-f", "json"]);
    assert_eq!(check.code, 7);
    let report = check.json();
    let missing = report["missing_layers"].as_array().unwrap();
    assert!(
        missing.len() == 1 && missing[0].as_str().unwrap().starts_with(&first),
        "{report}"
    );
    assert_eq!(report["bad_packs"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["index_mismatches"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(report["unindexed_chunks"], 0, "{report}");
}

/// A backup that fails (here: the repository fills up) removes the packs
/// it published before it exits; what was there before stays.
#[test]
fn a_failed_backup_leaves_no_packs_behind() {
    if skip_without_root("a_failed_backup_leaves_no_packs_behind", "to mount a tmpfs") {
        return;
    }
    let env = Env::new();
    let _tmpfs = Tmpfs::mount(&env.repo(), "24m");
    let config = env.path("strata.toml");
    fs::write(&config, "pack_target_size = 4194304\n").unwrap();
    let cfg = config.to_str().unwrap();
    let small = share(&env, "small", 6);
    env.strata(&["--config", cfg, "backup", "create", small.to_str().unwrap()])
        .ok();
    let before = packs(&env);
    let big = env.path("big");
    fs::create_dir(&big).unwrap();
    for i in 0..12 {
        fs::write(big.join(format!("f{i}")), noise(4 << 20, 700 + i)).unwrap();
    }
    let run = env.strata(&["--config", cfg, "backup", "create", big.to_str().unwrap()]);
    run.fails(8, "no space");
    assert_eq!(packs(&env), before, "the failed backup left its packs");
    assert!(walk_files(&env.repo().join("tmp")).is_empty());
    env.strata(&["check"]).ok();
}
