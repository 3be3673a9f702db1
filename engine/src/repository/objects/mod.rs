//! Where a repository's objects live: an [`ObjectStore`] keeps whole
//! objects under typed [`Key`]s (`packs/ab/<id>`, `layers/<id>`, ...; the
//! repository's `layout` names every one). Its verbs are an object
//! store's: put (with [`Cond::IfAbsent`] or [`Cond::IfMatch`]), get and
//! ranged get, stat, a recursive paged list, and a conditional delete. There
//! are no directories, renames or links: how an adapter publishes an object
//! whole is its own business.
//!
//! Adapters, all held to one conformance suite ([`conformance::run`]):
//! - [`PosixStore`]: a directory, locally mounted NFS exports included;
//! - [`NfsStore`]: an NFS export reached with a userspace client (NFSv3 or
//!   NFSv4.1), so no kernel client, mount or root is needed;
//! - [`s3::S3Store`]: a bucket of an S3-compatible object store;
//! - [`MemoryStore`]: in memory, for fast tests.
//!
//! The first two share [`files::Files`], which builds the object verbs
//! from a filesystem's (write under `tmp/`, fsync, then publish by link or
//! rename). [`Retrying`] and [`Limited`] wrap any adapter.
//!
//! Each method states what is durable when it returns: "durable" means it
//! survives a crash of this process, of the client machine and of the
//! server.

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;

use bytes::Bytes;

use crate::error::{Error, Result};

pub mod conformance;
pub mod files;
mod location;
mod memory;
mod nfs;
mod posix;
pub mod s3;
mod wrappers;

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
pub use files::Files;
pub(crate) use memory::MemoryReader;
pub use memory::MemoryStore;
pub use nfs::{NfsFs, DEFAULT_RETRY_BUDGET};
pub use posix::PosixFs;
pub use wrappers::{Limit, Limited, Policy, Retry, Retrying, Wrapped};

/// A repository in a directory.
pub type PosixStore = Files<PosixFs>;
/// A repository on an NFS export, through the userspace client.
pub type NfsStore = Files<NfsFs>;

/// An object's name in the store: relative, slash-separated, with no
/// empty, `.` or `..` component. The repository's layout builds them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Checks `key` and makes it a key.
    pub fn new(key: impl Into<String>) -> Result<Key> {
        let key = key.into();
        check_key(&key)?;
        Ok(Key(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One version of an object: a put that replaces it with other bytes
/// gives it a new etag. The same bytes put again may keep the etag (S3's
/// is their MD5), so a writer that must tell its versions apart (a lease
/// renewed) writes new bytes each time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Etag(pub String);

/// The condition a put or delete is made on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// Whatever is there.
    Any,
    /// Only if no object has the key (a put; fails with
    /// [`Error::Precondition`]).
    IfAbsent,
    /// Only if the object is the version `etag` names (fails with
    /// [`Error::Precondition`], also when there is no object).
    IfMatch(Etag),
}

/// What [`ObjectStore::stat`] tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub len: u64,
    pub etag: Etag,
}

/// Space on the filesystem holding the repository, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Space {
    /// What this user may still write.
    pub available: u64,
    pub total: u64,
}

/// One page of a listing, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<Key>,
    /// Where the next page starts (pass it as `after`); `None` on the last.
    pub next: Option<Key>,
}

/// How many keys one page of [`ObjectStore::list`] holds at most.
pub const PAGE: usize = 1000;

/// A put that was started and never committed, left by a writer that
/// died: `writer` names its process, when the adapter knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub name: String,
    pub writer: Option<crate::process::Tag>,
}

