//! Retention: `backup prune`.
//!
//! A policy ([`Retention`], restic's rules) chooses which `available`
//! backups of each share to keep. A removed backup that later backups build
//! on is merged into them first: each kept backup whose parent goes has its
//! layer rewritten against its nearest kept ancestor (`merge`), so every
//! chain stays whole and every kept backup restores exactly what it did.
//! Then the removed backups go, newest first, and the packs nothing
//! references any more are swept or repacked. All of it under the
//! repository's exclusive lock, so no backup or restore runs meanwhile.
//!
//! Crash safety (FORMAT.md section 7d): a rewritten layer is a new
//! generation, durable before the catalog learns of it and before the old
//! generation is removed; a removed backup's layer goes only when no
//! current layer names it as parent. A crash anywhere leaves each kept
//! backup's old chain or its new one, and `cleanup` finishes the rest.

mod merge;
mod policy;
mod settle;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use strata_format::{BackupId, ShareId};

pub use policy::{Retention, Rule};

use super::operations::OpTarget;
use super::repack::{repack_locked, RepackReport};
use super::{Engine, Vault};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::leases::{self, Lease, Purpose};
use crate::store::Reparent;
use crate::store::{BackupFilter, BackupRecord, BackupStatus, OpKind};

/// What to prune and how.
#[derive(Clone, Debug, Default)]
pub struct PruneRequest {
    /// Only this share's backups (id or name); `None`: every share of the project.
    pub share: Option<String>,
    /// The rules; an empty policy falls back to each backup type's own.
    pub policy: Retention,
    pub dry_run: bool,
    /// How long to wait for running backups and restores to finish.
    pub wait: Duration,
    /// Repack packs whose unused share is above this after the removal
    /// (`None`: only whole packs nothing references are removed).
    pub max_unused_percent: Option<u32>,
}

/// What prune decided about one backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub backup: BackupId,
    pub name: Option<String>,
    pub share: ShareId,
    /// When its data was taken (Unix ns): what the rules judge.
    pub time_ns: i64,
    /// The rules that keep it; empty when it is removed.
    pub kept_by: Vec<Rule>,
    /// Why a backup the rules removed stays, if it does.
    pub kept_because: Option<String>,
}

impl Decision {
    pub fn removed(&self) -> bool {
        self.kept_by.is_empty() && self.kept_because.is_none()
    }
}

/// What one prune did.
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    /// Every backup judged, by share, newest first.
    pub decisions: Vec<Decision>,
    /// Backups whose layer was rewritten to absorb a removed parent.
    pub rewritten: Vec<BackupId>,
    pub removed: u64,
    pub packs_removed: u64,
    pub repack: RepackReport,
    /// Bytes of packs before and after.
    pub pack_bytes_before: u64,
    pub pack_bytes_after: u64,
}

/// Refuses a policy under which no backup can be kept.
fn keeps_something(policy: &Retention) -> Result<()> {
    match policy.keeps_nothing() {
        false => Ok(()),
        true => Err(Error::InvalidArgument(
            "the retention policy keeps no backup (every rule is 0): prune refuses to remove \
             them all; use `backup delete` to remove backups deliberately"
                .into(),
        )),
    }
}

impl Engine {
    /// Applies the retention policy; see the module documentation.
    pub fn prune(&self, req: &PruneRequest, progress: &Progress) -> Result<PruneReport> {
        if !req.policy.is_empty() {
            keeps_something(&req.policy)?;
        }
        let share = match &req.share {
            Some(s) => Some(self.store.find_share(&self.config.project, s)?.id),
            None => None,
        };
        let backups = self.store.list_backups(&BackupFilter {
            project: Some(&self.config.project),
            share_id: share,
            name: None,
            status: Some(BackupStatus::Available),
        })?;
        let mut report = PruneReport {
            decisions: self.decide(req, &backups)?,
            ..PruneReport::default()
        };
        if req.dry_run {
            return Ok(report);
        }
        let records: HashMap<BackupId, &BackupRecord> = backups.iter().map(|b| (b.id, b)).collect();
        for vault in self.vaults() {
            let removed: HashSet<BackupId> = report
                .decisions
                .iter()
                .filter(|d| d.removed())
                .filter(|d| {
                    records
                        .get(&d.backup)
                        .and_then(|b| self.vault_of(b).ok())
                        .is_some_and(|s| std::ptr::eq(s, vault))
                })
                .map(|d| d.backup)
                .collect();
            if removed.is_empty() {
                continue;
            }
            let lock = leases::exclusive(&vault.repo, Purpose::Prune, req.wait)?;
            vault.sync_index()?;
            self.prune_site(vault, &lock, &removed, req, progress, &mut report)?;
        }
        progress.finish();
        Ok(report)
    }

