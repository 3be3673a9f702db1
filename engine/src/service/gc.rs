//! Pack collection: the one place that removes packs.
//!
//! The rule (FORMAT.md section 7b): a pack is removed only when **no layer in
//! the repository** references any chunk its trailer lists, and only under
//! the repository's exclusive lock, which no running backup on any node
//! holds a shared lock against. The local catalog is never asked what is
//! garbage: a pack it does not know belongs to a lost catalog or to another
//! node, and a chunk it thinks unreferenced may be referenced by another
//! catalog's layer. A pack whose trailer cannot be read, or a repository with
//! a layer that cannot be read, is never swept: what it references is unknown.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rayon::prelude::*;
use strata_format::layer::{EntryKind, LayerRecord};

use crate::repository::layers::StoredLayer;
use strata_format::pack::PackEntry;
use strata_format::{BackupId, ChunkId, PackId};

use super::Vault;
use crate::chunkset::ChunkSet;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::repository::leases::{self, Lease, Purpose};
use crate::repository::Repository;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub removed: u64,
    /// Why nothing (or not everything) was removed, if so.
    pub skipped: Option<String>,
    /// Referenced chunks were judged by a Bloom filter (the memory budget
    /// was exceeded): a pack holding only dead chunks may have been kept.
    pub approximate: bool,
}

/// What the layers in the repository reference.
pub(crate) struct LayerScan {
    /// Every chunk any readable layer references (within the memory budget
    /// the scan was given, it may also hold some that none references).
    pub referenced: ChunkSet,
    /// Layers that cannot be read or decoded, with why.
    pub damaged: Vec<(BackupId, Error)>,
    /// Every backup whose layer was read (damaged ones included), once.
    pub layers: Vec<BackupId>,
}

/// Which chunks a scan collects, and in how much memory.
pub(crate) enum Collect<'a> {
    /// Every referenced chunk, in at most this many bytes ([`ChunkSet`]).
    Referenced(usize),
    /// Each readable layer's chunks are handed to the visitor.
    PerLayer(&'a mut dyn FnMut(BackupId, &HashSet<ChunkId>) -> Result<()>),
}

