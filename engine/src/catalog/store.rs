//! The catalog as the service store (see [`crate::store`] for the
//! contract of each method; the SQL is beside each table's code).

use strata_format::{BackupId, ShareId, SnapshotId};

use super::Catalog;
use crate::error::Result;
use crate::store::{
    Admission, Admitted, BackupFilter, BackupQuery, BackupRecord, BackupStatus, Operation, Problem,
    Quota, QuotaUsage, Reparent, ServiceStore, Share, ShareStatus, Snapshot, SnapshotStatus,
};

impl ServiceStore for Catalog {
    fn insert_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        Catalog::insert_snapshot(self, snapshot)
    }

    fn snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        Catalog::snapshot(self, id)
    }

    fn find_snapshot(&self, project: &str, id_or_name: &str) -> Result<Snapshot> {
        Catalog::find_snapshot(self, project, id_or_name)
    }

    fn list_snapshots(
        &self,
        project: Option<&str>,
        share: Option<ShareId>,
    ) -> Result<Vec<Snapshot>> {
        Catalog::list_snapshots(self, project, share)
    }

    fn transition_snapshot(
        &self,
        id: SnapshotId,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
        reason: Option<&str>,
    ) -> Result<SnapshotStatus> {
        Catalog::transition_snapshot(self, id, from, to, reason)
    }

    fn transition_idle_snapshot(
        &self,
        id: SnapshotId,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
    ) -> Result<SnapshotStatus> {
        Catalog::transition_idle_snapshot(self, id, from, to)
    }

    fn remove_snapshot(&self, id: SnapshotId) -> Result<()> {
        Catalog::remove_snapshot(self, id)
    }

    fn set_share_fail_reason(&self, id: ShareId, reason: Option<&str>) -> Result<()> {
        Catalog::set_share_fail_reason(self, id, reason)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Catalog::meta(self, key)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        Catalog::set_meta(self, key, value)
    }

    fn ensure_project(&self, name: &str) -> Result<()> {
        Catalog::ensure_project(self, name)
    }

    fn projects(&self) -> Result<Vec<String>> {
        Catalog::projects(self)
    }

    fn insert_share(&self, share: &Share) -> Result<()> {
        Catalog::insert_share(self, share)
    }

    fn share(&self, id: ShareId) -> Result<Share> {
        Catalog::share(self, id)
    }

    fn find_share(&self, project: &str, id_or_name: &str) -> Result<Share> {
        Catalog::find_share(self, project, id_or_name)
    }

    fn share_by_path(&self, project: &str, path: &str) -> Result<Option<Share>> {
        Catalog::share_by_path(self, project, path)
    }

    fn list_shares(&self, project: Option<&str>) -> Result<Vec<Share>> {
        Catalog::list_shares(self, project)
    }

    fn transition_share(
        &self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
    ) -> Result<ShareStatus> {
        Catalog::transition_share(self, id, from, to)
    }

    fn claim_share(
        &self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
        op: &str,
    ) -> Result<ShareStatus> {
        Catalog::claim_share(self, id, from, to, op)
    }

    fn reset_share_status(&self, id: ShareId, to: ShareStatus) -> Result<ShareStatus> {
        Catalog::reset_share_status(self, id, to)
    }

    fn release_orphan_share(
        &self,
        id: ShareId,
        from: ShareStatus,
        to: ShareStatus,
        reason: &str,
    ) -> Result<bool> {
        Catalog::release_orphan_share(self, id, from, to, reason)
    }

    fn confirm_share_path(&self, id: ShareId, path: &str, from: &[ShareStatus]) -> Result<()> {
        Catalog::confirm_share_path(self, id, path, from)
    }

    fn delete_share(&self, id: ShareId, from: &[ShareStatus]) -> Result<()> {
        Catalog::delete_share(self, id, from)
    }

    fn backup(&self, id: BackupId) -> Result<BackupRecord> {
        Catalog::backup(self, id)
    }

    fn find_backup(&self, project: &str, id_or_name: &str) -> Result<BackupRecord> {
        Catalog::find_backup(self, project, id_or_name)
    }

    fn list_backups(&self, filter: &BackupFilter<'_>) -> Result<Vec<BackupRecord>> {
        Catalog::list_backups(self, filter)
    }

    fn list_backups_page(&self, query: &BackupQuery<'_>) -> Result<Vec<BackupRecord>> {
        Catalog::list_backups_page(self, query)
    }

    fn dependents(&self, id: BackupId) -> Result<Vec<BackupId>> {
        Catalog::dependents(self, id)
    }

    fn backup_problems(&self, id: BackupId) -> Result<Vec<Problem>> {
        Catalog::backup_problems(self, id)
    }

    fn backup_root_dev(&self, id: BackupId) -> Result<Option<u64>> {
        Catalog::backup_root_dev(self, id)
    }

    fn insert_backup(&self, b: &BackupRecord, admission: &Admission) -> Result<Admitted> {
        Catalog::insert_backup(self, b, admission)
    }

    fn import_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        Catalog::import_backup(self, b, problems, root_dev)
    }

    fn transition_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus> {
        Catalog::transition_backup(self, id, from, to)
    }

    fn reparent_backup(&self, id: BackupId, change: &Reparent<'_>) -> Result<()> {
        Catalog::reparent_backup(self, id, change)
    }

    fn transition_leaf_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus> {
        Catalog::transition_leaf_backup(self, id, from, to)
    }

    fn complete_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        Catalog::complete_backup(self, b, problems, root_dev)
    }

    fn fail_backup(&self, id: BackupId, from: &[BackupStatus], reason: &str) -> Result<()> {
        Catalog::fail_backup(self, id, from, reason)
    }

    fn set_fail_reason(&self, id: BackupId, reason: &str) -> Result<()> {
        Catalog::set_fail_reason(self, id, reason)
    }

    fn set_backup_progress(&self, id: BackupId, percent: u32, restore: bool) -> Result<()> {
        Catalog::set_backup_progress(self, id, percent, restore)
    }

    fn rename_backup(
        &self,
        id: BackupId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<()> {
        Catalog::rename_backup(self, id, name, description)
    }

    fn reset_backup_status(&self, id: BackupId, to: BackupStatus) -> Result<BackupStatus> {
        Catalog::reset_backup_status(self, id, to)
    }

    fn remove_backup(&self, id: BackupId) -> Result<()> {
        Catalog::remove_backup(self, id)
    }

    fn insert_operation(&self, op: &Operation) -> Result<()> {
        Catalog::insert_operation(self, op)
    }

    fn heartbeat(&self, id: &str) -> Result<()> {
        Catalog::heartbeat(self, id)
    }

    fn remove_operation(&self, id: &str) -> Result<()> {
        Catalog::remove_operation(self, id)
    }

    fn operations(&self) -> Result<Vec<Operation>> {
        Catalog::operations(self)
    }

    fn operation_on(&self, backup: BackupId) -> Result<Option<String>> {
        Catalog::operation_on(self, backup)
    }

    fn quota(&self, project: &str) -> Result<Option<Quota>> {
        Catalog::quota(self, project)
    }

    fn set_quota(&self, project: &str, quota: &Quota) -> Result<()> {
        Catalog::set_quota(self, project, quota)
    }

    fn quota_usage(&self, project: &str) -> Result<QuotaUsage> {
        Catalog::quota_usage(self, project)
    }
}
