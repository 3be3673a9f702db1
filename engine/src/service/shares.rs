//! Share operations: create, list, show, delete, and zero-config registration.

use std::path::{Path, PathBuf};

use strata_format::ShareId;

use super::backups::{prepare_target_dir, ShareRole};
use super::operations::OpTarget;
use super::Engine;
use crate::clock::now_ns;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::repository::new_uuid;
use crate::store::{BackupRecord, OpKind, Share, ShareStatus};
use crate::validate;

/// How `create_share` should describe the share.
#[derive(Clone, Debug)]
pub struct NewShare<'a> {
    /// The new share's id (`None`: a random one); a caller that names the
    /// share's directory after it picks it.
    pub id: Option<ShareId>,
    pub name: &'a str,
    pub path: &'a Path,
    pub size_gib: Option<u64>,
    pub protocol: &'a str,
}

/// The share's protocol, upper case, once its name, size and protocol are
/// valid.
fn checked_protocol(new: &NewShare<'_>) -> Result<String> {
    validate::share_name(new.name)?;
    validate::share_size(new.size_gib)?;
    let protocol = new.protocol.to_ascii_uppercase();
    if !["NFS", "CIFS", "CEPHFS", "GLUSTERFS", "HDFS", "MAPRFS"].contains(&protocol.as_str()) {
        return Err(Error::InvalidArgument(format!(
            "unknown share protocol {:?}",
            new.protocol
        )));
    }
    Ok(protocol)
}

/// The directory a share's path names, resolved to its canonical form,
/// which must pass [`validate::share_path`].
fn share_dir(path: &Path) -> Result<PathBuf> {
    let canonical = std::fs::canonicalize(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            kind: "share path",
            name: path.display().to_string(),
        },
        _ => Error::io(path, e),
    })?;
    if !canonical.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "share path {} is not a directory",
            canonical.display()
        )));
    }
    let text = canonical.to_str().ok_or_else(|| {
        Error::InvalidArgument(format!("share path {} is not UTF-8", canonical.display()))
    })?;
    validate::share_path(text)?;
    Ok(canonical)
}

/// Refuses to read or write the share in place while its path is one a
/// repository or an imported record chose, not an operator.
pub(crate) fn confirmed(share: &Share) -> Result<()> {
    match share.adopted {
        false => Ok(()),
        true => Err(Error::NotPermitted(format!(
            "share {} was recorded from the repository or an imported record, and its path \
             {:?} is not confirmed; an operator confirms it with `share set {} --path DIR` \
             (or restores elsewhere with --target-dir)",
            share.name, share.path, share.name
        ))),
    }
}

impl Engine {
    /// Confirms (or moves) a share's path: the share is no longer adopted,
    /// and backups and in-place restores use `path`. Refused while the
    /// share is busy, or when another share of the project has that path.
    pub fn confirm_share_path(&self, share: &Share, path: &Path) -> Result<Share> {
        let path = share_dir(path)?;
        let text = path.display().to_string();
        if let Some(other) = self.store.share_by_path(&share.project, &text)? {
            if other.id != share.id {
                return Err(Error::InvalidArgument(format!(
                    "{text} is the path of share {} already",
                    other.name
                )));
            }
        }
        let idle = [
            ShareStatus::Available,
            ShareStatus::InUse,
            ShareStatus::Error,
            ShareStatus::BackupRestoringError,
        ];
        self.store
            .confirm_share_path(share.id, &text, &idle)
            .map_err(|e| super::operations::busy_share(e, share))?;
        self.store.share(share.id)
    }

    /// Creates a share from a backup (Manila's `share create --backup-id`):
    /// its directory must be missing (it is created) or empty; the share is
    /// `creating` while the backup is restored into it, then `available`,
    /// or `error` with the reason kept on it. Its size defaults to the
    /// backup's; it records the backup as its source.
    pub fn create_share_from_backup(
        &self,
        new: &NewShare<'_>,
        backup: &BackupRecord,
        progress: &Progress,
    ) -> Result<Share> {
        let protocol = checked_protocol(new)?;
        let size_gib = new.size_gib.or(Some(backup.size_gib));
        self.check_restore_to_target(backup, size_gib, &protocol)?;
        match self.find_share(new.name) {
            Err(Error::NotFound { .. }) => {}
            Ok(_) => {
                return Err(Error::InvalidArgument(format!(
                    "a share named {:?} already exists in project {:?}",
                    new.name, self.config.project
                )))
            }
            Err(e) => return Err(e),
        }
        let path = prepare_target_dir(new.path)?;
        let share = Share {
            id: match new.id {
                Some(id) => id,
                None => ShareId(new_uuid()?),
            },
            project: self.config.project.clone(),
            name: new.name.to_string(),
            path: path.display().to_string(),
            size_gib,
            protocol,
            status: ShareStatus::Creating,
            created_at: now_ns(),
            updated_at: None,
            source_backup_id: Some(backup.id),
            fail_reason: None,
            adopted: false,
        };
        self.store.ensure_project(&share.project)?;
        // The operation is recorded before the share exists: a process
        // killed at any point leaves a `creating` share with an operation
        // that `cleanup` finds dead and ends in `error`.
        let op = self.begin_operation(&OpTarget {
            kind: OpKind::Restore,
            backup: backup.id,
            share: Some(share.id),
            share_status_before: None,
        })?;
        let made = self.store.insert_share(&share).and_then(|()| {
            let role = ShareRole {
                from: &[ShareStatus::Creating],
                during: ShareStatus::Creating,
                done: ShareStatus::Available,
                failed: ShareStatus::Error,
            };
            self.restore_in_operation(
                backup,
                Some((&share, role)),
                &path,
                &op,
                &crate::select::Selection::all(),
                progress,
            )
        });
        self.end_operation(&op)?;
        made?;
        self.store.share(share.id)
    }

