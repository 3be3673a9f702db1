//! The [`Fs`] of a directory, for [`super::PosixStore`]. Durability comes from fsync: of a file
//! before its name is published, and of the directory after a name in it
//! is created, renamed or removed. A locally mounted NFS export is such a
//! directory (the kernel client turns fsync into COMMIT).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::files::{FileMeta, FileWriter, Files, Fs};
use super::{check_key, io_error, Modes, ObjectReader, Space};
use crate::error::Result;

#[derive(Debug)]
pub struct PosixFs {
    root: PathBuf,
    location: String,
    modes: Modes,
}

/// Creates `path` and its missing parents, each given `mode` exactly
/// (not as the umask would leave it).
fn make_dirs(path: &Path, mode: u32) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        make_dirs(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(mode)),
    }
}

impl Files<PosixFs> {
    /// A store in directory `root`, created if missing, with the default
    /// [`Modes`].
    pub fn new(root: &Path) -> Result<Files<PosixFs>> {
        Self::with_modes(root, Modes::default())
    }

    /// A store in directory `root`, created if missing; what it creates
    /// gets `modes`.
    pub fn with_modes(root: &Path, modes: Modes) -> Result<Files<PosixFs>> {
        PosixFs::new(root, modes).map(Files::on)
    }
}

impl PosixFs {
    fn new(root: &Path, modes: Modes) -> Result<PosixFs> {
        let location = root.display().to_string();
        // Directories above the repository are the operator's: made as
        // the umask says; the repository's own directory gets `modes.dir`.
        let parent = root.parent().filter(|p| !p.as_os_str().is_empty());
        parent
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| make_dirs(root, modes.dir))
            .map_err(|e| io_error(&location, "", e))?;
        Ok(PosixFs {
            root: root.to_path_buf(),
            location,
            modes,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty() {
            return Ok(self.root.clone());
        }
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn err(&self, key: &str) -> impl FnOnce(std::io::Error) -> crate::error::Error + '_ {
        let key = key.to_string();
        move |e| io_error(&self.location, &key, e)
    }

    /// Removes `key` with `remove` (a file or an empty directory): gone and
    /// durably so when this returns; already gone is fine.
    fn unlink(&self, key: &str, remove: impl Fn(&Path) -> std::io::Result<()>) -> Result<()> {
        let path = self.path(key)?;
        match remove(&path) {
            Ok(()) => self.sync_parent(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(key)(e)),
        }
    }

    /// fsyncs the directory holding `path`, so a name change in it is durable.
    fn sync_parent(&self, path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.location, &dir.display().to_string(), e))
    }
}

struct PosixWriter {
    out: BufWriter<File>,
    location: String,
    key: String,
}

impl Write for PosixWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl FileWriter for PosixWriter {
    fn finish(self: Box<Self>) -> Result<()> {
        let PosixWriter { out, location, key } = *self;
        let file = out
            .into_inner()
            .map_err(|e| io_error(&location, &key, e.into_error()))?;
        // The data must be on disk before the name that makes it reachable.
        file.sync_all().map_err(|e| io_error(&location, &key, e))
    }
}

struct PosixReader {
    file: File,
    len: u64,
    location: String,
    key: String,
}

impl ObjectReader for PosixReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| io_error(&self.location, &self.key, e))
    }
}

impl Fs for PosixFs {
    fn location(&self) -> &str {
        &self.location
    }

    fn create_dir(&self, dir: &str) -> Result<()> {
        let path = self.path(dir)?;
        if path.is_dir() {
            return Ok(());
        }
        make_dirs(&path, self.modes.dir).map_err(self.err(dir))?;
        self.sync_parent(&path)
    }

    fn create(&self, key: &str) -> Result<Box<dyn FileWriter>> {
        let path = self.path(key)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.modes.file)
            .open(&path)
            .map_err(self.err(key))?;
        file.set_permissions(fs::Permissions::from_mode(self.modes.file))
            .map_err(self.err(key))?;
        Ok(Box::new(PosixWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            location: self.location.clone(),
            key: key.to_string(),
        }))
    }

    fn publish(&self, from: &str, to: &str, exclusive: bool) -> Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        if let Some(dir) = dst.parent() {
            if !dir.is_dir() {
                make_dirs(dir, self.modes.dir).map_err(self.err(to))?;
                self.sync_parent(dir)?;
            }
        }
        if exclusive {
            // link(2) fails if the target exists: atomic, on NFS too.
            fs::hard_link(&src, &dst).map_err(self.err(to))?;
            fs::remove_file(&src).map_err(self.err(from))?;
        } else {
            fs::rename(&src, &dst).map_err(self.err(to))?;
        }
        // The new name must be durable before anyone records that it exists.
        self.sync_parent(&dst)?;
        self.sync_parent(&src)
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (src, dst) = (self.path(from)?, self.path(to)?);
        fs::rename(&src, &dst).map_err(self.err(from))?;
        self.sync_parent(&dst)?;
        if src.parent() != dst.parent() {
            self.sync_parent(&src)?;
        }
        Ok(())
    }

    fn open(&self, key: &str) -> Result<Box<dyn ObjectReader>> {
        let path = self.path(key)?;
        let file = File::open(&path).map_err(self.err(key))?;
        let len = file.metadata().map_err(self.err(key))?.len();
        Ok(Box::new(PosixReader {
            file,
            len,
            location: self.location.clone(),
            key: key.to_string(),
        }))
    }

    fn stat(&self, key: &str) -> Result<Option<FileMeta>> {
        match fs::symlink_metadata(self.path(key)?) {
            Ok(m) => Ok(Some(FileMeta {
                len: m.len(),
                id: m.ino(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                is_dir: m.is_dir(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(key)(e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, bool)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.path(dir)?).map_err(self.err(dir))? {
            let entry = entry.map_err(self.err(dir))?;
            let is_dir = entry.file_type().map_err(self.err(dir))?.is_dir();
            out.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
        }
        Ok(out)
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.unlink(key, |p| fs::remove_file(p))
    }

    fn touch(&self, key: &str, mtime_ns: i128) -> Result<()> {
        let at = std::time::UNIX_EPOCH
            + std::time::Duration::from_nanos(u64::try_from(mtime_ns).unwrap_or(0));
        OpenOptions::new()
            .write(true)
            .open(self.path(key)?)
            .and_then(|f| f.set_modified(at))
            .map_err(self.err(key))
    }

    fn space(&self) -> Result<Space> {
        let st =
            rustix::fs::statvfs(&self.root).map_err(|e| io_error(&self.location, "", e.into()))?;
        Ok(Space {
            available: st.f_bavail.saturating_mul(st.f_frsize),
            total: st.f_blocks.saturating_mul(st.f_frsize),
        })
    }
}
