//! Where each backup found its share's root (the device): an incremental
//! refuses a root that moved to another device, as an unmounted share does.

use rusqlite::OptionalExtension;
use strata_format::BackupId;

use super::Catalog;
use crate::error::Result;

impl Catalog {
    /// The device of the share's root when `backup` read it, if recorded.
    pub fn backup_root_dev(&self, backup: BackupId) -> Result<Option<u64>> {
        let dev: Option<i64> = self
            .conn()?
            .query_row(
                "SELECT dev FROM backup_roots WHERE backup_id = ?1",
                [backup.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(dev.map(|d| d as u64))
    }
}
