//! The service store as the service layer sees it: records of projects,
//! shares, backups, running operations and quotas, moved between statuses
//! by compare-and-set.
//!
//! The store is one object made of parts, one trait each: [`ProjectStore`],
//! [`QuotaStore`], [`ShareStore`], [`BackupReads`], [`BackupWrites`],
//! [`SnapshotStore`] and [`OperationStore`]; [`ServiceStore`] is all of
//! them. The SQLite catalog implements each part beside its tables, with
//! no forwarding layer: every operation has one name.
//!
//! The store makes transitions atomic; it decides nothing. Which statuses
//! admit a backup, what a quota allows, which backup an incremental builds
//! on: the service layer (`crate::service`) decides, and hands the store
//! the condition to check in the same atomic step as the change. The
//! SQLite catalog ([`crate::Catalog`]) implements it today; a catalog
//! shared by several nodes can implement it without a change to the
//! service layer.
//!
//! Durability, for every method that writes: when it returns `Ok` its change
//! is durable and was made in one atomic step; when it returns `Err` none of
//! it is visible. A compare-and-set that finds another status returns
//! [`Error::InvalidState`] (backups) or [`Error::Busy`] (shares) and changes
//! nothing.
//!
//! [`Error::InvalidState`]: crate::Error::InvalidState
//! [`Error::Busy`]: crate::Error::Busy

pub mod conformance;
mod memory;
mod records;

pub use memory::MemoryServiceStore;

pub use records::{
    BackupFilter, BackupQuery, BackupRecord, BackupSort, BackupStatus, OpKind, Operation, Problem,
    Quota, QuotaUsage, Share, ShareStatus, Snapshot, SnapshotKind, SnapshotStatus,
};

use strata_format::{BackupId, ShareId, SnapshotId};

use crate::error::Result;

/// What must still hold when a new backup's record goes in, checked in the
/// same atomic step as the insert.
#[derive(Clone, Copy, Debug)]
pub struct Admission {
    /// The backup it builds on, which must still be `available`.
    pub parent: Option<BackupId>,
    /// The project's limits, counted over every backup record it has.
    pub quota: Quota,
    /// The size the new backup counts for against `quota.backup_gigabytes`.
    pub estimate_gib: u64,
    /// The snapshot it reads, which must still be `available`.
    pub snapshot: Option<SnapshotId>,
}

impl Admission {
    /// Judges the admission on what the store finds, looked up only as
    /// needed (in the store's atomic step): the parent's status, the
    /// snapshot's, and what the project's records count for.
    pub fn judge(
        &self,
        parent_status: impl FnOnce(BackupId) -> Result<Option<BackupStatus>>,
        snapshot_status: impl FnOnce(SnapshotId) -> Result<Option<SnapshotStatus>>,
        usage: impl FnOnce() -> Result<QuotaUsage>,
    ) -> Result<Admitted> {
        if let Some(parent) = self.parent {
            let status = parent_status(parent)?;
            if status != Some(BackupStatus::Available) {
                return Ok(Admitted::ParentGone(status));
            }
        }
        if let Some(snapshot) = self.snapshot {
            let status = snapshot_status(snapshot)?;
            if status != Some(SnapshotStatus::Available) {
                return Ok(Admitted::SnapshotGone(status));
            }
        }
        let used = usage()?;
        let fits_count = crate::validate::fits(used.backups, 1, self.quota.backups);
        let fits_size = crate::validate::fits(
            used.backup_gigabytes,
            self.estimate_gib,
            self.quota.backup_gigabytes,
        );
        Ok(match fits_count && fits_size {
            true => Admitted::Yes,
            false => Admitted::OverQuota(used),
        })
    }
}

/// The one record a name picks out of `found` (those of that name); more
/// than one is refused, naming the `kind`, so the caller names it by id.
pub(crate) fn only_one<T>(mut found: Vec<T>, kind: &'static str, id_or_name: &str) -> Result<T> {
    match found.len() {
        0 => Err(crate::Error::NotFound {
            kind,
            name: id_or_name.to_string(),
        }),
        1 => Ok(found.remove(0)),
        n => Err(crate::Error::InvalidArgument(format!(
            "{n} {kind}s are named {id_or_name:?}; name one by id"
        ))),
    }
}

