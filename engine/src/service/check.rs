//! `check`: do the catalog and the repository agree, and is every layer and
//! pack trailer intact? Reads every layer and every pack's trailer (never a
//! pack body) and changes nothing: dead operations and leftovers are
//! reported, not cleaned.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use strata_format::pack::PackEntry;
use strata_format::{ChunkId, PackId};

use super::gc::{scan_layers, Collect};
use super::{Engine, Vault};
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::store::{BackupFilter, BackupRecord, BackupStatus};

/// What `strata check` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Packs the index names that are missing or of the wrong size.
    pub bad_packs: Vec<String>,
    /// Packs whose trailer cannot be read or fails its checksum.
    pub damaged_packs: Vec<String>,
    /// Layers that fail their checksum or cannot be decoded.
    pub damaged_layers: Vec<String>,
    /// Index rows that disagree with their pack's trailer, and trailer
    /// chunks of indexed packs the index does not know.
    pub index_mismatches: Vec<String>,
    /// Chunks a live backup of this catalog needs that the index lacks.
    pub unindexed_chunks: u64,
    /// Pack files no layer references (`cleanup` removes them); not counted
    /// while a backup runs (its packs have no layer yet).
    pub garbage_packs: u64,
    /// Pack files this catalog does not index that layers of other
    /// catalogs (or of a lost one) reference: not a fault.
    pub foreign_packs: u64,
    /// Live backups whose layer (or an ancestor's) is missing.
    pub missing_layers: Vec<String>,
    /// Layers in the repository this catalog has no backup for.
    pub foreign_layers: u64,
    /// Objects under `tmp/` whose writer is not a live process of this host.
    pub temp_files: u64,
    /// Operations recorded as running whose process is gone.
    pub dead_operations: u64,
    /// Live backups a restore would refuse (their merged tree breaks a
    /// rule a restore enforces), each with the path and why.
    pub unrestorable: Vec<String>,
}

impl CheckReport {
    /// True when nothing is damaged, missing or left over.
    pub fn is_clean(&self) -> bool {
        self.bad_packs.is_empty()
            && self.damaged_packs.is_empty()
            && self.damaged_layers.is_empty()
            && self.index_mismatches.is_empty()
            && self.unindexed_chunks == 0
            && self.garbage_packs == 0
            && self.missing_layers.is_empty()
            && self.temp_files == 0
            && self.dead_operations == 0
            && self.unrestorable.is_empty()
    }
}

/// How many mismatches are named one by one (the count is always exact).
const NAMED: usize = 20;

fn compare_index(
    pack: &PackId,
    trailer: &[PackEntry],
    rows: &[PackEntry],
    known: impl Fn(&PackEntry) -> Result<bool>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let by_id: std::collections::HashMap<_, _> = trailer.iter().map(|e| (e.id, e)).collect();
    for row in rows {
        if by_id.get(&row.id) != Some(&row) {
            out.push(format!(
                "pack {pack}: index places chunk {} at offset {}, the trailer does not",
                row.id, row.offset
            ));
        }
    }
    for e in trailer {
        if !known(e)? {
            out.push(format!(
                "pack {pack}: chunk {} (offset {}) is not in the index",
                e.id, e.offset
            ));
        }
    }
    Ok(out)
}

impl Engine {
    /// Compares the catalog with every repository it indexes; reads every
    /// layer and every pack trailer, no pack body.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let backups = self.store.list_backups(&BackupFilter::default())?;
        let vaults: Vec<&Vault> = self.vaults().collect();
        let mut by_site: Vec<Vec<&BackupRecord>> = vec![Vec::new(); vaults.len()];
        for b in &backups {
            match self.vault_of(b) {
                Ok(vault) => {
                    let id = vault.repo.config().repository_id;
                    if let Some(i) = vaults
                        .iter()
                        .position(|s| s.repo.config().repository_id == id)
                    {
                        by_site[i].push(b);
                    }
                }
                Err(e) => report.missing_layers.push(e.to_string()),
            }
        }
        for (vault, backups) in vaults.into_iter().zip(by_site) {
            self.check_site(vault, &backups, &mut report)?;
        }
        if report.index_mismatches.len() > NAMED {
            let more = report.index_mismatches.len() - NAMED;
            report.index_mismatches.truncate(NAMED);
            report.index_mismatches.push(format!("… and {more} more"));
        }
        let clock = self.store.store_clock()?;
        report.dead_operations = self
            .store
            .operations()?
            .iter()
            .filter(|op| Self::is_dead(op, clock))
            .count() as u64;
        Ok(report)
    }
}

impl Engine {
    /// Of the indexed packs `gone` from the repository, those a layer still
    /// needs: a chunk of theirs that a layer references is in no pack of
    /// the repository, listed again now (another node's repack or sweep
    /// removes packs while this check runs; what it moved is elsewhere).
    fn still_needed(
        &self,
        vault: &Vault,
        gone: &[PackId],
        listed: &[PackId],
        referenced: &HashSet<ChunkId>,
        mut in_repository: HashSet<ChunkId>,
    ) -> Result<Vec<PackId>> {
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        let before: HashSet<&PackId> = listed.iter().collect();
        for pack in vault.repo.list_pack_files()? {
            if before.contains(&pack) {
                continue;
            }
            if let Ok(t) = crate::repository::packs::read::read_trailer(&vault.repo, &pack) {
                in_repository.extend(t.entries.iter().map(|e| e.id));
            }
        }
        let mut needed = Vec::new();
        for pack in gone {
            let rows = vault.index.pack_chunks(pack)?;
            if rows
                .iter()
                .any(|e| referenced.contains(&e.id) && !in_repository.contains(&e.id))
            {
                needed.push(*pack);
            }
        }
        Ok(needed)
    }

