//! Full backup → restore round trips, compared entry by entry.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::*;

#[test]
fn full_backup_restores_every_kind_of_entry() {
    let env = Env::new();
    let share = env.path("share");
    build_tree(&share);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        share.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    let before = snapshot(&share);

    let run = env.strata(&[
        "backup",
        "create",
        "-f",
        "json",
        share.to_str().expect("utf8"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("registered"),
        "zero-config registration is announced"
    );
    assert!(run.stderr.contains("pipe: fifo skipped"), "{}", run.stderr);
    let shown = run.json();
    assert_eq!(shown["status"], "available");
    assert_eq!(shown["progress"], 100);
    assert_eq!(shown["is_incremental"], false);
    assert!(shown["data_timestamp"].is_string());
    let id = shown["id"].as_str().expect("id").to_string();
    // Two identical 9 MiB files: stored once.
    let logical = shown["logical_bytes"].as_u64().expect("logical");
    let new = shown["new_bytes"].as_u64().expect("new");
    assert!(
        new + (9 << 20) <= logical,
        "duplicate file was stored twice: {new} of {logical}"
    );

    let target = env.path("restored");
    restore_to(&env, &id, &target).ok();
    let mut expected = before;
    expected.retain(|p, _| p != Path::new("pipe"));
    assert_same(&expected, &snapshot(&target));
    assert!(
        allocated(&target.join("sparse.img")) < 1 << 20,
        "holes were filled: {} bytes allocated",
        allocated(&target.join("sparse.img"))
    );
    let hard = fs::metadata(target.join("hard/one.txt")).expect("stat");
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&hard), 3);
}

/// A share holding [`build_tree`], backed up: the environment, the share,
/// its snapshot and the backup id.
fn backed_up_tree() -> (Env, PathBuf, BTreeMap<PathBuf, Node>, String) {
    let env = Env::new();
    let share = env.path("share");
    build_tree(&share);
    let before = snapshot(&share);
    let id = backup(&env, &share)["id"].as_str().expect("id").to_string();
    (env, share, before, id)
}

/// Large files are restored with direct writes where the file system takes
/// them, buffered where it does not (or when turned off): the same bytes,
/// lengths and holes either way.
#[test]
fn direct_and_buffered_restores_write_the_same_files() {
    let (env, _, before, id) = backed_up_tree();
    for direct in ["1", "0"] {
        let target = env.path(&format!("restored-{direct}"));
        let run = env.strata_with(
            &[
                "backup",
                "restore",
                &id,
                "--target-dir",
                target.to_str().expect("utf8"),
            ],
            &[("STRATA_DIRECT_IO", direct)],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_same(&before, &snapshot(&target));
        let sparse = allocated(&target.join("sparse.img"));
        assert!(
            sparse < 1 << 20,
            "holes were filled: {sparse} bytes allocated"
        );
    }
}

#[test]
fn restore_into_source_share_replaces_changes_without_following_symlinks() {
    let (env, share, before, id) = backed_up_tree();

    // Damage the share: change, delete, and plant a symlink where a
    // directory was, pointing outside the share.
    let outside = env.path("outside");
    fs::create_dir_all(&outside).expect("outside");
    fs::write(share.join("hello.txt"), b"changed").expect("write");
    fs::remove_file(share.join("data/random.bin")).expect("rm");
    fs::set_permissions(
        share.join("locked"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    fs::remove_dir_all(share.join("a")).expect("rm a");
    std::os::unix::fs::symlink(&outside, share.join("a")).expect("symlink");
    // Where files were: a symlink to a file outside (a many-chunk file's
    // path), a dangling symlink, and a directory with a file in it.
    let victim = outside.join("victim.txt");
    fs::write(&victim, b"untouched").expect("victim");
    let compressible = share.join("docs/compressible.txt");
    fs::remove_file(&compressible).expect("rm");
    std::os::unix::fs::symlink(&victim, &compressible).expect("symlink");
    let small = share.join("data/small-random.bin");
    fs::remove_file(&small).expect("rm");
    std::os::unix::fs::symlink(outside.join("planted"), &small).expect("symlink");
    fs::remove_file(share.join("empty.txt")).expect("rm");
    fs::create_dir_all(share.join("empty.txt/inside")).expect("dir");
    fs::write(share.join("empty.txt/inside/f"), b"x").expect("write");

    env.strata(&["backup", "restore", &id]).ok();
    assert_same(&before, &snapshot(&share));
    let outside_now: Vec<_> = fs::read_dir(&outside)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        outside_now,
        ["victim.txt"],
        "restore wrote outside the share"
    );
    assert_eq!(fs::read(&victim).expect("victim"), b"untouched");

    let shares = env.strata(&["share", "list", "-f", "json"]).ok().json();
    assert_eq!(shares[0]["Status"], "available");
    let shown = env
        .strata(&["backup", "show", &id, "-f", "json"])
        .ok()
        .json();
    assert_eq!(shown["status"], "available");
    assert_eq!(shown["restore_progress"], 100);
}

#[test]
fn identical_backups_share_packs_and_delete_frees_them() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).expect("share");
    fs::write(share.join("one.bin"), noise(3 << 20, 9)).expect("write");
    let first = backup(&env, &share);
    let second = backup(&env, &share);
    assert_eq!(second["new_bytes"], 0, "second backup stored data again");
    let packs = || walk_files(&env.repo().join("packs"));
    let stored = packs();
    assert!(!stored.is_empty());

    env.strata(&["backup", "delete", first["id"].as_str().expect("id")])
        .ok();
    assert_eq!(packs(), stored, "a pack still referenced was removed");
    let target = env.path("out");
    restore_to(&env, second["id"].as_str().expect("id"), &target).ok();
    assert_eq!(
        fs::read(target.join("one.bin")).expect("read"),
        noise(3 << 20, 9)
    );

    env.strata(&["backup", "delete", second["id"].as_str().expect("id")])
        .ok();
    assert!(
        packs().is_empty(),
        "unreferenced packs were left: {:?}",
        packs()
    );
    assert!(walk_files(&env.repo().join("layers")).is_empty());
    assert!(walk_files(&env.repo().join("tmp")).is_empty());
    let list = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(list.as_array().map(Vec::len), Some(0));
}

