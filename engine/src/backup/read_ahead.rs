//! Reading ahead of the workers: where the walk's listings prove slow (a
//! cold disk, NFS), it opens each file a backup will read and asks the
//! kernel for its pages at once (`POSIX_FADV_WILLNEED`), so the storage has
//! many reads in flight, not one per worker. The worker then reads from
//! that very descriptor. Where storage is fast the advice costs more than
//! it saves, and the walk does not give it.
//!
//! Only the files that will be read (new, changed, or every file with
//! `rehash`), only up to [`MAX_BYTES`] each, and at most [`MAX_FILES`] open
//! at once.

use std::fs::File;
use std::num::NonZeroU64;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::fs::{Advice, Mode, OFlags};
use strata_format::layer::Entry;

use super::diff;
use super::kind::ItemKind;
use super::stat::Stat;

/// Files larger than this are read ahead by their own reader thread.
const MAX_BYTES: u64 = 8 << 20;
/// Files opened ahead and not yet taken by a worker, at most.
const MAX_FILES: usize = 256;

/// Which entries a backup inherits from its parent without reading them;
/// it reads the rest.
#[derive(Clone, Copy)]
pub struct Reads {
    /// The parent's data timestamp minus the racy window
    /// ([`diff::unchanged`]).
    pub racy_from: i64,
    /// Every file is read, whatever its parent entry says.
    pub rehash: bool,
}

impl Reads {
    /// Whether the parent's entry stands for the item the walk found
    /// (`kind`, `meta`): its `lstat` shows it unchanged, and not every file
    /// is to be read.
    pub fn inherits(&self, kind: &ItemKind, meta: &Stat, parent: &Entry) -> bool {
        !self.rehash && diff::unchanged(kind, meta, parent, self.racy_from)
    }
}

/// The walk's side: opens files ahead within the budget.
#[derive(Default)]
pub struct ReadAhead {
    open: Arc<AtomicUsize>,
}

/// A file opened ahead; the budget gets its place back when it is taken or
/// dropped.
pub struct Opened {
    file: Option<File>,
    open: Arc<AtomicUsize>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Opened {
    /// The open file; the worker reads it from here on.
    pub fn take(mut self) -> Option<File> {
        self.file.take()
    }
}

impl ReadAhead {
    /// Opens the file `name` in `dir` and asks for its pages, if the budget
    /// allows; `None` otherwise, or when it cannot be opened (the worker
    /// then opens it and reports why). The walk asks only for the items a
    /// backup reads: those it does not inherit ([`Reads::inherits`]).
    pub fn open(
        &self,
        dir: &OwnedFd,
        name: &std::ffi::OsStr,
        kind: &ItemKind,
        meta: &Stat,
    ) -> Option<Opened> {
        if !matches!(kind, ItemKind::File)
            || !(1..=MAX_BYTES).contains(&meta.size)
            || self.open.load(Ordering::Relaxed) >= MAX_FILES
        {
            return None;
        }
        // Never follow a symlink swapped in since; never wait on a FIFO.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?;
        // Advice only: a file system that ignores it still reads the file.
        let _ = rustix::fs::fadvise(&fd, 0, NonZeroU64::new(meta.size), Advice::WillNeed);
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(Opened {
            file: Some(File::from(fd)),
            open: self.open.clone(),
        })
    }
}
