//! Service semantics across processes: live progress, busy shares,
//! cancellation, quotas, in-use shares, and two backups at once.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Text-like bytes: slow to compress at a high zstd level.
pub fn words(len: usize, seed: u64) -> Vec<u8> {
    const W: [&[u8]; 8] = [
        b"backup ",
        b"share ",
        b"restore ",
        b"chunk ",
        b"pack ",
        b"layer ",
        b"quota ",
        b"\n",
    ];
    let picks = noise(len / 4 + 8, seed);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(W[(picks[i % picks.len()] % 8) as usize]);
        if picks[(i * 7) % picks.len()] < 16 {
            out.extend_from_slice(i.to_string().as_bytes());
        }
        i += 1;
    }
    out.truncate(len);
    out
}

impl Env {
    /// A config that makes backups slow (zstd -19), so another process has
    /// time to watch and act on one.
    pub fn slow_config(&self) -> PathBuf {
        let path = self.path("slow.toml");
        fs::write(&path, "backup_compression_level = 19\n").unwrap();
        path
    }

    /// Starts `strata ARGS` without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--catalog")
            .arg(self.path("catalog.db"))
            .arg("--repository")
            .arg(self.repo())
            .args(args)
            .env_remove("STRATA_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The ids of `backup list`, oldest first.
    pub fn backup_ids(&self) -> Vec<String> {
        self.backups()
            .iter()
            .map(|b| b["ID"].as_str().unwrap().to_string())
            .collect()
    }

    /// `backup list -f json` (keys are the column titles: "ID", "Status", ...).
    pub fn backups(&self) -> Vec<serde_json::Value> {
        let listed = self.strata(&["backup", "list", "-f", "json"]).ok().json();
        listed.as_array().unwrap().clone()
    }
}

/// Polls `what` until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut what: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fails the test, with the child's stderr, if it has exited.
pub fn assert_running(child: &mut Child) {
    if let Some(status) = child.try_wait().unwrap() {
        let mut err = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            std::io::Read::read_to_string(&mut pipe, &mut err).unwrap();
        }
        panic!("the process ended early ({status}): {err}");
    }
}

fn share_with(env: &Env, name: &str, bytes: &[u8]) -> PathBuf {
    let share = env.path(name);
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("data.txt"), bytes).unwrap();
    share
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_running_backup_shows_progress_keeps_its_share_busy_and_stops_when_deleted() {
    let env = Env::new();
    let share = share_with(&env, "share", &words(24 << 20, 1));
    let config = env.slow_config();
    let mut running = env.spawn(&["--config", s(&config), "backup", "create", s(&share)]);

    // Another process sees the backup creating, and its progress move.
    let (id, progress) = wait_for(Duration::from_secs(60), || {
        assert_running(&mut running);
        let b = env.backups().into_iter().next()?;
        let status = b["Status"].as_str().unwrap_or_default();
        assert!(
            status == "creating",
            "the backup ended ({status}) before it was seen running: {b}"
        );
        let p = b["Progress"].as_u64()?;
        (b["Status"] == "creating" && p > 0).then(|| (b["ID"].as_str().unwrap().to_string(), p))
    });
    assert!(progress < 100, "{progress}");

    // The share is busy: the refusals name the running operation.
    let shown = env
        .strata(&["share", "show", "-f", "json", "share"])
        .ok()
        .json();
    assert_eq!(shown["status"], "backup_creating");
    let again = env.strata(&["backup", "create", s(&share)]);
    again.fails(5, "a backup of it is running");
    let del = env.strata(&["share", "delete", "share"]);
    assert_eq!(del.code, 5, "{}", del.stderr);
    let plain = env.strata(&["backup", "delete", &id]);
    assert_eq!(plain.code, 5, "{}", plain.stderr);
    assert!(plain.stderr.contains("--force"), "{}", plain.stderr);

    // delete --force stops it within a few seconds.
    let started = Instant::now();
    env.strata(&["backup", "delete", "--force", &id]).ok();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let out = running.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.backups().is_empty());
    let shown = env
        .strata(&["share", "show", "-f", "json", "share"])
        .ok()
        .json();
    assert_eq!(shown["status"], "available");
    let check = env.strata(&["check", "-f", "json"]).ok().json();
    assert_eq!(check["clean"], true, "{check}");
    // What it wrote is gone: nothing references it.
    assert!(walk_files(&env.repo().join("packs")).is_empty());
    // And the share backs up again.
    backup(&env, &share);
}

