//! Paths resolved beneath an open directory, never through a symlink.
//!
//! A restore writes, and a backup reads, only what lies beneath the
//! directory it opened at the start, whatever anyone renames or swaps for a
//! symlink meanwhile: every path is resolved by the kernel from that
//! directory's descriptor with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, or, where the kernel lacks `openat2`, one
//! component at a time with `openat(O_NOFOLLOW)`. Metadata is then set or
//! read through the descriptor that was opened (or with a `*at` call on its
//! parent's descriptor and `AT_SYMLINK_NOFOLLOW`), never by path.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Set once `openat2` turns out unavailable (old kernel, or a seccomp
/// filter that refuses it); the walk by components is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// An open directory that paths are resolved beneath.
pub struct Beneath {
    root: OwnedFd,
    path: PathBuf,
}

impl std::fmt::Debug for Beneath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Beneath").field("path", &self.path).finish()
    }
}

fn io(e: Errno) -> std::io::Error {
    e.into()
}

/// The components of a stored path; `.`/`..`/empty ones are refused (a
/// decoder already refuses them; this keeps the component walk honest too).
fn components(rel: &[u8]) -> std::io::Result<Vec<&[u8]>> {
    let parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == b"." || *p == b"..")
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path has an empty, `.` or `..` component",
        ));
    }
    Ok(parts)
}

impl Beneath {
    /// Opens `path`, which must be a directory and not a symlink. An
    /// absolute path is resolved from `/` one descriptor at a time with no
    /// symlink followed anywhere on it (share and snapshot paths and
    /// restore targets are canonical: a symlink on one is a swap).
    pub fn open(path: &Path) -> Result<Self> {
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
        let opened = match path.strip_prefix("/") {
            Ok(rel) if !rel.as_os_str().is_empty() => rustix::fs::open("/", flags, Mode::empty())
                .map_err(io)
                .and_then(|top| {
                    let top = Beneath {
                        root: top,
                        path: PathBuf::from("/"),
                    };
                    top.open_at(
                        rel.as_os_str().as_bytes(),
                        OFlags::DIRECTORY | OFlags::RDONLY,
                        0,
                    )
                })
                .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO)),
            _ => rustix::fs::open(path, flags, Mode::empty()),
        };
        match opened {
            Ok(root) => Ok(Beneath {
                root,
                path: path.to_path_buf(),
            }),
            Err(Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => {
                let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
                let through = path
                    .ancestors()
                    .skip(1)
                    .any(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.is_symlink()));
                Err(Error::InvalidArgument(match (symlink, through) {
                    (true, _) => format!(
                        "{} is a symlink; a share or restore target must be a real directory",
                        path.display()
                    ),
                    (false, true) => format!(
                        "{} passes through a symlink; a share or restore target is reached \
                         by a path without symlinks",
                        path.display()
                    ),
                    (false, false) => format!("{} is not a directory", path.display()),
                }))
            }
            Err(Errno::NOENT) => Err(Error::NotFound {
                kind: "directory",
                name: path.display().to_string(),
            }),
            Err(e) => Err(Error::io(path, io(e))),
        }
    }

    /// The directory's descriptor, kept.
    pub fn into_fd(self) -> OwnedFd {
        self.root
    }

    /// The directory's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` under the root, for messages only.
    pub fn display(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            return self.path.clone();
        }
        self.path.join(OsStr::from_bytes(rel))
    }

    /// Opens `rel` (empty: the root itself) with `flags` (`O_NOFOLLOW` is
    /// added: a symlink as the last component is not followed either).
    pub fn open_at(&self, rel: &[u8], flags: OFlags, mode: u32) -> std::io::Result<OwnedFd> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mode = Mode::from_raw_mode(mode);
        if rel.is_empty() {
            return rustix::fs::openat(&self.root, ".", flags, mode).map_err(io);
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.root, OsStr::from_bytes(rel), flags, mode, resolve) {
                Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                other => return other.map_err(io),
            }
        }
        let parts = components(rel)?;
        let (last, dirs) = parts
            .split_last()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let dir = self.walk(dirs)?;
        let at = dir.as_ref().map_or(self.root.as_fd(), |d| d.as_fd());
        rustix::fs::openat(at, OsStr::from_bytes(last), flags, mode).map_err(io)
    }

    /// Opens each of `dirs` in turn below the root, none followed as a symlink.
    fn walk(&self, dirs: &[&[u8]]) -> std::io::Result<Option<OwnedFd>> {
        let mut cur: Option<OwnedFd> = None;
        for d in dirs {
            let at = cur.as_ref().map_or(self.root.as_fd(), |c| c.as_fd());
            let next = rustix::fs::openat(
                at,
                OsStr::from_bytes(d),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io)?;
            cur = Some(next);
        }
        Ok(cur)
    }

    /// The directory holding `rel` (opened `O_PATH`, usable with `*at`
    /// calls) and `rel`'s last component.
    pub fn parent<'r>(&self, rel: &'r [u8]) -> std::io::Result<(Parent<'_>, &'r OsStr)> {
        let (dir, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(at) => (&rel[..at], &rel[at + 1..]),
            None => (&b""[..], rel),
        };
        if name.is_empty() || name == b"." || name == b".." {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "path has no last component",
            ));
        }
        let parent = if dir.is_empty() {
            Parent::Root(self.root.as_fd())
        } else {
            Parent::Owned(self.open_at(dir, OFlags::PATH | OFlags::DIRECTORY, 0)?)
        };
        Ok((parent, OsStr::from_bytes(name)))
    }

    /// Removes whatever is at `name` in `dir` (a directory with everything
    /// below it), never following a symlink. A missing entry is not an error.
    pub fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<()> {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR | Errno::PERM) => Self::remove_tree(dir, name),
            Err(e) => Err(io(e)),
        }
    }

    fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> std::io::Result<()> {
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
        let sub = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Ok(sub) => sub,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&sub).map_err(io)? {
            let entry = entry.map_err(io)?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        for n in names {
            Self::remove_at(sub.as_fd(), OsStr::from_bytes(&n))?;
        }
        match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    /// `rel`'s status, not following a symlink; `None` when nothing is there.
    pub fn stat(&self, rel: &[u8]) -> std::io::Result<Option<rustix::fs::Stat>> {
        let (dir, name) = self.parent(rel)?;
        match rustix::fs::statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io(e)),
        }
    }
}