    /// [`Engine::check`] of one repository and the backups it holds.
    fn check_site(
        &self,
        vault: &Vault,
        backups: &[&BackupRecord],
        report: &mut CheckReport,
    ) -> Result<()> {
        // The live backups of this catalog: their layers' chunks must all
        // be indexed (counted as the one scan of the layers goes by).
        let live: HashSet<_> = backups
            .iter()
            .filter(|b| matches!(b.status, BackupStatus::Available | BackupStatus::Restoring))
            .map(|b| b.id)
            .collect();
        let index: &dyn ChunkIndex = &*vault.index;
        let mut unindexed = 0;
        // Exact: `check` names garbage packs, so none may hide behind a
        // false positive.
        let mut exact = HashSet::new();
        let scan = scan_layers(
            &vault.repo,
            Collect::PerLayer(&mut |id, chunks| {
                exact.extend(chunks.iter().copied());
                if live.contains(&id) {
                    for c in chunks {
                        if !index.contains(c)? {
                            unindexed += 1;
                        }
                    }
                }
                Ok(())
            }),
        )?;
        report.unindexed_chunks += unindexed;
        report
            .damaged_layers
            .extend(scan.damaged.iter().map(|(_, e)| e.to_string()));

        let backups_running = crate::repository::leases::live_shared_count(&vault.repo)? > 0;
        let files = vault.repo.list_pack_files()?;
        let indexed = index.packs()?;
        let known: HashSet<PackId> = indexed.iter().map(|(p, _)| *p).collect();
        let mut gone = Vec::new();
        for (pack, size) in &indexed {
            match vault.repo.pack_size(pack)? {
                Some(s) if s == *size => {}
                Some(_) => report.bad_packs.push(pack.to_string()),
                None => gone.push(*pack),
            }
        }
        let repo = &vault.repo;
        let trailers: Vec<(PackId, Result<Vec<PackEntry>>)> = files
            .par_iter()
            .map(|p| {
                (
                    *p,
                    crate::repository::packs::read::read_trailer(repo, p).map(|t| t.entries),
                )
            })
            .collect();
        let mut in_repository: HashSet<ChunkId> = HashSet::new();
        for (pack, trailer) in trailers {
            if let Ok(t) = &trailer {
                in_repository.extend(t.iter().map(|e| e.id));
            }
            let trailer = match trailer {
                Ok(t) => t,
                Err(e @ (Error::Corrupt { .. } | Error::Unsupported(_))) => {
                    report.damaged_packs.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let referenced = trailer.iter().any(|e| exact.contains(&e.id));
            if known.contains(&pack) {
                let rows = index.pack_chunks(&pack)?;
                let found = compare_index(&pack, &trailer, &rows, |e| index.contains(&e.id))?;
                report.index_mismatches.extend(found);
            } else if referenced {
                report.foreign_packs += 1;
            }
            // A running backup's packs have no layer yet.
            if !referenced && !backups_running {
                report.garbage_packs += 1;
            }
        }

        report.bad_packs.extend(
            self.still_needed(vault, &gone, &files, &exact, in_repository)?
                .iter()
                .map(PackId::to_string),
        );
        let ours: HashSet<_> = backups.iter().map(|b| b.id).collect();
        let in_repository: HashSet<_> = scan.layers.iter().copied().collect();
        for b in backups.iter().filter(|b| live.contains(&b.id)) {
            for id in self.chain(b)? {
                if !in_repository.contains(&id) {
                    report
                        .missing_layers
                        .push(format!("{id} (needed by {})", b.id));
                }
            }
        }
        report.foreign_layers += scan.layers.iter().filter(|id| !ours.contains(id)).count() as u64;
        let mut lengths = HashMap::new();
        let damaged: HashSet<_> = scan.damaged.iter().map(|(id, _)| *id).collect();
        for b in backups.iter().filter(|b| live.contains(&b.id)) {
            let chain = self.chain(b)?;
            if chain
                .iter()
                .any(|id| damaged.contains(id) || !in_repository.contains(id))
            {
                continue;
            }
            match crate::restore::refusal(&vault.repo, index, &b.id, &mut lengths) {
                Ok(()) => {}
                Err(e @ Error::Corrupt { .. }) => {
                    report.unrestorable.push(format!("backup {}: {e}", b.id));
                }
                Err(e) => return Err(e),
            }
        }
        // A running operation's unfinished puts are not leftovers.
        let boot = crate::process::boot_id();
        report.temp_files += vault
            .repo
            .unfinished()?
            .iter()
            .filter(|u| match &u.writer {
                Some(w) => crate::process::is_alive(&w.host, &boot, w.pid, w.start) != Some(true),
                None => true,
            })
            .count() as u64;
        Ok(())
    }
}
