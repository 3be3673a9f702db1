//! The chunk index in PostgreSQL: one index for every node, so a chunk is
//! stored once whichever node meets it first (once its pack is
//! committed; see `index::ChunkIndex`). Lookups are prepared statements;
//! a pack's rows go in with one statement over arrays (`UNNEST`), not one
//! round trip per chunk.

use std::sync::Mutex;

use strata_format::pack::{Compression, PackEntry};
use strata_format::{BackupId, ChunkId, PackId};

use super::{Conn, PgCatalog, Snapshot};
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::index::{ChunkIndex, ChunkLocation};

const CONTAINS: &str = "SELECT 1 FROM chunks WHERE id = $1";
const LOCATE: &str = "SELECT pack_id, id, \"offset\", stored_len, raw_len, compression \
    FROM chunks WHERE id = $1";
const PACK_CHUNKS: &str = "SELECT pack_id, id, \"offset\", stored_len, raw_len, compression \
    FROM chunks WHERE pack_id = $1 ORDER BY \"offset\"";
const PACKS: &str = "SELECT id, size FROM packs ORDER BY id";
/// The chunks of one pack as arrays, in key order, with a conflict rule:
/// whether a chunk already placed keeps its place.
macro_rules! place {
    ($conflict:literal) => {
        concat!(
            "INSERT INTO chunks (id, pack_id, \"offset\", stored_len, raw_len, compression)
             SELECT c.id, $2, c.off, c.stored, c.raw, c.comp
             FROM UNNEST($1::BYTEA[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $6::SMALLINT[])
                 AS c(id, off, stored, raw, comp)
             ORDER BY c.id ",
            $conflict
        )
    };
}
const KEEP: &str = place!("ON CONFLICT (id) DO NOTHING");
const REPLACE: &str = place!(
    "ON CONFLICT (id) DO UPDATE SET pack_id = excluded.pack_id, \"offset\" = excluded.\"offset\",
     stored_len = excluded.stored_len, raw_len = excluded.raw_len,
     compression = excluded.compression"
);

fn malformed(what: &str) -> Error {
    Error::Corrupt {
        location: "the PostgreSQL catalog".into(),
        detail: format!("a malformed {what}"),
    }
}

fn entry(row: &postgres::Row) -> Result<(PackId, PackEntry)> {
    let pack: Vec<u8> = row.get(0);
    let id: Vec<u8> = row.get(1);
    let number = |i: usize| -> Result<i64> {
        let v: i64 = row.get(i);
        (v >= 0).then_some(v).ok_or_else(|| malformed("chunk row"))
    };
    let compression = match row.get::<_, i16>(5) {
        0 => Compression::None,
        1 => Compression::Zstd,
        _ => return Err(malformed("compression code")),
    };
    Ok((
        PackId::from_slice(&pack).ok_or_else(|| malformed("pack id"))?,
        PackEntry {
            id: ChunkId::from_slice(&id).ok_or_else(|| malformed("chunk id"))?,
            offset: number(2)? as u64,
            stored_len: u32::try_from(number(3)?).map_err(|_| malformed("chunk length"))?,
            raw_len: u32::try_from(number(4)?).map_err(|_| malformed("chunk length"))?,
            compression,
        },
    ))
}

fn contains(conn: &mut Conn, id: &ChunkId) -> Result<bool> {
    let stmt = conn.prepared(CONTAINS)?;
    Ok(conn.client.query_opt(&stmt, &[&&id.0[..]])?.is_some())
}

fn locate(conn: &mut Conn, id: &ChunkId) -> Result<Option<ChunkLocation>> {
    let stmt = conn.prepared(LOCATE)?;
    let Some(row) = conn.client.query_opt(&stmt, &[&&id.0[..]])? else {
        return Ok(None);
    };
    let (pack, entry) = entry(&row)?;
    Ok(Some(ChunkLocation { pack, entry }))
}

fn packs(conn: &mut Conn) -> Result<Vec<(PackId, u64)>> {
    let stmt = conn.prepared(PACKS)?;
    conn.client
        .query(&stmt, &[])?
        .iter()
        .map(|r| {
            let id: Vec<u8> = r.get(0);
            let size: i64 = r.get(1);
            Ok((
                PackId::from_slice(&id).ok_or_else(|| malformed("pack id"))?,
                size.max(0) as u64,
            ))
        })
        .collect()
}

fn pack_chunks(conn: &mut Conn, pack: &PackId) -> Result<Vec<PackEntry>> {
    let stmt = conn.prepared(PACK_CHUNKS)?;
    conn.client
        .query(&stmt, &[&&pack.0[..]])?
        .iter()
        .map(|r| entry(r).map(|(_, e)| e))
        .collect()
}

impl PgCatalog {
    /// Records `pack` and places its chunks, in one transaction: a chunk
    /// already placed keeps its place unless `replace`.
    fn place(&self, pack: PackId, size: u64, entries: &[PackEntry], replace: bool) -> Result<()> {
        let ids: Vec<&[u8]> = entries.iter().map(|e| &e.id.0[..]).collect();
        let offsets: Vec<i64> = entries.iter().map(|e| e.offset as i64).collect();
        let stored: Vec<i64> = entries.iter().map(|e| i64::from(e.stored_len)).collect();
        let raw: Vec<i64> = entries.iter().map(|e| i64::from(e.raw_len)).collect();
        let comp: Vec<i16> = entries.iter().map(|e| e.compression as i16).collect();
        let mut conn = self.conn()?;
        let sql = if replace { REPLACE } else { KEEP };
        let stmt = conn.prepared(sql)?;
        let mut tx = conn.client.transaction()?;
        tx.execute(
            "INSERT INTO packs (id, size, chunk_count, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
            &[
                &&pack.0[..],
                &(size as i64),
                &(entries.len() as i64),
                &now_ns(),
            ],
        )?;
        tx.execute(&stmt, &[&ids, &&pack.0[..], &offsets, &stored, &raw, &comp])?;
        tx.commit()?;
        Ok(())
    }
}

impl ChunkIndex for PgCatalog {
    fn contains(&self, id: &ChunkId) -> Result<bool> {
        contains(&mut *self.conn()?, id)
    }

    fn locate(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        locate(&mut *self.conn()?, id)
    }

    /// One connection in a read-only `REPEATABLE READ` transaction: every
    /// lookup of `f` sees one snapshot of the index.
    fn reading(&self, f: &mut dyn FnMut(&dyn ChunkIndex) -> Result<()>) -> Result<()> {
        let mut conn = self.conn()?;
        conn.client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        let out = {
            let snapshot = Snapshot {
                conn: Mutex::new(&mut conn),
            };
            f(&snapshot)
        };
        conn.client.batch_execute("ROLLBACK")?;
        out
    }

    fn commit_pack(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.place(pack, size, entries, false)
    }

    fn move_chunks(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.place(pack, size, entries, true)
    }

    fn add_refs(&self, backup: BackupId, chunks: &[ChunkId]) -> Result<()> {
        let mut ids: Vec<&[u8]> = chunks.iter().map(|c| &c.0[..]).collect();
        ids.sort_unstable();
        ids.dedup();
        self.conn()?.client.execute(
            "INSERT INTO layer_chunks (backup_id, chunk_id)
             SELECT $1, c FROM UNNEST($2::BYTEA[]) AS c ON CONFLICT DO NOTHING",
            &[&backup.to_string(), &ids],
        )?;
        Ok(())
    }

    fn drop_refs(&self, backup: BackupId) -> Result<()> {
        self.conn()?.client.execute(
            "DELETE FROM layer_chunks WHERE backup_id = $1",
            &[&backup.to_string()],
        )?;
        Ok(())
    }

    fn unplaced(&self, backup: BackupId) -> Result<(u64, Option<ChunkId>)> {
        let row = self.conn()?.client.query_one(
            "WITH missing AS (SELECT r.chunk_id FROM layer_chunks r WHERE r.backup_id = $1
                 AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = r.chunk_id))
             SELECT (SELECT COUNT(*) FROM missing),
                    (SELECT chunk_id FROM missing ORDER BY chunk_id LIMIT 1)",
            &[&backup.to_string()],
        )?;
        let n: i64 = row.get(0);
        let first: Option<Vec<u8>> = row.get(1);
        Ok((n.max(0) as u64, first.and_then(|f| ChunkId::from_slice(&f))))
    }

    fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        packs(&mut *self.conn()?)
    }

    fn pack_chunks(&self, pack: &PackId) -> Result<Vec<PackEntry>> {
        pack_chunks(&mut *self.conn()?, pack)
    }

    fn forget_packs(&self, packs: &[PackId]) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let ids: Vec<&[u8]> = packs.iter().map(|p| &p.0[..]).collect();
        self.write(|tx| {
            tx.execute("DELETE FROM chunks WHERE pack_id = ANY($1)", &[&ids])?;
            tx.execute("DELETE FROM packs WHERE id = ANY($1)", &[&ids])?;
            Ok(())
        })
    }
}

