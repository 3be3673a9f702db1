//! Restores to a share other than the backup's source (Manila's
//! out-of-place restore) and shares created from a backup: every rule with
//! its refusal and exit code, what a restore leaves of a share's other
//! files, and the target share's statuses through cancel and kill -9.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use crate::service::{assert_running, wait_for};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A source share with a tree, registered as `src`, and its full backup.
fn source(env: &Env) -> (PathBuf, String) {
    let share = env.path("src");
    build_tree(&share);
    env.strata(&["share", "create", "--name", "src", "--path", s(&share)])
        .ok();
    let id = backup(env, &share)["id"].as_str().unwrap().to_string();
    (share, id)
}

fn share_json(env: &Env, name: &str) -> serde_json::Value {
    env.strata(&["share", "show", "-f", "json", name])
        .ok()
        .json()
}

fn backup_json(env: &Env, id: &str) -> serde_json::Value {
    env.strata(&["backup", "show", "-f", "json", id])
        .ok()
        .json()
}

fn new_share(env: &Env, name: &str, extra: &[&str]) -> PathBuf {
    let dir = env.path(name);
    fs::create_dir_all(&dir).unwrap();
    let mut args = vec!["share", "create", "--name", name, "--path", s(&dir)];
    args.extend_from_slice(extra);
    env.strata(&args).ok();
    dir
}

#[test]
fn a_backup_restores_into_another_share_replacing_its_paths_and_keeping_the_rest() {
    let env = Env::new();
    let (src, id) = source(&env);
    let expected = snapshot(&src);
    let target = new_share(&env, "dst", &[]);
    // A file the backup does not have, and one it has with other content.
    fs::write(target.join("keep.txt"), b"mine").unwrap();
    fs::write(target.join("hello.txt"), b"to be replaced").unwrap();

    env.strata(&["backup", "restore", &id, "--target-share", "dst"])
        .ok();

    let mut after = snapshot(&target);
    let kept = after.remove(Path::new("keep.txt")).expect("keep.txt stays");
    assert_eq!(kept.content, Some(blake3::hash(b"mine")));
    // The root's own metadata is the target share's, not the source's.
    after.remove(Path::new(""));
    let mut want = expected.clone();
    want.remove(Path::new(""));
    assert_same(&want, &after);
    assert_eq!(snapshot(&src), expected, "the source share is untouched");

    let dst = share_json(&env, "dst");
    assert_eq!(dst["status"], "available");
    assert_eq!(dst["fail_reason"], serde_json::Value::Null);
    let b = backup_json(&env, &id);
    assert_eq!(b["status"], "available");
    assert_eq!(b["restore_progress"], 100);
    assert_eq!(share_json(&env, "src")["status"], "available");

    // Naming the source share is a normal restore.
    fs::write(src.join("hello.txt"), b"changed").unwrap();
    env.strata(&["backup", "restore", &id, "--target-share", "src"])
        .ok();
    assert_same(&expected, &snapshot(&src));
}

