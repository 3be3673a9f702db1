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

use strata_format::layer::{Entry, Layer, LayerMeta, LayerRecord, Records};
use strata_format::path;

use strata_format::BackupId;

use crate::error::{Error, Result};
use crate::repository::Repository;

/// Loads the layers of `chain` (full backup first) from the repository, each
/// with its location for error messages.
pub fn load_chain(repo: &Repository, chain: &[BackupId]) -> Result<Vec<(String, Vec<u8>)>> {
    chain
        .iter()
        .map(|id| match repo.load_layer(id) {
            Ok(bytes) => Ok((format!("layer {id}"), bytes)),
            // The catalog says the backup exists: a missing layer is damage.
            Err(Error::NotFound { name, .. }) => Err(Error::Corrupt {
                location: name,
                detail: format!("the layer of backup {id} is missing from the repository"),
            }),
            Err(e) => Err(e),
        })
        .collect()
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
