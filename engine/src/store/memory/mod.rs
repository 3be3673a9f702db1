//! [`MemoryServiceStore`]: the service store in memory, for fast tests and
//! as the second implementation the store's contract is held to. One lock
//! guards everything, so each call is one atomic step, as each SQLite
//! transaction is; nothing survives the process ("durable" means visible
//! to every later call). Orders and messages are the SQLite catalog's.
//!
//! Chunk references are the chunk index's ([`crate::index::MemoryIndex`]
//! keeps its own); the SQLite catalog, holding both in one database, drops
//! a backup's references in `remove_backup` as well.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use strata_format::{BackupId, ShareId, SnapshotId};

use super::{
    OperationStore, ProjectStore, Quota, QuotaStore, QuotaUsage, Snapshot, SnapshotStatus,
    SnapshotStore,
};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{BackupRecord, BackupStatus, Operation, Problem, Share};

mod backups;
mod shares;

/// A backup's record with what is kept beside it.
#[derive(Clone)]
struct Backup {
    record: BackupRecord,
    problems: Vec<Problem>,
    root_dev: Option<u64>,
}

#[derive(Default)]
struct State {
    meta: BTreeMap<String, String>,
    projects: BTreeMap<String, i64>,
    quotas: HashMap<String, Quota>,
    shares: HashMap<ShareId, Share>,
    backups: HashMap<BackupId, Backup>,
    snapshots: HashMap<SnapshotId, Snapshot>,
    /// In the order they were recorded.
    operations: Vec<Operation>,
}

impl State {
    fn usage(&self, project: &str) -> QuotaUsage {
        let mine = self
            .backups
            .values()
            .filter(|b| b.record.project == project);
        let (backups, gib) = mine.fold((0u64, 0u64), |(n, gib), b| {
            (n + 1, gib.saturating_add(b.record.size_gib))
        });
        QuotaUsage {
            backups,
            backup_gigabytes: gib,
        }
    }

    fn snapshot_mut(&mut self, id: SnapshotId, from: &[SnapshotStatus]) -> Result<&mut Snapshot> {
        let snapshot = self
            .snapshots
            .get_mut(&id)
            .ok_or_else(|| snapshot_not_found(&id.to_string()))?;
        crate::store::expected(
            "snapshot",
            &id,
            snapshot.status,
            from,
            SnapshotStatus::as_str,
        )?;
        Ok(snapshot)
    }

    /// Records ordered as the catalog lists them: by creation, then id.
    fn ordered<'a, T: Clone + 'a>(
        items: impl Iterator<Item = &'a T>,
        key: impl Fn(&T) -> (i64, String),
    ) -> Vec<T> {
        let mut out: Vec<T> = items.cloned().collect();
        out.sort_by_cached_key(|t| key(t));
        out
    }
}

fn snapshot_not_found(name: &str) -> Error {
    Error::NotFound {
        kind: "snapshot",
        name: name.to_string(),
    }
}

/// The service store in memory; see the module documentation.
#[derive(Default)]
pub struct MemoryServiceStore {
    state: Mutex<State>,
}

impl MemoryServiceStore {
    pub fn new() -> MemoryServiceStore {
        MemoryServiceStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ProjectStore for MemoryServiceStore {
    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.lock().meta.get(key).cloned())
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.lock().meta.insert(key.to_string(), value.to_string());
        Ok(())
    }

    fn ensure_project(&self, name: &str) -> Result<()> {
        self.lock()
            .projects
            .entry(name.to_string())
            .or_insert_with(now_ns);
        Ok(())
    }

    fn projects(&self) -> Result<Vec<String>> {
        Ok(self.lock().projects.keys().cloned().collect())
    }
}

impl QuotaStore for MemoryServiceStore {
    fn quota(&self, project: &str) -> Result<Option<Quota>> {
        Ok(self.lock().quotas.get(project).copied())
    }

    fn set_quota(&self, project: &str, quota: &Quota) -> Result<()> {
        self.lock().quotas.insert(project.to_string(), *quota);
        Ok(())
    }

    fn quota_usage(&self, project: &str) -> Result<QuotaUsage> {
        Ok(self.lock().usage(project))
    }
}

