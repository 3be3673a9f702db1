//! Share snapshots (`creating → available | error`, `available | error →
//! deleting → deleted | error`): a read-only btrfs snapshot strata takes of
//! a share that is a btrfs subvolume, or a snapshot the storage made,
//! registered by its path. A backup of a snapshot reads its tree and takes
//! its creation time as the backup's `data_timestamp`; meanwhile the
//! snapshot is busy (it cannot be deleted) and the share stays available.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_format::SnapshotId;

use super::Engine;
use crate::clock::now_ns;
use crate::error::{Error, IoContext, Result};
use crate::repository::new_uuid;
use crate::store::{Share, ShareStatus};
use crate::store::{Snapshot, SnapshotKind, SnapshotStatus};

/// What `create_snapshot` should record.
#[derive(Clone, Debug, Default)]
pub struct NewSnapshot<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    /// A snapshot the storage already made, registered instead of taken.
    pub path: Option<&'a Path>,
    /// When a registered snapshot was made (nanoseconds since the epoch);
    /// by default its directory's change time.
    pub created_at: Option<i64>,
}

/// Where strata keeps the btrfs snapshots it takes of a share: beside the
/// share (on the same file system, outside the tree it backs up).
fn snapshot_home(share: &Share) -> Result<PathBuf> {
    let path = Path::new(&share.path);
    let parent = path.parent().ok_or_else(|| {
        Error::Unsupported(format!(
            "share {} is the root directory: there is no room beside it for snapshots",
            share.name
        ))
    })?;
    Ok(parent.join(".strata-snapshots").join(share.id.to_string()))
}

/// A registered snapshot's directory: an absolute, normalized path with no
/// symlink anywhere on it (it resolves to itself), that is a snapshot
/// location of `share` (`<share>/.snapshot/NAME`,
/// `<share>/.zfs/snapshot/NAME`, strata's own
/// `.strata-snapshots/<share id>/NAME` beside it) or lies under one of
/// `roots`. Anything else would put another tree's files into the share's
/// backups, and into the share on an in-place restore.
fn registrable(share: &Share, path: &Path, roots: &[PathBuf]) -> Result<PathBuf> {
    let text = path.to_str().ok_or_else(|| {
        Error::InvalidArgument(format!("snapshot path {} is not UTF-8", path.display()))
    })?;
    crate::validate::absolute_path("snapshot path", text)?;
    let canonical = std::fs::canonicalize(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound {
            kind: "snapshot path",
            name: text.to_string(),
        },
        _ => Error::io(path, e),
    })?;
    if canonical != path {
        return Err(Error::InvalidArgument(format!(
            "snapshot path {text} passes through a symlink (it resolves to {}); a snapshot \
             is registered by a path without symlinks",
            canonical.display()
        )));
    }
    if !std::fs::symlink_metadata(path).at(path)?.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "snapshot path {text} is not a directory"
        )));
    }
    let share_root = Path::new(&share.path);
    let homes = [
        Some(share_root.join(".snapshot")),
        Some(share_root.join(".zfs").join("snapshot")),
        snapshot_home(share).ok(),
    ];
    let at_home = path
        .parent()
        .is_some_and(|parent| homes.iter().flatten().any(|h| h == parent));
    let under_root = roots.iter().any(|r| path.starts_with(r) && path != r);
    if !(at_home || under_root) {
        return Err(Error::InvalidArgument(format!(
            "snapshot path {text} is not a snapshot location of share {} ({}/.snapshot/NAME, \
             {}/.zfs/snapshot/NAME) nor under a configured snapshot root",
            share.name, share.path, share.path
        )));
    }
    Ok(canonical)
}

/// The btrfs file system's magic number (`statfs`), and the inode number of
/// every subvolume's root directory.
const BTRFS_MAGIC: i64 = 0x9123_683e;
const SUBVOLUME_ROOT_INO: u64 = 256;

/// Whether `path` is the root of a btrfs subvolume (it can be snapshotted).
fn is_btrfs_subvolume(path: &Path) -> Result<bool> {
    let fs = rustix::fs::statfs(path).map_err(|e| Error::io(path, e.into()))?;
    if fs.f_type as i64 != BTRFS_MAGIC {
        return Ok(false);
    }
    Ok(std::fs::metadata(path).at(path)?.ino() == SUBVOLUME_ROOT_INO)
}

