//! `check --read-data`: a flipped byte in a chunk, in a pack trailer and in
//! a layer is each named with the backups that need it (whole chains),
//! which plain `check` (trailers and layers only) cannot all see; seven
//! nightly slices read every pack exactly once; the same over NFS.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn flip(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    overwrite(path, &bytes);
}

fn packs(repo: &Path) -> BTreeSet<PathBuf> {
    walk_files(&repo.join("packs")).into_iter().collect()
}

/// Backs up `share` (named `name`), returning its id and the packs it wrote.
fn backed_up(env: &Env, args: &[&str], repo: &Path) -> (String, Vec<PathBuf>) {
    let before = packs(repo);
    let b = env.strata(args).ok().json();
    let after = packs(repo);
    let id = b["id"].as_str().unwrap().to_string();
    (id, after.difference(&before).cloned().collect())
}

fn check(env: &Env, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["check", "-f", "json"];
    args.extend_from_slice(extra);
    let run = env.strata(&args);
    (run.code, run.json())
}

fn texts(v: &serde_json::Value) -> String {
    v.to_string()
}

/// Two shares: a full and an incremental of one (the chain), a full of the
/// other, each of its own random data.
fn history(env: &Env) -> [(String, Vec<PathBuf>); 3] {
    let repo = PathBuf::from(&env.repository);
    let a = env.path("a");
    fs::create_dir_all(&a).unwrap();
    fs::write(a.join("one.bin"), noise(3 << 20, 1)).unwrap();
    let full = backed_up(
        env,
        &["backup", "create", "-f", "json", "--name", "full", s(&a)],
        &repo,
    );
    fs::write(a.join("two.bin"), noise(1 << 20, 2)).unwrap();
    let inc = backed_up(
        env,
        &[
            "backup",
            "create",
            "-f",
            "json",
            "--incremental",
            "--name",
            "inc",
            s(&a),
        ],
        &repo,
    );
    let c = env.path("c");
    fs::create_dir_all(&c).unwrap();
    fs::write(c.join("three.bin"), noise(2 << 20, 3)).unwrap();
    let other = backed_up(
        env,
        &["backup", "create", "-f", "json", "--name", "other", s(&c)],
        &repo,
    );
    [full, inc, other]
}

#[test]
fn every_kind_of_damage_is_named_with_the_backups_that_need_it() {
    let env = Env::new();
    let [(full, full_packs), (inc, _), (other, other_packs)] = history(&env);
    let (code, clean) = check(&env, &["--read-data"]);
    assert_eq!(code, 0, "{clean}");
    assert_eq!(clean["data_packs_read"], packs(&env.repo()).len());
    assert!(clean["data_chunks_verified"].as_u64().unwrap() > 0);

    // A byte in the middle of a chunk of the full backup's pack: plain
    // `check` does not read chunks; --read-data names it, and the full
    // backup and the incremental built on it.
    let pack = &full_packs[0];
    let middle = fs::metadata(pack).unwrap().len() as usize / 2;
    flip(pack, middle);
    assert_eq!(check(&env, &[]).0, 0, "plain check reads no chunk");
    let (code, found) = check(&env, &["--read-data"]);
    assert_eq!(code, 7, "{found}");
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        texts(&found["data_damaged_chunks"]).contains(name),
        "{found}"
    );
    let affected = texts(&found["affected_backups"]);
    assert!(affected.contains(&format!("{full} (full)")), "{affected}");
    assert!(affected.contains(&format!("{inc} (inc)")), "{affected}");
    assert!(!affected.contains(&other), "{affected}");
    flip(pack, middle);

    // A byte of a trailer: the whole pack, and the backup that needs it.
    let pack = &other_packs[0];
    let len = fs::metadata(pack).unwrap().len() as usize;
    flip(pack, len - 20);
    let (code, found) = check(&env, &["--read-data"]);
    assert_eq!(code, 7, "{found}");
    assert!(
        texts(&found["data_damaged_packs"]).contains(pack.file_name().unwrap().to_str().unwrap())
    );
    let affected = texts(&found["affected_backups"]);
    assert!(affected.contains(&format!("{other} (other)")), "{affected}");
    assert!(!affected.contains(&full), "{affected}");
    flip(pack, len - 20);

    // A byte of the incremental's layer.
    let layer = env.repo().join("layers").join(&inc);
    let len = fs::metadata(&layer).unwrap().len() as usize;
    flip(&layer, len / 2);
    let (code, found) = check(&env, &["--read-data"]);
    assert_eq!(code, 7, "{found}");
    assert!(
        texts(&found["data_damaged_layers"]).contains(&inc),
        "{found}"
    );
    let affected = texts(&found["affected_backups"]);
    assert!(
        affected.contains(&inc) && !affected.contains(&full),
        "{affected}"
    );
    flip(&layer, len / 2);
    assert_eq!(check(&env, &["--read-data"]).0, 0);
}

#[test]
fn seven_nightly_slices_read_every_pack_exactly_once() {
    let env = Env::new();
    let share = env.path("many");
    fs::create_dir_all(&share).unwrap();
    // Many small backups: many packs.
    for i in 0..24u64 {
        fs::write(share.join(format!("f{i}")), noise(64 << 10, 100 + i)).unwrap();
        env.strata(&["backup", "create", s(&share)]).ok();
    }
    let total = packs(&env.repo()).len() as u64;
    assert!(total >= 20);
    let mut read = 0;
    for n in 1..=7 {
        let slice = format!("{n}/7");
        let (code, night) = check(&env, &["--read-data-subset", &slice]);
        assert_eq!(code, 0, "{night}");
        read += night["data_packs_read"].as_u64().unwrap();
    }
    assert_eq!(read, total);
    let (_, tenth) = check(&env, &["--read-data-subset", "10%"]);
    assert!(tenth["data_packs_read"].as_u64().unwrap() < total);
    for bad in ["0/7", "8/7", "7", "0%", "101%", "x%"] {
        env.strata(&["check", "--read-data-subset", bad])
            .fails(2, "subset");
    }
}

#[test]
fn read_data_works_over_nfs() {
    let env = Env::new();
    let Some(g) = crate::ganesha::Ganesha::start("read_data_works_over_nfs", &env.path("export"))
    else {
        return;
    };
    let env = Env {
        repository: g.url("repo"),
        ..env
    };
    let share = env.path("s");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("data.bin"), noise(6 << 20, 9)).unwrap();
    let repo = g.export.join("repo");
    let (id, written) = backed_up(&env, &["backup", "create", "-f", "json", s(&share)], &repo);
    let (code, clean) = check(&env, &["--read-data"]);
    assert_eq!(code, 0, "{clean}");
    assert!(
        clean["data_bytes_read"].as_u64().unwrap() >= 6 << 20,
        "{clean}"
    );
    let pack = &written[0];
    let middle = fs::metadata(pack).unwrap().len() as usize / 2;
    flip(pack, middle);
    let (code, found) = check(&env, &["--read-data"]);
    assert_eq!(code, 7, "{found}");
    assert!(texts(&found["affected_backups"]).contains(&id), "{found}");
}
