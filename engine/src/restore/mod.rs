//! The restore pipeline, a window of the tree at a time: resolve and check
//! the window → plan its units (while the layout makes its directories) →
//! fetch, verify and write each file, and give it its metadata → links →
//! the metadata of the window's symlinks, and of the directories it
//! completes (deepest first).
//!
//! Every byte written is checked: a one-chunk file's chunk against its id
//! before it is written, a many-chunk file against its whole-file hash as it
//! is written (and, when that fails, each of its chunks against its id, to
//! name the damaged one). Cost is proportional to the restored tree: each
//! file is written once, each pack read once per window that needs it,
//! front to back. Memory follows the window ([`RestoreOptions::window_bytes`]),
//! not the tree.

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
    /// Windows the tree was restored in.
    pub windows: u64,
}

/// How a restore runs.
#[derive(Clone, Copy, Debug)]
pub struct RestoreOptions {
    /// Let large files be written past the page cache where the target's
    /// file system allows it.
    pub direct_io: bool,
    /// Estimated bytes of the tree's entries (with their plan) held at once.
    pub window_bytes: usize,
}

/// Default [`RestoreOptions::window_bytes`]: some 40,000 small files a window.
pub const DEFAULT_WINDOW_BYTES: usize = 16 << 20;

/// Restores `backup` (its chain as the repository holds it) into `target`
/// (an existing directory).
pub fn run(
    repo: &Repository,
    index: &dyn ChunkIndex,
    backup: &BackupId,
    target: &Path,
    options: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreOutcome> {
    let layers = crate::view::load_chain(repo, backup)?;
    let totals = match layers.last() {
        Some(top) => top.meta().stats.clone(),
        None => return Err(Error::Bug("a chain without layers".into())),
    };
    let mut windows = tree::Windows::new(&layers, totals.hardlinks > 0, options.window_bytes)?;
    // Everything below goes through this descriptor: nothing outside it
    // can be reached, whatever is renamed or swapped meanwhile.
    let target = &Beneath::open(target)?;
    progress.add_total(totals.logical_bytes);
    let mut outcome = RestoreOutcome::default();
    while let Some(window) = windows.next_window()? {
        restore_window(
            repo,
            index,
            target,
            &window.tree,
            options,
            progress,
            &mut outcome,
        )?;
        meta::apply_dirs(target, &window.closed)?;
    }
    meta::apply_dirs(target, &windows.rest())?;
    progress.finish();
    Ok(outcome)
}

fn restore_window(
    repo: &Repository,
    index: &dyn ChunkIndex,
    target: &Beneath,
    tree: &Tree,
    options: &RestoreOptions,
    progress: &Progress,
    outcome: &mut RestoreOutcome,
) -> Result<()> {
    // The plan (catalog lookups) and the layout (directories, empty files)
    // need nothing of each other: the layout runs meanwhile.
    let (units, laid) = std::thread::scope(|scope| {
        let layout = scope.spawn(|| write::layout(target, tree));
        let units = plan::units(tree, index);
        let laid = layout
            .join()
            .unwrap_or_else(|_| Err(Error::Bug("the layout thread panicked".into())));
        (units, laid)
    });
    laid?;
    let units = units?;
    fill::fill(repo, target, tree, &units, options.direct_io, progress)?;
    write::links(target, tree)?;
    meta::apply_window(target, tree)?;
    let mut files = 0;
    for e in &tree.entries {
        if let strata_format::layer::EntryKind::File { size, .. } = &e.kind {
            files += 1;
            outcome.bytes += size;
        }
    }
    progress.add_files(files);
    outcome.files += files;
    outcome.units += units.len() as u64;
    outcome.windows += 1;
    Ok(())
}
