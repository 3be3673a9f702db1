//! Stage 1: walk the share depth-first in stored-path order.
//!
//! The walk takes each directory's listing (its names, sorted, and their
//! `lstat`) from the lister ([`super::lister`]), a thread of its own that
//! keeps ahead of it, and hands out the items. Items leave numbered in
//! order, so later stages may finish them out of order and the layer is
//! still written sorted. In an incremental backup, an item whose `lstat`
//! matches its parent entry is counted here and goes no further: its entry
//! stands. Symlinks are never followed. Hardlinks are detected here, in
//! order, so the first name of an inode is the one that carries the
//! content.
//!
//! Nothing outside the share is ever read, whatever is renamed or swapped
//! for a symlink while the walk runs: the root is opened once (and refused
//! if it is a symlink), each directory is opened from its parent's
//! descriptor without following a symlink and must be the very directory
//! (device and inode) that was walked, and every later access to an item
//! goes through its directory's descriptor ([`WalkItem::at`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags};

use crossbeam_channel::{Receiver, Sender};

use strata_format::layer::{Entry, EntryKind};

use super::diff::ParentCursor;
use super::exclude::Excluder;
use super::kind::ItemKind;
use super::lister::{self, Handed};
use super::listing::{os, Child, DirCursor, Listings, Unlisted};
use super::read_ahead::{Opened, ReadAhead, Reads};
use super::report::Counters;
use super::report::Report;
use super::stat::Stat;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

pub struct WalkItem {
    pub seq: u64,
    pub rel: Vec<u8>,
    /// The item's directory, open; and its name there.
    dir: Arc<OwnedFd>,
    name: OsString,
    pub meta: Option<Stat>,
    pub kind: ItemKind,
    /// The parent chain's entry at this path (incremental backups).
    pub parent: Option<Entry>,
    /// The file, opened by the walk with its pages asked for; the first
    /// [`WalkItem::open`] takes it.
    opened: Cell<Option<Opened>>,
}

/// `name` in the directory open as `dir`, as a path through `/proc/self/fd`.
fn through(dir: &OwnedFd, name: &std::ffi::OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        p.push(name);
    }
    p
}

impl WalkItem {
    /// The item through its directory's open descriptor (`/proc/self/fd/N/name`):
    /// every read of it by path goes there, so no renamed or swapped parent
    /// can redirect it. The last component is never followed by those reads.
    pub fn at(&self) -> PathBuf {
        through(&self.dir, &self.name)
    }

    /// Opens the item for reading through its directory's descriptor,
    /// never following a symlink swapped in since the walk saw it (or takes
    /// the descriptor the walk opened so).
    pub fn open(&self) -> std::io::Result<fs::File> {
        if let Some(file) = self.opened.take().and_then(Opened::take) {
            return Ok(file);
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&*self.dir, &self.name, flags, Mode::empty())?;
        Ok(fs::File::from(fd))
    }
}

/// Items go to the workers in batches of up to this many, or of what there
/// is when the walk is about to wait for a listing and the batch has waited
/// [`BATCH_WAIT`]: one hand-off per item cost more than the work on an
/// unchanged one, and a slow listing (NFS) must not hold items back.
pub const BATCH: usize = 128;
const BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(2);
pub struct Walker<'a> {
    tx: Sender<Vec<WalkItem>>,
    batch: Vec<WalkItem>,
    flushed: std::time::Instant,
    parent: Option<ParentCursor<'a>>,
    read_ahead: Option<ReadAhead>,
    reads: Option<Reads>,
    /// Where the entries passed over unchanged are counted.
    counters: &'a Counters,
    /// Items passed over unchanged since the last hand-off (for progress).
    passed: u64,
    report: &'a Report,
    progress: &'a Progress,
    /// The directories' listings, from the lister, in the order they are entered.
    listed: lister::Stream,
    /// Whether listings proved slow (the lister's finding).
    slow: Arc<AtomicBool>,
    seq: u64,
    links: HashMap<(u64, u64), Vec<u8>>,
    root_dev: u64,
    root_path: PathBuf,
}

/// The walk thread; it returns the tombstones of the paths that are gone.
pub type WalkHandle<'scope> = std::thread::ScopedJoinHandle<'scope, Result<Vec<Vec<u8>>>>;

