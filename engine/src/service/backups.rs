//! Backup operations with their status transitions:
//! create (`creating → available | error`; full, or incremental on a parent), restore (`available → restoring →
//! available`, target share `backup_restoring → available |
//! backup_restoring_error`) and delete (`available|error → deleting →
//! deleted | error_deleting`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strata_format::BackupId;

use super::operations::OpTarget;
use super::Engine;
use crate::catalog::{BackupRecord, BackupStatus, OpKind, Problem, Share, ShareStatus};
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::restore::{self, RestoreOutcome};

/// How long `delete --force` waits for a running backup to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(60);
/// How long a delete waits for the exclusive lock to collect packs.
const GC_WAIT: Duration = Duration::from_secs(2);

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
    /// Back up a share marked `in-use` (crash-consistent).
    pub force: bool,
    /// Accept an incremental of a share whose root is empty where its parent
    /// backup had entries, or is on another device than at its parent
    /// backup (both look like an unmounted share).
    pub allow_root_change: bool,
}

/// A backup as Manila and Cinder show it: the catalog's record plus what is
/// derived from the rest of the catalog. Assembled here, once, so that every
/// front end shows the same.
#[derive(Clone, Debug)]
pub struct BackupView {
    pub record: BackupRecord,
    /// Whether another backup names this one as its parent.
    pub has_dependent_backups: bool,
    /// The share snapshot the backup read (none yet: backups read the live share).
    pub snapshot_id: Option<String>,
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
    /// The Manila/Cinder view of `backup`.
    pub fn backup_view(&self, backup: BackupRecord) -> Result<BackupView> {
        let has_dependent_backups = !self.store.dependents(backup.id)?.is_empty();
        Ok(BackupView {
            record: backup,
            has_dependent_backups,
            snapshot_id: None,
        })
    }

