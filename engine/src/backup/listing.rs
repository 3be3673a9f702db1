//! Listing the directories of a walk: each opened from its parent's
//! descriptor (never through a symlink, and only if it is still the
//! directory that was walked), its names read and sorted, each name
//! `lstat`'ed.
//!
//! Where listings are slow (a share over NFS, a cold disk: each `lstat` a
//! round trip), the walk asks for the listings of the directories a little
//! ahead of where it is ([`Listings::ahead`]), on a pool of its own, so the
//! waits of a whole tree overlap while items still leave in path order.
//! Where they are fast, that hand-off would cost more CPU than it saves.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use rayon::prelude::*;
use rustix::fs::{FileType, Mode, OFlags};

use super::stat::Stat;
use crate::error::{Error, Result};

/// Directories with at most this many names are stat'ed by the thread that
/// lists them; larger ones by the whole pool.
const SEQUENTIAL_STATS: usize = 32;
/// Names of a directory looked ahead of the walk's position in it: the
/// directories among them are listed before the walk reaches them.
const LOOKAHEAD: usize = 16;
/// Listings that took longer than this per name on average turn listing
/// ahead on (a local, cached `lstat` takes a few microseconds), once they
/// have covered [`SLOW_SAMPLE`] names.
const SLOW_PER_NAME: std::time::Duration = std::time::Duration::from_micros(15);
const SLOW_SAMPLE: u32 = 256;

/// Why a directory cannot be walked into.
pub enum Unlisted {
    /// It is gone: what the parent backup had below it is deleted.
    Gone,
    /// It cannot be read, or is not the directory that was walked: what the
    /// parent backup had below it is kept.
    Kept(String),
}

/// One name of a listed directory.
pub struct Child {
    pub name: OsString,
    pub meta: std::io::Result<Stat>,
    /// Its own listing, asked for ahead of the walk.
    pub pending: Option<Receiver<Listed>>,
}

/// A directory, open, with its children in stored-path order.
pub type Listed = std::result::Result<(OwnedFd, Vec<Child>), Unlisted>;

/// A listed directory as the walk goes through it.
pub struct DirCursor {
    pub rel: Vec<u8>,
    pub fd: Arc<OwnedFd>,
    /// The children the walk has not taken yet.
    children: VecDeque<Child>,
    /// How many of them, from the front, have been looked at for listing ahead.
    looked: usize,
}

impl DirCursor {
    pub fn new(rel: Vec<u8>, fd: OwnedFd, children: Vec<Child>) -> DirCursor {
        DirCursor {
            rel,
            fd: Arc::new(fd),
            children: children.into(),
            looked: 0,
        }
    }

    /// The next child; its listing, if one was asked for ahead, comes with it.
    pub fn next_child(&mut self) -> Option<Child> {
        let child = self.children.pop_front()?;
        self.looked = self.looked.saturating_sub(1);
        Some(child)
    }
}

/// The walk's listing pool.
pub struct Listings {
    pool: Arc<rayon::ThreadPool>,
    /// Directories on other devices are mount points, never listed.
    root_dev: u64,
    /// Whether listings are asked for ahead of the walk.
    ahead: bool,
    /// Time spent in listings on the walk's thread, and their names.
    waited: std::time::Duration,
    names: u32,
}

