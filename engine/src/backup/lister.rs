//! The walk's lister: a thread of its own that lists the share's
//! directories in the order the walk enters them, ahead of it.
//!
//! Listing (`getdents`, then an `lstat` per name) is most of a walk's work
//! when little has changed; the walk proper (paths, the parent view,
//! hardlinks, hand-off to the workers) is the rest. Split over two threads,
//! neither waits for the other while the lister stays ahead. The two agree
//! on which directories are entered through [`descends`], and each listing
//! names the directory it is of, so a disagreement is caught, never
//! silently misattributed.
//!
//! Listings go over in batches of at least [`BATCH_NAMES`] names (or fewer
//! when the lister is about to wait, or listings are slow), so the hand-off
//! costs one wake-up per batch, not one per directory; at most
//! [`AHEAD_BATCHES`] batches wait.
//!
//! Where storage is fast, the `lstat` of a name whose directory entry says
//! it is not a directory is left to the walk while the lister is not well
//! ahead ([`AHEAD_TO_STAT_ALL`]): the lister needs only the directories', so
//! the two threads share that work.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use rustix::fs::FileType;

use super::exclude::Excluder;
use super::listing::{os, Child, DirCursor, Listings, Unlisted};
use super::stat::Stat;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Names a batch of listings gathers before it is handed over (where
/// listings are fast; where they are slow, each goes on its own).
const BATCH_NAMES: usize = 512;
/// Batches handed over and not yet taken by the walk.
const AHEAD_BATCHES: usize = 4;
/// Batches waiting for the walk from which the lister is ahead enough to
/// take every `lstat` itself: the two threads share that work so that
/// neither waits for the other.
const AHEAD_TO_STAT_ALL: usize = 2;

/// Whether the walk enters the child `name` (with `meta`, its `lstat`) of a
/// directory it walks: a directory of the share's device whose name can be
/// stored. The lister and the walk both decide by this.
pub fn descends(name: &OsStr, meta: &Stat, root_dev: u64) -> bool {
    meta.file_type() == FileType::Directory && meta.dev == root_dev && storable(name)
}

/// Whether `name` can be a component of a stored path (below a stored path,
/// it makes one).
pub fn storable(name: &OsStr) -> bool {
    let name = name.as_bytes();
    !name.contains(&b'/') && strata_format::path::validate(name).is_ok()
}

/// One directory's listing, as handed to the walk.
pub struct Handed {
    /// The inode of the directory it is of.
    pub ino: u64,
    pub listed: std::result::Result<(Arc<OwnedFd>, Vec<Child>), Unlisted>,
}

/// The listings, in the order the walk enters the directories: the share's
/// root first.
pub struct Stream {
    rx: Receiver<Result<Vec<Handed>>>,
    queue: VecDeque<Handed>,
}

impl Stream {
    /// Whether the next listing is here (the walk need not wait for it).
    pub fn ready(&self) -> bool {
        !self.queue.is_empty() || !self.rx.is_empty()
    }

    /// The next listing, waited for if need be.
    pub fn next(&mut self) -> Result<Handed> {
        if self.queue.is_empty() {
            let batch = self
                .rx
                .recv()
                .map_err(|_| Error::Bug("the walk's lister stopped early".into()))?;
            self.queue = batch?.into();
        }
        self.queue
            .pop_front()
            .ok_or_else(|| Error::Bug("the walk's lister handed over an empty batch".into()))
    }
}

/// Starts the lister of the share open as `root` (inode `root_ino`) on a
/// thread of `scope`; each listing is cut by `exclude`'s rules before the
/// walk gets it. It stops when the walk drops the stream.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    root: OwnedFd,
    root_ino: u64,
    listings: Listings,
    progress: &'scope Progress,
    exclude: Option<&'scope Excluder>,
) -> Stream {
    let (tx, rx) = crossbeam_channel::bounded(AHEAD_BATCHES);
    scope.spawn(move || {
        let mut lister = Lister {
            tx,
            batch: Vec::new(),
            names: 0,
            listings,
            exclude,
        };
        if let Err(e) = lister.run(root, root_ino, progress) {
            lister.batch.clear();
            let _ = lister.tx.send(Err(e));
        }
    });
    Stream {
        rx,
        queue: VecDeque::new(),
    }
}

