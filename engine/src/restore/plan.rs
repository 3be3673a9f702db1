//! Restore step 2: where every needed chunk is.
//!
//! Two kinds of unit, each file written by exactly one of them (no two
//! threads ever write into the same file):
//! - a **pack unit** holds the single-chunk files whose chunk is in that pack,
//!   sorted by offset, so the pack is read once, front to back;
//! - a **file unit** is one multi-chunk file, its chunks in file order (which
//!   is also their order in the packs that hold them), written in order a
//!   window at a time.

use std::collections::HashMap;

use strata_format::layer::EntryKind;
use strata_format::pack::{Compression, PackEntry};
use strata_format::{ChunkId, PackId};

use super::tree::Tree;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::index::ChunkLocation;

/// One chunk to fetch, and the single-chunk files made of it.
pub struct Placement {
    pub entry: PackEntry,
    /// Index of the first such file entry in the tree.
    first: usize,
    /// The others (seldom any: no allocation then).
    more: Vec<usize>,
}

impl Placement {
    fn new(entry: PackEntry, file: usize) -> Placement {
        Placement {
            entry,
            first: file,
            more: Vec::new(),
        }
    }

    /// Indexes of the file entries in the tree.
    pub fn files(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.first).chain(self.more.iter().copied())
    }

    fn file_count(&self) -> u64 {
        1 + self.more.len() as u64
    }
}

pub struct PackUnit {
    pub pack: PackId,
    pub placements: Vec<Placement>,
}

pub struct FileUnit {
    pub file: usize,
    pub chunks: Vec<ChunkLocation>,
}

/// The work of a restore, heaviest units first (the longest-running start
/// first, so the restore does not end on one of them running alone).
pub enum Unit {
    Pack(PackUnit),
    File(FileUnit),
}

impl Unit {
    /// Roughly the CPU time the unit takes, in units of one raw byte's:
    /// a zstd chunk costs about four times a raw one to restore
    /// (decompression against a hash and a copy), and each file has a fixed
    /// cost (create, write, metadata) worth about 32 KiB.
    fn weight(&self) -> u64 {
        fn cost(entry: &PackEntry) -> u64 {
            let raw = u64::from(entry.raw_len);
            match entry.compression {
                Compression::None => raw,
                Compression::Zstd => 4 * raw,
            }
        }
        const PER_FILE: u64 = 32 << 10;
        match self {
            Unit::Pack(p) => p
                .placements
                .iter()
                .map(|pl| (cost(&pl.entry) + PER_FILE) * pl.file_count())
                .sum(),
            Unit::File(f) => PER_FILE + f.chunks.iter().map(|c| cost(&c.entry)).sum::<u64>(),
        }
    }
}

/// Plans windows one after another. Its maps keep their capacity from one
/// window to the next: a restore's heap then holds the same few large
/// tables throughout, instead of growing and freeing new ones each window
/// (which left the allocator's heap fragmented, larger the more windows).
#[derive(Default)]
pub struct Planner {
    /// Where each chunk met in this window is.
    known: HashMap<ChunkId, ChunkLocation>,
    /// The single-chunk placements of each pack.
    packs: HashMap<PackId, Vec<Placement>>,
    /// Emptied placement lists, for the next window's packs.
    spare: Vec<Vec<Placement>>,
    /// Where a chunk's placement is in its pack's list.
    slot: HashMap<ChunkId, usize>,
}

impl Planner {
    /// The units that restore `tree`, located through one read snapshot of
    /// `index`.
    pub fn units(&mut self, tree: &Tree, index: &dyn ChunkIndex) -> Result<Vec<Unit>> {
        let mut units = Vec::new();
        index.reading(&mut |snapshot| {
            units = self.locate(tree, snapshot)?;
            Ok(())
        })?;
        Ok(units)
    }

