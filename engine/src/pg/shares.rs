//! Shares in the PostgreSQL catalog. A compare-and-set locks the share's
//! row (`FOR UPDATE`) for its transaction, so nodes changing one share at
//! once take turns, and each sees the other's status.

use postgres::{GenericClient, Row, Transaction};
use strata_format::ShareId;

use super::{id_of, PgCatalog};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::store::{Share, ShareStatus, ShareStore};

const COLUMNS: &str = "id, project, name, path, size_gib, protocol, status, created_at, \
    updated_at, source_backup_id, fail_reason, adopted";

fn from_row(r: &Row) -> Result<Share> {
    let source: Option<String> = r.get(9);
    Ok(Share {
        id: id_of(&r.get::<_, String>(0))?,
        project: r.get(1),
        name: r.get(2),
        path: r.get(3),
        size_gib: r.get::<_, Option<i64>>(4).map(|v| v.max(0) as u64),
        protocol: r.get(5),
        status: ShareStatus::parse(&r.get::<_, String>(6))?,
        created_at: r.get(7),
        updated_at: r.get(8),
        source_backup_id: source.as_deref().map(id_of).transpose()?,
        fail_reason: r.get(10),
        adopted: r.get(11),
    })
}

/// The share's status, which must be one of `from`; its row stays locked
/// until the transaction ends.
fn expect(tx: &mut Transaction<'_>, id: ShareId, from: &[ShareStatus]) -> Result<ShareStatus> {
    let row = tx.query_opt(
        "SELECT name, status FROM shares WHERE id = $1 FOR UPDATE",
        &[&id.to_string()],
    )?;
    let Some(row) = row else {
        return Err(Error::NotFound {
            kind: "share",
            name: id.to_string(),
        });
    };
    let (name, status): (String, String) = (row.get(0), row.get(1));
    let current = ShareStatus::parse(&status)?;
    if !from.contains(&current) {
        return Err(Error::Busy(format!(
            "share {name} is {status}, not {}",
            crate::store::one_of(from, ShareStatus::as_str)
        )));
    }
    Ok(current)
}

fn set_status(tx: &mut Transaction<'_>, id: ShareId, to: ShareStatus) -> Result<()> {
    tx.execute(
        "UPDATE shares SET status = $1, updated_at = $2 WHERE id = $3",
        &[&to.as_str(), &now_ns(), &id.to_string()],
    )?;
    Ok(())
}

fn one(client: &mut impl GenericClient, sql: &str, args: &[&str]) -> Result<Option<Share>> {
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
        .iter()
        .map(|a| a as &(dyn postgres::types::ToSql + Sync))
        .collect();
    client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM shares WHERE {sql}"),
            &params,
        )?
        .as_ref()
        .map(from_row)
        .transpose()
}

