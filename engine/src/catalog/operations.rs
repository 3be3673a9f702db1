//! Running operations: one row per backup, restore or delete in progress,
//! with the process that runs it and its heartbeat, so another process can
//! tell a running operation from one whose process died.

use rusqlite::{params, OptionalExtension};
use strata_format::BackupId;

use super::Catalog;
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{OpKind, Operation, OperationStore};

const COLUMNS: &str = "id, kind, backup_id, share_id, share_status_before, pid, process_start, \
    host, boot_id, started_at, heartbeat_at";

fn parse_opt<T: std::str::FromStr>(s: Option<String>) -> Result<Option<T>> {
    s.map(|s| {
        s.parse()
            .map_err(|_| Error::Bug(format!("catalog holds a malformed id {s:?}")))
    })
    .transpose()
}

impl OperationStore for Catalog {
    fn insert_operation(&self, op: &Operation) -> Result<()> {
        self.conn()?.execute(
            &format!("INSERT INTO operations ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
            params![
                op.id,
                op.kind.as_str(),
                op.backup_id.map(|b| b.to_string()),
                op.share_id.map(|s| s.to_string()),
                op.share_status_before,
                op.pid,
                op.process_start as i64,
                op.host,
                op.boot_id,
                op.started_at,
                op.heartbeat_at
            ],
        )?;
        Ok(())
    }

    fn heartbeat(&self, id: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE operations SET heartbeat_at = MAX(heartbeat_at + 1, ?1) WHERE id = ?2",
            params![now_ns(), id],
        )?;
        Ok(())
    }

    fn remove_operation(&self, id: &str) -> Result<()> {
        self.conn()?
            .execute("DELETE FROM operations WHERE id = ?1", [id])?;
        Ok(())
    }

    fn operations(&self) -> Result<Vec<Operation>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM operations ORDER BY started_at"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, i64>(10)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, backup, share, before, pid, start, host, boot, started, beat) = row?;
            out.push(Operation {
                id,
                kind: OpKind::parse(&kind)?,
                backup_id: parse_opt(backup)?,
                share_id: parse_opt(share)?,
                share_status_before: before,
                pid: pid as u32,
                process_start: start as u64,
                host,
                boot_id: boot,
                started_at: started,
                heartbeat_at: beat,
            });
        }
        Ok(out)
    }

    /// The operation running on `backup`, if any.
    fn operation_on(&self, backup: BackupId) -> Result<Option<String>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT id FROM operations WHERE backup_id = ?1",
                [backup.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }
}
