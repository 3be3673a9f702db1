//! Share snapshots in the PostgreSQL catalog.

use postgres::{Row, Transaction};
use strata_format::{ShareId, SnapshotId};

use super::{id_of, PgCatalog};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{Snapshot, SnapshotKind, SnapshotStatus, SnapshotStore};

const COLUMNS: &str = "id, project, share_id, name, description, status, path, kind, \
    created_at, updated_at, fail_reason";

fn from_row(r: &Row) -> Result<Snapshot> {
    Ok(Snapshot {
        id: id_of(&r.get::<_, String>(0))?,
        project: r.get(1),
        share_id: id_of(&r.get::<_, String>(2))?,
        name: r.get(3),
        description: r.get(4),
        status: SnapshotStatus::parse(&r.get::<_, String>(5))?,
        path: r.get(6),
        kind: SnapshotKind::parse(&r.get::<_, String>(7))?,
        created_at: r.get(8),
        updated_at: r.get(9),
        fail_reason: r.get(10),
    })
}

fn not_found(name: &str) -> Error {
    Error::NotFound {
        kind: "snapshot",
        name: name.to_string(),
    }
}

/// The snapshot's status, which must be one of `from`; its row stays
/// locked until the transaction ends.
fn expect(
    tx: &mut Transaction<'_>,
    id: SnapshotId,
    from: &[SnapshotStatus],
) -> Result<SnapshotStatus> {
    let row = tx.query_opt(
        "SELECT status FROM snapshots WHERE id = $1 FOR UPDATE",
        &[&id.to_string()],
    )?;
    let row = row.ok_or_else(|| not_found(&id.to_string()))?;
    let current = SnapshotStatus::parse(&row.get::<_, String>(0))?;
    crate::store::expected("snapshot", &id, current, from, SnapshotStatus::as_str)
}

fn set_status(
    tx: &mut Transaction<'_>,
    id: SnapshotId,
    to: SnapshotStatus,
    reason: Option<&str>,
) -> Result<()> {
    tx.execute(
        "UPDATE snapshots SET status = $1, fail_reason = $2, updated_at = $3 WHERE id = $4",
        &[&to.as_str(), &reason, &now_ns(), &id.to_string()],
    )?;
    Ok(())
}

impl SnapshotStore for PgCatalog {
    fn insert_snapshot(&self, s: &Snapshot) -> Result<()> {
        self.conn()?.client.execute(
            &format!(
                "INSERT INTO snapshots ({COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                &s.id.to_string(),
                &s.project,
                &s.share_id.to_string(),
                &s.name,
                &s.description,
                &s.status.as_str(),
                &s.path,
                &s.kind.as_str(),
                &s.created_at,
                &s.updated_at,
                &s.fail_reason,
            ],
        )?;
        Ok(())
    }

    fn snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let row = self.conn()?.client.query_opt(
            &format!("SELECT {COLUMNS} FROM snapshots WHERE id = $1"),
            &[&id.to_string()],
        )?;
        row.as_ref()
            .map(from_row)
            .unwrap_or_else(|| Err(not_found(&id.to_string())))
    }

    fn find_snapshot(&self, project: &str, id_or_name: &str) -> Result<Snapshot> {
        let mut conn = self.conn()?;
        let by_id = conn.client.query_opt(
            &format!("SELECT {COLUMNS} FROM snapshots WHERE id = $1 AND project = $2"),
            &[&id_or_name, &project],
        )?;
        if let Some(row) = by_id {
            return from_row(&row);
        }
        let found = conn
            .client
            .query(
                &format!("SELECT {COLUMNS} FROM snapshots WHERE project = $1 AND name = $2"),
                &[&project, &id_or_name],
            )?
            .iter()
            .map(from_row)
            .collect::<Result<Vec<_>>>()?;
        crate::store::only_one(found, "snapshot", id_or_name)
    }

    fn list_snapshots(
        &self,
        project: Option<&str>,
        share: Option<ShareId>,
    ) -> Result<Vec<Snapshot>> {
        self.conn()?
            .client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM snapshots
                     WHERE ($1::TEXT IS NULL OR project = $1) AND ($2::TEXT IS NULL OR share_id = $2)
                     ORDER BY created_at, id"
                ),
                &[&project, &share.map(|s| s.to_string())],
            )?
            .iter()
            .map(from_row)
            .collect()
    }

    fn transition_snapshot(
        &self,
        id: SnapshotId,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
        reason: Option<&str>,
    ) -> Result<SnapshotStatus> {
        self.write(|tx| {
            let before = expect(tx, id, from)?;
            set_status(tx, id, to, reason)?;
            Ok(before)
        })
    }

    fn transition_idle_snapshot(
        &self,
        id: SnapshotId,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
    ) -> Result<SnapshotStatus> {
        self.write(|tx| {
            let before = expect(tx, id, from)?;
            let reader = tx.query_opt(
                "SELECT id FROM backups WHERE snapshot_id = $1 AND status = 'creating' LIMIT 1",
                &[&id.to_string()],
            )?;
            if let Some(row) = reader {
                let backup: String = row.get(0);
                return Err(Error::Busy(format!(
                    "snapshot {id} is being backed up (backup {backup})"
                )));
            }
            set_status(tx, id, to, None)?;
            Ok(before)
        })
    }

    fn remove_snapshot(&self, id: SnapshotId) -> Result<()> {
        self.conn()?
            .client
            .execute("DELETE FROM snapshots WHERE id = $1", &[&id.to_string()])?;
        Ok(())
    }
}
