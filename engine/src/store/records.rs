//! The records of the service store: what Manila and Cinder call shares,
//! backups and quotas, with their statuses, plus the operations a process
//! runs (so another can tell a dead one from a live one).

use strata_format::{BackupId, ShareId, SnapshotId};

use crate::error::{Error, Result};

/// Backup status, as Manila and Cinder name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupStatus {
    Creating,
    Available,
    Restoring,
    Deleting,
    Error,
    ErrorDeleting,
}

impl BackupStatus {
    pub const ALL: [BackupStatus; 6] = [
        BackupStatus::Creating,
        BackupStatus::Available,
        BackupStatus::Restoring,
        BackupStatus::Deleting,
        BackupStatus::Error,
        BackupStatus::ErrorDeleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Creating => "creating",
            BackupStatus::Available => "available",
            BackupStatus::Restoring => "restoring",
            BackupStatus::Deleting => "deleting",
            BackupStatus::Error => "error",
            BackupStatus::ErrorDeleting => "error_deleting",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "creating" => BackupStatus::Creating,
            "available" => BackupStatus::Available,
            "restoring" => BackupStatus::Restoring,
            "deleting" => BackupStatus::Deleting,
            "error" => BackupStatus::Error,
            "error_deleting" => BackupStatus::ErrorDeleting,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown backup status {other:?} (known: creating, available, restoring, \
                     deleting, error, error_deleting)"
                )))
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupRecord {
    pub id: BackupId,
    pub project: String,
    pub share_id: ShareId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: BackupStatus,
    pub progress: u32,
    pub restore_progress: u32,
    pub size_gib: u64,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub host: Option<String>,
    pub availability_zone: Option<String>,
    pub backup_type: Option<String>,
    pub topic: Option<String>,
    pub is_incremental: bool,
    pub parent_id: Option<BackupId>,
    /// The share snapshot the backup read (none: it read the live share).
    pub snapshot_id: Option<SnapshotId>,
    pub data_timestamp: Option<i64>,
    pub fail_reason: Option<String>,
    pub file_count: u64,
    pub dir_count: u64,
    pub skipped_count: u64,
    pub logical_bytes: u64,
    pub new_bytes: u64,
    pub stored_bytes: u64,
    pub duration_ms: u64,
    /// Bytes read from the share (an incremental skips unchanged files).
    pub read_bytes: u64,
    /// Entries the backup's layer records (all of them for a full backup).
    pub changed_count: u64,
    /// Tombstones the backup's layer records.
    pub deleted_count: u64,
}

impl BackupRecord {
    /// A backup of `share_id` in `project` with nothing done yet: `creating`,
    /// every figure zero, every optional field unset (callers fill in the rest).
    pub fn new(id: BackupId, project: String, share_id: ShareId, created_at: i64) -> Self {
        BackupRecord {
            id,
            project,
            share_id,
            name: None,
            description: None,
            status: BackupStatus::Creating,
            progress: 0,
            restore_progress: 0,
            size_gib: 0,
            created_at,
            updated_at: None,
            host: None,
            availability_zone: None,
            backup_type: None,
            topic: Some("strata-data".into()),
            is_incremental: false,
            parent_id: None,
            snapshot_id: None,
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
        }
    }

    /// Takes the figures of a finished backup from its layer's statistics:
    /// size (logical bytes, rounded up to GiB), counts, and a `fail_reason`
    /// when paths were skipped.
    pub fn set_layer_stats(&mut self, s: &strata_format::layer::LayerStats) {
        self.size_gib = s.logical_bytes.div_ceil(1 << 30);
        self.file_count = s.files + s.hardlinks;
        self.dir_count = s.dirs;
        self.skipped_count = s.skipped;
        self.logical_bytes = s.logical_bytes;
        self.new_bytes = s.new_bytes;
        self.stored_bytes = s.stored_bytes;
        if s.skipped > 0 {
            self.fail_reason = Some(format!(
                "{} path(s) could not be backed up; see the report",
                s.skipped
            ));
        }
    }
}

/// One line of a backup's report: a path that was skipped or changed, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub problem: String,
}

/// Filters for `list_backups`; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct BackupFilter<'a> {
    pub project: Option<&'a str>,
    pub share_id: Option<ShareId>,
    pub name: Option<&'a str>,
    pub status: Option<BackupStatus>,
}

/// A page of backups: a filter narrowed further, sorted and sliced by the
/// store (an API's list of thousands of backups reads only its page).
#[derive(Clone, Debug, Default)]
pub struct BackupQuery<'a> {
    pub filter: BackupFilter<'a>,
    /// Case-insensitive substrings of the name and description.
    pub name_contains: Option<&'a str>,
    pub description: Option<&'a str>,
    pub description_contains: Option<&'a str>,
    pub sort: BackupSort,
    pub ascending: bool,
    pub limit: Option<u64>,
    pub offset: u64,
}

/// What a page of backups is sorted by (ties broken by id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackupSort {
    #[default]
    CreatedAt,
    UpdatedAt,
    Id,
    Name,
    Description,
    Status,
    Size,
    ShareId,
    Progress,
    RestoreProgress,
}

impl BackupSort {
    /// Manila's `sort_key` names.
    pub fn parse(key: &str) -> Option<BackupSort> {
        Some(match key {
            "created_at" => BackupSort::CreatedAt,
            "updated_at" => BackupSort::UpdatedAt,
            "id" => BackupSort::Id,
            "name" | "display_name" => BackupSort::Name,
            "description" | "display_description" => BackupSort::Description,
            "status" => BackupSort::Status,
            "size" => BackupSort::Size,
            "share_id" => BackupSort::ShareId,
            "progress" => BackupSort::Progress,
            "restore_progress" => BackupSort::RestoreProgress,
            _ => return None,
        })
    }