/// Starts a walk of `root` on a thread of `scope`; items arrive on the
/// receiver. With a `parent` view, each item carries its parent entry. With
/// `reads`, the files a backup will read are opened and read ahead
/// ([`super::read_ahead`]).
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    root: PathBuf,
    parent: Option<ParentCursor<'scope>>,
    reads: Option<Reads>,
    watch: Watch<'scope>,
) -> Result<(Receiver<Vec<WalkItem>>, WalkHandle<'scope>, u64)> {
    spawn_listing(scope, root, parent, reads, watch, false)
}

/// Where a walk reports (counts, problems, progress), and what it leaves out.
pub struct Watch<'a> {
    pub counters: &'a Counters,
    pub report: &'a Report,
    pub progress: &'a Progress,
    pub exclude: Option<&'a Excluder>,
}

/// [`spawn`], listing ahead from the start with `ahead`.
fn spawn_listing<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    root: PathBuf,
    parent: Option<ParentCursor<'scope>>,
    reads: Option<Reads>,
    watch: Watch<'scope>,
    ahead: bool,
) -> Result<(Receiver<Vec<WalkItem>>, WalkHandle<'scope>, u64)> {
    let Watch {
        counters,
        report,
        progress,
        exclude,
    } = watch;
    // A root that is a symlink is refused.
    let root_fd = crate::beneath::Beneath::open(&root)?.into_fd();
    let meta = Stat::of(&root_fd).at(&root)?;
    raise_fd_limit();
    let (tx, rx) = crossbeam_channel::bounded(1024 / BATCH);
    let listings = Listings::new(4, meta.dev, ahead)?;
    let slow = listings.slow();
    // Its own descriptor, so the listing reads from the start.
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
    let listed_root = rustix::fs::openat(&root_fd, ".", flags, Mode::empty())
        .map_err(std::io::Error::from)
        .at(&root)?;
    let listed = lister::spawn(scope, listed_root, meta.ino, listings, progress, exclude);
    let mut walker = Walker {
        tx,
        batch: Vec::with_capacity(BATCH),
        flushed: std::time::Instant::now(),
        parent,
        read_ahead: reads.map(|_| ReadAhead::default()),
        reads,
        counters,
        passed: 0,
        report,
        progress,
        listed,
        slow,
        seq: 0,
        links: HashMap::new(),
        root_dev: meta.dev,
        root_path: root.clone(),
    };
    let root_ino = meta.ino;
    let root_dev = meta.dev;
    let handle = scope.spawn(move || {
        walker.run(root.clone(), root_ino)?;
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
    /// Sends one item; `Ok(false)` when the consumers have gone (the backup stopped).
    fn emit(
        &mut self,
        (rel, dir, name): (&[u8], Arc<OwnedFd>, &OsStr),
        meta: Option<Stat>,
        kind: ItemKind,
    ) -> Result<bool> {
        let parent = match &mut self.parent {
            Some(cursor) => cursor.take(rel, matches!(kind, ItemKind::Dir))?,
            None => None,
        };
        if let (Some(meta), Some(inherited), Some(reads)) = (&meta, &parent, self.reads) {
            if reads.inherits(&kind, meta, inherited) {
                // The parent's entry stands: counted here, and nothing is
                // handed to the workers (most items, when little changed).
                self.counters.count(&inherited.kind);
                if let EntryKind::File { size, .. } = inherited.kind {
                    self.progress.add_bytes(size);
                }
                self.passed += 1;
                return Ok(true);
            }
        }
        // Where storage is fast, the kernel's own read-ahead is enough.
        let opened = match (&self.read_ahead, &meta) {
            (Some(ahead), Some(meta)) if self.slow.load(Ordering::Relaxed) => {
                ahead.open(&dir, name, &kind, meta)
            }
            _ => None,
        };
        let item = WalkItem {
            seq: self.seq,
            rel: rel.to_vec(),
            dir,
            name: name.to_os_string(),
            meta,
            kind,
            parent,
            opened: Cell::new(opened),
        };
        self.seq += 1;
        self.batch.push(item);
        Ok(self.batch.len() < BATCH || self.flush())
    }

    /// Hands the items gathered so far to the workers; `false` when the
    /// consumers have gone.
    fn flush(&mut self) -> bool {
        self.progress.add_files(std::mem::take(&mut self.passed));
        if self.batch.is_empty() {
            return true;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.flushed = std::time::Instant::now();
        self.tx.send(batch).is_ok()
    }

    /// The listing of the directory `ino`, the next one the walk enters.
    /// Before waiting for it (a listing over NFS), the workers get what
    /// there is.
    fn next_listing(&mut self, ino: u64) -> Result<Handed> {
        if !self.listed.ready() && self.flushed.elapsed() >= BATCH_WAIT {
            self.flush();
        }
        let handed = self.listed.next()?;
        if handed.ino != ino {
            return Err(Error::Bug(format!(
                "the walk's lister listed directory inode {} where the walk entered inode {ino}",
                handed.ino
            )));
        }
        Ok(handed)
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

    fn run(&mut self, root: PathBuf, root_ino: u64) -> Result<()> {
        let mut stack: Vec<DirCursor> = Vec::new();
        // The path of the child at hand, rebuilt in place for each: most
        // children's parent entries stand, and nothing of them is kept.
        let mut at = Vec::new();
        match self.next_listing(root_ino)?.listed {
            Ok((fd, children)) => stack.push(DirCursor::new(Vec::new(), fd, children)),
            Err(Unlisted::Gone | Unlisted::Kept(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "cannot list share path {}",
                    root.display()
                )))
            }
        }
        while let Some(top) = stack.last_mut() {
            self.progress.check()?;
            let Some(Child { name, meta, .. }) = top.next_child() else {
                stack.pop();
                continue;
            };
            at.clear();
            if !top.rel.is_empty() {
                at.extend_from_slice(&top.rel);
                at.push(b'/');
            }
            at.extend_from_slice(&name);
            let rel = at.as_slice();
            let name = os(&name);
            let dir = top.fd.clone();
            if !lister::storable(name) {
                self.report
                    .problem(rel, "name cannot be stored; skipped".to_string());
                continue;
            }
            // What the lister did not `lstat` (fast storage, not a
            // directory by its entry) is taken here.
            let listed_as_dir = meta.is_some();
            let meta = match meta.unwrap_or_else(|| Stat::at(&*dir, name)) {
                Ok(meta) if !listed_as_dir && meta.file_type() == FileType::Directory => {
                    // Replaced by a directory since it was listed: it was
                    // not listed as one, so it is not walked now.
                    self.report.problem(
                        rel,
                        "became a directory while the backup ran; not backed up".into(),
                    );
                    if let Some(parent) = &mut self.parent {
                        parent.keep(rel)?;
                    }
                    continue;
                }
                Ok(meta) => meta,
                // Gone since it was listed: deleted (the parent view's
                // cursor records it so as the walk passes it).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.report.problem(rel, format!("cannot stat: {e}"));
                    if let Some(parent) = &mut self.parent {
                        // What the parent backup had here stays, subtree included.
                        parent.keep(rel)?;
                    }
                    continue;
                }
            };
            let ft = meta.file_type();
            let kind = match ft {
                FileType::Directory => ItemKind::Dir,
                FileType::Symlink => ItemKind::Symlink,
                FileType::RegularFile => {
                    if meta.nlink > 1 {
                        let key = (meta.dev, meta.ino);
                        match self.links.get(&key) {
                            Some(first) => ItemKind::Hardlink(first.clone()),
                            None => {
                                self.links.insert(key, rel.to_vec());
                                ItemKind::File
                            }
                        }
                    } else {
                        ItemKind::File
                    }
                }
                special => {
                    let what = match special {
                        FileType::Socket => "socket",
                        FileType::Fifo => "fifo",
                        FileType::BlockDevice => "block device",
                        FileType::CharacterDevice => "character device",
                        _ => "special file",
                    };
                    self.report.warning(rel, format!("{what} skipped"));
                    ItemKind::Nothing
                }
            };
            if matches!(kind, ItemKind::File) {
                self.progress.add_total(meta.size);
            }
            let descend = lister::descends(name, &meta, self.root_dev);
            if !descend && ft == FileType::Directory {
                self.report
                    .warning(rel, "mount point: contents not backed up".to_string());
            }
            if !descend {
                if !self.emit((rel, dir, name), Some(meta), kind)? {
                    return Ok(());
                }
                continue;
            }
            let located = (rel, dir.clone(), name);
            if !self.emit(located, Some(meta), kind)? {
                return Ok(());
            }
            match self.next_listing(meta.ino)?.listed {
                Ok((fd, children)) => stack.push(DirCursor::new(rel.to_vec(), fd, children)),
                Err(Unlisted::Gone) => {}
                Err(Unlisted::Kept(why)) => {
                    self.report.problem(rel, why);
                    self.keep_below(rel)?;
                }
            }
        }
        self.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
