//! The whole engine on the in-memory adapters: backups, an incremental,
//! restores, a delete, a sweep and a check, with nothing of the repository
//! on disk, once beside a SQLite catalog and once with the service store
//! and the chunk index in memory as well. What runs here runs on every
//! adapter: the engine sees only the ports.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use strata_engine::index::{ChunkIndex, MemoryIndex};
use strata_engine::repository::objects::{MemoryStore, ObjectStore};
use strata_engine::repository::Location;
use strata_engine::store::MemoryServiceStore;
use strata_engine::{CreateBackup, Engine, EngineConfig, Progress, RestoreRequest, RestoreTarget};
use strata_format::RepositoryId;

fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(&[seed])
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Every file below `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_engine_runs_whole_on_the_memory_object_store() {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("engine-{}", std::process::id());
    let config = EngineConfig::new(
        tmp.path().join("catalog.db"),
        Location::Memory(name.clone()),
    );
    exercise(&Engine::open(config).unwrap(), &name, tmp.path());
}

#[test]
fn the_engine_runs_whole_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("all-in-memory-{}", std::process::id());
    let config = EngineConfig::new(tmp.path().join("unused.db"), Location::Memory(name.clone()));
    let own_index = |_: &RepositoryId| -> strata_engine::Result<Arc<dyn ChunkIndex>> {
        Ok(Arc::new(MemoryIndex::default()))
    };
    let engine = Engine::with_catalog(
        Arc::new(MemoryServiceStore::new()),
        Arc::new(MemoryIndex::default()),
        &own_index,
        config,
    )
    .unwrap();
    exercise(&engine, &name, tmp.path());
    assert!(
        !tmp.path().join("unused.db").exists(),
        "no catalog file was made"
    );
}

/// Backs `tmp/share` up twice into the memory store `name`, restores both,
/// deletes the incremental, sweeps and checks.
fn exercise(engine: &Engine, name: &str, tmp: &Path) {
    let share = tmp.join("share");
    fs::create_dir_all(share.join("sub/deeper")).unwrap();
    fs::write(share.join("big.bin"), noise(9 << 20, 1)).unwrap();
    fs::write(share.join("sub/text.txt"), b"strata ".repeat(50_000)).unwrap();
    fs::write(share.join("sub/deeper/small"), b"x").unwrap();
    fs::write(share.join("empty"), b"").unwrap();

    let (s, _) = engine
        .share_for_backup(share.to_str().unwrap(), false)
        .unwrap();
    let full = engine
        .create_backup(&s, &CreateBackup::default(), &Progress::default())
        .unwrap()
        .backup;
    let full_tree = tree(&share);

    fs::write(share.join("sub/text.txt"), b"changed ".repeat(40_000)).unwrap();
    fs::remove_file(share.join("sub/deeper/small")).unwrap();
    fs::write(share.join("new.bin"), noise(3 << 20, 2)).unwrap();
    let wanted = CreateBackup {
        incremental: true,
        ..CreateBackup::default()
    };
    let incremental = engine
        .create_backup(&s, &wanted, &Progress::default())
        .unwrap()
        .backup;
    assert_eq!(incremental.parent_id, Some(full.id));
    let incremental_tree = tree(&share);

    let store = MemoryStore::existing(name).unwrap();
    assert!(!store.list_all("packs/").unwrap().is_empty());
    assert_eq!(store.list_all("layers/").unwrap().len(), 2);
    assert!(
        !tmp.join("repo").exists(),
        "nothing of the repository is on disk"
    );

    let restore = |backup, into: &str| {
        let target = tmp.join(into);
        let req = RestoreRequest::whole(RestoreTarget::Dir(target.clone()));
        engine
            .restore_backup(backup, &req, &Progress::default())
            .unwrap();
        tree(&target)
    };
    assert_eq!(restore(&full, "r-full"), full_tree);
    assert_eq!(restore(&incremental, "r-incremental"), incremental_tree);

    // Deleting the incremental and sweeping leaves the full whole.
    let incremental = engine.find_backup(&incremental.id.to_string()).unwrap();
    engine.delete_backup(&incremental, false).unwrap();
    engine.cleanup(Some(Duration::ZERO)).unwrap();
    assert_eq!(store.list_all("layers/").unwrap().len(), 1);
    let report = engine.check().unwrap();
    assert!(report.is_clean(), "{report:?}");
    let full = engine.find_backup(&full.id.to_string()).unwrap();
    assert_eq!(restore(&full, "r-full-again"), full_tree);
}