#[test]
fn every_rule_of_a_target_restore_has_its_own_refusal() {
    let env = Env::new();
    let (_src, id) = source(&env);

    // Not found anywhere: 4.
    env.strata(&["backup", "restore", &id, "--target-share", "nowhere"])
        .fails(4, "share not found: nowhere");

    // Another project's share: not permitted (10), not "missing".
    let theirs = env.path("theirs");
    fs::create_dir_all(&theirs).unwrap();
    env.strata(&[
        "--project",
        "other",
        "share",
        "create",
        "--name",
        "theirs",
        "--path",
        s(&theirs),
    ])
    .ok();
    env.strata(&["backup", "restore", &id, "--target-share", "theirs"])
        .fails(10, "another project");

    // A busy (in-use) target: 5.
    new_share(&env, "busy", &[]);
    env.strata(&["share", "set", "busy", "--status", "in-use"])
        .ok();
    env.strata(&["backup", "restore", &id, "--target-share", "busy"])
        .fails(5, "in-use");
    assert_eq!(share_json(&env, "busy")["status"], "in-use");

    // An incompatible protocol: 2.
    new_share(&env, "smb", &["--protocol", "CIFS"]);
    env.strata(&["backup", "restore", &id, "--target-share", "smb"])
        .fails(2, "CIFS");
    // A compatible one restores.
    new_share(&env, "ceph", &["--protocol", "CEPHFS"]);
    env.strata(&["backup", "restore", &id, "--target-share", "ceph"])
        .ok();

    // A backup that is not available: 5, and the target is untouched.
    let target = new_share(&env, "later", &[]);
    env.strata(&["backup", "set", "--state", "error", &id]).ok();
    env.strata(&["backup", "restore", &id, "--target-share", "later"])
        .fails(5, "only an available backup");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    assert_eq!(share_json(&env, "later")["status"], "available");
}

#[test]
fn a_share_smaller_than_the_backup_is_refused() {
    let env = Env::new();
    let share = env.path("big");
    fs::create_dir_all(&share).unwrap();
    // 1.25 GiB of holes: a 2 GiB backup that costs nothing to store.
    let f = fs::File::create(share.join("sparse")).unwrap();
    f.set_len(5 << 28).unwrap();
    let b = backup(&env, &share);
    assert_eq!(b["size"], 2, "{b}");
    let id = b["id"].as_str().unwrap();
    let target = new_share(&env, "small", &["--size", "1"]);
    env.strata(&["backup", "restore", id, "--target-share", "small"])
        .fails(2, "the target share is 1 GiB; backup");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    new_share(&env, "roomy", &["--size", "2"]);
    env.strata(&["backup", "restore", id, "--target-share", "roomy"])
        .ok();
    // A share made from the backup takes the backup's size by default,
    // and refuses a smaller one.
    let made = env.path("made");
    env.strata(&[
        "share",
        "create",
        "--name",
        "made",
        "--path",
        s(&made),
        "--size",
        "1",
        "--backup-id",
        id,
    ])
    .fails(2, "the target share is 1 GiB");
    assert!(!made.exists() || fs::read_dir(&made).unwrap().count() == 0);
    env.strata(&["share", "show", "made"])
        .fails(4, "share not found");
}

#[test]
fn a_share_is_created_from_a_backup() {
    let env = Env::new();
    let (src, id) = source(&env);
    let expected = snapshot(&src);
    let path = env.path("restored-share");
    let made = env
        .strata(&[
            "share",
            "create",
            "-f",
            "json",
            "--name",
            "copy",
            "--path",
            s(&path),
            "--backup-id",
            &id,
        ])
        .ok()
        .json();
    assert_eq!(made["status"], "available");
    assert_eq!(made["source_backup_id"], id.as_str());
    assert_eq!(made["size"], backup_json(&env, &id)["size"]);
    let mut got = snapshot(&path);
    let mut want = expected;
    got.remove(Path::new(""));
    want.remove(Path::new(""));
    assert_same(&want, &got);
    assert_eq!(share_json(&env, "copy")["source_backup_id"], id.as_str());

    // A directory with something in it is refused, and no share is made.
    let used = env.path("used");
    fs::create_dir_all(&used).unwrap();
    fs::write(used.join("x"), b"x").unwrap();
    env.strata(&[
        "share",
        "create",
        "--name",
        "used",
        "--path",
        s(&used),
        "--backup-id",
        &id,
    ])
    .fails(2, "is not empty");
    env.strata(&["share", "show", "used"])
        .fails(4, "share not found");
    // A name already taken, likewise.
    env.strata(&[
        "share",
        "create",
        "--name",
        "copy",
        "--path",
        s(&env.path("again")),
        "--backup-id",
        &id,
    ])
    .fails(2, "already exists");
}

