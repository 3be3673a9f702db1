//! Restore metadata, after the data it describes. Owners (when running as
//! root), xattrs, modes, then mtimes. A regular file gets its own through
//! its open descriptor as soon as its data is written ([`apply_to_file`],
//! from the parallel fill); symlinks get it at the end of their window, and
//! a directory once nothing more is written into it (deepest first), so
//! writing into a directory never disturbs its restored mtime or trips over
//! its mode.

use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{AtFlags, OFlags, Timespec, Timestamps};
use strata_format::layer::{Entry, EntryKind};
use xattr::FileExt;

use super::tree::Tree;
use crate::beneath::Beneath;
use crate::error::{Error, IoContext, Result};
use rayon::prelude::*;

fn timestamps(mtime_ns: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Whether xattr `name` failing to be set is an error: an unprivileged
/// restore cannot set trusted.* or security.*; the data is still restored,
/// so that is not fatal.
fn xattr_failure_counts(name: &[u8], as_root: bool) -> bool {
    let privileged = name.starts_with(b"trusted.") || name.starts_with(b"security.");
    !privileged || as_root
}

/// Gives the regular file `e`, open as `file` at `path` with its data
/// written, its owner (as root), xattrs, mode and mtime.
pub fn apply_to_file(file: &File, path: &Path, e: &Entry, as_root: bool) -> Result<()> {
    if as_root {
        std::os::unix::fs::fchown(file, Some(e.uid), Some(e.gid)).at(path)?;
    }
    for x in &e.xattrs {
        let name = std::ffi::OsStr::from_bytes(&x.name);
        if let Err(err) = file.set_xattr(name, &x.value) {
            if xattr_failure_counts(&x.name, as_root) {
                return Err(Error::io(path, err));
            }
        }
    }
    file.set_permissions(fs::Permissions::from_mode(e.mode))
        .at(path)?;
    rustix::fs::futimens(file, &timestamps(e.mtime_ns)).map_err(|err| Error::io(path, err.into()))
}

/// A directory's metadata, through a descriptor opened beneath the root.
fn apply_to_dir(root: &Beneath, e: &Entry, as_root: bool) -> Result<()> {
    let path = root.display(&e.path);
    let flags = OFlags::DIRECTORY | OFlags::RDONLY;
    let dir = File::from(root.open_at(&e.path, flags, 0).at(&path)?);
    apply_to_file(&dir, &path, e, as_root)
}

/// A symlink's metadata, with `*at` calls on its parent's descriptor that
/// do not follow it. Its xattrs go through the parent descriptor's
/// `/proc/self/fd` name, which names that very directory.
fn apply_to_symlink(root: &Beneath, e: &Entry, as_root: bool) -> Result<()> {
    let path = root.display(&e.path);
    let (parent, name) = root.parent(&e.path).at(&path)?;
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    if as_root {
        let (uid, gid) = (
            rustix::fs::Uid::from_raw(e.uid),
            rustix::fs::Gid::from_raw(e.gid),
        );
        rustix::fs::chownat(parent.fd(), name, Some(uid), Some(gid), nofollow)
            .map_err(|err| Error::io(&path, err.into()))?;
    }
    if !e.xattrs.is_empty() {
        use std::os::fd::AsRawFd;
        let via = Path::new("/proc/self/fd")
            .join(parent.fd().as_raw_fd().to_string())
            .join(name);
        for x in &e.xattrs {
            if let Err(err) = xattr::set(&via, std::ffi::OsStr::from_bytes(&x.name), &x.value) {
                if xattr_failure_counts(&x.name, as_root) {
                    return Err(Error::io(&path, err));
                }
            }
        }
    }
    rustix::fs::utimensat(parent.fd(), name, &timestamps(e.mtime_ns), nofollow)
        .map_err(|err| Error::io(&path, err.into()))
}

fn apply(root: &Beneath, e: &Entry, as_root: bool) -> Result<()> {
    match e.kind {
        EntryKind::Symlink { .. } => apply_to_symlink(root, e, as_root),
        _ => apply_to_dir(root, e, as_root),
    }
}

/// Whether this process may give files their owners.
pub fn as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Metadata of a window's symlinks: everything but regular files (which
/// got theirs as they were written), hardlinks (which share their
/// target's) and directories (given theirs once complete, [`apply_dirs`]).
pub fn apply_window(root: &Beneath, tree: &Tree) -> Result<()> {
    let as_root = as_root();
    tree.entries
        .par_iter()
        .filter(|e| matches!(e.kind, EntryKind::Symlink { .. }))
        .try_for_each(|e| apply(root, e, as_root))
}

/// Metadata of directories nothing more will be written into, in the
/// order given (deepest first).
pub fn apply_dirs(root: &Beneath, dirs: &[Entry]) -> Result<()> {
    let as_root = as_root();
    for e in dirs {
        apply(root, e, as_root)?;
    }
    Ok(())
}
