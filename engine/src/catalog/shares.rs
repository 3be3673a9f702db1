//! Shares: the directory trees strata backs up, and their service status.

use rusqlite::{params, OptionalExtension, Row};
use strata_format::ShareId;

use super::Catalog;
use crate::clock::now_ns;
use crate::error::{Error, Result};

/// Share status, as Manila names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareStatus {
    Available,
    BackupCreating,
    BackupRestoring,
    BackupRestoringError,
    InUse,
}

impl ShareStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShareStatus::Available => "available",
            ShareStatus::BackupCreating => "backup_creating",
            ShareStatus::BackupRestoring => "backup_restoring",
            ShareStatus::BackupRestoringError => "backup_restoring_error",
            ShareStatus::InUse => "in-use",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "available" => ShareStatus::Available,
            "backup_creating" => ShareStatus::BackupCreating,
            "backup_restoring" => ShareStatus::BackupRestoring,
            "backup_restoring_error" => ShareStatus::BackupRestoringError,
            "in-use" => ShareStatus::InUse,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown share status {other:?}"
                )))
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub id: ShareId,
    pub project: String,
    pub name: String,
    pub path: String,
    pub size_gib: Option<u64>,
    pub protocol: String,
    pub status: ShareStatus,
    pub created_at: i64,
    pub updated_at: Option<i64>,
}

const COLUMNS: &str = "id, project, name, path, size_gib, protocol, status, created_at, updated_at";

type RawShare = (String, String, Share);

fn from_row(r: &Row<'_>) -> rusqlite::Result<RawShare> {
    Ok((
        r.get(0)?,
        r.get(6)?,
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
        },
    ))
}

fn finish(row: RawShare) -> Result<Share> {
    let (id, status, mut share) = row;
    share.id = id
        .parse()
        .map_err(|_| Error::Bug(format!("catalog holds a malformed share id {id:?}")))?;
    share.status = ShareStatus::parse(&status)?;
    Ok(share)
}

impl Catalog {
    pub fn insert_share(&self, share: &Share) -> Result<()> {
        let result = self.conn.execute(
            "INSERT INTO shares (id, project, name, path, size_gib, protocol, status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                share.id.to_string(),
                share.project,
                share.name,
                share.path,
                share.size_gib.map(|v| v as i64),
                share.protocol,
                share.status.as_str(),
                share.created_at
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

    pub fn list_shares(&self, project: Option<&str>) -> Result<Vec<Share>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM shares WHERE ?1 IS NULL OR project = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([project], from_row)?;
        rows.map(|r| finish(r?)).collect()
    }

    /// Finds a share of `project` by id or by name; other projects' shares
    /// are not found, as with Manila.
    pub fn find_share(&self, project: &str, id_or_name: &str) -> Result<Share> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM shares WHERE id = ?1 AND project = ?2"),
                [id_or_name, project],
                from_row,
            )
            .optional()?;
        let row = match row {
            Some(row) => Some(row),
            None => self
                .conn
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

    pub fn share(&self, id: ShareId) -> Result<Share> {
        let row = self
            .conn
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
    pub fn share_by_path(&self, project: &str, path: &str) -> Result<Option<Share>> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM shares WHERE project = ?1 AND path = ?2"),
                [project, path],
                from_row,
            )
            .optional()?;
        row.map(finish).transpose()
    }

    /// Moves a share from `from` to `to` atomically; fails if it is not in `from`.
    pub fn transition_share(
        &self,
        id: ShareId,
        from: &[ShareStatus],
        to: ShareStatus,
    ) -> Result<()> {
        let share = self.share(id)?;
        if !from.contains(&share.status) {
            return Err(Error::Busy(format!(
                "share {} is {}, not {}",
                share.name,
                share.status.as_str(),
                from.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        let changed = self.conn.execute(
            "UPDATE shares SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status = ?4",
            params![to.as_str(), now_ns(), id.to_string(), share.status.as_str()],
        )?;
        if changed != 1 {
            return Err(Error::Busy(format!(
                "share {} changed status concurrently",
                share.name
            )));
        }
        Ok(())
    }

    pub fn delete_share(&self, id: ShareId) -> Result<()> {
        self.conn
            .execute("DELETE FROM shares WHERE id = ?1", [id.to_string()])?;
        Ok(())
    }
}

impl Catalog {
    /// Sets a share's status unconditionally (an administrator's reset, or
    /// marking it `in-use`); returns the status it had.
    pub fn reset_share_status(&self, id: ShareId, to: ShareStatus) -> Result<ShareStatus> {
        let before = self.share(id)?.status;
        self.conn.execute(
            "UPDATE shares SET status = ?1, updated_at = ?2 WHERE id = ?3",
            params![to.as_str(), now_ns(), id.to_string()],
        )?;
        Ok(before)
    }
}
