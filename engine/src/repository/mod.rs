//! The repository: packs, layers and the config, stored through a
//! [`Backend`] (a directory, or an NFS export).
//!
//! ```text
//! <root>/config              repository config (JSON), written once
//! <root>/packs/<xx>/<id>     packs, sharded by the first byte of the id
//! <root>/layers/<backup-id>  one layer per backup (`.<n>`: its n-th rewrite)
//! <root>/tmp/                objects being written
//! <root>/locks/              lock files (see `locks`)
//! ```
//!
//! Nothing is modified in place: an object is written under `tmp/`, made
//! durable, then published under its name. A `TempObject` that is dropped
//! without being published removes itself.

use std::io::Write;
use std::sync::Arc;

use strata_format::config::RepoConfig;
use strata_format::{BackupId, PackId, RepositoryId};

use crate::error::{Error, Result};
use objects::{io_kind, Backend, Modes, NfsBackend, ObjectReader, ObjectWriter, PosixBackend};

pub mod leases;
pub mod objects;
pub mod packs;

pub use objects::Location;

#[derive(Clone)]
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: RepoConfig,
}

/// An object being written under `tmp/`, removed on drop unless published.
pub struct TempObject {
    writer: Option<Box<dyn ObjectWriter>>,
    key: String,
    backend: Arc<dyn Backend>,
}

impl TempObject {
    /// The object's name in messages.
    pub fn name(&self) -> String {
        format!("{}/{}", self.backend.location(), self.key)
    }

    fn writer(&mut self) -> std::io::Result<&mut Box<dyn ObjectWriter>> {
        self.writer
            .as_mut()
            .ok_or_else(|| std::io::Error::other("temporary object used after publish"))
    }
}

impl Write for TempObject {
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

impl Drop for TempObject {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = self.backend.remove(&self.key);
        }
    }
}

/// The backend for a location: a directory, or a connection to an export.
pub fn connect(location: &Location, modes: Modes) -> Result<Arc<dyn Backend>> {
    Ok(match location {
        Location::Posix(dir) => Arc::new(PosixBackend::with_modes(dir, modes)?),
        Location::Nfs(url) => Arc::new(NfsBackend::connect_with(url, modes)?),
    })
}

