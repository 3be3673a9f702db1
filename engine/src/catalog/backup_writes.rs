//! Backup records written: inserted under their admission conditions, moved
//! between statuses by compare-and-set, completed, removed. Each method is
//! one immediate transaction.

use rusqlite::{params, OptionalExtension, Transaction};
use strata_format::BackupId;

use super::{write_tx, Catalog};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{
    Admission, Admitted, BackupRecord, BackupStatus, BackupWrites, Problem, Reparent,
};

fn status_of(tx: &Transaction<'_>, id: BackupId) -> Result<Option<BackupStatus>> {
    let status: Option<String> = tx
        .query_row(
            "SELECT status FROM backups WHERE id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    status.as_deref().map(BackupStatus::parse).transpose()
}

/// The backup's status, which must be one of `from`.
fn expect(tx: &Transaction<'_>, id: BackupId, from: &[BackupStatus]) -> Result<BackupStatus> {
    let Some(current) = status_of(tx, id)? else {
        return Err(Error::NotFound {
            kind: "backup",
            name: id.to_string(),
        });
    };
    crate::store::expected("backup", &id, current, from, BackupStatus::as_str)
}

fn set_status(tx: &Transaction<'_>, id: BackupId, to: BackupStatus) -> Result<()> {
    tx.execute(
        "UPDATE backups SET status = ?1, updated_at = ?2 WHERE id = ?3",
        params![to.as_str(), now_ns(), id.to_string()],
    )?;
    Ok(())
}

fn insert_row(tx: &Transaction<'_>, b: &BackupRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO backups (id, project, share_id, name, description, status, progress,
            restore_progress, size_gib, created_at, updated_at, host, availability_zone,
            backup_type, topic, is_incremental, parent_id, data_timestamp, fail_reason,
            file_count, dir_count, skipped_count, logical_bytes, new_bytes, stored_bytes,
            duration_ms, read_bytes, changed_count, deleted_count, snapshot_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
            ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30)",
        params![
            b.id.to_string(),
            b.project,
            b.share_id.to_string(),
            b.name,
            b.description,
            b.status.as_str(),
            b.progress,
            b.restore_progress,
            b.size_gib as i64,
            b.created_at,
            b.updated_at,
            b.host,
            b.availability_zone,
            b.backup_type,
            b.topic,
            b.is_incremental,
            b.parent_id.map(|p| p.to_string()),
            b.data_timestamp,
            b.fail_reason,
            b.file_count as i64,
            b.dir_count as i64,
            b.skipped_count as i64,
            b.logical_bytes as i64,
            b.new_bytes as i64,
            b.stored_bytes as i64,
            b.duration_ms as i64,
            b.read_bytes as i64,
            b.changed_count as i64,
            b.deleted_count as i64,
            b.snapshot_id.map(|s| s.to_string())
        ],
    )?;
    Ok(())
}

fn insert_problems(tx: &Transaction<'_>, id: BackupId, problems: &[Problem]) -> Result<()> {
    let mut stmt =
        tx.prepare("INSERT INTO backup_problems (backup_id, path, problem) VALUES (?1, ?2, ?3)")?;
    let id = id.to_string();
    for p in problems {
        stmt.execute(params![id, p.path, p.problem])?;
    }
    Ok(())
}

fn set_root_dev(tx: &Transaction<'_>, id: BackupId, dev: u64) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO backup_roots (backup_id, dev) VALUES (?1, ?2)",
        params![id.to_string(), dev as i64],
    )?;
    Ok(())
}

