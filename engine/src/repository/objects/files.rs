//! The object verbs built from a filesystem's: [`Files`] turns any [`Fs`]
//! (a directory, an NFS export) into an [`ObjectStore`].
//!
//! - A put writes `tmp/<host>~<pid>~<start>~put-<random>`, makes it
//!   durable (fsync, NFS COMMIT), then publishes it: [`Cond::IfAbsent`] by
//!   a hard link, which fails if the name exists (atomic on NFS, like
//!   `O_EXCL`); [`Cond::Any`] by a rename over the name; [`Cond::IfMatch`]
//!   by a rename after the current version is checked. The check and the
//!   rename are two steps: a writer racing in between can be replaced
//!   (a filesystem has no compare-and-swap). Leases, the only users of
//!   `IfMatch`, tolerate it: a holder verifies its lease's version before
//!   it relies on it.
//! - A conditional delete renames the object aside first, so of two
//!   deleters only one gets it; the one it got is checked, and put back if
//!   it is not the version asked for.
//! - An etag is the file's id, size and mtime: a put makes a new file, so
//!   every version has its own. A whole-object put under `IfMatch` of the
//!   bytes the object holds already (a lease's heartbeat) instead moves
//!   its mtime forward in place: a deleter that renamed it aside meanwhile
//!   makes that fail, so a heartbeat never brings back a lease that was
//!   taken over.
//! - `tmp/` is the adapter's own: never listed, and what a dead writer left
//!   there is an [`Unfinished`] put.

use std::io::Write;
use std::sync::Arc;

use super::{
    check_key, io_kind, Cond, Etag, Key, ObjectMeta, ObjectReader, ObjectStore, ObjectWriter, Page,
    Space, Unfinished, PAGE,
};
use crate::error::{Error, Result};
use crate::process::Tag;

/// Where a filesystem store keeps objects being written.
const TEMP: &str = "tmp";

/// What [`Fs::stat`] tells about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub len: u64,
    /// The file's id on its filesystem (inode number, NFS fileid).
    pub id: u64,
    /// Last modification, in nanoseconds, by the server's clock.
    pub mtime_ns: i128,
    pub is_dir: bool,
}

impl FileMeta {
    fn etag(&self) -> Etag {
        Etag(format!("{:x}-{:x}-{:x}", self.id, self.len, self.mtime_ns))
    }
}

/// A filesystem's verbs, as the two filesystem adapters provide them. Paths
/// are relative and slash-separated, checked by the caller.
pub trait Fs: Send + Sync + std::fmt::Debug + 'static {
    /// The filesystem's location for messages: a directory or `nfs://` URL.
    fn location(&self) -> &str;

    /// Creates directory `dir` and any missing parents. Durable on return.
    fn create_dir(&self, dir: &str) -> Result<()>;

    /// Creates a new file at `path` (which must not exist) to write.
    fn create(&self, path: &str) -> Result<Box<dyn FileWriter>>;

    /// Makes the finished file `from` visible at `to` (creating missing
    /// parents) and removes the name `from`. With `exclusive`, fails with
    /// `AlreadyExists` when `to` exists, leaving both untouched; without
    /// it, `to` is replaced. Durable on return.
    fn publish(&self, from: &str, to: &str, exclusive: bool) -> Result<()>;

    /// Renames `from` to `to`, replacing `to`. Durable on return.
    fn rename(&self, from: &str, to: &str) -> Result<()>;

    /// Opens a file to read by range; a missing one is `NotFound`.
    fn open(&self, path: &str) -> Result<Box<dyn ObjectReader>>;

    fn stat(&self, path: &str) -> Result<Option<FileMeta>>;

    /// The entries directly inside `dir` (`""`: the root), each with
    /// whether it is a directory, in no order. A missing directory is
    /// `NotFound`.
    fn list(&self, dir: &str) -> Result<Vec<(String, bool)>>;

    /// Removes a file; a missing one is not an error. Durable on return.
    fn remove(&self, path: &str) -> Result<()>;

    /// Sets a file's mtime, in nanoseconds; a missing file is `NotFound`.
    fn touch(&self, path: &str, mtime_ns: i128) -> Result<()>;

    fn space(&self) -> Result<Space>;
}

/// A file being written, sequentially.
pub trait FileWriter: Write + Send {
    /// Makes every byte written durable (fsync, or NFS COMMIT).
    fn finish(self: Box<Self>) -> Result<()>;
}

/// An [`ObjectStore`] on a filesystem.
#[derive(Debug)]
pub struct Files<F: Fs> {
    fs: Arc<F>,
}

impl<F: Fs> Clone for Files<F> {
    fn clone(&self) -> Self {
        Files {
            fs: self.fs.clone(),
        }
    }
}

