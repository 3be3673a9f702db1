//! Where a repository's objects live: a [`Backend`] stores named objects
//! (packs, layers, the config, lock files) under slash-separated keys such
//! as `packs/ab/<id>` or `tmp/<name>`.
//!
//! Two backends implement the trait and pass one conformance suite
//! ([`conformance::run`]):
//! - [`PosixBackend`]: a directory, locally mounted NFS exports included;
//! - [`NfsBackend`]: an NFS export reached with a userspace client (NFSv3 or
//!   NFSv4.1), so no kernel client, mount or root is needed.
//!
//! Every object is written once under a temporary key, made durable with
//! [`ObjectWriter::finish`] and then published under its final key with
//! [`Backend::publish`]. Nothing is modified in place.
//!
//! Each method states what is durable when it returns: "durable" means it
//! survives a crash of this process, of the client machine and of the
//! server.

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{Error, Result};

pub mod conformance;
mod location;
mod nfs;
mod posix;

pub use location::Location;

/// The permission bits of what a backend creates in the repository. The
/// NFS backup driver's rule by default: data and metadata `0660`,
/// directories `0770` (whatever the process's umask), so the repository is
/// never world-readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modes {
    pub file: u32,
    pub dir: u32,
}

impl Default for Modes {
    fn default() -> Self {
        Modes {
            file: 0o660,
            dir: 0o770,
        }
    }
}
pub use nfs::{NfsBackend, DEFAULT_RETRY_BUDGET};
pub use posix::PosixBackend;

/// What [`Backend::stat`] tells about an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    pub len: u64,
    /// Last modification, by the server's clock.
    pub mtime: SystemTime,
}

/// Space on the filesystem holding the repository, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Space {
    /// What this user may still write.
    pub available: u64,
    pub total: u64,
}

/// A store of named objects. Keys are relative, slash-separated, and never
/// contain `..` or empty components; the caller builds them.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The repository's location for messages: a directory or `nfs://` URL.
    fn location(&self) -> &str;

    /// Creates directory `dir` and any missing parents. Durable on return.
    fn create_dir(&self, dir: &str) -> Result<()>;

    /// Starts a new object at `key`, which callers name uniquely (a
    /// temporary key). Nothing written is durable until
    /// [`ObjectWriter::finish`] returns; a writer dropped unfinished leaves
    /// a partial object for the caller to remove.
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>>;

    /// Makes the finished object `from` visible at `to` and removes the
    /// name `from`. With `exclusive`, fails with [`Error::Io`] of kind
    /// `AlreadyExists` when `to` exists, leaving both untouched (this is how
    /// locks are created atomically); without it, `to` is replaced.
    /// Durable on return: after any crash, `to` names the whole object.
    fn publish(&self, from: &str, to: &str, exclusive: bool) -> Result<()>;

    /// Renames `from` to `to`, replacing `to`. Durable on return.
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Opens an object to read byte ranges of it. A missing object is
    /// `Error::Io` of kind `NotFound`.
    fn open(&self, key: &str) -> Result<Box<dyn ObjectReader>>;

    /// Reads a whole (small) object.
    fn read(&self, key: &str) -> Result<Vec<u8>> {
        let reader = self.open(key)?;
        let len = usize::try_from(reader.len())
            .map_err(|_| Error::Bug(format!("{key} is too large to read whole")))?;
        let mut buf = vec![0u8; len];
        reader.read_at(0, &mut buf)?;
        Ok(buf)
    }

    /// Size and mtime of an object, or `None` when there is none.
    fn stat(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Names of the entries directly inside `dir`, in no order. A missing
    /// directory is `Error::Io` of kind `NotFound`.
    fn list(&self, dir: &str) -> Result<Vec<String>>;

    /// Removes an object; a missing one is not an error. Durable on return.
    fn remove(&self, key: &str) -> Result<()>;

    /// Removes the empty directory `dir`; a missing one is not an error.
    fn remove_dir(&self, dir: &str) -> Result<()>;

    /// Sets an object's mtime to now (lock heartbeats). Not necessarily
    /// durable: a lost touch only makes a lock look older.
    fn touch(&self, key: &str) -> Result<()>;

    /// Free and total space where the repository lives.
    fn space(&self) -> Result<Space>;
}

/// An object being written, sequentially.
pub trait ObjectWriter: Write + Send {
    /// Makes every byte written durable (fsync, or NFS COMMIT). The object
    /// keeps its temporary key until [`Backend::publish`].
    fn finish(self: Box<Self>) -> Result<()>;
}

/// An object open for reading by byte range. Safe to share between threads.
pub trait ObjectReader: Send + Sync {
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`. Reading past the end is `Error::Io` of
    /// kind `UnexpectedEof`: the object is shorter than its reader expects.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// The most bytes one read of [`ObjectReader::read_shared`] should ask
    /// for, when this backend receives data into buffers of its own and can
    /// lend them (NFS: the largest READ the server accepts). `None` when a
    /// read is best made into the caller's buffer with `read_at` (a local
    /// file, read from the page cache).
    fn piece_len(&self) -> Option<usize> {
        None
    }

    /// Reads `ranges` (each ending where the next starts) and lends back
    /// the bytes as they were received, without copying them: the pieces
    /// hold every byte of the ranges, in order, and each range starts a new
    /// piece, but a range may come in several pieces (a server may return
    /// fewer bytes than asked). Reading past the end is `Error::Io` of kind
    /// `UnexpectedEof`, as with `read_at`.
    fn read_shared(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        ranges
            .iter()
            .map(|r| {
                let len = usize::try_from(r.end.saturating_sub(r.start))
                    .map_err(|_| Error::Bug(format!("a read of {r:?} does not fit in memory")))?;
                let mut buf = vec![0; len];
                self.read_at(r.start, &mut buf)?;
                Ok(Bytes::from(buf))
            })
            .collect()
    }
}

/// The kind of an I/O error, when `e` is one.
pub fn io_kind(e: &Error) -> Option<std::io::ErrorKind> {
    match e {
        Error::Io { source, .. } => Some(source.kind()),
        Error::NoSpace { .. } => Some(std::io::ErrorKind::StorageFull),
        _ => None,
    }
}

/// Checks a key: relative, no empty, `.` or `..` components.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'));
    if bad {
        return Err(Error::Bug(format!("invalid object key {key:?}")));
    }
    Ok(())
}

/// An `Error::Io` on `key` of `backend`.
pub(crate) fn io_error(location: &str, key: &str, source: std::io::Error) -> Error {
    let path = if key.is_empty() {
        PathBuf::from(location)
    } else {
        PathBuf::from(format!("{}/{key}", location.trim_end_matches('/')))
    };
    Error::io(path, source)
}
