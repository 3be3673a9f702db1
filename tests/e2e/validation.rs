//! Arguments are checked before anything happens, exit codes follow the
//! documented table, and `check` finds damage in layers, trailers and the
//! index without cleaning anything up first.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::path::Path;

use crate::harness::*;

fn share(env: &Env) -> std::path::PathBuf {
    let dir = env.path("data");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..3 {
        fs::write(dir.join(format!("f{i}")), noise(200_000, i)).unwrap();
    }
    dir
}

fn backups(env: &Env) -> usize {
    let list = env.strata(&["backup", "list", "-f", "json"]).ok();
    list.json().as_array().unwrap().len()
}

#[test]
fn a_bad_argument_is_refused_before_anything_happens() {
    let env = Env::new();
    let dir = share(&env);
    let dir = dir.to_str().unwrap();
    let refused: &[&[&str]] = &[
        &["backup", "create", "-c", "bogus", dir],
        &["backup", "create", "--name", "two\nlines", dir],
        &["backup", "create", "--name", "", dir],
        &["backup", "create", "--description", "bell\u{7}", dir],
        &[
            "backup",
            "create",
            "-c",
            "id",
            "--name",
            &"n".repeat(300),
            dir,
        ],
        &["backup", "restore", "-c", "id", "whatever"],
        &["quota", "set", "--backups", "-5"],
        &["quota", "set", "--backup-gigabytes", "-2"],
        &["share", "create", "--name", "tab\there", "--path", dir],
    ];
    for args in refused {
        let run = env.strata(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("error: "),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(backups(&env), 0, "a refused command created a backup");
    let shares = env.strata(&["share", "list", "-f", "json"]).ok();
    assert_eq!(shares.json().as_array().unwrap().len(), 0);
    let quota = env.strata(&["quota", "show", "-f", "json"]).ok().json();
    assert_eq!(quota["backups"], -1, "{quota}");
    // The same command with good arguments works, -1 stays "unlimited".
    env.strata(&["quota", "set", "--backups", "-1"]).ok();
    env.strata(&["backup", "create", "-c", "id", "-f", "value", dir])
        .ok();
    assert_eq!(backups(&env), 1);
}

#[test]
fn exit_codes_follow_the_table() {
    let env = Env::new();
    let dir = share(&env);
    let id = backup(&env, &dir)["id"].as_str().unwrap().to_string();
    // A share path that does not exist: not found (4).
    let gone = env.path("gone");
    env.strata(&[
        "share",
        "create",
        "--name",
        "g",
        "--path",
        gone.to_str().unwrap(),
    ])
    .fails(4, "not found");
    // A missing layer: corruption (7), said once.
    let layer = env.repo().join("layers").join(&id);
    fs::rename(&layer, env.path("layer.aside")).unwrap();
    let run = restore_to(&env, &id, &env.path("out"));
    run.fails(7, "missing");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    fs::rename(env.path("layer.aside"), &layer).unwrap();
    // A corrupt catalog: corruption (7).
    let garbage = env.path("garbage.db");
    fs::write(&garbage, noise(8192, 9)).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--catalog")
        .arg(&garbage)
        .arg("--repository")
        .arg(env.repo());
    cmd.args(["backup", "list"]);
    run_checked(cmd).fails(7, "catalog");
}

fn run_checked(cmd: std::process::Command) -> Run {
    let run = run(cmd);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

#[test]
fn a_catalog_bound_to_another_repository_creates_nothing_elsewhere() {
    let env = Env::new();
    backup(&env, &share(&env));
    let other = env.path("other-repo");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--catalog")
        .arg(env.path("catalog.db"))
        .arg("--repository")
        .arg(&other);
    cmd.args(["backup", "list"]);
    run_checked(cmd).fails(2, "indexes repository");
    assert!(
        !other.exists(),
        "a repository was created at the wrong location"
    );
}

/// Flips one byte of `path` at `at` (from the end when negative).
fn flip(path: &Path, at: i64) {
    let mut bytes = fs::read(path).unwrap();
    let i = if at < 0 { bytes.len() as i64 + at } else { at } as usize;
    bytes[i] ^= 0x40;
    overwrite(path, &bytes);
}

#[test]
fn check_finds_a_flipped_trailer_a_flipped_layer_and_an_emptied_index() {
    let env = Env::new();
    let id = backup(&env, &share(&env))["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.strata(&["check"]).ok();
    let pack = walk_files(&env.repo().join("packs")).pop().unwrap();
    let pack_name = pack.file_name().unwrap().to_str().unwrap().to_string();

    // A byte of the trailer (just before the 12-byte tail).
    flip(&pack, -20);
    let run = env.strata(&["check", "-f", "json"]);
    assert_eq!(run.code, 7, "{}", run.stdout);
    assert!(
        run.json()["damaged_packs"].to_string().contains(&pack_name),
        "{}",
        run.stdout
    );
    flip(&pack, -20);
    env.strata(&["check"]).ok();

    // A byte in the middle of the layer's body.
    let layer = env.repo().join("layers").join(&id);
    let len = fs::metadata(&layer).unwrap().len() as i64;
    flip(&layer, len / 2);
    let run = env.strata(&["check", "-f", "json"]);
    assert_eq!(run.code, 7, "{}", run.stdout);
    assert!(
        run.json()["damaged_layers"].to_string().contains(&id),
        "{}",
        run.stdout
    );
    flip(&layer, len / 2);
    env.strata(&["check"]).ok();

    // The chunk index emptied behind strata's back.
    let db = rusqlite::Connection::open(env.path("catalog.db")).unwrap();
    db.execute("DELETE FROM chunks", []).unwrap();
    drop(db);
    let run = env.strata(&["check", "-f", "json"]);
    assert_eq!(run.code, 7, "{}", run.stdout);
    let report = run.json();
    assert!(report["unindexed_chunks"].as_u64().unwrap() > 0, "{report}");
    assert!(
        !report["index_mismatches"].as_array().unwrap().is_empty(),
        "{report}"
    );
}

/// `check` reports what a killed backup left (its dead operation, its
/// `creating` backup, its temporary files) and changes none of it; the next
/// command that changes things cleans up, and then `check` is clean.
#[test]
fn check_reports_a_dead_operation_and_does_not_clean_it() {
    let env = Env::new();
    let dir = env.path("data");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..4 {
        fs::write(dir.join(format!("f{i}")), crate::service::words(3 << 20, i)).unwrap();
    }
    let slow = env.slow_config();
    let mut child = env.spawn(&[
        "--config",
        slow.to_str().unwrap(),
        "backup",
        "create",
        dir.to_str().unwrap(),
    ]);
    // Running: `check` is clean meanwhile (a live backup's files are not
    // leftovers); then killed once it has written something.
    crate::service::wait_for(std::time::Duration::from_secs(30), || {
        let tmp = walk_files(&env.repo().join("tmp"));
        (!tmp.is_empty()).then_some(())
    });
    let running = env.strata(&["check", "-f", "json"]);
    assert_eq!(running.json()["temp_files"], 0, "{}", running.stdout);
    child.kill().unwrap();
    child.wait().unwrap();
    for _ in 0..2 {
        let run = env.strata(&["check", "-f", "json"]);
        assert_eq!(run.code, 7, "{}", run.stdout);
        assert_eq!(run.json()["dead_operations"], 1, "{}", run.stdout);
    }
    let catalog = rusqlite::Connection::open(env.path("catalog.db")).unwrap();
    let creating: i64 = catalog
        .query_row(
            "SELECT COUNT(*) FROM backups WHERE status = 'creating'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(creating, 1, "check moved the killed backup");
    env.strata(&["cleanup"]).ok();
    env.strata(&["check"]).ok();
}
