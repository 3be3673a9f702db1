//! The repository on a real NFS server (nfs-ganesha, started per test),
//! reached with strata's userspace client: the backend contract, full and
//! incremental backups and restores, damage on the export, a full export,
//! and a server crash in the middle of a backup.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_engine::repository::objects::{conformance, Location, NfsStore};

use crate::ganesha::Ganesha;
use crate::harness::*;

/// Every pack under `repo/packs` decodes, and each chunk matches its id.
fn verify_packs(repo: &Path) -> usize {
    let mut packs = 0;
    for path in walk_files(&repo.join("packs")) {
        let bytes = fs::read(&path).unwrap();
        let entries = strata_format::pack::decode_index(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for entry in entries {
            let at = entry.offset as usize;
            let stored = &bytes[at..at + entry.stored_len as usize];
            strata_format::pack::decode_chunk(&entry, stored)
                .unwrap_or_else(|e| panic!("{} at {at}: {e}", path.display()));
        }
        packs += 1;
    }
    packs
}

/// Files of `mib` MiB of incompressible data in total, aged past the racy
/// window so an incremental can trust their timestamps.
fn random_share(root: &Path, files: usize, mib: usize, seed: u64) {
    fs::create_dir_all(root).unwrap();
    for i in 0..files {
        let len = mib * (1 << 20) / files;
        fs::write(
            root.join(format!("f{i}")),
            noise(len, seed * 1000 + i as u64),
        )
        .unwrap();
    }
}

/// An environment whose repository is `repo` on a private server, or
/// `None` when the NFS tests skip here.
fn nfs_env(test: &str) -> Option<(Env, Ganesha)> {
    let env = Env::new();
    let g = Ganesha::start(test, &env.path("export"))?;
    let env = Env {
        repository: g.url("repo"),
        ..env
    };
    Some((env, g))
}

#[test]
fn conformance_object_store_nfs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(g) = Ganesha::start("conformance_object_store_nfs", &dir.path().join("export")) else {
        return;
    };
    let Location::Nfs(url) = Location::parse(&g.url("deep/repo")).unwrap() else {
        panic!("not an nfs location");
    };
    // The repository's directories below the export are created on connect.
    let backend = NfsStore::connect(&url).unwrap();
    assert!(g.export.join("deep/repo").is_dir());
    conformance::run(&backend).unwrap();
}

#[test]
fn full_and_incremental_backups_restore_from_nfs() {
    let Some((env, g)) = nfs_env("full_and_incremental_backups_restore_from_nfs") else {
        return;
    };
    let share = env.path("share");
    build_tree(&share);
    random_share(&share.join("big"), 3, 24, 1);
    std::thread::sleep(Duration::from_millis(2100));
    let full_tree = snapshot(&share);
    let full = backup(&env, &share);
    assert_eq!(full["status"], "available");

    fs::write(share.join("big/f0"), noise(5 << 20, 99)).unwrap();
    fs::remove_file(share.join("big/f1")).unwrap();
    fs::write(share.join("new-file"), b"after the full backup").unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let incr_tree = snapshot(&share);
    let incr = incremental_backup(&env, &share);
    assert_eq!(incr["status"], "available");

    for (backup, tree, name) in [(&full, &full_tree, "full"), (&incr, &incr_tree, "incr")] {
        let target = env.path(&format!("restored-{name}"));
        restore_to(&env, backup["id"].as_str().unwrap(), &target).ok();
        assert_same(tree, &snapshot(&target));
    }
    let listed = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    assert!(verify_packs(&g.export.join("repo")) > 0);
    env.strata(&["check"]).ok();

    for b in [&incr, &full] {
        env.strata(&["backup", "delete", b["id"].as_str().unwrap()])
            .ok();
    }
    assert!(
        walk_files(&g.export.join("repo/packs")).is_empty(),
        "packs remain after deleting every backup"
    );
    assert!(walk_files(&g.export.join("repo/layers")).is_empty());
}

/// A byte flipped on the export, near the end of a raw chunk larger than
/// one READ (about 1 MiB on ganesha), so it arrives in a later reply than
/// the chunk's start: the restore through `nfs://` names the pack and the
/// chunk's offset, and leaves no damaged file.
#[test]
fn a_flipped_byte_on_the_export_fails_the_restore_naming_the_chunk() {
    let Some((env, g)) = nfs_env("a_flipped_byte_on_the_export_fails_the_restore_naming_the_chunk")
    else {
        return;
    };
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("big.bin"), noise(12 << 20, 3)).unwrap();
    let id = backup(&env, &share)["id"].as_str().unwrap().to_string();
    let packs = walk_files(&g.export.join("repo/packs"));
    assert_eq!(packs.len(), 1, "{packs:?}");
    let pack = &packs[0];
    let pack_id = pack.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = fs::read(pack).unwrap();
    let entries = strata_format::pack::decode_index(&bytes).unwrap();
    let largest = entries.iter().max_by_key(|e| e.stored_len).unwrap();
    assert!(largest.stored_len > 1 << 20, "{entries:?}");
    bytes[(largest.offset + u64::from(largest.stored_len) - 10) as usize] ^= 0x01;
    overwrite(pack, &bytes);

    let target = env.path("out");
    let run = restore_to(&env, &id, &target);
    run.fails(7, &format!("pack {pack_id} at offset {}", largest.offset));
    assert!(
        !target.join("big.bin").exists(),
        "the damaged file was left"
    );
}

