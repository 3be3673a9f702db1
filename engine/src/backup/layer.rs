//! Stage: assemble the layer. Entries arrive numbered, possibly out of order;
//! they are written in walk order to a layer under `tmp/`, and the chunks
//! they reference are recorded in the catalog for delete.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::BufWriter;

use crossbeam_channel::{Receiver, Sender};
use strata_format::layer::{EntryKind, LayerMeta, LayerWriter};
use strata_format::{BackupId, ChunkId};

use super::report::Report;
use crate::catalog::Catalog;
use crate::error::{Error, IoContext, Result};
use crate::repository::{Repository, TempObject};
use strata_format::layer::Entry;

/// A layer written up to its footer; `commit` finishes and publishes it.
pub struct LayerDraft {
    tmp: TempObject,
    writer: LayerWriter<BufWriter<File>>,
}

const REF_BATCH: usize = 8192;

/// What became of one walk item.
pub enum Slot {
    Entry(Entry),
    /// Nothing to record (a socket, a failed stat, ...).
    Empty,
    /// A regular file that could not be read: later names of the same inode
    /// must not point at it.
    Unreadable(Vec<u8>),
}

/// Where numbered slots go, one per walk item.
pub type EntrySender = Sender<(u64, Slot)>;
type Assembler<'scope> = std::thread::ScopedJoinHandle<'scope, Result<LayerDraft>>;

/// Starts the assembler; send `(seq, entry)` for every walk item.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    repo: &'scope Repository,
    mut catalog: Catalog,
    backup: BackupId,
    report: &'scope Report,
) -> Result<(EntrySender, Assembler<'scope>)> {
    let mut tmp = repo.temp_object("layer")?;
    let path = tmp.path().to_path_buf();
    let file = tmp.file()?.try_clone().at(&path)?;
    let writer = LayerWriter::new(BufWriter::with_capacity(1 << 20, file))
        .map_err(|e| Error::format(path.display().to_string(), e))?;
    let (tx, rx) = crossbeam_channel::bounded(4096);
    let handle = scope.spawn(move || {
        let mut draft = LayerDraft { tmp, writer };
        assemble(&rx, &mut draft, &mut catalog, backup, report)?;
        Ok(draft)
    });
    Ok((tx, handle))
}

fn assemble(
    rx: &Receiver<(u64, Slot)>,
    draft: &mut LayerDraft,
    catalog: &mut Catalog,
    backup: BackupId,
    report: &Report,
) -> Result<()> {
    let mut waiting: BTreeMap<u64, Slot> = BTreeMap::new();
    let mut next = 0u64;
    let mut refs: Vec<ChunkId> = Vec::with_capacity(REF_BATCH);
    let mut unreadable: HashSet<Vec<u8>> = HashSet::new();
    for (seq, slot) in rx {
        waiting.insert(seq, slot);
        while let Some(slot) = waiting.remove(&next) {
            next += 1;
            let entry = match slot {
                Slot::Entry(entry) => entry,
                Slot::Empty => continue,
                Slot::Unreadable(path) => {
                    unreadable.insert(path);
                    continue;
                }
            };
            if let EntryKind::Hardlink { target } = &entry.kind {
                if unreadable.contains(target) {
                    // Its content is the unreadable file's: skipped with it.
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
                    catalog.add_layer_refs(backup, &refs)?;
                    refs.clear();
                }
            }
            draft
                .writer
                .add_entry(&entry)
                .map_err(|e| Error::format(draft.tmp.path().display().to_string(), e))?;
        }
    }
    if !waiting.is_empty() {
        return Err(Error::Bug(format!(
            "layer assembly stopped at item {next} with {} items waiting",
            waiting.len()
        )));
    }
    catalog.add_layer_refs(backup, &refs)
}

impl LayerDraft {
    /// Writes the footer and publishes the layer: the backup's commit point.
    pub fn commit(self, repo: &Repository, meta: &LayerMeta) -> Result<()> {
        let path = self.tmp.path().to_path_buf();
        let (out, _) = self
            .writer
            .finish(meta)
            .map_err(|e| Error::format(path.display().to_string(), e))?;
        out.into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        repo.publish_layer(self.tmp, &meta.backup_id)
    }
}
