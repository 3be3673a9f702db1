//! Share snapshots and backups of them: real read-only btrfs snapshots of a
//! subvolume on a loop image (as root; they skip loudly otherwise, and fail
//! with `STRATA_REQUIRE_BTRFS=1`, as in CI), snapshots the storage made
//! registered by path, and Cinder's parent rule for backups of snapshots.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::*;
use crate::service::{assert_running, wait_for, words};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A btrfs file system on a loop image, unmounted when the test ends.
struct Btrfs {
    mount: PathBuf,
}

impl Btrfs {
    /// Mounts one under `env`, or `None` when btrfs tests skip here.
    fn mount(env: &Env, test: &str) -> Option<Btrfs> {
        let why = if !is_root() {
            Some("not running as root (a loop mount needs it)")
        } else if Command::new("mkfs.btrfs")
            .arg("--version")
            .output()
            .is_err()
        {
            Some("mkfs.btrfs is not installed (tests/run installs btrfs-progs as root)")
        } else {
            None
        };
        if let Some(why) = why {
            if std::env::var("STRATA_REQUIRE_BTRFS").as_deref() == Ok("1") {
                panic!("{test}: btrfs tests are required here, but {why}");
            }
            eprintln!("\n!!!!!!!! SKIPPED {test}: {why} !!!!!!!!\n");
            return None;
        }
        let image = env.path("btrfs.img");
        fs::File::create(&image)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        let made = Command::new("mkfs.btrfs").arg("-q").arg(&image).status();
        assert!(made.unwrap().success(), "mkfs.btrfs");
        let mount = env.path("btrfs");
        fs::create_dir_all(&mount).unwrap();
        let mounted = Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount)
            .status();
        assert!(mounted.unwrap().success(), "mount the btrfs image");
        Some(Btrfs { mount })
    }

    /// A new subvolume, registered as share `name`.
    fn share(&self, env: &Env, name: &str) -> PathBuf {
        let path = self.mount.join(name);
        let made = Command::new("btrfs")
            .args(["subvolume", "create"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        env.strata(&["share", "create", "--name", name, "--path", s(&path)])
            .ok();
        path
    }
}

impl Drop for Btrfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["-f", "json"]);
    env.strata(&all).ok().json()
}

fn restored(env: &Env, id: &str, name: &str) -> PathBuf {
    let target = env.path(name);
    restore_to(env, id, &target).ok();
    target
}

fn fill(dir: &Path, seed: u64, files: u64) {
    for i in 0..files {
        fs::write(
            dir.join(format!("f{i}")),
            noise(3000 + (i as usize) * 97, seed + i),
        )
        .unwrap();
    }
}

#[test]
fn a_btrfs_snapshot_taken_while_the_share_changes_backs_up_exactly_its_content() {
    let env = Env::new();
    let Some(fs_) = Btrfs::mount(&env, "btrfs_snapshot_backup") else {
        return;
    };
    let share = fs_.share(&env, "live");
    fill(&share, 1, 50);
    fs::write(share.join("big.txt"), words(24 << 20, 3)).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // A writer that never stops changing the share.
        let writer = scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                fs::write(share.join(format!("f{}", n % 50)), noise(5000, 1000 + n)).unwrap();
                fs::write(share.join("counter"), n.to_string()).unwrap();
                n += 1;
            }
            n
        });
        std::thread::sleep(Duration::from_millis(200));
        let snap = json(
            &env,
            &["share", "snapshot", "create", "live", "--name", "snap1"],
        );
        assert_eq!(snap["status"], "available", "{snap}");
        assert_eq!(snap["kind"], "btrfs");
        let path = PathBuf::from(snap["path"].as_str().unwrap());
        let frozen = snapshot(&path);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(snapshot(&path), frozen, "a snapshot does not change");

        // Backed up while the writer goes on; slowly, so others can look.
        let config = env.slow_config();
        let mut running = env.spawn(&[
            "--config",
            s(&config),
            "backup",
            "create",
            "--snapshot",
            "snap1",
            "live",
        ]);
        wait_for(Duration::from_secs(30), || {
            assert_running(&mut running);
            let b = env.backups();
            (b.first().is_some_and(|b| b["Status"] == "creating")).then_some(())
        });
        // The share stays available for everything else; the snapshot is busy.
        assert_eq!(
            json(&env, &["share", "show", "live"])["status"],
            "available"
        );
        env.strata(&["share", "snapshot", "delete", "snap1"])
            .fails(5, "being backed up");
        let out = running.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stop.store(true, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);

        let id = env.backups()[0]["ID"].as_str().unwrap().to_string();
        let b = json(&env, &["backup", "show", &id]);
        assert_eq!(b["snapshot_id"], snap["id"]);
        assert_eq!(b["data_timestamp"], snap["created_at"]);
        assert_same(&frozen, &snapshot(&restored(&env, &id, "restored")));

        // Deleting it deletes the btrfs snapshot.
        env.strata(&["share", "snapshot", "delete", "snap1"]).ok();
        assert!(!path.exists());
        env.strata(&["share", "snapshot", "show", "snap1"])
            .fails(4, "snapshot not found");
    });
}

