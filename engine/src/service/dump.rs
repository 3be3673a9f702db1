//! `dump`: one path of a backup written out without restoring it. A
//! regular file comes out as its bytes; anything else (a directory, the
//! whole tree, a symlink) as a tar stream in path order: GNU headers (long
//! names and link targets as GNU extensions), each entry's mode, owner and
//! mtime, symlinks and hardlinks as such, and extended attributes as PAX
//! `SCHILY.xattr.` records, as GNU tar writes them with `--xattrs`. Every
//! chunk is verified as it is read.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;

use strata_format::layer::{Entry, EntryKind};
use strata_format::path;
use tar::{EntryType, Header};

use super::reading::OpenTree;
use super::Engine;
use crate::error::{Error, Result};
use std::borrow::Borrow;

/// What a dump wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dumped {
    /// Entries written (1 for a file's bytes).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Extended attributes left out: tar's records name them in UTF-8.
    pub xattrs_skipped: u64,
}

impl<E: Borrow<Engine>> OpenTree<E> {
    /// Writes `at` (a stored path; `None`: the whole tree) to `out`: a
    /// regular file's bytes, else a tar stream of it and its subtree.
    pub fn dump(&self, at: Option<&[u8]>, out: &mut dyn Write) -> Result<Dumped> {
        if let Some(at) = at {
            let e = self.entry(at)?;
            if matches!(e.kind, EntryKind::File { .. } | EntryKind::Hardlink { .. }) {
                let file = self.content_of(&e)?;
                let bytes = self.write_file(&file, out)?;
                return Ok(Dumped {
                    entries: 1,
                    bytes,
                    xattrs_skipped: 0,
                });
            }
        }
        self.tar(at, out)
    }

    fn tar(&self, at: Option<&[u8]>, out: &mut dyn Write) -> Result<Dumped> {
        let mut archive = tar::Builder::new(out);
        archive.mode(tar::HeaderMode::Complete);
        let mut dumped = Dumped::default();
        // A hardlink's target outside the dumped subtree: the inode's first
        // name in it carries the content, later ones link to that name.
        let mut moved: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut found = at.is_none();
        for e in self.subtree(at)? {
            let e = e?;
            found = true;
            let e = match &e.kind {
                EntryKind::Hardlink { target }
                    if !at.is_none_or(|at| path::is_within(target, at)) =>
                {
                    match moved.get(target) {
                        Some(first) => Entry {
                            kind: EntryKind::Hardlink {
                                target: first.clone(),
                            },
                            ..e
                        },
                        None => {
                            moved.insert(target.clone(), e.path.clone());
                            Entry {
                                path: e.path,
                                ..self.entry(target)?
                            }
                        }
                    }
                }
                _ => e,
            };
            self.append(&mut archive, &e, &mut dumped)
                .map_err(|err| from_io(err, &e.path))?;
        }
        if !found {
            let at = at.unwrap_or_default();
            return Err(Error::NotFound {
                kind: "path",
                name: format!(
                    "{} in backup {}",
                    String::from_utf8_lossy(at),
                    self.backup().id
                ),
            });
        }
        archive
            .into_inner()
            .and_then(|out| out.flush())
            .map_err(|err| from_io(err, b"(end of archive)"))?;
        Ok(dumped)
    }

    fn append(
        &self,
        archive: &mut tar::Builder<&mut dyn Write>,
        e: &Entry,
        dumped: &mut Dumped,
    ) -> std::io::Result<()> {
        let name = OsStr::from_bytes(&e.path[..]);
        let mut header = Header::new_gnu();
        header.set_mode(e.mode & 0o7777);
        header.set_uid(u64::from(e.uid));
        header.set_gid(u64::from(e.gid));
        header.set_size(0);
        header.set_mtime(u64::try_from(e.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0));
        // PAX records: the mtime's nanoseconds (the header holds seconds),
        // then the xattrs.
        let (secs, nanos) = (
            e.mtime_ns.div_euclid(1_000_000_000),
            e.mtime_ns.rem_euclid(1_000_000_000),
        );
        let mtime = format!("{secs}.{nanos:09}");
        let mut pax: Vec<(String, &[u8])> = Vec::new();
        if nanos != 0 {
            pax.push(("mtime".into(), mtime.as_bytes()));
        }
        for x in &e.xattrs {
            match std::str::from_utf8(&x.name) {
                Ok(n) => pax.push((format!("SCHILY.xattr.{n}"), &x.value[..])),
                Err(_) => dumped.xattrs_skipped += 1,
            }
        }
        if !pax.is_empty() {
            archive.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        dumped.entries += 1;
        match &e.kind {
            EntryKind::Dir => {
                header.set_entry_type(EntryType::Directory);
                let mut dir = e.path.clone();
                dir.push(b'/');
                let dir = OsStr::from_bytes(&dir[..]);
                archive.append_data(&mut header, dir, std::io::empty())
            }
            EntryKind::File { size, .. } => {
                header.set_entry_type(EntryType::Regular);
                header.set_size(*size);
                dumped.bytes += size;
                archive.append_data(&mut header, name, Chunks::new(self, e))
            }
            EntryKind::Symlink { target } => {
                header.set_entry_type(EntryType::Symlink);
                archive.append_link(&mut header, name, OsStr::from_bytes(target))
            }
            EntryKind::Hardlink { target } => {
                header.set_entry_type(EntryType::Link);
                archive.append_link(&mut header, name, OsStr::from_bytes(target))
            }
        }
    }
}

/// An I/O error of the archive, told apart from strata's own carried in it.
fn from_io(err: std::io::Error, at: &[u8]) -> Error {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Carried>())
    {
        Some(_) => match err.into_inner().map(|b| b.downcast::<Carried>()) {
            Some(Ok(carried)) => carried.0,
            _ => Error::Bug("a carried error vanished".into()),
        },
        None => Error::io(
            format!("archive entry {}", String::from_utf8_lossy(at)),
            err,
        ),
    }
}

/// strata's error inside an `io::Error` (a chunk that failed its check).
#[derive(Debug)]
struct Carried(Error);

impl std::fmt::Display for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Carried {}

/// A file's content as a reader, a verified chunk at a time.
struct Chunks<'t, E: Borrow<Engine>> {
    tree: &'t OpenTree<E>,
    entry: &'t Entry,
    next: usize,
    held: Vec<u8>,
    at: usize,
}

impl<'t, E: Borrow<Engine>> Chunks<'t, E> {
    fn new(tree: &'t OpenTree<E>, entry: &'t Entry) -> Self {
        Chunks {
            tree,
            entry,
            next: 0,
            held: Vec::new(),
            at: 0,
        }
    }
}

impl<E: Borrow<Engine>> Read for Chunks<'_, E> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let EntryKind::File { chunks, .. } = &self.entry.kind else {
            return Ok(0);
        };
        while self.at == self.held.len() {
            let Some(c) = chunks.get(self.next) else {
                return Ok(0);
            };
            self.held = self
                .tree
                .chunk(c, &self.entry.path)
                .map_err(|e| std::io::Error::other(Carried(e)))?;
            self.next += 1;
            self.at = 0;
        }
        let n = buf.len().min(self.held.len() - self.at);
        buf[..n].copy_from_slice(&self.held[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
