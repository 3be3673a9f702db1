//! Running operations in the PostgreSQL catalog, with heartbeats stamped
//! on the database server's clock (from the first, whatever the
//! inserting node's clock says): every node's cleanup then judges an
//! operation by one clock ([`OperationStore::store_clock`]).

use strata_format::BackupId;

use super::PgCatalog;
use crate::error::{Error, Result};
use crate::store::{OpKind, Operation, OperationStore};

const COLUMNS: &str = "id, kind, backup_id, share_id, share_status_before, pid, process_start, \
    host, boot_id, started_at, heartbeat_at";

/// The server's clock, in nanoseconds since the epoch.
const NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000)::BIGINT";

fn parse_opt<T: std::str::FromStr>(s: Option<String>) -> Result<Option<T>> {
    s.map(|s| {
        s.parse().map_err(|_| Error::Corrupt {
            location: "the PostgreSQL catalog".into(),
            detail: format!("a malformed id {s:?}"),
        })
    })
    .transpose()
}

impl OperationStore for PgCatalog {
    fn insert_operation(&self, op: &Operation) -> Result<()> {
        self.conn()?.client.execute(
            &format!(
                "INSERT INTO operations ({COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {NOW})"
            ),
            &[
                &op.id,
                &op.kind.as_str(),
                &op.backup_id.map(|b| b.to_string()),
                &op.share_id.map(|s| s.to_string()),
                &op.share_status_before,
                &i64::from(op.pid),
                &(op.process_start.min(i64::MAX as u64) as i64),
                &op.host,
                &op.boot_id,
                &op.started_at,
            ],
        )?;
        Ok(())
    }

    fn heartbeat(&self, id: &str) -> Result<()> {
        self.conn()?.client.execute(
            &format!(
                "UPDATE operations SET heartbeat_at = GREATEST(heartbeat_at + 1, {NOW})
                 WHERE id = $1"
            ),
            &[&id],
        )?;
        Ok(())
    }

    fn remove_operation(&self, id: &str) -> Result<()> {
        self.conn()?
            .client
            .execute("DELETE FROM operations WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn operations(&self) -> Result<Vec<Operation>> {
        let rows = self.conn()?.client.query(
            &format!("SELECT {COLUMNS} FROM operations ORDER BY started_at"),
            &[],
        )?;
        rows.iter()
            .map(|r| {
                Ok(Operation {
                    id: r.get(0),
                    kind: OpKind::parse(&r.get::<_, String>(1))?,
                    backup_id: parse_opt(r.get(2))?,
                    share_id: parse_opt(r.get(3))?,
                    share_status_before: r.get(4),
                    pid: r.get::<_, i64>(5).clamp(0, i64::from(u32::MAX)) as u32,
                    process_start: r.get::<_, i64>(6).max(0) as u64,
                    host: r.get(7),
                    boot_id: r.get(8),
                    started_at: r.get(9),
                    heartbeat_at: r.get(10),
                })
            })
            .collect()
    }

    fn store_clock(&self) -> Result<Option<i64>> {
        let row = self
            .conn()?
            .client
            .query_one(&format!("SELECT {NOW}"), &[])?;
        Ok(Some(row.get(0)))
    }

    fn operation_on(&self, backup: BackupId) -> Result<Option<String>> {
        let row = self.conn()?.client.query_opt(
            "SELECT id FROM operations WHERE backup_id = $1",
            &[&backup.to_string()],
        )?;
        Ok(row.map(|r| r.get(0)))
    }
}