#[test]
fn an_incremental_of_a_snapshot_on_a_live_backup_reads_only_what_changed() {
    let env = Env::new();
    let Some(fs_) = Btrfs::mount(&env, "btrfs_incremental_across") else {
        return;
    };
    let share = fs_.share(&env, "live");
    fill(&share, 7, 40);
    // Older than any backup's racy window, so unchanged entries are trusted.
    std::thread::sleep(Duration::from_millis(2500));
    let full = backup(&env, &share);
    let snap = json(
        &env,
        &["share", "snapshot", "create", "live", "--name", "a"],
    );
    let quiet = env
        .strata(&[
            "backup",
            "create",
            "--incremental",
            "--snapshot",
            "a",
            "-f",
            "json",
            "live",
        ])
        .ok()
        .json();
    assert_eq!(quiet["parent_id"], full["id"]);
    assert_eq!(quiet["read_bytes"], 0, "nothing changed: {quiet}");
    fs::write(share.join("f3"), noise(12345, 99)).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    json(
        &env,
        &["share", "snapshot", "create", "live", "--name", "b"],
    );
    let changed = env
        .strata(&[
            "backup",
            "create",
            "--incremental",
            "--snapshot",
            "b",
            "-f",
            "json",
            "live",
        ])
        .ok()
        .json();
    assert_eq!(changed["parent_id"], quiet["id"]);
    assert_eq!(changed["read_bytes"], 12345, "only f3 is read: {changed}");
    let want = snapshot(Path::new(
        json(&env, &["share", "snapshot", "show", "b"])["path"]
            .as_str()
            .unwrap(),
    ));
    let id = changed["id"].as_str().unwrap();
    assert_same(&want, &snapshot(&restored(&env, id, "restored")));
    assert!(snap["created_at"].is_string());
}

