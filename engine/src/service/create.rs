//! `backup create`: `creating → available | error`, the share
//! `backup_creating` meanwhile and given back its status afterwards, whatever
//! happens. Full, or incremental on a parent; refused up front by a busy
//! share or an exceeded quota; cancelled by `backup delete --force` from
//! another process.

use std::path::PathBuf;
use std::time::Duration;

use strata_format::layer::{Exclusions, ServiceMeta};
use strata_format::{BackupId, ShareId};

use super::operations::{busy_share, OpTarget, SHARED_LOCK_WAIT};
use super::{BackupResult, CreateBackup, Engine};
use crate::backup::{self, BackupPlan};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::leases;
use crate::repository::new_uuid;
use crate::store::Snapshot;
use crate::store::{Admission, Admitted, Quota, QuotaUsage};
use crate::store::{BackupFilter, BackupRecord, BackupStatus, OpKind, Share, ShareStatus};

/// Which backup an incremental builds on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParentChoice {
    /// A full backup.
    None,
    /// The `available` backup of the share with the latest data timestamp.
    Latest,
    /// [`ParentChoice::Latest`] if the share has one, else a full backup.
    LatestIfAny,
    /// This backup, which must be an `available` backup of the share.
    Explicit(BackupId),
}

fn over_quota(project: &str, admission: &Admission, used: QuotaUsage) -> Error {
    let Quota {
        backups,
        backup_gigabytes,
    } = admission.quota;
    if let Some(limit) =
        backups.filter(|limit| !crate::validate::fits(used.backups, 1, Some(*limit)))
    {
        return Error::Quota(format!(
            "project {project}: backups quota is {limit}, {} in use; one more would exceed it",
            used.backups
        ));
    }
    let limit = backup_gigabytes.unwrap_or(0);
    Error::Quota(format!(
        "project {project}: backup_gigabytes quota is {limit} GiB, {} GiB in use; \
         this backup ({} GiB estimated) would exceed it",
        used.backup_gigabytes, admission.estimate_gib
    ))
}

fn parent_gone(parent: Option<BackupId>, status: Option<BackupStatus>) -> Error {
    let id = parent.map(|p| p.to_string()).unwrap_or_default();
    match status {
        Some(status) => Error::InvalidState(format!(
            "backup {id} is {}; an incremental's parent must be available",
            status.as_str()
        )),
        None => Error::NotFound {
            kind: "backup",
            name: id,
        },
    }
}

/// How many times a backup that builds on the latest backup chooses again
/// when the one it chose is deleted before it is admitted.
const PARENT_ATTEMPTS: u32 = 5;

/// `more`'s rules added to `rules`, each pattern and name once.
fn add_rules(rules: &mut Exclusions, more: &Exclusions) {
    for p in &more.patterns {
        if !rules.patterns.contains(p) {
            rules.patterns.push(p.clone());
        }
    }
    for n in &more.if_present {
        if !rules.if_present.contains(n) {
            rules.if_present.push(n.clone());
        }
    }
    rules.caches |= more.caches;
}

fn new_record(engine: &Engine, share: &Share, req: &CreateBackup) -> Result<BackupRecord> {
    let id = match req.id {
        Some(id) => id,
        None => BackupId(new_uuid()?),
    };
    Ok(BackupRecord {
        name: req.name.clone(),
        description: req.description.clone(),
        host: Some(engine.host.clone()),
        availability_zone: engine.config.availability_zone.clone(),
        ..BackupRecord::new(id, engine.config.project.clone(), share.id, now_ns())
    })
}

impl Engine {
    /// What a backup of `share` leaves out: the configured exclusions of
    /// every share and of this one, then the request's; checked (a bad
    /// glob is refused before anything is recorded).
    fn exclusions_for(&self, share: &Share, req: &CreateBackup) -> Result<Exclusions> {
        let mut rules = Exclusions::default();
        for key in ["*", share.name.as_str()] {
            if let Some(configured) = self.config.share_exclusions.get(key) {
                add_rules(&mut rules, configured);
            }
        }
        add_rules(&mut rules, &req.exclusions);
        crate::backup::exclude::Excluder::new(&rules)?;
        Ok(rules)
    }

