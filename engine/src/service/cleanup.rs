//! Cleanup after processes that died mid-operation, and pack collection.
//!
//! Every command start runs [`Engine::cleanup`] without waiting; `strata
//! cleanup` runs it waiting for the exclusive lock. A dead operation's
//! backup and share get the statuses the seeds prescribe (`creating →
//! error`, `restoring → available` with the target share
//! `backup_restoring_error`, `deleting →` finished or `error_deleting`), its
//! temporary files and lock are removed, and packs nothing references are
//! removed under the exclusive lock. A backup whose layer was published
//! before its process died is committed (the layer is the commit point) and
//! is completed from the layer's own metadata, never thrown away.

use std::time::Duration;

use strata_format::BackupId;

use super::Engine;
use crate::error::{Error, Result};
use crate::liveness::Watch;
use crate::process;
use crate::repository::leases::{self, Holder};
use crate::repository::Repository;
use crate::store::{BackupStatus, OpKind, Operation, ShareStatus};

/// What a cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// One line per dead operation handled.
    pub operations: Vec<String>,
    pub temp_files: u64,
    pub packs_removed: u64,
    /// Why packs were not collected (the exclusive lock was busy), if so.
    pub packs_skipped: Option<String>,
    /// Backups whose layer rewrite a crash interrupted, now settled.
    pub layers_settled: u64,
    /// Shares left busy by an operation no longer recorded, given back.
    pub shares_released: u64,
}

impl Engine {
    /// Whether `op`'s process is gone. `clock` is the store's
    /// ([`crate::store::OperationStore::store_clock`]), read once for a
    /// run of judgements.
    pub(super) fn is_dead(op: &Operation, clock: Option<i64>) -> bool {
        match process::is_alive(&op.host, &op.boot_id, op.pid, op.process_start) {
            Some(alive) => !alive,
            // Another node's process, with heartbeats on the store's
            // clock: dead once its last is older than a lease there.
            None if clock.is_some() => clock.is_some_and(|now| {
                now.saturating_sub(op.heartbeat_at) > leases::STALE_AFTER.as_nanos() as i64
            }),
            // Heartbeats on each node's clock: dead once it has stood
            // still for STALE_AFTER of our clock (never compared with it).
            None => !Watch::global().alive(
                &format!("operation/{}", op.id),
                i128::from(op.heartbeat_at),
                leases::STALE_AFTER,
            ),
        }
    }

