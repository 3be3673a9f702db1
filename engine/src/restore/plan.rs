//! Restore step 2: where every needed chunk is, grouped by pack and sorted by
//! offset, so each pack is read once, front to back.

use std::collections::HashMap;

use strata_format::layer::EntryKind;
use strata_format::pack::PackEntry;
use strata_format::{ChunkId, PackId};

use super::tree::Tree;
use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// One chunk to fetch, and every place in the tree it goes.
pub struct Placement {
    pub entry: PackEntry,
    /// (index of the file entry, offset in that file)
    pub targets: Vec<(usize, u64)>,
}

pub struct PackPlan {
    pub pack: PackId,
    pub placements: Vec<Placement>,
    pub bytes: u64,
}

pub fn by_pack(tree: &Tree, catalog: &Catalog) -> Result<Vec<PackPlan>> {
    let mut where_is: HashMap<ChunkId, (PackId, usize)> = HashMap::new();
    let mut plans: Vec<PackPlan> = Vec::new();
    let mut pack_slot: HashMap<PackId, usize> = HashMap::new();
    for (i, e) in tree.entries.iter().enumerate() {
        let EntryKind::File { chunks, .. } = &e.kind else {
            continue;
        };
        let mut offset = 0u64;
        for c in chunks {
            let (pack, slot) = match where_is.get(&c.id) {
                Some(found) => *found,
                None => {
                    let loc = catalog.lookup_chunk(&c.id)?.ok_or_else(|| Error::Corrupt {
                        location: format!("chunk {}", c.id),
                        detail: format!(
                            "needed by {} but not in the chunk index",
                            String::from_utf8_lossy(&e.path)
                        ),
                    })?;
                    if loc.entry.raw_len != c.len {
                        return Err(Error::Corrupt {
                            location: format!("chunk {}", c.id),
                            detail: format!(
                                "layer says {} bytes, index says {}",
                                c.len, loc.entry.raw_len
                            ),
                        });
                    }
                    let p = *pack_slot.entry(loc.pack).or_insert_with(|| {
                        plans.push(PackPlan {
                            pack: loc.pack,
                            placements: Vec::new(),
                            bytes: 0,
                        });
                        plans.len() - 1
                    });
                    plans[p].placements.push(Placement {
                        entry: loc.entry,
                        targets: Vec::new(),
                    });
                    plans[p].bytes += u64::from(loc.entry.stored_len);
                    let found = (loc.pack, plans[p].placements.len() - 1);
                    where_is.insert(c.id, found);
                    found
                }
            };
            let p = pack_slot[&pack];
            plans[p].placements[slot].targets.push((i, offset));
            offset += u64::from(c.len);
        }
    }
    for plan in &mut plans {
        plan.placements.sort_by_key(|p| p.entry.offset);
    }
    // Biggest packs first so the last one to finish is a small one.
    plans.sort_by_key(|p| std::cmp::Reverse(p.bytes));
    Ok(plans)
}