#[test]
fn seeds_config_keys_reach_the_export() {
    let env = Env::new();
    let Some(g) = Ganesha::start("seeds_config_keys_reach_the_export", &env.path("export")) else {
        return;
    };
    let config = env.path("strata.toml");
    fs::write(
        &config,
        format!(
            "backup_driver = \"nfs\"\nbackup_mount_export = \"127.0.0.1:/export/seeds\"\nbackup_mount_options = \"'-o vers=4',minorversion=1,hard,proto=tcp,port={}\"\n",
            g.port
        ),
    )
    .unwrap();
    let share = env.path("share");
    random_share(&share, 4, 2, 7);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--catalog")
        .arg(env.path("catalog.db"))
        .arg("--config")
        .arg(&config);
    cmd.args(["backup", "create", "-f", "json", share.to_str().unwrap()]);
    let run = run(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(g.export.join("seeds/config").is_file());
    assert!(verify_packs(&g.export.join("seeds")) > 0);
    // The driver's modes, over NFS too: 0660 objects, 0770 directories.
    crate::boundaries::assert_modes(&g.export.join("seeds"), 0o660, 0o770);
    // An option the client cannot honour is refused by name, not dropped.
    fs::write(
        &config,
        "backup_driver = \"nfs\"\nbackup_mount_export = \"127.0.0.1:/export/seeds\"\nbackup_mount_options = \"vers=3,rsize=65536\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--catalog")
        .arg(env.path("catalog.db"))
        .arg("--config")
        .arg(&config)
        .args(["backup", "list"]);
    crate::harness::run(cmd).fails(2, "rsize=65536");
}

#[test]
fn a_full_export_fails_the_backup_and_loses_nothing() {
    let env = Env::new();
    let test = "a_full_export_fails_the_backup_and_loses_nothing";
    if !crate::ganesha::available(test) {
        return;
    }
    let export = env.path("export");
    let _tmpfs = Tmpfs::mount(&export, "24m");
    let Some(g) = Ganesha::start(test, &export) else {
        return;
    };
    let env = Env {
        repository: g.url("repo"),
        ..env
    };
    let small = env.path("small");
    random_share(&small, 4, 4, 3);
    let before = snapshot(&small);
    let first = backup(&env, &small);

    let big = env.path("big");
    random_share(&big, 6, 48, 4);
    let run = env.strata(&["backup", "create", "-f", "json", big.to_str().unwrap()]);
    assert_eq!(
        run.code, 8,
        "a full export is an I/O failure: {}",
        run.stderr
    );
    assert!(
        run.stderr.to_lowercase().contains("no space"),
        "{}",
        run.stderr
    );
    let failed = env
        .strata(&["backup", "list", "--status", "error", "-f", "json"])
        .ok()
        .json();
    let failed = &failed.as_array().unwrap()[0];
    let shown = env
        .strata(&[
            "backup",
            "show",
            "-f",
            "json",
            failed["ID"].as_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(shown["status"], "error");
    let reason = shown["fail_reason"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(reason.contains("no space"), "fail_reason: {reason}");

    // Nothing partial was published, nothing is left in tmp/, and what
    // was there before still restores.
    verify_packs(&export.join("repo"));
    assert!(walk_files(&export.join("repo/tmp")).is_empty());
    env.strata(&["check"]).ok();
    let target = env.path("restored");
    restore_to(&env, first["id"].as_str().unwrap(), &target).ok();
    assert_same(&before, &snapshot(&target));
}

#[test]
fn a_server_crash_mid_backup_completes_or_fails_cleanly() {
    let Some((env, mut g)) = nfs_env("a_server_crash_mid_backup_completes_or_fails_cleanly") else {
        return;
    };
    let share = env.path("share");
    random_share(&share, 40, 160, 5);
    let tree = snapshot(&share);
    // Small packs, so the crash finds packs both published and in flight.
    let config = env.path("strata.toml");
    fs::write(&config, "pack_target_size = 4194304\n").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--catalog")
        .arg(env.path("catalog.db"))
        .arg("--repository")
        .arg(&env.repository)
        .arg("--config")
        .arg(&config)
        .args(["backup", "create", "-f", "json", share.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let packs = g.export.join("repo/packs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while walk_files(&packs).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the backup never published a pack"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before the crash"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    g.kill();
    std::thread::sleep(Duration::from_millis(1500));
    g.restart();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "backup across a server crash: {:?}\n{stderr}",
        out.status.code()
    );

    let listed = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    let b = &listed.as_array().unwrap()[0];
    let id = b["ID"].as_str().unwrap();
    if out.status.success() {
        assert_eq!(b["Status"], "available");
        let target = env.path("restored");
        restore_to(&env, id, &target).ok();
        assert_same(&tree, &snapshot(&target));
    } else {
        assert_eq!(b["Status"], "error", "a failed backup ends in error");
    }
    // No published pack fails verification, nothing is left over, and
    // the share backs up and restores again.
    verify_packs(&g.export.join("repo"));
    env.strata(&["cleanup"]).ok();
    env.strata(&["check"]).ok();
    let again = backup(&env, &share);
    let target = env.path("restored-again");
    restore_to(&env, again["id"].as_str().unwrap(), &target).ok();
    assert_same(&tree, &snapshot(&target));
}

/// `strata bench` against a directory and against the export: every figure
/// measured, a bound named, and nothing left in the repository.
#[test]
fn bench_measures_every_stage_and_leaves_nothing() {
    let env = Env::new();
    let share = env.path("share");
    random_share(&share, 8, 16, 11);
    build_tree(&share.join("tree"));
    let mut locations = vec![(env.repository.clone(), env.repo())];
    let ganesha = Ganesha::start(
        "bench_measures_every_stage_and_leaves_nothing",
        &env.path("export"),
    );
    if let Some(g) = &ganesha {
        locations.push((g.url("repo"), g.export.join("repo")));
    }
    for (location, dir) in locations {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("--repository")
            .arg(&location)
            .arg("--catalog")
            .arg(env.path("unused.db"));
        cmd.args(["bench", "--share", share.to_str().unwrap()]);
        cmd.args(["--read-mib", "8", "--write-mib", "64", "-f", "json"]);
        let r = run(cmd).ok().json();
        for key in [
            "walk_files_per_s",
            "share_read_mb_per_s",
            "export_write_mb_per_s",
            "export_read_mb_per_s",
            "export_put_ms",
            "export_replace_ms",
            "export_delete_ms",
            "export_list_ms",
            "cpu_mb_per_s_one_core",
            "cpu_mb_per_s_all_cores",
            "full_backup_secs",
        ] {
            assert!(
                r[key].as_f64().unwrap() > 0.0,
                "{location}: {key} = {}",
                r[key]
            );
        }
        assert_eq!(
            r["share_bytes"].as_u64(),
            Some(fs_bytes(&share)),
            "{location}"
        );
        assert!(r["share_read_sample_bytes"].as_u64().unwrap() <= 8 << 20);
        let bound = r["bound"].as_str().unwrap();
        assert!(
            ["share walk", "share read", "cpu", "export write"].contains(&bound),
            "{bound}"
        );
        // Not one object: at most the empty directory a filesystem store
        // writes its puts in (`tmp/`).
        let left = walk_files(&dir);
        assert!(left.is_empty(), "{location}: bench left {left:?}");
        let dirs: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|name| name != "tmp")
            .collect();
        assert!(dirs.is_empty(), "{location}: bench left {dirs:?}");
        assert!(!env.path("unused.db").exists(), "bench needs no catalog");
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--repository").arg(env.repo());
    cmd.args(["bench", "--share", env.path("missing").to_str().unwrap()]);
    let missing = run(cmd);
    // A share path that does not exist is "not found".
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert!(missing.stderr.contains("missing"), "{}", missing.stderr);
}

/// Bytes in the regular files below `dir`, each inode once (a hardlink
/// is not more data).
fn fs_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() && seen.insert(meta.ino()) {
                total += meta.len();
            }
        }
    }
    total
}

#[test]
fn a_catalog_bound_to_an_nfs_repository_creates_nothing_elsewhere_on_the_export() {
    let Some((env, g)) = nfs_env("bound_nfs_catalog_creates_nothing") else {
        return;
    };
    let share = env.path("share");
    random_share(&share, 2, 1, 3);
    env.strata(&["backup", "create", share.to_str().unwrap()])
        .ok();
    let elsewhere = Env {
        repository: g.url("deep/elsewhere"),
        dir: env.dir,
        vars: Vec::new(),
    };
    elsewhere
        .strata(&["backup", "list"])
        .fails(2, "there is no repository at");
    assert!(
        !g.export.join("deep").exists(),
        "nothing was created on the export"
    );
}
