//! The merged view of a backup chain: the tree of a backup, streamed.
//!
//! A chain is the layers full → … → target. The view yields, in path order,
//! the entry each path has once the layers are applied in order: the entry
//! of the highest layer that has one, unless a tombstone of a layer above
//! that one covers the path. A large layer is streamed from the repository
//! a piece at a time, one decoded entry held; a small one (at most
//! `HELD_ENTRIES`) is decoded whole, which costs less than a stream. So
//! memory follows the number of layers, not the tree; a restore takes the
//! view a window at a time, an incremental backup walks beside it.
//!
//! A version-4 layer is read once: its footer and index are verified when
//! the chain is loaded, its tombstones read from their own pieces, its
//! entries streamed (from the piece that holds a path, for
//! [`MergedView::from`]), each piece checked against its hash as it passes.
//! An older layer is read three times: whole to verify its checksum, once
//! for its tombstones if it has any (they sit at the end of its body), once
//! to stream its entries. A small layer is decoded whole in one read.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use strata_format::layer::{Entry, LayerMeta, LayerRecord, Stream};
use strata_format::path;

use strata_format::BackupId;

use crate::error::{Error, Result};
use crate::repository::layers::BodyReader;
pub use crate::repository::layers::ChainLayer;
use crate::repository::{LayerName, Repository};

/// Opens the chain of layers that makes `top`'s tree, full backup first,
/// each verified. The chain is the one the repository holds: each backup's
/// current layer names its parent, so a catalog that has not yet seen a
/// rewrite (FORMAT.md section 7d) cannot mislead a restore.
pub fn load_chain(repo: &Repository, top: &BackupId) -> Result<Vec<ChainLayer>> {
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
                location: format!("{}/{}", repo.location(), LayerName::first(id).key()),
                detail: format!("the layer of backup {id} is missing from the repository"),
            });
        };
        let layer = match repo.open_layer(&LayerName { id, generation }) {
            // Superseded since the listing: open the newest.
            Err(Error::NotFound { .. }) => {
                let generation = repo.layer_generation(&id)?.unwrap_or(generation);
                repo.open_layer(&LayerName { id, generation })?
            }
            other => other?,
        };
        if layer.meta().backup_id != id {
            return Err(Error::Corrupt {
                detail: format!("it holds backup {}", layer.meta().backup_id),
                location: layer.location,
            });
        }
        next = layer.meta().parent_id;
        chain.push(layer);
    }
    chain.reverse();
    Ok(chain)
}

/// Layers with at most this many entries are decoded whole when the view
/// opens, their decoder then freed: held, so few entries take less memory
/// than a stream's buffer and zstd window (a chain merges all its layers at
/// once, and most incrementals record little).
const HELD_ENTRIES: u64 = 1024;

/// Where a layer's entries come from.
enum Source<'a> {
    Stream(Box<Stream<BodyReader<'a>>>),
    Held(std::vec::IntoIter<Entry>),
}

/// One layer of the chain, as a stream.
struct Input<'a> {
    location: &'a str,
    entries: Source<'a>,
    head: Option<Entry>,
    tombstones: Vec<Vec<u8>>,
    /// The first tombstone that may still cover a coming path.
    next_tombstone: usize,
}