    /// The catalog column (a fixed name, never caller text).
    pub fn column(self) -> &'static str {
        match self {
            BackupSort::CreatedAt => "created_at",
            BackupSort::UpdatedAt => "updated_at",
            BackupSort::Id => "id",
            BackupSort::Name => "name",
            BackupSort::Description => "description",
            BackupSort::Status => "status",
            BackupSort::Size => "size_gib",
            BackupSort::ShareId => "share_id",
            BackupSort::Progress => "progress",
            BackupSort::RestoreProgress => "restore_progress",
        }
    }
}

/// Share status, as Manila names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareStatus {
    /// Being made (from a backup: while the backup is restored into it).
    Creating,
    Available,
    BackupCreating,
    BackupRestoring,
    BackupRestoringError,
    InUse,
    /// Its creation failed (the reason is kept).
    Error,
}

impl ShareStatus {
    pub const ALL: [ShareStatus; 7] = [
        ShareStatus::Creating,
        ShareStatus::Available,
        ShareStatus::BackupCreating,
        ShareStatus::BackupRestoring,
        ShareStatus::BackupRestoringError,
        ShareStatus::InUse,
        ShareStatus::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShareStatus::Creating => "creating",
            ShareStatus::Available => "available",
            ShareStatus::BackupCreating => "backup_creating",
            ShareStatus::BackupRestoring => "backup_restoring",
            ShareStatus::BackupRestoringError => "backup_restoring_error",
            ShareStatus::InUse => "in-use",
            ShareStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "creating" => ShareStatus::Creating,
            "available" => ShareStatus::Available,
            "backup_creating" => ShareStatus::BackupCreating,
            "backup_restoring" => ShareStatus::BackupRestoring,
            "backup_restoring_error" => ShareStatus::BackupRestoringError,
            "in-use" => ShareStatus::InUse,
            "error" => ShareStatus::Error,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown share status {other:?}"
                )))
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub id: ShareId,
    pub project: String,
    pub name: String,
    pub path: String,
    pub size_gib: Option<u64>,
    pub protocol: String,
    pub status: ShareStatus,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    /// The backup the share was created from, if it was.
    pub source_backup_id: Option<BackupId>,
    /// Why its creation, or the last restore into it, failed.
    pub fail_reason: Option<String>,
    /// Recorded from the repository (a catalog rebuild) or an imported
    /// record, its path not yet confirmed by an operator: until it is,
    /// nothing backs it up or restores into it.
    pub adopted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Backup,
    Restore,
    Delete,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Backup => "backup",
            OpKind::Restore => "restore",
            OpKind::Delete => "delete",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "backup" => Ok(OpKind::Backup),
            "restore" => Ok(OpKind::Restore),
            "delete" => Ok(OpKind::Delete),
            other => Err(Error::Bug(format!(
                "catalog holds operation kind {other:?}"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub id: String,
    pub kind: OpKind,
    pub backup_id: Option<BackupId>,
    /// The share it holds busy, and the status to give it back.
    pub share_id: Option<ShareId>,
    pub share_status_before: Option<String>,
    pub pid: u32,
    /// The process's start time (clock ticks since boot), so a reused pid
    /// is not mistaken for the operation's process.
    pub process_start: u64,
    pub host: String,
    pub boot_id: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
}

/// Limits of one project; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub backups: Option<u64>,
    pub backup_gigabytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    pub backups: u64,
    pub backup_gigabytes: u64,
}

/// Snapshot status, as Manila names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    Creating,
    Available,
    Deleting,
    Error,
}

impl SnapshotStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotStatus::Creating => "creating",
            SnapshotStatus::Available => "available",
            SnapshotStatus::Deleting => "deleting",
            SnapshotStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "creating" => SnapshotStatus::Creating,
            "available" => SnapshotStatus::Available,
            "deleting" => SnapshotStatus::Deleting,
            "error" => SnapshotStatus::Error,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown snapshot status {other:?} (known: creating, available, deleting, \
                     error)"
                )))
            }
        })
    }
}

/// How a snapshot came to be, which says what deleting it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotKind {
    /// A read-only btrfs snapshot strata took of the share's subvolume;
    /// deleting the snapshot deletes it.
    Btrfs,
    /// A snapshot the storage made (NetApp `.snapshot/NAME`, ZFS
    /// `.zfs/snapshot/NAME`, an LVM mount), registered by its path;
    /// deleting the snapshot forgets the record and never touches its data.
    Registered,
}

impl SnapshotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Btrfs => "btrfs",
            SnapshotKind::Registered => "registered",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        match s {
            "btrfs" => Ok(SnapshotKind::Btrfs),
            "registered" => Ok(SnapshotKind::Registered),
            other => Err(Error::Bug(format!("catalog holds snapshot kind {other:?}"))),
        }
    }
}

/// A point-in-time, read-only image of a share's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub project: String,
    pub share_id: ShareId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: SnapshotStatus,
    /// Where its tree is.
    pub path: String,
    pub kind: SnapshotKind,
    /// The moment its data is from (nanoseconds since the epoch): a backup
    /// of it takes this as its `data_timestamp`.
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub fail_reason: Option<String>,
}