    pub fn find_backup(&self, id_or_name: &str) -> Result<BackupRecord> {
        self.store.find_backup(&self.config.project, id_or_name)
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
            parent = self.store.backup(id)?.parent_id;
        }
        chain.reverse();
        Ok(chain)
    }

    /// Restores `backup` into its source share or into an empty directory.
    pub fn restore_backup(
        &self,
        backup: &BackupRecord,
        req: &RestoreRequest,
        progress: &Progress,
    ) -> Result<RestoreOutcome> {
        let (target, share) = match &req.target_dir {
            Some(dir) => (prepare_target_dir(dir)?, None),
            None => {
                let share = self.store.share(backup.share_id)?;
                (PathBuf::from(&share.path), Some(share))
            }
        };
        let chain = self.chain(backup)?;
        let op = self.begin_operation(&OpTarget {
            kind: OpKind::Restore,
            backup: backup.id,
            share: share.as_ref().map(|s| s.id),
            share_status_before: None,
        })?;
        let result =
            self.restore_supervised(backup, share.as_ref(), &chain, &target, &op, progress);
        self.end_operation(&op)?;
        result
    }

    fn restore_supervised(
        &self,
        backup: &BackupRecord,
        share: Option<&Share>,
        chain: &[BackupId],
        target: &Path,
        op: &str,
        progress: &Progress,
    ) -> Result<RestoreOutcome> {
        self.store.transition_backup(
            backup.id,
            &[BackupStatus::Available],
            BackupStatus::Restoring,
        )?;
        if let Some(share) = share {
            if let Err(e) = self.store.transition_share(
                share.id,
                &[ShareStatus::Available, ShareStatus::BackupRestoringError],
                ShareStatus::BackupRestoring,
            ) {
                self.store.transition_backup(
                    backup.id,
                    &[BackupStatus::Restoring],
                    BackupStatus::Available,
                )?;
                return Err(busy_share(e, share));
            }
        }
        let result = self.supervise(
            op,
            backup.id,
            BackupStatus::Restoring,
            &[],
            progress,
            || {
                let direct = self.config.direct_io;
                restore::run(&self.repo, &*self.index, chain, target, direct, progress)
            },
        );
        if result.is_ok() {
            self.store.set_backup_progress(backup.id, 100, true)?;
        }
        // An administrator may have moved the backup meanwhile (that is how a
        // restore is stopped): then their status stands.
        match self.store.transition_backup(
            backup.id,
            &[BackupStatus::Restoring],
            BackupStatus::Available,
        ) {
            Ok(_) | Err(Error::InvalidState(_)) => {}
            Err(e) => return Err(e),
        }
        if let Some(share) = share {
            let to = if result.is_ok() {
                ShareStatus::Available
            } else {
                ShareStatus::BackupRestoringError
            };
            self.store
                .transition_share(share.id, &[ShareStatus::BackupRestoring], to)?;
        }
        result
    }

    /// Deletes a backup: its layer, its chunk references, and (when no
    /// backup is running) every pack left holding no referenced chunk. A
    /// backup being created is only deleted with `force`: its process is
    /// told to stop, and cleans up after itself.
    pub fn delete_backup(&self, backup: &BackupRecord, force: bool) -> Result<()> {
        if backup.status == BackupStatus::Creating {
            if !force {
                return Err(Error::InvalidState(format!(
                    "backup {} is creating; `backup delete --force` stops and deletes it",
                    backup.id
                )));
            }
            return self.cancel_creating(backup.id);
        }
        // The operation is recorded before the status moves: a process
        // killed in between must leave `deleting` with an operation that
        // `cleanup` finds dead and finishes, never an orphan `deleting`.
        let op = self.begin_operation(&OpTarget {
            kind: OpKind::Delete,
            backup: backup.id,
            share: None,
            share_status_before: None,
        })?;
        // No dependents, checked in the same step: an incremental starting
        // on this backup now either went in first (and this is refused)
        // or finds it `deleting` (and is refused).
        if let Err(e) = self.store.transition_leaf_backup(
            backup.id,
            &[
                BackupStatus::Available,
                BackupStatus::Error,
                BackupStatus::ErrorDeleting,
            ],
            BackupStatus::Deleting,
        ) {
            self.end_operation(&op)?;
            return Err(e);
        }
        let result = self.remove_backup_data(backup.id);
        if let Err(e) = &result {
            self.store.transition_backup(
                backup.id,
                &[BackupStatus::Deleting],
                BackupStatus::ErrorDeleting,
            )?;
            self.store.set_fail_reason(backup.id, &e.to_string())?;
        }
        self.end_operation(&op)?;
        result
    }

    /// `creating → deleting`, then waits for the backup's process to notice
    /// (within a heartbeat), stop and remove it. If that process is gone,
    /// cleans up in its place.
    fn cancel_creating(&self, id: BackupId) -> Result<()> {
        self.store
            .transition_backup(id, &[BackupStatus::Creating], BackupStatus::Deleting)?;
        let deadline = Instant::now() + CANCEL_WAIT;
        loop {
            match self.store.backup(id) {
                Err(Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            if !self.operation_alive(id)? {
                self.cleanup(None)?;
                if let Ok(b) = self.store.backup(id) {
                    // No operation recorded it: remove it here.
                    if b.status == BackupStatus::Deleting {
                        self.remove_backup_data(id)?;
                    }
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Busy(format!(
                    "backup {id} is deleting but its process has not stopped yet; \
                     `strata cleanup` finishes it once that process is gone"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Layer first (the backup stops existing in the repository), then its
    /// row and chunk references; then, if no backup is running, the packs
    /// nothing references any more (otherwise `cleanup` collects them).
    pub(crate) fn remove_backup_data(&self, id: BackupId) -> Result<()> {
        self.repo.remove_layer(&id)?;
        self.store.remove_backup(id)?;
        // A sweep that cannot run now (busy, an unreadable layer) leaves
        // the packs to `cleanup`.
        self.collect_packs(GC_WAIT).map(|_| ())
    }

    /// An administrator's reset of a backup's status (as `cinder
    /// backup-reset-state`). A running restore or backup whose status is
    /// moved this way stops at its next heartbeat. Returns the old status.
    pub fn reset_backup_state(
        &self,
        backup: &BackupRecord,
        to: BackupStatus,
    ) -> Result<BackupStatus> {
        self.store.reset_backup_status(backup.id, to)
    }

    pub fn rename_backup(
        &self,
        backup: &BackupRecord,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<()> {
        self.store.rename_backup(backup.id, name, description)
    }
}

pub(super) fn busy_share(e: Error, share: &Share) -> Error {
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
