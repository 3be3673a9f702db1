//! Backup records read from the PostgreSQL catalog.

use postgres::types::ToSql;
use postgres::Row;
use strata_format::BackupId;

use super::{id_of, PgCatalog};
use crate::error::{Error, Result};
use crate::store::{
    BackupFilter, BackupQuery, BackupReads, BackupRecord, BackupSort, BackupStatus, Problem,
};

const COLUMNS: &str = "id, project, share_id, name, description, status, progress, \
    restore_progress, size_gib, created_at, updated_at, host, availability_zone, backup_type, \
    topic, is_incremental, parent_id, data_timestamp, fail_reason, file_count, dir_count, \
    skipped_count, logical_bytes, new_bytes, stored_bytes, duration_ms, read_bytes, changed_count, \
    deleted_count, snapshot_id";

fn from_row(r: &Row) -> Result<BackupRecord> {
    let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
    let parent: Option<String> = r.get(16);
    let snapshot: Option<String> = r.get(29);
    Ok(BackupRecord {
        id: id_of(&r.get::<_, String>(0))?,
        project: r.get(1),
        share_id: id_of(&r.get::<_, String>(2))?,
        name: r.get(3),
        description: r.get(4),
        status: BackupStatus::parse(&r.get::<_, String>(5))?,
        progress: n(6).min(100) as u32,
        restore_progress: n(7).min(100) as u32,
        size_gib: n(8),
        created_at: r.get(9),
        updated_at: r.get(10),
        host: r.get(11),
        availability_zone: r.get(12),
        backup_type: r.get(13),
        topic: r.get(14),
        is_incremental: r.get(15),
        parent_id: parent.as_deref().map(id_of).transpose()?,
        snapshot_id: snapshot.as_deref().map(id_of).transpose()?,
        data_timestamp: r.get(17),
        fail_reason: r.get(18),
        file_count: n(19),
        dir_count: n(20),
        skipped_count: n(21),
        logical_bytes: n(22),
        new_bytes: n(23),
        stored_bytes: n(24),
        duration_ms: n(25),
        read_bytes: n(26),
        changed_count: n(27),
        deleted_count: n(28),
    })
}

/// How a sort column orders: text by bytes (as SQLite does), NULLs where
/// SQLite puts them (first going up).
fn order(sort: BackupSort, ascending: bool) -> String {
    let column = sort.column();
    let text = matches!(
        sort,
        BackupSort::Id
            | BackupSort::Name
            | BackupSort::Description
            | BackupSort::Status
            | BackupSort::ShareId
    );
    let collate = if text { " COLLATE \"C\"" } else { "" };
    let (dir, nulls) = match ascending {
        true => ("ASC", "NULLS FIRST"),
        false => ("DESC", "NULLS LAST"),
    };
    format!("ORDER BY {column}{collate} {dir} {nulls}, id COLLATE \"C\" {dir}")
}

impl BackupReads for PgCatalog {
    fn backup(&self, id: BackupId) -> Result<BackupRecord> {
        let row = self.conn()?.client.query_opt(
            &format!("SELECT {COLUMNS} FROM backups WHERE id = $1"),
            &[&id.to_string()],
        )?;
        match row {
            Some(row) => from_row(&row),
            None => Err(Error::NotFound {
                kind: "backup",
                name: id.to_string(),
            }),
        }
    }

    fn find_backup(&self, project: &str, id_or_name: &str) -> Result<BackupRecord> {
        let mut conn = self.conn()?;
        let by_id = conn.client.query_opt(
            &format!("SELECT {COLUMNS} FROM backups WHERE id = $1 AND project = $2"),
            &[&id_or_name, &project],
        )?;
        if let Some(row) = by_id {
            return from_row(&row);
        }
        let found = conn
            .client
            .query(
                &format!("SELECT {COLUMNS} FROM backups WHERE project = $1 AND name = $2"),
                &[&project, &id_or_name],
            )?
            .iter()
            .map(from_row)
            .collect::<Result<Vec<_>>>()?;
        crate::store::only_one(found, "backup", id_or_name)
    }

    fn list_backups(&self, filter: &BackupFilter<'_>) -> Result<Vec<BackupRecord>> {
        self.conn()?
            .client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM backups
                     WHERE ($1::TEXT IS NULL OR project = $1) AND ($2::TEXT IS NULL OR share_id = $2)
                       AND ($3::TEXT IS NULL OR name = $3) AND ($4::TEXT IS NULL OR status = $4)
                     ORDER BY created_at, id COLLATE \"C\""
                ),
                &[
                    &filter.project,
                    &filter.share_id.map(|s| s.to_string()),
                    &filter.name,
                    &filter.status.map(|s| s.as_str()),
                ],
            )?
            .iter()
            .map(from_row)
            .collect()
    }

    /// Only the conditions given go into the statement, so that a
    /// project's page in creation order walks its index.
    fn list_backups_page(&self, q: &BackupQuery<'_>) -> Result<Vec<BackupRecord>> {
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<Box<dyn ToSql + Sync>> = Vec::new();
        let mut add = |clause: &str, arg: Option<String>| {
            if let Some(a) = arg {
                args.push(Box::new(a));
                clauses.push(clause.replace('?', &format!("${}", args.len())));
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
            "strpos(lower(name), lower(?)) > 0",
            q.name_contains.map(str::to_string),
        );
        add("description = ?", q.description.map(str::to_string));
        add(
            "strpos(lower(description), lower(?)) > 0",
            q.description_contains.map(str::to_string),
        );
        let filter = match clauses.is_empty() {
            true => String::new(),
            false => format!("WHERE {}", clauses.join(" AND ")),
        };
        let limit = match q.limit {
            Some(l) => format!("LIMIT {}", l.min(i64::MAX as u64)),
            None => String::new(),
        };
        let offset = q.offset.min(i64::MAX as u64);
        let sql = format!(
            "SELECT {COLUMNS} FROM backups {filter} {} {limit} OFFSET {offset}",
            order(q.sort, q.ascending)
        );
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        self.conn()?
            .client
            .query(&sql, &params)?
            .iter()
            .map(from_row)
            .collect()
    }

    fn dependents(&self, id: BackupId) -> Result<Vec<BackupId>> {
        self.conn()?
            .client
            .query(
                "SELECT id FROM backups WHERE parent_id = $1 ORDER BY created_at",
                &[&id.to_string()],
            )?
            .iter()
            .map(|r| id_of(&r.get::<_, String>(0)))
            .collect()
    }

    fn backup_problems(&self, id: BackupId) -> Result<Vec<Problem>> {
        Ok(self
            .conn()?
            .client
            .query(
                "SELECT path, problem FROM backup_problems WHERE backup_id = $1 ORDER BY seq",
                &[&id.to_string()],
            )?
            .iter()
            .map(|r| Problem {
                path: r.get(0),
                problem: r.get(1),
            })
            .collect())
    }

    fn backup_root_dev(&self, id: BackupId) -> Result<Option<u64>> {
        let row = self.conn()?.client.query_opt(
            "SELECT dev FROM backup_roots WHERE backup_id = $1",
            &[&id.to_string()],
        )?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }
}
