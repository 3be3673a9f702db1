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
use super::stat::Stat;
use super::walk::ItemKind;

/// Files larger than this are read ahead by their own reader thread.
const MAX_BYTES: u64 = 8 << 20;
/// Files opened ahead and not yet taken by a worker, at most.
const MAX_FILES: usize = 256;

/// Which files a backup will read, so the walk can open them ahead.
#[derive(Clone, Copy)]
pub struct Reads {
    /// The parent's data timestamp minus the racy window
    /// ([`diff::unchanged`]).
    pub racy_from: i64,
    /// Every file is read, whatever its parent entry says.
    pub rehash: bool,
}

/// The walk's side: opens files ahead within the budget.
pub struct ReadAhead {
    reads: Reads,
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
    pub fn new(reads: Reads) -> ReadAhead {
        ReadAhead {
            reads,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Opens `name` in `dir` and asks for its pages, if the backup will read
    /// it and the budget allows; `None` otherwise, or when it cannot be
    /// opened (the worker then opens it and reports why).
    pub fn open(
        &self,
        dir: &OwnedFd,
        name: &std::ffi::OsStr,
        kind: &ItemKind,
        meta: &Stat,
        parent: Option<&Entry>,
    ) -> Option<Opened> {
        let read = match parent {
            Some(parent) => {
                self.reads.rehash || !diff::unchanged(kind, meta, parent, self.reads.racy_from)
            }
            None => true,
        };
        if !matches!(kind, ItemKind::File)
            || !read
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