#[test]
fn a_share_that_cannot_be_snapshotted_says_so_and_a_registered_snapshot_is_never_touched() {
    let env = Env::new();
    let share = env.path("plain");
    fs::create_dir_all(&share).unwrap();
    fill(&share, 1, 10);
    env.strata(&["share", "create", "--name", "plain", "--path", s(&share)])
        .ok();
    env.strata(&["share", "snapshot", "create", "plain"])
        .fails(2, "not a btrfs subvolume");
    // The storage's own snapshot, registered by path (where a filer
    // shows its snapshots: the share's `.snapshot` directory).
    let theirs = share.join(".snapshot/storage-snapshot");
    fs::create_dir_all(&theirs).unwrap();
    fill(&theirs, 50, 10);
    let snap = json(
        &env,
        &[
            "share",
            "snapshot",
            "create",
            "plain",
            "--name",
            "nightly",
            "--path",
            s(&theirs),
            "--created-at",
            "2026-12-01T08:00:00Z",
        ],
    );
    assert_eq!(snap["kind"], "registered");
    assert_eq!(snap["created_at"], "2026-12-01T08:00:00.000000");
    let b = json(
        &env,
        &["backup", "create", "--snapshot", "nightly", "plain"],
    );
    assert_eq!(b["data_timestamp"], "2026-12-01T08:00:00.000000");
    assert_eq!(b["snapshot_id"], snap["id"]);
    let want = snapshot(&theirs);
    assert_same(
        &want,
        &snapshot(&restored(&env, b["id"].as_str().unwrap(), "r")),
    );
    // A snapshot of another share, a missing one, a bad time: refused.
    let other = env.path("other");
    fs::create_dir_all(&other).unwrap();
    env.strata(&["share", "create", "--name", "other", "--path", s(&other)])
        .ok();
    env.strata(&["backup", "create", "--snapshot", "nightly", "other"])
        .fails(2, "another share");
    env.strata(&["backup", "create", "--snapshot", "nope", "plain"])
        .fails(4, "snapshot not found");
    env.strata(&[
        "share",
        "snapshot",
        "create",
        "plain",
        "--path",
        s(&theirs),
        "--created-at",
        "8am",
    ])
    .fails(2, "RFC 3339");
    env.strata(&[
        "share",
        "snapshot",
        "create",
        "plain",
        "--path",
        s(&theirs),
        "--created-at",
        "2099-01-01T00:00:00Z",
    ])
    .fails(2, "in the future");
    // A share with snapshots (and no backup) is not deleted.
    let lonely = env.path("lonely");
    fs::create_dir_all(&lonely).unwrap();
    fs::create_dir_all(lonely.join(".zfs/snapshot/only")).unwrap();
    env.strata(&["share", "create", "--name", "lonely", "--path", s(&lonely)])
        .ok();
    env.strata(&[
        "share",
        "snapshot",
        "create",
        "lonely",
        "--name",
        "only",
        "--path",
        s(&lonely.join(".zfs/snapshot/only")),
    ])
    .ok();
    env.strata(&["share", "delete", "lonely"])
        .fails(5, "snapshot");
    env.strata(&["share", "snapshot", "delete", "only"]).ok();
    env.strata(&["share", "delete", "lonely"]).ok();
    // Deleting a registered snapshot forgets it and leaves its data.
    env.strata(&["share", "snapshot", "delete", "nightly"]).ok();
    assert_eq!(snapshot(&theirs), want);
    assert!(json(&env, &["share", "snapshot", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

/// Cinder's rule: the parent of an incremental of a snapshot is the latest
/// backup whose data is older than the snapshot. A snapshot at 08:00, a
/// backup of the live share at 08:10, then at 08:20 an incremental of the
/// 08:00 snapshot: its parent is not the 08:10 backup.
#[test]
fn the_parent_of_a_snapshot_backup_is_the_latest_older_than_the_snapshot() {
    let env = Env::new();
    let share = env.path("vol");
    fs::create_dir_all(&share).unwrap();
    env.strata(&["share", "create", "--name", "vol", "--path", s(&share)])
        .ok();
    let register = |name: &str, at: &str, seed: u64| {
        let dir = share.join(".snapshot").join(name);
        fs::create_dir_all(&dir).unwrap();
        fill(&dir, seed, 12);
        json(
            &env,
            &[
                "share",
                "snapshot",
                "create",
                "vol",
                "--name",
                name,
                "--path",
                s(&dir),
                "--created-at",
                at,
            ],
        );
        dir
    };
    let at7 = register("s0700", "2026-12-01T07:00:00Z", 1);
    let b0700 = json(&env, &["backup", "create", "--snapshot", "s0700", "vol"]);
    let at8 = register("s0800", "2026-12-01T08:00:00Z", 2);
    // "08:10": a backup of the live share, whose data is from now (later).
    fill(&share, 3, 12);
    let live = json(&env, &["backup", "create", "--incremental", "vol"]);
    assert_eq!(live["parent_id"], b0700["id"]);
    // "08:20": the incremental of the 08:00 snapshot builds on 07:00.
    let b0800 = json(
        &env,
        &[
            "backup",
            "create",
            "--incremental",
            "--snapshot",
            "s0800",
            "vol",
        ],
    );
    assert_eq!(b0800["parent_id"], b0700["id"], "{b0800}");
    assert_eq!(b0800["data_timestamp"], "2026-12-01T08:00:00.000000");
    // A live incremental now builds on the latest data: the live backup.
    let next = json(&env, &["backup", "create", "--incremental", "vol"]);
    assert_eq!(next["parent_id"], live["id"]);
    // No backup older than a snapshot: its incremental is refused.
    register("s0600", "2026-12-01T06:00:00Z", 4);
    env.strata(&[
        "backup",
        "create",
        "--incremental",
        "--snapshot",
        "s0600",
        "vol",
    ])
    .fails(5, "no available backup older than snapshot");
    for (id, want) in [(&b0700, &at7), (&b0800, &at8)] {
        let id = id["id"].as_str().unwrap();
        assert_same(&snapshot(want), &snapshot(&restored(&env, id, id)));
    }
}
