//! The repository is the truth: a lost catalog is rebuilt from it, damage
//! is named and confined to the backups that need it, a rebuild killed at
//! any point can run again, and a backup record exported from one catalog
//! is imported into another.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::ganesha::Ganesha;
use crate::harness::*;

/// Two shares, a full backup and three incrementals each; returns every
/// backup's id with the tree it holds.
fn history(env: &Env) -> Vec<(String, BTreeMap<PathBuf, Node>)> {
    let mut out = Vec::new();
    for (s, name) in ["alpha", "beta"].iter().enumerate() {
        let dir = env.path(name);
        fs::create_dir_all(dir.join("sub")).unwrap();
        for i in 0..5 {
            let seed = s as u64 * 100 + i;
            fs::write(
                dir.join(format!("f{i}")),
                noise(150_000 + i as usize * 40_000, seed),
            )
            .unwrap();
        }
        for round in 0..4 {
            if round > 0 {
                fs::write(
                    dir.join(format!("sub/r{round}")),
                    noise(70_000, 500 + round),
                )
                .unwrap();
                fs::remove_file(dir.join(format!("f{round}"))).unwrap();
            }
            let mut args = vec!["backup", "create", "-f", "json"];
            let label = format!("{name}-{round}");
            let description = format!("round {round} of {name}");
            args.extend(["--name", &label, "--description", &description]);
            if round > 0 {
                args.push("--incremental");
            }
            args.push(dir.to_str().unwrap());
            let b = env.strata(&args).ok().json();
            out.push((b["id"].as_str().unwrap().to_string(), snapshot(&dir)));
        }
    }
    out
}

/// What the repository records of each backup, as `backup show` says it.
fn shown(env: &Env, catalog: &str, ids: &[&str]) -> Vec<Value> {
    const KEPT: [&str; 10] = [
        "id",
        "name",
        "description",
        "share_id",
        "status",
        "parent_id",
        "data_timestamp",
        "created_at",
        "is_incremental",
        "file_count",
    ];
    ids.iter()
        .map(|id| {
            let run = env
                .strata_at(catalog, &["backup", "show", "-f", "json", id])
                .ok();
            let all = run.json();
            KEPT.iter()
                .map(|k| (k.to_string(), all[k].clone()))
                .collect()
        })
        .collect()
}

fn remove_catalog(env: &Env, name: &str) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(env.path(&format!("{name}{suffix}")));
    }
}

fn restore_all(env: &Env, catalog: &str, backups: &[(String, BTreeMap<PathBuf, Node>)], tag: &str) {
    for (i, (id, tree)) in backups.iter().enumerate() {
        let target = env.path(&format!("{tag}-{i}"));
        let run = env.restore_at(catalog, id, &target);
        assert_eq!(run.code, 0, "restoring {id}: {}", run.stderr);
        assert_same(tree, &snapshot(&target));
    }
}

pub(crate) fn lost_catalog_is_rebuilt(env: &Env) {
    let backups = history(env);
    let ids: Vec<&str> = backups.iter().map(|(id, _)| id.as_str()).collect();
    let before = shown(env, "catalog.db", &ids);
    remove_catalog(env, "catalog.db");
    let rebuilt = env
        .strata(&["catalog", "rebuild", "-f", "json"])
        .ok()
        .json();
    assert_eq!(rebuilt["backups"], 8, "{rebuilt}");
    assert_eq!(rebuilt["shares"], 2, "{rebuilt}");
    // Only trailers and layers are read, a sliver of the repository.
    let read = rebuilt["bytes_read"].as_u64().unwrap();
    let size = rebuilt["repository_bytes"].as_u64().unwrap();
    assert!(read * 20 < size, "read {read} of {size} bytes");
    assert_eq!(shown(env, "catalog.db", &ids), before);
    env.strata(&["check"]).ok();
    restore_all(env, "catalog.db", &backups, "rebuilt");
    // A rebuild refuses to replace a catalog that holds anything...
    env.strata(&["catalog", "rebuild"]).fails(5, "--force");
    // ...unless told to, and then gives the same.
    env.strata(&["catalog", "rebuild", "--force"]).ok();
    assert_eq!(shown(env, "catalog.db", &ids), before);
}

#[test]
fn a_lost_catalog_is_rebuilt_from_the_repository() {
    lost_catalog_is_rebuilt(&Env::new());
}

#[test]
fn a_lost_catalog_is_rebuilt_from_an_nfs_repository() {
    let env = Env::new();
    let Some(g) = Ganesha::start(
        "a_lost_catalog_is_rebuilt_from_an_nfs_repository",
        &env.path("export"),
    ) else {
        return;
    };
    let env = Env {
        repository: g.url("repo"),
        ..env
    };
    lost_catalog_is_rebuilt(&env);
}

fn flip(path: &Path, from_end: u64) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes.len() - from_end as usize;
    bytes[at] ^= 0x20;
    overwrite(path, &bytes);
}

