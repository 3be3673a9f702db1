//! Restore: lay out the tree under the target, create files, make links.
//!
//! The target is only ever entered through directories this restore made
//! sure are real directories, and files are opened with `O_NOFOLLOW`, so an
//! existing symlink in the target is replaced, never followed.

use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use strata_format::layer::{Entry, EntryKind};
use strata_format::ChunkId;

use super::meta;
use super::tree::Tree;
use crate::direct_io::{self, BlockWriter, Buffer};
use crate::error::{Error, IoContext, Result};

/// Files at least this large are written past the page cache where the
/// target's file system allows it (see `direct_io`); smaller ones are not
/// worth a synchronous write each.
const DIRECT_MIN: u64 = 256 << 10;
/// File data goes out in writes of up to this size. Holes are kept at
/// `direct_io::ALIGN` granularity: an all-zero aligned block is not written.
pub(super) const WRITE_PIECE: usize = 8 << 20;

pub fn target_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

fn nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Clears whatever occupies `path` unless it is already a real directory and
/// `keep_dir` is set. Symlinks are removed, not followed.
fn clear_slot(path: &Path, keep_dir: bool) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
        Ok(meta) if meta.is_dir() => {
            if keep_dir {
                return Ok(true);
            }
            fs::remove_dir_all(path).at(path)?;
            Ok(false)
        }
        Ok(_) => {
            fs::remove_file(path).at(path)?;
            Ok(false)
        }
    }
}

/// Creates directories (in order) and the empty files; other files are
/// created by the unit that fills them. A file's path is cleared only when
/// something occupies it ([`create_fresh`]), so a restore into an empty
/// directory does not look before each file it creates.
pub fn layout(root: &Path, tree: &Tree) -> Result<()> {
    for e in &tree.entries {
        if matches!(e.kind, EntryKind::Dir) {
            let path = target_path(root, &e.path);
            if clear_slot(&path, true)? {
                // An existing directory may be read-only; its own mode is
                // restored with the rest of the metadata at the end.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).at(&path)?;
            } else {
                fs::create_dir(&path).at(&path)?;
            }
        }
    }
    let as_root = meta::as_root();
    tree.entries.par_iter().try_for_each(|e| -> Result<()> {
        let EntryKind::File { chunks, hash, .. } = &e.kind else {
            return Ok(());
        };
        if chunks.is_empty() {
            check_hash(&e.path, ChunkId::of(b"").0, hash.0)?;
            let path = target_path(root, &e.path);
            let file = create_fresh(&path, || {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nofollow())
                    .open(&path)
            })?;
            meta::apply_to_file(&file, &path, e, as_root)?;
        }
        Ok(())
    })
}

/// Runs `create` (an exclusive create of `path`); when something already
/// occupies the path (an older file, a symlink, a directory), removes it,
/// never following it, and runs `create` again.
fn create_fresh<T>(path: &Path, create: impl Fn() -> std::io::Result<T>) -> Result<T> {
    match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            clear_slot(path, false)?;
            create().at(path)
        }
        other => other.at(path),
    }
}

pub(super) fn check_hash(rel: &[u8], actual: [u8; 32], expected: [u8; 32]) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(Error::Corrupt {
        location: format!("restored file {}", String::from_utf8_lossy(rel)),
        detail: "whole-file hash differs from the backup's".into(),
    })
}

/// Where file data goes: the target, whether it takes direct writes, and
/// whether files get their owners.
#[derive(Clone, Copy)]
pub(super) struct Target<'a> {
    pub root: &'a Path,
    pub direct: bool,
    pub as_root: bool,
}

impl Target<'_> {
    /// Creates the file at `rel` for `size` bytes, written through `buf`.
    pub fn writer(&self, rel: &[u8], size: u64, buf: Buffer) -> Result<(PathBuf, BlockWriter)> {
        let path = target_path(self.root, rel);
        let direct = self.direct && size >= DIRECT_MIN;
        let (file, direct) = create_fresh(&path, || {
            direct_io::create_new(&path, 0o600, nofollow(), direct)
        })?;
        Ok((path, BlockWriter::new(file, direct, true, buf)))
    }

    /// Ends a file whose data is written: its length, then its metadata.
    pub fn done(&self, file: &File, path: &Path, e: &Entry, written: u64, size: u64) -> Result<()> {
        set_size(file, path, written, size)?;
        meta::apply_to_file(file, path, e, self.as_root)
    }
}

/// Gives a file of `written` bytes the length its entry says.
fn set_size(file: &File, path: &Path, written: u64, size: u64) -> Result<()> {
    if written != size {
        file.set_len(size).at(path)?;
    }
    Ok(())
}

/// Creates symlinks and hardlinks (after file data, so link targets exist).
pub fn links(root: &Path, tree: &Tree) -> Result<()> {
    for e in &tree.entries {
        let path = target_path(root, &e.path);
        match &e.kind {
            EntryKind::Symlink { target } => {
                clear_slot(&path, false)?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path).at(&path)?;
            }
            EntryKind::Hardlink { target } => {
                clear_slot(&path, false)?;
                fs::hard_link(target_path(root, target), &path).at(&path)?;
            }
            _ => {}
        }
    }
    Ok(())
}
