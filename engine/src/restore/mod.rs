//! The restore pipeline: resolve the tree → plan units → lay out → fetch,
//! verify and write → links → metadata.
//!
//! Every byte written is checked: a one-chunk file's chunk against its id
//! before it is written, a many-chunk file against its whole-file hash as it
//! is written (and, when that fails, each of its chunks against its id, to
//! name the damaged one). Cost is proportional to the restored tree:
//! each file is written once, each pack read once, front to back.

mod fetch;
mod meta;
mod plan;
mod tree;
mod write;

use std::path::Path;

use strata_format::BackupId;

pub use tree::Tree;

use crate::catalog::Catalog;
use crate::error::Result;
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

/// Restores the backup whose chain is `chain` into `target` (an existing directory).
pub fn run(
    repo: &Repository,
    catalog: &Catalog,
    chain: &[BackupId],
    target: &Path,
    progress: &Progress,
) -> Result<RestoreOutcome> {
    let tree = tree::resolve(&crate::view::load_chain(repo, chain)?)?;
    let units = plan::units(&tree, catalog)?;
    let bytes: u64 = tree
        .entries
        .iter()
        .map(|e| match &e.kind {
            strata_format::layer::EntryKind::File { size, .. } => *size,
            _ => 0,
        })
        .sum();
    progress.add_total(bytes);
    write::layout(target, &tree)?;
    write::fill(repo, target, &tree, &units, progress)?;
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
