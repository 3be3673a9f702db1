//! Restore metadata, after the data it describes. Owners (when running as
//! root), xattrs, modes, then mtimes. A regular file gets its own through
//! its open descriptor as soon as its data is written ([`apply_to_file`],
//! from the parallel fill); everything else gets it in a last step, with
//! directories last and deepest first, so writing into a directory never
//! disturbs its restored mtime or trips over its mode.

use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
use strata_format::layer::{Entry, EntryKind};
use xattr::FileExt;

use super::tree::Tree;
use super::write::target_path;
use crate::error::{Error, IoContext, Result};
use rayon::prelude::*;

fn set_times(path: &Path, mtime_ns: i64) -> Result<()> {
    rustix::fs::utimensat(CWD, path, &timestamps(mtime_ns), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io(path, e.into()))
}

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

fn apply(root: &Path, e: &Entry, as_root: bool) -> Result<()> {
    let path = target_path(root, &e.path);
    let is_symlink = matches!(e.kind, EntryKind::Symlink { .. });
    if as_root {
        std::os::unix::fs::lchown(&path, Some(e.uid), Some(e.gid)).at(&path)?;
    }
    for x in &e.xattrs {
        let name = std::ffi::OsStr::from_bytes(&x.name);
        if let Err(err) = xattr::set(&path, name, &x.value) {
            if xattr_failure_counts(&x.name, as_root) {
                return Err(Error::io(&path, err));
            }
        }
    }
    if !is_symlink {
        fs::set_permissions(&path, fs::Permissions::from_mode(e.mode)).at(&path)?;
    }
    set_times(&path, e.mtime_ns)
}

/// Whether this process may give files their owners.
pub fn as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Metadata of everything but regular files (which got theirs as they were
/// written) and hardlinks (which share their target's).
pub fn apply_all(root: &Path, tree: &Tree) -> Result<()> {
    let as_root = as_root();
    tree.entries
        .par_iter()
        .filter(|e| {
            !matches!(
                e.kind,
                EntryKind::Dir | EntryKind::Hardlink { .. } | EntryKind::File { .. }
            )
        })
        .try_for_each(|e| apply(root, e, as_root))?;
    for e in tree.entries.iter().rev() {
        if matches!(e.kind, EntryKind::Dir) {
            apply(root, e, as_root)?;
        }
    }
    Ok(())
}