/// [`connect`] to a location that must exist already: nothing is created
/// (a missing one is `NotFound`).
pub fn connect_existing(location: &Location, modes: Modes) -> Result<Arc<dyn Backend>> {
    match location {
        Location::Posix(dir) if !dir.is_dir() => Err(Error::NotFound {
            kind: "repository",
            name: dir.display().to_string(),
        }),
        Location::Posix(_) => connect(location, modes),
        Location::Nfs(url) => match NfsBackend::connect_existing(url, modes) {
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

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
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

const DIRS: [&str; 4] = ["packs", "layers", "tmp", "locks"];

impl Repository {
    /// Creates a repository in `backend` with `config` (whose id is
    /// replaced by a fresh one). Fails if one already exists there.
    pub fn init(backend: Arc<dyn Backend>, mut config: RepoConfig) -> Result<Self> {
        config.repository_id = RepositoryId(new_uuid()?);
        config
            .validate()
            .map_err(|e| Error::format(backend.location().to_string(), e))?;
        for dir in DIRS {
            backend.create_dir(dir)?;
        }
        let repo = Repository { backend, config };
        let mut tmp = repo.temp_object("config")?;
        tmp.write_all(&repo.config.encode())
            .map_err(|e| Error::io(tmp.name(), e))?;
        // Exclusive, so two racing inits cannot both believe they created
        // the repository.
        repo.publish(tmp, "config", true)?;
        Ok(repo)
    }

    pub fn open(backend: Arc<dyn Backend>) -> Result<Self> {
        let bytes = backend.read("config").map_err(|e| {
            if is_not_found(&e) {
                Error::NotFound {
                    kind: "repository",
                    name: backend.location().to_string(),
                }
            } else {
                e
            }
        })?;
        let location = format!("{}/config", backend.location());
        let config = RepoConfig::decode(&bytes).map_err(|e| Error::format(location, e))?;
        for dir in DIRS {
            backend.create_dir(dir)?;
        }
        Ok(Repository { backend, config })
    }

    /// Opens the repository in `backend`, creating it with `config` if there
    /// is none.
    pub fn open_or_init(backend: Arc<dyn Backend>, config: RepoConfig) -> Result<Self> {
        match Repository::open(backend.clone()) {
            Err(Error::NotFound { .. }) => match Repository::init(backend.clone(), config) {
                Err(e) if io_kind(&e) == Some(std::io::ErrorKind::AlreadyExists) => {
                    Repository::open(backend)
                }
                other => other,
            },
            other => other,
        }
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> &str {
        self.backend.location()
    }

    /// Creates a new empty object under `tmp/`, with a unique name.
    pub fn temp_object(&self, kind: &str) -> Result<TempObject> {
        // Named after the process, so cleanup knows whose it is once that
        // process is gone.
        let key = format!(
            "tmp/{}~{kind}-{}",
            crate::process::owner_tag(),
            PackId(random_bytes()?)
        );
        let writer = self.backend.create(&key)?;
        Ok(TempObject {
            writer: Some(writer),
            key,
            backend: self.backend.clone(),
        })
    }

    /// Makes a temporary object durable, then visible at `target`.
    fn publish(&self, mut tmp: TempObject, target: &str, exclusive: bool) -> Result<()> {
        let writer = tmp
            .writer
            .take()
            .ok_or_else(|| Error::Bug("temporary object published twice".into()))?;
        let finished = writer.finish().and_then(|()| {
            // The data must be durable before the name that makes it reachable.
            self.backend.publish(&tmp.key, target, exclusive)
        });
        if finished.is_err() {
            let _ = self.backend.remove(&tmp.key);
        }
        finished
    }

    pub fn pack_key(id: &PackId) -> String {
        format!("packs/{}/{id}", id.shard())
    }

    /// The name of a backup's layer at `generation`: `layers/<id>` for the
    /// layer its backup wrote, `layers/<id>.<n>` for the n-th rewrite.
    pub fn layer_key(id: &BackupId, generation: u32) -> String {
        match generation {
            0 => format!("layers/{id}"),
            n => format!("layers/{id}.{n}"),
        }
    }

    /// Publishes a finished pack. Durable when this returns.
    pub fn publish_pack(&self, tmp: TempObject, id: &PackId) -> Result<()> {
        self.publish(tmp, &Self::pack_key(id), true)?;
        crate::failpoint::hit("repository.pack_published");
        Ok(())
    }

    /// Publishes a layer at `generation` (0: the commit point of a backup; a
    /// higher one: a rewrite that supersedes every lower one). Refuses a
    /// name that exists. Durable when this returns.
    pub fn publish_layer(&self, tmp: TempObject, id: &BackupId, generation: u32) -> Result<()> {
        self.publish(tmp, &Self::layer_key(id, generation), true)?;
        crate::failpoint::hit("repository.layer_published");
        Ok(())
    }

    /// Every layer object under `layers/`, in (id, generation) order; names
    /// that are not layer names are skipped.
    pub fn layer_objects(&self) -> Result<Vec<LayerName>> {
        let mut names: Vec<LayerName> = self
            .backend
            .list("layers")?
            .iter()
            .filter_map(|name| LayerName::parse(name))
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Each backup's current layer: its highest generation.
    pub fn list_layers(&self) -> Result<Vec<LayerName>> {
        let mut current: Vec<LayerName> = Vec::new();
        for name in self.layer_objects()? {
            match current.last_mut() {
                Some(last) if last.id == name.id => *last = name,
                _ => current.push(name),
            }
        }
        Ok(current)
    }

    /// The current generation of `id`'s layer, if it has one.
    pub fn layer_generation(&self, id: &BackupId) -> Result<Option<u32>> {
        Ok(self
            .list_layers()?
            .into_iter()
            .find(|n| n.id == *id)
            .map(|n| n.generation))
    }

    /// Reads one layer object.
    pub fn load_layer_object(&self, name: &LayerName) -> Result<Vec<u8>> {
        let key = name.key();
        self.backend
            .read(&key)
            .map_err(|e| self.layer_error(&key, e))
    }

    /// Opens one layer object for reading by range.
    pub fn open_layer_object(&self, name: &LayerName) -> Result<Box<dyn ObjectReader>> {
        let key = name.key();
        self.backend
            .open(&key)
            .map_err(|e| self.layer_error(&key, e))
    }

    fn layer_error(&self, key: &str, e: Error) -> Error {
        match is_not_found(&e) {
            true => Error::NotFound {
                kind: "layer",
                name: format!("{}/{key}", self.location()),
            },
            false => e,
        }
    }

    /// Reads the current layer of `id`. A generation superseded between
    /// the listing and the read is followed to its successor.
    pub fn load_layer(&self, id: &BackupId) -> Result<Vec<u8>> {
        let mut last = None;
        for _ in 0..3 {
            let Some(generation) = self.layer_generation(id)? else {
                break;
            };
            let name = LayerName {
                id: *id,
                generation,
            };
            match self.load_layer_object(&name) {
                Err(e @ Error::NotFound { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound {
            kind: "layer",
            name: format!("{}/{}", self.location(), Self::layer_key(id, 0)),
        }))
    }

    /// The size of a pack in the repository, if it is there.
    pub fn pack_size(&self, id: &PackId) -> Result<Option<u64>> {
        Ok(self.backend.stat(&Self::pack_key(id))?.map(|m| m.len))
    }

    pub fn open_pack(&self, id: &PackId) -> Result<PackFile> {
        let reader = self.backend.open(&Self::pack_key(id)).map_err(|e| {
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

    /// Every pack under `packs/` (names that are not pack ids are skipped).
    pub fn list_pack_files(&self) -> Result<Vec<PackId>> {
        let mut out = Vec::new();
        for shard in self.backend.list("packs")? {
            if shard.len() != 2 || !shard.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            for name in self.backend.list(&format!("packs/{shard}"))? {
                if let Ok(id) = name.parse::<PackId>() {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Names of the objects under `tmp/`.
    pub fn list_temp(&self) -> Result<Vec<String>> {
        self.backend.list("tmp")
    }

    /// Removes `tmp/<name>` (a leftover of a process that is gone).
    pub fn remove_temp(&self, name: &str) -> Result<()> {
        if name.contains('/') {
            return Err(Error::Bug(format!("temp name {name:?} has a slash")));
        }
        self.backend.remove(&format!("tmp/{name}"))
    }

    pub fn remove_pack(&self, id: &PackId) -> Result<()> {
        crate::failpoint::hit("repository.removing_pack");
        self.backend.remove(&Self::pack_key(id))?;
        crate::failpoint::hit("repository.pack_removed");
        Ok(())
    }

    /// Removes every generation of `id`'s layer, the current one last, so
    /// that a crash midway leaves the backup whole or gone.
    pub fn remove_layer(&self, id: &BackupId) -> Result<()> {
        let names: Vec<LayerName> = self
            .layer_objects()?
            .into_iter()
            .filter(|n| n.id == *id)
            .collect();
        for name in names {
            self.remove_layer_object(&name)?;
        }
        Ok(())
    }

    /// Removes one layer object; one already gone is not an error.
    pub fn remove_layer_object(&self, name: &LayerName) -> Result<()> {
        crate::failpoint::hit("repository.removing_layer");
        match self.backend.remove(&name.key()) {
            Err(e) if is_not_found(&e) => {}
            other => other?,
        }
        crate::failpoint::hit("repository.layer_removed");
        Ok(())
    }
}

/// One layer object: a backup's layer at one generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerName {
    pub id: BackupId,
    pub generation: u32,
}

impl LayerName {
    /// Parses `<backup-id>` or `<backup-id>.<n>` (n ≥ 1, no leading zero).
    pub fn parse(name: &str) -> Option<LayerName> {
        let (id, generation) = match name.split_once('.') {
            None => (name, 0),
            Some((id, n)) => {
                if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (id, n.parse().ok()?)
            }
        };
        let id: BackupId = id.parse().ok()?;
        // Only the canonical spelling names a layer.
        (id.to_string() == id_text(name)).then_some(LayerName { id, generation })
    }

    pub fn key(&self) -> String {
        Repository::layer_key(&self.id, self.generation)
    }
}

fn id_text(name: &str) -> &str {
    name.split_once('.').map_or(name, |(id, _)| id)
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
    use crate::repository::objects;

    #[test]
    fn conformance_object_store_posix() {
        let dir = tempfile::tempdir().unwrap();
        let b = PosixBackend::new(dir.path()).unwrap();
        objects::conformance::run(&b).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
