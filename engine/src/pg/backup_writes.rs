//! Backup records written in the PostgreSQL catalog. Each method is one
//! transaction; a compare-and-set locks the backup's row (`FOR UPDATE`),
//! and an admission locks the project's row, so that nodes admitting
//! backups of one project at once count each other's (the quota holds
//! across nodes) and a parent being deleted gets no new child.

use postgres::Transaction;
use strata_format::{BackupId, SnapshotId};

use super::PgCatalog;
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{
    Admission, Admitted, BackupRecord, BackupStatus, BackupWrites, Problem, Reparent,
    SnapshotStatus,
};

/// The backup's status, its row locked until the transaction ends.
fn status_of(tx: &mut Transaction<'_>, id: BackupId) -> Result<Option<BackupStatus>> {
    let row = tx.query_opt(
        "SELECT status FROM backups WHERE id = $1 FOR UPDATE",
        &[&id.to_string()],
    )?;
    row.map(|r| BackupStatus::parse(&r.get::<_, String>(0)))
        .transpose()
}

fn snapshot_status(tx: &mut Transaction<'_>, id: SnapshotId) -> Result<Option<SnapshotStatus>> {
    let row = tx.query_opt(
        "SELECT status FROM snapshots WHERE id = $1 FOR UPDATE",
        &[&id.to_string()],
    )?;
    row.map(|r| SnapshotStatus::parse(&r.get::<_, String>(0)))
        .transpose()
}

fn expect(tx: &mut Transaction<'_>, id: BackupId, from: &[BackupStatus]) -> Result<BackupStatus> {
    let Some(current) = status_of(tx, id)? else {
        return Err(Error::NotFound {
            kind: "backup",
            name: id.to_string(),
        });
    };
    crate::store::expected("backup", &id, current, from, BackupStatus::as_str)
}

fn set_status(tx: &mut Transaction<'_>, id: BackupId, to: BackupStatus) -> Result<()> {
    tx.execute(
        "UPDATE backups SET status = $1, updated_at = $2 WHERE id = $3",
        &[&to.as_str(), &now_ns(), &id.to_string()],
    )?;
    Ok(())
}

fn n(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

fn insert_row(tx: &mut Transaction<'_>, b: &BackupRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO backups (id, project, share_id, name, description, status, progress,
            restore_progress, size_gib, created_at, updated_at, host, availability_zone,
            backup_type, topic, is_incremental, parent_id, data_timestamp, fail_reason,
            file_count, dir_count, skipped_count, logical_bytes, new_bytes, stored_bytes,
            duration_ms, read_bytes, changed_count, deleted_count, snapshot_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
            $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)",
        &[
            &b.id.to_string(),
            &b.project,
            &b.share_id.to_string(),
            &b.name,
            &b.description,
            &b.status.as_str(),
            &i64::from(b.progress),
            &i64::from(b.restore_progress),
            &n(b.size_gib),
            &b.created_at,
            &b.updated_at,
            &b.host,
            &b.availability_zone,
            &b.backup_type,
            &b.topic,
            &b.is_incremental,
            &b.parent_id.map(|p| p.to_string()),
            &b.data_timestamp,
            &b.fail_reason,
            &n(b.file_count),
            &n(b.dir_count),
            &n(b.skipped_count),
            &n(b.logical_bytes),
            &n(b.new_bytes),
            &n(b.stored_bytes),
            &n(b.duration_ms),
            &n(b.read_bytes),
            &n(b.changed_count),
            &n(b.deleted_count),
            &b.snapshot_id.map(|s| s.to_string()),
        ],
    )?;
    Ok(())
}

fn insert_problems(tx: &mut Transaction<'_>, id: BackupId, problems: &[Problem]) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    let what: Vec<&str> = problems.iter().map(|p| p.problem.as_str()).collect();
    tx.execute(
        "INSERT INTO backup_problems (backup_id, path, problem)
         SELECT $1, p.path, p.problem FROM UNNEST($2::TEXT[], $3::TEXT[])
             WITH ORDINALITY AS p(path, problem, n) ORDER BY p.n",
        &[&id.to_string(), &paths, &what],
    )?;
    Ok(())
}

fn set_root_dev(tx: &mut Transaction<'_>, id: BackupId, dev: Option<u64>) -> Result<()> {
    if let Some(dev) = dev {
        tx.execute(
            "INSERT INTO backup_roots (backup_id, dev) VALUES ($1, $2)
             ON CONFLICT (backup_id) DO UPDATE SET dev = excluded.dev",
            &[&id.to_string(), &(dev as i64)],
        )?;
    }
    Ok(())
}

impl BackupWrites for PgCatalog {
    fn insert_backup(&self, b: &BackupRecord, admission: &Admission) -> Result<Admitted> {
        self.write(|tx| {
            // The project's row, locked: admissions of one project take turns.
            tx.execute(
                "INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&b.project, &now_ns()],
            )?;
            tx.query_one(
                "SELECT name FROM projects WHERE name = $1 FOR UPDATE",
                &[&b.project],
            )?;
            let parent = match admission.parent {
                Some(p) => Some(status_of(tx, p)?),
                None => None,
            };
            let snapshot = match admission.snapshot {
                Some(s) => Some(snapshot_status(tx, s)?),
                None => None,
            };
            let used = super::usage(tx, &b.project)?;
            let admitted = admission.judge(
                |_| Ok(parent.flatten()),
                |_| Ok(snapshot.flatten()),
                || Ok(used),
            )?;
            if admitted == Admitted::Yes {
                insert_row(tx, b)?;
            }
            Ok(admitted)
        })
    }