impl BackupWrites for Catalog {
    fn insert_backup(&self, b: &BackupRecord, admission: &Admission) -> Result<Admitted> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let admitted = admission.judge(
            |parent| status_of(&tx, parent),
            |snapshot| super::snapshots::status_of(&tx, snapshot),
            || super::quotas::usage(&tx, &b.project),
        )?;
        if admitted != Admitted::Yes {
            return Ok(admitted);
        }
        insert_row(&tx, b)?;
        tx.commit()?;
        Ok(Admitted::Yes)
    }

    fn import_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        if status_of(&tx, b.id)?.is_some() {
            return Err(Error::InvalidArgument(format!(
                "backup {} is already in the catalog",
                b.id
            )));
        }
        insert_row(&tx, b)?;
        insert_problems(&tx, b.id, problems)?;
        if let Some(dev) = root_dev {
            set_root_dev(&tx, b.id, dev)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn transition_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus> {
        self.write(|tx| {
            let before = expect(tx, id, from)?;
            set_status(tx, id, to)?;
            Ok(before)
        })
    }

    fn reparent_backup(&self, id: BackupId, change: &Reparent<'_>) -> Result<()> {
        self.write(|tx| {
            expect(tx, id, change.statuses)?;
            let parent: Option<String> = tx.query_row(
                "SELECT parent_id FROM backups WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )?;
            let from = change.from.map(|p| p.to_string());
            if parent != from {
                return Err(Error::InvalidState(format!(
                    "backup {id}'s parent is {}, not {}",
                    parent.as_deref().unwrap_or("none"),
                    from.as_deref().unwrap_or("none")
                )));
            }
            tx.execute(
                "UPDATE backups SET parent_id = ?1, is_incremental = ?2, changed_count = ?3,
                    deleted_count = ?4, updated_at = ?5 WHERE id = ?6",
                params![
                    change.to.map(|p| p.to_string()),
                    change.to.is_some(),
                    change.entries as i64,
                    change.tombstones as i64,
                    now_ns(),
                    id.to_string()
                ],
            )?;
            Ok(())
        })
    }

    fn transition_leaf_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let before = expect(&tx, id, from)?;
        let dependents: Vec<String> = tx
            .prepare("SELECT id FROM backups WHERE parent_id = ?1 ORDER BY created_at")?
            .query_map([id.to_string()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if !dependents.is_empty() {
            return Err(Error::InvalidState(format!(
                "backup {id} has dependent backups: {}",
                dependents.join(", ")
            )));
        }
        set_status(&tx, id, to)?;
        tx.commit()?;
        Ok(before)
    }

    fn complete_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        expect(&tx, b.id, &[BackupStatus::Creating]).map_err(|e| match e {
            Error::InvalidState(_) => {
                Error::InvalidState(format!("backup {} left 'creating' while it ran", b.id))
            }
            other => other,
        })?;
        tx.execute(
            "UPDATE backups SET status = 'available', progress = 100, size_gib = ?1,
                updated_at = ?2, file_count = ?3, dir_count = ?4, skipped_count = ?5,
                logical_bytes = ?6, new_bytes = ?7, stored_bytes = ?8, duration_ms = ?9,
                fail_reason = ?10, data_timestamp = ?11, read_bytes = ?12, changed_count = ?13,
                deleted_count = ?14
             WHERE id = ?15",
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
        insert_problems(&tx, b.id, problems)?;
        if let Some(dev) = root_dev {
            set_root_dev(&tx, b.id, dev)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn fail_backup(&self, id: BackupId, from: &[BackupStatus], reason: &str) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        expect(&tx, id, from)?;
        set_status(&tx, id, BackupStatus::Error)?;
        tx.execute(
            "UPDATE backups SET fail_reason = ?1 WHERE id = ?2",
            params![reason, id.to_string()],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn set_fail_reason(&self, id: BackupId, reason: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE backups SET fail_reason = ?1, updated_at = ?2 WHERE id = ?3",
            params![reason, now_ns(), id.to_string()],
        )?;
        Ok(())
    }

    fn set_backup_progress(&self, id: BackupId, percent: u32, restore: bool) -> Result<()> {
        let column = if restore {
            "restore_progress"
        } else {
            "progress"
        };
        self.conn()?.execute(
            &format!("UPDATE backups SET {column} = ?1, updated_at = ?2 WHERE id = ?3"),
            params![percent.min(100), now_ns(), id.to_string()],
        )?;
        Ok(())
    }

    fn rename_backup(
        &self,
        id: BackupId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<()> {
        self.conn()?.execute(
            "UPDATE backups SET name = CASE WHEN ?1 IS NULL THEN name ELSE NULLIF(?1, '') END,
                description = CASE WHEN ?2 IS NULL THEN description ELSE NULLIF(?2, '') END,
                updated_at = ?3 WHERE id = ?4",
            params![name, description, now_ns(), id.to_string()],
        )?;
        Ok(())
    }

    fn reset_backup_status(&self, id: BackupId, to: BackupStatus) -> Result<BackupStatus> {
        self.write(|tx| {
            let before = expect(tx, id, &BackupStatus::ALL)?;
            set_status(tx, id, to)?;
            Ok(before)
        })
    }

    /// Removes a backup's row, report, root device and chunk references.
    fn remove_backup(&self, id: BackupId) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let id = id.to_string();
        tx.execute("DELETE FROM backup_problems WHERE backup_id = ?1", [&id])?;
        tx.execute("DELETE FROM layer_chunks WHERE backup_id = ?1", [&id])?;
        tx.execute("DELETE FROM backup_roots WHERE backup_id = ?1", [&id])?;
        tx.execute("DELETE FROM backups WHERE id = ?1", [&id])?;
        tx.commit()?;
        Ok(())
    }
}
