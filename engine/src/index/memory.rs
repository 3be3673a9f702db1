//! A chunk index in memory: the contract of [`ChunkIndex`] with nothing
//! behind it, for fast tests and as the reference the conformance suite
//! holds every other implementation to. Durable for as long as it lives.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use strata_format::pack::PackEntry;
use strata_format::{BackupId, ChunkId, PackId};

use super::{ChunkIndex, ChunkLocation};
use crate::error::{Error, Result};

#[derive(Default)]
struct State {
    packs: BTreeMap<PackId, u64>,
    chunks: HashMap<ChunkId, ChunkLocation>,
    refs: HashMap<BackupId, BTreeSet<ChunkId>>,
}

/// [`ChunkIndex`] in memory; one lock makes every call atomic.
#[derive(Default)]
pub struct MemoryIndex {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryIndex").finish_non_exhaustive()
    }
}

impl MemoryIndex {
    fn state(&self) -> Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::Bug("the memory index's lock is poisoned".into()))
    }

    fn place(&self, pack: PackId, size: u64, entries: &[PackEntry], replace: bool) -> Result<()> {
        let mut s = self.state()?;
        s.packs.entry(pack).or_insert(size);
        for e in entries {
            let at = ChunkLocation { pack, entry: *e };
            match replace {
                true => {
                    s.chunks.insert(e.id, at);
                }
                false => {
                    s.chunks.entry(e.id).or_insert(at);
                }
            }
        }
        Ok(())
    }
}

impl ChunkIndex for MemoryIndex {
    fn contains(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.state()?.chunks.contains_key(id))
    }

    fn locate(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        Ok(self.state()?.chunks.get(id).copied())
    }

    fn reading(&self, f: &mut dyn FnMut(&dyn ChunkIndex) -> Result<()>) -> Result<()> {
        f(self)
    }

    fn commit_pack(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.place(pack, size, entries, false)
    }

    fn move_chunks(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.place(pack, size, entries, true)
    }

    fn add_refs(&self, backup: BackupId, chunks: &[ChunkId]) -> Result<()> {
        self.state()?
            .refs
            .entry(backup)
            .or_default()
            .extend(chunks.iter().copied());
        Ok(())
    }

    fn drop_refs(&self, backup: BackupId) -> Result<()> {
        self.state()?.refs.remove(&backup);
        Ok(())
    }

    fn unplaced(&self, backup: BackupId) -> Result<(u64, Option<ChunkId>)> {
        let s = self.state()?;
        let missing: Vec<&ChunkId> = s
            .refs
            .get(&backup)
            .into_iter()
            .flatten()
            .filter(|c| !s.chunks.contains_key(*c))
            .collect();
        Ok((missing.len() as u64, missing.into_iter().min().copied()))
    }

    fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        Ok(self.state()?.packs.iter().map(|(p, s)| (*p, *s)).collect())
    }

    fn pack_chunks(&self, pack: &PackId) -> Result<Vec<PackEntry>> {
        let s = self.state()?;
        let mut rows: Vec<PackEntry> = s
            .chunks
            .values()
            .filter(|l| l.pack == *pack)
            .map(|l| l.entry)
            .collect();
        rows.sort_by_key(|e| e.offset);
        Ok(rows)
    }

    fn forget_packs(&self, packs: &[PackId]) -> Result<()> {
        let mut s = self.state()?;
        for pack in packs {
            s.packs.remove(pack);
        }
        s.chunks.retain(|_, l| !packs.contains(&l.pack));
        Ok(())
    }
}
