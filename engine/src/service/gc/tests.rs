//! Pack removal when a chunk has copies in several packs.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use strata_format::pack::PackEntry;
use strata_format::PackId;

use crate::repository::leases;
use crate::repository::objects::Location;
use crate::repository::packs::read::read_trailer;
use crate::repository::packs::write::{self, NewBlob, Placement, Sink};
use crate::repository::Repository;
use crate::service::{CreateBackup, DataSubset, Engine, EngineConfig};
use crate::Progress;

/// Notes the packs the writer lands.
#[derive(Default)]
struct Landed(Mutex<Vec<PackId>>);

impl Sink for Landed {
    fn appended(&self, _: u64) {}
    fn indexed(&self, pack: PackId, _: &[PackEntry]) {
        self.0.lock().unwrap().push(pack);
    }
}

fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| (e.file_name().into(), fs::read(e.path()).unwrap()))
        .collect()
}

/// Writes a new pack holding a copy of every chunk of `pack`, the way a
/// repack stopped before it moved the index rows leaves one: the index
/// still places those chunks in `pack`.
fn copy_pack(repo: &Repository, index: &dyn crate::index::ChunkIndex, pack: &PackId) -> PackId {
    let bytes = repo
        .objects()
        .get(&crate::repository::layout::pack(pack))
        .unwrap();
    let landed = Landed::default();
    std::thread::scope(|s| {
        let (tx, handle) = write::spawn(s, repo, index, Placement::New, &landed);
        for e in read_trailer(repo, pack).unwrap().entries {
            let at = e.offset as usize;
            tx.send(NewBlob {
                id: e.id,
                stored: bytes[at..at + e.stored_len as usize].to_vec(),
                raw_len: e.raw_len,
                compression: e.compression,
            })
            .unwrap();
        }
        drop(tx);
        handle.join().unwrap().unwrap();
    });
    let landed = landed.0.into_inner().unwrap();
    assert_eq!(landed.len(), 1);
    landed[0]
}

/// Packs removed while their chunks have copies in another pack: every row
/// that named them ends on the copy in the pack that stays, so the index
/// stays whole, `check` and `check --read-data` are clean and the backup
/// restores byte-exact. (Without the move, the rows are forgotten with
/// their pack and the chunks are lost to the index.)
#[test]
fn removing_packs_keeps_every_chunk_indexed_on_a_copy_that_stays() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    fs::create_dir_all(&share).unwrap();
    for i in 0..12u32 {
        let mut body = vec![0u8; 30_000 + i as usize * 1_000];
        let mut h = blake3::Hasher::new();
        h.update(&i.to_le_bytes());
        h.finalize_xof().fill(&mut body);
        fs::write(share.join(format!("f{i}")), body).unwrap();
    }
    let expected = tree(&share);
    let config = EngineConfig::new(
        dir.path().join("catalog.db"),
        Location::Posix(dir.path().join("repo")),
    );
    let engine = Engine::open(config).unwrap();
    let (record, _) = engine
        .share_for_backup(share.to_str().unwrap(), false)
        .unwrap();
    let backup = engine
        .create_backup(&record, &CreateBackup::default(), &Progress::default())
        .unwrap()
        .backup;

    let vault = engine.site_for(None);
    let original = vault.repo.list_pack_files().unwrap();
    assert_eq!(original.len(), 1, "the test wants its chunks in one pack");
    let first = original[0];
    let chunks = vault.index.pack_chunks(&first).unwrap();
    assert_eq!(chunks.len(), 12);
    let also_going = copy_pack(&vault.repo, &*vault.index, &first);
    let staying = copy_pack(&vault.repo, &*vault.index, &first);
    for c in &chunks {
        assert_eq!(vault.index.locate(&c.id).unwrap().unwrap().pack, first);
    }

    let lock = leases::exclusive(&vault.repo, leases::Purpose::Sweep, Duration::ZERO).unwrap();
    vault.remove_packs(&lock, &[first, also_going]).unwrap();
    drop(lock);

    assert_eq!(vault.repo.list_pack_files().unwrap(), vec![staying]);
    for c in &chunks {
        let at = vault.index.locate(&c.id).unwrap().unwrap();
        assert_eq!(at.pack, staying, "chunk {} left on a removed pack", c.id);
    }
    let known: Vec<PackId> = vault
        .index
        .packs()
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(known, vec![staying]);

    let check = engine.check().unwrap();
    assert!(check.bad_packs.is_empty(), "{check:?}");
    assert!(check.index_mismatches.is_empty(), "{check:?}");
    assert_eq!(check.unindexed_chunks, 0, "{check:?}");
    let data = engine
        .check_data(DataSubset::All, &Progress::default())
        .unwrap();
    assert!(
        data.damaged_packs.is_empty() && data.damaged_chunks.is_empty(),
        "{data:?}"
    );
    assert_eq!(data.chunks_verified, 12);

    let target = dir.path().join("restored");
    let found = engine.find_backup(&backup.id.to_string()).unwrap();
    let req =
        crate::service::RestoreRequest::whole(crate::service::RestoreTarget::Dir(target.clone()));
    engine
        .restore_backup(&found, &req, &Progress::default())
        .unwrap();
    assert_eq!(tree(&target), expected);
}
