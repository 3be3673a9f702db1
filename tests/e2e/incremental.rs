//! Incremental backups through the CLI: parent choice, refusals, what is
//! read and what is recorded, and files that change while they are read.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::harness::*;

fn one_line_error(run: &Run, code: i32, needle: &str) {
    assert_eq!(
        run.code, code,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", run.stderr);
    assert!(
        run.stderr.contains(needle),
        "{needle:?} not in: {}",
        run.stderr
    );
}

fn incremental(env: &Env, share: &std::path::Path, extra: &[&str]) -> Run {
    let mut args = vec!["backup", "create", "--incremental", "-f", "json"];
    args.extend_from_slice(extra);
    args.push(share.to_str().unwrap());
    env.strata(&args)
}

fn id(b: &serde_json::Value) -> String {
    b["id"].as_str().unwrap().to_string()
}

/// A small share whose files are older than the racy window, so an
/// incremental may trust their metadata.
fn aged_share(env: &Env, name: &str) -> std::path::PathBuf {
    let share = env.path(name);
    fs::create_dir_all(share.join("sub")).unwrap();
    for i in 0..20 {
        fs::write(
            share.join(format!("sub/f{i}")),
            noise(10_000 + i * 1000, i as u64),
        )
        .unwrap();
    }
    fs::write(share.join("big"), noise(3 << 20, 99)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    share
}

#[test]
fn an_incremental_needs_a_full_backup_first() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("f"), b"x").unwrap();
    let run = incremental(&env, &share, &[]);
    one_line_error(&run, 5, "first backup must be a full backup");
    // The share is not left busy, and the failed attempt made no backup.
    let listed = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    // A registered share without backups: refused by the catalog, share released.
    let path = share.to_str().unwrap();
    env.strata(&["share", "create", "--name", "s", "--path", path])
        .ok();
    one_line_error(
        &incremental(&env, &share, &[]),
        5,
        "first backup must be a full backup",
    );
    let shown = env
        .strata(&["share", "show", "-f", "json", "s"])
        .ok()
        .json();
    assert_eq!(shown["status"], "available", "{shown}");
    let listed = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    backup(&env, &share);
    incremental(&env, &share, &[]).ok();
}

#[test]
fn a_parent_with_dependents_cannot_be_deleted() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("f"), b"one").unwrap();
    let full = id(&backup(&env, &share));
    fs::write(share.join("g"), b"two").unwrap();
    let child = incremental(&env, &share, &[]).ok().json();
    assert_eq!(child["parent_id"].as_str(), Some(full.as_str()));
    assert_eq!(child["is_incremental"], true);

    let shown = env
        .strata(&["backup", "show", "-f", "json", &full])
        .ok()
        .json();
    assert_eq!(shown["has_dependent_backups"], true);
    assert_eq!(shown["is_incremental"], false);
    assert!(shown["data_timestamp"].is_string(), "{shown}");

    let run = env.strata(&["backup", "delete", &full]);
    one_line_error(&run, 5, &id(&child));
    // Refused means untouched: the chain still restores.
    restore_to(&env, &id(&child), &env.path("r")).ok();
    assert_eq!(fs::read(env.path("r/g")).unwrap(), b"two");

    env.strata(&["backup", "delete", &id(&child)]).ok();
    env.strata(&["backup", "delete", &full]).ok();
}

