//! Backup operations with their status transitions:
//! create (`creating → available | error`; full, or incremental on a parent), restore (`available → restoring →
//! available`, target share `backup_restoring → available |
//! backup_restoring_error`) and delete (`available|error → deleting →
//! deleted | error_deleting`).

use std::path::{Path, PathBuf};

use strata_format::BackupId;

use super::Engine;
use crate::backup::{self, BackupPlan};
use crate::catalog::{BackupRecord, BackupStatus, ParentChoice, Problem, Share, ShareStatus};
use crate::clock::now_ns;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::repository::new_uuid;
use crate::restore::{self, RestoreOutcome};

const GIB: u64 = 1 << 30;

#[derive(Clone, Debug, Default)]
pub struct CreateBackup {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Build on the share's latest available backup instead of a full backup.
    pub incremental: bool,
    /// Build on this backup (id or name); implies `incremental`.
    pub parent: Option<String>,
    /// Read and hash every file, trusting no metadata (incremental only).
    pub rehash: bool,
}

/// A finished backup: its record and its report.
#[derive(Debug)]
pub struct BackupResult {
    pub backup: BackupRecord,
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    /// Restore into this directory (missing or empty) instead of the source share.
    pub target_dir: Option<PathBuf>,
}

impl Engine {
    pub fn find_backup(&self, id_or_name: &str) -> Result<BackupRecord> {
        self.catalog.find_backup(&self.config.project, id_or_name)
    }

    /// Backs up `share`. The share is `backup_creating` while this runs and
    /// `available` afterwards, whatever happens; a failure is recorded on
    /// the backup (`error`, with `fail_reason`).
    pub fn create_backup(
        &mut self,
        share: &Share,
        req: &CreateBackup,
        progress: &Progress,
    ) -> Result<BackupResult> {
        let record = BackupRecord {
            id: BackupId(new_uuid()?),
            project: self.config.project.clone(),
            share_id: share.id,
            name: req.name.clone(),
            description: req.description.clone(),
            status: BackupStatus::Creating,
            progress: 0,
            restore_progress: 0,
            size_gib: 0,
            created_at: now_ns(),
            updated_at: None,
            host: Some(self.host.clone()),
            availability_zone: self.config.availability_zone.clone(),
            backup_type: None,
            topic: Some("strata-data".into()),
            is_incremental: false,
            parent_id: None,
            data_timestamp: None,
            fail_reason: None,
            file_count: 0,
            dir_count: 0,
            skipped_count: 0,
            logical_bytes: 0,
            new_bytes: 0,
            stored_bytes: 0,
            duration_ms: 0,
            read_bytes: 0,
            changed_count: 0,
            deleted_count: 0,
        };
        let choice = match (&req.parent, req.incremental) {
            (Some(parent), _) => ParentChoice::Explicit(self.find_backup(parent)?.id),
            (None, true) => ParentChoice::Latest,
            (None, false) => ParentChoice::None,
        };
        let parent = self
            .catalog
            .begin_backup(share.id, &record, choice)
            .map_err(|e| busy_share(e, share))?;
        let parent_chain = match parent {
            Some(id) => self.catalog.backup(id).and_then(|p| self.chain(&p)),
            None => Ok(Vec::new()),
        };
        let parent_chain = match parent_chain {
            Ok(chain) => chain,
            Err(e) => {
                self.catalog.fail_backup(record.id, &e.to_string())?;
                self.catalog.transition_share(
                    share.id,
                    &[ShareStatus::BackupCreating],
                    ShareStatus::Available,
                )?;
                return Err(e);
            }
        };
        let plan = BackupPlan {
            backup_id: record.id,
            share_id: share.id,
            share_name: share.name.clone(),
            share_path: PathBuf::from(&share.path),
            project: record.project.clone(),
            name: req.name.clone().unwrap_or_default(),
            description: req.description.clone().unwrap_or_default(),
            parent_chain,
            rehash: req.rehash,
            zstd_level: self.zstd_level(),
        };
        let outcome = backup::run(&self.repo, &self.catalog, &plan, progress);
        let finished = match outcome {
            Ok(outcome) => {
                let s = &outcome.stats;
                let mut done = record.clone();
                done.size_gib = s.logical_bytes.div_ceil(GIB);
                done.file_count = s.files + s.hardlinks;
                done.dir_count = s.dirs;
                done.skipped_count = s.skipped;
                done.logical_bytes = s.logical_bytes;
                done.new_bytes = s.new_bytes;
                done.stored_bytes = s.stored_bytes;
                done.duration_ms = outcome.duration.as_millis() as u64;
                done.read_bytes = outcome.read_bytes;
                done.changed_count = outcome.changed;
                done.deleted_count = outcome.deleted;
                done.data_timestamp = Some(outcome.data_timestamp_ns);
                if s.skipped > 0 {
                    done.fail_reason = Some(format!(
                        "{} path(s) could not be backed up; see the report",
                        s.skipped
                    ));
                }
                self.catalog
                    .complete_backup(&done, &outcome.problems)
                    .map(|()| outcome.problems)
            }
            Err(e) => Err(e),
        };
        let released = self.catalog.transition_share(
            share.id,
            &[ShareStatus::BackupCreating],
            ShareStatus::Available,
        );
        match finished {
            Ok(problems) => {
                released?;
                Ok(BackupResult {
                    backup: self.catalog.backup(record.id)?,
                    problems,
                })
            }
            Err(e) => {
                self.catalog.fail_backup(record.id, &e.to_string())?;
                Err(e)
            }
        }
    }