/// A source share large enough that a restore of it runs for a while.
fn slow_source(env: &Env) -> String {
    let share = env.path("src");
    for d in 0..100 {
        let dir = share.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..150 {
            fs::write(dir.join(format!("f{f}")), noise(2000, d * 1000 + f)).unwrap();
        }
    }
    env.strata(&["share", "create", "--name", "src", "--path", s(&share)])
        .ok();
    backup(env, &share)["id"].as_str().unwrap().to_string()
}

#[test]
fn a_cancelled_target_restore_leaves_the_target_in_error_with_the_reason() {
    let env = Env::new();
    let id = slow_source(&env);
    let other = incremental_backup(&env, &env.path("src"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    new_share(&env, "dst", &[]);
    let mut running = env.spawn(&["backup", "restore", &id, "--target-share", "dst"]);
    wait_for(Duration::from_secs(30), || {
        assert_running(&mut running);
        let dst = share_json(&env, "dst");
        (dst["status"] == "backup_restoring").then_some(())
    });
    // Busy meanwhile: no backup of it, no other restore into it, no delete.
    env.strata(&["backup", "create", "dst"])
        .fails(5, "backup_restoring");
    env.strata(&["backup", "restore", &other, "--target-share", "dst"])
        .fails(5, "backup_restoring");
    env.strata(&["share", "delete", "dst"])
        .fails(5, "backup_restoring");
    env.strata(&["backup", "set", "--state", "error", &id]).ok();
    let out = running.wait_with_output().unwrap();
    let dst = share_json(&env, "dst");
    if out.status.code() == Some(9) {
        assert_eq!(dst["status"], "backup_restoring_error");
        assert!(dst["fail_reason"].as_str().unwrap().contains(&id), "{dst}");
    } else {
        // It finished before its heartbeat saw the reset.
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(dst["status"], "available");
    }
}

#[test]
fn a_killed_target_restore_is_cleaned_up_to_restoring_error() {
    let env = Env::new();
    let id = slow_source(&env);
    new_share(&env, "dst", &[]);
    let mut running = env.spawn(&["backup", "restore", &id, "--target-share", "dst"]);
    wait_for(Duration::from_secs(30), || {
        assert_running(&mut running);
        (share_json(&env, "dst")["status"] == "backup_restoring").then_some(())
    });
    running.kill().unwrap();
    running.wait().unwrap();
    env.strata(&["cleanup"]).ok();
    let dst = share_json(&env, "dst");
    assert_eq!(dst["status"], "backup_restoring_error", "{dst}");
    assert!(dst["fail_reason"].as_str().unwrap().contains("interrupted"));
    assert_eq!(backup_json(&env, &id)["status"], "available");
    // A share in backup_restoring_error takes a restore again.
    env.strata(&["backup", "restore", &id, "--target-share", "dst"])
        .ok();
    let dst = share_json(&env, "dst");
    assert_eq!(dst["status"], "available");
    assert_eq!(dst["fail_reason"], serde_json::Value::Null);
}

#[test]
fn a_killed_share_creation_from_a_backup_ends_in_error() {
    let env = Env::new();
    let id = slow_source(&env);
    let path = env.path("made");
    let mut running = env.spawn(&[
        "share",
        "create",
        "--name",
        "made",
        "--path",
        s(&path),
        "--backup-id",
        &id,
    ]);
    wait_for(Duration::from_secs(30), || {
        assert_running(&mut running);
        let made = env.strata(&["share", "show", "-f", "json", "made"]);
        (made.code == 0 && made.json()["status"] == "creating").then_some(())
    });
    running.kill().unwrap();
    running.wait().unwrap();
    env.strata(&["cleanup"]).ok();
    let made = share_json(&env, "made");
    assert_eq!(made["status"], "error", "{made}");
    assert!(made["fail_reason"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    assert_eq!(backup_json(&env, &id)["status"], "available");
}
