//! Restore step 4: metadata, after all data. Owners (when running as root),
//! xattrs, modes, then mtimes; directories last and deepest first, so writing
//! into a directory never disturbs its restored mtime or trips over its mode.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
use strata_format::layer::{Entry, EntryKind};

use super::tree::Tree;
use super::write::target_path;
use crate::error::{Error, IoContext, Result};
use rayon::prelude::*;

fn set_times(path: &Path, mtime_ns: i64) -> Result<()> {
    let t = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| Error::io(path, e.into()))
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
            // Unprivileged restores cannot set trusted.* or security.*; the
            // data is still restored, so this is not fatal.
            let privileged = x.name.starts_with(b"trusted.") || x.name.starts_with(b"security.");
            if !privileged || as_root {
                return Err(Error::io(&path, err));
            }
        }
    }
    if !is_symlink {
        fs::set_permissions(&path, fs::Permissions::from_mode(e.mode)).at(&path)?;
    }
    set_times(&path, e.mtime_ns)
}

pub fn apply_all(root: &Path, tree: &Tree) -> Result<()> {
    let as_root = rustix::process::geteuid().is_root();
    tree.entries
        .par_iter()
        .filter(|e| !matches!(e.kind, EntryKind::Dir | EntryKind::Hardlink { .. }))
        .try_for_each(|e| apply(root, e, as_root))?;
    for e in tree.entries.iter().rev() {
        if matches!(e.kind, EntryKind::Dir) {
            apply(root, e, as_root)?;
        }
    }
    Ok(())
}