    fn locate(&mut self, tree: &Tree, index: &dyn ChunkIndex) -> Result<Vec<Unit>> {
        self.known.clear();
        self.slot.clear();
        // Left over only by a window whose planning failed.
        for (_, mut stale) in self.packs.drain() {
            stale.clear();
            self.spare.push(stale);
        }
        let mut units = Vec::new();
        for (i, e) in tree.entries.iter().enumerate() {
            let EntryKind::File { chunks, .. } = &e.kind else {
                continue;
            };
            match chunks.as_slice() {
                [] => {}
                [only] => {
                    let loc = self.find(index, only.id, only.len, &e.path)?;
                    let spare = &mut self.spare;
                    let placements = self
                        .packs
                        .entry(loc.pack)
                        .or_insert_with(|| spare.pop().unwrap_or_default());
                    match self.slot.get(&only.id) {
                        Some(&at) => match placements.get_mut(at) {
                            Some(placement) => placement.more.push(i),
                            None => {
                                return Err(Error::Bug("a placement slot past its list".into()))
                            }
                        },
                        None => {
                            self.slot.insert(only.id, placements.len());
                            placements.push(Placement::new(loc.entry, i));
                        }
                    }
                }
                many => {
                    let chunks = many
                        .iter()
                        .map(|c| self.find(index, c.id, c.len, &e.path))
                        .collect::<Result<Vec<_>>>()?;
                    units.push(Unit::File(FileUnit { file: i, chunks }));
                }
            }
        }
        for (pack, mut placements) in self.packs.drain() {
            placements.sort_by_key(|p| p.entry.offset);
            units.extend(pieces(pack, &mut placements).into_iter().map(Unit::Pack));
            self.spare.push(placements);
        }
        units.sort_by_key(|u| std::cmp::Reverse(u.weight()));
        Ok(units)
    }

    fn find(
        &mut self,
        index: &dyn ChunkIndex,
        id: ChunkId,
        len: u32,
        path: &[u8],
    ) -> Result<ChunkLocation> {
        if let Some(found) = self.known.get(&id) {
            return Ok(*found);
        }
        let loc = locate(index, id, len, path)?;
        self.known.insert(id, loc);
        Ok(loc)
    }
}

/// Where the chunk `id` of the file at `path` is, which must be indexed
/// with the length the layer gives it (`len`).
pub(crate) fn locate(
    index: &dyn ChunkIndex,
    id: ChunkId,
    len: u32,
    path: &[u8],
) -> Result<ChunkLocation> {
    let loc = index.locate(&id)?.ok_or_else(|| Error::Corrupt {
        location: format!("chunk {id}"),
        detail: format!(
            "needed by {} but not in the chunk index",
            String::from_utf8_lossy(path)
        ),
    })?;
    if loc.entry.raw_len != len {
        return Err(Error::Corrupt {
            location: format!("chunk {id}"),
            detail: format!(
                "needed by {}: the layer says {len} bytes, the index says {}",
                String::from_utf8_lossy(path),
                loc.entry.raw_len
            ),
        });
    }
    Ok(loc)
}

/// A pack unit holds at most this many chunks, or this many raw bytes (at
/// least one chunk): a window whose files sit in a few packs still keeps
/// every restore thread busy, to its end (a window of 2,600 small files in
/// one pack is ten units, not three). Each piece reads its own part of the pack,
/// front to back, and each file is still written by exactly one unit.
const PIECE_CHUNKS: usize = 256;
const PIECE_BYTES: u64 = 8 << 20;

