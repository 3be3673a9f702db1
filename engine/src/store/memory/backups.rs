//! Backup records in memory: admitted, moved by compare-and-set, listed and
//! paged in the catalog's orders.

use std::cmp::Ordering;

use strata_format::BackupId;

use super::{Backup, MemoryServiceStore, State};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{
    Admission, Admitted, BackupFilter, BackupQuery, BackupReads, BackupRecord, BackupSort,
    BackupStatus, BackupWrites, Problem, Reparent,
};

fn not_found(name: &str) -> Error {
    Error::NotFound {
        kind: "backup",
        name: name.to_string(),
    }
}

/// Whether `text` holds `part`, ignoring ASCII case (as SQLite's `lower`).
fn contains_folded(text: Option<&str>, part: &str) -> bool {
    text.is_some_and(|t| t.to_ascii_lowercase().contains(&part.to_ascii_lowercase()))
}

fn matches(b: &BackupRecord, f: &BackupFilter<'_>) -> bool {
    f.project.is_none_or(|p| b.project == p)
        && f.share_id.is_none_or(|s| b.share_id == s)
        && f.name.is_none_or(|n| b.name.as_deref() == Some(n))
        && f.status.is_none_or(|s| b.status == s)
}

/// Two records by one sort column, as SQL orders it ascending (a missing
/// value first; text by its bytes).
fn by_column(sort: BackupSort, a: &BackupRecord, b: &BackupRecord) -> Ordering {
    match sort {
        BackupSort::CreatedAt => a.created_at.cmp(&b.created_at),
        BackupSort::UpdatedAt => a.updated_at.cmp(&b.updated_at),
        BackupSort::Id => Ordering::Equal,
        BackupSort::Name => a.name.cmp(&b.name),
        BackupSort::Description => a.description.cmp(&b.description),
        BackupSort::Status => a.status.as_str().cmp(b.status.as_str()),
        BackupSort::Size => a.size_gib.cmp(&b.size_gib),
        BackupSort::ShareId => a.share_id.to_string().cmp(&b.share_id.to_string()),
        BackupSort::Progress => a.progress.cmp(&b.progress),
        BackupSort::RestoreProgress => a.restore_progress.cmp(&b.restore_progress),
    }
}

impl State {
    /// The backup, which must be in one of `from` (`InvalidState` if not).
    fn backup_mut(&mut self, id: BackupId, from: &[BackupStatus]) -> Result<&mut BackupRecord> {
        let b = self
            .backups
            .get_mut(&id)
            .ok_or_else(|| not_found(&id.to_string()))?;
        crate::store::expected("backup", &id, b.record.status, from, BackupStatus::as_str)?;
        Ok(&mut b.record)
    }

    fn move_backup(
        &mut self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus> {
        let b = self.backup_mut(id, from)?;
        let before = b.status;
        b.status = to;
        b.updated_at = Some(now_ns());
        Ok(before)
    }

    fn dependents_of(&self, id: BackupId) -> Vec<BackupId> {
        let children = self
            .backups
            .values()
            .filter(|b| b.record.parent_id == Some(id))
            .map(|b| &b.record);
        State::ordered(children, |b| (b.created_at, b.id.to_string()))
            .into_iter()
            .map(|b| b.id)
            .collect()
    }

    /// Records a new backup; one whose id is known is refused.
    fn add_backup(
        &mut self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        if self.backups.contains_key(&b.id) {
            return Err(Error::InvalidArgument(format!(
                "backup {} is already in the catalog",
                b.id
            )));
        }
        let record = Backup {
            record: b.clone(),
            problems: problems.to_vec(),
            root_dev,
        };
        self.backups.insert(b.id, record);
        Ok(())
    }

    fn update(&mut self, id: BackupId, change: impl FnOnce(&mut BackupRecord)) {
        if let Some(b) = self.backups.get_mut(&id) {
            change(&mut b.record);
            b.record.updated_at = Some(now_ns());
        }
    }
}

impl BackupReads for MemoryServiceStore {
    fn backup(&self, id: BackupId) -> Result<BackupRecord> {
        let state = self.lock();
        let found = state.backups.get(&id).map(|b| b.record.clone());
        found.ok_or_else(|| not_found(&id.to_string()))
    }

    fn find_backup(&self, project: &str, id_or_name: &str) -> Result<BackupRecord> {
        let state = self.lock();
        let mine = || {
            state
                .backups
                .values()
                .map(|b| &b.record)
                .filter(|b| b.project == project)
        };
        if let Some(b) = mine().find(|b| b.id.to_string() == id_or_name) {
            return Ok(b.clone());
        }
        let named: Vec<BackupRecord> = mine()
            .filter(|b| b.name.as_deref() == Some(id_or_name))
            .cloned()
            .collect();
        crate::store::only_one(named, "backup", id_or_name)
    }

    fn list_backups(&self, filter: &BackupFilter<'_>) -> Result<Vec<BackupRecord>> {
        let state = self.lock();
        let matching = state
            .backups
            .values()
            .map(|b| &b.record)
            .filter(|b| matches(b, filter));
        Ok(State::ordered(matching, |b| {
            (b.created_at, b.id.to_string())
        }))
    }

    fn list_backups_page(&self, q: &BackupQuery<'_>) -> Result<Vec<BackupRecord>> {
        let state = self.lock();
        let mut page: Vec<BackupRecord> = state
            .backups
            .values()
            .map(|b| &b.record)
            .filter(|b| {
                matches(b, &q.filter)
                    && q.name_contains
                        .is_none_or(|n| contains_folded(b.name.as_deref(), n))
                    && q.description
                        .is_none_or(|d| b.description.as_deref() == Some(d))
                    && q.description_contains
                        .is_none_or(|d| contains_folded(b.description.as_deref(), d))
            })
            .cloned()
            .collect();
        page.sort_by(|a, b| {
            let order =
                by_column(q.sort, a, b).then_with(|| a.id.to_string().cmp(&b.id.to_string()));
            match q.ascending {
                true => order,
                false => order.reverse(),
            }
        });
        let skip = usize::try_from(q.offset).unwrap_or(usize::MAX);
        let take = q
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        Ok(page.into_iter().skip(skip).take(take).collect())
    }

