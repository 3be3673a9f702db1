//! Live counters of a running backup or restore, read by whoever shows progress.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

#[derive(Default, Debug)]
pub struct Progress {
    bytes_done: AtomicU64,
    files_done: AtomicU64,
    bytes_total: AtomicU64,
    finished: AtomicBool,
}

/// A consistent-enough copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub bytes_done: u64,
    pub files_done: u64,
    /// Best current estimate of the total (grows while a walk is running).
    pub bytes_total: u64,
    pub finished: bool,
}

impl Progress {
    pub fn add_bytes(&self, n: u64) {
        self.bytes_done.fetch_add(n, Relaxed);
    }

    pub fn add_files(&self, n: u64) {
        self.files_done.fetch_add(n, Relaxed);
    }

    pub fn add_total(&self, n: u64) {
        self.bytes_total.fetch_add(n, Relaxed);
    }

    pub fn finish(&self) {
        self.finished.store(true, Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            bytes_done: self.bytes_done.load(Relaxed),
            files_done: self.files_done.load(Relaxed),
            bytes_total: self.bytes_total.load(Relaxed),
            finished: self.finished.load(Relaxed),
        }
    }
}
