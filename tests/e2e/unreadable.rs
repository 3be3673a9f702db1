//! An incremental never turns what it cannot read into deletions: an
//! unreadable file or directory keeps its last backed-up version and is
//! reported; a share that vanished, was replaced or looks unmounted is an
//! error, never an empty or shrunken `available` backup.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::harness::*;

/// Runs `strata` as the unprivileged user `nobody` (through `setpriv`) when
/// this runs as root, so that a mode of 000 really keeps it out.
fn as_nobody(env: &Env, args: &[&str]) -> Run {
    let bin = env!("CARGO_BIN_EXE_strata");
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
        c
    } else {
        Command::new(bin)
    };
    cmd.arg("--catalog")
        .arg(env.path("catalog.db"))
        .arg("--repository")
        .arg(&env.repository)
        .args(args);
    run(cmd)
}

/// Gives everything below `dir` to `nobody` (when root) and opens `dir`'s
/// parents to it.
fn hand_to_nobody(dir: &Path) {
    if !is_root() {
        return;
    }
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

fn old_files(dir: &Path) {
    fs::create_dir_all(dir.join("locked")).unwrap();
    for i in 0..4 {
        fs::write(dir.join(format!("f{i}")), noise(50_000, i)).unwrap();
        fs::write(dir.join(format!("locked/g{i}")), noise(30_000, 10 + i)).unwrap();
        set_mtime(&dir.join(format!("f{i}")), 1_600_000_000, 0);
        set_mtime(&dir.join(format!("locked/g{i}")), 1_600_000_000, 0);
    }
}

#[test]
fn an_unreadable_file_or_directory_keeps_its_last_version() {
    let env = Env::new();
    fs::set_permissions(env.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let share = env.path("share");
    old_files(&share);
    hand_to_nobody(env.dir.path());
    let before = snapshot(&share);
    let sh = share.to_str().unwrap();
    as_nobody(&env, &["backup", "create", "--name", "full", sh]).ok();

    // f1 and the directory `locked` cannot be read any more; f2 changes.
    fs::set_permissions(share.join("f1"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(share.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::write(share.join("f2"), b"changed").unwrap();
    let run = as_nobody(
        &env,
        &[
            "backup",
            "create",
            "--incremental",
            "-f",
            "json",
            "--name",
            "inc",
            sh,
        ],
    );
    assert_eq!(run.code, 3, "skipped paths mean exit 3: {}", run.stderr);
    let inc = run.json();
    assert_eq!(inc["status"], "available");
    assert_eq!(inc["skipped_count"], 2, "{inc}");
    assert_eq!(inc["deleted_count"], 0, "nothing was deleted: {inc}");
    let problems = env
        .strata(&["backup", "show", "--problems", "-f", "json", "inc"])
        .ok()
        .json();
    let text = problems.to_string();
    assert!(text.contains("f1") && text.contains("locked"), "{text}");

    // The restore has f1 and locked/* as last read, and the new f2.
    fs::set_permissions(share.join("f1"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(share.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
    let target = env.path("restored");
    restore_to(&env, "inc", &target).ok();
    let mut expected = before;
    let mut now = snapshot(&share);
    let f2 = Path::new("f2").to_path_buf();
    expected.insert(f2.clone(), now.remove(&f2).unwrap());
    let restored = snapshot(&target);
    for (path, node) in &expected {
        assert!(restored.contains_key(path), "{} is missing", path.display());
        if path.file_name().is_some_and(|n| n != "locked") {
            assert_eq!(&restored[path], node, "{}", path.display());
        }
    }
}

#[test]
fn an_empty_share_is_refused_unless_the_operator_says_so() {
    let env = Env::new();
    let share = env.path("share");
    old_files(&share);
    backup(&env, &share);
    // What an unmounted share looks like: the bare, empty mount point.
    fs::rename(&share, env.path("share.mounted")).unwrap();
    fs::create_dir(&share).unwrap();
    let sh = share.to_str().unwrap();
    env.strata(&["backup", "create", "--incremental", sh])
        .fails(5, "is empty");
    let list = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "nothing was created: {list}"
    );
    let inc = env
        .strata(&[
            "backup",
            "create",
            "--incremental",
            "--allow-root-change",
            "-f",
            "json",
            sh,
        ])
        .ok()
        .json();
    assert_eq!(inc["file_count"], 0, "{inc}");
}

#[test]
fn a_share_on_another_device_is_refused_unless_the_operator_says_so() {
    if skip_without_root("a_share_on_another_device_is_refused", "to mount") {
        return;
    }
    let env = Env::new();
    let share = env.path("share");
    old_files(&share);
    backup(&env, &share);
    // Something else mounted over the share, with files of its own.
    let _mounted = Tmpfs::mount(&share, "8m");
    fs::write(share.join("other"), b"another file system").unwrap();
    let sh = share.to_str().unwrap();
    env.strata(&["backup", "create", "--incremental", sh])
        .fails(5, "another device");
    env.strata(&[
        "backup",
        "create",
        "--incremental",
        "--allow-root-change",
        sh,
    ])
    .ok();
}

#[test]
fn a_share_moved_away_during_a_backup_fails_it_and_publishes_nothing() {
    let env = Env::new();
    let share = env.path("share");
    old_files(&share);
    backup(&env, &share);
    // Enough entries that the walk is still running when the share moves.
    for d in 0..40 {
        let dir = share.join(format!("d{d}"));
        fs::create_dir(&dir).unwrap();
        for i in 0..500 {
            fs::write(dir.join(format!("n{i}")), format!("{d}/{i}")).unwrap();
        }
    }
    for attempt in 0..5 {
        let layers_before = fs::read_dir(env.repo().join("layers")).unwrap().count();
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--catalog")
            .arg(env.path("catalog.db"))
            .arg("--repository")
            .arg(&env.repository)
            .args(["backup", "create", "--incremental", share.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(80 >> attempt));
        let moved = env.path("share.moved");
        let still_running = child.try_wait().unwrap().is_none();
        fs::rename(&share, &moved).unwrap();
        let out = child.wait_with_output().unwrap();
        fs::rename(&moved, &share).unwrap();
        if !still_running || out.status.success() {
            // Done (or past its walk) before the move: try again, earlier.
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("disappeared"), "{stderr}");
        let failed = env
            .strata(&["backup", "list", "--status", "error", "-f", "json"])
            .ok()
            .json();
        assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
        let layers = fs::read_dir(env.repo().join("layers")).unwrap().count();
        assert_eq!(layers, layers_before, "a layer was published");
        return;
    }
    panic!("the backup always finished before the share was moved");
}