#[test]
fn zero_config_uses_xdg_directories() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).expect("share");
    fs::write(share.join("f"), b"zero config").expect("write");
    let home = env.path("home");
    fs::create_dir_all(&home).expect("home");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.env("HOME", &home)
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("STRATA_CATALOG")
        .env_remove("STRATA_REPOSITORY")
        .args(["backup", "create", share.to_str().expect("utf8")]);
    let run = run(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(home.join(".local/state/strata/catalog.db").is_file());
    assert!(home.join(".local/share/strata/repository/config").is_file());
}

#[test]
fn unreadable_file_is_reported_and_the_rest_backed_up() {
    if skip_without_root(
        "unreadable_file_is_reported_and_the_rest_backed_up",
        "to run strata as an unprivileged user",
    ) {
        return;
    }
    let env = Env::new();
    fs::set_permissions(
        env.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let share = env.path("share");
    fs::create_dir_all(&share).expect("share");
    fs::write(share.join("readable.txt"), b"fine").expect("write");
    fs::write(share.join("secret.txt"), b"root only").expect("write");
    fs::set_permissions(
        share.join("secret.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    // A second name of the unreadable file, and one of a readable file.
    fs::hard_link(share.join("secret.txt"), share.join("secret-link.txt")).expect("link");
    fs::hard_link(share.join("readable.txt"), share.join("readable-link.txt")).expect("link");
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("--catalog")
        .arg(env.path("catalog.db"))
        .arg("--repository")
        .arg(env.repo())
        .args([
            "backup",
            "create",
            "-f",
            "json",
            share.to_str().expect("utf8"),
        ]);
    let run = run(cmd);
    assert_eq!(
        run.code, 3,
        "partial backup exit code; stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("secret-link.txt: cannot open")
            && run
                .stderr
                .contains("secret.txt: hardlink to a file that could not be read"),
        "{}",
        run.stderr
    );
    let shown = run.json();
    assert_eq!(shown["status"], "available");
    assert_eq!(shown["skipped_count"], 2);
    assert!(shown["fail_reason"]
        .as_str()
        .is_some_and(|r| r.contains("could not be backed up")));
    // Everything that was readable restores; the backup is not poisoned.
    let id = shown["id"].as_str().expect("id").to_string();
    let target = env.path("out");
    restore_to(&env, &id, &target).ok();
    assert_eq!(
        fs::read(target.join("readable-link.txt")).expect("read"),
        b"fine"
    );
    assert!(!target.join("secret.txt").exists());
    assert!(!target.join("secret-link.txt").exists());
}

/// A tree larger than one restore window (`restore_window_mib = 1`, some
/// 1,500 small files a window) is restored window by window: the same
/// tree, hardlinks, read-only directories and directory mtimes included.
/// A window of 0 MiB is refused before anything is restored.
#[test]
fn a_tree_larger_than_the_restore_window_restores_exactly() {
    let env = Env::new();
    let share = env.path("share");
    build_tree(&share);
    for d in 0..8 {
        let dir = share.join(format!("many/d{d}"));
        fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..600 {
            fs::write(
                dir.join(format!("f{f}")),
                format!("{d}/{f}\n").repeat(f % 9 + 1),
            )
            .expect("write");
        }
        set_mtime(&dir, 1_200_000_000 + d, 17);
    }
    fs::hard_link(share.join("hello.txt"), share.join("many/d7/late-link.txt")).expect("link");
    let before = snapshot(&share);
    let id = backup(&env, &share)["id"].as_str().expect("id").to_string();
    let config = env.path("strata.toml");
    let target = env.path("restored");
    let restore = |window: &str| {
        fs::write(&config, format!("restore_window_mib = {window}\n")).expect("config");
        env.strata(&[
            "--config",
            config.to_str().expect("utf8"),
            "backup",
            "restore",
            &id,
            "--target-dir",
            target.to_str().expect("utf8"),
        ])
    };
    restore("0").fails(2, "restore_window_mib must be at least 1");
    assert!(!target.exists(), "a refused restore created its target");
    restore("1").ok();
    assert_same(&before, &snapshot(&target));
}

#[test]
fn relative_catalog_and_repository_paths_work_from_the_current_directory() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).expect("mkdir");
    fs::write(share.join("f"), b"relative").expect("write");
    let strata = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.current_dir(env.path(""))
            .args(["--catalog", "c.db", "--repository", "repo"])
            .args(args);
        run(cmd)
    };
    strata(&["backup", "create", "share"]).ok();
    assert!(env.path("repo/config").is_file());
    let target = env.path("restored");
    let listed = strata(&["backup", "list", "-f", "value", "-c", "ID"]).ok();
    let id = listed.stdout.trim().to_string();
    strata(&[
        "backup",
        "restore",
        &id,
        "--target-dir",
        target.to_str().expect("utf8"),
    ])
    .ok();
    assert_eq!(fs::read(target.join("f")).expect("restored"), b"relative");
}
