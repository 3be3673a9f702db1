//! Partial restores (`backup restore --include/--exclude`), checked
//! against the same subset of a full restore of the same backup, and
//! `backup dump` piped into `tar x` against the same.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::*;

/// Whether one of `p`'s components satisfies `f`.
fn any_name(p: &Path, f: impl Fn(&[u8]) -> bool) -> bool {
    p.components().any(|c| match c {
        Component::Normal(n) => f(n.as_bytes()),
        _ => false,
    })
}

/// The part of a full restore's snapshot that a selection takes: the paths
/// `keep` accepts, with every directory above them. Hardlink groups are cut
/// to their selected names (a name left alone is a plain file).
pub fn subset(
    full: &BTreeMap<PathBuf, Node>,
    keep: impl Fn(&Path) -> bool,
) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    for (p, node) in full {
        if !keep(p) {
            continue;
        }
        out.insert(p.clone(), node.clone());
        for a in p.ancestors().skip(1).filter(|a| !a.as_os_str().is_empty()) {
            out.insert(a.to_path_buf(), full[a].clone());
        }
    }
    let names: Vec<PathBuf> = out.keys().cloned().collect();
    for node in out.values_mut() {
        node.links.retain(|l| names.contains(l));
        if node.links.len() < 2 {
            node.links.clear();
        }
    }
    out
}

fn share_status(env: &Env, share: &str) -> String {
    let s = env
        .strata(&["share", "show", "-f", "json", share])
        .ok()
        .json();
    s["status"].as_str().expect("a status").to_string()
}

fn restore_selected(env: &Env, backup: &str, target: &Path, selection: &[&str]) -> Run {
    let mut args = vec![
        "backup",
        "restore",
        backup,
        "--target-dir",
        target.to_str().expect("utf8"),
    ];
    args.extend_from_slice(selection);
    env.strata(&args)
}

#[test]
fn a_partial_restore_is_the_same_subset_of_a_full_one() {
    let env = Env::new();
    let share = env.path("share");
    build_tree(&share);
    fs::write(share.join("data/weird[1]*?.txt"), b"glob characters").expect("write");
    fs::write(share.join(OsStr::from_bytes(b"docs/new\nline")), b"nl").expect("write");
    let b = backup(&env, &share)["id"].as_str().expect("id").to_string();
    let full = env.path("full");
    restore_to(&env, &b, &full).ok();
    let full = snapshot(&full);

    let part = env.path("part");
    let selection = [
        "--include",
        "docs",
        "--include",
        "two.txt",
        "--include",
        "/a/b",
        "--include",
        "data",
        "--exclude",
        "copy-*",
        "--exclude",
        "weird\\[1\\]\\*\\?.txt",
    ];
    let run = restore_selected(&env, &b, &part, &selection).ok();
    let expected = subset(&full, |p| {
        let named = |n: &'static [u8]| any_name(p, move |c| c == n);
        (named(b"docs") || named(b"two.txt") || named(b"data") || p.starts_with("a/b"))
            && !any_name(p, |c| c.starts_with(b"copy-") || c.starts_with(b"weird"))
    });
    assert!(expected.contains_key(Path::new("hard/two.txt")));
    assert!(expected.contains_key(Path::new("data/random.bin")));
    assert_same(&expected, &snapshot(&part));
    assert!(run.stderr.contains("restored"), "{}", run.stderr);

    // A hostile name is selected by itself, its glob characters escaped.
    let one = env.path("one");
    restore_selected(
        &env,
        &b,
        &one,
        &["--include", "data/weird\\[1\\]\\*\\?.txt"],
    )
    .ok();
    let expected = subset(&full, |p| p == Path::new("data/weird[1]*?.txt"));
    assert_same(&expected, &snapshot(&one));

    // A hardlink group selected whole stays one inode.
    let hard = env.path("hard");
    restore_selected(
        &env,
        &b,
        &hard,
        &["--include", "hard", "--include", "a/three.txt"],
    )
    .ok();
    let expected = subset(&full, |p| {
        p.starts_with("hard") || p == Path::new("a/three.txt")
    });
    assert_eq!(expected[Path::new("hard/one.txt")].links.len(), 3);
    assert_same(&expected, &snapshot(&hard));
}

#[test]
fn a_partial_restore_refuses_before_changing_anything() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(share.join("d")).expect("mkdir");
    fs::write(share.join("d/f"), b"f").expect("write");
    let b = backup(&env, &share)["id"].as_str().expect("id").to_string();
    let target = env.path("t");
    restore_selected(&env, &b, &target, &["--include", "nothing-like-it"]).fails(4, "not found");
    assert!(!target.exists(), "a refused restore made its target");
    restore_selected(&env, &b, &target, &["--include", "d/["]).fails(2, "pattern");
    restore_selected(&env, &b, &target, &["--exclude", "/"]).fails(2, "pattern");
    assert!(!target.exists());
    // Into the source share: refused, the share is left available.
    let run = env.strata(&["backup", "restore", &b, "--include", "missing"]);
    run.fails(4, "not found");
    assert_eq!(share_status(&env, "share"), "available");
}