/// Cuts a pack's placements (sorted by offset) into pieces, each list
/// allocated at its final size; `placements` is left empty.
fn pieces(pack: PackId, placements: &mut Vec<Placement>) -> Vec<PackUnit> {
    let mut sizes = Vec::new();
    let (mut count, mut bytes) = (0usize, 0u64);
    for placement in placements.iter() {
        let raw = u64::from(placement.entry.raw_len);
        if count > 0 && (count >= PIECE_CHUNKS || bytes + raw > PIECE_BYTES) {
            sizes.push(count);
            (count, bytes) = (0, 0);
        }
        count += 1;
        bytes += raw;
    }
    if count > 0 {
        sizes.push(count);
    }
    let mut all = placements.drain(..);
    sizes
        .into_iter()
        .map(|n| PackUnit {
            pack,
            placements: all.by_ref().take(n).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn placement(i: usize, raw_len: u32) -> Placement {
        let entry = PackEntry {
            id: ChunkId::of(&i.to_le_bytes()),
            offset: i as u64,
            stored_len: raw_len,
            raw_len,
            compression: Compression::None,
        };
        Placement::new(entry, i)
    }

    proptest! {
        /// Pieces keep every placement once, in order, within the bounds.
        #[test]
        fn pieces_partition_a_pack_unit_in_order(
            lens in proptest::collection::vec(1u32..(6 << 20), 0..3000)
        ) {
            let mut placements = lens.iter().enumerate().map(|(i, &l)| placement(i, l)).collect();
            let pieces = pieces(PackId([7; 32]), &mut placements);
            prop_assert!(placements.is_empty());
            let mut seen = Vec::new();
            for piece in &pieces {
                prop_assert!(!piece.placements.is_empty());
                prop_assert!(piece.placements.len() <= PIECE_CHUNKS);
                let bytes: u64 = piece.placements.iter().map(|p| u64::from(p.entry.raw_len)).sum();
                prop_assert!(bytes <= PIECE_BYTES || piece.placements.len() == 1);
                seen.extend(piece.placements.iter().flat_map(|p| p.files()));
            }
            prop_assert_eq!(seen, (0..lens.len()).collect::<Vec<_>>());
        }

        /// One planner reused over a restore's windows plans each window
        /// exactly as a fresh one does, whatever the windows before it.
        #[test]
        fn a_reused_planner_plans_each_window_as_a_fresh_one(
            windows in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(0usize..40, 0..4), 0..60),
                1..5,
            )
        ) {
            let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let catalog = crate::Catalog::open(&dir.path().join("catalog.db"))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            // Forty chunks over four packs.
            for p in 0..4u8 {
                let entries: Vec<PackEntry> = (0..10).map(|k| chunk(usize::from(p) * 10 + k).entry).collect();
                catalog.commit_pack(PackId([p; 32]), 1 << 20, &entries)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            let mut reused = Planner::default();
            for files in &windows {
                let tree = window(files);
                let again = reused.units(&tree, &catalog).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let fresh = Planner::default().units(&tree, &catalog)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(summary(&again), summary(&fresh));
                // Every file with chunks is written by exactly one unit.
                let mut written: Vec<usize> = again.iter().flat_map(|u| match u {
                    Unit::Pack(p) => p.placements.iter().flat_map(|pl| pl.files()).collect::<Vec<_>>(),
                    Unit::File(f) => vec![f.file],
                }).collect();
                written.sort_unstable();
                let expected: Vec<usize> = (0..files.len()).filter(|&i| !files[i].is_empty()).collect();
                prop_assert_eq!(written, expected);
            }
        }
    }

    /// Chunk `k` of the test packs: pack `k / 10`, ten chunks apiece.
    fn chunk(k: usize) -> ChunkLocation {
        ChunkLocation {
            pack: PackId([(k / 10) as u8; 32]),
            entry: PackEntry {
                id: ChunkId::of(&k.to_le_bytes()),
                offset: (k % 10) as u64 * 100,
                stored_len: 100,
                raw_len: 100 + k as u32,
                compression: Compression::None,
            },
        }
    }

    /// A window of files, each made of the given test chunks.
    fn window(files: &[Vec<usize>]) -> Tree {
        let entries = files
            .iter()
            .enumerate()
            .map(|(i, chunks)| strata_format::layer::Entry {
                path: format!("f{i}").into_bytes(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: i as u64,
                xattrs: Vec::new(),
                kind: EntryKind::File {
                    size: chunks.iter().map(|&k| 100 + k as u64).sum(),
                    chunks: chunks
                        .iter()
                        .map(|&k| strata_format::layer::ChunkRef {
                            id: chunk(k).entry.id,
                            len: chunk(k).entry.raw_len,
                        })
                        .collect(),
                    hash: strata_format::FileHash([0; 32]),
                },
            })
            .collect();
        Tree { entries }
    }

    /// A unit's pack (empty for a file unit), and its chunks' offsets with
    /// the files each is written to.
    type Summary = (Vec<u8>, Vec<(u64, Vec<usize>)>);

    /// What units say, in a form to compare: pack units by pack and first
    /// offset (the order of equal weights is the map's), each with its
    /// chunks' offsets and files; file units by file.
    fn summary(units: &[Unit]) -> Vec<Summary> {
        let mut out: Vec<_> = units
            .iter()
            .map(|u| match u {
                Unit::Pack(p) => (
                    p.pack.0.to_vec(),
                    p.placements
                        .iter()
                        .map(|pl| (pl.entry.offset, pl.files().collect()))
                        .collect(),
                ),
                Unit::File(f) => (
                    Vec::new(),
                    f.chunks
                        .iter()
                        .map(|c| (c.entry.offset, vec![f.file]))
                        .collect(),
                ),
            })
            .collect();
        out.sort();
        out
    }
}
