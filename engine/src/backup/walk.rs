//! Stage 1: walk the share depth-first in stored-path order.
//!
//! One thread lists directories and sorts their names; the `lstat` of each
//! directory's children runs on a small pool of its own (stat latency, not
//! CPU, bounds a walk over NFS). Items leave numbered in order, so later
//! stages may finish them out of order and the layer is still written sorted.
//! Symlinks are never followed. Hardlinks are detected here, in order, so the
//! first name of an inode is the one that carries the content.
//!
//! Nothing outside the share is ever read, whatever is renamed or swapped
//! for a symlink while the walk runs: the root is opened once (and refused
//! if it is a symlink), each directory is opened from its parent's
//! descriptor without following a symlink and must be the very directory
//! (device and inode) that was walked, and every later access to an item
//! goes through its directory's descriptor ([`WalkItem::at`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;

use strata_format::layer::Entry;

use super::diff::ParentCursor;
use super::report::Report;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// What the walk found at one path.
pub enum ItemKind {
    File,
    Dir,
    Symlink,
    /// Another name of an inode first seen at this (stored) path.
    Hardlink(Vec<u8>),
    /// Nothing to back up (a skipped or unreadable entry); keeps the numbering.
    Nothing,
}

pub struct WalkItem {
    pub seq: u64,
    pub rel: Vec<u8>,
    /// Where the item is, for messages only.
    pub abs: PathBuf,
    /// The item through its directory's open descriptor (`/proc/self/fd/N/name`):
    /// every read of it goes there, so no renamed or swapped parent can
    /// redirect it. The last component is never followed by those reads.
    pub at: PathBuf,
    /// The item's directory, open; and its name there.
    dir: Arc<OwnedFd>,
    name: OsString,
    pub meta: Option<Metadata>,
    pub kind: ItemKind,
    /// The parent chain's entry at this path (incremental backups).
    pub parent: Option<Entry>,
}

struct DirCursor {
    rel: Vec<u8>,
    abs: PathBuf,
    fd: Arc<OwnedFd>,
    children: std::vec::IntoIter<(OsString, std::io::Result<Metadata>)>,
}

/// `name` in the directory open as `dir`, as a path through `/proc/self/fd`.
fn through(dir: &OwnedFd, name: &std::ffi::OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        p.push(name);
    }
    p
}

/// `name` in the directory open as `dir`, not following a symlink: its
/// own descriptor (`O_PATH`), asked for its status. Plain system calls, no
/// path resolved through `/proc`.
fn lstat_at(dir: &OwnedFd, name: &std::ffi::OsStr) -> std::io::Result<Metadata> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    fs::File::from(fd).metadata()
}

impl WalkItem {
    /// Opens the item for reading through its directory's descriptor,
    /// never following a symlink swapped in since the walk saw it.
    pub fn open(&self) -> std::io::Result<fs::File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&*self.dir, &self.name, flags, Mode::empty())?;
        Ok(fs::File::from(fd))
    }
}

/// Why a directory cannot be walked into.
enum Unlisted {
    /// It is gone: what the parent backup had below it is deleted.
    Gone,
    /// It cannot be read, or is not the directory that was walked: what the
    /// parent backup had below it is kept.
    Kept(String),
}

/// Opens `name` below `dir` as a directory, without following a symlink,
/// and checks it is the one `walked` describes.
fn open_dir(dir: &OwnedFd, name: &std::ffi::OsStr, walked: &Metadata) -> Result<OwnedFd, Unlisted> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Err(Unlisted::Gone),
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
            return Err(Unlisted::Kept(
                "replaced by something that is not a directory while the backup ran".into(),
            ))
        }
        Err(e) => {
            return Err(Unlisted::Kept(format!(
                "cannot open directory: {}",
                std::io::Error::from(e)
            )))
        }
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) if st.st_dev == walked.dev() && st.st_ino == walked.ino() => Ok(fd),
        Ok(_) => Err(Unlisted::Kept(
            "replaced by another directory while the backup ran".into(),
        )),
        Err(e) => Err(Unlisted::Kept(format!(
            "cannot stat directory: {}",
            std::io::Error::from(e)
        ))),
    }
}

/// Items go to the workers in batches of up to this many, or of what there
/// is when a directory is about to be listed and the batch has waited
/// [`BATCH_WAIT`]: one hand-off per item cost more than the work on an
/// unchanged one, and a slow listing (NFS) must not hold items back.
pub const BATCH: usize = 128;
const BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(2);
/// Directories with at most this many names are stat'ed on the walk's own
/// thread.
const INLINE_STATS: usize = 32;

