//! Per-project quotas: how many backups, and how many GiB of backups (each
//! backup's logical size, rounded up to whole GiB).

use rusqlite::{params, OptionalExtension};

use super::Catalog;
use crate::error::Result;
use crate::store::{Quota, QuotaStore, QuotaUsage};

/// Usage as a transaction sees it (every backup row counts, whatever its status).
pub(crate) fn usage(conn: &rusqlite::Connection, project: &str) -> Result<QuotaUsage> {
    let (n, gib): (i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(size_gib), 0) FROM backups WHERE project = ?1",
        [project],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(QuotaUsage {
        backups: n.max(0) as u64,
        backup_gigabytes: gib.max(0) as u64,
    })
}

impl QuotaStore for Catalog {
    /// The project's own limits (`None` where it has none of its own).
    fn quota(&self, project: &str) -> Result<Option<Quota>> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT backups, backup_gigabytes FROM quotas WHERE project = ?1",
                [project],
                |r| {
                    Ok(Quota {
                        backups: r.get::<_, Option<i64>>(0)?.map(|v| v.max(0) as u64),
                        backup_gigabytes: r.get::<_, Option<i64>>(1)?.map(|v| v.max(0) as u64),
                    })
                },
            )
            .optional()?)
    }

    fn set_quota(&self, project: &str, quota: &Quota) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO quotas (project, backups, backup_gigabytes) VALUES (?1, ?2, ?3)
             ON CONFLICT (project) DO UPDATE SET backups = excluded.backups,
                backup_gigabytes = excluded.backup_gigabytes",
            params![
                project,
                quota.backups.map(|v| v as i64),
                quota.backup_gigabytes.map(|v| v as i64)
            ],
        )?;
        Ok(())
    }

    fn quota_usage(&self, project: &str) -> Result<QuotaUsage> {
        let conn = self.conn()?;
        usage(&conn, project)
    }
}