    fn import_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        self.write(|tx| {
            if status_of(tx, b.id)?.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "backup {} is already in the catalog",
                    b.id
                )));
            }
            insert_row(tx, b)?;
            insert_problems(tx, b.id, problems)?;
            set_root_dev(tx, b.id, root_dev)
        })
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

    fn transition_leaf_backup(
        &self,
        id: BackupId,
        from: &[BackupStatus],
        to: BackupStatus,
    ) -> Result<BackupStatus> {
        self.write(|tx| {
            let before = expect(tx, id, from)?;
            let dependents: Vec<String> = tx
                .query(
                    "SELECT id FROM backups WHERE parent_id = $1 ORDER BY created_at",
                    &[&id.to_string()],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !dependents.is_empty() {
                return Err(Error::InvalidState(format!(
                    "backup {id} has dependent backups: {}",
                    dependents.join(", ")
                )));
            }
            set_status(tx, id, to)?;
            Ok(before)
        })
    }

    fn reparent_backup(&self, id: BackupId, change: &Reparent<'_>) -> Result<()> {
        self.write(|tx| {
            expect(tx, id, change.statuses)?;
            let parent: Option<String> = tx
                .query_one(
                    "SELECT parent_id FROM backups WHERE id = $1",
                    &[&id.to_string()],
                )?
                .get(0);
            let from = change.from.map(|p| p.to_string());
            if parent != from {
                return Err(Error::InvalidState(format!(
                    "backup {id}'s parent is {}, not {}",
                    parent.as_deref().unwrap_or("none"),
                    from.as_deref().unwrap_or("none")
                )));
            }
            tx.execute(
                "UPDATE backups SET parent_id = $1, is_incremental = $2, changed_count = $3,
                    deleted_count = $4, updated_at = $5 WHERE id = $6",
                &[
                    &change.to.map(|p| p.to_string()),
                    &change.to.is_some(),
                    &n(change.entries),
                    &n(change.tombstones),
                    &now_ns(),
                    &id.to_string(),
                ],
            )?;
            Ok(())
        })
    }

    fn complete_backup(
        &self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        self.write(|tx| {
            expect(tx, b.id, &[BackupStatus::Creating]).map_err(|e| match e {
                Error::InvalidState(_) => {
                    Error::InvalidState(format!("backup {} left 'creating' while it ran", b.id))
                }
                other => other,
            })?;
            tx.execute(
                "UPDATE backups SET status = 'available', progress = 100, size_gib = $1,
                    updated_at = $2, file_count = $3, dir_count = $4, skipped_count = $5,
                    logical_bytes = $6, new_bytes = $7, stored_bytes = $8, duration_ms = $9,
                    fail_reason = $10, data_timestamp = $11, read_bytes = $12,
                    changed_count = $13, deleted_count = $14
                 WHERE id = $15",
                &[
                    &n(b.size_gib),
                    &now_ns(),
                    &n(b.file_count),
                    &n(b.dir_count),
                    &n(b.skipped_count),
                    &n(b.logical_bytes),
                    &n(b.new_bytes),
                    &n(b.stored_bytes),
                    &n(b.duration_ms),
                    &b.fail_reason,
                    &b.data_timestamp,
                    &n(b.read_bytes),
                    &n(b.changed_count),
                    &n(b.deleted_count),
                    &b.id.to_string(),
                ],
            )?;
            insert_problems(tx, b.id, problems)?;
            set_root_dev(tx, b.id, root_dev)
        })
    }

    fn fail_backup(&self, id: BackupId, from: &[BackupStatus], reason: &str) -> Result<()> {
        self.write(|tx| {
            expect(tx, id, from)?;
            set_status(tx, id, BackupStatus::Error)?;
            tx.execute(
                "UPDATE backups SET fail_reason = $1 WHERE id = $2",
                &[&reason, &id.to_string()],
            )?;
            Ok(())
        })
    }

    fn set_fail_reason(&self, id: BackupId, reason: &str) -> Result<()> {
        self.conn()?.client.execute(
            "UPDATE backups SET fail_reason = $1, updated_at = $2 WHERE id = $3",
            &[&reason, &now_ns(), &id.to_string()],
        )?;
        Ok(())
    }

    fn set_backup_progress(&self, id: BackupId, percent: u32, restore: bool) -> Result<()> {
        let sql = match restore {
            true => "UPDATE backups SET restore_progress = $1, updated_at = $2 WHERE id = $3",
            false => "UPDATE backups SET progress = $1, updated_at = $2 WHERE id = $3",
        };
        self.conn()?.client.execute(
            sql,
            &[&i64::from(percent.min(100)), &now_ns(), &id.to_string()],
        )?;
        Ok(())
    }

    fn rename_backup(
        &self,
        id: BackupId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<()> {
        self.conn()?.client.execute(
            "UPDATE backups
             SET name = CASE WHEN $1::TEXT IS NULL THEN name ELSE NULLIF($1, '') END,
                 description = CASE WHEN $2::TEXT IS NULL THEN description ELSE NULLIF($2, '') END,
                 updated_at = $3 WHERE id = $4",
            &[&name, &description, &now_ns(), &id.to_string()],
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

    fn remove_backup(&self, id: BackupId) -> Result<()> {
        let id = id.to_string();
        self.write(|tx| {
            tx.execute("DELETE FROM backup_problems WHERE backup_id = $1", &[&id])?;
            tx.execute("DELETE FROM layer_chunks WHERE backup_id = $1", &[&id])?;
            tx.execute("DELETE FROM backup_roots WHERE backup_id = $1", &[&id])?;
            tx.execute("DELETE FROM backups WHERE id = $1", &[&id])?;
            Ok(())
        })
    }
}