impl SnapshotStore for MemoryServiceStore {
    fn insert_snapshot(&self, snapshot: &Snapshot) -> Result<()> {
        let mut state = self.lock();
        if state.snapshots.contains_key(&snapshot.id) {
            return Err(Error::InvalidArgument(format!(
                "snapshot {} is already recorded",
                snapshot.id
            )));
        }
        state.snapshots.insert(snapshot.id, snapshot.clone());
        Ok(())
    }

    fn snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let state = self.lock();
        let found = state.snapshots.get(&id).cloned();
        found.ok_or_else(|| snapshot_not_found(&id.to_string()))
    }

    fn find_snapshot(&self, project: &str, id_or_name: &str) -> Result<Snapshot> {
        let state = self.lock();
        let mine = || state.snapshots.values().filter(|s| s.project == project);
        if let Some(s) = mine().find(|s| s.id.to_string() == id_or_name) {
            return Ok(s.clone());
        }
        let named: Vec<Snapshot> = mine()
            .filter(|s| s.name.as_deref() == Some(id_or_name))
            .cloned()
            .collect();
        super::only_one(named, "snapshot", id_or_name)
    }

    fn list_snapshots(
        &self,
        project: Option<&str>,
        share: Option<ShareId>,
    ) -> Result<Vec<Snapshot>> {
        let state = self.lock();
        let matching = state.snapshots.values().filter(|s| {
            project.is_none_or(|p| s.project == p) && share.is_none_or(|id| s.share_id == id)
        });
        Ok(State::ordered(matching, |s| {
            (s.created_at, s.id.to_string())
        }))
    }

    fn transition_snapshot(
        &self,
        id: SnapshotId,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
        reason: Option<&str>,
    ) -> Result<SnapshotStatus> {
        let mut state = self.lock();
        let snapshot = state.snapshot_mut(id, from)?;
        let before = snapshot.status;
        snapshot.status = to;
        snapshot.fail_reason = reason.map(str::to_string);
        snapshot.updated_at = Some(now_ns());
        Ok(before)
    }

    fn transition_idle_snapshot(
        &self,
        id: SnapshotId,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
    ) -> Result<SnapshotStatus> {
        let mut state = self.lock();
        state.snapshot_mut(id, from)?;
        let reader = state.backups.values().find(|b| {
            b.record.snapshot_id == Some(id) && b.record.status == BackupStatus::Creating
        });
        if let Some(b) = reader {
            return Err(Error::Busy(format!(
                "snapshot {id} is being backed up (backup {})",
                b.record.id
            )));
        }
        let snapshot = state.snapshot_mut(id, from)?;
        let before = snapshot.status;
        snapshot.status = to;
        snapshot.fail_reason = None;
        snapshot.updated_at = Some(now_ns());
        Ok(before)
    }

    fn remove_snapshot(&self, id: SnapshotId) -> Result<()> {
        self.lock().snapshots.remove(&id);
        Ok(())
    }
}

impl OperationStore for MemoryServiceStore {
    fn insert_operation(&self, op: &Operation) -> Result<()> {
        let mut state = self.lock();
        if state.operations.iter().any(|o| o.id == op.id) {
            return Err(Error::InvalidArgument(format!(
                "operation {} is already recorded",
                op.id
            )));
        }
        state.operations.push(op.clone());
        Ok(())
    }

    fn heartbeat(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        if let Some(op) = state.operations.iter_mut().find(|o| o.id == id) {
            op.heartbeat_at = op.heartbeat_at.saturating_add(1).max(now_ns());
        }
        Ok(())
    }

    fn remove_operation(&self, id: &str) -> Result<()> {
        self.lock().operations.retain(|o| o.id != id);
        Ok(())
    }

    fn operations(&self) -> Result<Vec<Operation>> {
        let mut out = self.lock().operations.clone();
        // Stable: operations started at the same moment keep their order.
        out.sort_by_key(|o| o.started_at);
        Ok(out)
    }

    fn operation_on(&self, backup: BackupId) -> Result<Option<String>> {
        let state = self.lock();
        let on = state
            .operations
            .iter()
            .find(|o| o.backup_id == Some(backup));
        Ok(on.map(|o| o.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::MemoryServiceStore;
    use crate::store::conformance::{run, run_concurrent};

    #[test]
    fn conformance_service_store_memory() {
        run(&MemoryServiceStore::new()).unwrap();
        run_concurrent(Arc::new(MemoryServiceStore::new())).unwrap();
    }
}
