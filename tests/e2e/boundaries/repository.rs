//! The repository is not world-readable: objects 0660 and directories 0770
//! (the NFS backup driver's rule), whatever the umask, or the configured
//! modes.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;

use super::assert_modes;
use crate::harness::*;

#[test]
fn repository_objects_and_directories_get_the_drivers_modes() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("a"), noise(300_000, 1)).unwrap();
    let d = share.to_str().unwrap();
    env.strata(&["backup", "create", d]).ok();
    assert_modes(&env.repo(), 0o660, 0o770);
    // Configured: another repository, tighter modes.
    let config = env.path("strata.toml");
    let with_config = |text: String, args: &[&str]| {
        fs::write(&config, text).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("--catalog")
            .arg(env.path("tight.db"))
            .arg("--config")
            .arg(&config)
            .args(args);
        run(cmd)
    };
    let tight = env.path("tight");
    let modes = format!(
        "repository = {:?}\nrepository_file_mode = \"0600\"\nrepository_dir_mode = \"0700\"\n",
        tight.display().to_string()
    );
    with_config(modes, &["backup", "create", d]).ok();
    assert_modes(&tight, 0o600, 0o700);
    let bad = with_config(
        "repository_file_mode = \"0999\"\n".into(),
        &["backup", "list"],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("repository_file_mode"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_backup_type_on_the_default_repository_shares_its_one_index() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("a"), noise(100_000, 2)).unwrap();
    let config = env.path("types.toml");
    // The same repository, spelled with a trailing slash.
    fs::write(
        &config,
        format!(
            "enabled_backup_types = [\"gold\"]\n[gold]\nrepository = \"{}/\"\n",
            env.repository
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let d = share.to_str().unwrap();
    env.strata(&[
        "--config",
        c,
        "backup",
        "create",
        "--backup-options",
        "backup_type=gold",
        d,
    ])
    .ok();
    env.strata(&["--config", c, "catalog", "rebuild", "--force"])
        .ok();
    env.strata(&["--config", c, "check"]).ok();
    let indexes: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".repository-"))
        .collect();
    assert!(indexes.is_empty(), "a second index: {indexes:?}");
}