/// Reads every layer in the repository (each verified against its
/// checksum, every record decoded): one read of each layer serves every
/// question.
pub(crate) fn scan_layers(repo: &Repository, mut collect: Collect<'_>) -> Result<LayerScan> {
    let budget = match collect {
        Collect::Referenced(budget) => budget,
        Collect::PerLayer(_) => 0,
    };
    let mut scan = LayerScan {
        referenced: ChunkSet::with_budget(budget),
        damaged: Vec::new(),
        layers: Vec::new(),
    };
    // Every generation counts: one a rewrite superseded still holds a
    // backup's tree until it is removed.
    for name in repo.layer_objects()? {
        let bytes = match repo.load_layer_object(&name) {
            Ok(bytes) => bytes,
            // Removed since the listing: it references nothing.
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let id = name.id;
        if scan.layers.last() != Some(&id) {
            scan.layers.push(id);
        }
        let mut chunks = HashSet::new();
        let read = match &mut collect {
            Collect::Referenced(_) => layer_chunks(&id, &bytes, &mut |c| scan.referenced.insert(c)),
            Collect::PerLayer(visit) => layer_chunks(&id, &bytes, &mut |c| {
                chunks.insert(*c);
            })
            .and_then(|()| visit(id, &chunks)),
        };
        match read {
            Ok(()) => {}
            Err(
                e @ (Error::Corrupt { .. } | Error::Unsupported(_) | Error::InvalidArgument(_)),
            ) => scan.damaged.push((id, e)),
            Err(e) => return Err(e),
        }
    }
    Ok(scan)
}

/// Hands every chunk `bytes` (the layer of `id`) references to `found`.
pub(crate) fn layer_chunks(
    id: &BackupId,
    stored: &StoredLayer,
    found: &mut dyn FnMut(&ChunkId),
) -> Result<()> {
    let location = format!("layer {id}");
    let layer = stored.decode()?;
    for record in layer.records().map_err(|e| Error::format(&location, e))? {
        if let LayerRecord::Entry(entry) = record.map_err(|e| Error::format(&location, e))? {
            if let EntryKind::File { chunks, .. } = entry.kind {
                chunks.iter().for_each(|c| found(&c.id));
            }
        }
    }
    Ok(())
}

/// Where chunks are: each id's copies, with the pack holding each and that
/// pack's length.
type Copies = HashMap<ChunkId, Vec<(PackId, u64, PackEntry)>>;

/// Whether `pack` may go: its trailer reads and none of its chunks is
/// referenced. A pack whose trailer cannot be read is kept (and named).
pub(crate) fn is_garbage(repo: &Repository, pack: &PackId, referenced: &ChunkSet) -> Result<bool> {
    match crate::repository::packs::read::read_trailer(repo, pack).map(|t| t.entries) {
        Ok(entries) => Ok(!entries.iter().any(|e| referenced.contains(&e.id))),
        // Removed by another sweep since the listing: nothing to do.
        Err(_) if repo.pack_size(pack)?.is_none() => Ok(false),
        Err(e) => Err(e),
    }
}

impl Vault {
    /// Removes every pack no layer in the repository references, waiting up
    /// to `wait` for the exclusive lock; then forgets, in the local index,
    /// every pack that is no longer in the repository (whoever removed it).
    pub(crate) fn collect_packs(&self, wait: Duration) -> Result<Sweep> {
        // The trailing `~` makes it parse as a tag (see `release_dead_exclusive_lock`).
        let lock = match leases::exclusive(&self.repo, Purpose::Sweep, wait) {
            Ok(lock) => lock,
            Err(Error::Busy(why)) => {
                return Ok(Sweep {
                    skipped: Some(why),
                    ..Sweep::default()
                })
            }
            Err(e) => return Err(e),
        };
        self.sweep(&lock)
    }

    /// [`Vault::collect_packs`] under an exclusive lock the caller holds.
    pub(crate) fn sweep(&self, lock: &Lease) -> Result<Sweep> {
        let scan = scan_layers(&self.repo, Collect::Referenced(self.memory))?;
        if let Some((_, e)) = scan.damaged.first() {
            return Ok(Sweep {
                skipped: Some(format!(
                    "no pack removed while a layer cannot be read ({e}); `strata check` lists them"
                )),
                ..Sweep::default()
            });
        }
        let referenced = scan.referenced;
        let approximate = !referenced.is_exact();
        let packs = self.repo.list_pack_files()?;
        let verdicts: Vec<(PackId, Result<bool>)> = packs
            .par_iter()
            .map(|p| (*p, is_garbage(&self.repo, p, &referenced)))
            .collect();
        let mut sweep = Sweep {
            approximate,
            ..Sweep::default()
        };
        let mut unreadable = Vec::new();
        let mut garbage = Vec::new();
        for (pack, verdict) in verdicts {
            match verdict {
                Ok(true) => garbage.push(pack),
                Ok(false) => {}
                Err(e @ Error::Corrupt { .. }) => unreadable.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        self.remove_packs(lock, &garbage)?;
        sweep.removed += garbage.len() as u64;
        let mut present: HashSet<PackId> = packs.iter().copied().collect();
        for pack in &garbage {
            present.remove(pack);
        }
        if !unreadable.is_empty() {
            sweep.skipped = Some(format!(
                "kept {} pack(s) whose trailer cannot be read: {}",
                unreadable.len(),
                unreadable.join("; ")
            ));
        }
        self.forget_packs_not_in(&present)?;
        Ok(sweep)
    }

    /// Brings the index in line with the repository's packs: forgets the
    /// packs that are gone (a sweep or a repack, maybe another node's,
    /// removed them) and indexes, from their trailers, the packs it does
    /// not know (another node's backups, a repack's new packs), so every
    /// chunk a layer references stays found. Run under a lock that keeps
    /// sweeps and repacks out (shared or exclusive), so the listing stays
    /// true.
    pub(crate) fn sync_index(&self) -> Result<()> {
        let present: HashSet<PackId> = self.repo.list_pack_files()?.into_iter().collect();
        let known: HashSet<PackId> = self.index.packs()?.into_iter().map(|(p, _)| p).collect();
        let gone: Vec<PackId> = known.difference(&present).copied().collect();
        self.index.forget_packs(&gone)?;
        let unknown: Vec<PackId> = present.difference(&known).copied().collect();
        if !unknown.is_empty() {
            let mut scan = super::RebuildReport::default();
            let quiet = crate::progress::Progress::default();
            super::recover::index_packs(&self.repo, &*self.index, &unknown, &mut scan, &quiet)?;
        }
        Ok(())
    }

    /// Removes the packs `going`, one at a time, keeping every index row on
    /// a pack that is there. A chunk can be in two packs (a repack killed
    /// midway wrote its copy; the index names one), so before a pack goes,
    /// the rows that name it move to a copy in a pack still there (one that
    /// stays, if there is one); then the pack goes, then its other rows. A
    /// copy is thus never left unindexed, whenever this is stopped.
    pub(crate) fn remove_packs(&self, lock: &Lease, going: &[PackId]) -> Result<()> {
        let copies = self.copies_of(going)?;
        let leaving: HashSet<PackId> = going.iter().copied().collect();
        let mut gone = HashSet::new();
        for pack in going {
            lock.renew()?;
            let mut moves: HashMap<PackId, (u64, Vec<PackEntry>)> = HashMap::new();
            // Read again, not taken from `copies_of`: rows may have moved
            // here from a pack this loop removed before.
            for row in self.index.pack_chunks(pack)? {
                let there: Vec<_> = copies
                    .get(&row.id)
                    .into_iter()
                    .flatten()
                    .filter(|(p, ..)| p != pack && !gone.contains(p))
                    .collect();
                let pick = there.iter().find(|(p, ..)| !leaving.contains(p));
                if let Some((p, len, entry)) = pick.or(there.first()) {
                    moves.entry(*p).or_insert((*len, Vec::new())).1.push(*entry);
                }
            }
            for (p, (len, entries)) in moves {
                self.index.move_chunks(p, len, &entries)?;
            }
            crate::failpoint::hit("sweep.rows_moved");
            self.repo.remove_pack(pack)?;
            self.index.forget_packs(std::slice::from_ref(pack))?;
            crate::failpoint::hit("sweep.pack_forgotten");
            gone.insert(*pack);
        }
        Ok(())
    }

    /// Every copy, in a pack the index knows, of the chunks whose rows name
    /// one of `going`: where it is, with its pack's length.
    fn copies_of(&self, going: &[PackId]) -> Result<Copies> {
        let mut named: HashSet<ChunkId> = HashSet::new();
        for pack in going {
            named.extend(self.index.pack_chunks(pack)?.into_iter().map(|e| e.id));
        }
        let mut copies: Copies = HashMap::new();
        if named.is_empty() {
            return Ok(copies);
        }
        let known: Vec<PackId> = self.index.packs()?.into_iter().map(|(p, _)| p).collect();
        let trailers: Vec<(PackId, Result<crate::repository::packs::read::PackTrailer>)> = known
            .par_iter()
            .map(|p| {
                (
                    *p,
                    crate::repository::packs::read::read_trailer(&self.repo, p),
                )
            })
            .collect();
        for (pack, trailer) in trailers {
            let trailer = match trailer {
                Ok(t) => t,
                // A pack whose trailer cannot be read holds no copy to keep
                // (`check` names it); one gone already, neither.
                Err(Error::Corrupt { .. } | Error::Unsupported(_)) => continue,
                Err(_) if self.repo.pack_size(&pack)?.is_none() => continue,
                Err(e) => return Err(e),
            };
            for e in trailer.entries {
                if named.contains(&e.id) {
                    copies
                        .entry(e.id)
                        .or_default()
                        .push((pack, trailer.pack_len, e));
                }
            }
        }
        Ok(copies)
    }

    /// Drops index rows of every pack not in `present` (the repository's packs).
    fn forget_packs_not_in(&self, present: &HashSet<PackId>) -> Result<u64> {
        let index: &dyn ChunkIndex = &*self.index;
        let gone: Vec<PackId> = index
            .packs()?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !present.contains(id))
            .collect();
        index.forget_packs(&gone)?;
        Ok(gone.len() as u64)
    }
}

#[cfg(test)]
mod tests;
