//! The backup report: what was skipped or went wrong, per path, and the
//! running totals the progress bar and the layer's stats are built from.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crate::store::Problem;
use strata_format::layer::EntryKind;

/// Most problems kept in the report; the count goes on beyond it.
const MAX_KEPT: usize = 10_000;

#[derive(Default)]
pub struct Report {
    problems: Mutex<Vec<Problem>>,
    pub skipped: AtomicU64,
    pub warnings: AtomicU64,
}

impl Report {
    /// A path that could not be backed up (it is not in the layer).
    pub fn problem(&self, rel: &[u8], what: String) {
        self.skipped.fetch_add(1, Relaxed);
        self.keep(rel, what);
    }

    /// Something to tell the operator about a path that is otherwise fine, or
    /// that was skipped on purpose (sockets, devices).
    pub fn warning(&self, rel: &[u8], what: String) {
        self.warnings.fetch_add(1, Relaxed);
        self.keep(rel, what);
    }

    fn keep(&self, rel: &[u8], what: String) {
        if let Ok(mut problems) = self.problems.lock() {
            if problems.len() < MAX_KEPT {
                problems.push(Problem {
                    path: String::from_utf8_lossy(rel).into_owned(),
                    problem: what,
                });
            }
        }
    }

    pub fn take(&self) -> Vec<Problem> {
        self.problems
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

/// Counters shared by every stage; read by progress reporting.
#[derive(Default, Debug)]
pub struct Counters {
    pub files: AtomicU64,
    pub dirs: AtomicU64,
    pub symlinks: AtomicU64,
    pub hardlinks: AtomicU64,
    pub logical_bytes: AtomicU64,
    /// Bytes read from the share (files re-read count twice).
    pub read_bytes: AtomicU64,
    pub new_bytes: AtomicU64,
    pub stored_bytes: AtomicU64,
    pub new_chunks: AtomicU64,
    pub packs: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Counts an entry of the backup's tree (recorded or inherited).
    pub fn count(&self, kind: &EntryKind) {
        match kind {
            EntryKind::File { size, .. } => {
                Counters::add(&self.files, 1);
                Counters::add(&self.logical_bytes, *size);
            }
            EntryKind::Dir => Counters::add(&self.dirs, 1),
            EntryKind::Symlink { .. } => Counters::add(&self.symlinks, 1),
            EntryKind::Hardlink { .. } => Counters::add(&self.hardlinks, 1),
        }
    }
}
