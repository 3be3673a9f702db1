//! Finishing layer rewrites a crash interrupted (FORMAT.md section 7d).
//!
//! A prune killed after publishing a backup's new layer generation may
//! leave the old generation beside it, and the catalog still naming the
//! old parent. The highest generation is the backup's layer (it was durable
//! before anything else changed): the catalog is brought in line with it,
//! then the lower generations are removed.

use std::collections::HashSet;

use strata_format::ChunkId;

use super::super::gc::layer_chunks;
use super::super::{Engine, Vault};
use crate::error::{Error, Result};
use crate::repository::leases::{self, Purpose};
use crate::repository::{LayerName, Repository};
use crate::store::BackupStatus;
use crate::store::Reparent;
use std::time::Duration;

/// Removes every generation of `current.id`'s layer below `current`.
pub(crate) fn remove_older(repo: &Repository, current: &LayerName) -> Result<()> {
    for name in repo.layer_objects()? {
        if name.id == current.id && name.generation < current.generation {
            repo.remove_layer_object(&name)?;
        }
    }
    Ok(())
}

impl Engine {
    /// [`Engine::settle_rewrites`] when `vault` needs it, under the
    /// exclusive lock if it is free now (a busy repository is settled by a
    /// later cleanup; readers follow the highest generation meanwhile).
    pub(crate) fn settle_site(&self, vault: &Vault) -> Result<u64> {
        let objects = vault.repo.layer_objects()?;
        if !objects.windows(2).any(|w| w[0].id == w[1].id) {
            return Ok(0);
        }
        match leases::exclusive(&vault.repo, Purpose::Prune, Duration::ZERO) {
            Ok(_lock) => self.settle_rewrites(vault),
            Err(Error::Busy(_)) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Settles every backup of `vault` whose layer has more than one
    /// generation; returns how many. Run under the exclusive lock, so no
    /// prune is midway.
    pub(crate) fn settle_rewrites(&self, vault: &Vault) -> Result<u64> {
        let objects = vault.repo.layer_objects()?;
        let mut settled = 0;
        for current in vault.repo.list_layers()? {
            let older = objects
                .iter()
                .filter(|n| n.id == current.id && n.generation < current.generation)
                .count();
            if older == 0 {
                continue;
            }
            let bytes = vault.repo.load_layer_object(&current)?;
            let layer = bytes.decode()?;
            match self.store.backup(current.id) {
                Ok(record) if record.parent_id != layer.meta.parent_id => {
                    let moved = self.store.reparent_backup(
                        current.id,
                        &Reparent {
                            statuses: &[
                                BackupStatus::Available,
                                BackupStatus::Restoring,
                                BackupStatus::Error,
                                BackupStatus::ErrorDeleting,
                            ],
                            from: record.parent_id,
                            to: layer.meta.parent_id,
                            entries: layer.entry_count,
                            tombstones: layer.tombstone_count,
                        },
                    );
                    match moved {
                        // Being deleted: every generation goes with it.
                        Err(Error::InvalidState(_)) => continue,
                        other => other?,
                    }
                    let mut chunks = HashSet::new();
                    layer_chunks(&current.id, &bytes, &mut |c| {
                        chunks.insert(*c);
                    })?;
                    let chunks: Vec<ChunkId> = chunks.into_iter().collect();
                    vault.index.add_refs(current.id, &chunks)?;
                }
                // Known and in line, or another catalog's backup.
                Ok(_) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            remove_older(&vault.repo, &current)?;
            settled += 1;
        }
        Ok(settled)
    }
}