    /// Backs up `share`. A failure is recorded on the backup (`error`, with
    /// `fail_reason`); a backup deleted with `--force` while it runs stops,
    /// removes what it wrote, and leaves no row.
    pub fn create_backup(
        &self,
        share: &Share,
        req: &CreateBackup,
        progress: &Progress,
    ) -> Result<BackupResult> {
        crate::validate::text("backup name", req.name.as_deref(), false)?;
        crate::validate::text("description", req.description.as_deref(), true)?;
        super::shares::confirmed(share)?;
        self.exclusions_for(share, req)?;
        let mut record = new_record(self, share, req)?;
        if let Some(name) = &req.backup_type {
            record.backup_type = Some(self.backup_type(name)?.display_name.clone());
        }
        let of_share = self.store.list_backups(&BackupFilter {
            share_id: Some(share.id),
            ..Default::default()
        })?;
        Self::check_one_type_of(share, &of_share, record.backup_type.as_deref())?;
        let snapshot = match &req.snapshot {
            Some(s) => Some(self.snapshot_to_back_up(share, s)?),
            None => None,
        };
        let choice = match (&req.parent, req.incremental, req.incremental_if_possible) {
            (Some(parent), ..) => ParentChoice::Explicit(self.find_backup(parent)?.id),
            (None, true, _) => ParentChoice::Latest,
            (None, false, true) => ParentChoice::LatestIfAny,
            (None, false, false) => ParentChoice::None,
        };
        // A backup of a snapshot leaves the share available for everything
        // else: that is the point of backing up a snapshot.
        let holds_share = snapshot.is_none();
        let last_size = of_share.last().map(|b| b.size_gib);
        let mut attempt = 0;
        let (parent, op, before) = loop {
            let parent = self.choose_parent(
                share.id,
                choice,
                snapshot.as_ref(),
                record.backup_type.as_deref(),
            )?;
            if let Some(parent) = parent {
                // A snapshot is its own tree, on its own device: chosen by
                // the operator, it cannot be an unmounted share.
                if !req.allow_root_change && snapshot.is_none() {
                    self.check_root(share, parent)?;
                }
            }
            record.parent_id = parent;
            record.is_incremental = parent.is_some();
            record.snapshot_id = snapshot.as_ref().map(|s| s.id);
            let admission = Admission {
                parent,
                quota: self.effective_quota()?,
                estimate_gib: share.size_gib.or(last_size).unwrap_or(0).max(1),
                snapshot: record.snapshot_id,
            };
            let op = self.begin_operation(&OpTarget {
                kind: OpKind::Backup,
                backup: record.id,
                share: holds_share.then_some(share.id),
                share_status_before: None,
            })?;
            match self.admit(&record, share, &admission, req.force, &op, holds_share) {
                Ok(before) => break (parent, op, before),
                Err(e) => {
                    self.end_operation(&op)?;
                    // The parent chosen went (deleted meanwhile): a backup
                    // that asked for the latest builds on the next latest.
                    let chosen_by_us =
                        matches!(choice, ParentChoice::Latest | ParentChoice::LatestIfAny);
                    let gone = parent.is_some_and(|p| {
                        self.store
                            .backup(p)
                            .map_or(true, |b| b.status != BackupStatus::Available)
                    });
                    attempt += 1;
                    if !(chosen_by_us && gone && attempt < PARENT_ATTEMPTS) {
                        return Err(e);
                    }
                }
            }
        };
        progress.recorded();
        let result = self.run_backup(&record, share, req, parent, &op, progress);
        let released = match before {
            Some(before) => self
                .store
                .transition_share(share.id, &[ShareStatus::BackupCreating], before)
                .map(|_| ()),
            None => Ok(()),
        };
        let result = match result {
            Ok(done) => released.map(|()| done),
            Err(e) => self.after_failed_backup(record.id, e),
        };
        self.end_operation(&op)?;
        result
    }

