//! The repository: the only door to its bytes. Packs, layers, the config
//! and leases are stored as objects of an [`objects::ObjectStore`] (a
//! directory, an NFS export, memory) under the keys [`layout`] names.
//!
//! - [`packs`] writes packs and reads them (one blob iterator for restore,
//!   repack and check);
//! - [`layers`] is the only reader and writer of layers;
//! - [`codec`] makes stored bytes from chunks and back;
//! - [`leases`] owns the locks that keep sweeps and backups apart.
//!
//! Nothing is modified in place: every object is put whole, under a
//! condition where a race matters.

use std::io::Write;
use std::sync::Arc;

use strata_format::config::RepoConfig;
use strata_format::{PackId, RepositoryId};

use crate::error::{Error, Result};
use objects::{
    io_kind, Cond, MemoryStore, Modes, NfsStore, ObjectReader, ObjectStore, ObjectWriter,
    PosixStore,
};

pub mod codec;
pub mod layers;
pub mod layout;
pub mod leases;
pub mod objects;
pub mod packs;

pub use layout::LayerName;
pub use objects::{Location, Unfinished};

#[derive(Clone)]
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    /// Where the repository's leases live: its own store, or a catalog
    /// that keeps them ([`Repository::with_locks`]).
    locks: Arc<dyn ObjectStore>,
    config: RepoConfig,
}

/// An object being put, visible only once committed: dropped uncommitted,
/// it leaves nothing.
pub struct NewObject {
    writer: Option<Box<dyn ObjectWriter>>,
    name: String,
}

impl NewObject {
    /// The object's name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn writer(&mut self) -> std::io::Result<&mut Box<dyn ObjectWriter>> {
        self.writer
            .as_mut()
            .ok_or_else(|| std::io::Error::other("object written after its commit"))
    }

    /// Makes the object durable and visible under its key.
    fn commit(mut self) -> Result<()> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| Error::Bug("object committed twice".into()))?;
        writer.commit().map(|_| ())
    }
}

impl Write for NewObject {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer()?.flush()
    }
}

/// The store for a location: a directory, or a connection to an export.
pub fn connect(location: &Location, modes: Modes) -> Result<Arc<dyn ObjectStore>> {
    Ok(match location {
        Location::Posix(dir) => Arc::new(PosixStore::with_modes(dir, modes)?),
        Location::Nfs(url) => Arc::new(NfsStore::connect_with(url, modes)?),
        Location::S3(url) => Arc::new(objects::s3::S3Store::connect(url)?),
        Location::Memory(name) => Arc::new(MemoryStore::named(name)),
    })
}

/// [`connect`] to a location that must exist already: nothing is created
/// (a missing one is `NotFound`).
pub fn connect_existing(location: &Location, modes: Modes) -> Result<Arc<dyn ObjectStore>> {
    match location {
        Location::Posix(dir) if !dir.is_dir() => Err(Error::NotFound {
            kind: "repository",
            name: dir.display().to_string(),
        }),
        Location::Posix(_) => connect(location, modes),
        Location::Memory(name) => match MemoryStore::existing(name) {
            Some(store) => Ok(Arc::new(store)),
            None => Err(Error::NotFound {
                kind: "repository",
                name: location.to_string(),
            }),
        },
        Location::S3(url) => {
            let store = objects::s3::S3Store::connect(url)?;
            match store.has_repository()? {
                true => Ok(Arc::new(store)),
                false => Err(Error::NotFound {
                    kind: "repository",
                    name: location.to_string(),
                }),
            }
        }
        Location::Nfs(url) => match NfsStore::connect_existing(url, modes) {
            Err(e) if is_not_found(&e) => Err(Error::NotFound {
                kind: "repository",
                name: location.to_string(),
            }),
            other => Ok(Arc::new(other?)),
        },
    }
}

fn is_not_found(e: &Error) -> bool {
    io_kind(e) == Some(std::io::ErrorKind::NotFound)
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| Error::Bug(format!("no randomness from the OS: {e}")))?;
    Ok(out)
}

/// A fresh random pack id.
pub fn new_pack_id() -> Result<PackId> {
    random_bytes().map(PackId)
}

/// A fresh random 128-bit id (backups, shares, repositories).
pub fn new_uuid() -> Result<[u8; 16]> {
    let mut b: [u8; 16] = random_bytes()?;
    b[6] = (b[6] & 0x0f) | 0x40; // UUID version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    Ok(b)
}

