//! `strata backup prune`: thirty nights of a churning tree, pruned by
//! restic's rules; every kept backup restores its own night byte for byte
//! after the removed ones were merged into it; kill -9 anywhere in a prune
//! loses nothing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use crate::mutations::Mutator;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const DAY: i64 = 86_400;

/// Unix seconds of the first night, 02:00 UTC: a Tuesday at least 100 days
/// ago, so that night 29 is a Wednesday and every night is in the past.
fn first_night() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut day = now / DAY - 100;
    // Day 0 (1970-01-01) was a Thursday: Monday is (day + 3) % 7 == 0.
    while (day + 3).rem_euclid(7) != 1 {
        day -= 1;
    }
    day * DAY + 2 * 3600
}

fn rfc3339(secs: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs as u64))
        .to_string()
}

fn pack_bytes(env: &Env) -> u64 {
    walk_files(&env.repo().join("packs"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

/// One backup per night: the share as it is, registered as that night's
/// snapshot (the test's directory is a configured snapshot root), so its
/// data timestamp is the night's.
fn nightly(env: &Env, share: &Path, night: i64, first: bool) -> String {
    let config = env.path("snapshot-roots.toml");
    let root = env.dir.path().display().to_string();
    fs::write(&config, format!("snapshot_roots = [{root:?}]\n")).unwrap();
    let config = config.display().to_string();
    let snap = env
        .strata(&[
            "--config",
            &config,
            "share",
            "snapshot",
            "create",
            "nightly",
            "--path",
            s(share),
            "--created-at",
            &rfc3339(first_night() + night * DAY),
            "-f",
            "json",
        ])
        .ok()
        .json();
    let snap = snap["id"].as_str().unwrap();
    let name = format!("night-{night}");
    let mut args = vec![
        "--config",
        &config,
        "backup",
        "create",
        "--snapshot",
        snap,
        "--name",
        &name,
    ];
    if !first {
        args.push("--incremental");
    }
    args.extend(["-f", "json", "nightly"]);
    let b = env.strata(&args).ok().json();
    b["id"].as_str().unwrap().to_string()
}

fn restores(env: &Env, id: &str, expected: &BTreeMap<PathBuf, Node>, tag: &str) {
    let target = env.path(&format!("restore-{tag}"));
    let _ = fs::remove_dir_all(&target);
    let run = restore_to(env, id, &target);
    assert_eq!(run.code, 0, "restore of {tag}: {}", run.stderr);
    assert_same(expected, &snapshot(&target));
    fs::remove_dir_all(&target).unwrap();
}

fn listed(env: &Env) -> Vec<String> {
    env.strata(&["backup", "list", "-f", "json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["Name"].as_str().unwrap().to_string())
        .collect()
}

fn prune(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["backup", "prune", "--share", "nightly", "-f", "json"];
    all.extend(args);
    env.strata(&all).ok().json()
}

fn kept_names(table: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = table
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["Action"] == "keep")
        .map(|r| r["Name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The names under `layers/`, sorted.
fn layer_objects(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(env.repo().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn read_data_clean(env: &Env) {
    let run = env.strata(&["check", "--read-data", "-f", "json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.json()["clean"], true);
}

#[test]
fn thirty_nights_pruned_keep_every_kept_night_exact() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir(&share).unwrap();
    env.strata(&["share", "create", "--name", "nightly", "--path", s(&share)])
        .ok();
    let mut m = Mutator::new(0x30_4e16, &share);
    for _ in 0..25 {
        m.mutate();
    }
    let mut nights: BTreeMap<String, (String, BTreeMap<PathBuf, Node>)> = BTreeMap::new();
    for night in 0..30 {
        for _ in 0..1 + m.below(5) {
            m.mutate();
        }
        let id = nightly(&env, &share, night, night == 0);
        nights.insert(format!("night-{night}"), (id, snapshot(&share)));
    }
    let dry = prune(
        &env,
        &["--keep-weekly", "5", "--keep-last", "3", "--dry-run"],
    );
    assert_eq!(listed(&env).len(), 30, "a dry run removes nothing");

    // Night 0 is a Tuesday, night 29 a Wednesday. Weekly 5 keeps the last
    // night of five ISO weeks (night 29, and the Sundays 26, 19, 12 and 5);
    // last 3 adds nights 27 and 28. Nights 12, 19 and 26 are rewritten
    // against the kept night a week before, night 5 as a full backup.
    let expect: Vec<String> = [5, 12, 19, 26, 27, 28, 29]
        .iter()
        .map(|n| format!("night-{n}"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(kept_names(&dry), expect, "{dry}");
    let before = pack_bytes(&env);
    let done = prune(&env, &["--keep-weekly", "5", "--keep-last", "3"]);
    assert_eq!(kept_names(&done), expect);
    let mut left = listed(&env);
    left.sort();
    assert_eq!(left, expect);
    for name in &expect {
        let (id, tree) = &nights[name];
        restores(&env, id, tree, name);
    }
    for (name, (id, _)) in &nights {
        if !expect.contains(name) {
            env.strata(&["backup", "show", id]).fails(4, "not found");
        }
    }
    read_data_clean(&env);
    let middle = pack_bytes(&env);
    assert!(
        middle < before,
        "the repository shrank: {before} -> {middle}"
    );

    // Weekly 2 keeps night 29 and Sunday night 26; last 3 adds 27 and 28.
    let done = prune(&env, &["--keep-last", "3", "--keep-weekly", "2"]);
    let expect = vec!["night-26", "night-27", "night-28", "night-29"];
    assert_eq!(kept_names(&done), expect);
    for name in &expect {
        let (id, tree) = &nights[*name];
        restores(&env, id, tree, name);
    }
    read_data_clean(&env);
    let after = pack_bytes(&env);
    assert!(
        after < middle,
        "the repository shrank again: {middle} -> {after}"
    );
    // Night 26 lost every ancestor: it is a full backup now.
    let shown = env
        .strata(&["backup", "show", "-f", "json", &nights["night-26"].0])
        .ok()
        .json();
    assert_eq!(shown["is_incremental"], false, "{shown}");
    assert_eq!(shown["parent_id"], serde_json::Value::Null);

    // The chain goes on from what was kept.
    m.mutate();
    let next = nightly(&env, &share, 30, false);
    restores(&env, &next, &snapshot(&share), "night-30");
}

#[test]
fn prune_needs_a_rule_and_keeps_chains_it_cannot_rewrite() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir(&share).unwrap();
    env.strata(&["share", "create", "--name", "nightly", "--path", s(&share)])
        .ok();
    fs::write(share.join("a"), noise(10_000, 1)).unwrap();
    let first = nightly(&env, &share, 0, true);
    env.strata(&["backup", "prune"])
        .fails(2, "no retention rule");
    env.strata(&["backup", "prune", "--keep-within", "soon"])
        .fails(2, "not a duration");
    // A branch: two incrementals on the same parent; the parent goes, and
    // is merged into both.
    fs::write(share.join("b"), noise(10_000, 2)).unwrap();
    let left = nightly(&env, &share, 1, false);
    let left_tree = snapshot(&share);
    fs::remove_file(share.join("b")).unwrap();
    fs::write(share.join("c"), noise(10_000, 3)).unwrap();
    let right_name = "right";
    let right = env
        .strata(&[
            "backup",
            "create",
            "--incremental",
            "--parent",
            &first,
            "--name",
            right_name,
            "-f",
            "json",
            "nightly",
        ])
        .ok()
        .json();
    let right = right["id"].as_str().unwrap().to_string();
    let right_tree = snapshot(&share);
    // No rule on the command line: the config's [retention] table.
    let config = env.path("strata.toml");
    fs::write(&config, "gc_memory_mib = 1\n[retention]\nkeep_last = 2\n").unwrap();
    let done = env
        .strata(&["--config", s(&config), "backup", "prune", "-f", "json"])
        .ok()
        .json();
    assert_eq!(kept_names(&done).len(), 2, "{done}");
    env.strata(&["backup", "show", &first])
        .fails(4, "not found");
    restores(&env, &left, &left_tree, "left");
    restores(&env, &right, &right_tree, "right");
    read_data_clean(&env);
}

#[test]
fn a_prune_killed_anywhere_loses_nothing() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir(&share).unwrap();
    env.strata(&["share", "create", "--name", "nightly", "--path", s(&share)])
        .ok();
    let mut m = Mutator::new(0xdead, &share);
    let mut seed = 0x9e37_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut trees: BTreeMap<String, BTreeMap<PathBuf, Node>> = BTreeMap::new();
    let mut killed_running = 0;
    // Kills after a layer was rewritten and before every removal was done.
    let mut killed_mid_merge = 0;
    // Kills that left a backup with two layer generations for cleanup.
    let mut killed_unsettled = 0;
    let mut night = 0;
    for round in 0..24u64 {
        // Three more nights, with a large file each that the next night
        // deletes, so the prune has packs to remove and repack.
        for _ in 0..3 {
            for _ in 0..1 + m.below(4) {
                m.mutate();
            }
            let _ = fs::remove_file(share.join(format!("big{}", night - 1)));
            fs::write(
                share.join(format!("big{night}")),
                noise(3 << 20, night as u64),
            )
            .unwrap();
            let id = nightly(&env, &share, night, night == 0);
            trees.insert(id, snapshot(&share));
            night += 1;
        }
        let generations = layer_objects(&env);
        let mut child = env.spawn(&["backup", "prune", "--keep-last", "2", "--max-unused", "5%"]);
        if kill_after_exclusive_lock(&env, &mut child, Duration::from_millis(next() % 25)) {
            killed_running += 1;
        }
        let before_cleanup = listed(&env).len();
        let objects = layer_objects(&env);
        if objects
            .iter()
            .any(|l| !generations.contains(l) && l.contains('.'))
            && before_cleanup > 2
        {
            killed_mid_merge += 1;
        }
        let ids_of = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .map(|n| n.split('.').next().unwrap().to_string())
                .collect()
        };
        let ids = ids_of(&objects);
        if (1..ids.len()).any(|i| ids[i] == ids[i - 1]) {
            killed_unsettled += 1;
        }
        env.strata(&["cleanup", "--wait", "5"]).ok();
        // Every backup still listed restores its own night exactly.
        let ids: Vec<String> = env.backup_ids();
        assert!(ids.len() >= 2, "round {round}: the two newest stay");
        for id in &ids {
            restores(&env, id, &trees[id], &format!("{round}-{id}"));
        }
        read_data_clean(&env);
        let layers = layer_objects(&env);
        assert!(
            layers
                .iter()
                .all(|l| !l.contains('.') || ids.iter().any(|id| l.starts_with(id.as_str()))),
            "round {round}: a layer object of no listed backup: {layers:?}"
        );
        let ids_with_two = ids
            .iter()
            .filter(|id| layers.iter().filter(|l| l.starts_with(id.as_str())).count() > 1)
            .count();
        assert_eq!(
            ids_with_two, 0,
            "round {round}: cleanup settles every rewrite"
        );
    }
    eprintln!(
        "{killed_running} of 24 prunes were killed while they ran, \
         {killed_mid_merge} between a rewrite and the last removal, \
         {killed_unsettled} before a rewrite was settled"
    );
    assert!(
        killed_mid_merge >= 3,
        "{killed_mid_merge} kills hit a merge midway"
    );
    assert!(
        killed_running >= 12,
        "{killed_running} kills hit a running prune"
    );
    prune(&env, &["--keep-last", "2"]);
    assert_eq!(listed(&env).len(), 2);
    let checked = env
        .strata(&["check", "--read-data", "-f", "json"])
        .ok()
        .json();
    assert_eq!(checked["temp_files"], 0, "{checked}");
    assert_eq!(checked["garbage_packs"], 0, "{checked}");
    assert!(!env.repo().join("locks").join("exclusive").exists());
}

/// `cp -a FROM TO`.
fn cp(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a {from:?} {to:?}");
}

#[test]
fn a_rewrite_published_but_not_recorded_is_settled_by_cleanup() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir(&share).unwrap();
    env.strata(&["share", "create", "--name", "nightly", "--path", s(&share)])
        .ok();
    let mut m = Mutator::new(7, &share);
    let mut trees = Vec::new();
    let mut ids = Vec::new();
    for night in 0..3 {
        for _ in 0..6 {
            m.mutate();
        }
        ids.push(nightly(&env, &share, night, night == 0));
        trees.push(snapshot(&share));
    }
    // The state before the prune, kept aside (repository and catalog).
    let state = env.path("state");
    fs::create_dir_all(&state).unwrap();
    for name in ["repo", "catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        if env.path(name).exists() {
            cp(&env.path(name), &state);
        }
    }
    // Night 2 loses its parent: its layer is rewritten as `<id>.1`.
    prune(&env, &["--keep-last", "1"]);
    let rewritten = env.repo().join("layers").join(format!("{}.1", ids[2]));
    let new_layer = fs::read(&rewritten).unwrap();
    // Back to before the prune, plus the new generation: what a prune
    // killed right after publishing it leaves (the catalog still names
    // night 1 as the parent, night 1 and its layer are still there).
    fs::remove_dir_all(env.repo()).unwrap();
    for name in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = fs::remove_file(env.path(name));
    }
    cp(&state.join("."), &env.path(""));
    fs::write(&rewritten, &new_layer).unwrap();
    let shown = env
        .strata(&["backup", "show", "-f", "json", &ids[2]])
        .ok()
        .json();
    assert_eq!(shown["parent_id"].as_str(), Some(ids[1].as_str()));
    // Before cleanup, readers already follow the new generation.
    restores(&env, &ids[2], &trees[2], "before-cleanup");

    let cleaned = env.strata(&["cleanup", "-f", "json"]).ok().json();
    assert_eq!(cleaned["layers_settled"], 1, "{cleaned}");
    let shown = env
        .strata(&["backup", "show", "-f", "json", &ids[2]])
        .ok()
        .json();
    assert_eq!(shown["parent_id"], serde_json::Value::Null, "{shown}");
    assert!(!env.repo().join("layers").join(&ids[2]).exists());
    for (id, tree) in ids.iter().zip(&trees) {
        restores(&env, id, tree, id);
    }
    read_data_clean(&env);
    // Nights 0 and 1 no longer have dependents: a prune removes them.
    prune(&env, &["--keep-last", "1"]);
    assert_eq!(listed(&env), vec!["night-2".to_string()]);
    restores(&env, &ids[2], &trees[2], "after");
    read_data_clean(&env);
}