    /// Admits a new backup: the share must be `available` (or `in-use`
    /// with `force`) and becomes `backup_creating`; then the record goes in
    /// if the quota allows one more backup of the estimated size and the
    /// parent is still `available`; if not, the share gets its status
    /// back. Returns the share's status before (none when `hold_share` is
    /// false: a backup of a snapshot leaves the share as it is).
    fn admit(
        &self,
        record: &BackupRecord,
        share: &Share,
        admission: &Admission,
        force: bool,
        op: &str,
        hold_share: bool,
    ) -> Result<Option<ShareStatus>> {
        let admitting: &[ShareStatus] = if force {
            &[ShareStatus::Available, ShareStatus::InUse]
        } else {
            &[ShareStatus::Available]
        };
        let before = match hold_share {
            true => Some(
                self.store
                    .claim_share(share.id, admitting, ShareStatus::BackupCreating, op)
                    .map_err(|e| busy_share(e, share))?,
            ),
            false => None,
        };
        let refused = match self.store.insert_backup(record, admission) {
            Ok(Admitted::Yes) => return Ok(before),
            Ok(Admitted::OverQuota(used)) => over_quota(&record.project, admission, used),
            Ok(Admitted::ParentGone(status)) => parent_gone(admission.parent, status),
            Ok(Admitted::SnapshotGone(status)) => {
                super::snapshots::snapshot_gone(admission.snapshot, status)
            }
            Err(e) => e,
        };
        if let Some(before) = before {
            self.store
                .transition_share(share.id, &[ShareStatus::BackupCreating], before)?;
        }
        Err(refused)
    }

    /// The backup an incremental of `share` would build on now, as
    /// `choice` says (checked again when the record goes in). For a backup
    /// of `snapshot`, the latest is the latest whose data is older than
    /// the snapshot's (Cinder's rule for backups of snapshots).
    pub(crate) fn choose_parent(
        &self,
        share: ShareId,
        choice: ParentChoice,
        snapshot: Option<&Snapshot>,
        backup_type: Option<&str>,
    ) -> Result<Option<BackupId>> {
        match choice {
            ParentChoice::None => Ok(None),
            ParentChoice::Latest | ParentChoice::LatestIfAny => {
                let available = self.store.list_backups(&BackupFilter {
                    share_id: Some(share),
                    status: Some(BackupStatus::Available),
                    ..Default::default()
                })?;
                let before = snapshot.map_or(i64::MAX, |s| s.created_at);
                let latest = available
                    .iter()
                    .filter(|b| b.data_timestamp.is_some_and(|t| t < before))
                    .filter(|b| b.backup_type.as_deref() == backup_type)
                    .max_by_key(|b| (b.data_timestamp, b.created_at));
                match latest {
                    Some(b) => Ok(Some(b.id)),
                    None if choice == ParentChoice::LatestIfAny => Ok(None),
                    None => Err(Error::InvalidState(match snapshot {
                        None => format!(
                            "share {share} has no available backup to build an incremental on; \
                             its first backup must be a full backup"
                        ),
                        Some(s) => format!(
                            "share {share} has no available backup older than snapshot {} to \
                             build an incremental of it on; back it up in full",
                            s.id
                        ),
                    })),
                }
            }
            ParentChoice::Explicit(id) => {
                let parent = self.store.backup(id)?;
                if parent.share_id != share {
                    return Err(Error::InvalidArgument(format!(
                        "backup {id} is a backup of another share (share {}); \
                         an incremental's parent must be a backup of the same share",
                        parent.share_id
                    )));
                }
                if parent.backup_type.as_deref() != backup_type {
                    return Err(Error::InvalidArgument(format!(
                        "backup {id} is of backup type {}; an incremental's parent is of its \
                         own type ({})",
                        parent.backup_type.as_deref().unwrap_or("default"),
                        backup_type.unwrap_or("default")
                    )));
                }
                if parent.status != BackupStatus::Available {
                    return Err(parent_gone(Some(id), Some(parent.status)));
                }
                Ok(Some(id))
            }
        }
    }