impl Repository {
    /// Creates a repository in `store` with `config` (whose id is replaced
    /// by a fresh one). Fails if one already exists there.
    pub fn init(store: Arc<dyn ObjectStore>, mut config: RepoConfig) -> Result<Self> {
        config.repository_id = RepositoryId(new_uuid()?);
        config
            .validate()
            .map_err(|e| Error::format(store.location().to_string(), e))?;
        // IfAbsent, so two racing inits cannot both believe they created
        // the repository.
        store.put(&layout::config(), &config.encode(), Cond::IfAbsent)?;
        Ok(Repository {
            locks: store.clone(),
            store,
            config,
        })
    }

    pub fn open(store: Arc<dyn ObjectStore>) -> Result<Self> {
        let bytes = store.get(&layout::config()).map_err(|e| {
            if is_not_found(&e) {
                Error::NotFound {
                    kind: "repository",
                    name: store.location().to_string(),
                }
            } else {
                e
            }
        })?;
        let location = format!("{}/config", store.location());
        let config = RepoConfig::decode(&bytes).map_err(|e| Error::format(location, e))?;
        Ok(Repository {
            locks: store.clone(),
            store,
            config,
        })
    }

    /// This repository with its leases kept in `locks` (a shared
    /// catalog's) instead of its own store: every process using it must
    /// do the same, which a catalog bound to it ensures.
    pub fn with_locks(mut self, locks: Arc<dyn ObjectStore>) -> Repository {
        self.locks = locks;
        self
    }

