//! One engine shared by many threads, as a long-running server uses it:
//! backups, restores and queries at once, and the races of admission
//! (a busy share, a quota, a parent being deleted) decided atomically.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Barrier;

use strata_engine::repository::objects::Location;
use strata_engine::store::{BackupFilter, BackupStatus, Quota, ShareStatus};
use strata_engine::{CreateBackup, Engine, EngineConfig, Error, Progress, RestoreRequest};

fn engine(dir: &Path) -> Engine {
    Engine::open(EngineConfig::new(
        dir.join("catalog.db"),
        Location::Posix(dir.join("repo")),
    ))
    .unwrap()
}

fn fill(dir: &Path, seed: u32, files: u32) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..files {
        let body: Vec<u8> = (0..(4096 + i * 517))
            .map(|j| (j.wrapping_mul(31).wrapping_add(seed * 7 + i)) as u8)
            .collect();
        let at = if i % 3 == 0 { "sub" } else { "" };
        fs::write(dir.join(at).join(format!("f{seed}-{i}")), body).unwrap();
    }
}

fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().into(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn share(engine: &Engine, dir: &Path) -> strata_engine::store::Share {
    fs::create_dir_all(dir).unwrap();
    engine
        .share_for_backup(dir.to_str().unwrap(), false)
        .unwrap()
        .0
}

#[test]
fn one_engine_runs_backups_restores_and_queries_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    let shares: Vec<PathBuf> = (0..4).map(|i| tmp.path().join(format!("s{i}"))).collect();
    for (i, dir) in shares.iter().enumerate() {
        fill(dir, i as u32, 40);
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let lister = s.spawn(|| {
            let mut lists = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                engine
                    .store()
                    .list_backups(&BackupFilter::default())
                    .unwrap();
                engine.quota_usage().unwrap();
                lists += 1;
            }
            lists
        });
        let workers: Vec<_> = shares
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let engine = &engine;
                s.spawn(move || {
                    let sh = share(engine, dir);
                    let full = engine
                        .create_backup(&sh, &CreateBackup::default(), &Progress::default())
                        .unwrap();
                    let first = tree(dir);
                    fill(dir, 100 + i as u32, 10);
                    let incremental = engine
                        .create_backup(
                            &sh,
                            &CreateBackup {
                                incremental: true,
                                ..Default::default()
                            },
                            &Progress::default(),
                        )
                        .unwrap();
                    assert_eq!(incremental.backup.parent_id, Some(full.backup.id));
                    let second = tree(dir);
                    for (b, want) in [(&full.backup, &first), (&incremental.backup, &second)] {
                        let target = dir.with_extension(format!("restored-{}", b.id));
                        engine
                            .restore_backup(
                                b,
                                &RestoreRequest::whole(strata_engine::RestoreTarget::Dir(
                                    target.clone(),
                                )),
                                &Progress::default(),
                            )
                            .unwrap();
                        assert_eq!(&tree(&target), want, "backup {} of share {i}", b.id);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(lister.join().unwrap() > 0);
    });
    let backups = engine
        .store()
        .list_backups(&BackupFilter::default())
        .unwrap();
    assert_eq!(backups.len(), 8);
    assert!(backups.iter().all(|b| b.status == BackupStatus::Available));
    let report = engine.check().unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[test]
fn two_backups_of_one_share_at_once_admit_exactly_one() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    let dir = tmp.path().join("share");
    fill(&dir, 1, 200);
    let sh = share(&engine, &dir);
    for _round in 0..5 {
        let gate = Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        gate.wait();
                        engine.create_backup(&sh, &CreateBackup::default(), &Progress::default())
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(Error::Busy(_))))
            .count();
        // Both may succeed one after the other; never both at once, and
        // a refusal is always "busy".
        assert!(ok >= 1 && ok + busy == 2, "{results:?}");
        assert_eq!(
            engine.store().share(sh.id).unwrap().status,
            ShareStatus::Available
        );
    }
}

#[test]
fn a_quota_is_never_exceeded_by_concurrent_backups() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    engine
        .set_quota(&Quota {
            backups: Some(3),
            backup_gigabytes: None,
        })
        .unwrap();
    let shares: Vec<_> = (0..8)
        .map(|i| {
            let dir = tmp.path().join(format!("s{i}"));
            fill(&dir, i, 5);
            share(&engine, &dir)
        })
        .collect();
    let gate = Barrier::new(shares.len());
    let results: Vec<_> = std::thread::scope(|s| {
        let runs: Vec<_> = shares
            .iter()
            .map(|sh| {
                let (engine, gate) = (&engine, &gate);
                s.spawn(move || {
                    gate.wait();
                    engine.create_backup(sh, &CreateBackup::default(), &Progress::default())
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, Error::Quota(_))));
    assert_eq!(engine.quota_usage().unwrap().backups, 3);
    for sh in &shares {
        assert_eq!(
            engine.store().share(sh.id).unwrap().status,
            ShareStatus::Available
        );
    }
}

#[test]
fn an_incremental_never_builds_on_a_backup_being_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = engine(tmp.path());
    let dir = tmp.path().join("share");
    fill(&dir, 3, 20);
    let sh = share(&engine, &dir);
    for round in 0..6 {
        let parent = engine
            .create_backup(&sh, &CreateBackup::default(), &Progress::default())
            .unwrap()
            .backup;
        let gate = Barrier::new(2);
        let (deleted, child) = std::thread::scope(|s| {
            let delete = s.spawn(|| {
                gate.wait();
                engine.delete_backup(&parent, false)
            });
            let child = s.spawn(|| {
                gate.wait();
                engine.create_backup(
                    &sh,
                    &CreateBackup {
                        parent: Some(parent.id.to_string()),
                        ..Default::default()
                    },
                    &Progress::default(),
                )
            });
            (delete.join().unwrap(), child.join().unwrap())
        });
        assert!(
            deleted.is_ok() != child.is_ok(),
            "round {round}: delete {deleted:?}, incremental {child:?}"
        );
        if let Ok(child) = child {
            assert_eq!(child.backup.parent_id, Some(parent.id));
            let target = tmp.path().join(format!("restored{round}"));
            engine
                .restore_backup(
                    &child.backup,
                    &RestoreRequest::whole(strata_engine::RestoreTarget::Dir(target.clone())),
                    &Progress::default(),
                )
                .unwrap();
            assert_eq!(tree(&target), tree(&dir));
        }
    }
    assert!(engine.check().unwrap().is_clean());
}