/// A read snapshot answers lookups; it writes nothing.
impl ChunkIndex for Snapshot<'_> {
    fn contains(&self, id: &ChunkId) -> Result<bool> {
        contains(&mut self.conn(), id)
    }

    fn locate(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        locate(&mut self.conn(), id)
    }

    fn reading(&self, f: &mut dyn FnMut(&dyn ChunkIndex) -> Result<()>) -> Result<()> {
        f(self)
    }

    fn commit_pack(&self, _: PackId, _: u64, _: &[PackEntry]) -> Result<()> {
        Err(read_only())
    }

    fn move_chunks(&self, _: PackId, _: u64, _: &[PackEntry]) -> Result<()> {
        Err(read_only())
    }

    fn add_refs(&self, _: BackupId, _: &[ChunkId]) -> Result<()> {
        Err(read_only())
    }

    fn drop_refs(&self, _: BackupId) -> Result<()> {
        Err(read_only())
    }

    fn unplaced(&self, _: BackupId) -> Result<(u64, Option<ChunkId>)> {
        Err(read_only())
    }

    fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        packs(&mut self.conn())
    }

    fn pack_chunks(&self, pack: &PackId) -> Result<Vec<PackEntry>> {
        pack_chunks(&mut self.conn(), pack)
    }

    fn forget_packs(&self, _: &[PackId]) -> Result<()> {
        Err(read_only())
    }
}

fn read_only() -> Error {
    Error::Bug("a write through a read snapshot of the chunk index".into())
}
