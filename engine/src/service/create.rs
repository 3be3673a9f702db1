//! `backup create`: `creating → available | error`, the share
//! `backup_creating` meanwhile and given back its status afterwards, whatever
//! happens. Full, or incremental on a parent; refused up front by a busy
//! share or an exceeded quota; cancelled by `backup delete --force` from
//! another process.

use std::path::PathBuf;
use std::time::Duration;

use strata_format::layer::ServiceMeta;
use strata_format::BackupId;

use super::backups::busy_share;
use super::operations::OpTarget;
use super::{BackupResult, CreateBackup, Engine};
use crate::backup::{self, BackupPlan};
use crate::catalog::{
    BackupRecord, BackupStart, BackupStatus, OpKind, ParentChoice, Share, ShareStatus,
};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::locks;
use crate::progress::Progress;
use crate::repository::new_uuid;

/// How long a backup waits for a pack removal (delete, cleanup) to finish.
const SHARED_LOCK_WAIT: Duration = Duration::from_secs(120);

fn new_record(engine: &Engine, share: &Share, req: &CreateBackup) -> Result<BackupRecord> {
    let id = BackupId(new_uuid()?);
    Ok(BackupRecord {
        name: req.name.clone(),
        description: req.description.clone(),
        host: Some(engine.host.clone()),
        availability_zone: engine.config.availability_zone.clone(),
        ..BackupRecord::new(id, engine.config.project.clone(), share.id, now_ns())
    })
}

impl Engine {
    /// Backs up `share`. A failure is recorded on the backup (`error`, with
    /// `fail_reason`); a backup deleted with `--force` while it runs stops,
    /// removes what it wrote, and leaves no row.
    pub fn create_backup(
        &mut self,
        share: &Share,
        req: &CreateBackup,
        progress: &Progress,
    ) -> Result<BackupResult> {
        let record = new_record(self, share, req)?;
        let parent = match (&req.parent, req.incremental) {
            (Some(parent), _) => ParentChoice::Explicit(self.find_backup(parent)?.id),
            (None, true) => ParentChoice::Latest,
            (None, false) => ParentChoice::None,
        };
        let preview = self.catalog.preview_parent(share.id, parent)?;
        if let Some(parent) = preview {
            if !req.allow_root_change {
                self.check_root(share, parent)?;
            }
        }
        let last_size = self
            .catalog
            .list_backups(&crate::catalog::BackupFilter {
                share_id: Some(share.id),
                ..Default::default()
            })?
            .last()
            .map(|b| b.size_gib);
        let start = BackupStart {
            parent,
            force: req.force,
            quota: self.effective_quota()?,
            estimate_gib: share.size_gib.or(last_size).unwrap_or(0).max(1),
        };
        let op = self.begin_operation(&OpTarget {
            kind: OpKind::Backup,
            backup: record.id,
            share: Some(share.id),
            share_status_before: None,
        })?;
        let (parent, before) = match self.catalog.begin_backup(&record, &start, &op) {
            Ok(begun) => begun,
            Err(e) => {
                self.end_operation(&op)?;
                return Err(busy_share(e, share));
            }
        };
        let result = self.run_backup(&record, share, req, parent, &op, progress);
        let give_back = ShareStatus::parse(&before).unwrap_or(ShareStatus::Available);
        let released =
            self.catalog
                .transition_share(share.id, &[ShareStatus::BackupCreating], give_back);
        let result = match result {
            Ok(done) => released.map(|()| done),
            Err(e) => self.after_failed_backup(record.id, e),
        };
        self.end_operation(&op)?;
        result
    }

    fn run_backup(
        &mut self,
        record: &BackupRecord,
        share: &Share,
        req: &CreateBackup,
        parent: Option<BackupId>,
        op: &str,
        progress: &Progress,
    ) -> Result<BackupResult> {
        let parent_chain = match parent {
            Some(id) => self.chain(&self.catalog.backup(id)?)?,
            None => Vec::new(),
        };
        let lock = locks::shared(self.repo.backend(), op, SHARED_LOCK_WAIT)?;
        // No sweep runs while the lock stands; one that ran before (maybe on
        // another node) may have removed packs the index still names, which
        // this backup must not deduplicate against.
        self.forget_missing_packs()?;
        let plan = BackupPlan {
            backup_id: record.id,
            share_id: share.id,
            share_name: share.name.clone(),
            share_path: PathBuf::from(&share.path),
            project: record.project.clone(),
            name: req.name.clone().unwrap_or_default(),
            description: req.description.clone().unwrap_or_default(),
            created_at_ns: record.created_at,
            parent_chain,
            rehash: req.rehash,
            zstd_level: self.zstd_level(),
            service: ServiceMeta {
                share_size_gib: share.size_gib,
                share_protocol: share.protocol.clone(),
                backup_type: record.backup_type.clone(),
                snapshot_id: None,
                availability_zone: record.availability_zone.clone(),
                host: record.host.clone(),
                share_root_dev: None,
                problems: Vec::new(),
            },
        };
        let outcome = self.supervise(
            op,
            record.id,
            BackupStatus::Creating,
            &[&lock],
            progress,
            || backup::run(&self.repo, &self.catalog, &lock, &plan, progress),
        )?;
        let mut done = record.clone();
        done.set_layer_stats(&outcome.stats);
        done.duration_ms = outcome.duration.as_millis() as u64;
        done.data_timestamp = Some(outcome.data_timestamp_ns);
        done.read_bytes = outcome.read_bytes;
        done.changed_count = outcome.changed;
        done.deleted_count = outcome.deleted;
        self.catalog.complete_backup(&done, &outcome.problems)?;
        self.catalog
            .set_backup_root_dev(record.id, outcome.root_dev)?;
        drop(lock);
        Ok(BackupResult {
            backup: self.catalog.backup(record.id)?,
            problems: outcome.problems,
        })
    }

    /// Refuses an incremental whose share root looks unmounted: empty where
    /// its parent backup had entries, or on another device than then.
    fn check_root(&self, share: &Share, parent: BackupId) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let path = std::path::Path::new(&share.path);
        let meta = std::fs::symlink_metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                kind: "share path",
                name: share.path.clone(),
            },
            _ => Error::io(path, e),
        })?;
        let flag = "pass the option that allows a changed share root to back it up anyway";
        if let Some(dev) = self.catalog.backup_root_dev(parent)? {
            if dev != meta.dev() {
                return Err(Error::InvalidState(format!(
                    "share {} ({}) is on another device than at its parent backup {parent}: \
                     is it unmounted or mounted elsewhere? {flag}",
                    share.name, share.path
                )));
            }
        }
        let p = self.catalog.backup(parent)?;
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
    fn after_failed_backup(&mut self, id: BackupId, e: Error) -> Result<BackupResult> {
        match self.catalog.backup(id).map(|b| b.status) {
            Ok(BackupStatus::Deleting) => {
                self.remove_backup_data(id)?;
                Err(Error::Cancelled)
            }
            Ok(BackupStatus::Creating) => {
                self.catalog.fail_backup(id, &e.to_string())?;
                // The packs it published are referenced by no layer: removed
                // now if no other backup runs (else `cleanup` removes them).
                // The backup's own error is what the caller needs to see.
                let _ = self.collect_packs(Duration::ZERO);
                Err(e)
            }
            // Moved by an administrator (`backup set --state`): keep theirs.
            _ => Err(e),
        }
    }
}
