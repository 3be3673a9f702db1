//! The contract of [`ChunkIndex`], as a suite any implementation runs:
//! first location kept, moves, idempotent references, what is unplaced,
//! packs forgotten with their chunks, offset order, one consistent
//! snapshot for `reading`, and concurrent callers. Each implementation's
//! test runs [`run`] on a fresh, empty index.

use std::sync::Arc;

use strata_format::pack::{Compression, PackEntry};
use strata_format::{BackupId, ChunkId, PackId};

use super::ChunkIndex;
use crate::error::Result;

/// What broke the contract.
#[derive(Debug)]
pub struct Failure(pub String);

fn check(ok: bool, what: &str) -> std::result::Result<(), Failure> {
    match ok {
        true => Ok(()),
        false => Err(Failure(what.to_string())),
    }
}

fn io(r: Result<impl Sized>, what: &str) -> std::result::Result<(), Failure> {
    r.map(|_| ()).map_err(|e| Failure(format!("{what}: {e}")))
}

fn chunk(n: u8) -> ChunkId {
    ChunkId([n; 32])
}

fn pack(n: u8) -> PackId {
    PackId([n; 32])
}

fn entry(n: u8, offset: u64) -> PackEntry {
    PackEntry {
        id: chunk(n),
        offset,
        stored_len: 100 + u32::from(n),
        raw_len: 200 + u32::from(n),
        compression: Compression::Zstd,
    }
}

/// Runs the whole contract against `index`, which must be empty.
pub fn run(index: &dyn ChunkIndex) -> std::result::Result<(), Failure> {
    let fail = |what: &str| Failure(what.to_string());
    check(
        index.packs().map_err(|e| fail(&e.to_string()))?.is_empty(),
        "a fresh index is empty",
    )?;
    // Commit: a chunk already indexed keeps its first location.
    io(
        index.commit_pack(pack(1), 1000, &[entry(2, 300), entry(1, 10)]),
        "commit pack 1",
    )?;
    io(
        index.commit_pack(pack(2), 2000, &[entry(1, 50), entry(3, 60)]),
        "commit pack 2",
    )?;
    let at = index.locate(&chunk(1)).map_err(|e| fail(&e.to_string()))?;
    check(
        at.map(|l| l.pack) == Some(pack(1)),
        "commit_pack keeps a chunk's first location",
    )?;
    check(
        at.map(|l| l.entry) == Some(entry(1, 10)),
        "locate gives the trailer's entry",
    )?;
    check(
        index.contains(&chunk(3)).unwrap_or(false),
        "contains a committed chunk",
    )?;
    check(
        !index.contains(&chunk(9)).unwrap_or(true),
        "does not contain an unknown chunk",
    )?;
    let packs = index.packs().map_err(|e| fail(&e.to_string()))?;
    check(
        packs == vec![(pack(1), 1000), (pack(2), 2000)],
        "packs lists each with its size",
    )?;
    // Rows in offset order.
    let rows = index
        .pack_chunks(&pack(1))
        .map_err(|e| fail(&e.to_string()))?;
    check(
        rows == vec![entry(1, 10), entry(2, 300)],
        "pack_chunks in offset order",
    )?;
    // Move: the chunk points at the new pack, wherever it was.
    io(
        index.move_chunks(pack(2), 2000, &[entry(1, 50)]),
        "move chunks",
    )?;
    let at = index.locate(&chunk(1)).map_err(|e| fail(&e.to_string()))?;
    check(
        at.map(|l| l.pack) == Some(pack(2)),
        "move_chunks points a chunk at its new pack",
    )?;
    // References: idempotent; unplaced counts what no pack holds.
    let b = BackupId([7; 16]);
    io(
        index.add_refs(b, &[chunk(1), chunk(9), chunk(8)]),
        "add refs",
    )?;
    io(index.add_refs(b, &[chunk(9)]), "add refs again")?;
    let (n, first) = index.unplaced(b).map_err(|e| fail(&e.to_string()))?;
    check(
        n == 2 && first == Some(chunk(8)),
        "unplaced counts each missing chunk once, names the least",
    )?;
    io(index.drop_refs(b), "drop refs")?;
    io(index.drop_refs(b), "drop refs again")?;
    check(
        index.unplaced(b).map(|u| u.0).unwrap_or(1) == 0,
        "dropped references are gone",
    )?;
    // Reading: one snapshot serves many lookups.
    let mut seen = 0;
    io(
        index.reading(&mut |snap| {
            seen += usize::from(snap.contains(&chunk(2))?);
            seen += usize::from(snap.locate(&chunk(3))?.is_some());
            Ok(())
        }),
        "reading",
    )?;
    check(seen == 2, "reading sees the committed chunks")?;
    // Forget: the pack and every chunk it placed.
    io(index.forget_packs(&[pack(1)]), "forget pack 1")?;
    check(
        !index.contains(&chunk(2)).unwrap_or(true),
        "a forgotten pack's chunks are gone",
    )?;
    check(
        index.contains(&chunk(1)).unwrap_or(false),
        "a moved chunk stays with its new pack",
    )?;
    check(
        index.packs().map_err(|e| fail(&e.to_string()))? == vec![(pack(2), 2000)],
        "a forgotten pack is not listed",
    )?;
    io(index.forget_packs(&[]), "forget nothing")?;
    Ok(())
}

/// Concurrent callers: many threads commit packs at once; every chunk is
/// indexed at the end, each exactly where its one pack put it.
pub fn run_concurrent(index: Arc<dyn ChunkIndex>) -> std::result::Result<(), Failure> {
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let index = Arc::clone(&index);
            std::thread::spawn(move || -> Result<()> {
                for k in 0..16u8 {
                    let n = 100u8.wrapping_add(t.wrapping_mul(16)).wrapping_add(k);
                    index.commit_pack(pack(n), u64::from(n), &[entry(n, 0)])?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| Failure("a committing thread panicked".into()))?
            .map_err(|e| Failure(format!("concurrent commit: {e}")))?;
    }
    for t in 0..8u8 {
        for k in 0..16u8 {
            let n = 100u8.wrapping_add(t.wrapping_mul(16)).wrapping_add(k);
            let at = index
                .locate(&chunk(n))
                .map_err(|e| Failure(e.to_string()))?;
            check(
                at.map(|l| l.pack) == Some(pack(n)),
                "every concurrent commit is indexed",
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::MemoryIndex;
    use crate::Catalog;

    #[test]
    fn conformance_chunk_index_memory() {
        run(&MemoryIndex::default()).unwrap();
        run_concurrent(Arc::new(MemoryIndex::default())).unwrap();
    }

    #[test]
    fn conformance_chunk_index_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        run(&Catalog::open(&dir.path().join("a.db")).unwrap()).unwrap();
        run_concurrent(Arc::new(Catalog::open(&dir.path().join("b.db")).unwrap())).unwrap();
    }

    #[test]
    fn conformance_chunk_index_postgres() {
        let test = "conformance_chunk_index_postgres";
        let Some(a) = crate::pg::testing::fresh_database(test).unwrap() else {
            return;
        };
        run(&crate::pg::PgCatalog::open(&a).unwrap()).unwrap();
        let b = crate::pg::testing::fresh_database(test).unwrap().unwrap();
        run_concurrent(Arc::new(crate::pg::PgCatalog::open(&b).unwrap())).unwrap();
    }
}