    /// Agrees with the repository on where its leases live: `keeper` is
    /// the id of the catalog that keeps them (`None`: they live in the
    /// repository). The first catalog to keep them names itself in the
    /// repository; any process whose leases would live elsewhere is then
    /// refused, since it would not see the others' leases.
    pub fn agree_on_locks(&self, keeper: Option<&str>) -> Result<()> {
        let key = layout::lock_keeper();
        let named = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).trim().to_string();
        let found = match self.store.get(&key) {
            Ok(bytes) => Some(named(bytes)),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(e),
        };
        let found = match (found, keeper) {
            (None, Some(mine)) => {
                match self
                    .store
                    .put(&key, format!("{mine}\n").as_bytes(), Cond::IfAbsent)
                {
                    Ok(_) => return Ok(()),
                    Err(Error::Precondition { .. }) => Some(named(self.store.get(&key)?)),
                    Err(e) => return Err(e),
                }
            }
            (found, _) => found,
        };
        match (found, keeper) {
            (None, None) => Ok(()),
            (Some(theirs), Some(mine)) if theirs == mine => Ok(()),
            (Some(theirs), _) => Err(Error::InvalidState(format!(
                "the locks of repository {} are kept by catalog {theirs}; only processes \
                 of that catalog may use it",
                self.store.location()
            ))),
            (None, Some(_)) => Err(Error::Bug("the lock keeper vanished".into())),
        }
    }

    /// Whether the repository's store keeps racing conditional puts apart.
    pub fn conditions_hold(&self) -> bool {
        self.store.conditions_hold()
    }

    /// Whether the leases live in the repository's own store.
    pub fn locks_in_store(&self) -> bool {
        Arc::ptr_eq(&self.locks, &self.store)
    }

    /// Opens the repository in `store`, creating it with `config` if there
    /// is none.
    pub fn open_or_init(store: Arc<dyn ObjectStore>, config: RepoConfig) -> Result<Self> {
        match Repository::open(store.clone()) {
            Err(Error::NotFound { .. }) => match Repository::init(store.clone(), config) {
                Err(Error::Precondition { .. }) => Repository::open(store),
                other => other,
            },
            other => other,
        }
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> &str {
        self.store.location()
    }

    /// Starts a put of `key` that refuses an existing object.
    fn new_object(&self, key: &objects::Key) -> Result<NewObject> {
        Ok(NewObject {
            writer: Some(self.store.writer(key, Cond::IfAbsent)?),
            name: format!("{}/{key}", self.location()),
        })
    }

    /// Starts writing pack `id`.
    pub fn new_pack(&self, id: &PackId) -> Result<NewObject> {
        self.new_object(&layout::pack(id))
    }

    /// Publishes a finished pack. Durable when this returns.
    pub fn publish_pack(&self, pack: NewObject) -> Result<()> {
        pack.commit()?;
        crate::failpoint::hit("repository.pack_published");
        Ok(())
    }

    /// The size of a pack in the repository, if it is there.
    pub fn pack_size(&self, id: &PackId) -> Result<Option<u64>> {
        Ok(self.store.stat(&layout::pack(id))?.map(|m| m.len))
    }

    pub fn open_pack(&self, id: &PackId) -> Result<PackFile> {
        let reader = self.store.open(&layout::pack(id)).map_err(|e| {
            if is_not_found(&e) {
                Error::Corrupt {
                    location: format!("pack {id}"),
                    detail: "pack file is missing from the repository".into(),
                }
            } else {
                e
            }
        })?;
        Ok(PackFile {
            id: *id,
            len: reader.len(),
            reader,
        })
    }

    /// Every pack in the repository (keys that are not a pack's are
    /// skipped).
    pub fn list_pack_files(&self) -> Result<Vec<PackId>> {
        Ok(self
            .store
            .list_all(layout::PACKS)?
            .iter()
            .filter_map(layout::pack_of)
            .collect())
    }

    pub fn remove_pack(&self, id: &PackId) -> Result<()> {
        crate::failpoint::hit("repository.removing_pack");
        self.store.delete(&layout::pack(id), Cond::Any)?;
        crate::failpoint::hit("repository.pack_removed");
        Ok(())
    }

    /// Puts that were started and never committed.
    pub fn unfinished(&self) -> Result<Vec<Unfinished>> {
        self.store.unfinished()
    }

    /// Removes what an unfinished put (of a process that is gone) left.
    pub fn discard(&self, unfinished: &Unfinished) -> Result<()> {
        self.store.discard(unfinished)
    }

    /// The store itself, for what measures it (`strata bench`).
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

/// An open pack, read by byte range.
pub struct PackFile {
    pub id: PackId,
    reader: Box<dyn ObjectReader>,
    pub len: u64,
}

impl PackFile {
    /// Reads `len` bytes at `offset`; a short read means the pack is damaged.
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_into(offset, &mut buf)?;
        Ok(buf)
    }

    pub fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let read = self.reader.read_at(offset, buf);
        self.truncated_at(offset, read)
    }

    /// The most bytes one piece of [`PackFile::read_shared`] should hold,
    /// when the backend lends its own buffers (see
    /// [`ObjectReader::piece_len`]).
    pub fn piece_len(&self) -> Option<usize> {
        self.reader.piece_len()
    }

    /// Reads `ranges` (each ending where the next starts) as the backend's
    /// own buffers, without a copy; see [`ObjectReader::read_shared`].
    pub fn read_shared(&self, ranges: &[std::ops::Range<u64>]) -> Result<Vec<bytes::Bytes>> {
        let read = self.reader.read_shared(ranges);
        self.truncated_at(ranges.first().map_or(0, |r| r.start), read)
    }

    /// A read past the pack's end means the pack is damaged.
    fn truncated_at<T>(&self, offset: u64, read: Result<T>) -> Result<T> {
        match read {
            Err(e) if io_kind(&e) == Some(std::io::ErrorKind::UnexpectedEof) => {
                Err(Error::Corrupt {
                    location: format!("pack {} at offset {offset}", self.id),
                    detail: format!("pack is truncated ({} bytes)", self.len),
                })
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use objects::MemoryStore;

    #[test]
    fn conformance_object_store_posix() {
        let dir = tempfile::tempdir().unwrap();
        let s = PosixStore::new(dir.path()).unwrap();
        objects::conformance::run(&s).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn conformance_object_store_memory() {
        objects::conformance::run(&MemoryStore::new("conformance")).unwrap();
    }

    #[test]
    fn conformance_object_store_memory_wrapped() {
        let s = objects::Limited::new(
            objects::Retrying::new(
                MemoryStore::new("wrapped"),
                std::time::Duration::from_secs(1),
            ),
            2,
        );
        objects::conformance::run(&s).unwrap();
    }

    #[test]
    fn a_repository_in_memory_opens_once_made() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("repo"));
        assert!(matches!(
            Repository::open(store.clone()),
            Err(Error::NotFound { .. })
        ));
        let made = Repository::open_or_init(store.clone(), RepoConfig::new(RepositoryId([0; 16])))
            .unwrap();
        let again =
            Repository::open_or_init(store, RepoConfig::new(RepositoryId([0; 16]))).unwrap();
        assert_eq!(made.config().repository_id, again.config().repository_id);
    }
}