/// Runs the btrfs tool; its own message is the error's.
fn btrfs(args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new("btrfs").args(args).output().map_err(|e| {
        Error::Unsupported(format!(
            "cannot run the btrfs tool (btrfs-progs) to manage snapshots: {e}"
        ))
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::InvalidState(format!(
        "btrfs {}: {}",
        args.first()
            .map(|a| a.to_string_lossy())
            .unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Why a backup cannot read `snapshot` (`status`, or `None`: it is gone).
pub(super) fn snapshot_gone(snapshot: Option<SnapshotId>, status: Option<SnapshotStatus>) -> Error {
    let id = snapshot.map(|s| s.to_string()).unwrap_or_default();
    match status {
        Some(status) => Error::InvalidState(format!(
            "snapshot {id} is {}; only an available snapshot is backed up",
            status.as_str()
        )),
        None => Error::NotFound {
            kind: "snapshot",
            name: id,
        },
    }
}

impl Engine {
    /// Takes (or registers) a snapshot of `share`. A share that is a btrfs
    /// subvolume gets a read-only btrfs snapshot beside it; any other
    /// share needs the path of a snapshot its storage made.
    pub fn create_snapshot(&self, share: &Share, new: &NewSnapshot<'_>) -> Result<Snapshot> {
        crate::validate::text("snapshot name", new.name, false)?;
        crate::validate::text("description", new.description, true)?;
        let steady = [
            ShareStatus::Available,
            ShareStatus::InUse,
            ShareStatus::BackupCreating,
        ];
        if !steady.contains(&share.status) {
            return Err(Error::Busy(format!(
                "share {} is {}: a snapshot of it now would not hold a consistent tree",
                share.name,
                share.status.as_str()
            )));
        }
        let mut snapshot = Snapshot {
            id: SnapshotId(new_uuid()?),
            project: share.project.clone(),
            share_id: share.id,
            name: new.name.map(str::to_string),
            description: new.description.map(str::to_string),
            status: SnapshotStatus::Available,
            path: String::new(),
            kind: SnapshotKind::Registered,
            created_at: 0,
            updated_at: None,
            fail_reason: None,
        };
        if let Some(path) = new.path {
            let path = registrable(share, path, &self.config.snapshot_roots)?;
            let meta = std::fs::metadata(&path).at(&path)?;
            snapshot.path = path.display().to_string();
            snapshot.created_at = new
                .created_at
                .unwrap_or(meta.ctime() * 1_000_000_000 + meta.ctime_nsec());
            if snapshot.created_at > now_ns() {
                return Err(Error::InvalidArgument(
                    "a snapshot's creation time cannot be in the future".into(),
                ));
            }
            self.store.insert_snapshot(&snapshot)?;
            return Ok(snapshot);
        }
        if new.created_at.is_some() {
            return Err(Error::InvalidArgument(
                "a creation time is given only for a snapshot registered by its path".into(),
            ));
        }
        let source = Path::new(&share.path);
        if !is_btrfs_subvolume(source)? {
            return Err(Error::Unsupported(format!(
                "share {} ({}) is not a btrfs subvolume, so strata cannot snapshot it; \
                 register a snapshot its storage made by its path",
                share.name, share.path
            )));
        }
        let home = snapshot_home(share)?;
        std::fs::create_dir_all(&home).at(&home)?;
        let target = home.join(snapshot.id.to_string());
        snapshot.kind = SnapshotKind::Btrfs;
        snapshot.status = SnapshotStatus::Creating;
        snapshot.path = target.display().to_string();
        // Taken before the snapshot: whatever the snapshot holds is at
        // least this recent, which is what an incremental's parent choice
        // and racy-entry check need.
        snapshot.created_at = now_ns();
        self.store.insert_snapshot(&snapshot)?;
        let taken = btrfs(&[
            "subvolume".as_ref(),
            "snapshot".as_ref(),
            "-r".as_ref(),
            source.as_os_str(),
            target.as_os_str(),
        ]);
        let (to, reason) = match &taken {
            Ok(()) => (SnapshotStatus::Available, None),
            Err(e) => (SnapshotStatus::Error, Some(e.to_string())),
        };
        self.store.transition_snapshot(
            snapshot.id,
            &[SnapshotStatus::Creating],
            to,
            reason.as_deref(),
        )?;
        taken?;
        self.store.snapshot(snapshot.id)
    }

    pub fn find_snapshot(&self, id_or_name: &str) -> Result<Snapshot> {
        self.store.find_snapshot(&self.config.project, id_or_name)
    }

    /// The project's snapshots, of one share or of all.
    pub fn list_snapshots(&self, share: Option<&Share>) -> Result<Vec<Snapshot>> {
        self.store
            .list_snapshots(Some(&self.config.project), share.map(|s| s.id))
    }

    /// Deletes a snapshot: a btrfs snapshot strata took is deleted; a
    /// registered one is only forgotten (its data is the storage's).
    /// Refused while a backup reads it.
    pub fn delete_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        self.store.transition_idle_snapshot(
            snapshot.id,
            &[SnapshotStatus::Available, SnapshotStatus::Error],
            SnapshotStatus::Deleting,
        )?;
        let path = Path::new(&snapshot.path);
        let removed = match snapshot.kind {
            SnapshotKind::Registered => Ok(()),
            SnapshotKind::Btrfs if !path.exists() => Ok(()),
            SnapshotKind::Btrfs => {
                btrfs(&["subvolume".as_ref(), "delete".as_ref(), path.as_os_str()])
            }
        };
        match removed {
            Ok(()) => self.store.remove_snapshot(snapshot.id),
            Err(e) => {
                self.store.transition_snapshot(
                    snapshot.id,
                    &[SnapshotStatus::Deleting],
                    SnapshotStatus::Error,
                    Some(&e.to_string()),
                )?;
                Err(e)
            }
        }
    }

    /// The snapshot `arg` names, which a backup of `share` can read: one of
    /// this share's, available, and (registered) still at one of the
    /// share's snapshot locations with no symlink on its path.
    pub(super) fn snapshot_to_back_up(&self, share: &Share, arg: &str) -> Result<Snapshot> {
        let snapshot = self.find_snapshot(arg)?;
        if snapshot.share_id != share.id {
            return Err(Error::InvalidArgument(format!(
                "snapshot {arg} is a snapshot of another share (share {}), not of {}",
                snapshot.share_id, share.name
            )));
        }
        if snapshot.status != SnapshotStatus::Available {
            return Err(snapshot_gone(Some(snapshot.id), Some(snapshot.status)));
        }
        if snapshot.kind == SnapshotKind::Registered {
            registrable(
                share,
                Path::new(&snapshot.path),
                &self.config.snapshot_roots,
            )?;
        }
        Ok(snapshot)
    }
}
