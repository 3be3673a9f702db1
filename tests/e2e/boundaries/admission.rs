//! Sizes, quotas, retention and names: what is admitted and what is refused
//! before anything changes.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;

use crate::harness::*;

fn share_dir(env: &Env, name: &str) -> String {
    let dir = env.path(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("f"), noise(4096, 7)).unwrap();
    dir.display().to_string()
}

#[test]
fn a_share_size_that_would_wrap_the_quota_is_refused() {
    let env = Env::new();
    let dir = share_dir(&env, "small");
    env.strata(&[
        "share", "create", "--name", "small", "--path", &dir, "--size", "1",
    ])
    .ok();
    env.strata(&["backup", "create", "small"]).ok();
    env.strata(&["quota", "set", "--backup-gigabytes", "100"])
        .ok();
    let huge = share_dir(&env, "huge");
    for size in ["18446744073709551615", "18446744073709551614", "2147483648"] {
        env.strata(&[
            "share", "create", "--name", "huge", "--path", &huge, "--size", size,
        ])
        .fails(2, "larger than the largest allowed");
    }
    let listed = env.strata(&["share", "list", "-f", "json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    // The largest size Manila allows is admitted as a share, and its backup
    // is refused by the quota, not wrapped past it.
    env.strata(&[
        "share",
        "create",
        "--name",
        "huge",
        "--path",
        &huge,
        "--size",
        "2147483647",
    ])
    .ok();
    env.strata(&["backup", "create", "huge"])
        .fails(6, "backup_gigabytes quota is 100 GiB");
    let backups = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(backups.as_array().unwrap().len(), 1, "{backups}");
}

#[test]
fn a_retention_that_keeps_nothing_is_refused() {
    let env = Env::new();
    let dir = share_dir(&env, "s");
    env.strata(&["backup", "create", &dir]).ok();
    env.strata(&["backup", "create", "--incremental", &dir])
        .ok();
    for rule in [
        &["--keep-last", "0"][..],
        &["--keep-daily", "0", "--keep-within", "0d"],
        &[
            "--keep-last",
            "0",
            "--keep-weekly",
            "0",
            "--keep-yearly",
            "0",
        ],
    ] {
        let mut args = vec!["backup", "prune"];
        args.extend_from_slice(rule);
        env.strata(&args).fails(2, "use `backup delete`");
    }
    let config = env.path("strata.toml");
    fs::write(&config, "[retention]\nkeep_last = 0\n").unwrap();
    let config = config.display().to_string();
    env.strata(&["--config", &config, "backup", "prune"])
        .fails(2, "keeps no backup");
    let backups = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(backups.as_array().unwrap().len(), 2, "{backups}");
    // One rule above 0 keeps something, and prune goes ahead.
    env.strata(&["backup", "prune", "--keep-last", "0", "--keep-within", "1d"])
        .ok();
    let backups = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(backups.as_array().unwrap().len(), 2, "{backups}");
}

#[test]
fn tables_show_control_characters_escaped() {
    let env = Env::new();
    let dir = share_dir(&env, "s");
    env.strata(&["backup", "create", "--name", "a\u{1b}]0;owned\u{7}", &dir])
        .fails(2, "control character");
    env.strata(&["backup", "create", "--name", "ok", &dir]).ok();
    env.strata(&["backup", "set", "ok", "--description", "line\nbreak"])
        .fails(2, "control character");
    env.strata(&["share", "create", "--name", "..", "--path", &dir])
        .fails(2, "a share name may not be");
}

#[test]
fn a_target_dir_inside_a_share_is_refused() {
    let env = Env::new();
    let dir = share_dir(&env, "s");
    let other = share_dir(&env, "other");
    env.strata(&["share", "create", "--name", "other", "--path", &other])
        .ok();
    let id = env
        .strata(&["backup", "create", "-f", "json", &dir])
        .ok()
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for inside in [format!("{other}/restored"), format!("{dir}/deep/er")] {
        env.strata(&["backup", "restore", &id, "--target-dir", &inside])
            .fails(2, "--target-share");
        assert!(!std::path::Path::new(&inside).exists(), "{inside}");
    }
    let outside = env.path("elsewhere").display().to_string();
    env.strata(&["backup", "restore", &id, "--target-dir", &outside])
        .ok();
}
