//! The merged view of a backup chain: the tree of a backup, streamed.
//!
//! A chain is the layers full → … → target. The view yields, in path order,
//! the entry each path has once the layers are applied in order: the entry
//! of the highest layer that has one, unless a tombstone of a layer above
//! that one covers the path. Only one decoded entry per layer is held at a
//! time, so memory follows the (compressed) layers, not the tree; restore
//! collects the view, an incremental backup walks beside it.
//!
//! Tombstones sit at the end of a layer's body, so each layer is read twice:
//! once for its tombstones (which also verifies its record counts), once to
//! stream its entries.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use strata_format::layer::{Entry, Layer, LayerMeta, LayerRecord, Records};
use strata_format::path;

use strata_format::BackupId;

use crate::error::{Error, Result};
use crate::repository::{LayerName, Repository};

/// Loads the chain of layers that makes `top`'s tree, full backup first,
/// each with its location for error messages. The chain is the one the
/// repository holds: each backup's current layer names its parent, so a
/// catalog that has not yet seen a rewrite (FORMAT.md section 7d) cannot
/// mislead a restore.
pub fn load_chain(repo: &Repository, top: &BackupId) -> Result<Vec<(String, Vec<u8>)>> {
    let current: HashMap<BackupId, u32> = repo
        .list_layers()?
        .into_iter()
        .map(|n| (n.id, n.generation))
        .collect();
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut next = Some(*top);
    while let Some(id) = next {
        if !seen.insert(id) {
            return Err(Error::Corrupt {
                location: format!("layer {top}"),
                detail: format!("its chain of parents loops at {id}"),
            });
        }
        let Some(&generation) = current.get(&id) else {
            return Err(Error::Corrupt {
                location: format!("{}/{}", repo.location(), Repository::layer_key(&id, 0)),
                detail: format!("the layer of backup {id} is missing from the repository"),
            });
        };
        let name = LayerName { id, generation };
        let bytes = match repo.load_layer_object(&name) {
            // Superseded since the listing: read the newest again.
            Err(Error::NotFound { .. }) => repo.load_layer(&id)?,
            other => other?,
        };
        let location = format!("layer {id}");
        let meta = Layer::decode(&bytes)
            .map_err(|e| Error::format(location.as_str(), e))?
            .meta;
        if meta.backup_id != id {
            return Err(Error::Corrupt {
                location,
                detail: format!("it holds backup {}", meta.backup_id),
            });
        }
        next = meta.parent_id;
        chain.push((location, bytes));
    }
    chain.reverse();
    Ok(chain)
}

/// One layer of the chain, as a stream.
struct Input<'a> {
    location: &'a str,
    records: Records<'a>,
    head: Option<Entry>,
    tombstones: Vec<Vec<u8>>,
    /// The first tombstone that may still cover a coming path.
    next_tombstone: usize,
}

impl Input<'_> {
    fn advance(&mut self) -> Result<()> {
        self.head = match self.records.next() {
            Some(Ok(LayerRecord::Entry(e))) => Some(e),
            Some(Ok(LayerRecord::Tombstone(_))) | None => None,
            Some(Err(e)) => return Err(Error::format(self.location, e)),
        };
        Ok(())
    }

    /// Whether one of this layer's tombstones removes `p`. Calls must come
    /// with non-decreasing `p`: a subtree is a contiguous run of the path
    /// order, so a tombstone passed once can never cover a later path.
    fn removes(&mut self, p: &[u8]) -> bool {
        while let Some(t) = self.tombstones.get(self.next_tombstone) {
            if path::is_within(p, t) {
                return true;
            }
            if path::cmp(t, p) == Ordering::Greater {
                return false;
            }
            self.next_tombstone += 1;
        }
        false
    }
}

/// Iterator over the entries of a chain's merged tree, in path order.
pub struct MergedView<'a> {
    inputs: Vec<Input<'a>>,
    newest: Option<LayerMeta>,
}

impl<'a> MergedView<'a> {
    /// Opens the view of `layers` (location for errors, layer bytes), full
    /// backup first. Every layer's checksum is verified here.
    pub fn new(layers: &'a [(String, Vec<u8>)]) -> Result<Self> {
        let mut inputs = Vec::with_capacity(layers.len());
        let mut newest = None;
        for (location, bytes) in layers {
            let layer = Layer::decode(bytes).map_err(|e| Error::format(location.as_str(), e))?;
            let mut tombstones = Vec::with_capacity(layer.tombstone_count.min(1 << 20) as usize);
            for record in layer
                .records()
                .map_err(|e| Error::format(location.as_str(), e))?
            {
                if let LayerRecord::Tombstone(t) =
                    record.map_err(|e| Error::format(location.as_str(), e))?
                {
                    tombstones.push(t.path);
                }
            }
            let records = layer
                .records()
                .map_err(|e| Error::format(location.as_str(), e))?;
            let mut input = Input {
                location,
                records,
                head: None,
                tombstones,
                next_tombstone: 0,
            };
            input.advance()?;
            inputs.push(input);
            newest = Some(layer.meta);
        }
        Ok(MergedView { inputs, newest })
    }

    /// The metadata of the chain's last layer (the backup this view is of).
    pub fn newest(&self) -> Option<&LayerMeta> {
        self.newest.as_ref()
    }

    fn next_entry(&mut self) -> Result<Option<Entry>> {
        loop {
            // The smallest path at the heads, and the highest layer holding it.
            let mut best: Option<(usize, &[u8])> = None;
            for (i, input) in self.inputs.iter().enumerate() {
                if let Some(head) = &input.head {
                    let take = match best {
                        None => true,
                        Some((_, p)) => path::cmp(&head.path, p) != Ordering::Greater,
                    };
                    if take {
                        best = Some((i, &head.path));
                    }
                }
            }
            let Some((winner, _)) = best else {
                return Ok(None);
            };
            let Some(entry) = self.inputs[winner].head.take() else {
                return Err(Error::Bug("merged view lost its head".into()));
            };
            self.inputs[winner].advance()?;
            for input in &mut self.inputs[..winner] {
                if input.head.as_ref().is_some_and(|h| h.path == entry.path) {
                    input.advance()?;
                }
            }
            let removed = self.inputs[winner + 1..]
                .iter_mut()
                .any(|above| above.removes(&entry.path));
            if !removed {
                return Ok(Some(entry));
            }
        }
    }
}

impl Iterator for MergedView<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

#[cfg(test)]
mod tests;
