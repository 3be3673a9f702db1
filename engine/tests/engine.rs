//! Engine tests on real temporary directories, through the `Engine` API.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::path::Path;

use strata_engine::repository::objects::Location;
use strata_engine::store::{BackupFilter, BackupStatus, ShareStatus};
use strata_engine::{CreateBackup, Engine, EngineConfig, Error, Progress, RestoreRequest};

fn engine(dir: &Path) -> Engine {
    Engine::open(EngineConfig::new(
        dir.join("catalog.db"),
        Location::Posix(dir.join("repo")),
    ))
    .unwrap()
}

fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Files below `dir` (none when it was never made).
fn count_files(dir: &Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_chunk_seen_twice_in_one_run_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).unwrap();
    // 64 copies of the same 3 MiB, processed by parallel workers.
    let data = noise(3 << 20, 1);
    for i in 0..64 {
        fs::write(share.join(format!("copy{i:02}.bin")), &data).unwrap();
    }
    let engine = engine(tmp.path());
    let (s, _) = engine
        .share_for_backup(share.to_str().unwrap(), false)
        .unwrap();
    let done = engine
        .create_backup(&s, &CreateBackup::default(), &Progress::default())
        .unwrap();
    let b = &done.backup;
    assert_eq!(b.status, BackupStatus::Available);
    assert_eq!(b.logical_bytes, 64 * (3 << 20));
    assert_eq!(
        b.new_bytes,
        3 << 20,
        "the same chunks were stored more than once"
    );
    assert_eq!(
        b.stored_bytes,
        3 << 20,
        "random data must be stored raw, once"
    );
    let restored = tmp.path().join("out");
    let req = RestoreRequest::whole(strata_engine::RestoreTarget::Dir(restored.clone()));
    engine
        .restore_backup(b, &req, &Progress::default())
        .unwrap();
    for i in [0, 31, 63] {
        assert_eq!(
            fs::read(restored.join(format!("copy{i:02}.bin"))).unwrap(),
            data
        );
    }
}

#[test]
fn a_failed_backup_ends_in_error_and_releases_the_share() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    fs::create_dir_all(&share).unwrap();
    let engine = engine(tmp.path());
    let (s, _) = engine
        .share_for_backup(share.to_str().unwrap(), false)
        .unwrap();
    fs::remove_dir(&share).unwrap();
    let err = engine
        .create_backup(&s, &CreateBackup::default(), &Progress::default())
        .unwrap_err();
    // A share path that does not exist is "not found" (exit 4).
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let backups = engine.store().list_backups(&Default::default()).unwrap();
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].status, BackupStatus::Error);
    assert!(backups[0]
        .fail_reason
        .as_deref()
        .is_some_and(|r| r.contains("share")));
    assert_eq!(
        engine.find_share(&s.name).unwrap().status,
        ShareStatus::Available
    );
    assert_eq!(count_files(&tmp.path().join("repo").join("tmp")), 0);
    assert_eq!(count_files(&tmp.path().join("repo").join("layers")), 0);
}

#[test]
fn many_small_files_share_packs_and_delete_removes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share");
    for d in 0..10 {
        fs::create_dir_all(share.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            fs::write(
                share.join(format!("d{d}/f{f}")),
                noise(2000, (d * 100 + f) as u8),
            )
            .unwrap();
        }
    }
    let engine = engine(tmp.path());
    let (s, _) = engine
        .share_for_backup(share.to_str().unwrap(), false)
        .unwrap();
    let done = engine
        .create_backup(&s, &CreateBackup::default(), &Progress::default())
        .unwrap();
    assert_eq!(done.backup.file_count, 1000);
    assert_eq!(done.backup.dir_count, 10);
    let packs = engine.index().packs().unwrap();
    assert_eq!(packs.len(), 1, "1,000 small files belong in one pack");
    engine.delete_backup(&done.backup, false).unwrap();
    assert!(engine.index().packs().unwrap().is_empty());
    assert_eq!(count_files(&tmp.path().join("repo").join("packs")), 0);
}

/// Processes started together (two cron jobs, a backup and a `list` that
/// watches it) open a new catalog and repository at once, and then write to
/// them at once. None of them may fail with "database is locked".
#[test]
fn engines_opened_at_once_on_a_new_catalog_all_work() {
    const N: usize = 6;
    for round in 0..4u8 {
        let tmp = tempfile::tempdir().unwrap();
        let start = std::sync::Barrier::new(N);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..N)
                .map(|i| {
                    let (tmp, start) = (tmp.path(), &start);
                    s.spawn(move || {
                        let share = tmp.join(format!("share{i}"));
                        fs::create_dir_all(&share).unwrap();
                        fs::write(share.join("f"), noise(4096, i as u8 + round)).unwrap();
                        start.wait();
                        let engine = Engine::open(EngineConfig::new(
                            tmp.join("catalog.db"),
                            Location::Posix(tmp.join("repo")),
                        ))
                        .map_err(|e| format!("open: {e}"))?;
                        let (s, _) = engine
                            .share_for_backup(share.to_str().unwrap(), false)
                            .map_err(|e| format!("share: {e}"))?;
                        engine
                            .create_backup(&s, &CreateBackup::default(), &Progress::default())
                            .map_err(|e| format!("backup: {e}"))?;
                        engine
                            .store()
                            .list_backups(&BackupFilter::default())
                            .map(drop)
                            .map_err(|e| format!("list: {e}"))
                    })
                })
                .collect();
            for (i, w) in workers.into_iter().enumerate() {
                if let Err(e) = w.join().unwrap() {
                    panic!("round {round}, engine {i}: {e}");
                }
            }
        });
        let listed = engine(tmp.path())
            .store()
            .list_backups(&BackupFilter::default())
            .unwrap();
        assert_eq!(listed.len(), N);
    }
}
