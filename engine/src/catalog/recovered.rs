//! Records recovered from the repository (a catalog rebuild, an imported
//! backup record): whole rows written at once, not moved through statuses.

use super::Catalog;
use crate::error::{Error, Result};

impl Catalog {
    /// For a catalog being built that nobody uses until it is renamed into
    /// place: commits are not synced (the file is synced once, at the end),
    /// and the page cache is larger (a fixed 64 MiB), so a million-chunk
    /// index does not thrash.
    /// The secondary indexes are dropped meanwhile and made again at the
    /// end, in one sorted pass each rather than a million random inserts.
    pub fn bulk_load(&self) -> Result<()> {
        self.conn()?.pragma_update(None, "synchronous", "OFF")?;
        self.conn()?.pragma_update(None, "cache_size", -65536)?;
        self.conn()?.execute_batch(
            "DROP INDEX IF EXISTS chunks_by_pack; DROP INDEX IF EXISTS layer_chunks_by_chunk;",
        )?;
        Ok(())
    }

    /// Ends a bulk load: everything moves from the write-ahead log into the
    /// database file, which is then all there is to rename (its next open
    /// turns WAL on again).
    pub fn finish_bulk_load(self) -> Result<()> {
        // As the first migration makes them.
        self.conn()?.execute_batch(
            "CREATE INDEX chunks_by_pack ON chunks(pack_id);
             CREATE INDEX layer_chunks_by_chunk ON layer_chunks(chunk_id);",
        )?;
        let mode: String =
            self.conn()?
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
        let n: i64 = self.conn()?.query_row(
            "SELECT (SELECT COUNT(*) FROM shares) + (SELECT COUNT(*) FROM backups)
                  + (SELECT COUNT(*) FROM packs)",
            [],
            |r| r.get(0),
        )?;
        Ok(n == 0)
    }
}
