//! The repository on a POSIX directory (a mounted NFS export is one).
//!
//! ```text
//! <root>/config              repository config (JSON), written once
//! <root>/packs/<xx>/<id>     packs, sharded by the first byte of the id
//! <root>/layers/<backup-id>  one layer per backup
//! <root>/tmp/                objects being written
//! ```
//!
//! Nothing is modified in place: an object is written under `tmp/`, fsynced,
//! renamed into place, and the directory fsynced. A `TempObject` that is
//! dropped without being published removes its file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use strata_format::config::RepoConfig;
use strata_format::{BackupId, PackId, RepositoryId};

use crate::error::{Error, IoContext, Result};

pub struct Repository {
    root: PathBuf,
    config: RepoConfig,
}

/// A file under `tmp/`, removed on drop unless published.
pub struct TempObject {
    file: Option<File>,
    path: PathBuf,
}

impl TempObject {
    pub fn file(&mut self) -> Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| Error::Bug("temporary object used after publish".into()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempObject {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// fsyncs a directory so a rename or create inside it is durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
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

impl Repository {
    /// Creates a repository at `root` with `config` (whose id is replaced by a
    /// fresh one). Fails if one already exists there.
    pub fn init(root: &Path, mut config: RepoConfig) -> Result<Self> {
        config.repository_id = RepositoryId(new_uuid()?);
        config
            .validate()
            .map_err(|e| Error::format(root.display().to_string(), e))?;
        for dir in ["packs", "layers", "tmp", "locks"] {
            fs::create_dir_all(root.join(dir)).at(root.join(dir))?;
        }
        let repo = Repository {
            root: root.to_path_buf(),
            config,
        };
        let mut tmp = repo.temp_object("config")?;
        tmp.file()?
            .write_all(&repo.config.encode())
            .at(tmp.path())?;
        let target = root.join("config");
        // hard_link fails if the target exists, so two racing inits cannot
        // both believe they created the repository.
        repo.publish(tmp, &target, true)?;
        sync_dir(root)?;
        Ok(repo)
    }

    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join("config");
        let bytes = fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    kind: "repository",
                    name: root.display().to_string(),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        let config =
            RepoConfig::decode(&bytes).map_err(|e| Error::format(path.display().to_string(), e))?;
        for dir in ["packs", "layers", "tmp", "locks"] {
            fs::create_dir_all(root.join(dir)).at(root.join(dir))?;
        }
        Ok(Repository {
            root: root.to_path_buf(),
            config,
        })
    }

    /// Opens the repository at `root`, creating it with `config` if there is none.
    pub fn open_or_init(root: &Path, config: RepoConfig) -> Result<Self> {
        match Repository::open(root) {
            Err(Error::NotFound { .. }) => match Repository::init(root, config) {
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    Repository::open(root)
                }
                other => other,
            },
            other => other,
        }
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a new empty file under `tmp/` (exclusive create, random name).
    pub fn temp_object(&self, kind: &str) -> Result<TempObject> {
        // Named after the process, so cleanup knows whose it is once that
        // process is gone.
        let name = format!(
            "{}~{kind}-{}",
            crate::process::owner_tag(),
            PackId(random_bytes()?)
        );
        let path = self.root.join("tmp").join(name);
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .at(&path)?;
        Ok(TempObject {
            file: Some(file),
            path,
        })
    }

    /// Makes a temporary object durable and visible at `target`:
    /// fsync the file, link or rename it into place, fsync the directory.
    fn publish(&self, mut tmp: TempObject, target: &Path, exclusive: bool) -> Result<()> {
        let path = tmp.path.clone();
        let file = tmp.file()?;
        file.flush().at(&path)?;
        // The data must be on disk before the name that makes it reachable.
        file.sync_all().at(&path)?;
        let dir = target
            .parent()
            .ok_or_else(|| Error::Bug(format!("{} has no parent", target.display())))?;
        if !dir.exists() {
            fs::create_dir_all(dir).at(dir)?;
            if let Some(up) = dir.parent() {
                sync_dir(up)?;
            }
        }
        if exclusive {
            fs::hard_link(&tmp.path, target).at(target)?;
            fs::remove_file(&tmp.path).at(&tmp.path)?;
        } else {
            fs::rename(&tmp.path, target).at(target)?;
        }
        tmp.file = None;
        // The new name must be durable before anyone records that it exists.
        sync_dir(dir)?;
        sync_dir(&self.root.join("tmp"))
    }

    pub fn pack_path(&self, id: &PackId) -> PathBuf {
        self.root
            .join("packs")
            .join(id.shard())
            .join(id.to_string())
    }

    pub fn layer_path(&self, id: &BackupId) -> PathBuf {
        self.root.join("layers").join(id.to_string())
    }

    /// Publishes a finished pack. Durable when this returns.
    pub fn publish_pack(&self, tmp: TempObject, id: &PackId) -> Result<()> {
        self.publish(tmp, &self.pack_path(id), true)
    }

    /// Publishes a finished layer: the commit point of a backup. Durable when
    /// this returns.
    pub fn publish_layer(&self, tmp: TempObject, id: &BackupId) -> Result<()> {
        self.publish(tmp, &self.layer_path(id), true)
    }

    pub fn load_layer(&self, id: &BackupId) -> Result<Vec<u8>> {
        let path = self.layer_path(id);
        fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    kind: "layer",
                    name: path.display().to_string(),
                }
            } else {
                Error::io(&path, e)
            }
        })
    }

    pub fn open_pack(&self, id: &PackId) -> Result<PackFile> {
        let path = self.pack_path(id);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Corrupt {
                    location: format!("pack {id}"),
                    detail: "pack file is missing from the repository".into(),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        let len = file.metadata().at(&path)?.len();
        Ok(PackFile {
            id: *id,
            file,
            len,
            path,
        })
    }

    /// Removes an object; a missing one is not an error. Durable on return.
    fn remove(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(path, e)),
        }
        match path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    /// Every pack file under `packs/` (names that are not pack ids are skipped).
    pub fn list_pack_files(&self) -> Result<Vec<PackId>> {
        let mut out = Vec::new();
        let packs = self.root.join("packs");
        for fan in fs::read_dir(&packs).at(&packs)? {
            let fan = fan.at(&packs)?.path();
            if !fan.is_dir() {
                continue;
            }
            for f in fs::read_dir(&fan).at(&fan)? {
                let name = f.at(&fan)?.file_name();
                if let Some(id) = name.to_str().and_then(|n| n.parse::<PackId>().ok()) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Names of the files under `tmp/`.
    pub fn list_temp(&self) -> Result<Vec<String>> {
        let tmp = self.root.join("tmp");
        let mut out = Vec::new();
        for f in fs::read_dir(&tmp).at(&tmp)? {
            out.push(f.at(&tmp)?.file_name().to_string_lossy().into_owned());
        }
        Ok(out)
    }

    /// Removes `tmp/<name>` (a leftover of a process that is gone).
    pub fn remove_temp(&self, name: &str) -> Result<()> {
        if name.contains('/') {
            return Err(Error::Bug(format!("temp name {name:?} has a slash")));
        }
        self.remove(&self.root.join("tmp").join(name))
    }

    pub fn remove_pack(&self, id: &PackId) -> Result<()> {
        self.remove(&self.pack_path(id))
    }

    pub fn remove_layer(&self, id: &BackupId) -> Result<()> {
        self.remove(&self.layer_path(id))
    }
}

/// An open pack, read by byte range.
pub struct PackFile {
    pub id: PackId,
    file: File,
    pub len: u64,
    path: PathBuf,
}

impl PackFile {
    /// Reads `len` bytes at `offset`; a short read means the pack is damaged.
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.read_into(offset, &mut buf)?;
        Ok(buf)
    }

    pub fn read_into(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self.file.read_exact_at(buf, offset) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Corrupt {
                location: format!("pack {} at offset {offset}", self.id),
                detail: format!("pack is truncated ({} bytes)", self.len),
            }),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }
}
