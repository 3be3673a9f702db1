//! Wrong arguments and refused operations: a one-line message and the
//! documented exit code, never a panic or a backtrace.

use std::fs;
use std::process::Command;

use crate::harness::*;

fn one_line_error(run: &Run) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn missing_share_is_not_found() {
    let env = Env::new();
    let run = env.strata(&["backup", "create", "no-such-share"]);
    assert_eq!(run.code, 4);
    one_line_error(&run);
    let run = env.strata(&["share", "show", "nope"]);
    assert_eq!(run.code, 4);
    one_line_error(&run);
    let run = env.strata(&["backup", "restore", "00000000-0000-0000-0000-000000000000"]);
    assert_eq!(run.code, 4);
    one_line_error(&run);
}

#[test]
fn wrong_arguments_exit_2() {
    let env = Env::new();
    assert_eq!(env.strata(&["backup", "frobnicate"]).code, 2);
    assert_eq!(env.strata(&["backup", "delete"]).code, 2);
    let run = env.strata(&["backup", "list", "--status", "sleeping"]);
    assert_eq!(run.code, 2);
    one_line_error(&run);
    let run = env.strata(&["share", "list", "-c", "Colour"]);
    assert_ne!(run.code, 0);
    one_line_error(&run);
    // A database URL that is not one: refused, before anything is made.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args([
        "--catalog",
        "postgresql://db.example/strata?sslmode=sometimes",
        "--repository",
    ])
    .arg(&env.repository)
    .args(["backup", "list"]);
    let refused = crate::harness::run(cmd);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("invalid catalog URL"),
        "{}",
        refused.stderr
    );
    assert!(
        !std::path::Path::new(&env.repository).exists(),
        "a refused catalog made a repository"
    );
}

#[test]
fn share_lifecycle_and_refusals() {
    let env = Env::new();
    let dir = env.path("data");
    fs::create_dir_all(&dir).expect("dir");
    fs::write(dir.join("f"), b"x").expect("write");
    let created = env
        .strata(&[
            "share",
            "create",
            "--name",
            "projects",
            "--path",
            dir.to_str().expect("utf8"),
            "--size",
            "10",
            "-f",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(created["status"], "available");
    assert_eq!(created["size"], 10);
    let dup = env.strata(&[
        "share",
        "create",
        "--name",
        "projects",
        "--path",
        dir.to_str().expect("utf8"),
    ]);
    assert_eq!(dup.code, 2);
    one_line_error(&dup);

    let backup = env
        .strata(&[
            "backup", "create", "--name", "nightly", "projects", "-f", "json",
        ])
        .ok()
        .json();
    let refused = env.strata(&["share", "delete", "projects"]);
    refused.fails(5, "delete them first");

    env.strata(&[
        "backup",
        "set",
        "nightly",
        "--name",
        "renamed",
        "--description",
        "kept",
    ])
    .ok();
    let shown = env
        .strata(&["backup", "show", "renamed", "-f", "json"])
        .ok()
        .json();
    assert_eq!(shown["description"], "kept");
    assert_eq!(shown["id"], backup["id"]);
    let value = env
        .strata(&["backup", "show", "renamed", "-f", "value", "-c", "status"])
        .ok();
    assert_eq!(value.stdout.trim(), "available");

    let occupied = env.path("occupied");
    fs::create_dir_all(&occupied).expect("dir");
    fs::write(occupied.join("x"), b"x").expect("write");
    let run = restore_to(&env, "renamed", &occupied);
    run.fails(2, "not empty");

    env.strata(&["backup", "delete", "renamed"]).ok();
    env.strata(&["share", "delete", "projects"]).ok();
    let list = env.strata(&["share", "list", "-f", "json"]).ok().json();
    assert_eq!(list.as_array().map(Vec::len), Some(0));
}

#[test]
fn a_catalog_refuses_a_second_repository() {
    let env = Env::new();
    let dir = env.path("data");
    fs::create_dir_all(&dir).expect("dir");
    env.strata(&["share", "list"]).ok();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--catalog")
        .arg(env.path("catalog.db"))
        .arg("--repository")
        .arg(env.path("other-repo"))
        .args(["share", "list"]);
    let run = run(cmd);
    run.fails(2, "indexes repository");
}

#[test]
fn projects_isolate_shares_and_backups() {
    let env = Env::new();
    let dir = env.path("data");
    fs::create_dir_all(&dir).expect("dir");
    fs::write(dir.join("f"), b"x").expect("write");
    let path = dir.to_str().expect("utf8");
    env.strata(&["share", "create", "--name", "mine", "--path", path])
        .ok();
    env.strata(&["backup", "create", "mine"]).ok();
    let theirs = env
        .strata(&["--project", "other", "share", "list", "-f", "json"])
        .ok()
        .json();
    assert_eq!(theirs.as_array().map(Vec::len), Some(0));
    let run = env.strata(&["--project", "other", "backup", "create", "mine"]);
    assert_ne!(
        run.code, 0,
        "a share of another project was backed up by name"
    );
    let all = env
        .strata(&[
            "--project",
            "other",
            "backup",
            "list",
            "--all-projects",
            "-f",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(all.as_array().map(Vec::len), Some(1));
    let id = env
        .strata(&["share", "show", "mine", "-f", "value", "-c", "id"])
        .ok()
        .stdout;
    let by_id = env.strata(&["--project", "other", "share", "show", id.trim()]);
    assert_eq!(by_id.code, 4, "another project's share was found by id");
    // The same name may exist in another project.
    env.strata(&[
        "--project",
        "other",
        "share",
        "create",
        "--name",
        "mine",
        "--path",
        path,
    ])
    .ok();
}
