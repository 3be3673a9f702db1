//! An attacker who can write into a share races the restore and the backup
//! by swapping directories for symlinks to somewhere else: neither may ever
//! touch, or read, anything outside the share.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;

/// How long each race runs.
const RACE: Duration = Duration::from_secs(4);

/// Swaps `dir` for a symlink to `outside` whenever it is a real directory,
/// until `stop`; returns how many swaps it made.
fn swapper(dir: PathBuf, outside: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut swaps = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let Ok(meta) = fs::symlink_metadata(&dir) else {
                continue;
            };
            if meta.is_dir() {
                let aside = dir.with_file_name(format!("big.old.{swaps}"));
                if fs::rename(&dir, &aside).is_ok()
                    && std::os::unix::fs::symlink(&outside, &dir).is_ok()
                {
                    swaps += 1;
                }
            }
        }
        swaps
    })
}

/// Flips `dir` between the real directory and a symlink to `outside`, as
/// fast as it can, until `stop`; returns how many flips it made.
fn toggler(dir: PathBuf, outside: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let real = dir.with_file_name("big.real");
        let link = dir.with_file_name("big.link");
        let mut flips = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // Each state lasts long enough for a walk to list a directory
            // in one and read its files in the same or the other.
            let _ = std::os::unix::fs::symlink(&outside, &link);
            if fs::rename(&dir, &real).is_ok() && fs::rename(&link, &dir).is_ok() {
                flips += 1;
            }
            std::thread::sleep(Duration::from_millis(1 + flips % 7));
            if fs::remove_file(&dir).is_ok() && fs::rename(&real, &dir).is_ok() {
                flips += 1;
            }
            std::thread::sleep(Duration::from_millis(1 + flips % 5));
        }
        // Leave the real directory in place.
        if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_symlink()) {
            let _ = fs::remove_file(&dir);
        }
        let _ = fs::rename(&real, &dir);
        flips
    })
}

/// Every path below `dir` (symlinks listed, never followed).
fn paths_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Every path below `dir` and the mode of `dir` itself.
fn inventory(dir: &Path) -> (Vec<PathBuf>, u32) {
    let mode = fs::metadata(dir).unwrap().permissions().mode();
    (paths_below(dir), mode)
}