impl ShareStore for PgCatalog {
    fn insert_share(&self, share: &Share) -> Result<()> {
        let inserted = self.conn()?.client.execute(
            "INSERT INTO shares (id, project, name, path, size_gib, protocol, status, created_at,
                source_backup_id, fail_reason, adopted)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &share.id.to_string(),
                &share.project,
                &share.name,
                &share.path,
                &share.size_gib.map(|v| v as i64),
                &share.protocol,
                &share.status.as_str(),
                &share.created_at,
                &share.source_backup_id.map(|b| b.to_string()),
                &share.fail_reason,
                &share.adopted,
            ],
        );
        match inserted {
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
                Err(Error::InvalidArgument(format!(
                    "a share named {:?} already exists in project {:?}",
                    share.name, share.project
                )))
            }
            other => other.map(|_| ()).map_err(Error::from),
        }
    }

    fn share(&self, id: ShareId) -> Result<Share> {
        one(&mut self.conn()?.client, "id = $1", &[&id.to_string()])?.ok_or_else(|| {
            Error::NotFound {
                kind: "share",
                name: id.to_string(),
            }
        })
    }

    fn find_share(&self, project: &str, id_or_name: &str) -> Result<Share> {
        let mut conn = self.conn()?;
        let by_id = one(
            &mut conn.client,
            "id = $1 AND project = $2",
            &[id_or_name, project],
        )?;
        let found = match by_id {
            Some(share) => Some(share),
            None => one(
                &mut conn.client,
                "project = $1 AND name = $2",
                &[project, id_or_name],
            )?,
        };
        found.ok_or_else(|| Error::NotFound {
            kind: "share",
            name: id_or_name.to_string(),
        })
    }

    fn share_by_path(&self, project: &str, path: &str) -> Result<Option<Share>> {
        one(
            &mut self.conn()?.client,
            "project = $1 AND path = $2",
            &[project, path],
        )
    }

    fn list_shares(&self, project: Option<&str>) -> Result<Vec<Share>> {
        let rows = self.conn()?.client.query(
            &format!(
                "SELECT {COLUMNS} FROM shares WHERE $1::TEXT IS NULL OR project = $1
                 ORDER BY created_at, id"
            ),
            &[&project],
        )?;
        rows.iter().map(from_row).collect()
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
        self.write(|tx| {
            let before = expect(tx, id, from)?;
            set_status(tx, id, to)?;
            let recorded = tx.execute(
                "UPDATE operations SET share_status_before = $1 WHERE id = $2",
                &[&before.as_str(), &op],
            )?;
            if recorded != 1 {
                return Err(Error::Bug(format!("operation {op} is not recorded")));
            }
            Ok(before)
        })
    }

    fn set_share_fail_reason(&self, id: ShareId, reason: Option<&str>) -> Result<()> {
        self.conn()?.client.execute(
            "UPDATE shares SET fail_reason = $1, updated_at = $2 WHERE id = $3",
            &[&reason, &now_ns(), &id.to_string()],
        )?;
        Ok(())
    }

    fn reset_share_status(&self, id: ShareId, to: ShareStatus) -> Result<ShareStatus> {
        self.write(|tx| {
            let before = expect(tx, id, &ShareStatus::ALL)?;
            set_status(tx, id, to)?;
            Ok(before)
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
            // The share's row first: an operation that claims it waits.
            if expect(tx, id, &[from]).is_err() {
                return Ok(false);
            }
            let held: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM operations WHERE share_id = $1",
                    &[&id.to_string()],
                )?
                .get(0);
            if held > 0 {
                return Ok(false);
            }
            set_status(tx, id, to)?;
            tx.execute(
                "UPDATE shares SET fail_reason = $1 WHERE id = $2",
                &[&reason, &id.to_string()],
            )?;
            Ok(true)
        })
    }

    fn confirm_share_path(&self, id: ShareId, path: &str, from: &[ShareStatus]) -> Result<()> {
        self.write(|tx| {
            expect(tx, id, from)?;
            tx.execute(
                "UPDATE shares SET path = $1, adopted = FALSE, updated_at = $2 WHERE id = $3",
                &[&path, &now_ns(), &id.to_string()],
            )?;
            Ok(())
        })
    }

    fn delete_share(&self, id: ShareId, from: &[ShareStatus]) -> Result<()> {
        self.write(|tx| {
            expect(tx, id, from)?;
            let count = |tx: &mut Transaction<'_>, table: &str| -> Result<i64> {
                Ok(tx
                    .query_one(
                        &format!("SELECT COUNT(*) FROM {table} WHERE share_id = $1"),
                        &[&id.to_string()],
                    )?
                    .get(0))
            };
            let backups = count(tx, "backups")?;
            if backups > 0 {
                return Err(Error::InvalidState(format!(
                    "share {id} has {backups} backup(s); delete them first"
                )));
            }
            let snapshots = count(tx, "snapshots")?;
            if snapshots > 0 {
                return Err(Error::InvalidState(format!(
                    "share {id} has {snapshots} snapshot(s); delete them first"
                )));
            }
            tx.execute("DELETE FROM shares WHERE id = $1", &[&id.to_string()])?;
            Ok(())
        })
    }
}
