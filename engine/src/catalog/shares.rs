//! Shares: the directory trees strata backs up, and their service status.

use rusqlite::{params, OptionalExtension, Row};
use strata_format::ShareId;

use rusqlite::Transaction;

use super::{write_tx, Catalog};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{Share, ShareStatus, ShareStore};

const COLUMNS: &str =
    "id, project, name, path, size_gib, protocol, status, created_at, updated_at, \
    source_backup_id, fail_reason, adopted";

type RawShare = (String, String, Option<String>, Share);

fn from_row(r: &Row<'_>) -> rusqlite::Result<RawShare> {
    Ok((
        r.get(0)?,
        r.get(6)?,
        r.get(9)?,
        Share {
            id: ShareId([0; 16]),
            project: r.get(1)?,
            name: r.get(2)?,
            path: r.get(3)?,
            size_gib: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
            protocol: r.get(5)?,
            status: ShareStatus::Available,
            created_at: r.get(7)?,
            updated_at: r.get(8)?,
            source_backup_id: None,
            fail_reason: r.get(10)?,
            adopted: r.get(11)?,
        },
    ))
}

fn finish(row: RawShare) -> Result<Share> {
    let (id, status, source, mut share) = row;
    share.source_backup_id = source
        .map(|s| {
            s.parse()
                .map_err(|_| Error::Bug(format!("catalog holds a malformed backup id {s:?}")))
        })
        .transpose()?;
    share.id = id
        .parse()
        .map_err(|_| Error::Bug(format!("catalog holds a malformed share id {id:?}")))?;
    share.status = ShareStatus::parse(&status)?;
    Ok(share)
}

