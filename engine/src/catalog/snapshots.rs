//! Share snapshots: point-in-time trees a backup can read instead of the
//! live share, and their statuses.

use rusqlite::{params, OptionalExtension, Row, Transaction};
use strata_format::{ShareId, SnapshotId};

use super::{write_tx, Catalog};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{Snapshot, SnapshotKind, SnapshotStatus, SnapshotStore};

const COLUMNS: &str = "id, project, share_id, name, description, status, path, kind, \
    created_at, updated_at, fail_reason";

type Raw = (String, String, String, String, Snapshot);

fn from_row(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(2)?,
        r.get(5)?,
        r.get(7)?,
        Snapshot {
            id: SnapshotId([0; 16]),
            project: r.get(1)?,
            share_id: ShareId([0; 16]),
            name: r.get(3)?,
            description: r.get(4)?,
            status: SnapshotStatus::Available,
            path: r.get(6)?,
            kind: SnapshotKind::Registered,
            created_at: r.get(8)?,
            updated_at: r.get(9)?,
            fail_reason: r.get(10)?,
        },
    ))
}

fn finish(raw: Raw) -> Result<Snapshot> {
    let (id, share, status, kind, mut s) = raw;
    let bad = |what: &str, v: &str| Error::Bug(format!("catalog holds a malformed {what} {v:?}"));
    s.id = id.parse().map_err(|_| bad("snapshot id", &id))?;
    s.share_id = share.parse().map_err(|_| bad("share id", &share))?;
    s.status = SnapshotStatus::parse(&status)?;
    s.kind = SnapshotKind::parse(&kind)?;
    Ok(s)
}

fn not_found(name: &str) -> Error {
    Error::NotFound {
        kind: "snapshot",
        name: name.to_string(),
    }
}

/// The snapshot's status, if it exists.
pub(super) fn status_of(tx: &Transaction<'_>, id: SnapshotId) -> Result<Option<SnapshotStatus>> {
    let status: Option<String> = tx
        .query_row(
            "SELECT status FROM snapshots WHERE id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    status.as_deref().map(SnapshotStatus::parse).transpose()
}

/// The snapshot's status, which must be one of `from`.
fn expect(tx: &Transaction<'_>, id: SnapshotId, from: &[SnapshotStatus]) -> Result<SnapshotStatus> {
    let current = status_of(tx, id)?.ok_or_else(|| not_found(&id.to_string()))?;
    crate::store::expected("snapshot", &id, current, from, SnapshotStatus::as_str)
}

fn set_status(
    tx: &Transaction<'_>,
    id: SnapshotId,
    to: SnapshotStatus,
    reason: Option<&str>,
) -> Result<()> {
    tx.execute(
        "UPDATE snapshots SET status = ?1, fail_reason = ?2, updated_at = ?3 WHERE id = ?4",
        params![to.as_str(), reason, now_ns(), id.to_string()],
    )?;
    Ok(())
}

impl SnapshotStore for Catalog {
    fn insert_snapshot(&self, s: &Snapshot) -> Result<()> {
        self.conn()?.execute(
            &format!(
                "INSERT INTO snapshots ({COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            params![
                s.id.to_string(),
                s.project,
                s.share_id.to_string(),
                s.name,
                s.description,
                s.status.as_str(),
                s.path,
                s.kind.as_str(),
                s.created_at,
                s.updated_at,
                s.fail_reason
            ],
        )?;
        Ok(())
    }

    fn snapshot(&self, id: SnapshotId) -> Result<Snapshot> {
        let row = self
            .conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1"),
                [id.to_string()],
                from_row,
            )
            .optional()?;
        row.map(finish)
            .unwrap_or_else(|| Err(not_found(&id.to_string())))
    }

    fn find_snapshot(&self, project: &str, id_or_name: &str) -> Result<Snapshot> {
        let conn = self.conn()?;
        let by_id = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1 AND project = ?2"),
                [id_or_name, project],
                from_row,
            )
            .optional()?;
        if let Some(row) = by_id {
            return finish(row);
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM snapshots WHERE project = ?1 AND name = ?2"
        ))?;
        let found: Vec<Snapshot> = stmt
            .query_map([project, id_or_name], from_row)?
            .map(|r| finish(r?))
            .collect::<Result<_>>()?;
        crate::store::only_one(found, "snapshot", id_or_name)
    }

    fn list_snapshots(
        &self,
        project: Option<&str>,
        share: Option<ShareId>,
    ) -> Result<Vec<Snapshot>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM snapshots
             WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR share_id = ?2)
             ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(params![project, share.map(|s| s.to_string())], from_row)?;
        rows.map(|r| finish(r?)).collect()
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
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let before = expect(&tx, id, from)?;
        let reader: Option<String> = tx
            .query_row(
                "SELECT id FROM backups WHERE snapshot_id = ?1 AND status = 'creating' LIMIT 1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(backup) = reader {
            return Err(Error::Busy(format!(
                "snapshot {id} is being backed up (backup {backup})"
            )));
        }
        set_status(&tx, id, to, None)?;
        tx.commit()?;
        Ok(before)
    }

    fn remove_snapshot(&self, id: SnapshotId) -> Result<()> {
        self.conn()?
            .execute("DELETE FROM snapshots WHERE id = ?1", [id.to_string()])?;
        Ok(())
    }
}
