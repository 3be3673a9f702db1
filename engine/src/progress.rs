//! Live counters of a running backup or restore, read by whoever shows
//! progress (the terminal bar, the heartbeat that writes it to the catalog),
//! and the flag that tells the pipeline to stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Called once, when the operation's new status is recorded in the catalog.
pub type OnRecorded = Box<dyn FnOnce() + Send>;

#[derive(Default)]
pub struct Progress {
    bytes_done: AtomicU64,
    files_done: AtomicU64,
    bytes_total: AtomicU64,
    files_total: AtomicU64,
    /// Stored bytes read from the repository's packs.
    stored_read: AtomicU64,
    finished: AtomicBool,
    /// Set when the operation must stop (cancelled from another process).
    cancelled: AtomicBool,
    on_recorded: Mutex<Option<OnRecorded>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("snapshot", &self.snapshot())
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// A consistent-enough copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub bytes_done: u64,
    pub files_done: u64,
    /// Best current estimate of the total (grows while a walk is running).
    pub bytes_total: u64,
    /// How many files (or objects) there are to do, when known up front
    /// (0 when not: a backup learns its total as it walks).
    pub files_total: u64,
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

    pub fn add_stored_read(&self, n: u64) {
        self.stored_read.fetch_add(n, Relaxed);
    }

    /// Stored bytes read from packs so far.
    pub fn stored_read(&self) -> u64 {
        self.stored_read.load(Relaxed)
    }

    pub fn add_files_total(&self, n: u64) {
        self.files_total.fetch_add(n, Relaxed);
    }

    /// Runs `f` once the operation has recorded its new status (a backup's
    /// record is `creating`, a restore's backup `restoring`, a deleted
    /// backup `deleting`): what a caller that answers before the work is
    /// done waits for. Not called if the operation is refused first.
    pub fn set_on_recorded(&self, f: OnRecorded) {
        if let Ok(mut slot) = self.on_recorded.lock() {
            *slot = Some(f);
        }
    }

    /// Says the operation's new status is recorded (see `set_on_recorded`).
    pub fn recorded(&self) {
        let f = self
            .on_recorded
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if let Some(f) = f {
            f();
        }
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Relaxed)
    }

    /// `Err(Cancelled)` once the operation has been told to stop.
    pub fn check(&self) -> crate::Result<()> {
        if self.is_cancelled() {
            return Err(crate::Error::Cancelled);
        }
        Ok(())
    }

    /// Percent done by bytes, 0–100 (99 until finished).
    pub fn percent(&self) -> u32 {
        let s = self.snapshot();
        if s.finished {
            return 100;
        }
        match s.bytes_total {
            0 => 0,
            total => (s.bytes_done.saturating_mul(100) / total).min(99) as u32,
        }
    }

    pub fn finish(&self) {
        self.finished.store(true, Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            bytes_done: self.bytes_done.load(Relaxed),
            files_done: self.files_done.load(Relaxed),
            bytes_total: self.bytes_total.load(Relaxed),
            files_total: self.files_total.load(Relaxed),
            finished: self.finished.load(Relaxed),
        }
    }
}