/// The share's status, which must be one of `from`.
fn expect(tx: &Transaction<'_>, id: ShareId, from: &[ShareStatus]) -> Result<ShareStatus> {
    let row: Option<(String, String)> = tx
        .query_row(
            "SELECT name, status FROM shares WHERE id = ?1",
            [id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((name, status)) = row else {
        return Err(Error::NotFound {
            kind: "share",
            name: id.to_string(),
        });
    };
    let current = ShareStatus::parse(&status)?;
    if !from.contains(&current) {
        return Err(Error::Busy(format!(
            "share {name} is {status}, not {}",
            crate::store::one_of(from, ShareStatus::as_str)
        )));
    }
    Ok(current)
}

fn set_status(tx: &Transaction<'_>, id: ShareId, to: ShareStatus) -> Result<()> {
    tx.execute(
        "UPDATE shares SET status = ?1, updated_at = ?2 WHERE id = ?3",
        params![to.as_str(), now_ns(), id.to_string()],
    )?;
    Ok(())
}

impl ShareStore for Catalog {
    fn insert_share(&self, share: &Share) -> Result<()> {
        let result = self.conn()?.execute(
            "INSERT INTO shares (id, project, name, path, size_gib, protocol, status, created_at,
                source_backup_id, fail_reason, adopted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                share.id.to_string(),
                share.project,
                share.name,
                share.path,
                share.size_gib.map(|v| v as i64),
                share.protocol,
                share.status.as_str(),
                share.created_at,
                share.source_backup_id.map(|b| b.to_string()),
                share.fail_reason,
                share.adopted
            ],
        );
        match result {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::InvalidArgument(format!(
                    "a share named {:?} already exists in project {:?}",
                    share.name, share.project
                )))
            }
            other => other.map(|_| ()).map_err(Error::from),
        }
    }

    fn list_shares(&self, project: Option<&str>) -> Result<Vec<Share>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM shares WHERE ?1 IS NULL OR project = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([project], from_row)?;
        rows.map(|r| finish(r?)).collect()
    }

    /// Finds a share of `project` by id or by name; other projects' shares
    /// are not found, as with Manila.
    fn find_share(&self, project: &str, id_or_name: &str) -> Result<Share> {
        let row = self
            .conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM shares WHERE id = ?1 AND project = ?2"),
                [id_or_name, project],
                from_row,
            )
            .optional()?;
        let row = match row {
            Some(row) => Some(row),
            None => self
                .conn()?
                .query_row(
                    &format!("SELECT {COLUMNS} FROM shares WHERE project = ?1 AND name = ?2"),
                    [project, id_or_name],
                    from_row,
                )
                .optional()?,
        };
        match row {
            Some(row) => finish(row),
            None => Err(Error::NotFound {
                kind: "share",
                name: id_or_name.to_string(),
            }),
        }
    }

    fn share(&self, id: ShareId) -> Result<Share> {
        let row = self
            .conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM shares WHERE id = ?1"),
                [id.to_string()],
                from_row,
            )
            .optional()?;
        row.map(finish).unwrap_or_else(|| {
            Err(Error::NotFound {
                kind: "share",
                name: id.to_string(),
            })
        })
    }

    /// Finds the share registered for a filesystem path, if any.
    fn share_by_path(&self, project: &str, path: &str) -> Result<Option<Share>> {
        let row = self
            .conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM shares WHERE project = ?1 AND path = ?2"),
                [project, path],
                from_row,
            )
            .optional()?;
        row.map(finish).transpose()
    }

    fn transition_share(
        &self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
    ) -> Result<ShareStatus> {
        self.write(|tx| {
            let before = expect(tx, id, from)?;
            set_status(tx, id, to)?;
            Ok(before)
        })
    }

    fn claim_share(
        &self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
        op: &str,
    ) -> Result<ShareStatus> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let before = expect(&tx, id, from)?;
        set_status(&tx, id, to)?;
        let recorded = tx.execute(
            "UPDATE operations SET share_status_before = ?1 WHERE id = ?2",
            params![before.as_str(), op],
        )?;
        if recorded != 1 {
            return Err(Error::Bug(format!("operation {op} is not recorded")));
        }
        tx.commit()?;
        Ok(before)
    }

    fn delete_share(&self, id: ShareId, from: &[ShareStatus]) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        expect(&tx, id, from)?;
        let backups: i64 = tx.query_row(
            "SELECT COUNT(*) FROM backups WHERE share_id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )?;
        if backups > 0 {
            return Err(Error::InvalidState(format!(
                "share {id} has {backups} backup(s); delete them first"
            )));
        }
        let snapshots: i64 = tx.query_row(
            "SELECT COUNT(*) FROM snapshots WHERE share_id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )?;
        if snapshots > 0 {
            return Err(Error::InvalidState(format!(
                "share {id} has {snapshots} snapshot(s); delete them first"
            )));
        }
        tx.execute("DELETE FROM shares WHERE id = ?1", [id.to_string()])?;
        tx.commit()?;
        Ok(())
    }

    /// Keeps (or clears) why the share's creation or last restore failed.
    fn set_share_fail_reason(&self, id: ShareId, reason: Option<&str>) -> Result<()> {
        self.conn()?.execute(
            "UPDATE shares SET fail_reason = ?1, updated_at = ?2 WHERE id = ?3",
            params![reason, now_ns(), id.to_string()],
        )?;
        Ok(())
    }

    fn confirm_share_path(&self, id: ShareId, path: &str, from: &[ShareStatus]) -> Result<()> {
        self.write(|tx| {
            expect(tx, id, from)?;
            tx.execute(
                "UPDATE shares SET path = ?1, adopted = 0, updated_at = ?2 WHERE id = ?3",
                params![path, now_ns(), id.to_string()],
            )?;
            Ok(())
        })
    }

    fn release_orphan_share(
        &self,
        id: ShareId,
        from: ShareStatus,
        to: ShareStatus,
        reason: &str,
    ) -> Result<bool> {
        self.write(|tx| {
            let held: i64 = tx.query_row(
                "SELECT COUNT(*) FROM operations WHERE share_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )?;
            if held > 0 || expect(tx, id, &[from]).is_err() {
                return Ok(false);
            }
            set_status(tx, id, to)?;
            tx.execute(
                "UPDATE shares SET fail_reason = ?1 WHERE id = ?2",
                params![reason, id.to_string()],
            )?;
            Ok(true)
        })
    }

    /// Sets a share's status whatever it is; returns the status it had.
    fn reset_share_status(&self, id: ShareId, to: ShareStatus) -> Result<ShareStatus> {
        self.write(|tx| {
            let before = expect(tx, id, &ShareStatus::ALL)?;
            set_status(tx, id, to)?;
            Ok(before)
        })
    }
}