impl Listings {
    /// With `ahead`, listings are asked for ahead from the start; otherwise
    /// once one is slow.
    pub fn new(threads: usize, root_dev: u64, ahead: bool) -> Result<Listings> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("strata-list-{i}"))
            .build()
            .map_err(|e| Error::Bug(format!("cannot start the walk pool: {e}")))?;
        Ok(Listings {
            pool: Arc::new(pool),
            root_dev,
            ahead,
            waited: std::time::Duration::ZERO,
            names: 0,
        })
    }

    /// Lists the directory open as `fd` here and now.
    pub fn list(&mut self, fd: OwnedFd) -> Listed {
        let started = std::time::Instant::now();
        let listed = children_of(fd, &self.pool);
        if let Ok((_, children)) = &listed {
            let names = u32::try_from(children.len()).unwrap_or(u32::MAX);
            self.names = self.names.saturating_add(names.saturating_add(1));
            self.waited += started.elapsed();
            self.ahead |=
                self.names >= SLOW_SAMPLE && self.waited > SLOW_PER_NAME.saturating_mul(self.names);
        }
        listed
    }

    /// Whether listings proved slow (or listing ahead was asked for): the
    /// storage is a cold disk or remote, and reading ahead pays.
    pub fn slow(&self) -> bool {
        self.ahead
    }

    /// Opens and lists the child directory `name` of `parent` here and now.
    pub fn open_and_list(
        &mut self,
        parent: &OwnedFd,
        name: &std::ffi::OsStr,
        walked: &Stat,
    ) -> Listed {
        let fd = open_dir(parent, name, walked)?;
        self.list(fd)
    }

    /// Asks for the listings of the directories among the next
    /// [`LOOKAHEAD`] children of `cursor`.
    pub fn ahead(&self, cursor: &mut DirCursor) {
        if !self.ahead {
            return;
        }
        let until = LOOKAHEAD.min(cursor.children.len());
        while cursor.looked < until {
            let child = &mut cursor.children[cursor.looked];
            cursor.looked += 1;
            let Ok(walked) = &child.meta else { continue };
            if walked.file_type() != FileType::Directory || walked.dev != self.root_dev {
                continue;
            }
            let (tx, rx) = crossbeam_channel::bounded(1);
            let (parent, name, walked) = (cursor.fd.clone(), child.name.clone(), *walked);
            let pool = self.pool.clone();
            self.pool.spawn(move || {
                let listed =
                    open_dir(&parent, &name, &walked).and_then(|fd| children_of(fd, &pool));
                // The walk may have stopped meanwhile.
                let _ = tx.send(listed);
            });
            child.pending = Some(rx);
        }
    }
}

/// Opens `name` below `dir` as a directory, without following a symlink,
/// and checks it is the one `walked` describes.
fn open_dir(dir: &OwnedFd, name: &std::ffi::OsStr, walked: &Stat) -> Result<OwnedFd, Unlisted> {
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
    match Stat::of(&fd) {
        Ok(st) if (st.dev, st.ino) == (walked.dev, walked.ino) => Ok(fd),
        Ok(_) => Err(Unlisted::Kept(
            "replaced by another directory while the backup ran".into(),
        )),
        Err(e) => Err(Unlisted::Kept(format!("cannot stat directory: {e}"))),
    }
}

/// The children of the directory open as `fd`, each `lstat`'ed; on a
/// thread of `pool`.
fn children_of(fd: OwnedFd, pool: &rayon::ThreadPool) -> Listed {
    let names = match list_names(&fd) {
        Ok(names) => names,
        Err(e) => return Err(Unlisted::Kept(format!("cannot list directory: {e}"))),
    };
    let stat = |name: OsString| Child {
        meta: Stat::at(&fd, &name),
        name,
        pending: None,
    };
    let children = match names.len() {
        0..=SEQUENTIAL_STATS => names.into_iter().map(stat).collect(),
        _ => pool.install(|| names.into_par_iter().map(stat).collect()),
    };
    Ok((fd, children))
}

/// The names in the directory open as `fd`, sorted by their bytes (the
/// stored-path order of siblings).
/// The descriptor is fresh from `open`, read once, here.
fn list_names(fd: &OwnedFd) -> std::io::Result<Vec<OsString>> {
    // One `getdents` covers a small directory; a large one takes a few.
    let mut buf = vec![std::mem::MaybeUninit::uninit(); 32 << 10];
    let mut dir = rustix::fs::RawDir::new(fd, &mut buf);
    let mut names = Vec::new();
    while let Some(entry) = dir.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}
