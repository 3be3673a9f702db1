//! `backup ls` and `backup diff`: a backup's tree read from its layers,
//! checked against the directories that were backed up.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use crate::harness::*;

/// The paths `ls` printed as JSON.
fn listed(run: Run) -> BTreeSet<String> {
    run.ok()
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["Path"].as_str().expect("a path").to_string())
        .collect()
}

fn ls(env: &Env, backup: &str, args: &[&str]) -> Run {
    let mut all = vec!["backup", "ls", "-f", "json", backup];
    all.extend_from_slice(args);
    env.strata(&all)
}

/// Every path below `dir`, as `ls -r` shows it (`/a/b`).
fn walked(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).expect("below").to_str().expect("utf8");
            out.insert(format!("/{rel}"));
            if e.file_type().expect("type").is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn ls_shows_a_backups_tree_and_diff_what_changed() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(share.join("docs/old")).expect("mkdir");
    fs::create_dir_all(share.join("empty")).expect("mkdir");
    fs::write(share.join("docs/a.txt"), b"alpha").expect("write");
    fs::write(share.join("docs/old/b.txt"), b"beta").expect("write");
    fs::write(share.join("keep"), b"the same").expect("write");
    fs::write(share.join("mode"), b"chmod me").expect("write");
    fs::write(share.join("becomes-dir"), b"a file first").expect("write");
    symlink("docs/a.txt", share.join("link")).expect("symlink");
    let first = backup(&env, &share)["id"].as_str().expect("id").to_string();
    let before = walked(&share);

    // The whole tree, one directory, one file, and what is not there.
    assert_eq!(listed(ls(&env, &first, &["-r"])), before);
    let top: BTreeSet<String> = before
        .iter()
        .filter(|p| p.matches('/').count() == 1)
        .cloned()
        .collect();
    assert_eq!(listed(ls(&env, &first, &[])), top);
    let docs = ["/docs/a.txt", "/docs/old"].map(String::from).into();
    assert_eq!(listed(ls(&env, &first, &["/docs"])), docs);
    assert_eq!(listed(ls(&env, &first, &["docs/"])), docs);
    let one = ["/docs/a.txt"].map(String::from).into();
    assert_eq!(listed(ls(&env, &first, &["docs/a.txt"])), one);
    assert!(listed(ls(&env, &first, &["empty"])).is_empty());
    let missing = ls(&env, &first, &["docs/nothing"]);
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert_eq!(ls(&env, &first, &["../etc"]).code, 2);
    let long = ls(&env, &first, &["-l", "docs/a.txt"]).ok().json();
    assert_eq!(long[0]["Type"], "file", "{long}");
    assert_eq!(long[0]["Size"], 5, "{long}");
    let link = ls(&env, &first, &["-l", "link"]).ok().json();
    assert_eq!(link[0]["Target"], "docs/a.txt", "{link}");

    // Change each kind of thing, and back up again.
    fs::write(share.join("docs/a.txt"), b"ALPHA, changed").expect("write");
    fs::remove_dir_all(share.join("docs/old")).expect("rm");
    fs::write(share.join("docs/new.txt"), b"new").expect("write");
    fs::set_permissions(share.join("mode"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::remove_file(share.join("becomes-dir")).expect("rm");
    fs::create_dir(share.join("becomes-dir")).expect("mkdir");
    let second = incremental_backup(&env, &share)["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(listed(ls(&env, &second, &["-r"])), walked(&share));
    // The first backup's tree is as it was.
    assert_eq!(listed(ls(&env, &first, &["-r"])), before);

    let diff = env
        .strata(&["backup", "diff", "-f", "json", &first, &second])
        .ok()
        .json();
    let changes: BTreeSet<(String, String)> = diff
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().expect("a string").to_string();
            (field("Change"), field("Path"))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("modified", "/docs/a.txt"),
        ("removed", "/docs/old"),
        ("removed", "/docs/old/b.txt"),
        ("added", "/docs/new.txt"),
        ("metadata", "/mode"),
        ("type_changed", "/becomes-dir"),
    ]
    .iter()
    .map(|(c, p)| (c.to_string(), p.to_string()))
    .collect();
    // The directory whose entries changed may show as metadata (its mtime).
    let dirs: BTreeSet<(String, String)> = ["/", "/docs"]
        .iter()
        .map(|p| ("metadata".to_string(), p.to_string()))
        .collect();
    let unexplained: Vec<_> = changes
        .difference(&expected)
        .filter(|c| !dirs.contains(c))
        .collect();
    assert!(unexplained.is_empty(), "unexpected changes {unexplained:?}");
    let missed: Vec<_> = expected.difference(&changes).collect();
    assert!(missed.is_empty(), "missed changes {missed:?}");
    assert!(!changes.iter().any(|(_, p)| p == "/keep"), "{changes:?}");

    // Below a path, and as restic's letters in a table.
    let below = env
        .strata(&["backup", "diff", &first, &second, "docs/old"])
        .ok();
    let lines: Vec<&str> = below
        .stdout
        .lines()
        .filter(|l| l.contains("/docs"))
        .collect();
    assert_eq!(lines.len(), 2, "{}", below.stdout);
    let letter = |l: &str| l.split('|').nth(1).map(|c| c.trim().to_string());
    assert!(
        lines.iter().all(|l| letter(l).as_deref() == Some("-")),
        "{}",
        below.stdout
    );
    // A backup and itself: nothing.
    let same = env
        .strata(&["backup", "diff", "-f", "json", &second, &second])
        .ok()
        .json();
    assert_eq!(same.as_array().map(Vec::len), Some(0), "{same}");
}
