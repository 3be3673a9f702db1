//! `backup delete`: `available | error | error_deleting → deleting →
//! deleted | error_deleting`, or a forced stop of a backup being created;
//! one rule for every front end ([`Engine::check_deletable`]).

use std::time::{Duration, Instant};

use strata_format::BackupId;

use super::operations::OpTarget;
use super::{Engine, Vault};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::store::{BackupRecord, BackupStatus, OpKind};

/// How long `delete --force` waits for a running backup to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(60);
/// How long a delete waits for the exclusive lock to collect packs.
const GC_WAIT: Duration = Duration::from_secs(2);

impl Engine {
    /// Deletes a backup: its layer, its chunk references, and (when no
    /// backup is running) every pack left holding no referenced chunk. A
    /// backup being created is only deleted with `force`: its process is
    /// told to stop, and cleans up after itself.
    pub fn delete_backup(&self, backup: &BackupRecord, force: bool) -> Result<()> {
        self.delete_backup_reporting(backup, force, &Progress::default())
    }

    /// [`Engine::delete_backup`], telling `progress` once the backup is
    /// `deleting` (see [`Progress::set_on_recorded`]).
    pub fn delete_backup_reporting(
        &self,
        backup: &BackupRecord,
        force: bool,
        progress: &Progress,
    ) -> Result<()> {
        self.check_deletable(backup, force)?;
        if backup.status == BackupStatus::Creating {
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
        progress.recorded();
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

    /// Whether `backup` may be deleted now, by the one rule every front end
    /// applies: it is `available`, `error` or `error_deleting` (a failed
    /// delete is tried again), or `creating` with `force` (the backup is
    /// stopped); and no restore of it is running (an administrator's reset
    /// of its status stops one first). Dependents are checked as the
    /// status moves.
    pub fn check_deletable(&self, backup: &BackupRecord, force: bool) -> Result<()> {
        match backup.status {
            BackupStatus::Available | BackupStatus::Error | BackupStatus::ErrorDeleting => {}
            BackupStatus::Creating if force => return Ok(()),
            BackupStatus::Creating => {
                return Err(Error::InvalidState(format!(
                    "backup {} is creating; a forced delete stops and deletes it",
                    backup.id
                )))
            }
            other => {
                return Err(Error::InvalidState(format!(
                    "backup {} is {}; only an available or error backup is deleted",
                    backup.id,
                    other.as_str()
                )))
            }
        }
        if self.restore_running(backup.id)? {
            return Err(Error::Busy(format!(
                "backup {} is being restored; wait for the restore to finish, or reset the \
                 backup's status to stop it",
                backup.id
            )));
        }
        Ok(())
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
        let vault = self.vault_of(&self.store.backup(id)?)?;
        self.remove_backup_records(vault, id)?;
        // A sweep that cannot run now (busy, an unreadable layer) leaves
        // the packs to `cleanup`.
        vault.collect_packs(GC_WAIT).map(|_| ())
    }

    /// Every generation of the backup's layer, then its chunk references
    /// and its record; packs are left to a sweep.
    pub(crate) fn remove_backup_records(&self, vault: &Vault, id: BackupId) -> Result<()> {
        vault.repo.remove_layer(&id)?;
        // A type's own repository has its own index, and its references.
        vault.index.drop_refs(id)?;
        crate::failpoint::hit("delete.references_dropped");
        self.store.remove_backup(id)?;
        crate::failpoint::hit("delete.record_removed");
        Ok(())
    }
}