    pub fn create_share(&self, new: &NewShare<'_>) -> Result<Share> {
        let protocol = checked_protocol(new)?;
        let path = share_dir(new.path)?;
        let share = Share {
            id: match new.id {
                Some(id) => id,
                None => ShareId(new_uuid()?),
            },
            project: self.config.project.clone(),
            name: new.name.to_string(),
            path: path.display().to_string(),
            size_gib: new.size_gib,
            protocol,
            status: ShareStatus::Available,
            created_at: now_ns(),
            updated_at: None,
            source_backup_id: None,
            fail_reason: None,
            adopted: false,
        };
        self.store.ensure_project(&share.project)?;
        self.store.insert_share(&share)?;
        Ok(share)
    }

    pub fn list_shares(&self, all_projects: bool) -> Result<Vec<Share>> {
        let project = (!all_projects).then_some(self.config.project.as_str());
        self.store.list_shares(project)
    }

    pub fn find_share(&self, id_or_name: &str) -> Result<Share> {
        self.store.find_share(&self.config.project, id_or_name)
    }

    /// Finds a share by id or name; failing that, if `arg` is a directory,
    /// the share registered for it, registering it (named after the
    /// directory) when there is none. The flag says a share was registered.
    /// An incremental backup passes `incremental`: a directory that is not
    /// a share yet has no backup to build on, and is not registered.
    pub fn share_for_backup(&self, arg: &str, incremental: bool) -> Result<(Share, bool)> {
        match self.find_share(arg) {
            Err(Error::NotFound { .. }) => {}
            other => return other.map(|s| (s, false)),
        }
        let path = Path::new(arg);
        if !path.is_dir() {
            return Err(Error::NotFound {
                kind: "share",
                name: format!("{arg} (neither a share id, a share name nor a directory)"),
            });
        }
        let canonical = std::fs::canonicalize(path).at(path)?;
        let canonical_str = canonical.display().to_string();
        let recorded = self.config.path_map.recorded(&canonical);
        if let Some(share) = self
            .store
            .share_by_path(&self.config.project, &recorded.display().to_string())?
        {
            return Ok((share, false));
        }
        if incremental {
            return Err(Error::InvalidState(format!(
                "{canonical_str} is not a share yet and has no backup; its first backup must \
                 be a full backup"
            )));
        }
        let base = canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into());
        let mut name = base.clone();
        let mut n = 1;
        while self.find_share(&name).is_ok() {
            n += 1;
            name = format!("{base}-{n}");
        }
        let share = self.create_share(&NewShare {
            id: None,
            name: &name,
            path: &canonical,
            size_gib: None,
            protocol: "NFS",
        })?;
        Ok((share, true))
    }

    /// Sets a share's status (`in-use`, or an administrator's reset).
    /// Returns the old status.
    pub fn set_share_status(&self, share: &Share, to: ShareStatus) -> Result<ShareStatus> {
        self.store.reset_share_status(share.id, to)
    }

    /// Deletes a share's record (never its data). Refused while it is busy or
    /// has backups, as Manila does.
    pub fn delete_share(&self, share: &Share) -> Result<()> {
        let idle = [ShareStatus::Available, ShareStatus::InUse];
        if !idle.contains(&share.status) {
            return Err(Error::Busy(format!(
                "share {} is {}; wait for the running operation to finish",
                share.name,
                share.status.as_str()
            )));
        }
        let backups = self
            .store
            .list_backups(&crate::store::BackupFilter {
                share_id: Some(share.id),
                ..Default::default()
            })?
            .len();
        if backups > 0 {
            return Err(Error::InvalidState(format!(
                "share {} has {backups} backup(s); delete them first",
                share.name
            )));
        }
        // Checked again, atomically, as the record goes.
        self.store.delete_share(share.id, &idle)
    }
}
