//! Rewriting a backup's layer against an older base, from metadata alone.
//!
//! A backup `K` whose parent is to be removed gets a new layer computed
//! against its nearest kept ancestor `A` (none: `K` becomes a full backup):
//! the difference between the tree of `K` and the tree of `A`, both read
//! from the repository as merged views. Applying `A`'s chain and then the
//! new layer gives exactly `K`'s tree, so `K` restores what it restored
//! before and every backup built on `K` stays valid. The new layer is
//! published as the next generation of `K`'s layer (FORMAT.md section 7d);
//! nothing is overwritten.

use std::cmp::Ordering;
use std::collections::HashSet;

use strata_format::layer::{Entry, EntryKind, LayerMeta, Tombstone};
use strata_format::path;
use strata_format::{BackupId, ChunkId};

use crate::error::{Error, Result};
use crate::repository::layers::NewLayer;
use crate::repository::{LayerName, Repository};
use crate::view::{load_chain, MergedView};

/// A rewritten layer, durable under its new generation.
pub(crate) struct Rewritten {
    pub name: LayerName,
    pub entries: u64,
    pub tombstones: u64,
    /// Every chunk the new layer references.
    pub chunks: HashSet<ChunkId>,
}

/// Writes `backup`'s layer against `base` and publishes it as the
/// generation after `current`. The old generation stays until the caller
/// removes it.
pub(crate) fn rewrite(
    repo: &Repository,
    backup: BackupId,
    current: u32,
    base: Option<BackupId>,
) -> Result<Rewritten> {
    let top_layers = load_chain(repo, &backup)?;
    let top = MergedView::new(&top_layers)?;
    let mut meta: LayerMeta = top
        .newest()
        .cloned()
        .ok_or_else(|| Error::Bug(format!("backup {backup} has an empty chain")))?;
    meta.parent_id = base;
    let base_layers = match &base {
        Some(id) => load_chain(repo, id)?,
        None => Vec::new(),
    };
    let below = MergedView::new(&base_layers)?;

    let name = LayerName {
        id: backup,
        generation: current + 1,
    };
    let mut writer = repo.new_layer(name)?;
    let mut diff = Diff::default();
    let mut tombstones: Vec<Vec<u8>> = Vec::new();
    let mut top = top.peekable();
    let mut below = below.peekable();
    loop {
        for view in [&mut top, &mut below] {
            if matches!(view.peek(), Some(Err(_))) {
                return Err(next(view)
                    .err()
                    .unwrap_or_else(|| Error::Bug("lost error".into())));
            }
        }
        let order = match (top.peek(), below.peek()) {
            (None, None) => break,
            (Some(Err(_)), _) | (_, Some(Err(_))) => {
                return Err(Error::Bug("merged view error left behind".into()))
            }
            (Some(Ok(_)), None) => Ordering::Less,
            (None, Some(Ok(_))) => Ordering::Greater,
            (Some(Ok(t)), Some(Ok(b))) => path::cmp(&t.path, &b.path),
        };
        match order {
            Ordering::Less => {
                let entry = next(&mut top)?;
                diff.entry(&mut writer, entry)?;
            }
            Ordering::Greater => {
                let gone = next(&mut below)?;
                // A path below one already tombstoned goes with it.
                if !tombstones
                    .last()
                    .is_some_and(|t| path::is_within(&gone.path, t))
                {
                    tombstones.push(gone.path);
                }
            }
            Ordering::Equal => {
                let (entry, old) = (next(&mut top)?, next(&mut below)?);
                // An unchanged path under a new tombstone must be restated.
                let covered = tombstones
                    .last()
                    .is_some_and(|t| path::is_within(&entry.path, t));
                if entry != old || covered {
                    diff.entry(&mut writer, entry)?;
                }
            }
        }
    }
    for path in tombstones.iter() {
        writer.add_tombstone(&Tombstone { path: path.clone() })?;
    }
    writer.publish(&meta, || Ok(()))?;
    Ok(Rewritten {
        name,
        entries: diff.entries,
        tombstones: tombstones.len() as u64,
        chunks: diff.chunks,
    })
}

fn next(view: &mut std::iter::Peekable<MergedView<'_>>) -> Result<Entry> {
    view.next()
        .unwrap_or_else(|| Err(Error::Bug("merged view ended under a peek".into())))
}

#[derive(Default)]
struct Diff {
    entries: u64,
    chunks: HashSet<ChunkId>,
}

impl Diff {
    fn entry(&mut self, writer: &mut NewLayer, entry: Entry) -> Result<()> {
        if let EntryKind::File { chunks, .. } = &entry.kind {
            self.chunks.extend(chunks.iter().map(|c| c.id));
        }
        writer.add_entry(&entry)?;
        self.entries += 1;
        Ok(())
    }
}