#[test]
fn a_partial_restore_into_the_source_share_replaces_only_what_it_selects() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(share.join("docs")).expect("mkdir");
    fs::create_dir_all(share.join("work")).expect("mkdir");
    fs::write(share.join("docs/report.txt"), b"the report").expect("write");
    fs::write(share.join("work/draft.txt"), b"draft one").expect("write");
    let b = backup(&env, &share)["id"].as_str().expect("id").to_string();

    overwrite(&share.join("docs/report.txt"), b"damaged by a user");
    overwrite(
        &share.join("work/draft.txt"),
        b"draft two, newer than the backup",
    );
    fs::write(share.join("docs/added-later.txt"), b"kept").expect("write");
    env.strata(&["backup", "restore", &b, "--include", "docs/report.txt"])
        .ok();
    assert_eq!(
        fs::read(share.join("docs/report.txt")).expect("read"),
        b"the report"
    );
    assert_eq!(
        fs::read(share.join("work/draft.txt")).expect("read"),
        b"draft two, newer than the backup"
    );
    assert_eq!(
        fs::read(share.join("docs/added-later.txt")).expect("read"),
        b"kept"
    );
    assert_eq!(share_status(&env, "share"), "available");

    // Into another share: only the selection, by the rules of a restore
    // to a target share.
    let other = env.path("other");
    fs::create_dir_all(&other).expect("mkdir");
    let o = other.to_str().expect("utf8");
    env.strata(&["share", "create", "--name", "other", "--path", o])
        .ok();
    let into = [
        "backup",
        "restore",
        &b,
        "--target-share",
        "other",
        "--include",
        "docs",
    ];
    env.strata(&into).ok();
    assert_eq!(
        fs::read(other.join("docs/report.txt")).expect("read"),
        b"the report"
    );
    assert!(
        !other.join("work").exists(),
        "an unselected path was restored"
    );
    assert_eq!(share_status(&env, "other"), "available");
}

#[test]
fn thirty_incrementals_restore_partially_and_dump_as_their_full_restores() {
    let env = Env::new();
    let share = env.path("share");
    build_tree(&share);
    fs::create_dir_all(share.join("nightly")).expect("mkdir");
    let mut ids = Vec::new();
    ids.push(backup(&env, &share)["id"].as_str().expect("id").to_string());
    for night in 1..30u64 {
        fs::write(
            share.join(format!("nightly/{night:02}.log")),
            noise(3000 + night as usize * 100, night),
        )
        .expect("write");
        if night % 3 == 0 {
            fs::remove_file(share.join(format!("nightly/{:02}.log", night - 2))).expect("rm");
        }
        if night % 5 == 0 {
            let small = share.join("data/small-random.bin");
            fs::write(&small, noise(70_000, 100 + night)).expect("rewrite");
        }
        let b = incremental_backup(&env, &share);
        ids.push(b["id"].as_str().expect("id").to_string());
    }
    for b in [&ids[29], &ids[14]] {
        let full = env.path(&format!("full-{b}"));
        restore_to(&env, b, &full).ok();
        let full = snapshot(&full);

        let part = env.path(&format!("part-{b}"));
        let sel = [
            "--include",
            "nightly",
            "--include",
            "data",
            "--exclude",
            "*1.log",
        ];
        restore_selected(&env, b, &part, &sel).ok();
        let expected = subset(&full, |p| {
            (p.starts_with("nightly") || p.starts_with("data"))
                && !any_name(p, |c| c.ends_with(b"1.log"))
        });
        assert_same(&expected, &snapshot(&part));

        // ls and find read the same tree from the chain's layers.
        let listed = env
            .strata(&["backup", "ls", "-r", "-f", "json", b])
            .ok()
            .json()
            .as_array()
            .expect("a list")
            .len();
        assert_eq!(listed, full.len(), "ls -r of {b}");
        let logs = env
            .strata(&["backup", "find", "-f", "json", "nightly/*.log"])
            .ok()
            .json();
        let here = logs
            .as_array()
            .expect("a list")
            .iter()
            .filter(|r| r["Backup ID"] == b.as_str())
            .count();
        let on_disk = full
            .keys()
            .filter(|p| p.starts_with("nightly") && p.extension().is_some())
            .count();
        assert_eq!(here, on_disk, "find in {b}");

        // The same subtree as a tar stream, unpacked by GNU tar.
        let untarred = env.path(&format!("tar-{b}"));
        dump_into(&env, b, "nightly", &untarred);
        let expected = subset(&full, |p| p.starts_with("nightly"));
        assert_same(&expected, &snapshot(&untarred));
    }
}

/// Runs `backup dump BACKUP PATH | tar x` into `into`.
pub fn dump_into(env: &Env, backup: &str, at: &str, into: &Path) {
    fs::create_dir_all(into).expect("mkdir");
    let mut dump = env
        .command(&["backup", "dump", backup, at])
        .stdout(Stdio::piped())
        .spawn()
        .expect("dump");
    let stdout = dump.stdout.take().expect("stdout");
    let tar = Command::new("tar")
        .args([
            "-x",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-p",
            "-C",
        ])
        .arg(into)
        .stdin(stdout)
        .status()
        .expect("tar");
    assert!(dump.wait().expect("wait").success(), "dump failed");
    assert!(tar.success(), "tar failed");
}