/// A store of whole objects under [`Key`]s.
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// The store's location for messages: a directory or `nfs://` URL.
    fn location(&self) -> &str;

    /// Starts a put of `key`. Nothing is visible until
    /// [`ObjectWriter::commit`] returns, which checks `cond` and publishes
    /// the object whole; a writer dropped uncommitted leaves nothing (or,
    /// if its process dies first, an [`Unfinished`] put).
    fn writer(&self, key: &Key, cond: Cond) -> Result<Box<dyn ObjectWriter>>;

    /// Puts a whole (small) object. Durable on return; the new etag.
    fn put(&self, key: &Key, body: &[u8], cond: Cond) -> Result<Etag> {
        put_by_writer(self, key, body, cond)
    }

    /// Opens an object to read byte ranges of it (the ranged get). A
    /// missing object is `Error::Io` of kind `NotFound`.
    fn open(&self, key: &Key) -> Result<Box<dyn ObjectReader>>;

    /// Reads a whole (small) object.
    fn get(&self, key: &Key) -> Result<Vec<u8>> {
        let reader = self.open(key)?;
        let len = usize::try_from(reader.len())
            .map_err(|_| Error::Bug(format!("{key} is too large to read whole")))?;
        let mut buf = vec![0u8; len];
        reader.read_at(0, &mut buf)?;
        Ok(buf)
    }

    /// Reads `range` of an object; past its end is `UnexpectedEof`.
    fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Vec<u8>> {
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| Error::Bug(format!("a read of {range:?} does not fit in memory")))?;
        let mut buf = vec![0u8; len];
        self.open(key)?.read_at(range.start, &mut buf)?;
        Ok(buf)
    }

    /// Size and etag of an object, or `None` when there is none.
    fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>>;

    /// The keys that start with `prefix` and sort after `after`, at any
    /// depth, in key order, at most [`PAGE`] of them.
    fn list(&self, prefix: &str, after: Option<&Key>) -> Result<Page>;

    /// Every key that starts with `prefix`, page after page.
    fn list_all(&self, prefix: &str) -> Result<Vec<Key>> {
        let mut out: Vec<Key> = Vec::new();
        let mut after = None;
        loop {
            let page = self.list(prefix, after.as_ref())?;
            out.extend(page.keys);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Removes an object. With [`Cond::Any`] a missing one is not an
    /// error; with [`Cond::IfMatch`] only that version is removed, or, on
    /// a store that cannot make a delete conditional (some S3 servers),
    /// nothing is and the call is `Unsupported`. Durable on return.
    fn delete(&self, key: &Key, cond: Cond) -> Result<()>;

    /// Free and total space where the objects live, when the store has
    /// such a limit.
    fn space(&self) -> Result<Option<Space>>;

    /// Puts that were started and never committed.
    fn unfinished(&self) -> Result<Vec<Unfinished>>;

    /// Removes what an unfinished put left. Durable on return.
    fn discard(&self, unfinished: &Unfinished) -> Result<()>;

    /// Whether [`Cond::IfAbsent`] and [`Cond::IfMatch`] on puts keep
    /// racing writers apart here (some S3 servers check, then write):
    /// leases can live in this store only where they do.
    fn conditions_hold(&self) -> bool {
        true
    }
}

/// An object being written, sequentially.
pub trait ObjectWriter: Write + Send {
    /// Makes every byte written durable, then the object visible at its
    /// key if the put's condition holds ([`Error::Precondition`] if not,
    /// and nothing is visible). Durable on return: after any crash, the
    /// key names the whole object. The new version's etag.
    fn commit(self: Box<Self>) -> Result<Etag>;
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

/// A writer that gathers an object's bytes and hands them whole to
/// `commit`: for stores whose put is one step (memory, one statement).
pub(crate) struct Gathered<F> {
    body: Vec<u8>,
    commit: F,
}

impl<F: FnOnce(Vec<u8>) -> Result<Etag> + Send> Gathered<F> {
    pub(crate) fn new(commit: F) -> Gathered<F> {
        Gathered {
            body: Vec::new(),
            commit,
        }
    }
}

impl<F: Send> Write for Gathered<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.body.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<F: FnOnce(Vec<u8>) -> Result<Etag> + Send> ObjectWriter for Gathered<F> {
    fn commit(self: Box<Self>) -> Result<Etag> {
        let Gathered { body, commit } = *self;
        commit(body)
    }
}

/// A whole put made through [`ObjectStore::writer`].
pub(crate) fn put_by_writer<S: ObjectStore + ?Sized>(
    store: &S,
    key: &Key,
    body: &[u8],
    cond: Cond,
) -> Result<Etag> {
    let mut w = store.writer(key, cond)?;
    w.write_all(body)
        .map_err(|e| io_error(store.location(), key.as_str(), e))?;
    w.commit()
}

/// The kind of an I/O error, when `e` is one.
pub fn io_kind(e: &Error) -> Option<std::io::ErrorKind> {
    match e {
        Error::Io { source, .. } => Some(source.kind()),
        Error::NoSpace { .. } => Some(std::io::ErrorKind::StorageFull),
        Error::Precondition { .. } => Some(std::io::ErrorKind::AlreadyExists),
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

/// An `Error::Io` on `key` of the store at `location`.
pub(crate) fn io_error(location: &str, key: &str, source: std::io::Error) -> Error {
    let path = if key.is_empty() {
        PathBuf::from(location)
    } else {
        PathBuf::from(format!("{}/{key}", location.trim_end_matches('/')))
    };
    Error::io(path, source)
}
