//! Backups: one row per backup with the fields `openstack share backup show`
//! prints, plus Cinder's incremental fields and strata's byte counts.

use rusqlite::{params, OptionalExtension, Row};
use strata_format::{BackupId, ShareId};

use super::{Catalog, Quota};
use crate::clock::now_ns;
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

const COLUMNS: &str = "id, project, share_id, name, description, status, progress, \
    restore_progress, size_gib, created_at, updated_at, host, availability_zone, backup_type, \
    topic, is_incremental, parent_id, data_timestamp, fail_reason, file_count, dir_count, \
    skipped_count, logical_bytes, new_bytes, stored_bytes, duration_ms, read_bytes, changed_count, \
    deleted_count";

fn parse_id<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| Error::Bug(format!("catalog holds a malformed id {s:?}")))
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<BackupRecord>> {
    let id: String = r.get(0)?;
    let share_id: String = r.get(2)?;
    let status: String = r.get(5)?;
    let parent: Option<String> = r.get(16)?;
    let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
    let build = || -> Result<BackupRecord> {
        Ok(BackupRecord {
            id: parse_id(&id)?,
            project: r.get(1)?,
            share_id: parse_id(&share_id)?,
            name: r.get(3)?,
            description: r.get(4)?,
            status: BackupStatus::parse(&status)?,
            progress: n(6)? as u32,
            restore_progress: n(7)? as u32,
            size_gib: n(8)?,
            created_at: r.get(9)?,
            updated_at: r.get(10)?,
            host: r.get(11)?,
            availability_zone: r.get(12)?,
            backup_type: r.get(13)?,
            topic: r.get(14)?,
            is_incremental: r.get(15)?,
            parent_id: parent.as_deref().map(parse_id).transpose()?,
            data_timestamp: r.get(17)?,
            fail_reason: r.get(18)?,
            file_count: n(19)?,
            dir_count: n(20)?,
            skipped_count: n(21)?,
            logical_bytes: n(22)?,
            new_bytes: n(23)?,
            stored_bytes: n(24)?,
            duration_ms: n(25)?,
            read_bytes: n(26)?,
            changed_count: n(27)?,
            deleted_count: n(28)?,
        })
    };
    Ok(build())
}

/// Filters for `list_backups`; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct BackupFilter<'a> {
    pub project: Option<&'a str>,
    pub share_id: Option<ShareId>,
    pub name: Option<&'a str>,
    pub status: Option<BackupStatus>,
}