struct Lister<'a> {
    tx: Sender<Result<Vec<Handed>>>,
    batch: Vec<Handed>,
    names: usize,
    listings: Listings,
    exclude: Option<&'a Excluder>,
}

/// The lister stopped because the walk did.
struct Stopped;

impl Lister<'_> {
    fn run(&mut self, root: OwnedFd, root_ino: u64, progress: &Progress) -> Result<()> {
        let root_dev = self.listings.root_dev();
        // Each cursor goes through the subdirectories the walk enters.
        let mut stack: Vec<DirCursor> = Vec::new();
        let listed = self.listings.list(root);
        if let Some(cursor) = self.hand(root_ino, Vec::new(), listed, root_dev) {
            stack.push(cursor);
        }
        while let Some(top) = stack.last_mut() {
            progress.check()?;
            self.listings.ahead(top);
            let Some(Child {
                name,
                meta,
                pending,
            }) = top.next_child()
            else {
                stack.pop();
                continue;
            };
            let Some(Ok(meta)) = meta else {
                return Err(Error::Bug(
                    "the lister kept a directory it cannot stat".into(),
                ));
            };
            let listed = match pending {
                Some(pending) if !pending.claim() => {
                    let listed = pending.wait();
                    match listed.try_recv() {
                        Ok(listed) => listed,
                        Err(_) => {
                            // The walk gets what there is while this waits.
                            if self.flush().is_err() {
                                return Ok(());
                            }
                            listed
                                .recv()
                                .map_err(|_| Error::Bug("a directory listing was lost".into()))?
                        }
                    }
                }
                _ => {
                    // Ahead of the walk, this thread takes every `lstat`;
                    // otherwise only the directories'.
                    self.listings.stat_all(self.tx.len() >= AHEAD_TO_STAT_ALL);
                    self.listings.open_and_list(&top.fd, os(&name), &meta)
                }
            };
            let rel = strata_format::path::join(&top.rel, &name);
            if let Some(cursor) = self.hand(meta.ino, rel, listed, root_dev) {
                stack.push(cursor);
            }
            // Where listings are slow, each is worth a hand-off of its own:
            // the walk (and its read-ahead) must not wait for a batch.
            let full = self.names >= BATCH_NAMES || self.listings.is_slow();
            if full && self.flush().is_err() {
                return Ok(());
            }
        }
        let _ = self.flush();
        Ok(())
    }

    /// Queues `listed`, the listing of the directory `rel`, for the walk;
    /// returns a cursor over the subdirectories the walk will enter.
    fn hand(
        &mut self,
        ino: u64,
        rel: Vec<u8>,
        listed: super::listing::Listed,
        root_dev: u64,
    ) -> Option<DirCursor> {
        let (listed, cursor) = match listed {
            Ok((fd, mut children)) => {
                if let Some(exclude) = self.exclude {
                    exclude.filter(&fd, &rel, &mut children);
                }
                let fd = Arc::new(fd);
                self.names += children.len() + 1;
                let dirs: Vec<Child> = children
                    .iter()
                    .filter_map(|c| match &c.meta {
                        Some(Ok(meta)) if descends(os(&c.name), meta, root_dev) => Some(Child {
                            name: c.name.clone(),
                            meta: Some(Ok(*meta)),
                            pending: None,
                        }),
                        _ => None,
                    })
                    .collect();
                let cursor = (!dirs.is_empty()).then(|| DirCursor::new(rel, fd.clone(), dirs));
                (Ok((fd, children)), cursor)
            }
            Err(why) => {
                self.names += 1;
                (Err(why), None)
            }
        };
        self.batch.push(Handed { ino, listed });
        cursor
    }

    fn flush(&mut self) -> std::result::Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.names = 0;
        let batch = std::mem::take(&mut self.batch);
        self.tx.send(Ok(batch)).map_err(|_| Stopped)
    }
}
