//! Backup types (Manila's `enabled_backup_types`): the seed's configuration
//! as written, `--backup-options backup_type=…`, one type per share, an
//! incremental's parent of its own type, per-type compression and
//! `support_restore_to_target`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::*;
use crate::service::words;

const CONFIG: &str = r#"
enabled_backup_types = ["eng_data_backup", "raw_backup"]

[eng_data_backup]
backup_type_name = "my_backup"

[raw_backup]
backup_compression_algorithm = "none"
support_restore_to_target = false
"#;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn with_config(env: &Env, args: &[&str]) -> Run {
    let config = env.path("types.toml");
    if !config.exists() {
        fs::write(&config, CONFIG).unwrap();
    }
    let mut all = vec!["--config", s(&config)];
    all.extend_from_slice(args);
    env.strata(&all)
}

/// A share of 1 MiB of text, different for each name (so that no two
/// shares deduplicate against each other).
fn share(env: &Env, name: &str) -> PathBuf {
    let dir = env.path(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("text.txt"), words(1 << 20, seed(name))).unwrap();
    with_config(env, &["share", "create", "--name", name, "--path", s(&dir)]).ok();
    dir
}

fn seed(name: &str) -> u64 {
    name.bytes().map(u64::from).sum()
}

fn create(env: &Env, share: &str, extra: &[&str]) -> Run {
    let mut args = vec!["backup", "create", "-f", "json"];
    args.extend_from_slice(extra);
    args.push(share);
    with_config(env, &args)
}

#[test]
fn the_seeds_configuration_enables_a_type_that_backups_name() {
    let env = Env::new();
    let types = with_config(&env, &["backup", "type", "list", "-f", "json"])
        .ok()
        .json();
    let first = &types.as_array().unwrap()[0];
    assert_eq!(first["Name"], "eng_data_backup");
    assert_eq!(first["Backup Type Name"], "my_backup");
    assert_eq!(first["Support Restore To Target"], true);
    assert_eq!(types.as_array().unwrap()[1]["Compression"], "none");

    share(&env, "eng");
    let full = create(
        &env,
        "eng",
        &["--backup-options", "backup_type=eng_data_backup"],
    )
    .ok()
    .json();
    assert_eq!(full["backup_type"], "my_backup");
    let listed = with_config(&env, &["backup", "list", "-f", "json"])
        .ok()
        .json();
    assert_eq!(listed[0]["Backup Type"], "my_backup");
    // An incremental of the same type builds on it.
    let inc = create(
        &env,
        "eng",
        &[
            "--incremental",
            "--backup-options",
            "backup_type=eng_data_backup",
        ],
    )
    .ok()
    .json();
    assert_eq!(inc["parent_id"], full["id"]);
    assert_eq!(inc["backup_type"], "my_backup");

    // Every refusal is a usage error (2), and changes nothing.
    create(&env, "eng", &["--backup-options", "backup_type=nope"]).fails(2, "is not enabled");
    create(&env, "eng", &["--backup-options", "colour=blue"]).fails(2, "unknown backup option");
    create(&env, "eng", &["--backup-options", "backup_type"]).fails(2, "KEY=VALUE");
    // All backups of a share are of one type.
    create(&env, "eng", &[]).fails(2, "one type");
    create(&env, "eng", &["--backup-options", "backup_type=raw_backup"]).fails(2, "one type");
    let after = with_config(&env, &["backup", "list", "-f", "json"])
        .ok()
        .json();
    assert_eq!(after.as_array().unwrap().len(), 2);
}

#[test]
fn a_type_sets_compression_and_whether_it_restores_to_a_target() {
    let env = Env::new();
    share(&env, "plain");
    share(&env, "raw");
    let plain = create(&env, "plain", &[]).ok().json();
    let raw = create(&env, "raw", &["--backup-options", "backup_type=raw_backup"])
        .ok()
        .json();
    assert_eq!(raw["backup_type"], "raw_backup");
    // Text: compressed by default, stored raw by this type.
    let stored = |b: &serde_json::Value| b["stored_bytes"].as_u64().unwrap();
    assert!(stored(&plain) < (1 << 20) / 2, "{plain}");
    assert!(stored(&raw) >= 1 << 20, "{raw}");

    let target = env.path("target");
    fs::create_dir_all(&target).unwrap();
    with_config(
        &env,
        &["share", "create", "--name", "target", "--path", s(&target)],
    )
    .ok();
    let raw_id = raw["id"].as_str().unwrap();
    with_config(
        &env,
        &["backup", "restore", raw_id, "--target-share", "target"],
    )
    .fails(2, "does not support restores to another share");
    // Its own share, and a plain directory, still restore.
    with_config(&env, &["backup", "restore", raw_id]).ok();
    let dir = env.path("dir");
    with_config(
        &env,
        &["backup", "restore", raw_id, "--target-dir", s(&dir)],
    )
    .ok();
    assert_eq!(
        fs::read(dir.join("text.txt")).unwrap(),
        words(1 << 20, seed("raw"))
    );
    let plain_id = plain["id"].as_str().unwrap();
    with_config(
        &env,
        &["backup", "restore", plain_id, "--target-share", "target"],
    )
    .ok();
}

