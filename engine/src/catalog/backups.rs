//! Backups: one row per backup with the fields `openstack share backup show`
//! prints, plus Cinder's incremental fields and strata's byte counts.

use rusqlite::{params, OptionalExtension, Row};
use strata_format::{BackupId, ShareId};

use super::Catalog;
use crate::error::{Error, Result};
use crate::store::{BackupFilter, BackupQuery, BackupReads, BackupRecord, BackupStatus, Problem};

const COLUMNS: &str = "id, project, share_id, name, description, status, progress, \
    restore_progress, size_gib, created_at, updated_at, host, availability_zone, backup_type, \
    topic, is_incremental, parent_id, data_timestamp, fail_reason, file_count, dir_count, \
    skipped_count, logical_bytes, new_bytes, stored_bytes, duration_ms, read_bytes, changed_count, \
    deleted_count, snapshot_id";

fn parse_id<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| Error::Bug(format!("catalog holds a malformed id {s:?}")))
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<Result<BackupRecord>> {
    let id: String = r.get(0)?;
    let share_id: String = r.get(2)?;
    let status: String = r.get(5)?;
    let parent: Option<String> = r.get(16)?;
    let snapshot: Option<String> = r.get(29)?;
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
            snapshot_id: snapshot.as_deref().map(parse_id).transpose()?,
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

impl Catalog {
    pub fn count_backups_of_share(&self, share: ShareId) -> Result<u64> {
        let n: i64 = self.conn()?.query_row(
            "SELECT COUNT(*) FROM backups WHERE share_id = ?1",
            [share.to_string()],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}

impl BackupReads for Catalog {
    /// The device of the share's root when `backup` read it, if recorded.
    fn backup_root_dev(&self, backup: BackupId) -> Result<Option<u64>> {
        let dev: Option<i64> = self
            .conn()?
            .query_row(
                "SELECT dev FROM backup_roots WHERE backup_id = ?1",
                [backup.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(dev.map(|d| d as u64))
    }

    fn backup(&self, id: BackupId) -> Result<BackupRecord> {
        self.conn()?
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
    fn find_backup(&self, project: &str, id_or_name: &str) -> Result<BackupRecord> {
        if let Some(found) = self
            .conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM backups WHERE id = ?1 AND project = ?2"),
                [id_or_name, project],
                from_row,
            )
            .optional()?
        {
            return found;
        }
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM backups WHERE project = ?1 AND name = ?2"
        ))?;
        let found: Vec<BackupRecord> = stmt
            .query_map([project, id_or_name], from_row)?
            .map(|r| r?)
            .collect::<Result<_>>()?;
        crate::store::only_one(found, "backup", id_or_name)
    }

    fn list_backups(&self, filter: &BackupFilter<'_>) -> Result<Vec<BackupRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
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
    /// Only the
    /// conditions given go into the statement, so that a project's page
    /// in creation order walks its index and stops after the page.
    fn list_backups_page(&self, q: &BackupQuery<'_>) -> Result<Vec<BackupRecord>> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        let mut add = |clause: &'static str, arg: Option<String>| {
            if let Some(a) = arg {
                clauses.push(clause);
                args.push(Box::new(a));
            }
        };
        add("project = ?", q.filter.project.map(str::to_string));
        add("share_id = ?", q.filter.share_id.map(|s| s.to_string()));
        add("name = ?", q.filter.name.map(str::to_string));
        add(
            "status = ?",
            q.filter.status.map(|s| s.as_str().to_string()),
        );
        add(
            "instr(lower(name), lower(?)) > 0",
            q.name_contains.map(str::to_string),
        );
        add("description = ?", q.description.map(str::to_string));
        add(
            "instr(lower(description), lower(?)) > 0",
            q.description_contains.map(str::to_string),
        );
        let filter = match clauses.is_empty() {
            true => String::new(),
            false => format!("WHERE {}", clauses.join(" AND ")),
        };
        let dir = if q.ascending { "ASC" } else { "DESC" };
        let column = q.sort.column();
        args.push(Box::new(
            q.limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64),
        ));
        args.push(Box::new(q.offset.min(i64::MAX as u64) as i64));
        let conn = self.conn()?;
        // The page's rows are chosen on the index alone (the offset is
        // skipped there), then read.
        let order = format!("ORDER BY {column} {dir}, id {dir}");
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM backups WHERE rowid IN
               (SELECT rowid FROM backups {filter} {order} LIMIT ? OFFSET ?)
             {order}"
        ))?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), from_row)?;
        rows.map(|r| r?).collect()
    }

    fn backup_problems(&self, id: BackupId) -> Result<Vec<Problem>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
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

    /// Backups whose parent is `id`.
    fn dependents(&self, id: BackupId) -> Result<Vec<BackupId>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT id FROM backups WHERE parent_id = ?1 ORDER BY created_at")?;
        let rows = stmt.query_map([id.to_string()], |r| r.get::<_, String>(0))?;
        rows.map(|r| parse_id(&r?)).collect()
    }
}
