//! Listing the directories of a walk: each opened from its parent's
//! descriptor (never through a symlink, and only if it is still the
//! directory that was walked), its names read and sorted, and the names
//! `lstat`'ed (all of them, or only those that may be directories, the
//! walk taking the others: see [`Listings::stat_all`]).
//!
//! Where listings are slow (a share over NFS, a cold disk: each `lstat` a
//! round trip), the lister asks for the listings of the directories a
//! little ahead of where it is ([`Listings::ahead`]), on a pool of its own,
//! so the waits of a whole tree overlap while listings still leave in path
//! order. Where they are fast, that hand-off would cost more CPU than it
//! saves.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use rayon::prelude::*;
use rustix::fs::{FileType, Mode, OFlags};

use super::stat::Stat;
use crate::error::{Error, Result};

/// Where listings are slow, directories with at most this many names are
/// stat'ed by the thread that lists them; larger ones by the whole pool.
/// Where they are fast, the pool's wake-ups would cost more than it saves.
const SEQUENTIAL_STATS: usize = 32;
/// Subdirectories listed ahead of the lister's position in a directory
/// where listings are slow: one per thread of the pool.
const LOOKAHEAD: usize = 4;
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

/// A name in a listed directory: held inline when short (most are), so a
/// listing allocates once per directory rather than once per name.
pub type Name = smallvec::SmallVec<[u8; 32]>;

/// `name` as the OS takes it.
pub fn os(name: &Name) -> &OsStr {
    OsStr::from_bytes(name)
}

/// One name of a listed directory.
pub struct Child {
    pub name: Name,
    /// Its `lstat`; `None` where storage is fast and its directory entry
    /// says it is not a directory: the walk takes it (a lister only needs
    /// to know the directories, and the walk's thread has time to spare).
    pub meta: Option<std::io::Result<Stat>>,
    /// Its own listing, asked for ahead of the walk.
    pub pending: Option<Pending>,
}

/// A listing asked for ahead: whoever claims it first lists the directory,
/// the pool or the walk once it gets there, so the walk never waits for a
/// listing no one has started.
pub struct Pending {
    claimed: Arc<AtomicBool>,
    listed: Receiver<Listed>,
}

impl Pending {
    /// Claims the listing for the walk: `false` when the pool started it
    /// (then [`Pending::wait`] for it).
    pub fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::AcqRel)
    }

    /// The listing the pool started.
    pub fn wait(self) -> Receiver<Listed> {
        self.listed
    }
}

/// A directory, open, with its children in stored-path order.
pub type Listed = std::result::Result<(OwnedFd, Vec<Child>), Unlisted>;

/// A listed directory as the walk (or the lister) goes through it.
pub struct DirCursor {
    /// Its stored path (the lister keeps none).
    pub rel: Vec<u8>,
    pub fd: Arc<OwnedFd>,
    /// The children the walk has not taken yet.
    children: VecDeque<Child>,
    /// How many of them, from the front, have been looked at for listing ahead.
    looked: usize,
}