pub struct Walker<'a> {
    tx: Sender<Vec<WalkItem>>,
    batch: Vec<WalkItem>,
    flushed: std::time::Instant,
    parent: Option<ParentCursor<'a>>,
    report: &'a Report,
    progress: &'a Progress,
    pool: rayon::ThreadPool,
    seq: u64,
    links: HashMap<(u64, u64), Vec<u8>>,
    root_dev: u64,
    root: Arc<OwnedFd>,
    root_path: PathBuf,
}

/// The walk thread; it returns the tombstones of the paths that are gone.
pub type WalkHandle<'scope> = std::thread::ScopedJoinHandle<'scope, Result<Vec<Vec<u8>>>>;

/// Starts a walk of `root` on a thread of `scope`; items arrive on the
/// receiver. With a `parent` view, each item carries its parent entry.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    root: PathBuf,
    parent: Option<ParentCursor<'scope>>,
    report: &'scope Report,
    progress: &'scope Progress,
) -> Result<(Receiver<Vec<WalkItem>>, WalkHandle<'scope>, u64)> {
    // A root that is a symlink is refused.
    let root_fd = crate::beneath::Beneath::open(&root)?.into_fd();
    let meta = fs::File::from(root_fd.try_clone().at(&root)?)
        .metadata()
        .at(&root)?;
    raise_fd_limit();
    let (tx, rx) = crossbeam_channel::bounded(1024 / BATCH);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .thread_name(|i| format!("strata-stat-{i}"))
        .build()
        .map_err(|e| Error::Bug(format!("cannot start the walk pool: {e}")))?;
    let mut walker = Walker {
        tx,
        batch: Vec::with_capacity(BATCH),
        flushed: std::time::Instant::now(),
        parent,
        report,
        progress,
        pool,
        seq: 0,
        links: HashMap::new(),
        root_dev: meta.dev(),
        root: Arc::new(root_fd),
        root_path: root.clone(),
    };
    let root_ino = meta.ino();
    let root_dev = meta.dev();
    let handle = scope.spawn(move || {
        walker.run(root.clone())?;
        // A share moved away, unmounted or replaced while it was walked must
        // not turn into a backup of whatever was walked instead (or into
        // deletions): its root must still be the directory opened at the start.
        match fs::symlink_metadata(&root) {
            Ok(now) if now.is_dir() && now.dev() == walker.root_dev && now.ino() == root_ino => {}
            _ => return Err(root_changed(&walker.root_path)),
        }
        match walker.parent.take() {
            Some(parent) => parent.finish(),
            None => Ok(Vec::new()),
        }
    });
    Ok((rx, handle, root_dev))
}

fn root_changed(root: &std::path::Path) -> Error {
    Error::InvalidState(format!(
        "share root {} disappeared, was replaced or changed device while it was backed up \
         (moved or unmounted?); no layer is published",
        root.display()
    ))
}

/// Lets the walk keep a descriptor per directory in flight: the soft limit
/// on open files goes up to the hard one.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