    /// The chain of layers to apply for `backup`: its full ancestor first.
    pub fn chain(&self, backup: &BackupRecord) -> Result<Vec<BackupId>> {
        let mut chain = vec![backup.id];
        let mut parent = backup.parent_id;
        while let Some(id) = parent {
            if chain.contains(&id) || chain.len() > 100_000 {
                return Err(Error::Corrupt {
                    location: format!("backup {}", backup.id),
                    detail: "parent chain loops".into(),
                });
            }
            chain.push(id);
            parent = self.catalog.backup(id)?.parent_id;
        }
        chain.reverse();
        Ok(chain)
    }

    /// Restores `backup` into its source share or into an empty directory.
    pub fn restore_backup(
        &mut self,
        backup: &BackupRecord,
        req: &RestoreRequest,
        progress: &Progress,
    ) -> Result<RestoreOutcome> {
        let (target, share) = match &req.target_dir {
            Some(dir) => (prepare_target_dir(dir)?, None),
            None => {
                let share = self.catalog.share(backup.share_id)?;
                (PathBuf::from(&share.path), Some(share))
            }
        };
        let chain = self.chain(backup)?;
        self.catalog.transition_backup(
            backup.id,
            &[BackupStatus::Available],
            BackupStatus::Restoring,
        )?;
        if let Some(share) = &share {
            if let Err(e) = self.catalog.transition_share(
                share.id,
                &[ShareStatus::Available, ShareStatus::BackupRestoringError],
                ShareStatus::BackupRestoring,
            ) {
                self.catalog.transition_backup(
                    backup.id,
                    &[BackupStatus::Restoring],
                    BackupStatus::Available,
                )?;
                return Err(busy_share(e, share));
            }
        }
        let result = restore::run(&self.repo, &self.catalog, &chain, &target, progress);
        if result.is_ok() {
            self.catalog.set_backup_progress(backup.id, 100, true)?;
        }
        self.catalog.transition_backup(
            backup.id,
            &[BackupStatus::Restoring],
            BackupStatus::Available,
        )?;
        if let Some(share) = &share {
            let to = if result.is_ok() {
                ShareStatus::Available
            } else {
                ShareStatus::BackupRestoringError
            };
            self.catalog
                .transition_share(share.id, &[ShareStatus::BackupRestoring], to)?;
        }
        result
    }

    /// Deletes a backup: its layer, its chunk references, and every pack left
    /// holding no referenced chunk.
    pub fn delete_backup(&mut self, backup: &BackupRecord) -> Result<()> {
        let dependents = self.catalog.dependents(backup.id)?;
        if !dependents.is_empty() {
            return Err(Error::InvalidState(format!(
                "backup {} has dependent backups: {}",
                backup.id,
                dependents
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.catalog.transition_backup(
            backup.id,
            &[
                BackupStatus::Available,
                BackupStatus::Error,
                BackupStatus::ErrorDeleting,
            ],
            BackupStatus::Deleting,
        )?;
        let result = self.remove_backup_data(backup.id);
        if let Err(e) = &result {
            self.catalog.transition_backup(
                backup.id,
                &[BackupStatus::Deleting],
                BackupStatus::ErrorDeleting,
            )?;
            self.catalog
                .fail_backup_deleting(backup.id, &e.to_string())?;
        }
        result
    }

    /// Layer first (the backup stops existing in the repository), then the
    /// index rows of dead packs, then the pack files.
    fn remove_backup_data(&mut self, id: BackupId) -> Result<()> {
        self.repo.remove_layer(&id)?;
        let dead = self.catalog.drop_refs_and_collect_dead_packs(id)?;
        for pack in &dead {
            self.repo.remove_pack(pack)?;
        }
        self.catalog.remove_backup_row(id)
    }

    pub fn rename_backup(
        &self,
        backup: &BackupRecord,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<()> {
        self.catalog.rename_backup(backup.id, name, description)
    }
}

fn busy_share(e: Error, share: &Share) -> Error {
    match e {
        Error::Busy(_) => {
            let running = match share.status {
                ShareStatus::BackupCreating => "a backup of it is running",
                ShareStatus::BackupRestoring => "a restore into it is running",
                ShareStatus::InUse => "it is in use (pass --force to back it up anyway)",
                _ => "it is busy",
            };
            Error::Busy(format!(
                "share {} is {}: {running}",
                share.name,
                share.status.as_str()
            ))
        }
        other => other,
    }
}

/// A restore target directory must be missing (it is created) or empty.
fn prepare_target_dir(dir: &Path) -> Result<PathBuf> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        Err(e) => return Err(Error::io(dir, e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::InvalidArgument(format!(
                "restore target {} exists and is not a directory",
                dir.display()
            )))
        }
        Ok(_) => {
            if std::fs::read_dir(dir).at(dir)?.next().is_some() {
                return Err(Error::InvalidArgument(format!(
                    "restore target {} is not empty",
                    dir.display()
                )));
            }
        }
    }
    std::fs::canonicalize(dir).at(dir)
}
