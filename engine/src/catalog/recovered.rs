//! Records recovered from the repository (a catalog rebuild, an imported
//! backup record): whole rows written at once, not moved through statuses.

use rusqlite::params;

use super::backups::insert_problems;
use super::{BackupRecord, Catalog, Problem};
use crate::error::{Error, Result};
use strata_format::{BackupId, ChunkId};

impl Catalog {
    /// Inserts a complete backup row, its report and its root device, in one
    /// transaction (durable when this returns). Refused if the id exists.
    pub fn insert_backup_record(
        &mut self,
        b: &BackupRecord,
        problems: &[Problem],
        root_dev: Option<u64>,
    ) -> Result<()> {
        let tx = self.write_tx()?;
        let exists: bool = tx
            .prepare("SELECT 1 FROM backups WHERE id = ?1")?
            .exists([b.id.to_string()])?;
        if exists {
            return Err(Error::InvalidArgument(format!(
                "backup {} is already in the catalog",
                b.id
            )));
        }
        tx.execute(
            "INSERT INTO backups (id, project, share_id, name, description, status, progress,
                restore_progress, size_gib, created_at, updated_at, host, availability_zone,
                backup_type, topic, is_incremental, parent_id, data_timestamp, fail_reason,
                file_count, dir_count, skipped_count, logical_bytes, new_bytes, stored_bytes,
                duration_ms, read_bytes, changed_count, deleted_count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)",
            params![
                b.id.to_string(),
                b.project,
                b.share_id.to_string(),
                b.name,
                b.description,
                b.status.as_str(),
                b.progress,
                b.restore_progress,
                b.size_gib as i64,
                b.created_at,
                b.updated_at,
                b.host,
                b.availability_zone,
                b.backup_type,
                b.topic,
                b.is_incremental,
                b.parent_id.map(|p| p.to_string()),
                b.data_timestamp,
                b.fail_reason,
                b.file_count as i64,
                b.dir_count as i64,
                b.skipped_count as i64,
                b.logical_bytes as i64,
                b.new_bytes as i64,
                b.stored_bytes as i64,
                b.duration_ms as i64,
                b.read_bytes as i64,
                b.changed_count as i64,
                b.deleted_count as i64
            ],
        )?;
        insert_problems(&tx, b.id, problems)?;
        if let Some(dev) = root_dev {
            tx.execute(
                "INSERT OR REPLACE INTO backup_roots (backup_id, dev) VALUES (?1, ?2)",
                params![b.id.to_string(), dev as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Chunks `backup` references that the index cannot place: how many,
    /// and one of them.
    pub fn unplaced_chunks(&self, backup: BackupId) -> Result<(u64, Option<ChunkId>)> {
        let (n, first): (i64, Option<Vec<u8>>) = self.conn.query_row(
            "SELECT COUNT(*), MIN(r.chunk_id) FROM layer_chunks r
             WHERE r.backup_id = ?1 AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = r.chunk_id)",
            [backup.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n as u64, first.and_then(|f| ChunkId::from_slice(&f))))
    }

    /// For a catalog being built that nobody uses until it is renamed into
    /// place: commits are not synced (the file is synced once, at the end),
    /// and the page cache is larger (a fixed 64 MiB), so a million-chunk
    /// index does not thrash.
    /// The secondary indexes are dropped meanwhile and made again at the
    /// end, in one sorted pass each rather than a million random inserts.
    pub fn bulk_load(&self) -> Result<()> {
        self.conn.pragma_update(None, "synchronous", "OFF")?;
        self.conn.pragma_update(None, "cache_size", -65536)?;
        self.conn.execute_batch(
            "DROP INDEX IF EXISTS chunks_by_pack; DROP INDEX IF EXISTS layer_chunks_by_chunk;",
        )?;
        Ok(())
    }

    /// Ends a bulk load: everything moves from the write-ahead log into the
    /// database file, which is then all there is to rename (its next open
    /// turns WAL on again).
    pub fn finish_bulk_load(self) -> Result<()> {
        // As the first migration makes them.
        self.conn.execute_batch(
            "CREATE INDEX chunks_by_pack ON chunks(pack_id);
             CREATE INDEX layer_chunks_by_chunk ON layer_chunks(chunk_id);",
        )?;
        let mode: String =
            self.conn
                .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(Error::Bug(format!(
                "the rebuilt catalog stayed in journal mode {mode}"
            )));
        }
        Ok(())
    }

    /// Whether the catalog records any share, backup or pack.
    pub fn is_empty(&self) -> Result<bool> {
        let n: i64 = self.conn.query_row(
            "SELECT (SELECT COUNT(*) FROM shares) + (SELECT COUNT(*) FROM backups)
                  + (SELECT COUNT(*) FROM packs)",
            [],
            |r| r.get(0),
        )?;
        Ok(n == 0)
    }
}