#[test]
fn a_bad_type_configuration_is_refused() {
    let env = Env::new();
    let bad = env.path("bad.toml");
    for (text, says) in [
        ("enabled_backup_types = [\"t\"]\n", "has no [t] table"),
        (
            "enabled_backup_types = [\"t\"]\n[t]\nbackup_type_nam = \"x\"\n",
            "backup_type_nam",
        ),
        ("enabled_backup_types = \"t\"\n", "list of table names"),
        ("[t]\nbackup_type_name = \"x\"\n", "unknown field"),
    ] {
        fs::write(&bad, text).unwrap();
        let run = env.strata(&["--config", s(&bad), "backup", "type", "list"]);
        assert_eq!(run.code, 2, "{text}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{text}: {}", run.stderr);
    }
}

/// Two backup types with their own repositories (one a directory, one an
/// NFS export) beside the default one, in one catalog: each backup lands
/// in its type's repository, deduplication stays within a repository,
/// every backup restores, `check` and a rebuild of the lost catalog cover
/// all three.
#[test]
fn types_with_their_own_repositories_share_one_catalog() {
    let env = Env::new();
    let Some(g) = crate::ganesha::Ganesha::start(
        "types_with_their_own_repositories_share_one_catalog",
        &env.path("export"),
    ) else {
        return;
    };
    let local = env.path("local-repo");
    let config = env.path("two.toml");
    fs::write(
        &config,
        format!(
            "enabled_backup_types = [\"local\", \"remote\"]\n\
             [local]\nrepository = \"{}\"\n\
             [remote]\nrepository = \"{}\"\nbackup_type_name = \"on_nfs\"\n",
            local.display(),
            g.url("typed")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", s(&config)];
        all.extend_from_slice(args);
        env.strata(&all)
    };
    // Three shares with the same content: one per type, and the default.
    let text = words(2 << 20, 77);
    let mut ids = Vec::new();
    for (name, option) in [
        ("a", None),
        ("b", Some("backup_type=local")),
        ("c", Some("backup_type=remote")),
    ] {
        let dir = env.path(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("same.txt"), &text).unwrap();
        run(&["share", "create", "--name", name, "--path", s(&dir)]).ok();
        let mut args = vec!["backup", "create", "-f", "json"];
        if let Some(option) = option {
            args.extend_from_slice(&["--backup-options", option]);
        }
        args.push(name);
        let b = run(&args).ok().json();
        // The same bytes are new in each repository: no dedup across them.
        assert_eq!(b["new_bytes"], 2 << 20, "{b}");
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    // Each layer is in its own repository, and only there.
    let layer_in = |repo: &Path, id: &str| repo.join("layers").join(id).exists();
    assert!(layer_in(&env.repo(), &ids[0]) && !layer_in(&local, &ids[0]));
    assert!(layer_in(&local, &ids[1]) && !layer_in(&env.repo(), &ids[1]));
    let remote = g.export.join("typed");
    assert!(layer_in(&remote, &ids[2]) && !layer_in(&env.repo(), &ids[2]));
    // Within one repository, dedup as ever.
    let again = run(&[
        "backup",
        "create",
        "-f",
        "json",
        "--backup-options",
        "backup_type=remote",
        "c",
    ])
    .ok()
    .json();
    assert_eq!(again["new_bytes"], 0, "{again}");
    for id in &ids {
        let target = env.path(&format!("restored-{id}"));
        run(&["backup", "restore", id, "--target-dir", s(&target)]).ok();
        assert_eq!(fs::read(target.join("same.txt")).unwrap(), text);
    }
    let checked = run(&["check"]);
    assert_eq!(checked.code, 0, "{}", checked.stderr);

    // Lose the catalog: a rebuild finds every type's backups again.
    let before = run(&["backup", "list", "-f", "json"]).ok().json();
    for entry in fs::read_dir(env.dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("catalog.db") {
            fs::remove_file(entry.path()).unwrap();
        }
    }
    run(&["catalog", "rebuild"]).ok();
    let after = run(&["backup", "list", "-f", "json"]).ok().json();
    let key = |v: &serde_json::Value| {
        let mut rows: Vec<(String, String)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b["ID"].to_string(), b["Backup Type"].to_string()))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(key(&before), key(&after));
    let checked = run(&["check"]);
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    let target = env.path("after-rebuild");
    run(&["backup", "restore", &ids[2], "--target-dir", s(&target)]).ok();
    assert_eq!(fs::read(target.join("same.txt")).unwrap(), text);
}
