//! `backup import`: an exported record made a backup of this catalog again.
//!
//! The record is input from outside, the layer is the repository's truth:
//! every field the layer knows (project, share, size, parent, incremental,
//! backup type, snapshot, data timestamp) is taken from the layer, and a
//! record that disagrees is refused naming the field. Only what an
//! operator may change after a backup (name, description) comes from the
//! record, checked as a user's values are. A backup never depends on a
//! backup of another project, and no refusal names another project's
//! objects.

use std::collections::HashSet;

use strata_format::layer::Layer;

use super::export::decode;
use super::recover::{checked_layer, ensure_share, index_opened, index_packs, LayerSummary};
use super::{Engine, RebuildReport, Vault};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::BackupRecord;
use crate::validate;

/// The backup as its layer records it, with the name and description of
/// `claimed`; refused when `claimed` disagrees with the layer on a field
/// the layer knows.
pub(crate) fn reconcile(claimed: &BackupRecord, layer: BackupRecord) -> Result<BackupRecord> {
    macro_rules! same {
        ($field:ident) => {
            if claimed.$field != layer.$field {
                return Err(Error::InvalidArgument(format!(
                    "the record of backup {} says another {} than its layer in the repository \
                     says; the import is refused",
                    claimed.id,
                    stringify!($field)
                )));
            }
        };
    }
    same!(id);
    same!(project);
    same!(share_id);
    same!(size_gib);
    same!(parent_id);
    same!(is_incremental);
    same!(backup_type);
    same!(snapshot_id);
    same!(data_timestamp);
    validate::text("backup name", claimed.name.as_deref(), false)?;
    validate::text("description", claimed.description.as_deref(), true)?;
    validate::text("topic", claimed.topic.as_deref(), true)?;
    Ok(BackupRecord {
        name: claimed.name.clone(),
        description: claimed.description.clone(),
        topic: claimed.topic.clone(),
        ..layer
    })
}

impl Engine {
    /// Recreates an exported backup record in this catalog: its share if
    /// missing (adopted: its path is the layer's, unconfirmed), the index of
    /// every pack this catalog does not know yet, and the backup,
    /// `available`. Its parent's record must be here already, a backup of
    /// the same project and share.
    pub fn import_backup(
        &self,
        service: &str,
        url: &str,
        progress: &Progress,
    ) -> Result<BackupRecord> {
        let record = decode(service, url)?;
        let vault = self.site_with_id(&record.repository_id, &record.repository)?;
        let claimed = record.backup.record()?;
        if record.chain.last() != Some(&record.backup.id) {
            return Err(Error::InvalidArgument(
                "the backup record does not decode: its chain does not end with the backup".into(),
            ));
        }
        if self.store.backup(claimed.id).is_ok() {
            return Err(Error::InvalidArgument(format!(
                "backup {} is already in this catalog",
                claimed.id
            )));
        }
        let bytes = vault.repo.load_layer(&claimed.id).map_err(|e| match e {
            Error::NotFound { name, .. } => Error::Corrupt {
                location: name,
                detail: format!(
                    "the layer of backup {} is missing from the repository",
                    claimed.id
                ),
            },
            other => other,
        })?;
        let layer = checked_layer(claimed.id, &bytes)?;
        let backup = self.admissible(&claimed, &layer, vault)?;
        let known: HashSet<_> = vault.index.packs()?.into_iter().map(|(p, _)| p).collect();
        let unknown: Vec<_> = vault
            .repo
            .list_pack_files()?
            .into_iter()
            .filter(|p| !known.contains(p))
            .collect();
        let mut scan = RebuildReport::default();
        index_packs(&vault.repo, &*vault.index, &unknown, &mut scan, progress)?;
        crate::failpoint::hit("import.packs_indexed");
        let summary = match index_opened(&*vault.index, layer) {
            Ok(s) if s.unplaced.0 == 0 => s,
            Ok(s) => {
                vault.index.drop_refs(backup.id)?;
                return Err(Error::Corrupt {
                    location: format!("backup {}", backup.id),
                    detail: format!(
                        "{} chunk(s) it needs are in no readable pack (the first: {}){}",
                        s.unplaced.0,
                        s.unplaced.1.map(|c| c.to_string()).unwrap_or_default(),
                        scan.damaged
                            .first()
                            .map(|d| format!("; {d}"))
                            .unwrap_or_default()
                    ),
                });
            }
            Err(e) => {
                vault.index.drop_refs(backup.id)?;
                return Err(e);
            }
        };
        let recorded = ensure_share(&*self.store, &summary).and_then(|()| {
            self.store.import_backup(
                &backup,
                &summary.problems(),
                summary.meta.service.share_root_dev,
            )
        });
        if let Err(e) = recorded {
            vault.index.drop_refs(backup.id)?;
            return Err(e);
        }
        crate::failpoint::hit("import.recorded");
        progress.finish();
        self.store.backup(backup.id)
    }