    fn dependents(&self, id: BackupId) -> Result<Vec<BackupId>> {
        Ok(self.lock().dependents_of(id))
    }

    fn backup_problems(&self, id: BackupId) -> Result<Vec<Problem>> {
        let state = self.lock();
        Ok(state
            .backups
            .get(&id)
            .map(|b| b.problems.clone())
            .unwrap_or_default())
    }

    fn backup_root_dev(&self, id: BackupId) -> Result<Option<u64>> {
        Ok(self.lock().backups.get(&id).and_then(|b| b.root_dev))
    }
}

impl BackupWrites for MemoryServiceStore {
    fn insert_backup(&self, b: &BackupRecord, admission: &Admission) -> Result<Admitted> {
        let mut state = self.lock();
        let admitted = admission.judge(
            |parent| Ok(state.backups.get(&parent).map(|p| p.record.status)),
            |snapshot| Ok(state.snapshots.get(&snapshot).map(|s| s.status)),
            || Ok(state.usage(&b.project)),
        )?;
        if admitted == Admitted::Yes {
            state.add_backup(b, &[], None)?;
        }
        Ok(admitted)
    }

    fn import_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        self.lock().add_backup(b, problems, root_dev)
    }

    fn transition_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus> {
        self.lock().move_backup(id, from, to)
    }

    fn transition_leaf_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus> {
        let mut state = self.lock();
        state.backup_mut(id, from)?;
        let dependents = state.dependents_of(id);
        if !dependents.is_empty() {
            let names: Vec<String> = dependents.iter().map(ToString::to_string).collect();
            return Err(Error::InvalidState(format!(
                "backup {id} has dependent backups: {}",
                names.join(", ")
            )));
        }
        state.move_backup(id, from, to)
    }

    fn reparent_backup(&self, id: BackupId, change: &Reparent<'_>) -> Result<()> {
        let mut state = self.lock();
        let b = state.backup_mut(id, change.statuses)?;
        if b.parent_id != change.from {
            let name = |p: Option<BackupId>| p.map_or("none".to_string(), |p| p.to_string());
            return Err(Error::InvalidState(format!(
                "backup {id}'s parent is {}, not {}",
                name(b.parent_id),
                name(change.from)
            )));
        }
        b.parent_id = change.to;
        b.is_incremental = change.to.is_some();
        b.changed_count = change.entries;
        b.deleted_count = change.tombstones;
        b.updated_at = Some(now_ns());
        Ok(())
    }

    fn complete_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        let mut state = self.lock();
        let done = state
            .backup_mut(b.id, &[BackupStatus::Creating])
            .map_err(|e| match e {
                Error::InvalidState(_) => {
                    Error::InvalidState(format!("backup {} left 'creating' while it ran", b.id))
                }
                other => other,
            })?;
        done.status = BackupStatus::Available;
        done.progress = 100;
        done.size_gib = b.size_gib;
        done.updated_at = Some(now_ns());
        done.file_count = b.file_count;
        done.dir_count = b.dir_count;
        done.skipped_count = b.skipped_count;
        done.logical_bytes = b.logical_bytes;
        done.new_bytes = b.new_bytes;
        done.stored_bytes = b.stored_bytes;
        done.duration_ms = b.duration_ms;
        done.fail_reason = b.fail_reason.clone();
        done.data_timestamp = b.data_timestamp;
        done.read_bytes = b.read_bytes;
        done.changed_count = b.changed_count;
        done.deleted_count = b.deleted_count;
        if let Some(kept) = state.backups.get_mut(&b.id) {
            kept.problems.extend_from_slice(problems);
            if root_dev.is_some() {
                kept.root_dev = root_dev;
            }
        }
        Ok(())
    }

    fn fail_backup(&self, id: BackupId, from: &[BackupStatus], reason: &str) -> Result<()> {
        let mut state = self.lock();
        state.move_backup(id, from, BackupStatus::Error)?;
        state.update(id, |b| b.fail_reason = Some(reason.to_string()));
        Ok(())
    }

    fn set_fail_reason(&self, id: BackupId, reason: &str) -> Result<()> {
        self.lock()
            .update(id, |b| b.fail_reason = Some(reason.to_string()));
        Ok(())
    }

    fn set_backup_progress(&self, id: BackupId, percent: u32, restore: bool) -> Result<()> {
        self.lock().update(id, |b| match restore {
            true => b.restore_progress = percent.min(100),
            false => b.progress = percent.min(100),
        });
        Ok(())
    }

    fn rename_backup(
        &self,
        id: BackupId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<()> {
        // `None` keeps a field; an empty string clears it.
        let set = |field: &mut Option<String>, to: Option<&str>| {
            if let Some(to) = to {
                *field = (!to.is_empty()).then(|| to.to_string());
            }
        };
        self.lock().update(id, |b| {
            set(&mut b.name, name);
            set(&mut b.description, description);
        });
        Ok(())
    }

    fn reset_backup_status(&self, id: BackupId, to: BackupStatus) -> Result<BackupStatus> {
        self.lock().move_backup(id, &BackupStatus::ALL, to)
    }

    fn remove_backup(&self, id: BackupId) -> Result<()> {
        self.lock().backups.remove(&id);
        Ok(())
    }
}