#[test]
fn damage_is_named_and_confined_to_the_backups_that_need_it() {
    let env = Env::new();
    let backups = history(&env);
    let (alpha, beta) = backups.split_at(4);
    // A byte of one pack trailer that only beta's full backup wrote...
    let beta_full = &beta[0].0;
    let layer_packs = packs_of(&env, beta_full);
    let pack = &layer_packs[0];
    flip(&env.repo().join("packs").join(&pack[..2]).join(pack), 20);
    // ...and alpha's second incremental's layer cut short.
    let cut = env.repo().join("layers").join(&alpha[2].0);
    let bytes = fs::read(&cut).unwrap();
    overwrite(&cut, &bytes[..bytes.len() / 2]);
    remove_catalog(&env, "catalog.db");
    let run = env.strata(&["catalog", "rebuild", "-f", "json"]);
    assert_eq!(run.code, 7, "{}", run.stderr);
    let report = run.json();
    let damaged = report["damaged"].to_string();
    assert!(
        damaged.contains(pack.as_str()) && damaged.contains(&alpha[2].0),
        "{report}"
    );
    // alpha-0, alpha-1 stand; alpha-3 lost its parent's layer; beta's whole
    // chain needs the damaged pack.
    for (id, tree) in &alpha[..2] {
        let target = env.path(&format!("ok-{id}"));
        restore_to(&env, id, &target).ok();
        assert_same(tree, &snapshot(&target));
    }
    let failed: Vec<&String> = std::iter::once(&alpha[3].0)
        .chain(beta.iter().map(|(id, _)| id))
        .collect();
    for id in failed {
        let b = env
            .strata(&["backup", "show", "-f", "json", id])
            .ok()
            .json();
        assert_eq!(b["status"], "error", "{b}");
        let why = b["fail_reason"].as_str().unwrap();
        assert!(
            why.contains(&alpha[2].0) || why.contains("no readable pack"),
            "{why}"
        );
    }
}

/// Packs holding the chunks of `backup`'s own layer (ids, hex).
fn packs_of(env: &Env, backup: &str) -> Vec<String> {
    let bytes = fs::read(env.repo().join("layers").join(backup)).unwrap();
    let layer = strata_format::layer::Layer::decode(&bytes).unwrap();
    let mut wanted = std::collections::HashSet::new();
    for r in layer.records().unwrap() {
        if let strata_format::layer::LayerRecord::Entry(e) = r.unwrap() {
            if let strata_format::layer::EntryKind::File { chunks, .. } = e.kind {
                wanted.extend(chunks.iter().map(|c| c.id));
            }
        }
    }
    let mut out = Vec::new();
    for path in walk_files(&env.repo().join("packs")) {
        let entries = strata_format::pack::decode_index(&fs::read(&path).unwrap()).unwrap();
        if entries.iter().any(|e| wanted.contains(&e.id)) {
            out.push(path.file_name().unwrap().to_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn a_rebuild_killed_anywhere_runs_again_to_the_same_result() {
    let env = Env::new();
    let config = env.path("small-packs.toml");
    fs::write(&config, "pack_target_size = 1048576\n").unwrap();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    for i in 0..48 {
        fs::write(share.join(format!("f{i}")), noise(700_000, 40 + i)).unwrap();
    }
    let cfg = config.to_str().unwrap();
    let mut ids = Vec::new();
    for round in 0..6 {
        fs::write(share.join(format!("r{round}")), noise(300_000, 900 + round)).unwrap();
        let mut args = vec!["--config", cfg, "backup", "create", "-f", "json"];
        if round > 0 {
            args.push("--incremental");
        }
        args.push(share.to_str().unwrap());
        ids.push(
            env.strata(&args).ok().json()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let reference = shown(&env, "catalog.db", &ids);
    for kill in 0..20u64 {
        remove_catalog(&env, "catalog.db");
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--catalog")
            .arg(env.path("catalog.db"))
            .arg("--repository")
            .arg(&env.repository)
            .args(["catalog", "rebuild"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(1500 * kill));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the kill left (no catalog, or a finished one), a rebuild
        // runs again and gives the same.
        env.strata(&["catalog", "rebuild", "--force"]).ok();
        assert_eq!(
            shown(&env, "catalog.db", &ids),
            reference,
            "after a kill at {kill}"
        );
    }
    env.strata(&["check"]).ok();
    let leftovers: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".rebuild"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_exported_record_is_imported_into_another_catalog() {
    let env = Env::new();
    let backups = history(&env);
    let export = |id: &str| -> (String, String) {
        let e = env
            .strata(&["backup", "export", "-f", "json", id])
            .ok()
            .json();
        (
            e["backup_service"].as_str().unwrap().to_string(),
            e["backup_url"].as_str().unwrap().to_string(),
        )
    };
    let (full, inc) = (&backups[0].0, &backups[1].0);
    let (service, full_url) = export(full);
    let (_, inc_url) = export(inc);
    // Another node, a fresh catalog: the chain's records in order.
    env.strata_at("other.db", &["backup", "import", &service, &inc_url])
        .fails(4, full);
    env.strata_at("other.db", &["backup", "import", &service, &full_url])
        .ok();
    let imported = env
        .strata_at(
            "other.db",
            &["backup", "import", "-f", "json", &service, &inc_url],
        )
        .ok()
        .json();
    assert_eq!(imported["status"], "available");
    assert_eq!(imported["parent_id"].as_str(), Some(full.as_str()));
    assert_eq!(
        shown(&env, "other.db", &[inc]),
        shown(&env, "catalog.db", &[inc])
    );
    restore_all(&env, "other.db", &backups[..2], "imported");
    assert_eq!(env.strata_at("other.db", &["check"]).code, 0);
    // Refusals: a live id, garbage, another repository's record.
    env.strata_at("other.db", &["backup", "import", &service, &inc_url])
        .fails(2, "already");
    env.strata_at("other.db", &["backup", "import", &service, "not base64!"])
        .fails(2, "decode");
    env.strata_at(
        "other.db",
        &["backup", "import", "cinder.backup.drivers.nfs", &inc_url],
    )
    .fails(2, "strata");
    let elsewhere = Env::new();
    backup(&elsewhere, &env.path("alpha"));
    elsewhere
        .strata(&["backup", "import", &service, &inc_url])
        .fails(2, "repository");
}