/// A backup's parent changing because its layer was rewritten against its
/// grandparent (a prune merged the parent into it).
#[derive(Clone, Copy, Debug)]
pub struct Reparent<'a> {
    /// The statuses the backup may be in.
    pub statuses: &'a [BackupStatus],
    pub from: Option<BackupId>,
    pub to: Option<BackupId>,
    /// Entries and tombstones of the rewritten layer.
    pub entries: u64,
    pub tombstones: u64,
}

/// Whether a backup's record went in, and if not, which condition failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    Yes,
    /// One more backup of the estimated size would exceed the quota; the
    /// usage found.
    OverQuota(QuotaUsage),
    /// The parent is no longer `available`: its status, or `None` if gone.
    ParentGone(Option<BackupStatus>),
    /// The snapshot is no longer `available`: its status, or `None` if gone.
    SnapshotGone(Option<SnapshotStatus>),
}

/// The store's own bookkeeping and its projects.
pub trait ProjectStore: Send + Sync {
    /// A value of the store's own bookkeeping (which repository it indexes).
    fn meta(&self, key: &str) -> Result<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    /// Records a project (idempotent).
    fn ensure_project(&self, name: &str) -> Result<()>;
    fn projects(&self) -> Result<Vec<String>>;

    /// Where this store keeps the leases of `repository`, when it keeps
    /// them (a catalog several nodes share), with this store's id;
    /// `None`: they live in the repository itself.
    fn repository_locks(
        &self,
        _repository: &strata_format::RepositoryId,
    ) -> Option<(
        String,
        std::sync::Arc<dyn crate::repository::objects::ObjectStore>,
    )> {
        None
    }
}

/// Each project's limits and what its backups count against them.
pub trait QuotaStore: Send + Sync {
    /// The project's own limits (`None` where it has none of its own).
    fn quota(&self, project: &str) -> Result<Option<Quota>>;
    fn set_quota(&self, project: &str, quota: &Quota) -> Result<()>;
    /// What the project's backup records count for against its quota.
    fn quota_usage(&self, project: &str) -> Result<QuotaUsage>;
}

/// Shares and their statuses, moved by compare-and-set.
pub trait ShareStore: Send + Sync {
    /// Inserts a share; refused (`InvalidArgument`) when its project already
    /// has a share of that name.
    fn insert_share(&self, share: &Share) -> Result<()>;
    fn share(&self, id: ShareId) -> Result<Share>;
    /// A share of `project` by id or by name; other projects' shares are not
    /// found.
    fn find_share(&self, project: &str, id_or_name: &str) -> Result<Share>;
    fn share_by_path(&self, project: &str, path: &str) -> Result<Option<Share>>;
    fn list_shares(&self, project: Option<&str>) -> Result<Vec<Share>>;
    /// Compare-and-set: moves the share from one of `from` to `to`; returns
    /// the status it had.
    fn transition_share(
        &self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
    ) -> Result<ShareStatus>;
    /// [`ShareStore::transition_share`], and, in the same atomic step,
    /// records on operation `op` the status the share had, so that a
    /// cleanup after a crash gives back the right one.
    fn claim_share(
        &self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
        op: &str,
    ) -> Result<ShareStatus>;
    /// Keeps (or clears) why the share's creation or last restore failed.
    fn set_share_fail_reason(&self, id: ShareId, reason: Option<&str>) -> Result<()>;
    /// Sets a share's status whatever it is (an administrator's reset);
    /// returns the status it had.
    fn reset_share_status(&self, id: ShareId, to: ShareStatus) -> Result<ShareStatus>;
    /// Moves the share from `from` to `to` with `reason`, atomically, only
    /// if no recorded operation holds it (an operation is recorded before
    /// it claims a share); returns whether it moved.
    fn release_orphan_share(
        &self,
        id: ShareId,
        from: ShareStatus,
        to: ShareStatus,
        reason: &str,
    ) -> Result<bool>;
    /// Sets the share's path and marks it confirmed (no longer adopted),
    /// if it is in one of `from`; durable when it returns.
    fn confirm_share_path(&self, id: ShareId, path: &str, from: &[ShareStatus]) -> Result<()>;
    /// Removes a share that is in one of `from` and that no backup record
    /// names; refused otherwise (`Busy` for its status, `InvalidState` for
    /// its backups).
    fn delete_share(&self, id: ShareId, from: &[ShareStatus]) -> Result<()>;
}

