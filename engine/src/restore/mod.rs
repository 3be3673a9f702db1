//! The restore pipeline, a window of the tree at a time: resolve and check
//! the window → plan its units (while the layout makes its directories) →
//! fetch, verify and write each file, and give it its metadata → links →
//! the metadata of the window's symlinks, and of the directories it
//! completes (deepest first).
//!
//! Every byte written is checked against its chunk's id: a one-chunk file's
//! before it is written, a many-chunk file's as each window of its chunks
//! is expanded (in parallel), and an error names the damaged pack and
//! offset. Cost is proportional to the restored tree: each
//! file is written once, each pack read once per window that needs it,
//! front to back. Memory follows the window ([`RestoreOptions::window_bytes`]),
//! not the tree.

mod fill;
mod meta;
mod plan;
mod refusals;
mod tree;
mod write;

pub(crate) use plan::locate as plan_locate;
pub use refusals::refusal;

use std::path::Path;

use strata_format::BackupId;

pub use tree::Tree;

use crate::beneath::Beneath;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::progress::Progress;
use crate::repository::Repository;
use crate::select::Selection;

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    pub files: u64,
    pub bytes: u64,
    /// Pack units plus file units run.
    pub units: u64,
    /// Windows the tree was restored in.
    pub windows: u64,
    /// Stored bytes read from packs.
    pub read_bytes: u64,
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

/// Default [`RestoreOptions::window_bytes`]: some 2,600 small files a
/// window (two are held at once: one filling, the next read and planned).
/// Measured on fresh file systems, alternating, against the 4 MiB windows
/// and 1,024-chunk pack units before: a million small files restored in
/// 13.5-13.8 s against 13.5-14.2 s, peak 13.7-14.0 MiB against
/// 16.8-17.1 MiB; a tree of 99,032 source paths in 1.71-1.72 s, as before,
/// peak 66-70 MiB against 74-76. What the allocator keeps between windows
/// grows with the window, so smaller windows also keep a restore of a
/// million files nearer one of ten thousand: 1.06-1.07 against 1.11-1.12 in
/// alternating runs on one machine (the scale benchmark: 1.10-1.14).
pub const DEFAULT_WINDOW_BYTES: usize = 2 << 20;

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
    let all = Selection::all();
    run_selected(repo, index, backup, target, options, &all, progress)
}

/// Restores the part of `backup` that `selection` takes (see
/// [`crate::select`]) into `target`: [`run`] with a selection. Only the
/// selected files' chunks are read.
pub fn run_selected(
    repo: &Repository,
    index: &dyn ChunkIndex,
    backup: &BackupId,
    target: &Path,
    options: &RestoreOptions,
    selection: &Selection,
    progress: &Progress,
) -> Result<RestoreOutcome> {
    let layers = crate::view::load_chain(repo, backup)?;
    let totals = match layers.last() {
        Some(top) => top.meta().stats.clone(),
        None => return Err(Error::Bug("a chain without layers".into())),
    };
    let mut windows = tree::Windows::new(
        &layers,
        totals.hardlinks > 0,
        options.window_bytes,
        selection,
    )?;
    // Everything below goes through this descriptor: nothing outside it
    // can be reached, whatever is renamed or swapped meanwhile.
    let target = &Beneath::open(target)?;
    progress.add_total(totals.logical_bytes);
    let restorer = Restorer {
        repo,
        index,
        target,
        options,
        progress,
        workers: fill::Workers::new()?,
    };
    let mut outcome = RestoreOutcome::default();
    let mut planner = plan::Planner::default();
    // While a window's files are filled, the next window is read, checked,
    // laid out and planned: its directories are new paths, and nothing of it
    // is written into a directory the filling window completes.
    let mut current = match windows.next_window()? {
        Some(window) => Some(restorer.prepare(window, &mut planner)?),
        None => None,
    };
    while let Some((window, units)) = current.take() {
        // The next window is read and planned on this thread, always: what
        // a window holds is then allocated and freed by one thread, and the
        // allocator's footprint stays that of a window or two however many
        // there are (when pool threads took turns, each kept its own).
        let (filled, prepared) = std::thread::scope(|s| {
            let filling = s.spawn(|| restorer.fill(&window.tree, &units, &mut outcome));
            let prepared = windows
                .next_window()
                .and_then(|next| next.map(|w| restorer.prepare(w, &mut planner)).transpose());
            let filled = filling
                .join()
                .unwrap_or_else(|_| Err(Error::Bug("a restore thread panicked".into())));
            (filled, prepared)
        });
        filled?;
        meta::apply_dirs(target, &window.closed)?;
        windows.recycle(window.tree);
        current = prepared?;
    }
    meta::apply_dirs(target, &windows.rest())?;
    progress.finish();
    outcome.read_bytes = progress.stored_read();
    Ok(outcome)
}

/// What every window of one restore shares.
struct Restorer<'a> {
    repo: &'a Repository,
    index: &'a dyn ChunkIndex,
    target: &'a Beneath,
    options: &'a RestoreOptions,
    progress: &'a Progress,
    workers: fill::Workers,
}

impl Restorer<'_> {
    /// Lays out a window (directories, empty files) while its units are
    /// planned (catalog lookups) on the calling thread: they need nothing
    /// of each other.
    fn prepare(
        &self,
        window: tree::Window,
        planner: &mut plan::Planner,
    ) -> Result<(tree::Window, Vec<plan::Unit>)> {
        let tree = &window.tree;
        let (laid, units) = std::thread::scope(|s| {
            let laying = s.spawn(|| write::layout(self.target, tree));
            let units = planner.units(tree, self.index);
            let laid = laying
                .join()
                .unwrap_or_else(|_| Err(Error::Bug("a restore thread panicked".into())));
            (laid, units)
        });
        laid?;
        let units = units?;
        Ok((window, units))
    }

    /// Fills a prepared window's files, then makes its links and gives its
    /// symlinks their metadata.
    fn fill(&self, tree: &Tree, units: &[plan::Unit], outcome: &mut RestoreOutcome) -> Result<()> {
        let (target, progress) = (self.target, self.progress);
        let direct = self.options.direct_io;
        fill::fill(
            &self.workers,
            self.repo,
            target,
            tree,
            units,
            direct,
            progress,
        )?;
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
}
