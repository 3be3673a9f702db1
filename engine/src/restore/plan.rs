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
use crate::catalog::ChunkLocation;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;

/// One chunk to fetch, and the single-chunk files made of it.
pub struct Placement {
    pub entry: PackEntry,
    /// Indexes of file entries in the tree.
    pub files: Vec<usize>,
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
                .map(|pl| (cost(&pl.entry) + PER_FILE) * pl.files.len() as u64)
                .sum(),
            Unit::File(f) => PER_FILE + f.chunks.iter().map(|c| cost(&c.entry)).sum::<u64>(),
        }
    }
}

struct Locator<'a> {
    index: &'a dyn ChunkIndex,
    known: HashMap<ChunkId, ChunkLocation>,
}

impl Locator<'_> {
    fn find(&mut self, id: ChunkId, len: u32, path: &[u8]) -> Result<ChunkLocation> {
        if let Some(found) = self.known.get(&id) {
            return Ok(*found);
        }
        let loc = self.index.locate(&id)?.ok_or_else(|| Error::Corrupt {
            location: format!("chunk {id}"),
            detail: format!(
                "needed by {} but not in the chunk index",
                String::from_utf8_lossy(path)
            ),
        })?;
        if loc.entry.raw_len != len {
            return Err(Error::Corrupt {
                location: format!("chunk {id}"),
                detail: format!("layer says {len} bytes, index says {}", loc.entry.raw_len),
            });
        }
        self.known.insert(id, loc);
        Ok(loc)
    }
}

pub fn units(tree: &Tree, index: &dyn ChunkIndex) -> Result<Vec<Unit>> {
    let mut units = Vec::new();
    index.reading(&mut |snapshot| {
        units = locate(tree, snapshot)?;
        Ok(())
    })?;
    Ok(units)
}

fn locate(tree: &Tree, index: &dyn ChunkIndex) -> Result<Vec<Unit>> {
    let mut locator = Locator {
        index,
        known: HashMap::new(),
    };
    let mut units = Vec::new();
    let mut packs: HashMap<PackId, PackUnit> = HashMap::new();
    let mut slot: HashMap<ChunkId, usize> = HashMap::new();
    for (i, e) in tree.entries.iter().enumerate() {
        let EntryKind::File { chunks, .. } = &e.kind else {
            continue;
        };
        match chunks.as_slice() {
            [] => {}
            [only] => {
                let loc = locator.find(only.id, only.len, &e.path)?;
                let unit = packs.entry(loc.pack).or_insert_with(|| PackUnit {
                    pack: loc.pack,
                    placements: Vec::new(),
                });
                match slot.get(&only.id) {
                    Some(&at) => unit.placements[at].files.push(i),
                    None => {
                        slot.insert(only.id, unit.placements.len());
                        unit.placements.push(Placement {
                            entry: loc.entry,
                            files: vec![i],
                        });
                    }
                }
            }
            many => {
                let chunks = many
                    .iter()
                    .map(|c| locator.find(c.id, c.len, &e.path))
                    .collect::<Result<Vec<_>>>()?;
                units.push(Unit::File(FileUnit { file: i, chunks }));
            }
        }
    }
    for (_, mut unit) in packs {
        unit.placements.sort_by_key(|p| p.entry.offset);
        units.extend(pieces(unit).map(Unit::Pack));
    }
    units.sort_by_key(|u| std::cmp::Reverse(u.weight()));
    Ok(units)
}

/// A pack unit holds at most this many chunks, or this many raw bytes (at
/// least one chunk): a window whose files sit in a few packs still keeps
/// every restore thread busy. Each piece reads its own part of the pack,
/// front to back, and each file is still written by exactly one unit.
const PIECE_CHUNKS: usize = 1024;
const PIECE_BYTES: u64 = 8 << 20;

/// Cuts a pack unit (placements sorted by offset) into pieces.
fn pieces(unit: PackUnit) -> impl Iterator<Item = PackUnit> {
    let pack = unit.pack;
    let mut out: Vec<PackUnit> = Vec::new();
    let mut bytes = 0u64;
    for placement in unit.placements {
        let raw = u64::from(placement.entry.raw_len);
        let full = out
            .last()
            .is_none_or(|p| p.placements.len() >= PIECE_CHUNKS || bytes + raw > PIECE_BYTES);
        if full {
            out.push(PackUnit {
                pack,
                placements: Vec::new(),
            });
            bytes = 0;
        }
        bytes += raw;
        if let Some(piece) = out.last_mut() {
            piece.placements.push(placement);
        }
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn placement(i: usize, raw_len: u32) -> Placement {
        Placement {
            entry: PackEntry {
                id: ChunkId::of(&i.to_le_bytes()),
                offset: i as u64,
                stored_len: raw_len,
                raw_len,
                compression: Compression::None,
            },
            files: vec![i],
        }
    }

    proptest! {
        /// Pieces keep every placement once, in order, within the bounds.
        #[test]
        fn pieces_partition_a_pack_unit_in_order(
            lens in proptest::collection::vec(1u32..(6 << 20), 0..3000)
        ) {
            let unit = PackUnit {
                pack: PackId([7; 32]),
                placements: lens.iter().enumerate().map(|(i, &l)| placement(i, l)).collect(),
            };
            let pieces: Vec<PackUnit> = pieces(unit).collect();
            let mut seen = Vec::new();
            for piece in &pieces {
                prop_assert!(!piece.placements.is_empty());
                prop_assert!(piece.placements.len() <= PIECE_CHUNKS);
                let bytes: u64 = piece.placements.iter().map(|p| u64::from(p.entry.raw_len)).sum();
                prop_assert!(bytes <= PIECE_BYTES || piece.placements.len() == 1);
                seen.extend(piece.placements.iter().flat_map(|p| p.files.clone()));
            }
            prop_assert_eq!(seen, (0..lens.len()).collect::<Vec<_>>());
        }
    }
}
