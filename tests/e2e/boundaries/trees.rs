//! `check` and `restore` judge a backup's tree by one validator: crafted
//! layers with valid checksums that a restore refuses are reported by
//! check, naming the backup and the path.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;

use strata_format::layer::{Entry, EntryKind};

use super::rewrite_layer;
use crate::harness::*;

fn id_of(run: Run) -> String {
    run.ok().json()["id"].as_str().unwrap().to_string()
}

fn entry<'a>(entries: &'a mut [Entry], path: &str) -> &'a mut Entry {
    entries
        .iter_mut()
        .find(|e| e.path == path.as_bytes())
        .unwrap()
}

/// Check reports `backup` unrestorable at `path`, and a restore refuses it.
fn both_refuse(env: &Env, backup: &str, path: &str, tag: &str) {
    let run = env.strata(&["check", "-f", "json"]);
    assert_eq!(run.code, 7, "{tag}: {}{}", run.stdout, run.stderr);
    let report = run.json();
    let found = report["unrestorable"].to_string();
    assert!(found.contains(backup), "{tag}: {report}");
    assert!(found.contains(path), "{tag}: {report}");
    let target = env.path(&format!("restore-{tag}"));
    restore_to(env, backup, &target).fails(7, path);
}

#[test]
fn check_reports_every_tree_a_restore_refuses() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(share.join("d")).unwrap();
    fs::write(share.join("d/f"), noise(5_000, 1)).unwrap();
    fs::write(share.join("a"), noise(6_000, 2)).unwrap();
    fs::write(share.join("h"), noise(7_000, 3)).unwrap();
    let d = share.to_str().unwrap();
    let take = |incremental: bool| {
        let mut args = vec!["backup", "create", "-f", "json"];
        if incremental {
            args.push("--incremental");
        }
        args.push(d);
        id_of(env.strata(&args))
    };
    let full = take(false);
    fs::write(share.join("h"), noise(7_000, 4)).unwrap();
    let inc = take(true);
    let report = env.strata(&["check", "-f", "json"]).ok().json();
    assert_eq!(report["unrestorable"], serde_json::json!([]), "{report}");

    // An incremental that turns the directory `d` into a symlink without a
    // tombstone for what was below it.
    let saved = fs::read(env.repo().join("layers").join(&inc)).unwrap();
    rewrite_layer(&env, &inc, |_, entries| {
        let mut link = entry(entries, "h").clone();
        link.path = b"d".to_vec();
        link.kind = EntryKind::Symlink {
            target: b"/tmp".to_vec(),
        };
        entries.push(link);
    });
    both_refuse(&env, &inc, "d/f", "dir-to-symlink");
    fs::write(env.repo().join("layers").join(&inc), &saved).unwrap();

    let saved = fs::read(env.repo().join("layers").join(&full)).unwrap();
    let put_back = || {
        fs::write(env.repo().join("layers").join(&full), &saved).unwrap();
        env.strata(&["check"]).ok();
    };
    // A symlink `a` with a file `a/b` below it.
    rewrite_layer(&env, &full, |_, entries| {
        let mut below = entry(entries, "h").clone();
        below.path = b"a/b".to_vec();
        entry(entries, "a").kind = EntryKind::Symlink {
            target: b"/tmp".to_vec(),
        };
        entries.push(below);
    });
    both_refuse(&env, &full, "a/b", "below-a-symlink");
    put_back();
    // A chunk whose length in the layer is not the pack's.
    rewrite_layer(&env, &full, |_, entries| {
        if let EntryKind::File { chunks, size, .. } = &mut entry(entries, "a").kind {
            chunks[0].len += 1;
            *size += 1;
        }
    });
    both_refuse(&env, &full, "a", "chunk-length");
    put_back();
    // A hardlink, while the layer counts none.
    rewrite_layer(&env, &full, |meta, entries| {
        assert_eq!(meta.stats.hardlinks, 0);
        let mut link = entry(entries, "a").clone();
        link.path = b"z".to_vec();
        link.kind = EntryKind::Hardlink {
            target: b"a".to_vec(),
        };
        entries.push(link);
    });
    both_refuse(&env, &full, "z", "uncounted-hardlink");
    put_back();
}