impl<F: Fs> Files<F> {
    pub fn on(fs: F) -> Files<F> {
        Files { fs: Arc::new(fs) }
    }

    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// A fresh name under `tmp/`, named after this process.
    fn temp(&self, kind: &str) -> Result<String> {
        let random: [u8; 12] = crate::repository::random_bytes()?;
        let random: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("{TEMP}/{}~{kind}-{random}", Tag::this()))
    }

    fn precondition(&self, key: &Key) -> Error {
        Error::Precondition {
            location: self.fs.location().to_string(),
            key: key.to_string(),
        }
    }

    fn is_object(meta: Option<FileMeta>) -> Option<FileMeta> {
        meta.filter(|m| !m.is_dir)
    }

    /// A put of the bytes `key` holds already, at version `etag`: a new
    /// version made by moving the mtime forward in place. `None` when the
    /// bytes differ (a real put is needed).
    fn refresh(&self, key: &Key, body: &[u8], etag: &Etag) -> Result<Option<Etag>> {
        let Some(meta) = Self::is_object(self.fs.stat(key.as_str())?) else {
            return Err(self.precondition(key));
        };
        if meta.etag() != *etag {
            return Err(self.precondition(key));
        }
        if meta.len != body.len() as u64 {
            return Ok(None);
        }
        let mut current = vec![0u8; body.len()];
        match self
            .fs
            .open(key.as_str())
            .and_then(|r| r.read_at(0, &mut current))
        {
            Err(e) if io_kind(&e) == Some(std::io::ErrorKind::NotFound) => {
                return Err(self.precondition(key))
            }
            other => other?,
        }
        if current != body {
            return Ok(None);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        // Forward even when this clock is behind the one that wrote it, by
        // a step a filesystem with coarse timestamps still records.
        let mtime_ns = now.max(meta.mtime_ns + 1_000_000_000);
        match self.fs.touch(key.as_str(), mtime_ns) {
            Err(e) if io_kind(&e) == Some(std::io::ErrorKind::NotFound) => {
                return Err(self.precondition(key))
            }
            other => other?,
        }
        let after = Self::is_object(self.fs.stat(key.as_str())?);
        match after {
            // Not seen to change: a real put makes the new version.
            Some(m) if m.id == meta.id && m.etag() == *etag => Ok(None),
            Some(m) if m.id == meta.id => Ok(Some(m.etag())),
            _ => Err(self.precondition(key)),
        }
    }

    /// Publishes the finished temporary file `tmp` at `key` under `cond`.
    fn publish(&self, tmp: &str, key: &Key, cond: &Cond) -> Result<()> {
        let to = key.as_str();
        match cond {
            Cond::IfAbsent => match self.fs.publish(tmp, to, true) {
                Err(e) if io_kind(&e) == Some(std::io::ErrorKind::AlreadyExists) => {
                    Err(self.precondition(key))
                }
                other => other,
            },
            Cond::Any => self.fs.publish(tmp, to, false),
            Cond::IfMatch(etag) => {
                let current = Self::is_object(self.fs.stat(to)?).map(|m| m.etag());
                if current.as_ref() != Some(etag) {
                    return Err(self.precondition(key));
                }
                self.fs.publish(tmp, to, false)
            }
        }
    }

    /// Lists `dir` (a directory, or "" for the root) into `out`, in key
    /// order, skipping subtrees that cannot hold a key after `after`.
    fn walk(&self, dir: &str, want: &Want<'_>, out: &mut Vec<Key>) -> Result<()> {
        let mut entries = match self.fs.list(dir) {
            Ok(entries) => entries,
            Err(e) if io_kind(&e) == Some(std::io::ErrorKind::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        // A directory's keys sort as its name followed by '/'.
        let sort_name = |(name, is_dir): &(String, bool)| match is_dir {
            true => format!("{name}/"),
            false => name.clone(),
        };
        entries.sort_by_cached_key(sort_name);
        for (name, is_dir) in entries {
            let path = match dir.is_empty() {
                true => name.clone(),
                false => format!("{dir}/{name}"),
            };
            if (dir.is_empty() && name == TEMP) || check_key(&path).is_err() {
                continue;
            }
            if is_dir {
                if want.may_hold(&format!("{path}/")) {
                    self.walk(&path, want, out)?;
                }
            } else if want.holds(&path) {
                out.push(Key(path));
            }
            if out.len() >= PAGE {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// What a listing wants: keys under `prefix`, after `after`.
struct Want<'a> {
    prefix: &'a str,
    after: Option<&'a str>,
}

impl Want<'_> {
    fn holds(&self, key: &str) -> bool {
        key.starts_with(self.prefix) && self.after.is_none_or(|a| key > a)
    }

    /// Whether a directory whose keys all start with `dir` (ending in '/')
    /// may hold a wanted key.
    fn may_hold(&self, dir: &str) -> bool {
        let on_prefix = dir.starts_with(self.prefix) || self.prefix.starts_with(dir);
        // Every key in `dir` is at most `dir` followed by the highest bytes:
        // none is after `after` if `after` sorts above them all.
        let past = self.after.is_none_or(|a| a.starts_with(dir) || a < dir);
        on_prefix && past
    }
}

struct FilesWriter<F: Fs> {
    store: Files<F>,
    file: Option<Box<dyn FileWriter>>,
    tmp: String,
    key: Key,
    cond: Cond,
    published: bool,
}

impl<F: Fs> Write for FilesWriter<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file()?.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file()?.flush()
    }
}

impl<F: Fs> FilesWriter<F> {
    fn file(&mut self) -> std::io::Result<&mut Box<dyn FileWriter>> {
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("object written after commit"))
    }
}

impl<F: Fs> ObjectWriter for FilesWriter<F> {
    fn commit(mut self: Box<Self>) -> Result<Etag> {
        let etag = self.publish()?;
        self.published = true;
        Ok(etag)
    }
}

impl<F: Fs> FilesWriter<F> {
    /// Makes the file durable, then publishes it under its key.
    fn publish(&mut self) -> Result<Etag> {
        let file = self
            .file
            .take()
            .ok_or_else(|| Error::Bug("object committed twice".into()))?;
        // The data must be durable before the name that makes it reachable.
        file.finish()?;
        // Publishing by link or rename keeps the file: its etag is the one
        // it has now.
        let meta = self
            .store
            .fs
            .stat(&self.tmp)?
            .ok_or_else(|| Error::Bug(format!("{} vanished before publish", self.tmp)))?;
        self.store.publish(&self.tmp, &self.key, &self.cond)?;
        Ok(meta.etag())
    }
}

impl<F: Fs> Drop for FilesWriter<F> {
    fn drop(&mut self) {
        // Uncommitted or failed: its file goes (a published one's name is
        // gone already, and a call to say so would be a round trip wasted).
        if !self.published {
            let _ = self.store.fs.remove(&self.tmp);
        }
    }
}

impl<F: Fs> ObjectStore for Files<F> {
    fn location(&self) -> &str {
        self.fs.location()
    }

    fn writer(&self, key: &Key, cond: Cond) -> Result<Box<dyn ObjectWriter>> {
        let tmp = self.temp("put")?;
        let file = match self.fs.create(&tmp) {
            Err(e) if io_kind(&e) == Some(std::io::ErrorKind::NotFound) => {
                self.fs.create_dir(TEMP)?;
                self.fs.create(&tmp)?
            }
            other => other?,
        };
        Ok(Box::new(FilesWriter {
            store: self.clone(),
            file: Some(file),
            tmp,
            key: key.clone(),
            cond,
            published: false,
        }))
    }

    fn put(&self, key: &Key, body: &[u8], cond: Cond) -> Result<Etag> {
        if let Cond::IfMatch(etag) = &cond {
            if let Some(refreshed) = self.refresh(key, body, etag)? {
                return Ok(refreshed);
            }
        }
        super::put_by_writer(self, key, body, cond)
    }

    fn open(&self, key: &Key) -> Result<Box<dyn ObjectReader>> {
        self.fs.open(key.as_str())
    }

    fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        Ok(
            Self::is_object(self.fs.stat(key.as_str())?).map(|m| ObjectMeta {
                len: m.len,
                etag: m.etag(),
            }),
        )
    }

    fn list(&self, prefix: &str, after: Option<&Key>) -> Result<Page> {
        // Start at the deepest directory the prefix names.
        let dir = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        if !dir.is_empty() {
            check_key(dir)?;
        }
        let want = Want {
            prefix,
            after: after.map(Key::as_str),
        };
        let mut keys = Vec::new();
        self.walk(dir, &want, &mut keys)?;
        let next = (keys.len() >= PAGE).then(|| keys.last().cloned()).flatten();
        Ok(Page { keys, next })
    }

    fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        let etag = match cond {
            Cond::Any => return self.fs.remove(key.as_str()),
            Cond::IfMatch(etag) => etag,
            Cond::IfAbsent => return Err(Error::Bug(format!("delete {key} if absent"))),
        };
        // Renamed aside, so two deleters cannot both take it.
        let aside = self.temp("aside")?;
        match self.fs.rename(key.as_str(), &aside) {
            Err(e) if io_kind(&e) == Some(std::io::ErrorKind::NotFound) => {
                return Err(self.precondition(key))
            }
            other => other?,
        }
        let taken = Self::is_object(self.fs.stat(&aside)?).map(|m| m.etag());
        if taken.as_ref() == Some(&etag) {
            return self.fs.remove(&aside);
        }
        // Another version: put back, unless a newer one is there already.
        if self.fs.publish(&aside, key.as_str(), true).is_err() {
            self.fs.remove(&aside)?;
        }
        Err(self.precondition(key))
    }

    fn space(&self) -> Result<Option<Space>> {
        self.fs.space().map(Some)
    }

    fn unfinished(&self) -> Result<Vec<Unfinished>> {
        let names = match self.fs.list(TEMP) {
            Ok(names) => names,
            Err(e) if io_kind(&e) == Some(std::io::ErrorKind::NotFound) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(names
            .into_iter()
            .filter(|(_, is_dir)| !is_dir)
            .map(|(name, _)| Unfinished {
                writer: Tag::parse(&name),
                name,
            })
            .collect())
    }

    fn discard(&self, unfinished: &Unfinished) -> Result<()> {
        if unfinished.name.contains('/') {
            return Err(Error::Bug(format!(
                "unfinished put {:?} has a slash",
                unfinished.name
            )));
        }
        self.fs.remove(&format!("{TEMP}/{}", unfinished.name))
    }
}