    /// The vault of repository `id`, which this catalog must index.
    fn site_with_id(&self, id: &str, location: &str) -> Result<&Vault> {
        if let Some(vault) = self
            .vaults()
            .find(|s| s.repo.config().repository_id.to_string() == id)
        {
            return Ok(vault);
        }
        let ours: Vec<String> = self
            .vaults()
            .map(|s| format!("{} at {}", s.repo.config().repository_id, s.repo.location()))
            .collect();
        Err(Error::InvalidArgument(format!(
            "the record is of repository {id} at {location}; this catalog indexes {}",
            ours.join(", ")
        )))
    }

    /// The backup to record for `claimed`, whose layer (in `vault`) is
    /// `layer`: the layer's fields, checked against the record, this
    /// project's, in the repository its type keeps backups in, on a parent
    /// of this project and share that this catalog has.
    fn admissible(
        &self,
        claimed: &BackupRecord,
        layer: &Layer<'_>,
        vault: &Vault,
    ) -> Result<BackupRecord> {
        let summary = LayerSummary {
            meta: layer.meta.clone(),
            entries: layer.entry_count,
            tombstones: layer.tombstone_count,
            unplaced: (0, None),
        };
        let backup = reconcile(claimed, summary.backup())?;
        if backup.project != self.config.project {
            return Err(Error::NotPermitted(format!(
                "backup {} is a backup of project {:?}; it is imported by that project",
                backup.id, backup.project
            )));
        }
        let home = self.vault_of(&backup)?.repo.config().repository_id;
        if home != vault.repo.config().repository_id {
            return Err(Error::InvalidArgument(format!(
                "backup {} is of backup type {}, whose backups this catalog keeps in repository \
                 {home}, not in {}",
                backup.id,
                backup.backup_type.as_deref().unwrap_or("default"),
                vault.repo.config().repository_id
            )));
        }
        if let Some(parent) = backup.parent_id {
            let ours = self
                .store
                .backup(parent)
                .is_ok_and(|p| p.project == backup.project && p.share_id == backup.share_id);
            if !ours {
                return Err(Error::NotFound {
                    kind: "parent backup record",
                    name: format!(
                        "{parent} (import the records of backup {} first)",
                        backup.id
                    ),
                });
            }
        }
        match self.store.share(backup.share_id) {
            Ok(share) if share.project != backup.project => Err(Error::NotPermitted(format!(
                "backup {} names share {}, which is not a share of this project",
                backup.id, backup.share_id
            ))),
            Ok(_) | Err(Error::NotFound { .. }) => Ok(backup),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_format::{BackupId, ShareId};

    fn layer_record() -> BackupRecord {
        BackupRecord {
            size_gib: 2,
            data_timestamp: Some(7),
            ..BackupRecord::new(BackupId([1; 16]), "p".into(), ShareId([2; 16]), 5)
        }
    }

    #[test]
    fn a_record_that_disagrees_with_its_layer_is_refused_naming_the_field() {
        let layer = layer_record();
        type Forge = fn(&mut BackupRecord);
        let cases: [(&str, Forge); 8] = [
            ("project", |b| b.project = "other".into()),
            ("share_id", |b| b.share_id = ShareId([3; 16])),
            ("size_gib", |b| b.size_gib = 0),
            ("parent_id", |b| b.parent_id = Some(BackupId([4; 16]))),
            ("is_incremental", |b| b.is_incremental = true),
            ("backup_type", |b| b.backup_type = Some("gold".into())),
            ("data_timestamp", |b| b.data_timestamp = Some(8)),
            ("snapshot_id", |b| {
                b.snapshot_id = Some(strata_format::SnapshotId([5; 16]))
            }),
        ];
        for (field, forge) in cases {
            let mut claimed = layer.clone();
            forge(&mut claimed);
            let err = reconcile(&claimed, layer.clone()).unwrap_err().to_string();
            assert!(err.contains(&format!("another {field} ")), "{field}: {err}");
        }
    }

    #[test]
    fn names_come_from_the_record_and_figures_from_the_layer() {
        let layer = layer_record();
        let mut claimed = layer.clone();
        claimed.name = Some("renamed".into());
        claimed.file_count = 1_000_000;
        let b = reconcile(&claimed, layer.clone()).unwrap();
        assert_eq!(b.name.as_deref(), Some("renamed"));
        assert_eq!(b.file_count, layer.file_count);
        claimed.name = Some("\u{1b}]0;x".into());
        assert!(reconcile(&claimed, layer).is_err());
    }
}
