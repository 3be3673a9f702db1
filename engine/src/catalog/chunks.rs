//! The chunk index (chunk id → pack, offset, lengths), the pack list, and the
//! backup → chunk references that decide when a pack may be removed.
//!
//! Everything here can be rebuilt from pack trailers and layers.

use rusqlite::{params, OptionalExtension};
use strata_format::pack::{Compression, PackEntry};
use strata_format::{BackupId, ChunkId, PackId};

use super::Catalog;
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::index::{ChunkIndex, ChunkLocation};

fn compression_from(code: i64) -> Result<Compression> {
    match code {
        0 => Ok(Compression::None),
        1 => Ok(Compression::Zstd),
        other => Err(Error::Bug(format!(
            "catalog holds compression code {other}"
        ))),
    }
}

/// One row of `chunks` as stored (selected as pack_id, id, offset,
/// stored_len, raw_len, compression).
struct Row {
    id: Vec<u8>,
    offset: i64,
    stored_len: i64,
    raw_len: i64,
    compression: i64,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Vec<u8>, Row)> {
        Ok((
            r.get(0)?,
            Row {
                id: r.get(1)?,
                offset: r.get(2)?,
                stored_len: r.get(3)?,
                raw_len: r.get(4)?,
                compression: r.get(5)?,
            },
        ))
    }

    fn entry(self) -> Result<PackEntry> {
        Ok(PackEntry {
            id: ChunkId::from_slice(&self.id)
                .ok_or_else(|| Error::Bug("catalog holds a malformed chunk id".into()))?,
            offset: self.offset as u64,
            stored_len: self.stored_len as u32,
            raw_len: self.raw_len as u32,
            compression: compression_from(self.compression)?,
        })
    }
}

impl Catalog {
    fn place(&self, pack: PackId, size: u64, entries: &[PackEntry], insert: &str) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = super::write_tx(&mut conn)?;
        tx.execute(
            "INSERT OR IGNORE INTO packs (id, size, chunk_count, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![&pack.0[..], size as i64, entries.len() as i64, now_ns()],
        )?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "{insert} INTO chunks (id, pack_id, offset, stored_len, raw_len, compression)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?;
            // In key order: each page of the index is then visited once,
            // not once per random id.
            let mut sorted: Vec<&PackEntry> = entries.iter().collect();
            sorted.sort_unstable_by_key(|e| e.id.0);
            for e in sorted {
                stmt.execute(params![
                    &e.id.0[..],
                    &pack.0[..],
                    e.offset as i64,
                    i64::from(e.stored_len),
                    i64::from(e.raw_len),
                    e.compression as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

impl ChunkIndex for Catalog {
    /// True when the index knows `id`.
    fn contains(&self, id: &ChunkId) -> Result<bool> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached("SELECT 1 FROM chunks WHERE id = ?1")?;
        Ok(stmt.exists([&id.0[..]])?)
    }

    fn locate(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT pack_id, id, offset, stored_len, raw_len, compression FROM chunks WHERE id = ?1",
        )?;
        let Some((pack, row)) = stmt.query_row([&id.0[..]], Row::read).optional()? else {
            return Ok(None);
        };
        let pack = PackId::from_slice(&pack)
            .ok_or_else(|| Error::Bug("catalog holds a malformed pack id".into()))?;
        Ok(Some(ChunkLocation {
            pack,
            entry: row.entry()?,
        }))
    }

    fn reading(&self, f: &mut dyn FnMut(&dyn ChunkIndex) -> Result<()>) -> Result<()> {
        Catalog::reading(self, |c| f(c))
    }

    /// Records a pack that is already durable in the repository, and its chunks.
    /// A chunk the index already knows keeps its first location.
    fn commit_pack(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.place(pack, size, entries, "INSERT OR IGNORE")
    }

    /// Records a pack and points its chunks at it, wherever they were.
    fn move_chunks(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.place(pack, size, entries, "INSERT OR REPLACE")
    }

    fn drop_refs(&self, backup: BackupId) -> Result<()> {
        self.conn()?.execute(
            "DELETE FROM layer_chunks WHERE backup_id = ?1",
            [backup.to_string()],
        )?;
        Ok(())
    }

    /// Records that `backup`'s layer references `chunks`.
    fn add_refs(&self, backup: BackupId, chunks: &[ChunkId]) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = super::write_tx(&mut conn)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO layer_chunks (backup_id, chunk_id) VALUES (?1, ?2)",
            )?;
            let backup = backup.to_string();
            let mut sorted: Vec<&ChunkId> = chunks.iter().collect();
            sorted.sort_unstable_by_key(|c| c.0);
            for c in sorted {
                stmt.execute(params![backup, &c.0[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Chunks `backup` references that the index cannot place: how many,
    /// and one of them.
    fn unplaced(&self, backup: BackupId) -> Result<(u64, Option<ChunkId>)> {
        let (n, first): (i64, Option<Vec<u8>>) = self.conn()?.query_row(
            "SELECT COUNT(*), MIN(r.chunk_id) FROM layer_chunks r
             WHERE r.backup_id = ?1 AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = r.chunk_id)",
            [backup.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((n as u64, first.and_then(|f| ChunkId::from_slice(&f))))
    }

    /// Every pack the index knows, with its size.
    fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT id, size FROM packs ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, size) = row?;
            let id = PackId::from_slice(&id)
                .ok_or_else(|| Error::Bug("catalog holds a malformed pack id".into()))?;
            out.push((id, size as u64));
        }
        Ok(out)
    }

    /// The index rows that place chunks in `pack`, in offset order.
    fn pack_chunks(&self, pack: &PackId) -> Result<Vec<PackEntry>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT pack_id, id, offset, stored_len, raw_len, compression FROM chunks
             WHERE pack_id = ?1 ORDER BY offset",
        )?;
        let rows = stmt.query_map([&pack.0[..]], Row::read)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row?.1.entry()?);
        }
        Ok(out)
    }

    /// Forgets `packs` and their chunks (their files are gone from the
    /// repository). One transaction: durable when this returns.
    fn forget_packs(&self, packs: &[PackId]) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn()?;
        let tx = super::write_tx(&mut conn)?;
        {
            let mut drop_chunks = tx.prepare("DELETE FROM chunks WHERE pack_id = ?1")?;
            let mut drop_pack = tx.prepare("DELETE FROM packs WHERE id = ?1")?;
            for pack in packs {
                drop_chunks.execute([&pack.0[..]])?;
                drop_pack.execute([&pack.0[..]])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
