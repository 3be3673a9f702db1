//! Backup operations with their status transitions (delete: `delete.rs`):
//! create (`creating → available | error`; full, or incremental on a parent), restore (`available → restoring →
//! available`, target share `backup_restoring → available |
//! backup_restoring_error`) and delete (`available|error → deleting →
//! deleted | error_deleting`).

use std::path::{Path, PathBuf};

use strata_format::BackupId;

use super::operations::{busy_share, OpTarget};
use super::Engine;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::repository::leases;
use crate::restore::{self, RestoreOutcome};
use crate::select::Selection;
use crate::store::{BackupRecord, BackupStatus, OpKind, Problem, Share, ShareStatus};

#[derive(Clone, Debug, Default)]
pub struct CreateBackup {
    /// The new backup's id (`None`: a random one); a caller that answers
    /// before the backup is done picks it, to name it in its answer.
    pub id: Option<BackupId>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Build on the share's latest available backup instead of a full backup.
    pub incremental: bool,
    /// Build on the share's latest available backup of this type if it has
    /// one, else make a full backup (the REST API's default when a request
    /// says neither): decided when the backup is admitted.
    pub incremental_if_possible: bool,
    /// Build on this backup (id or name); implies `incremental`.
    pub parent: Option<String>,
    /// Read and hash every file, trusting no metadata (incremental only).
    pub rehash: bool,
    /// Back up a share marked `in-use` (crash-consistent).
    pub force: bool,
    /// Back up this snapshot of the share (id or name) instead of the live
    /// share.
    pub snapshot: Option<String>,
    /// The backup type (its configuration name, `backup_type=`); the
    /// default type when `None`.
    pub backup_type: Option<String>,
    /// Accept an incremental of a share whose root is empty where its parent
    /// backup had entries, or is on another device than at its parent
    /// backup (both look like an unmounted share).
    pub allow_root_change: bool,
    /// What to leave out, besides the share's configured exclusions
    /// ([`EngineConfig::share_exclusions`](super::EngineConfig)).
    pub exclusions: strata_format::layer::Exclusions,
}

/// A backup as Manila and Cinder show it: the catalog's record plus what is
/// derived from the rest of the catalog. Assembled here, once, so that every
/// front end shows the same.
#[derive(Clone, Debug)]
pub struct BackupView {
    pub record: BackupRecord,
    /// Whether another backup names this one as its parent.
    pub has_dependent_backups: bool,
    /// The share snapshot the backup read (none: it read the live share).
    pub snapshot_id: Option<String>,
}

/// A finished backup: its record and its report.
#[derive(Debug)]
pub struct BackupResult {
    pub backup: BackupRecord,
    pub problems: Vec<Problem>,
}

/// Where a backup is restored.
#[derive(Clone, Debug, Default)]
pub enum RestoreTarget {
    /// Its source share.
    #[default]
    Source,
    /// Another share of the backup's project, by id or name (the source
    /// share named this way is a normal restore).
    Share(String),
    /// A directory that is missing (it is created) or empty.
    Dir(PathBuf),
}

#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    pub target: RestoreTarget,
    /// What of the backup's tree is restored: all of it, or the paths a
    /// partial restore selects (only they are replaced in a share).
    pub selection: Selection,
}

/// The operation a restore runs in, and the shared lease it holds.
#[derive(Clone, Copy)]
struct Supervised<'a> {
    op: &'a str,
    lock: &'a leases::Lease,
}

impl RestoreRequest {
    /// A restore of the whole tree into `target`.
    pub fn whole(target: RestoreTarget) -> Self {
        RestoreRequest {
            target,
            selection: Selection::all(),
        }
    }
}

impl Engine {
    /// The Manila/Cinder view of `backup`.
    pub fn backup_view(&self, backup: BackupRecord) -> Result<BackupView> {
        let has_dependent_backups = !self.store.dependents(backup.id)?.is_empty();
        let snapshot_id = backup.snapshot_id.map(|s| s.to_string());
        Ok(BackupView {
            record: backup,
            has_dependent_backups,
            snapshot_id,
        })
    }