impl DirCursor {
    pub fn new(rel: Vec<u8>, fd: Arc<OwnedFd>, children: Vec<Child>) -> DirCursor {
        DirCursor {
            rel,
            fd,
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
    /// Whether listings are asked for ahead of the walk; shared with the
    /// walk, which reads ahead where listings are slow.
    ahead: Arc<AtomicBool>,
    /// Time spent in listings on the walk's thread, and their names.
    waited: std::time::Duration,
    names: u32,
    /// Where storage is fast: whether every name is `lstat`'ed, or only
    /// those that may be directories (the walk takes the others).
    stat_all: bool,
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
            ahead: Arc::new(AtomicBool::new(ahead)),
            waited: std::time::Duration::ZERO,
            names: 0,
            stat_all: true,
        })
    }

    /// Whether every name is `lstat`'ed where storage is fast (where it is
    /// slow, every name always is, here or on the pool).
    pub fn stat_all(&mut self, all: bool) {
        self.stat_all = all;
    }

    /// Lists the directory open as `fd` here and now.
    pub fn list(&mut self, fd: OwnedFd) -> Listed {
        let started = std::time::Instant::now();
        let slow = self.is_slow();
        let listed = children_of(fd, slow.then_some(&*self.pool), slow || self.stat_all);
        if let Ok((_, children)) = &listed {
            let names = u32::try_from(children.len()).unwrap_or(u32::MAX);
            self.names = self.names.saturating_add(names.saturating_add(1));
            self.waited += started.elapsed();
            if self.names >= SLOW_SAMPLE && self.waited > SLOW_PER_NAME.saturating_mul(self.names) {
                self.ahead.store(true, Ordering::Relaxed);
            }
        }
        listed
    }

    /// Whether listings proved slow (or listing ahead was asked for): the
    /// storage is a cold disk or remote, and reading ahead pays. The flag
    /// stays readable once the listings have moved to the lister.
    pub fn slow(&self) -> Arc<AtomicBool> {
        self.ahead.clone()
    }

    pub fn is_slow(&self) -> bool {
        self.ahead.load(Ordering::Relaxed)
    }

    pub fn root_dev(&self) -> u64 {
        self.root_dev
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
    /// [`LOOKAHEAD`] children of `cursor` (the lister's cursors hold
    /// subdirectories only).
    pub fn ahead(&self, cursor: &mut DirCursor) {
        if !self.is_slow() {
            return;
        }
        let until = LOOKAHEAD.min(cursor.children.len());
        while cursor.looked < until {
            let child = &mut cursor.children[cursor.looked];
            cursor.looked += 1;
            let Some(Ok(walked)) = &child.meta else {
                continue;
            };
            if walked.file_type() != FileType::Directory || walked.dev != self.root_dev {
                continue;
            }
            let (tx, rx) = crossbeam_channel::bounded(1);
            let claimed = Arc::new(AtomicBool::new(false));
            let (parent, name, walked) = (cursor.fd.clone(), child.name.clone(), *walked);
            let pool = self.pool.clone();
            let claim = claimed.clone();
            self.pool.spawn(move || {
                if claim.swap(true, Ordering::AcqRel) {
                    return;
                }
                let listed = open_dir(&parent, os(&name), &walked)
                    .and_then(|fd| children_of(fd, Some(&pool), true));
                // The walk may have stopped meanwhile.
                let _ = tx.send(listed);
            });
            child.pending = Some(Pending {
                claimed,
                listed: rx,
            });
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

/// The children of the directory open as `fd`, in stored-path order, each
/// `lstat`'ed (on `pool`, for a large directory) if `all`, else only those
/// that may be directories.
fn children_of(fd: OwnedFd, pool: Option<&rayon::ThreadPool>, all: bool) -> Listed {
    let names = match list_names(&fd) {
        Ok(names) => names,
        Err(e) => return Err(Unlisted::Kept(format!("cannot list directory: {e}"))),
    };
    let stat = |(name, kind): (Name, FileType)| Child {
        meta: match all || matches!(kind, FileType::Directory | FileType::Unknown) {
            true => Some(Stat::at(&fd, os(&name))),
            false => None,
        },
        name,
        pending: None,
    };
    let children = match (names.len(), pool) {
        (SEQUENTIAL_STATS.., Some(pool)) => {
            pool.install(|| names.into_par_iter().map(stat).collect())
        }
        _ => names.into_iter().map(stat).collect(),
    };
    Ok((fd, children))
}

/// The names in the directory open as `fd`, with the type their entries
/// give, sorted by their bytes (the stored-path order of siblings).
/// The descriptor is fresh from `open`, read once, here.
fn list_names(fd: &OwnedFd) -> std::io::Result<Vec<(Name, FileType)>> {
    thread_local! {
        /// One `getdents` covers a small directory; a large one takes a few.
        /// Kept per thread: a fresh buffer per directory costs the
        /// allocator more than the listing.
        static BUF: std::cell::RefCell<Vec<std::mem::MaybeUninit<u8>>> =
            std::cell::RefCell::new(vec![std::mem::MaybeUninit::uninit(); 32 << 10]);
    }
    let mut names = BUF.with_borrow_mut(|buf| -> std::io::Result<Vec<(Name, FileType)>> {
        let mut dir = rustix::fs::RawDir::new(fd, buf.as_mut_slice());
        let mut names = Vec::new();
        while let Some(entry) = dir.next() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push((Name::from_slice(name), entry.file_type()));
            }
        }
        Ok(names)
    })?;
    names.sort_unstable_by(|a, b| a.0.as_slice().cmp(b.0.as_slice()));
    Ok(names)
}