#[test]
fn a_restore_raced_with_symlink_swaps_never_writes_outside() {
    let env = Env::new();
    let share = env.path("race");
    fs::create_dir_all(share.join("big")).unwrap();
    for i in 0..3000 {
        fs::write(share.join(format!("big/f{i}")), format!("{i}\n")).unwrap();
    }
    fs::set_permissions(share.join("big"), fs::Permissions::from_mode(0o750)).unwrap();
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), b"keep me").unwrap();
    fs::set_permissions(&outside, fs::Permissions::from_mode(0o755)).unwrap();
    let before = inventory(&outside);
    env.strata(&["backup", "create", "--name", "r", share.to_str().unwrap()])
        .ok();

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = swapper(share.join("big"), outside.clone(), stop.clone());
    let started = Instant::now();
    let mut restores = 0;
    while started.elapsed() < RACE {
        // Success or a clear failure are both fine; writing outside is not.
        let run = env.strata(&["backup", "restore", "r"]);
        assert!(
            run.code == 0 || run.stderr.contains("error:"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        restores += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = attacker.join().unwrap();
    assert!(
        swaps > 0 && restores > 1,
        "the race did not run ({swaps} swaps)"
    );
    assert_eq!(
        inventory(&outside),
        before,
        "the restore wrote outside its target"
    );
    assert_eq!(fs::read(outside.join("precious")).unwrap(), b"keep me");
}

#[test]
fn a_backup_raced_with_symlink_swaps_never_reads_outside() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(share.join("big")).unwrap();
    for i in 0..2000 {
        fs::write(share.join(format!("big/f{i}")), format!("{i}\n")).unwrap();
    }
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    for i in 0..200 {
        fs::write(outside.join(format!("secret{i}")), b"not yours").unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = toggler(share.join("big"), outside.clone(), stop.clone());
    let started = Instant::now();
    let mut backups = Vec::new();
    while started.elapsed() < RACE {
        let run = env.strata(&["backup", "create", "-f", "json", share.to_str().unwrap()]);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        if run.code == 0 || run.code == 3 {
            backups.push(run.json()["id"].as_str().unwrap().to_string());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = attacker.join().unwrap();
    assert!(swaps > 0, "the race did not run");
    assert!(!backups.is_empty(), "no backup completed during the race");
    for (i, id) in backups.iter().enumerate() {
        let target = env.path(&format!("restored{i}"));
        restore_to(&env, id, &target).ok();
        for f in paths_below(&target) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !name.starts_with("secret"),
                "backup {id} read {}",
                f.display()
            );
            if fs::symlink_metadata(&f).unwrap().is_file() {
                assert_ne!(fs::read(&f).unwrap(), b"not yours", "{}", f.display());
            }
        }
    }
}

#[test]
fn a_share_root_or_restore_target_that_is_a_symlink_is_refused() {
    let env = Env::new();
    let real = env.path("real");
    fs::create_dir(&real).unwrap();
    fs::write(real.join("f"), b"x").unwrap();
    env.strata(&[
        "share",
        "create",
        "--name",
        "s",
        "--path",
        real.to_str().unwrap(),
    ])
    .ok();
    env.strata(&["backup", "create", "--name", "b", "s"]).ok();
    // The share's directory is swapped for a symlink to somewhere else.
    let elsewhere = env.path("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::rename(&real, env.path("real.old")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &real).unwrap();
    env.strata(&["backup", "create", "s"]).fails(2, "symlink");
    env.strata(&["backup", "restore", "b"]).fails(2, "symlink");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

/// Names flipped between a file and a directory while backups (full and
/// incremental) walk them: every backup completes, perhaps naming a path it
/// could not take, and each restores every name as one state or the other,
/// never a mix and never through an internal error.
#[test]
fn names_flipped_between_file_and_directory_are_backed_up_as_one_or_the_other() {
    let env = Env::new();
    let share = env.path("flips");
    fs::create_dir_all(&share).unwrap();
    for i in 0..400 {
        fs::write(share.join(format!("f{i:03}")), b"plain").unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (share, stop) = (share.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..16 {
                    let p = share.join(format!("sw{i:02}"));
                    if p.is_dir() {
                        let _ = fs::remove_file(p.join("inner"));
                        let _ = fs::remove_dir(&p);
                        let _ = fs::write(&p, b"a file");
                    } else {
                        let _ = fs::remove_file(&p);
                        let _ = fs::create_dir(&p);
                        let _ = fs::write(p.join("inner"), b"in a directory");
                    }
                    flips += 1;
                }
            }
            flips
        })
    };
    let started = Instant::now();
    let mut backups = Vec::new();
    while started.elapsed() < RACE {
        let mut args = vec!["backup", "create", "-f", "json"];
        if !backups.is_empty() {
            args.push("--incremental");
        }
        args.push(share.to_str().unwrap());
        let run = env.strata(&args);
        assert!(
            run.code == 0 || run.code == 3,
            "exit {}: {}",
            run.code,
            run.stderr
        );
        backups.push(run.json()["id"].as_str().unwrap().to_string());
    }
    stop.store(true, Ordering::Relaxed);
    assert!(flipper.join().unwrap() > 0, "the race did not run");
    assert!(backups.len() > 1, "no incremental ran during the race");
    // A dozen of them, spread over the race, the last included.
    let step = backups.len().div_ceil(12);
    let checked = backups.iter().rev().step_by(step);
    for (i, id) in checked.enumerate() {
        let target = env.path(&format!("restored{i}"));
        restore_to(&env, id, &target).ok();
        for f in 0..400 {
            assert_eq!(fs::read(target.join(format!("f{f:03}"))).unwrap(), b"plain");
        }
        for s in 0..16 {
            let p = target.join(format!("sw{s:02}"));
            let Ok(meta) = fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                for inner in fs::read_dir(&p).unwrap() {
                    let inner = inner.unwrap();
                    assert_eq!(inner.file_name(), "inner", "backup {id}: {}", p.display());
                    // Written while it was read: whole, or not yet.
                    let content = fs::read(inner.path()).unwrap();
                    assert!(
                        content == b"in a directory" || content.is_empty(),
                        "backup {id}: {} holds {content:?}",
                        inner.path().display()
                    );
                }
            } else {
                let content = fs::read(&p).unwrap();
                assert!(
                    content == b"a file" || content.is_empty(),
                    "backup {id}: {} holds {content:?}",
                    p.display()
                );
            }
        }
    }
}