#[test]
fn quotas_refuse_a_backup_before_it_reads_anything() {
    let env = Env::new();
    let share = share_with(&env, "share", b"small");
    env.strata(&["quota", "set", "--backups", "1"]).ok();
    backup(&env, &share);
    let run = env.strata(&["backup", "create", s(&share)]);
    run.fails(6, "backups quota is 1, 1 in use");
    let q = env.strata(&["quota", "show", "-f", "json"]).ok().json();
    assert_eq!(
        (q["backups"].as_i64(), q["backups_in_use"].as_u64()),
        (Some(1), Some(1))
    );

    env.strata(&["quota", "set", "--backups", "-1", "--backup-gigabytes", "3"])
        .ok();
    let big = env.path("big");
    fs::create_dir_all(&big).unwrap();
    env.strata(&[
        "share",
        "create",
        "--name",
        "big",
        "--path",
        s(&big),
        "--size",
        "5",
    ])
    .ok();
    let run = env.strata(&["backup", "create", "big"]);
    run.fails(6, "backup_gigabytes quota is 3 GiB");
    let shown = env
        .strata(&["share", "show", "-f", "json", "big"])
        .ok()
        .json();
    assert_eq!(shown["status"], "available");
    // Other projects have their own quota (unlimited by default).
    env.strata(&["--project", "other", "backup", "create", s(&share)])
        .ok();
}

#[test]
fn an_in_use_share_is_backed_up_only_with_force() {
    let env = Env::new();
    let share = share_with(&env, "share", b"data");
    env.strata(&["share", "create", "--name", "db", "--path", s(&share)])
        .ok();
    env.strata(&["share", "set", "db", "--status", "in-use"])
        .ok();
    let run = env.strata(&["backup", "create", "db"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    env.strata(&["backup", "create", "--force", "db"]).ok();
    let shown = env
        .strata(&["share", "show", "-f", "json", "db"])
        .ok()
        .json();
    assert_eq!(shown["status"], "in-use", "given back the status it had");
    let bad = env.strata(&["share", "set", "db", "--status", "sleepy"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn two_backups_into_one_repository_at_once_deduplicate_against_each_other() {
    let env = Env::new();
    // Small packs, so one backup's chunks reach the index while it runs.
    let config = env.path("small-packs.toml");
    fs::write(
        &config,
        "backup_compression_level = 19\npack_target_size = 1048576\n",
    )
    .unwrap();
    // Random data: stored as is, so packs fill at the pace it is read.
    let long = noise(48 << 20, 7);
    let common = &long[..8 << 20];
    let one = share_with(&env, "one", &long);
    let two = share_with(&env, "two", common);
    let mut a = env.spawn(&[
        "--config",
        s(&config),
        "backup",
        "create",
        "-f",
        "json",
        s(&one),
    ]);
    // Once the first has indexed a few packs, start the second beside it.
    wait_for(Duration::from_secs(60), || {
        assert_running(&mut a);
        (walk_files(&env.repo().join("packs")).len() >= 12).then_some(())
    });
    let b = env.spawn(&[
        "--config",
        s(&config),
        "backup",
        "create",
        "-f",
        "json",
        s(&two),
    ]);
    let mut results = Vec::new();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(b["status"], "available");
        results.push(b);
    }
    let second_new = results[1]["new_bytes"].as_u64().unwrap();
    // Chunks the first had indexed when the second met them are not stored
    // again (those still in the first's queue may be: dedup is by the index).
    assert!(
        second_new < (common.len() * 3 / 4) as u64,
        "the second backup stored {second_new} new bytes of a {}-byte file the first had stored",
        common.len()
    );
    for (b, data) in results.iter().zip([&long[..], common]) {
        let target = env.path(&format!("r-{}", b["id"].as_str().unwrap()));
        restore_to(&env, b["id"].as_str().unwrap(), &target).ok();
        assert!(fs::read(target.join("data.txt")).unwrap() == data);
    }
}

#[test]
fn an_admin_reset_stops_a_running_restore() {
    let env = Env::new();
    let share = env.path("share");
    for d in 0..100 {
        let dir = share.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..150 {
            fs::write(dir.join(format!("f{f}")), noise(2000, d * 1000 + f)).unwrap();
        }
    }
    let id = backup(&env, &share)["id"].as_str().unwrap().to_string();
    let mut running = env.spawn(&["backup", "restore", &id]);
    wait_for(Duration::from_secs(30), || {
        assert_running(&mut running);
        let b = env.strata(&["backup", "show", "-f", "json", &id]).json();
        (b["status"] == "restoring").then_some(())
    });
    let reset = env.strata(&["backup", "set", "--state", "error", &id]).ok();
    assert!(
        reset.stderr.contains("restoring -> error"),
        "{}",
        reset.stderr
    );
    let out = running.wait_with_output().unwrap();
    let b = env
        .strata(&["backup", "show", "-f", "json", &id])
        .ok()
        .json();
    assert_eq!(b["status"], "error", "the administrator's status stands");
    let s = env
        .strata(&["share", "show", "-f", "json", "share"])
        .ok()
        .json();
    if out.status.code() == Some(9) {
        assert_eq!(s["status"], "backup_restoring_error");
    } else {
        // It finished before its heartbeat saw the reset.
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bad = env.strata(&["backup", "set", "--state", "sleeping", &id]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}
