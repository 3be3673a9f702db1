//! Incremental backups: the parent chain's view beside the walk.
//!
//! The walk and the parent's merged view are both in path order, so one
//! cursor moves through the view as the walk goes: each walked path gets its
//! parent entry (if any), and every parent path the walk passed without
//! seeing is deleted — one tombstone per deleted path, a directory's whole
//! subtree included.
//!
//! A path whose `lstat` matches its parent entry (kind, size, mode, owner,
//! mtime, ctime, inode) is unchanged: it is not read and not recorded, its
//! chunk list stays the parent's. Extended attributes are not read either:
//! setting one moves the ctime. An entry the parent recorded while it may
//! still have been changing is never trusted this way (see [`RACY_WINDOW_NS`]).

use std::cmp::Ordering;

use strata_format::layer::{Entry, EntryKind};
use strata_format::path;

use super::kind::ItemKind;
use super::stat::Stat;
use crate::error::{Error, Result};

/// An entry whose mtime or ctime is this close to (or after) the moment its
/// backup started reading may have changed again after it was read within
/// the same timestamp tick, invisibly to `lstat`. Such entries are re-read by
/// the next incremental. Two seconds cover the coarsest clocks file servers
/// use (FAT's two-second mtimes); on a nightly schedule it costs nothing.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// The parent chain's view, consumed in walk order.
pub struct ParentCursor<'a> {
    view: Box<dyn Iterator<Item = Result<Entry>> + Send + 'a>,
    head: Option<Entry>,
    tombstones: Vec<Vec<u8>>,
}

impl<'a> ParentCursor<'a> {
    /// A cursor over `view`, the parent chain's merged view in path order.
    pub fn new(view: impl Iterator<Item = Result<Entry>> + Send + 'a) -> Result<Self> {
        let mut view = Box::new(view);
        let head = view.next().transpose()?;
        Ok(ParentCursor {
            view,
            head,
            tombstones: Vec::new(),
        })
    }

    fn pop(&mut self) -> Result<Option<Entry>> {
        let next = self.view.next().transpose()?;
        Ok(std::mem::replace(&mut self.head, next))
    }

    /// Skips the parent's entries strictly below `dir`.
    fn skip_below(&mut self, dir: &[u8]) -> Result<()> {
        while self
            .head
            .as_ref()
            .is_some_and(|h| path::is_within(&h.path, dir))
        {
            self.pop()?;
        }
        Ok(())
    }

    fn delete(&mut self, gone: Entry) -> Result<()> {
        if matches!(gone.kind, EntryKind::Dir) {
            self.skip_below(&gone.path)?;
        }
        self.tombstones.push(gone.path);
        Ok(())
    }

    /// The parent's entry at `p`, the next path of the walk; parent paths
    /// before `p` are recorded as deleted. A parent directory that is no
    /// longer a directory is deleted with its subtree (the new entry at `p`
    /// then replaces it).
    pub fn take(&mut self, p: &[u8], is_dir: bool) -> Result<Option<Entry>> {
        loop {
            let order = match &self.head {
                None => return Ok(None),
                Some(head) => path::cmp(&head.path, p),
            };
            let Some(entry) = (match order {
                Ordering::Greater => return Ok(None),
                Ordering::Less | Ordering::Equal => self.pop()?,
            }) else {
                return Err(Error::Bug("parent cursor lost its head".into()));
            };
            if order == Ordering::Less {
                self.delete(entry)?;
                continue;
            }
            if matches!(entry.kind, EntryKind::Dir) && !is_dir {
                self.skip_below(p)?;
                self.tombstones.push(p.to_vec());
            }
            return Ok(Some(entry));
        }
    }

    /// Keeps what the parent has strictly below the directory `dir`, which
    /// the walk cannot enter: nothing there becomes a deletion.
    pub fn keep_below(&mut self, dir: &[u8]) -> Result<()> {
        self.skip_below(dir)
    }

    /// Keeps the parent's entry at `p` (a path the walk found but cannot
    /// stat) and, for a directory, everything below it.
    pub fn keep(&mut self, p: &[u8]) -> Result<()> {
        if let Some(kept) = self.take(p, true)? {
            if matches!(kept.kind, EntryKind::Dir) {
                self.skip_below(p)?;
            }
        }
        Ok(())
    }

    /// Deletes every parent path the walk did not reach; returns the
    /// tombstones, in path order.
    pub fn finish(mut self) -> Result<Vec<Vec<u8>>> {
        while let Some(gone) = self.pop()? {
            self.delete(gone)?;
        }
        Ok(self.tombstones)
    }
}

/// Whether the walk's `lstat` shows the parent's entry unchanged. `racy_from`
/// is the parent's data timestamp minus [`RACY_WINDOW_NS`].
pub fn unchanged(kind: &ItemKind, meta: &Stat, parent: &Entry, racy_from: i64) -> bool {
    let same_kind = match (kind, &parent.kind) {
        (ItemKind::File, EntryKind::File { size, .. }) => *size == meta.size,
        (ItemKind::Dir, EntryKind::Dir) | (ItemKind::Symlink, EntryKind::Symlink { .. }) => true,
        (ItemKind::Hardlink(now), EntryKind::Hardlink { target }) => now == target,
        _ => false,
    };
    same_kind
        && parent.mode == meta.mode & 0o7777
        && parent.uid == meta.uid
        && parent.gid == meta.gid
        && parent.mtime_ns == meta.mtime_ns
        && parent.ctime_ns == meta.ctime_ns
        && parent.inode == meta.ino
        && parent.mtime_ns.max(parent.ctime_ns) < racy_from
}

/// Whether a freshly read entry says nothing the parent's does not. With
/// `rehash`, ctime and inode are ignored: the sources that need a rehash
/// are those where they change without the file changing.
pub fn same(new: &Entry, parent: &Entry, rehash: bool) -> bool {
    new.path == parent.path
        && new.mode == parent.mode
        && new.uid == parent.uid
        && new.gid == parent.gid
        && new.mtime_ns == parent.mtime_ns
        && new.xattrs == parent.xattrs
        && new.kind == parent.kind
        && (rehash || (new.ctime_ns == parent.ctime_ns && new.inode == parent.inode))
}