    /// Applies the policy (the request's, else each type's) share by share.
    fn decide(&self, req: &PruneRequest, backups: &[BackupRecord]) -> Result<Vec<Decision>> {
        let mut by_share: BTreeMap<ShareId, Vec<&BackupRecord>> = BTreeMap::new();
        for b in backups {
            by_share.entry(b.share_id).or_default().push(b);
        }
        let mut decisions = Vec::new();
        for (share, list) in by_share {
            let policy = match req.policy.is_empty() {
                false => &req.policy,
                true => match list.first().map(|b| self.type_of(b)) {
                    Some(Some(t)) if !t.retention.is_empty() => &t.retention,
                    Some(None) if !self.config.retention.is_empty() => &self.config.retention,
                    _ => {
                        return Err(Error::InvalidArgument(
                            "no retention rule given, and the backup type sets none: \
                             nothing would be kept"
                                .into(),
                        ))
                    }
                },
            };
            keeps_something(policy)?;
            let names: HashMap<BackupId, &BackupRecord> = list.iter().map(|b| (b.id, *b)).collect();
            let candidates: Vec<policy::Candidate> = list
                .iter()
                .map(|b| policy::Candidate {
                    id: b.id,
                    time_ns: b.data_timestamp.unwrap_or(b.created_at),
                })
                .collect();
            for v in policy::apply(policy, &candidates) {
                decisions.push(Decision {
                    backup: v.id,
                    name: names.get(&v.id).and_then(|b| b.name.clone()),
                    share,
                    time_ns: v.time_ns,
                    kept_by: v.kept_by,
                    kept_because: None,
                });
            }
        }
        Ok(decisions)
    }