    fn run_backup(
        &self,
        record: &BackupRecord,
        share: &Share,
        req: &CreateBackup,
        parent: Option<BackupId>,
        op: &str,
        progress: &Progress,
    ) -> Result<BackupResult> {
        let snapshot = match record.snapshot_id {
            Some(id) => Some(self.store.snapshot(id)?),
            None => None,
        };
        let vault = self.vault_of(record)?;
        let lock = leases::shared(&vault.repo, op, SHARED_LOCK_WAIT)?;
        // No sweep runs while the lock stands; one that ran before (maybe on
        // another node) may have removed packs the index still names, which
        // this backup must not deduplicate against.
        vault.sync_index()?;
        let plan = BackupPlan {
            backup_id: record.id,
            share_id: share.id,
            share_name: share.name.clone(),
            share_path: self.local_path(share),
            source_path: snapshot
                .as_ref()
                .map_or_else(|| self.local_path(share), |s| PathBuf::from(&s.path)),
            data_timestamp_ns: snapshot.as_ref().map(|s| s.created_at),
            project: record.project.clone(),
            name: req.name.clone().unwrap_or_default(),
            description: req.description.clone().unwrap_or_default(),
            created_at_ns: record.created_at,
            parent,
            rehash: req.rehash,
            zstd_level: self.zstd_level(self.type_of(record)),
            service: ServiceMeta {
                share_size_gib: share.size_gib,
                share_protocol: share.protocol.clone(),
                backup_type: record.backup_type.clone(),
                snapshot_id: record.snapshot_id.map(|s| s.to_string()),
                availability_zone: record.availability_zone.clone(),
                host: record.host.clone(),
                share_root_dev: None,
                problems: Vec::new(),
            },
            exclusions: self.exclusions_for(share, req)?,
        };
        let outcome = self.supervise(
            op,
            record.id,
            BackupStatus::Creating,
            &[&lock],
            progress,
            || backup::run(&vault.repo, &*vault.index, &lock, &plan, progress),
        )?;
        let mut done = record.clone();
        done.set_layer_stats(&outcome.stats);
        done.duration_ms = outcome.duration.as_millis() as u64;
        done.data_timestamp = Some(outcome.data_timestamp_ns);
        done.read_bytes = outcome.read_bytes;
        done.changed_count = outcome.changed;
        done.deleted_count = outcome.deleted;
        crate::failpoint::hit("backup.layer_published");
        self.store
            .complete_backup(&done, &outcome.problems, Some(outcome.root_dev))?;
        crate::failpoint::hit("backup.recorded");
        drop(lock);
        Ok(BackupResult {
            backup: self.store.backup(record.id)?,
            problems: outcome.problems,
        })
    }

    /// All backups of a share are of one type, as in Manila: a backup of
    /// another type than the share's existing backups is refused.
    fn check_one_type_of(
        share: &Share,
        backups: &[BackupRecord],
        backup_type: Option<&str>,
    ) -> Result<()> {
        match backups
            .iter()
            .find(|b| b.backup_type.as_deref() != backup_type)
        {
            None => Ok(()),
            Some(b) => Err(Error::InvalidArgument(format!(
                "share {}'s backups are of backup type {}; all backups of a share are of one \
                 type, so one of type {} is refused",
                share.name,
                b.backup_type.as_deref().unwrap_or("default"),
                backup_type.unwrap_or("default")
            ))),
        }
    }

    /// Refuses an incremental whose share root looks unmounted: empty where
    /// its parent backup had entries, or on another device than then.
    fn check_root(&self, share: &Share, parent: BackupId) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let path = &self.local_path(share);
        let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                kind: "share path",
                name: share.path.clone(),
            },
            _ => Error::io(path, e),
        })?;
        let flag = "pass the option that allows a changed share root to back it up anyway";
        if let Some(dev) = self.store.backup_root_dev(parent)? {
            if dev != meta.dev() {
                return Err(Error::InvalidState(format!(
                    "share {} ({}) is on another device than at its parent backup {parent}: \
                     is it unmounted or mounted elsewhere? {flag}",
                    share.name, share.path
                )));
            }
        }
        let p = self.store.backup(parent)?;
        let empty = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .next()
            .is_none();
        if empty && p.file_count + p.dir_count > 0 {
            return Err(Error::InvalidState(format!(
                "share {} ({}) is empty but its parent backup {parent} holds {} files and {} \
                 directories: is it unmounted? {flag}",
                share.name, share.path, p.file_count, p.dir_count
            )));
        }
        Ok(())
    }

    /// Records why a backup failed; one deleted while it ran (`deleting`)
    /// is removed instead, with whatever it wrote.
    fn after_failed_backup(&self, id: BackupId, e: Error) -> Result<BackupResult> {
        match self.store.backup(id).map(|b| b.status) {
            Ok(BackupStatus::Deleting) => {
                self.remove_backup_data(id)?;
                Err(Error::Cancelled)
            }
            Ok(BackupStatus::Creating) => {
                self.store
                    .fail_backup(id, &[BackupStatus::Creating], &e.to_string())?;
                // The packs it published are referenced by no layer: removed
                // now if no other backup runs (else `cleanup` removes them).
                // The backup's own error is what the caller needs to see.
                if let Ok(vault) = self.vault_of(&self.store.backup(id)?) {
                    let _ = vault.collect_packs(Duration::ZERO);
                }
                Err(e)
            }
            // Moved by an administrator (`backup set --state`): keep theirs.
            _ => Err(e),
        }
    }
}