impl Walker<'_> {
    fn list(&self, fd: Arc<OwnedFd>, abs: &std::path::Path, rel: &[u8]) -> Option<DirCursor> {
        let listed = through(&fd, std::ffi::OsStr::new(""));
        let entries = match fs::read_dir(&listed) {
            Ok(entries) => entries,
            Err(e) => {
                self.report
                    .problem(rel, format!("cannot list directory: {e}"));
                return None;
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => names.push(entry.file_name()),
                Err(e) => {
                    self.report
                        .problem(rel, format!("cannot list directory: {e}"));
                    return None;
                }
            }
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let stat = |name: OsString| {
            let meta = lstat_at(&fd, &name);
            (name, meta)
        };
        // A few names are stat'ed here: handing them to the pool and back
        // would cost more than the calls (on a local file system).
        let children: Vec<(OsString, std::io::Result<Metadata>)> = match names.len() {
            0..=INLINE_STATS => names.into_iter().map(stat).collect(),
            _ => self
                .pool
                .install(|| names.into_par_iter().map(stat).collect()),
        };
        Some(DirCursor {
            rel: rel.to_vec(),
            abs: abs.to_path_buf(),
            fd,
            children: children.into_iter(),
        })
    }

    /// Sends one item; `Ok(false)` when the consumers have gone (the backup stopped).
    fn emit(
        &mut self,
        (rel, abs, dir, name, at): (Vec<u8>, PathBuf, Arc<OwnedFd>, OsString, PathBuf),
        meta: Option<Metadata>,
        kind: ItemKind,
    ) -> Result<bool> {
        let parent = match &mut self.parent {
            Some(cursor) => cursor.take(&rel, matches!(kind, ItemKind::Dir))?,
            None => None,
        };
        let item = WalkItem {
            seq: self.seq,
            rel,
            abs,
            at,
            dir,
            name,
            meta,
            kind,
            parent,
        };
        self.seq += 1;
        self.batch.push(item);
        Ok(self.batch.len() < BATCH || self.flush())
    }

    /// Hands the items gathered so far to the workers; `false` when the
    /// consumers have gone.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.flushed = std::time::Instant::now();
        self.tx.send(batch).is_ok()
    }

    /// Keeps what the parent backup had below the directory `rel`, which
    /// this walk cannot enter (an incremental never turns an unreadable
    /// directory into deletions).
    fn keep_below(&mut self, rel: &[u8]) -> Result<()> {
        match &mut self.parent {
            Some(parent) => parent.keep_below(rel),
            None => Ok(()),
        }
    }

    fn run(&mut self, root: PathBuf) -> Result<()> {
        let mut stack: Vec<DirCursor> = Vec::new();
        match self.list(self.root.clone(), &root, b"") {
            Some(cursor) => stack.push(cursor),
            None => {
                return Err(Error::InvalidArgument(format!(
                    "cannot list share path {}",
                    root.display()
                )))
            }
        }
        while let Some(top) = stack.last_mut() {
            self.progress.check()?;
            let Some((name, meta)) = top.children.next() else {
                stack.pop();
                continue;
            };
            let rel = strata_format::path::join(&top.rel, name.as_bytes());
            let abs = top.abs.join(&name);
            let dir = top.fd.clone();
            let at = through(&dir, &name);
            if name.as_bytes().contains(&b'/') || strata_format::path::validate(&rel).is_err() {
                self.report
                    .problem(&rel, "name cannot be stored; skipped".to_string());
                continue;
            }
            let meta = match meta {
                Ok(meta) => meta,
                // Gone since it was listed: deleted (the parent view's
                // cursor records it so as the walk passes it).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.report.problem(&rel, format!("cannot stat: {e}"));
                    if let Some(parent) = &mut self.parent {
                        // What the parent backup had here stays, subtree included.
                        parent.keep(&rel)?;
                    }
                    continue;
                }
            };
            let ft = meta.file_type();
            let (kind, descend) = if ft.is_dir() {
                (ItemKind::Dir, true)
            } else if ft.is_symlink() {
                (ItemKind::Symlink, false)
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    match self.links.get(&key) {
                        Some(first) => (ItemKind::Hardlink(first.clone()), false),
                        None => {
                            self.links.insert(key, rel.clone());
                            (ItemKind::File, false)
                        }
                    }
                } else {
                    (ItemKind::File, false)
                }
            } else {
                let what = if ft.is_socket() {
                    "socket"
                } else if ft.is_fifo() {
                    "fifo"
                } else if ft.is_block_device() {
                    "block device"
                } else if ft.is_char_device() {
                    "character device"
                } else {
                    "special file"
                };
                self.report.warning(&rel, format!("{what} skipped"));
                (ItemKind::Nothing, false)
            };
            if matches!(kind, ItemKind::File) {
                self.progress.add_total(meta.len());
            }
            let descend = descend && meta.dev() == self.root_dev;
            if !descend && ft.is_dir() {
                self.report
                    .warning(&rel, "mount point: contents not backed up".to_string());
            }
            let opened = match descend {
                true => Some(open_dir(&dir, &name, &meta)),
                false => None,
            };
            let located = (rel.clone(), abs.clone(), dir.clone(), name.clone(), at);
            if !self.emit(located, Some(meta), kind)? {
                return Ok(());
            }
            match opened {
                None => {}
                // Before a listing (a wait on NFS), the workers get what there is.
                Some(Ok(fd)) => match self.flush_then_list(Arc::new(fd), &abs, &rel) {
                    Some(cursor) => stack.push(cursor),
                    None => self.keep_below(&rel)?,
                },
                Some(Err(Unlisted::Gone)) => {}
                Some(Err(Unlisted::Kept(why))) => {
                    self.report.problem(&rel, why);
                    self.keep_below(&rel)?;
                }
            }
        }
        self.flush();
        Ok(())
    }

    fn flush_then_list(
        &mut self,
        fd: Arc<OwnedFd>,
        abs: &std::path::Path,
        rel: &[u8],
    ) -> Option<DirCursor> {
        if self.flushed.elapsed() >= BATCH_WAIT {
            self.flush();
        }
        self.list(fd, abs, rel)
    }
}
