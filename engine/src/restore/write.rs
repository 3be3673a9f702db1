//! Restore: lay out the tree under the target, create files, make links.
//!
//! Every path is resolved beneath the target's open descriptor with no
//! symlink followed (see [`Beneath`]), so a directory swapped for a symlink
//! while the restore runs makes it fail, never write elsewhere. Whatever
//! occupies a path the backup restores (an older file, a symlink) is
//! removed, not followed.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use strata_format::layer::{Entry, EntryKind};

use super::meta;
use super::tree::Tree;
use crate::beneath::Beneath;
use crate::direct_io::{self, BlockWriter, Buffer};
use crate::error::{Error, IoContext, Result};

/// Files at least this large are written past the page cache where the
/// target's file system allows it (see `direct_io`); smaller ones are not
/// worth a synchronous write each.
const DIRECT_MIN: u64 = 256 << 10;
/// File data goes out in writes of up to this size. Holes are kept at
/// `direct_io::ALIGN` granularity: an all-zero aligned block is not written.
/// A whole window of a large file's chunks (`fill::WINDOW_BYTES`) fits, so
/// all of them are expanded in place; 2 MiB made a large file's restore 25%
/// slower, 8 MiB held 4 MiB more per restore thread for nothing.
pub(super) const WRITE_PIECE: usize = 4 << 20;

/// Makes the directory `rel`, or keeps the real directory already there
/// (opened to the owner only until its own mode is restored at the end);
/// anything else there is removed first.
fn make_dir(root: &Beneath, rel: &[u8]) -> Result<()> {
    let at = || root.display(rel);
    let (parent, name) = root.parent(rel).at(at())?;
    let owner_only = Mode::from_raw_mode(0o700);
    match rustix::fs::mkdirat(parent.fd(), name, owner_only) {
        Ok(()) => return Ok(()),
        Err(Errno::EXIST) => {}
        Err(e) => return Err(Error::io(at(), e.into())),
    }
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent.fd(), name, flags, Mode::empty()) {
        // An existing directory may be read-only.
        Ok(dir) => rustix::fs::fchmod(&dir, owner_only).map_err(|e| Error::io(at(), e.into())),
        Err(Errno::NOTDIR | Errno::LOOP) => {
            Beneath::remove_at(parent.fd(), name).at(at())?;
            rustix::fs::mkdirat(parent.fd(), name, owner_only)
                .map_err(|e| Error::io(at(), e.into()))
        }
        Err(e) => Err(Error::io(at(), e.into())),
    }
}

/// Creates directories (in order) and the empty files; other files are
/// created by the unit that fills them. A file's path is cleared only when
/// something occupies it ([`create_fresh`]), so a restore into an empty
/// directory does not look before each file it creates.
pub fn layout(root: &Beneath, tree: &Tree) -> Result<()> {
    for e in &tree.entries {
        if matches!(e.kind, EntryKind::Dir) {
            make_dir(root, &e.path)?;
        }
    }
    let as_root = meta::as_root();
    tree.entries.par_iter().try_for_each(|e| -> Result<()> {
        let EntryKind::File { chunks, hash, .. } = &e.kind else {
            return Ok(());
        };
        if chunks.is_empty() {
            check_hash(&e.path, crate::repository::codec::chunk_id(b"").0, hash.0)?;
            let file = create_fresh(root, &e.path, |extra| {
                open_new(root, &e.path, extra | OFlags::EXCL)
            })?;
            meta::apply_to_file(&file, &root.display(&e.path), e, as_root)?;
        }
        Ok(())
    })
}

/// Creates `rel` for writing, with `flags` added (`O_EXCL`, `O_DIRECT`).
fn open_new(root: &Beneath, rel: &[u8], flags: OFlags) -> std::io::Result<File> {
    let flags = flags | OFlags::CREATE | OFlags::WRONLY;
    root.open_at(rel, flags, 0o600).map(File::from)
}

/// Runs `create(O_EXCL)`; when something already occupies `rel` (an older
/// file, a symlink, a directory), removes it, never following it, and runs
/// `create` again.
fn create_fresh<T>(
    root: &Beneath,
    rel: &[u8],
    create: impl Fn(OFlags) -> std::io::Result<T>,
) -> Result<T> {
    match create(OFlags::empty()) {
        Err(e) if occupied(&e) => {
            remove(root, rel)?;
            create(OFlags::empty()).at(root.display(rel))
        }
        other => other.at(root.display(rel)),
    }
}

/// Whether a create failed because something is there: `EEXIST`, or
/// `ELOOP` for a symlink (not followed, under `RESOLVE_NO_SYMLINKS`).
fn occupied(e: &std::io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(Errno::EXIST.raw_os_error()) || code == Some(Errno::LOOP.raw_os_error())
}

/// Removes what is at `rel` (a whole tree for a directory), never following
/// a symlink, in the target only.
pub(super) fn remove(root: &Beneath, rel: &[u8]) -> Result<()> {
    let (parent, name) = root.parent(rel).at(root.display(rel))?;
    Beneath::remove_at(parent.fd(), name).at(root.display(rel))
}

pub(super) fn check_hash(rel: &[u8], actual: [u8; 32], expected: [u8; 32]) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(Error::Corrupt {
        location: format!("restored file {}", String::from_utf8_lossy(rel)),
        detail: "the backup's file hash differs from its content's".into(),
    })
}

/// Where file data goes: the target, whether it takes direct writes, and
/// whether files get their owners.
#[derive(Clone, Copy)]
pub(super) struct Target<'a> {
    pub root: &'a Beneath,
    pub direct: bool,
    pub as_root: bool,
}

impl Target<'_> {
    /// Creates the file at `rel` for `size` bytes, written through `buf`.
    pub fn writer(&self, rel: &[u8], size: u64, buf: Buffer) -> Result<(PathBuf, BlockWriter)> {
        let direct = self.direct && size >= DIRECT_MIN;
        let (file, direct) = create_fresh(self.root, rel, |extra| {
            direct_io::create_new(
                |flags, new| {
                    let excl = if new { OFlags::EXCL } else { OFlags::TRUNC };
                    open_new(self.root, rel, extra | flags | excl)
                },
                direct,
            )
        })?;
        Ok((
            self.root.display(rel),
            BlockWriter::new(file, direct, true, buf),
        ))
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
pub fn links(root: &Beneath, tree: &Tree) -> Result<()> {
    for e in &tree.entries {
        let at = || root.display(&e.path);
        match &e.kind {
            EntryKind::Symlink { target } => {
                remove(root, &e.path)?;
                let (parent, name) = root.parent(&e.path).at(at())?;
                rustix::fs::symlinkat(OsStr::from_bytes(target), parent.fd(), name)
                    .map_err(|err| Error::io(at(), err.into()))?;
            }
            EntryKind::Hardlink { target } => {
                remove(root, &e.path)?;
                let (from, from_name) = root.parent(target).at(root.display(target))?;
                let (parent, name) = root.parent(&e.path).at(at())?;
                // Without AT_SYMLINK_FOLLOW: a symlink there is linked, not followed.
                rustix::fs::linkat(from.fd(), from_name, parent.fd(), name, AtFlags::empty())
                    .map_err(|err| Error::io(at(), err.into()))?;
            }
            _ => {}
        }
    }
    Ok(())
}