    fn prune_site(
        &self,
        vault: &Vault,
        lock: &Lease,
        removed: &HashSet<BackupId>,
        req: &PruneRequest,
        progress: &Progress,
        report: &mut PruneReport,
    ) -> Result<()> {
        report.pack_bytes_before += pack_bytes(vault)?;
        // A rewrite an earlier prune left unsettled is finished first.
        self.settle_rewrites(vault)?;
        let mut layers = current_layers(vault)?;
        let mut removed = removed.clone();
        // A layer this catalog does not know (another node's, an import)
        // that builds on a removed backup keeps that backup as it is.
        let foreign: Vec<(BackupId, BackupId)> = layers
            .iter()
            .filter_map(|(id, l)| l.parent.map(|p| (*id, p)))
            .filter(|(id, p)| removed.contains(p) && self.store.backup(*id).is_err())
            .collect();
        for (child, parent) in foreign {
            removed.remove(&parent);
            keep_because(
                report,
                parent,
                format!("backup {child} of another catalog builds on it"),
            );
        }
        // Each kept layer whose parent goes is rewritten against its
        // nearest kept ancestor, oldest first.
        let mut targets: Vec<BackupId> = layers
            .iter()
            .filter(|(id, l)| {
                !removed.contains(id) && l.parent.is_some_and(|p| removed.contains(&p))
            })
            .map(|(id, _)| *id)
            .collect();
        targets.sort_by_key(|id| layers.get(id).map(|l| l.time_ns));
        progress.add_files_total(targets.len() as u64);
        for id in targets {
            lock.renew()?;
            let (generation, parent) = match layers.get(&id) {
                Some(l) => (l.generation, l.parent),
                None => continue,
            };
            let mut base = parent;
            while let Some(b) = base.filter(|b| removed.contains(b)) {
                base = layers.get(&b).and_then(|l| l.parent);
            }
            let new = merge::rewrite(&vault.repo, id, generation, base)?;
            let moved = self.store.reparent_backup(
                id,
                &Reparent {
                    statuses: &[
                        BackupStatus::Available,
                        BackupStatus::Restoring,
                        BackupStatus::Error,
                    ],
                    from: parent,
                    to: base,
                    entries: new.entries,
                    tombstones: new.tombstones,
                },
            );
            crate::failpoint::hit("prune.parent_recorded");
            if let Err(e) = moved {
                // Deleted meanwhile, or not as this prune saw it: the old
                // chain stands, and its removed ancestors with it.
                vault.repo.remove_layer_object(&new.name)?;
                let mut up = parent;
                while let Some(b) = up.filter(|b| removed.contains(b)) {
                    removed.remove(&b);
                    keep_because(
                        report,
                        b,
                        format!("backup {id} could not be rewritten: {e}"),
                    );
                    up = layers.get(&b).and_then(|l| l.parent);
                }
                continue;
            }
            // The new generation is durable and recorded: the old ones go.
            settle::remove_older(&vault.repo, &new.name)?;
            let chunks: Vec<_> = new.chunks.into_iter().collect();
            vault.index.add_refs(id, &chunks)?;
            if let Some(l) = layers.get_mut(&id) {
                l.generation = new.name.generation;
                l.parent = base;
            }
            report.rewritten.push(id);
            progress.add_files(1);
        }
        // Newest first, each only once no current layer builds on it.
        let mut going: Vec<BackupId> = removed.iter().copied().collect();
        going.sort_by_key(|id| std::cmp::Reverse(layers.get(id).map(|l| l.time_ns)));
        for id in going {
            lock.renew()?;
            if let Some(child) = layers.iter().find(|(_, l)| l.parent == Some(id)) {
                let why = format!("backup {} still builds on it", child.0);
                keep_because(report, id, why);
                continue;
            }
            match self.remove_pruned(vault, id) {
                Ok(()) => {
                    layers.remove(&id);
                    report.removed += 1;
                }
                Err(e @ (Error::InvalidState(_) | Error::NotFound { .. })) => {
                    keep_because(report, id, e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        let sweep = vault.sweep(lock)?;
        report.packs_removed += sweep.removed;
        if let Some(max) = req.max_unused_percent {
            repack_locked(vault, lock, max, false, progress, &mut report.repack)?;
        }
        report.pack_bytes_after += pack_bytes(vault)?;
        Ok(())
    }

    /// Deletes one pruned backup as `backup delete` would, short of the
    /// sweep (the prune sweeps once, under the lock it holds).
    fn remove_pruned(&self, vault: &Vault, id: BackupId) -> Result<()> {
        let op = self.begin_operation(&OpTarget {
            kind: OpKind::Delete,
            backup: id,
            share: None,
            share_status_before: None,
        })?;
        let moved = self.store.transition_leaf_backup(
            id,
            &[BackupStatus::Available],
            BackupStatus::Deleting,
        );
        let result = moved.and_then(|_| self.remove_backup_records(vault, id));
        if result.is_err()
            && self
                .store
                .backup(id)
                .is_ok_and(|b| b.status == BackupStatus::Deleting)
        {
            self.store.transition_backup(
                id,
                &[BackupStatus::Deleting],
                BackupStatus::ErrorDeleting,
            )?;
        }
        self.end_operation(&op)?;
        result
    }
}

fn keep_because(report: &mut PruneReport, id: BackupId, why: String) {
    if let Some(d) = report.decisions.iter_mut().find(|d| d.backup == id) {
        d.kept_because.get_or_insert(why);
    }
}

/// A backup's current layer, as the repository holds it.
struct CurrentLayer {
    generation: u32,
    parent: Option<BackupId>,
    time_ns: i64,
}

/// Every backup's current layer in `vault`, read and verified.
fn current_layers(vault: &Vault) -> Result<HashMap<BackupId, CurrentLayer>> {
    let mut out = HashMap::new();
    for name in vault.repo.list_layers()? {
        let bytes = vault.repo.load_layer_object(&name)?;
        let meta = bytes.decode()?.meta;
        out.insert(
            name.id,
            CurrentLayer {
                generation: name.generation,
                parent: meta.parent_id,
                time_ns: meta.data_timestamp_ns,
            },
        );
    }
    Ok(out)
}

fn pack_bytes(vault: &Vault) -> Result<u64> {
    Ok(vault.index.packs()?.iter().map(|(_, size)| size).sum())
}
