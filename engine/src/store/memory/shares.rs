//! Shares in memory, moved by compare-and-set.

use strata_format::ShareId;

use super::{MemoryServiceStore, State};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{one_of, Share, ShareStatus, ShareStore};

fn not_found(name: &str) -> Error {
    Error::NotFound {
        kind: "share",
        name: name.to_string(),
    }
}

impl State {
    /// The share, which must be in one of `from` (`Busy` if not).
    fn share_mut(&mut self, id: ShareId, from: &[ShareStatus]) -> Result<&mut Share> {
        let share = self
            .shares
            .get_mut(&id)
            .ok_or_else(|| not_found(&id.to_string()))?;
        if !from.contains(&share.status) {
            return Err(Error::Busy(format!(
                "share {} is {}, not {}",
                share.name,
                share.status.as_str(),
                one_of(from, ShareStatus::as_str)
            )));
        }
        Ok(share)
    }

    /// Moves the share from one of `from` to `to`; the status it had.
    fn move_share(
        &mut self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
    ) -> Result<ShareStatus> {
        let share = self.share_mut(id, from)?;
        let before = share.status;
        share.status = to;
        share.updated_at = Some(now_ns());
        Ok(before)
    }

    fn shares_of<'a>(&'a self, project: &'a str) -> impl Iterator<Item = &'a Share> + 'a {
        self.shares.values().filter(move |s| s.project == project)
    }
}

impl ShareStore for MemoryServiceStore {
    fn insert_share(&self, share: &Share) -> Result<()> {
        let mut state = self.lock();
        if state
            .shares_of(&share.project)
            .any(|s| s.name == share.name)
        {
            return Err(Error::InvalidArgument(format!(
                "a share named {:?} already exists in project {:?}",
                share.name, share.project
            )));
        }
        if state.shares.contains_key(&share.id) {
            return Err(Error::InvalidArgument(format!(
                "share {} is already recorded",
                share.id
            )));
        }
        // As the catalog records it: not yet updated.
        let mut share = share.clone();
        share.updated_at = None;
        state.shares.insert(share.id, share);
        Ok(())
    }

    fn share(&self, id: ShareId) -> Result<Share> {
        let state = self.lock();
        let found = state.shares.get(&id).cloned();
        found.ok_or_else(|| not_found(&id.to_string()))
    }

    fn find_share(&self, project: &str, id_or_name: &str) -> Result<Share> {
        let state = self.lock();
        let by_id = state
            .shares_of(project)
            .find(|s| s.id.to_string() == id_or_name);
        let found = by_id.or_else(|| state.shares_of(project).find(|s| s.name == id_or_name));
        found.cloned().ok_or_else(|| not_found(id_or_name))
    }

    fn share_by_path(&self, project: &str, path: &str) -> Result<Option<Share>> {
        let state = self.lock();
        let found = State::ordered(state.shares_of(project), |s| {
            (s.created_at, s.id.to_string())
        });
        Ok(found.into_iter().find(|s| s.path == path))
    }

    fn list_shares(&self, project: Option<&str>) -> Result<Vec<Share>> {
        let state = self.lock();
        let matching = state
            .shares
            .values()
            .filter(|s| project.is_none_or(|p| s.project == p));
        Ok(State::ordered(matching, |s| {
            (s.created_at, s.id.to_string())
        }))
    }

    fn transition_share(
        &self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
    ) -> Result<ShareStatus> {
        self.lock().move_share(id, from, to)
    }

    fn claim_share(
        &self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
        op: &str,
    ) -> Result<ShareStatus> {
        let mut state = self.lock();
        state.share_mut(id, from)?;
        if !state.operations.iter().any(|o| o.id == op) {
            return Err(Error::Bug(format!("operation {op} is not recorded")));
        }
        let before = state.move_share(id, from, to)?;
        if let Some(o) = state.operations.iter_mut().find(|o| o.id == op) {
            o.share_status_before = Some(before.as_str().to_string());
        }
        Ok(before)
    }

    fn set_share_fail_reason(&self, id: ShareId, reason: Option<&str>) -> Result<()> {
        if let Some(share) = self.lock().shares.get_mut(&id) {
            share.fail_reason = reason.map(str::to_string);
            share.updated_at = Some(now_ns());
        }
        Ok(())
    }

    fn reset_share_status(&self, id: ShareId, to: ShareStatus) -> Result<ShareStatus> {
        self.lock().move_share(id, &ShareStatus::ALL, to)
    }

    fn release_orphan_share(
        &self,
        id: ShareId,
        from: ShareStatus,
        to: ShareStatus,
        reason: &str,
    ) -> Result<bool> {
        let mut state = self.lock();
        let held = state.operations.iter().any(|o| o.share_id == Some(id));
        if held || state.share_mut(id, &[from]).is_err() {
            return Ok(false);
        }
        state.move_share(id, &[from], to)?;
        if let Some(share) = state.shares.get_mut(&id) {
            share.fail_reason = Some(reason.to_string());
        }
        Ok(true)
    }

    fn confirm_share_path(&self, id: ShareId, path: &str, from: &[ShareStatus]) -> Result<()> {
        let mut state = self.lock();
        let share = state.share_mut(id, from)?;
        share.path = path.to_string();
        share.adopted = false;
        share.updated_at = Some(now_ns());
        Ok(())
    }

    fn delete_share(&self, id: ShareId, from: &[ShareStatus]) -> Result<()> {
        let mut state = self.lock();
        state.share_mut(id, from)?;
        let backups = state
            .backups
            .values()
            .filter(|b| b.record.share_id == id)
            .count();
        if backups > 0 {
            return Err(Error::InvalidState(format!(
                "share {id} has {backups} backup(s); delete them first"
            )));
        }
        let snapshots = state
            .snapshots
            .values()
            .filter(|s| s.share_id == id)
            .count();
        if snapshots > 0 {
            return Err(Error::InvalidState(format!(
                "share {id} has {snapshots} snapshot(s); delete them first"
            )));
        }
        state.shares.remove(&id);
        Ok(())
    }
}
