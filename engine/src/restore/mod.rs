//! The restore pipeline: resolve the tree → plan units (while the layout
//! makes the directories) → fetch, verify and write each file, and give it
//! its metadata → links → the metadata of everything else, directories last.
//!
//! Every byte written is checked: a one-chunk file's chunk against its id
//! before it is written, a many-chunk file against its whole-file hash as it
//! is written (and, when that fails, each of its chunks against its id, to
//! name the damaged one). Cost is proportional to the restored tree:
//! each file is written once, each pack read once, front to back.

mod fill;
mod meta;
mod plan;
mod tree;
mod write;

use std::path::Path;

use strata_format::BackupId;

pub use tree::Tree;

use crate::beneath::Beneath;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::progress::Progress;
use crate::repository::Repository;

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    pub files: u64,
    pub bytes: u64,
    /// Pack units plus file units run.
    pub units: u64,
}

/// Restores `backup` (its chain as the repository holds it) into `target` (an existing
/// directory); `direct_io` lets large files be written past the page cache
/// where the target's file system allows it.
pub fn run(
    repo: &Repository,
    index: &dyn ChunkIndex,
    backup: &BackupId,
    target: &Path,
    direct_io: bool,
    progress: &Progress,
) -> Result<RestoreOutcome> {
    let tree = tree::resolve(&crate::view::load_chain(repo, backup)?)?;
    // Everything below goes through this descriptor: nothing outside it
    // can be reached, whatever is renamed or swapped meanwhile.
    let target = &Beneath::open(target)?;
    // The plan (catalog lookups) and the layout (directories, empty files)
    // need nothing of each other: the layout runs meanwhile.
    let (units, laid) = std::thread::scope(|scope| {
        let layout = scope.spawn(|| write::layout(target, &tree));
        let units = plan::units(&tree, index);
        let laid = layout
            .join()
            .unwrap_or_else(|_| Err(Error::Bug("the layout thread panicked".into())));
        (units, laid)
    });
    laid?;
    let units = units?;
    let bytes: u64 = tree
        .entries
        .iter()
        .map(|e| match &e.kind {
            strata_format::layer::EntryKind::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    progress.add_total(bytes);
    fill::fill(repo, target, &tree, &units, direct_io, progress)?;
    write::links(target, &tree)?;
    meta::apply_all(target, &tree)?;
    progress.add_files(tree.files.len() as u64);
    progress.finish();
    Ok(RestoreOutcome {
        files: tree.files.len() as u64,
        bytes,
        units: units.len() as u64,
    })
}