    /// Backup `id` as this engine's project sees it: its own, or any with
    /// `all_projects` (an administrator's); another project's is not
    /// found, exactly as a missing one (its existence is not told).
    pub fn visible_backup(&self, id: BackupId, all_projects: bool) -> Result<BackupRecord> {
        match self.store.backup(id) {
            Ok(b) if all_projects || b.project == self.config.project => Ok(b),
            Ok(_) => Err(Error::NotFound {
                kind: "backup",
                name: id.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// [`Engine::visible_backup`] for shares.
    pub fn visible_share(&self, id: strata_format::ShareId, all_projects: bool) -> Result<Share> {
        match self.store.share(id) {
            Ok(s) if all_projects || s.project == self.config.project => Ok(s),
            Ok(_) => Err(Error::NotFound {
                kind: "share",
                name: id.to_string(),
            }),
            Err(e) => Err(e),
        }
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

    /// Restores `backup` into its source share, another share, or an empty
    /// directory. A share restored into is `backup_restoring` (busy) while
    /// it runs, then `available`, or `backup_restoring_error` with the
    /// reason kept on it.
    pub fn restore_backup(
        &self,
        backup: &BackupRecord,
        req: &RestoreRequest,
        progress: &Progress,
    ) -> Result<RestoreOutcome> {
        let share = match &req.target {
            RestoreTarget::Dir(dir) => {
                self.outside_every_share(dir)?;
                self.selects_something(backup, &req.selection)?;
                let target = prepare_target_dir(dir)?;
                return self.restore_into(backup, None, &target, &req.selection, progress);
            }
            RestoreTarget::Source => self.store.share(backup.share_id)?,
            RestoreTarget::Share(arg) => self.target_share(backup, arg)?,
        };
        super::shares::confirmed(&share)?;
        self.selects_something(backup, &req.selection)?;
        let role = ShareRole {
            from: &[ShareStatus::Available, ShareStatus::BackupRestoringError],
            during: ShareStatus::BackupRestoring,
            done: ShareStatus::Available,
            failed: ShareStatus::BackupRestoringError,
        };
        let target = self.local_path(&share);
        self.restore_into(
            backup,
            Some((&share, role)),
            &target,
            &req.selection,
            progress,
        )
    }

    /// The share `arg` names as a restore target for `backup`, checked by
    /// the rules of a restore to a share other than the source.
    fn target_share(&self, backup: &BackupRecord, arg: &str) -> Result<Share> {
        let share = match self.store.find_share(&backup.project, arg) {
            Ok(share) => share,
            Err(Error::NotFound { .. }) => {
                let elsewhere = self
                    .store
                    .list_shares(None)?
                    .iter()
                    .any(|s| s.id.to_string() == arg || s.name == arg);
                return Err(if elsewhere {
                    Error::NotPermitted(format!(
                        "share {arg} belongs to another project than backup {}",
                        backup.id
                    ))
                } else {
                    Error::NotFound {
                        kind: "share",
                        name: arg.to_string(),
                    }
                });
            }
            Err(e) => return Err(e),
        };
        if share.id == backup.share_id {
            return Ok(share);
        }
        self.check_restore_to_target(backup, share.size_gib, &share.protocol)?;
        if ![ShareStatus::Available, ShareStatus::BackupRestoringError].contains(&share.status) {
            return Err(busy_share(
                Error::Busy(format!("share {} is busy", share.name)),
                &share,
            ));
        }
        Ok(share)
    }

    /// What a restore into a share other than the backup's source (an
    /// existing share, or a new one made from the backup) requires: an
    /// `available` backup, of a type that restores to targets, into a
    /// share at least as large (when it has a size) of a compatible protocol.
    pub(crate) fn check_restore_to_target(
        &self,
        backup: &BackupRecord,
        size_gib: Option<u64>,
        protocol: &str,
    ) -> Result<()> {
        if backup.status != BackupStatus::Available {
            return Err(Error::InvalidState(format!(
                "backup {} is {}; only an available backup is restored",
                backup.id,
                backup.status.as_str()
            )));
        }
        if !self.restores_to_target(backup) {
            return Err(Error::Unsupported(format!(
                "backup type {} does not support restores to another share",
                backup.backup_type.as_deref().unwrap_or("(default)")
            )));
        }
        if let Some(size) = size_gib.filter(|&size| size < backup.size_gib) {
            return Err(Error::InvalidArgument(format!(
                "the target share is {size} GiB; backup {} needs {} GiB",
                backup.id, backup.size_gib
            )));
        }
        let source = self.store.share(backup.share_id)?;
        if !compatible_protocols(&source.protocol, protocol) {
            return Err(Error::InvalidArgument(format!(
                "backup {} is of a {} share; a {} share cannot receive it",
                backup.id,
                source.protocol,
                protocol.to_ascii_uppercase()
            )));
        }
        Ok(())
    }

    /// Whether `backup`'s type supports restores to another share (the
    /// default type does; a type no longer configured does not).
    fn restores_to_target(&self, backup: &BackupRecord) -> bool {
        match &backup.backup_type {
            None => true,
            Some(_) => self
                .type_of(backup)
                .is_some_and(|t| t.support_restore_to_target),
        }
    }

    /// Runs a restore into `target`, the path of `share` when there is
    /// one, which moves through the statuses of `role`.
    pub(crate) fn restore_into(
        &self,
        backup: &BackupRecord,
        share: Option<(&Share, ShareRole)>,
        target: &Path,
        selection: &Selection,
        progress: &Progress,
    ) -> Result<RestoreOutcome> {
        let op = self.begin_operation(&OpTarget {
            kind: OpKind::Restore,
            backup: backup.id,
            share: share.map(|(s, _)| s.id),
            share_status_before: None,
        })?;
        let result = self.restore_in_operation(backup, share, target, &op, selection, progress);
        self.end_operation(&op)?;
        result
    }

    /// [`Engine::restore_into`] within operation `op`, which the caller
    /// recorded (naming the share) and ends.
    pub(crate) fn restore_in_operation(
        &self,
        backup: &BackupRecord,
        share: Option<(&Share, ShareRole)>,
        target: &Path,
        op: &str,
        selection: &Selection,
        progress: &Progress,
    ) -> Result<RestoreOutcome> {
        let vault = self.vault_of(backup)?;
        // No pack is removed or moved while the lock stands (a sweep or a
        // repack waits, and a restore waits for one that runs); the index
        // first learns what one did before.
        let locked = leases::shared(&vault.repo, op, super::operations::SHARED_LOCK_WAIT)
            .and_then(|lock| vault.sync_index().map(|()| lock));
        match locked {
            Ok(lock) => {
                let run = Supervised { op, lock: &lock };
                self.restore_supervised(backup, share, target, run, selection, progress)
            }
            Err(e) => Err(e),
        }
    }

    fn restore_supervised(
        &self,
        backup: &BackupRecord,
        share: Option<(&Share, ShareRole)>,
        target: &Path,
        Supervised { op, lock }: Supervised,
        selection: &Selection,
        progress: &Progress,
    ) -> Result<RestoreOutcome> {
        self.store.transition_backup(
            backup.id,
            &[BackupStatus::Available],
            BackupStatus::Restoring,
        )?;
        if let Some((share, role)) = share {
            if let Err(e) = self
                .store
                .transition_share(share.id, role.from, role.during)
            {
                self.store.transition_backup(
                    backup.id,
                    &[BackupStatus::Restoring],
                    BackupStatus::Available,
                )?;
                return Err(busy_share(e, share));
            }
        }
        progress.recorded();
        let vault = self.vault_of(backup)?;
        let result = self.supervise(
            op,
            backup.id,
            BackupStatus::Restoring,
            &[lock],
            progress,
            || {
                let options = restore::RestoreOptions {
                    direct_io: self.config.direct_io,
                    window_bytes: self.config.restore_window_bytes,
                };
                restore::run_selected(
                    &vault.repo,
                    &*vault.index,
                    &backup.id,
                    target,
                    &options,
                    selection,
                    progress,
                )
            },
        );
        // The target share is given back whatever happens to the backup
        // meanwhile (an administrator's reset stops a restore; the backup
        // may even be gone): nothing may leave it busy.
        let released = self.release_target(backup, share, &result);
        let settled = self.settle_restored(backup, result.is_ok());
        released?;
        settled?;
        result
    }

    /// Refuses a partial restore that selects nothing of `backup`'s tree,
    /// before anything is changed (the layers are read until the first
    /// selected path; no pack is).
    fn selects_something(&self, backup: &BackupRecord, selection: &Selection) -> Result<()> {
        if selection.is_all() {
            return Ok(());
        }
        self.readable(backup)?;
        let vault = self.vault_of(backup)?;
        let layers = crate::view::load_chain(&vault.repo, &backup.id)?;
        let view = crate::view::MergedView::new(&layers)?;
        if let Some(first) = crate::select::Selected::new(view, selection).next() {
            return first.map(|_| ());
        }
        Err(Error::NotFound {
            kind: "path",
            name: format!(
                "matching --include {:?} --exclude {:?} in backup {}",
                selection.include(),
                selection.exclude(),
                backup.id
            ),
        })
    }

    /// The backup after its restore: `available` again, unless an
    /// administrator moved it meanwhile (then their status stands) or it is
    /// gone.
    fn settle_restored(&self, backup: &BackupRecord, done: bool) -> Result<()> {
        if done {
            self.store.set_backup_progress(backup.id, 100, true)?;
        }
        match self.store.transition_backup(
            backup.id,
            &[BackupStatus::Restoring],
            BackupStatus::Available,
        ) {
            Ok(_) | Err(Error::InvalidState(_) | Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The share a restore wrote into, moved to its `done` or `failed`
    /// status with the reason kept.
    fn release_target(
        &self,
        backup: &BackupRecord,
        share: Option<(&Share, ShareRole)>,
        result: &Result<RestoreOutcome>,
    ) -> Result<()> {
        if let Some((share, role)) = share {
            let reason = result
                .as_ref()
                .err()
                .map(|e| format!("restore of backup {} failed: {e}", backup.id));
            let to = if result.is_ok() {
                role.done
            } else {
                role.failed
            };
            self.store
                .set_share_fail_reason(share.id, reason.as_deref())?;
            self.store.transition_share(share.id, &[role.during], to)?;
        }
        Ok(())
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
        crate::validate::text("backup name", name, false)?;
        crate::validate::text("description", description, true)?;
        self.store.rename_backup(backup.id, name, description)
    }
}

/// The statuses a share restored into goes through: it must be in one of
/// `from`, is `during` while the restore runs, then `done` or `failed`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ShareRole {
    pub from: &'static [ShareStatus],
    pub during: ShareStatus,
    pub done: ShareStatus,
    pub failed: ShareStatus,
}

/// Whether a share of protocol `to` can receive a backup of a share of
/// protocol `from`: the same protocol, or two that both carry POSIX
/// metadata (modes, owners, extended attributes), which a restore writes.
fn compatible_protocols(from: &str, to: &str) -> bool {
    const POSIX: [&str; 4] = ["NFS", "CEPHFS", "GLUSTERFS", "MAPRFS"];
    let (from, to) = (from.to_ascii_uppercase(), to.to_ascii_uppercase());
    from == to || (POSIX.contains(&from.as_str()) && POSIX.contains(&to.as_str()))
}

/// `path` as it will resolve: its nearest existing ancestor canonical, the
/// rest (not there yet) appended.
fn resolved(path: &Path) -> Result<PathBuf> {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        match std::fs::canonicalize(at) {
            Ok(real) => {
                let mut out = real;
                out.extend(rest.iter().rev());
                return Ok(out);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(at, e)),
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
            }
            _ => return Ok(path.to_path_buf()),
        }
    }
}

impl Engine {
    /// Refuses a restore target directory inside a registered share (of
    /// any project): writing there would bypass the share's status, busy
    /// rules and checks; `--target-share` is the way into a share.
    fn outside_every_share(&self, dir: &Path) -> Result<()> {
        let target = resolved(dir)?;
        for share in self.store.list_shares(None)? {
            let root = self.local_path(&share);
            if target.starts_with(&root) || root.starts_with(&target) {
                let which = match share.project == self.config.project {
                    true => format!("share {}", share.name),
                    false => "a share".to_string(),
                };
                return Err(Error::InvalidArgument(format!(
                    "restore target {} is inside (or holds) {which}; restore into a share \
                     with --target-share",
                    target.display()
                )));
            }
        }
        Ok(())
    }
}

/// A restore target directory must be missing (it is created) or empty.
pub(crate) fn prepare_target_dir(dir: &Path) -> Result<PathBuf> {
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
