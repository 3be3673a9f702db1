//! Stage: assemble the layer. Entries arrive numbered, possibly out of order;
//! they are written in walk order to a new layer, and the chunks
//! they reference are recorded in the catalog for delete. Tombstones (paths
//! of the parent that are gone, or that this backup could not read) are
//! kept aside and written after the entries, as the format requires.

use std::collections::{BTreeMap, HashSet};

use crossbeam_channel::{Receiver, Sender};
use std::cmp::Ordering;

use strata_format::layer::{EntryKind, LayerMeta, Tombstone};
use strata_format::path;
use strata_format::{BackupId, ChunkId};

use super::report::Report;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::repository::layers::NewLayer;
use crate::repository::leases::Lease;
use crate::repository::{LayerName, Repository};
use strata_format::layer::Entry;

/// A layer written up to its tombstones; `commit` finishes and publishes it.
pub struct LayerDraft {
    writer: NewLayer,
    /// Paths of the parent this backup could not read, in path order.
    tombstones: Vec<Vec<u8>>,
    pub entries: u64,
}

const REF_BATCH: usize = 8192;

/// What became of one walk item.
pub enum Slot {
    Entry(Entry),
    /// The parent's entry stands as it is (incremental backups).
    Unchanged,
    /// Nothing to record (a socket, a failed stat, ...).
    Empty,
    /// A regular file that could not be read: later names of the same inode
    /// must not point at it. What the parent backup had at its path stays.
    Unreadable(Vec<u8>),
    /// A regular file that was deleted between the walk and its read.
    Gone(Vec<u8>),
}

/// One walk item's slot, numbered in walk order.
pub struct Numbered {
    pub seq: u64,
    pub slot: Slot,
    /// The parent chain has an entry at this path: if nothing is recorded
    /// for it now, it must be tombstoned.
    pub in_parent: bool,
}

/// Where numbered slots go, one per walk item.
/// Slots go to the assembler in batches, one per batch of walk items.
pub type EntrySender = Sender<Vec<Numbered>>;
type Assembler<'scope> = std::thread::ScopedJoinHandle<'scope, Result<LayerDraft>>;

/// Starts the assembler; send a [`Numbered`] slot for every walk item.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    repo: &'scope Repository,
    index: &'scope dyn ChunkIndex,
    backup: BackupId,
    report: &'scope Report,
) -> Result<(EntrySender, Assembler<'scope>)> {
    let writer = repo.new_layer(LayerName::first(backup))?;
    let (tx, rx) = crossbeam_channel::bounded(4096 / super::walk::BATCH);
    let handle = scope.spawn(move || {
        let mut draft = LayerDraft {
            writer,
            tombstones: Vec::new(),
            entries: 0,
        };
        assemble(&rx, &mut draft, index, backup, report)?;
        Ok(draft)
    });
    Ok((tx, handle))
}

fn assemble(
    rx: &Receiver<Vec<Numbered>>,
    draft: &mut LayerDraft,
    index: &dyn ChunkIndex,
    backup: BackupId,
    report: &Report,
) -> Result<()> {
    let mut waiting: BTreeMap<u64, Numbered> = BTreeMap::new();
    let mut next = 0u64;
    let mut refs: Vec<ChunkId> = Vec::with_capacity(REF_BATCH);
    let mut unreadable: HashSet<Vec<u8>> = HashSet::new();
    for batch in rx {
        waiting.extend(batch.into_iter().map(|done| (done.seq, done)));
        while let Some(Numbered {
            slot, in_parent, ..
        }) = waiting.remove(&next)
        {
            next += 1;
            let entry = match slot {
                Slot::Entry(entry) => entry,
                Slot::Unchanged => continue,
                Slot::Empty => continue,
                // Never a deletion: the parent's entry (the last version
                // that was read) stands, and the path is reported.
                Slot::Unreadable(path) => {
                    unreadable.insert(path);
                    continue;
                }
                Slot::Gone(path) => {
                    if in_parent {
                        draft.tombstones.push(path.clone());
                    }
                    unreadable.insert(path);
                    continue;
                }
            };
            if let EntryKind::Hardlink { target } = &entry.kind {
                if unreadable.contains(target) {
                    // Its content is the unreadable file's: skipped with it.
                    // The parent's entry at its path, if any, stands.
                    report.problem(
                        &entry.path,
                        "hardlink to a file that could not be read; skipped".into(),
                    );
                    continue;
                }
            }
            if let EntryKind::File { chunks, .. } = &entry.kind {
                refs.extend(chunks.iter().map(|c| c.id));
                if refs.len() >= REF_BATCH {
                    index.add_refs(backup, &refs)?;
                    refs.clear();
                }
            }
            draft.writer.add_entry(&entry)?;
            draft.entries += 1;
        }
    }
    if !waiting.is_empty() {
        return Err(Error::Bug(format!(
            "layer assembly stopped at item {next} with {} items waiting",
            waiting.len()
        )));
    }
    index.add_refs(backup, &refs)
}

impl LayerDraft {
    /// Writes the tombstones (`gone`, the parent paths the walk did not
    /// find, and those this backup could not read) and the footer, then
    /// publishes the layer: the backup's commit point. Returns the number of
    /// tombstones written.
    pub fn commit(self, lock: &Lease, meta: &LayerMeta, gone: Vec<Vec<u8>>) -> Result<u64> {
        let mut writer = self.writer;
        let tombstones = merge_sorted(gone, self.tombstones);
        for t in &tombstones {
            writer.add_tombstone(&Tombstone { path: t.clone() })?;
        }
        // Every chunk the layer names is in a pack no sweep could remove
        // while the shared lease stood.
        writer.publish(meta, || lock.verify())?;
        Ok(tombstones.len() as u64)
    }
}

/// Merges two path-ordered lists, dropping repeats.
fn merge_sorted(a: Vec<Vec<u8>>, b: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (Some(x), Some(y)) => match path::cmp(x, y) {
                Ordering::Less => a.next(),
                Ordering::Greater => b.next(),
                Ordering::Equal => {
                    b.next();
                    a.next()
                }
            },
        };
        out.extend(next);
    }
    out
}
