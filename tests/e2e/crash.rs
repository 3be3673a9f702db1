//! Crash tests: real processes killed with SIGKILL at points spread over a
//! whole backup (walk, chunking, pack writes, index and layer commits, the
//! final catalog transaction), restore and delete; then `strata cleanup`,
//! and the checks: what was available still restores byte-exact, the
//! catalog and the repository agree, nothing temporary is left, and the
//! share backs up again.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::service::wait_for;

/// A tree big enough that a backup spends time in every stage.
fn tree(root: &Path) {
    for d in 0..8 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..60 {
            let seed = d * 1000 + f;
            fs::write(
                dir.join(format!("f{f}")),
                noise(1000 + (seed as usize * 997) % 60_000, seed),
            )
            .unwrap();
        }
    }
    for i in 0..3 {
        fs::write(root.join(format!("large{i}.bin")), noise(12 << 20, 100 + i)).unwrap();
    }
}

/// Kill points spread evenly over `span`, 5 ms apart at least.
fn points(n: u32, span: Duration) -> Vec<Duration> {
    (0..n)
        .map(|i| span * i / n + Duration::from_millis(5 * u64::from(i % 3)))
        .collect()
}

fn kill_after(env: &Env, args: &[&str], after: Duration) {
    let mut child = env.spawn(args);
    std::thread::sleep(after);
    let _ = child.kill(); // SIGKILL; the process may have finished already
    let _ = child.wait();
}

fn cleanup_and_check(env: &Env, context: &str) {
    let run = env.strata(&["cleanup", "--wait", "10", "-f", "json"]);
    assert_eq!(run.code, 0, "{context}: cleanup: {}", run.stderr);
    let check = env.strata(&["check", "-f", "json"]);
    assert_eq!(
        check.code, 0,
        "{context}: check: {}\n{}",
        check.stdout, check.stderr
    );
    let left = walk_files(&env.repo().join("tmp"));
    assert!(left.is_empty(), "{context}: temp files left: {left:?}");
    assert!(
        walk_files(&env.repo().join("locks")).is_empty(),
        "{context}: locks left"
    );
}

fn timed(env: &Env, args: &[&str]) -> Duration {
    let started = Instant::now();
    env.strata(args).ok();
    started.elapsed()
}

#[test]
fn kill_9_during_backup_restore_and_delete_loses_nothing() {
    let env = Env::new();
    let share = env.path("share");
    tree(&share);
    let share_arg = share.to_str().unwrap();
    env.strata(&["backup", "create", "--name", "base", share_arg])
        .ok();
    let expected = snapshot(&share);
    // Each killed backup has new data to write: one more 8 MiB file per
    // round, so kills land in pack writes too. A backup of round k holds
    // exactly new-0 ..= new-k.
    let grow = |k: usize| {
        fs::write(
            share.join(format!("new-{k:02}")),
            noise(8 << 20, 500 + k as u64),
        )
        .unwrap()
    };
    grow(0);
    let span = timed(&env, &["backup", "create", share_arg]) * 12 / 10;
    let mut rounds = vec![snapshot(&share)];

    for (i, at) in points(24, span).into_iter().enumerate() {
        let k = i + 1;
        grow(k);
        rounds.push(snapshot(&share));
        let mut args = vec!["backup", "create", share_arg];
        if i % 3 == 1 {
            args.insert(2, "--incremental");
        }
        kill_after(&env, &args, at);
        cleanup_and_check(&env, &format!("backup killed at {at:?}"));
        let shown = env
            .strata(&["share", "show", "-f", "json", "share"])
            .ok()
            .json();
        assert_eq!(shown["status"], "available", "killed at {at:?}");
    }
    let backups = env.backups();
    for b in &backups {
        assert!(
            b["Status"] == "available" || b["Status"] == "error",
            "a killed backup ended {}",
            b["Status"]
        );
    }
    // The kills really landed inside backups, not before or after them all.
    let interrupted = backups.iter().filter(|b| b["Status"] == "error").count();
    assert!(
        interrupted >= 8,
        "only {interrupted} of 24 kills interrupted a backup"
    );
    // Every available backup restores byte-exact, as the share was in its round.
    for b in backups.iter().filter(|b| b["Status"] == "available") {
        let id = b["ID"].as_str().unwrap();
        let target = env.path(&format!("r-{id}"));
        restore_to(&env, id, &target).ok();
        let got = snapshot(&target);
        let round = (0..rounds.len())
            .take_while(|k| got.contains_key(Path::new(&format!("new-{k:02}"))))
            .count();
        let want = if round == 0 {
            &expected
        } else {
            &rounds[round - 1]
        };
        assert_same(want, &got);
        fs::remove_dir_all(&target).unwrap();
    }
    let latest = backup(&env, &share)["id"].as_str().unwrap().to_string();

    // Restores into a directory, killed at points across a restore.
    let span = timed(
        &env,
        &[
            "backup",
            "restore",
            "base",
            "--target-dir",
            env.path("probe").to_str().unwrap(),
        ],
    ) * 13
        / 10;
    for (i, at) in points(8, span).into_iter().enumerate() {
        let target = env.path(&format!("killed-restore-{i}"));
        kill_after(
            &env,
            &[
                "backup",
                "restore",
                "base",
                "--target-dir",
                target.to_str().unwrap(),
            ],
            at,
        );
        cleanup_and_check(&env, &format!("restore killed at {at:?}"));
        let b = env
            .strata(&["backup", "show", "-f", "json", "base"])
            .ok()
            .json();
        assert_eq!(b["status"], "available", "restore killed at {at:?}");
    }
    // Into the source share: the share is left backup_restoring_error.
    // The latest backup is the biggest (about 240 MiB): its restore lasts
    // long enough to be caught; a restore that ends first is tried again.
    let mut caught = false;
    for _ in 0..5 {
        let mut child = env.spawn(&["backup", "restore", &latest]);
        let seen = wait_for(Duration::from_secs(60), || {
            if child.try_wait().unwrap().is_some() {
                return Some(false);
            }
            let s = env.strata(&["share", "show", "-f", "json", "share"]).json();
            (s["status"] == "backup_restoring").then_some(true)
        });
        let _ = child.kill();
        child.wait().unwrap();
        if seen {
            caught = true;
            break;
        }
    }
    assert!(caught, "no restore into the share was caught running");
    cleanup_and_check(&env, "restore into the share killed");
    let s = env
        .strata(&["share", "show", "-f", "json", "share"])
        .ok()
        .json();
    assert_eq!(s["status"], "backup_restoring_error");
    env.strata(&["share", "set", "share", "--status", "available"])
        .ok();

    // Deletes, killed at points across a delete.
    let span = {
        let id = backup(&env, &share)["id"].as_str().unwrap().to_string();
        timed(&env, &["backup", "delete", &id]) * 13 / 10
    };
    for at in points(8, span) {
        let id = backup(&env, &share)["id"].as_str().unwrap().to_string();
        kill_after(&env, &["backup", "delete", &id], at);
        cleanup_and_check(&env, &format!("delete killed at {at:?}"));
        let still = env.strata(&["backup", "show", "-f", "json", &id]);
        if still.code == 0 {
            let status = still.json()["status"].clone();
            assert!(
                status == "available" || status == "error_deleting",
                "delete killed at {at:?} left {status}"
            );
        }
    }
    let target = env.path("final");
    restore_to(&env, "base", &target).ok();
    assert_same(&expected, &snapshot(&target));
    backup(&env, &share);
}
