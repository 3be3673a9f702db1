//! Sweep, repack and prune with a memory budget far below what the
//! referenced chunks need exactly: the set of referenced chunks turns into
//! a Bloom filter, and still no live chunk is lost while dead ones go.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_engine::repository::objects::Location;
use strata_engine::{
    CreateBackup, DataSubset, Engine, EngineConfig, Progress, PruneRequest, RestoreRequest,
    RestoreTarget, Retention,
};

fn engine(dir: &Path, budget: usize) -> Engine {
    let mut config = EngineConfig::new(dir.join("catalog.db"), Location::Posix(dir.join("repo")));
    config.gc_memory_bytes = budget;
    Engine::open(config).unwrap()
}

fn write_files(dir: &Path, seed: u32, files: u32) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        let mut body = vec![0u8; 20_000];
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes()).update(&i.to_le_bytes());
        h.finalize_xof().fill(&mut body);
        fs::write(dir.join(format!("f{seed}-{i}")), body).unwrap();
    }
}

fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().into(), fs::read(e.path()).unwrap()))
        .collect()
}

fn pack_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for shard in fs::read_dir(dir.join("repo/packs")).unwrap().flatten() {
        for pack in fs::read_dir(shard.path()).unwrap().flatten() {
            total += pack.metadata().unwrap().len();
        }
    }
    total
}

fn backup(engine: &Engine, share: &Path, incremental: bool) -> strata_engine::store::BackupRecord {
    let (share, _) = engine
        .share_for_backup(share.to_str().unwrap(), incremental)
        .unwrap();
    let req = CreateBackup {
        incremental,
        ..CreateBackup::default()
    };
    engine
        .create_backup(&share, &req, &Progress::default())
        .unwrap()
        .backup
}

fn restores(engine: &Engine, dir: &Path, id: &str, expected: &BTreeMap<PathBuf, Vec<u8>>) {
    let target = dir.join(format!("restored-{id}"));
    let backup = engine.find_backup(id).unwrap();
    let req = RestoreRequest::whole(RestoreTarget::Dir(target.clone()));
    engine
        .restore_backup(&backup, &req, &Progress::default())
        .unwrap();
    assert_eq!(&tree(&target), expected);
    fs::remove_dir_all(&target).unwrap();
}

#[test]
fn a_bloom_filtered_sweep_repack_and_prune_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Room for about 20 chunks exactly; the repository holds hundreds.
    let engine = engine(dir, 1024);
    let share = dir.join("share");
    write_files(&share, 1, 120);
    let first = backup(&engine, &share, false);
    // Half the files go; the next full backup shares the other half.
    for i in 0..60 {
        fs::remove_file(share.join(format!("f1-{i}"))).unwrap();
    }
    write_files(&share, 2, 60);
    let second = backup(&engine, &share, false);
    let second_tree = tree(&share);
    let before = pack_bytes(dir);
    engine.delete_backup(&first, false).unwrap();
    let repacked = engine
        .repack(20, false, Duration::from_secs(10), &Progress::default())
        .unwrap();
    assert!(
        repacked.approximate,
        "the budget was exceeded: {repacked:?}"
    );
    assert!(repacked.packs_repacked > 0, "{repacked:?}");
    assert!(pack_bytes(dir) < before, "dead chunks went");
    restores(&engine, dir, &second.id.to_string(), &second_tree);
    assert!(engine
        .check_data(DataSubset::All, &Progress::default())
        .unwrap()
        .is_clean());

    // A chain of three, pruned to the newest: merged, then swept (the
    // second full backup and the first two incrementals go).
    for night in 3..6u32 {
        // Each night's files replace the night before's.
        let old = if night == 3 { 60 } else { 30 };
        for i in 0..old {
            fs::remove_file(share.join(format!("f{}-{i}", night - 1))).unwrap();
        }
        write_files(&share, night, 30);
        backup(&engine, &share, true);
    }
    let newest_tree = tree(&share);
    let newest = engine
        .store()
        .list_backups(&Default::default())
        .unwrap()
        .into_iter()
        .max_by_key(|b| b.created_at)
        .unwrap();
    let req = PruneRequest {
        policy: Retention {
            last: Some(1),
            ..Retention::default()
        },
        wait: Duration::from_secs(10),
        max_unused_percent: Some(5),
        ..PruneRequest::default()
    };
    let pruned = engine.prune(&req, &Progress::default()).unwrap();
    assert_eq!(pruned.removed, 3, "{pruned:?}");
    assert_eq!(pruned.rewritten, vec![newest.id]);
    assert!(pruned.packs_removed > 0, "{pruned:?}");
    assert!(pruned.repack.approximate);
    assert!(
        pruned.pack_bytes_after < pruned.pack_bytes_before,
        "{pruned:?}"
    );
    restores(&engine, dir, &newest.id.to_string(), &newest_tree);
    assert!(engine
        .check_data(DataSubset::All, &Progress::default())
        .unwrap()
        .is_clean());
}