    /// Gives back every share left busy with no operation recorded on it
    /// (its operation ended without releasing it): a restore's target
    /// becomes `backup_restoring_error`, a share being backed up
    /// `available`.
    fn release_orphan_shares(&self) -> Result<u64> {
        let mut released = 0;
        for share in self.store.list_shares(None)? {
            let (to, why) = match share.status {
                ShareStatus::BackupRestoring => (
                    ShareStatus::BackupRestoringError,
                    "the restore into it is no longer running",
                ),
                ShareStatus::BackupCreating => (ShareStatus::Available, ""),
                _ => continue,
            };
            let reason = match why {
                "" => share.fail_reason.clone().unwrap_or_default(),
                why => why.to_string(),
            };
            if self
                .store
                .release_orphan_share(share.id, share.status, to, &reason)?
            {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Whether a restore of `backup` is running.
    pub(crate) fn restore_running(&self, backup: BackupId) -> Result<bool> {
        let clock = self.store.store_clock()?;
        Ok(self.store.operations()?.iter().any(|op| {
            op.backup_id == Some(backup) && op.kind == OpKind::Restore && !Self::is_dead(op, clock)
        }))
    }

    /// Whether the operation running on `backup` (if any) is alive.
    pub(crate) fn operation_alive(&self, backup: BackupId) -> Result<bool> {
        let clock = self.store.store_clock()?;
        Ok(self
            .store
            .operations()?
            .iter()
            .any(|op| op.backup_id == Some(backup) && !Self::is_dead(op, clock)))
    }

    /// Cleans up after dead operations; collects unreferenced packs when
    /// `gc_wait` is set (waiting that long for the exclusive lock) or when a
    /// dead backup may have left some (then without waiting).
    pub fn cleanup(&self, gc_wait: Option<Duration>) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        let mut wrote_packs = false;
        let clock = self.store.store_clock()?;
        for op in self.store.operations()? {
            if !Self::is_dead(&op, clock) {
                continue;
            }
            let what = self.clean_operation(&op)?;
            wrote_packs |= op.kind != OpKind::Restore;
            report.operations.push(format!(
                "{} of backup {} (pid {} on {}): {what}",
                op.kind.as_str(),
                op.backup_id.map(|b| b.to_string()).unwrap_or_default(),
                op.pid,
                op.host
            ));
            for vault in self.vaults() {
                leases::break_shared(&vault.repo, &op.id);
                let dead = process::Tag {
                    host: op.host.clone(),
                    pid: op.pid,
                    start: op.process_start,
                };
                for unfinished in vault.repo.unfinished()? {
                    if unfinished.writer.as_ref() == Some(&dead) {
                        vault.repo.discard(&unfinished)?;
                        report.temp_files += 1;
                    }
                }
            }
            self.store.remove_operation(&op.id)?;
        }
        report.shares_released = self.release_orphan_shares()?;
        let mut skipped = Vec::new();
        for vault in self.vaults() {
            if gc_wait.is_some() {
                report.temp_files += sweep_orphan_temp(&vault.repo)?;
            }
            release_dead_exclusive_lock(&vault.repo);
            if gc_wait.is_some() {
                report.layers_settled += self.settle_site(vault)?;
            }
            if gc_wait.is_some() || wrote_packs {
                let sweep = vault.collect_packs(gc_wait.unwrap_or(Duration::ZERO))?;
                report.packs_removed += sweep.removed;
                skipped.extend(sweep.skipped);
            }
        }
        report.packs_skipped = (!skipped.is_empty()).then(|| skipped.join("; "));
        Ok(report)
    }
}

/// Removes the exclusive lease if its holder, on this host, is gone (it
/// would otherwise block backups until it goes stale).
fn release_dead_exclusive_lock(repo: &Repository) {
    if let Some(Holder::Exclusive { process, .. }) = leases::exclusive_holder(repo) {
        if process.is_gone() {
            leases::break_exclusive(repo);
        }
    }
}

/// What puts of this host's processes that are gone left unfinished.
fn sweep_orphan_temp(repo: &Repository) -> Result<u64> {
    let host = process::host_name();
    let mut removed = 0;
    for unfinished in repo.unfinished()? {
        let Some(writer) = &unfinished.writer else {
            continue;
        };
        if writer.host == host && writer.is_gone() {
            repo.discard(&unfinished)?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl Engine {
    fn clean_operation(&self, op: &Operation) -> Result<String> {
        let Some(id) = op.backup_id else {
            return Ok("nothing to do".into());
        };
        // A backup killed after its share was claimed but before its record
        // went in has no record; its share is given back all the same.
        let what = match self.store.backup(id) {
            Ok(b) => self.clean_backup(op, id, b.status)?,
            Err(Error::NotFound { .. }) => "backup already gone".to_string(),
            Err(e) => return Err(e),
        };
        if let Some(share) = op.share_id {
            let moves: &[(ShareStatus, ShareStatus)] = match op.kind {
                OpKind::Restore => &[
                    (
                        ShareStatus::BackupRestoring,
                        ShareStatus::BackupRestoringError,
                    ),
                    // A share being made from a backup.
                    (ShareStatus::Creating, ShareStatus::Error),
                ],
                _ => &[(
                    ShareStatus::BackupCreating,
                    op.share_status_before
                        .as_deref()
                        .and_then(|s| ShareStatus::parse(s).ok())
                        .unwrap_or(ShareStatus::Available),
                )],
            };
            let now = self.store.share(share).map(|s| s.status);
            if let Some(&(busy, back)) = moves
                .iter()
                .find(|(busy, _)| now.as_ref().ok() == Some(busy))
            {
                if op.kind == OpKind::Restore {
                    let why = "interrupted: the process restoring into it is gone";
                    self.store.set_share_fail_reason(share, Some(why))?;
                }
                self.store.transition_share(share, &[busy], back)?;
            }
        }
        Ok(what)
    }

    /// Puts right a backup whose operation `op` died, by its `status`.
    fn clean_backup(&self, op: &Operation, id: BackupId, status: BackupStatus) -> Result<String> {
        Ok(match (op.kind, status) {
            (OpKind::Backup, BackupStatus::Creating) => {
                if self.complete_from_layer(id)? {
                    "its layer was published: completed from the layer".to_string()
                } else {
                    self.store.fail_backup(
                        id,
                        &[BackupStatus::Creating],
                        "interrupted: the process running it is gone",
                    )?;
                    "creating -> error (interrupted)".to_string()
                }
            }
            (OpKind::Backup | OpKind::Delete, BackupStatus::Deleting) => {
                match self.remove_backup_data(id) {
                    Ok(()) => "deleting -> deleted".to_string(),
                    Err(e) => {
                        self.store.transition_backup(
                            id,
                            &[BackupStatus::Deleting],
                            BackupStatus::ErrorDeleting,
                        )?;
                        self.store.set_fail_reason(id, &e.to_string())?;
                        format!("deleting -> error_deleting ({e})")
                    }
                }
            }
            (OpKind::Restore, BackupStatus::Restoring) => {
                self.store.transition_backup(
                    id,
                    &[BackupStatus::Restoring],
                    BackupStatus::Available,
                )?;
                "restoring -> available".to_string()
            }
            (_, other) => format!("backup left {}", other.as_str()),
        })
    }

    /// Completes a `creating` backup whose layer is in the repository.
    fn complete_from_layer(&self, id: BackupId) -> Result<bool> {
        let vault = self.vault_of(&self.store.backup(id)?)?;
        let bytes = match vault.repo.load_layer(&id) {
            Ok(bytes) => bytes,
            Err(Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Ok(layer) = bytes.decode() else {
            return Ok(false);
        };
        let mut done = self.store.backup(id)?;
        done.set_layer_stats(&layer.meta.stats);
        done.data_timestamp = Some(layer.meta.data_timestamp_ns);
        done.changed_count = layer.entry_count;
        done.deleted_count = layer.tombstone_count;
        done.duration_ms =
            ((layer.meta.finished_at_ns - layer.meta.created_at_ns).max(0) / 1_000_000) as u64;
        self.store
            .complete_backup(&done, &[], layer.meta.service.share_root_dev)?;
        Ok(true)
    }
}