#[test]
fn an_explicit_parent_must_be_an_available_backup_of_the_same_share() {
    let env = Env::new();
    let (one, two) = (env.path("one"), env.path("two"));
    for dir in [&one, &two] {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("f"), b"x").unwrap();
    }
    let of_one = id(&backup(&env, &one));
    backup(&env, &two);
    let run = incremental(&env, &two, &["--parent", &of_one]);
    one_line_error(&run, 2, "another share");
    let run = incremental(&env, &two, &["--parent", "no-such-backup"]);
    one_line_error(&run, 4, "no-such-backup");
    // --parent without --incremental is a usage error.
    let run = env.strata(&[
        "backup",
        "create",
        "--parent",
        &of_one,
        one.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn the_parent_is_the_latest_backup_unless_named() {
    let env = Env::new();
    let share = aged_share(&env, "share");
    let full = id(&backup(&env, &share));
    fs::write(share.join("sub/f0"), b"changed once").unwrap();
    let first = incremental(&env, &share, &[]).ok().json();
    assert_eq!(first["parent_id"].as_str(), Some(full.as_str()));
    // Named parent: the full backup again, so f0 is new relative to it.
    let sibling = incremental(&env, &share, &["--parent", &full]).ok().json();
    assert_eq!(sibling["parent_id"].as_str(), Some(full.as_str()));
    assert_eq!(sibling["changed_count"], 1, "{sibling}");
    let latest = incremental(&env, &share, &[]).ok().json();
    assert_eq!(latest["parent_id"].as_str(), Some(id(&sibling).as_str()));
    for b in [&first, &sibling, &latest] {
        let target = env.path(&format!("r-{}", id(b)));
        restore_to(&env, &id(b), &target).ok();
        assert_same(&snapshot(&share), &snapshot(&target));
    }
}

#[test]
fn unchanged_files_are_not_read_and_rehash_reads_everything() {
    let env = Env::new();
    let share = aged_share(&env, "share");
    let full = backup(&env, &share);
    let total = full["logical_bytes"].as_u64().unwrap();
    assert_eq!(full["read_bytes"].as_u64(), Some(total));

    let none = incremental(&env, &share, &[]).ok().json();
    assert_eq!(none["read_bytes"], 0, "{none}");
    assert_eq!(none["changed_count"], 0);
    assert_eq!(none["deleted_count"], 0);
    assert_eq!(none["new_bytes"], 0);
    assert_eq!(none["logical_bytes"].as_u64(), Some(total));
    assert_eq!(none["file_count"], full["file_count"]);
    assert_eq!(none["dir_count"], full["dir_count"]);

    fs::write(share.join("sub/f3"), b"new content").unwrap();
    fs::remove_file(share.join("sub/f4")).unwrap();
    let some = incremental(&env, &share, &[]).ok().json();
    assert_eq!(some["read_bytes"], 11, "{some}");
    // f3, and sub whose mtime moved; f4 is a tombstone.
    assert_eq!(some["changed_count"], 2, "{some}");
    assert_eq!(some["deleted_count"], 1, "{some}");

    let rehashed = incremental(&env, &share, &["--rehash"]).ok().json();
    let now_total = rehashed["logical_bytes"].as_u64().unwrap();
    assert_eq!(
        rehashed["read_bytes"].as_u64(),
        Some(now_total),
        "{rehashed}"
    );
    assert_eq!(rehashed["new_bytes"], 0, "{rehashed}");
    // Same content and metadata: nothing to record.
    assert_eq!(rehashed["changed_count"], 0, "{rehashed}");

    let target = env.path("restored");
    restore_to(&env, &id(&rehashed), &target).ok();
    assert_same(&snapshot(&share), &snapshot(&target));
}

/// Nothing changed: every entry (files, directories, symlinks, hardlinks,
/// many directories deep) is inherited without being handed on, yet counted
/// in the backup's totals, and the backup restores the tree as it is.
#[test]
fn an_unchanged_tree_is_counted_whole_and_restores() {
    let env = Env::new();
    let share = env.path("deep");
    for d in 0..30 {
        let dir = share.join(format!("d{d:02}/e{}/f{}", d % 3, d % 5));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..(d % 7 + 1) {
            fs::write(dir.join(format!("n{f}")), noise(100 + d * 37 + f, d as u64)).unwrap();
        }
        std::os::unix::fs::symlink(format!("../n{}", d % 2), dir.join("link")).unwrap();
    }
    fs::hard_link(share.join("d04/e1/f4/n0"), share.join("d29/twin")).unwrap();
    fs::create_dir(share.join("empty")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let full = backup(&env, &share);
    let none = incremental(&env, &share, &[]).ok().json();
    assert_eq!(none["read_bytes"], 0, "{none}");
    assert_eq!(none["changed_count"], 0, "{none}");
    assert_eq!(none["deleted_count"], 0, "{none}");
    for field in ["file_count", "dir_count", "logical_bytes"] {
        assert_eq!(none[field], full[field], "{field}: {none} against {full}");
    }
    // Regular files and hardlinks count as files; symlinks do not.
    let files: u64 = (0..30).map(|d| d % 7 + 1).sum::<u64>() + 1;
    assert_eq!(none["file_count"].as_u64(), Some(files), "{none}");
    let target = env.path("restored");
    restore_to(&env, &id(&none), &target).ok();
    assert_same(&snapshot(&share), &snapshot(&target));
}

#[test]
fn a_file_that_keeps_changing_while_read_is_reported() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    let busy = share.join("growing.log");
    fs::write(&busy, noise(12 << 20, 5)).unwrap();
    fs::write(share.join("quiet"), b"still").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let busy = busy.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(busy).unwrap();
            while !stop.load(Ordering::Relaxed) {
                f.write_all(&[b'x'; 512]).unwrap();
            }
        })
    };
    let run = env.strata(&["backup", "create", "-f", "json", share.to_str().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    run.fails(0, "growing.log: changed during backup");
    // It is still backed up (as read), and the rest of the share with it.
    let b = run.json();
    let target = env.path("r");
    restore_to(&env, &id(&b), &target).ok();
    assert_eq!(fs::read(target.join("quiet")).unwrap(), b"still");
    assert!(fs::metadata(target.join("growing.log")).unwrap().len() >= 12 << 20);
}

/// A large file edited in a few places (bytes inserted, overwritten,
/// removed, appended): the incremental stores little more than the edited
/// chunks, finding the others again, and both backups restore byte-exact.
#[test]
fn a_large_file_edited_in_places_stores_only_its_edits() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    let mut before = Vec::new();
    for part in 0..6 {
        before.extend(noise(6 << 20, 40 + part));
    }
    fs::write(share.join("disk.img"), &before).unwrap();
    let full = backup(&env, &share);

    let mut after = before.clone();
    after.splice(5_000_000..5_000_000, b"an insert ".repeat(50));
    after.splice(17_000_000..17_000_100, std::iter::empty());
    after[25_000_000..25_000_064].fill(0xee);
    after.extend(noise(1 << 20, 77));
    fs::write(share.join("disk.img"), &after).unwrap();
    let edited = incremental(&env, &share, &[]).ok().json();
    let read = edited["read_bytes"].as_u64().unwrap();
    assert_eq!(read, after.len() as u64, "{edited}");
    // Each edit touches a chunk or two (1 MiB on average, 4 MiB at most),
    // and the appended MiB is new: nowhere near the 37 MiB read.
    let new = edited["new_bytes"].as_u64().unwrap();
    assert!(new < 20 << 20, "{edited}");

    let target = env.path("restored-edited");
    restore_to(&env, &id(&edited), &target).ok();
    assert!(fs::read(target.join("disk.img")).unwrap() == after);
    let target = env.path("restored-full");
    restore_to(&env, &id(&full), &target).ok();
    assert!(fs::read(target.join("disk.img")).unwrap() == before);
}