impl Input<'_> {
    fn advance(&mut self) -> Result<()> {
        self.head = match &mut self.entries {
            Source::Held(entries) => entries.next(),
            Source::Stream(records) => match records.next() {
                Some(Ok(LayerRecord::Entry(e))) => Some(e),
                Some(Ok(LayerRecord::Tombstone(_))) | None => None,
                Some(Err(e)) => return Err(Error::format(self.location, e)),
            },
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

/// A layer's entries from the piece that holds `from` (all of them when
/// `None`), and its tombstones (which follow the entries). A small layer is
/// read once, whole; a large one streams its entries, after reading its
/// tombstones: from their own pieces (version 4), else by a first pass.
fn open_input<'a>(
    layer: &'a ChainLayer,
    held: u64,
    from: Option<&[u8]>,
) -> Result<(Source<'a>, Vec<Vec<u8>>)> {
    let location = layer.location.as_str();
    let (entry_count, tombstone_count) = (layer.tail.entry_count, layer.tail.tombstone_count);
    let mut tombstones = Vec::with_capacity(tombstone_count.min(1 << 20) as usize);
    let whole = entry_count <= held;
    // The footer's count is checked against the records as they are read.
    let mut kept = Vec::with_capacity(if whole {
        entry_count.min(1 << 20) as usize
    } else {
        0
    });
    let first = match (whole, layer.tail.tombstone_piece()) {
        (false, Some(piece)) => Some(piece),
        (true, _) if entry_count > 0 || tombstone_count > 0 => Some(0),
        (false, None) if tombstone_count > 0 => Some(0),
        _ => None,
    };
    if let Some(piece) = first {
        for record in layer.records_from(piece)? {
            match record.map_err(|e| Error::format(location, e))? {
                LayerRecord::Tombstone(t) => tombstones.push(t.path),
                LayerRecord::Entry(e) if whole => kept.push(e),
                LayerRecord::Entry(_) => {}
            }
        }
    }
    let entries = match whole {
        true => Source::Held(kept.into_iter()),
        false => {
            let piece = from.map_or(0, |at| layer.tail.piece_for(at));
            Source::Stream(Box::new(layer.records_from(piece)?))
        }
    };
    Ok((entries, tombstones))
}

/// The entries of a chain's merged tree at and below `at` (a stored path;
/// `None`: the whole tree), in path order: each layer read from the piece
/// that holds `at`, and no further than the end of its subtree.
pub fn subtree<'a>(
    layers: &'a [ChainLayer],
    at: Option<&'a [u8]>,
) -> Result<impl Iterator<Item = Result<Entry>> + 'a> {
    let view = match at {
        Some(at) => MergedView::from(layers, at)?,
        None => MergedView::new(layers)?,
    };
    let before = move |e: &Result<Entry>| matches!((e, at), (Ok(e), Some(at)) if path::cmp(&e.path, at) == Ordering::Less);
    let within = move |e: &Result<Entry>| match (e, at) {
        (Ok(e), Some(at)) => path::is_within(&e.path, at),
        _ => true,
    };
    Ok(view.skip_while(before).take_while(within))
}

/// Iterator over the entries of a chain's merged tree, in path order.
pub struct MergedView<'a> {
    inputs: Vec<Input<'a>>,
    newest: Option<LayerMeta>,
}

impl<'a> MergedView<'a> {
    /// Opens the view of `layers`, full backup first (each verified when
    /// the chain was loaded).
    pub fn new(layers: &'a [ChainLayer]) -> Result<Self> {
        Self::holding(layers, HELD_ENTRIES, None)
    }

    /// The view from about `at` on: each layer is read from the piece that
    /// holds `at` (version 4), so what comes before it is mostly not read.
    /// Every entry at or after `at` comes as [`MergedView::new`] gives it;
    /// entries before `at` may come first, and must be skipped (each layer
    /// starts at its own piece, so they are not the merged tree's).
    pub fn from(layers: &'a [ChainLayer], at: &[u8]) -> Result<Self> {
        Self::holding(layers, HELD_ENTRIES, Some(at))
    }

    /// [`MergedView::new`], decoding whole the layers of at most `held`
    /// entries, streaming the others from the piece that holds `from`.
    fn holding(layers: &'a [ChainLayer], held: u64, from: Option<&[u8]>) -> Result<Self> {
        let mut inputs = Vec::with_capacity(layers.len());
        for layer in layers {
            let location = layer.location.as_str();
            let (entries, tombstones) = open_input(layer, held, from)?;
            let mut input = Input {
                location,
                entries,
                head: None,
                tombstones,
                next_tombstone: 0,
            };
            input.advance()?;
            inputs.push(input);
        }
        Ok(MergedView {
            inputs,
            newest: layers.last().map(|l| l.meta().clone()),
        })
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

mod prefetch;
pub use prefetch::Prefetched;

#[cfg(test)]
mod tests;
