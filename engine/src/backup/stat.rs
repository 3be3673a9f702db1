//! What `lstat` says of a walked path: the fields a backup keeps or compares.
//!
//! Taken with one `fstatat(AT_SYMLINK_NOFOLLOW)` relative to the directory's
//! descriptor, or one `fstat` of an open file; no descriptor is opened for a
//! path only to be asked its status.

use std::ffi::OsStr;
use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType};

use crate::clock::stamp_ns;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Type and permission bits, as `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
}

impl Stat {
    /// `name` in the directory open as `dir`, not following a symlink.
    pub fn at(dir: impl AsFd, name: &OsStr) -> std::io::Result<Stat> {
        Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?.into())
    }

    /// An open file or directory.
    pub fn of(fd: impl AsFd) -> std::io::Result<Stat> {
        Ok(rustix::fs::fstat(fd)?.into())
    }

    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
}

impl From<rustix::fs::Stat> for Stat {
    // The fields' widths and signs differ between architectures.
    #[allow(clippy::unnecessary_cast)]
    fn from(st: rustix::fs::Stat) -> Stat {
        Stat {
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size.max(0) as u64,
            mtime_ns: stamp_ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: stamp_ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn agrees_with_the_standard_library() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"hello").unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        let fd = std::fs::File::open(dir.path()).unwrap();
        for name in ["f", "l"] {
            let ours = Stat::at(&fd, OsStr::new(name)).unwrap();
            let std = std::fs::symlink_metadata(dir.path().join(name)).unwrap();
            assert_eq!(ours.mode, std.mode());
            assert_eq!(ours.size, std.len());
            assert_eq!(ours.mtime_ns, stamp_ns(std.mtime(), std.mtime_nsec()));
            assert_eq!(ours.ctime_ns, stamp_ns(std.ctime(), std.ctime_nsec()));
            assert_eq!((ours.dev, ours.ino), (std.dev(), std.ino()));
            assert_eq!(
                (ours.uid, ours.gid, ours.nlink),
                (std.uid(), std.gid(), std.nlink())
            );
        }
        let link = Stat::at(&fd, OsStr::new("l")).unwrap();
        assert_eq!(link.file_type(), FileType::Symlink);
        assert_eq!(Stat::of(&fd).unwrap().file_type(), FileType::Directory);
        let gone = Stat::at(&fd, OsStr::new("missing")).unwrap_err();
        assert_eq!(gone.kind(), std::io::ErrorKind::NotFound);
    }
}