impl Catalog {
    pub fn backup(&self, id: BackupId) -> Result<BackupRecord> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM backups WHERE id = ?1"),
                [id.to_string()],
                from_row,
            )
            .optional()?
            .unwrap_or_else(|| {
                Err(Error::NotFound {
                    kind: "backup",
                    name: id.to_string(),
                })
            })
    }

    /// Finds a backup of `project` by id, or by name (which must then be unique).
    pub fn find_backup(&self, project: &str, id_or_name: &str) -> Result<BackupRecord> {
        if let Some(found) = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM backups WHERE id = ?1 AND project = ?2"),
                [id_or_name, project],
                from_row,
            )
            .optional()?
        {
            return found;
        }
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM backups WHERE project = ?1 AND name = ?2"
        ))?;
        let mut found: Vec<BackupRecord> = stmt
            .query_map([project, id_or_name], from_row)?
            .map(|r| r?)
            .collect::<Result<_>>()?;
        match found.len() {
            0 => Err(Error::NotFound {
                kind: "backup",
                name: id_or_name.to_string(),
            }),
            1 => Ok(found.remove(0)),
            n => Err(Error::InvalidArgument(format!(
                "{n} backups are named {id_or_name:?}; name one by id"
            ))),
        }
    }

    pub fn list_backups(&self, filter: &BackupFilter<'_>) -> Result<Vec<BackupRecord>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM backups
             WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR share_id = ?2)
               AND (?3 IS NULL OR name = ?3) AND (?4 IS NULL OR status = ?4)
             ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(
            params![
                filter.project,
                filter.share_id.map(|s| s.to_string()),
                filter.name,
                filter.status.map(|s| s.as_str())
            ],
            from_row,
        )?;
        rows.map(|r| r?).collect()
    }

    /// Moves a backup between statuses atomically; fails if it is not in `from`.
    pub fn transition_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<()> {
        let current = self.backup(id)?;
        if !from.contains(&current.status) {
            return Err(Error::InvalidState(format!(
                "backup {id} is {}, expected {}",
                current.status.as_str(),
                from.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        let changed = self.conn.execute(
            "UPDATE backups SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status = ?4",
            params![
                to.as_str(),
                now_ns(),
                id.to_string(),
                current.status.as_str()
            ],
        )?;
        if changed != 1 {
            return Err(Error::Busy(format!(
                "backup {id} changed status concurrently"
            )));
        }
        Ok(())
    }

    /// Records a failed backup: status `error`, the reason kept for `show`.
    pub fn fail_backup(&self, id: BackupId, reason: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE backups SET status = 'error', fail_reason = ?1, updated_at = ?2 WHERE id = ?3",
            params![reason, now_ns(), id.to_string()],
        )?;
        Ok(())
    }

    pub fn set_backup_progress(&self, id: BackupId, progress: u32, restore: bool) -> Result<()> {
        let column = if restore {
            "restore_progress"
        } else {
            "progress"
        };
        self.conn.execute(
            &format!("UPDATE backups SET {column} = ?1, updated_at = ?2 WHERE id = ?3"),
            params![progress.min(100), now_ns(), id.to_string()],
        )?;
        Ok(())
    }

    pub fn rename_backup(
        &self,
        id: BackupId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE backups SET name = COALESCE(?1, name),
                description = COALESCE(?2, description), updated_at = ?3 WHERE id = ?4",
            params![name, description, now_ns(), id.to_string()],
        )?;
        Ok(())
    }

    /// Marks a backup available with its final figures, and records its report.
    pub fn complete_backup(&mut self, b: &BackupRecord, problems: &[Problem]) -> Result<()> {
        let tx = self.write_tx()?;
        let changed = tx.execute(
            "UPDATE backups SET status = 'available', progress = 100, size_gib = ?1,
                updated_at = ?2, file_count = ?3, dir_count = ?4, skipped_count = ?5,
                logical_bytes = ?6, new_bytes = ?7, stored_bytes = ?8, duration_ms = ?9,
                fail_reason = ?10, data_timestamp = ?11, read_bytes = ?12, changed_count = ?13,
                deleted_count = ?14
             WHERE id = ?15 AND status = 'creating'",
            params![
                b.size_gib as i64,
                now_ns(),
                b.file_count as i64,
                b.dir_count as i64,
                b.skipped_count as i64,
                b.logical_bytes as i64,
                b.new_bytes as i64,
                b.stored_bytes as i64,
                b.duration_ms as i64,
                b.fail_reason,
                b.data_timestamp,
                b.read_bytes as i64,
                b.changed_count as i64,
                b.deleted_count as i64,
                b.id.to_string()
            ],
        )?;
        if changed != 1 {
            return Err(Error::InvalidState(format!(
                "backup {} left 'creating' while it ran",
                b.id
            )));
        }
        insert_problems(&tx, b.id, problems)?;
        tx.commit()?;
        Ok(())
    }

    pub fn backup_problems(&self, id: BackupId) -> Result<Vec<Problem>> {
        let mut stmt = self.conn.prepare(
            "SELECT path, problem FROM backup_problems WHERE backup_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map([id.to_string()], |r| {
            Ok(Problem {
                path: r.get(0)?,
                problem: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a backup's row, report and chunk references.
    pub fn remove_backup_row(&mut self, id: BackupId) -> Result<()> {
        let tx = self.write_tx()?;
        let id = id.to_string();
        tx.execute("DELETE FROM backup_problems WHERE backup_id = ?1", [&id])?;
        tx.execute("DELETE FROM layer_chunks WHERE backup_id = ?1", [&id])?;
        tx.execute("DELETE FROM backup_roots WHERE backup_id = ?1", [&id])?;
        tx.execute("DELETE FROM backups WHERE id = ?1", [&id])?;
        tx.commit()?;
        Ok(())
    }

    pub fn count_backups_of_share(&self, share: ShareId) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM backups WHERE share_id = ?1",
            [share.to_string()],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

/// What `begin_backup` checks and decides.
#[derive(Clone, Copy, Debug)]
pub struct BackupStart {
    pub parent: ParentChoice,
    /// Back up a share marked `in-use` (crash-consistently).
    pub force: bool,
    pub quota: Quota,
    /// The size the quota check counts for the new backup.
    pub estimate_gib: u64,
}

fn check_quota(
    tx: &rusqlite::Transaction<'_>,
    project: &str,
    quota: &Quota,
    estimate_gib: u64,
) -> Result<()> {
    let used = super::quotas::usage(tx, project)?;
    if let Some(limit) = quota.backups {
        if used.backups + 1 > limit {
            return Err(Error::Quota(format!(
                "project {project}: backups quota is {limit}, {} in use; one more would exceed it",
                used.backups
            )));
        }
    }
    if let Some(limit) = quota.backup_gigabytes {
        if used.backup_gigabytes + estimate_gib > limit {
            return Err(Error::Quota(format!(
                "project {project}: backup_gigabytes quota is {limit} GiB, {} GiB in use; \
                 this backup ({estimate_gib} GiB estimated) would exceed it",
                used.backup_gigabytes
            )));
        }
    }
    Ok(())
}

/// Which backup an incremental builds on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentChoice {
    /// A full backup.
    None,
    /// The `available` backup of the share with the latest data timestamp.
    Latest,
    /// This backup, which must be an `available` backup of the share.
    Explicit(BackupId),
}

fn choose_parent(
    tx: &rusqlite::Transaction<'_>,
    share: ShareId,
    choice: ParentChoice,
) -> Result<Option<BackupId>> {
    match choice {
        ParentChoice::None => Ok(None),
        ParentChoice::Latest => {
            let id: Option<String> = tx
                .query_row(
                    "SELECT id FROM backups WHERE share_id = ?1 AND status = 'available'
                     ORDER BY data_timestamp DESC, created_at DESC LIMIT 1",
                    [share.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            match id {
                Some(id) => Ok(Some(parse_id(&id)?)),
                None => Err(Error::InvalidState(format!(
                    "share {share} has no available backup to build an incremental on; \
                     its first backup must be a full backup"
                ))),
            }
        }
        ParentChoice::Explicit(id) => {
            let row: Option<(String, String)> = tx
                .query_row(
                    "SELECT share_id, status FROM backups WHERE id = ?1",
                    [id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((of_share, status)) = row else {
                return Err(Error::NotFound {
                    kind: "backup",
                    name: id.to_string(),
                });
            };
            if of_share != share.to_string() {
                return Err(Error::InvalidArgument(format!(
                    "backup {id} is a backup of another share (share {of_share}); \
                     an incremental's parent must be a backup of the same share"
                )));
            }
            if status != BackupStatus::Available.as_str() {
                return Err(Error::InvalidState(format!(
                    "backup {id} is {status}; an incremental's parent must be available"
                )));
            }
            Ok(Some(id))
        }
    }
}

pub(super) fn insert_problems(
    tx: &rusqlite::Transaction<'_>,
    id: BackupId,
    problems: &[Problem],
) -> Result<()> {
    let mut stmt =
        tx.prepare("INSERT INTO backup_problems (backup_id, path, problem) VALUES (?1, ?2, ?3)")?;
    let id = id.to_string();
    for p in problems {
        stmt.execute(params![id, p.path, p.problem])?;
    }
    Ok(())
}

impl Catalog {
    /// Starts a backup in one transaction: the share must be `available`
    /// (or `in-use` with `force`) and becomes `backup_creating`; the quota
    /// must allow one more backup of `estimate_gib`; the parent is chosen as
    /// `parent` says (so it cannot be deleted between the choice and the
    /// insert); the backup row is inserted `creating`; operation `op`
    /// records the share's status before, so a cleanup after a crash gives
    /// back the right one. Returns the parent chosen and that status.
    pub fn begin_backup(
        &mut self,
        b: &BackupRecord,
        start: &BackupStart,
        op: &str,
    ) -> Result<(Option<BackupId>, String)> {
        let tx = self.write_tx()?;
        let share = b.share_id.to_string();
        let before: Option<String> = tx
            .query_row("SELECT status FROM shares WHERE id = ?1", [&share], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(before) = before else {
            return Err(Error::NotFound {
                kind: "share",
                name: share,
            });
        };
        let allowed = before == "available" || (start.force && before == "in-use");
        if !allowed {
            return Err(Error::Busy(format!("share {share} is {before}")));
        }
        check_quota(&tx, &b.project, &start.quota, start.estimate_gib)?;
        tx.execute(
            "UPDATE shares SET status = 'backup_creating', updated_at = ?1 WHERE id = ?2",
            params![now_ns(), share],
        )?;
        tx.execute(
            "UPDATE operations SET share_status_before = ?1 WHERE id = ?2",
            params![before, op],
        )?;
        let parent_id = choose_parent(&tx, b.share_id, start.parent)?;
        tx.execute(
            "INSERT INTO backups (id, project, share_id, name, description, status, created_at,
                host, availability_zone, backup_type, topic, is_incremental, parent_id)
             VALUES (?1, ?2, ?3, ?4, ?5, 'creating', ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                b.id.to_string(),
                b.project,
                share,
                b.name,
                b.description,
                b.created_at,
                b.host,
                b.availability_zone,
                b.backup_type,
                b.topic,
                parent_id.is_some(),
                parent_id.map(|p| p.to_string())
            ],
        )?;
        tx.commit()?;
        Ok((parent_id, before))
    }

    /// The parent `choice` names for a backup of `share` now, read-only (the
    /// choice that counts is made again inside [`Catalog::begin_backup`]).
    pub fn preview_parent(&self, share: ShareId, choice: ParentChoice) -> Result<Option<BackupId>> {
        let tx = self.conn.unchecked_transaction()?;
        let parent = choose_parent(&tx, share, choice);
        tx.rollback()?;
        parent
    }

    /// Backups whose parent is `id`.
    pub fn dependents(&self, id: BackupId) -> Result<Vec<BackupId>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM backups WHERE parent_id = ?1 ORDER BY created_at")?;
        let rows = stmt.query_map([id.to_string()], |r| r.get::<_, String>(0))?;
        rows.map(|r| parse_id(&r?)).collect()
    }

    pub fn fail_backup_deleting(&self, id: BackupId, reason: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE backups SET fail_reason = ?1, updated_at = ?2 WHERE id = ?3",
            params![reason, now_ns(), id.to_string()],
        )?;
        Ok(())
    }
}

impl Catalog {
    /// Sets a backup's status unconditionally (an administrator's reset);
    /// returns the status it had.
    pub fn reset_backup_status(&self, id: BackupId, to: BackupStatus) -> Result<BackupStatus> {
        let before = self.backup(id)?.status;
        self.conn.execute(
            "UPDATE backups SET status = ?1, updated_at = ?2 WHERE id = ?3",
            params![to.as_str(), now_ns(), id.to_string()],
        )?;
        Ok(before)
    }
}