/// A parent directory: the root itself, or one opened beneath it.
pub enum Parent<'a> {
    Root(BorrowedFd<'a>),
    Owned(OwnedFd),
}

impl Parent<'_> {
    pub fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Parent::Root(fd) => *fd,
            Parent::Owned(fd) => fd.as_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn nothing_is_followed_out_of_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(root.join("real")).unwrap();
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let b = Beneath::open(&root).unwrap();
        let create = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY;
        b.open_at(b"real/f", create, 0o600).unwrap();
        assert!(b.open_at(b"link/f", create, 0o600).is_err());
        assert!(b
            .open_at(b"link", OFlags::DIRECTORY | OFlags::RDONLY, 0)
            .is_err());
        assert!(b.parent(b"link/f").is_err());
        assert!(b.open_at(b"../outside/f", create, 0o600).is_err());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // The component walk refuses the same.
        NO_OPENAT2.store(true, Ordering::Relaxed);
        assert!(b.open_at(b"link/g", create, 0o600).is_err());
        assert!(b.open_at(b"../outside/g", create, 0o600).is_err());
        b.open_at(b"real/g", create, 0o600).unwrap();
        NO_OPENAT2.store(false, Ordering::Relaxed);
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // A root that is a symlink is refused, and so is one reached
        // through a symlink anywhere on its path.
        let err = Beneath::open(&root.join("link")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        fs::create_dir(outside.join("inner")).unwrap();
        let err = Beneath::open(&root.join("link/inner")).unwrap_err();
        assert!(
            err.to_string().contains("passes through a symlink"),
            "{err}"
        );
        let real = fs::canonicalize(root.join("real")).unwrap();
        assert_eq!(Beneath::open(&real).unwrap().path(), real.as_path());
    }

    #[test]
    fn remove_at_takes_trees_and_never_follows() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(root.join("d/e")).unwrap();
        fs::write(root.join("d/e/f"), b"x").unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("d/link")).unwrap();
        let b = Beneath::open(&root).unwrap();
        Beneath::remove_at(b.fd(), OsStr::new("d")).unwrap();
        assert!(!root.join("d").exists());
        assert!(outside.join("keep").exists());
        Beneath::remove_at(b.fd(), OsStr::new("missing")).unwrap();
    }
}