/// Backup records as they are read.
pub trait BackupReads: Send + Sync {
    fn backup(&self, id: BackupId) -> Result<BackupRecord>;
    /// A backup of `project` by id, or by name (which must then be unique).
    fn find_backup(&self, project: &str, id_or_name: &str) -> Result<BackupRecord>;
    /// Backups matching `filter`, oldest first.
    fn list_backups(&self, filter: &BackupFilter<'_>) -> Result<Vec<BackupRecord>>;
    /// One page of the backups `query` selects, in its order.
    fn list_backups_page(&self, query: &BackupQuery<'_>) -> Result<Vec<BackupRecord>>;
    /// Backups whose parent is `id`, oldest first.
    fn dependents(&self, id: BackupId) -> Result<Vec<BackupId>>;
    /// The paths a backup skipped or saw change, and why.
    fn backup_problems(&self, id: BackupId) -> Result<Vec<Problem>>;
    /// The device of the share's root when `id` read it, if recorded.
    fn backup_root_dev(&self, id: BackupId) -> Result<Option<u64>>;
}

/// Backup records as they change: admission, statuses, figures, parents,
/// each by compare-and-set.
pub trait BackupWrites: Send + Sync {
    /// Inserts a new backup's record (`creating`) if `admission` holds;
    /// nothing is written otherwise.
    fn insert_backup(&self, b: &BackupRecord, admission: &Admission) -> Result<Admitted>;
    /// Inserts a complete record recovered from the repository (a rebuild,
    /// an import), with its report and root device; refused
    /// (`InvalidArgument`) if the id exists.
    fn import_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()>;
    /// Compare-and-set: moves the backup from one of `from` to `to`;
    /// returns the status it had.
    fn transition_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus>;
    /// [`BackupWrites::transition_backup`] on condition that no backup
    /// names `id` as its parent (checked in the same step, so that no
    /// incremental can start on a backup being deleted); `InvalidState`
    /// naming the dependents otherwise.
    fn transition_leaf_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus>;
    /// Compare-and-set: the backup (in one of `change.statuses`) had
    /// `change.from` as its parent and now has `change.to`, its layer having
    /// been rewritten against it (FORMAT.md section 7d); its entry and
    /// tombstone counts become the new layer's. `InvalidState` if the
    /// status or the parent is not as expected; nothing is written then.
    fn reparent_backup(&self, id: BackupId, change: &Reparent<'_>) -> Result<()>;
    /// Compare-and-set `creating → available`, with the finished backup's
    /// figures (from `b`), its report and its root's device.
    fn complete_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()>;
    /// Compare-and-set from one of `from` to `error`, keeping `reason`.
    fn fail_backup(&self, id: BackupId, from: &[BackupStatus], reason: &str) -> Result<()>;
    /// Keeps `reason` as the backup's `fail_reason`, whatever its status.
    fn set_fail_reason(&self, id: BackupId, reason: &str) -> Result<()>;
    /// The progress of its backup (or, with `restore`, its restore), 0-100.
    fn set_backup_progress(&self, id: BackupId, percent: u32, restore: bool) -> Result<()>;
    /// Sets the name and/or description (`None` keeps the old one; an empty
    /// string clears it).
    fn rename_backup(
        &self,
        id: BackupId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<()>;
    /// Sets a backup's status whatever it is (an administrator's reset);
    /// returns the status it had.
    fn reset_backup_status(&self, id: BackupId, to: BackupStatus) -> Result<BackupStatus>;
    /// Removes a backup's record, report and chunk references.
    fn remove_backup(&self, id: BackupId) -> Result<()>;
}

/// Share snapshots and their statuses.
pub trait SnapshotStore: Send + Sync {
    /// Inserts a snapshot's record.
    fn insert_snapshot(&self, snapshot: &Snapshot) -> Result<()>;
    fn snapshot(&self, id: SnapshotId) -> Result<Snapshot>;
    /// A snapshot of `project` by id, or by name (which must then be unique).
    fn find_snapshot(&self, project: &str, id_or_name: &str) -> Result<Snapshot>;
    /// Snapshots of `project` (every project: `None`), of one share or all,
    /// oldest first.
    fn list_snapshots(
        &self,
        project: Option<&str>,
        share: Option<ShareId>,
    ) -> Result<Vec<Snapshot>>;
    /// Compare-and-set: moves the snapshot from one of `from` to `to`,
    /// keeping `reason` (or clearing it); returns the status it had.
    fn transition_snapshot(
        &self,
        id: SnapshotId,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
        reason: Option<&str>,
    ) -> Result<SnapshotStatus>;
    /// [`SnapshotStore::transition_snapshot`] on condition that no backup
    /// is `creating` from it (checked in the same step): a snapshot being
    /// backed up is busy. `Busy` naming the backup otherwise.
    fn transition_idle_snapshot(
        &self,
        id: SnapshotId,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
    ) -> Result<SnapshotStatus>;
    /// Removes a snapshot's record.
    fn remove_snapshot(&self, id: SnapshotId) -> Result<()>;
}

/// Running operations and their heartbeats (crash cleanup reads them).
pub trait OperationStore: Send + Sync {
    /// Records a running operation.
    fn insert_operation(&self, op: &Operation) -> Result<()>;
    /// Stamps operation `id` alive, on the store's own clock. The stamp
    /// only ever grows (by at least 1 each beat, whatever that clock does):
    /// observers watch it change, on their own clocks, and never compare
    /// it with their time.
    fn heartbeat(&self, id: &str) -> Result<()>;
    fn remove_operation(&self, id: &str) -> Result<()>;
    /// Every recorded operation, oldest first.
    fn operations(&self) -> Result<Vec<Operation>>;
    /// The operation running on `backup`, if any.
    fn operation_on(&self, backup: BackupId) -> Result<Option<String>>;

    /// Now, on the clock that stamps heartbeats, when every node's
    /// heartbeats are stamped by one (a database server's): an operation
    /// of another node is then dead once its heartbeat is older than a
    /// lease on that clock. `None` (the default): each node stamps its
    /// own, and an observer watches a heartbeat stand still on its own
    /// clock instead.
    fn store_clock(&self) -> Result<Option<i64>> {
        Ok(None)
    }
}

/// The service layer's whole store: every part of it, as one object. Each
/// method says what is durable when it returns; the SQLite catalog
/// implements each part beside its tables.
pub trait ServiceStore:
    ProjectStore + QuotaStore + ShareStore + BackupReads + BackupWrites + SnapshotStore + OperationStore
{
}

impl<T> ServiceStore for T where
    T: ProjectStore
        + QuotaStore
        + ShareStore
        + BackupReads
        + BackupWrites
        + SnapshotStore
        + OperationStore
{
}

/// A compare-and-set's check of a backup's or snapshot's status, in every
/// store alike: `current` if it is one of `from`, else `InvalidState`
/// naming the `kind` and `id`, what it is and what was expected.
pub(crate) fn expected<S: Copy + PartialEq>(
    kind: &str,
    id: &dyn std::fmt::Display,
    current: S,
    from: &[S],
    name: fn(S) -> &'static str,
) -> Result<S> {
    match from.contains(&current) {
        true => Ok(current),
        false => Err(crate::Error::InvalidState(format!(
            "{kind} {id} is {}, expected {}",
            name(current),
            one_of(from, name)
        ))),
    }
}

/// `from`'s names joined with "or", for messages of a compare-and-set.
pub(crate) fn one_of<T: Copy>(from: &[T], name: fn(T) -> &'static str) -> String {
    from.iter()
        .map(|s| name(*s))
        .collect::<Vec<_>>()
        .join(" or ")
}
