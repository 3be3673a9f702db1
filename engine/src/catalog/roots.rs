//! Where each backup found its share's root (the device): an incremental
//! refuses a root that moved to another device, as an unmounted share does.

use rusqlite::{params, OptionalExtension};
use strata_format::BackupId;

use super::Catalog;
use crate::error::Result;

impl Catalog {
    /// Records the device of the share's root when `backup` read it.
    pub fn set_backup_root_dev(&self, backup: BackupId, dev: u64) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO backup_roots (backup_id, dev) VALUES (?1, ?2)",
            params![backup.to_string(), dev as i64],
        )?;
        Ok(())
    }

    /// The device of the share's root when `backup` read it, if recorded.
    pub fn backup_root_dev(&self, backup: BackupId) -> Result<Option<u64>> {
        let dev: Option<i64> = self
            .conn
            .query_row(
                "SELECT dev FROM backup_roots WHERE backup_id = ?1",
                [backup.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(dev.map(|d| d as u64))
    }
}
