//! Two nodes on one export whose clocks are minutes apart (the second runs
//! under libfaketime): a live lock is never judged stale by comparing the
//! holder's timestamp with the observer's clock, so no live lock is taken
//! over and no pack a running backup needs is swept.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// libfaketime, or `None` (a loud skip; a failure where
/// `STRATA_REQUIRE_FAKETIME=1`, as in CI).
fn faketime() -> Option<PathBuf> {
    if Path::new(FAKETIME).exists() {
        return Some(PathBuf::from(FAKETIME));
    }
    if std::env::var("STRATA_REQUIRE_FAKETIME").as_deref() == Ok("1") {
        panic!("libfaketime is not installed ({FAKETIME}); tests/run installs it as root");
    }
    eprintln!("SKIPPED: libfaketime is not installed ({FAKETIME})");
    None
}

/// Node A: `args` with `catalog`, stopped for a while at `point`; returns
/// once it is there.
fn hold_at(env: &Env, catalog: &str, point: &str, args: &[&str]) -> Child {
    let log = env.path(&format!("{catalog}.points"));
    let _ = fs::remove_file(&log);
    let child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--catalog")
        .arg(env.path(catalog))
        .arg("--repository")
        .arg(&env.repository)
        .args(args)
        .env("STRATA_FAILPOINTS", format!("{point}=sleep(6000)"))
        .env("STRATA_FAILPOINT_LOG", &log)
        .env_remove("STRATA_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read_to_string(&log).unwrap_or_default().contains(point) {
        assert!(
            Instant::now() < deadline,
            "never reached {point}; locks: {:?}",
            fs::read_dir(env.repo().join("locks"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// Node B: `args` with its own catalog, its clock `skew` away.
fn skewed(env: &Env, lib: &Path, skew: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--catalog")
        .arg(env.path("b.db"))
        .arg("--repository")
        .arg(&env.repository)
        .args(args)
        .env("LD_PRELOAD", lib)
        .env("FAKETIME", skew)
        .env("FAKETIME_DONT_RESET", "1");
    run(cmd)
}

#[test]
fn a_node_whose_clock_is_ahead_or_behind_takes_no_live_lock() {
    let Some(lib) = faketime() else { return };
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("a"), noise(400_000, 1)).unwrap();
    let d = share.to_str().unwrap();
    env.strata_at("a.db", &["backup", "create", d]).ok();
    // Node B indexes the same repository.
    let rebuilt = skewed(&env, &lib, "+10m", &["catalog", "rebuild"]);
    assert_eq!(rebuilt.code, 0, "{}", rebuilt.stderr);

    for (round, skew) in [(0, "+10m"), (1, "-10m")] {
        // A's backup holds its shared lock, a pack published and no layer
        // naming it yet; B sweeps (exclusive lock, unreferenced packs).
        fs::write(share.join(format!("new{skew}")), noise(500_000, 10 + round)).unwrap();
        let a = hold_at(
            &env,
            "a.db",
            "repository.pack_published",
            &["backup", "create", "--incremental", "-f", "json", d],
        );
        let swept = skewed(&env, &lib, skew, &["cleanup", "--wait", "1", "-f", "json"]);
        assert_eq!(swept.code, 0, "{skew}: {}", swept.stderr);
        let skipped = swept.json()["packs_skipped"].to_string();
        assert!(skipped.contains("running"), "{skew}: {}", swept.stdout);
        let out = a.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{skew}: node A's backup: {stderr}");
        let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let target = env.path(&format!("restore{skew}"));
        env.restore_at("a.db", &id, &target).ok();
        assert_same(&snapshot(&share), &snapshot(&target));

        // A holds the exclusive lock (a repack removing packs); B's repack
        // cleanup does not take it over. A pack half dead first: a backup of `keep`
        // and `gone`, a full one of `keep` alone, the first deleted.
        fs::write(share.join("keep"), noise(600_000, 20 + round)).unwrap();
        fs::write(share.join("gone"), noise(600_000, 30 + round)).unwrap();
        let both = env
            .strata_at(
                "a.db",
                &["backup", "create", "-f", "json", "--incremental", d],
            )
            .ok()
            .json();
        fs::remove_file(share.join("gone")).unwrap();
        env.strata_at("a.db", &["backup", "create", d]).ok();
        env.strata_at("a.db", &["backup", "delete", both["id"].as_str().unwrap()])
            .ok();
        let a = hold_at(
            &env,
            "a.db",
            "repack.copied",
            &["repack", "--max-unused", "0%"],
        );
        let swept = skewed(&env, &lib, skew, &["cleanup", "--wait", "1", "-f", "json"]);
        assert_eq!(swept.code, 0, "{skew}: {}", swept.stderr);
        let skipped = swept.json()["packs_skipped"].to_string();
        assert!(
            skipped.contains("locked exclusively"),
            "{skew}: {}",
            swept.stdout
        );
        let out = a.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{skew}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let check = env.strata_at("a.db", &["check", "--read-data"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
}
