//! Stages: read → chunk → hash → dedup → compress, for one walk item.
//!
//! Small files are read whole and handled on the calling worker (parallelism
//! comes from many files at once). Large files are read ahead in blocks; each
//! window is cut in parallel segments, and its chunks are hashed and
//! compressed in parallel; a file's hash is made of its chunk ids.

use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crossbeam_channel::Sender;
use rayon::prelude::*;
use strata_format::config::ChunkerParams;
use strata_format::layer::{ChunkRef, Entry, EntryKind, Xattr};
use strata_format::{ChunkId, FileHash};

use super::dedup::Dedup;
use super::diff;
use super::kind::ItemKind;
use super::layer::Slot;
use super::report::{Counters, Report};
use super::stat::Stat;
use super::walk::WalkItem;
use crate::chunker::Stop;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::codec;
use crate::repository::packs::write::NewBlob;

/// Files up to this size are read in one piece.
const WHOLE_READ_MAX: u64 = 8 << 20;
/// Larger files are read in blocks of this size, one block ahead.
const BLOCK: usize = 16 << 20;

pub struct Chunking<'a> {
    pub params: ChunkerParams,
    pub zstd_level: Option<i32>,
    /// Read every file, even those whose `lstat` matches the parent.
    pub rehash: bool,
    pub dedup: &'a Dedup<'a>,
    pub blobs: Sender<NewBlob>,
    pub counters: &'a Counters,
    pub report: &'a Report,
    pub progress: &'a Progress,
}

/// Why one file could not be backed up: a report line, or the end of the backup.
enum FileError {
    /// Skip this path, report it, go on.
    Skip(String),
    /// It was deleted since the walk saw it.
    Gone,
    /// Stop the backup (the packer is gone, the catalog failed, ...).
    Fatal(Error),
}

impl From<Error> for FileError {
    fn from(e: Error) -> Self {
        FileError::Fatal(e)
    }
}

/// Entry fields every kind shares, from `lstat` and the xattrs.
fn base_entry(item: &WalkItem, meta: &Stat, kind: EntryKind, xattrs: Vec<Xattr>) -> Entry {
    Entry {
        path: item.rel.clone(),
        mode: meta.mode & 0o7777,
        uid: meta.uid,
        gid: meta.gid,
        mtime_ns: meta.mtime_ns,
        ctime_ns: meta.ctime_ns,
        inode: meta.ino,
        xattrs,
        kind,
    }
}

/// The extended attributes of a path (read through its directory's
/// descriptor, not following a symlink).
fn read_xattrs(at: &Path, rel: &[u8], report: &Report) -> Vec<Xattr> {
    collect_xattrs(xattr::list(at), |name| xattr::get(at, name), rel, report)
}

/// The extended attributes of an open file.
fn file_xattrs(file: &File, rel: &[u8], report: &Report) -> Vec<Xattr> {
    use xattr::FileExt;
    collect_xattrs(file.list_xattr(), |name| file.get_xattr(name), rel, report)
}

fn collect_xattrs(
    listed: std::io::Result<xattr::XAttrs>,
    get: impl Fn(&std::ffi::OsStr) -> std::io::Result<Option<Vec<u8>>>,
    rel: &[u8],
    report: &Report,
) -> Vec<Xattr> {
    let names = match listed {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(95) => return Vec::new(), // EOPNOTSUPP
        Err(e) => {
            report.warning(rel, format!("cannot list xattrs: {e}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for name in names {
        match get(&name) {
            Ok(Some(value)) => out.push(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            }),
            Ok(None) => {}
            Err(e) => report.warning(
                rel,
                format!("cannot read xattr {}: {e}", name.to_string_lossy()),
            ),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// The chunks of the parent's version of `item`, when it was a file of
/// more than one: where they are found again, the file need not be cut.
fn previous_chunks(item: &WalkItem) -> Option<&[ChunkRef]> {
    match &item.parent.as_ref()?.kind {
        EntryKind::File { chunks, .. } if chunks.len() > 1 => Some(chunks),
        _ => None,
    }
}

impl Chunking<'_> {
    /// Turns one walk item into what its layer slot holds.
    pub fn process(&self, item: &WalkItem) -> Result<Slot> {
        self.progress.check()?;
        let Some(meta) = item.meta.as_ref() else {
            return Ok(Slot::Empty);
        };
        // What the parent's entry stands for never gets here: the walk
        // counted it and went on (`Reads::inherits`).
        // A path's xattrs, for what is not read as an open file.
        let at_path = || read_xattrs(&item.at(), &item.rel, self.report);
        let (kind, meta, xattrs) = match &item.kind {
            ItemKind::Nothing => return Ok(Slot::Empty),
            ItemKind::Dir => (EntryKind::Dir, *meta, at_path()),
            ItemKind::Symlink => match std::fs::read_link(item.at()) {
                Ok(target) => {
                    let target = target.as_os_str().as_bytes().to_vec();
                    (EntryKind::Symlink { target }, *meta, at_path())
                }
                Err(e) => {
                    self.report
                        .problem(&item.rel, format!("cannot read symlink: {e}"));
                    return Ok(Slot::Empty);
                }
            },
            ItemKind::Hardlink(target) => (
                EntryKind::Hardlink {
                    target: target.clone(),
                },
                *meta,
                at_path(),
            ),
            ItemKind::File => match self.file(item) {
                Ok(read) => read,
                Err(FileError::Skip(why)) => {
                    self.report.problem(&item.rel, why);
                    return Ok(Slot::Unreadable(item.rel.clone()));
                }
                Err(FileError::Gone) => return Ok(Slot::Gone(item.rel.clone())),
                Err(FileError::Fatal(e)) => return Err(e),
            },
        };
        self.counters.count(&kind);
        let entry = base_entry(item, &meta, kind, xattrs);
        match &item.parent {
            Some(parent) if diff::same(&entry, parent, self.rehash) => Ok(Slot::Unchanged),
            _ => Ok(Slot::Entry(entry)),
        }
    }

    /// Reads a regular file: its content, and the `fstat` taken before the
    /// read that goes with it. A file that changes while it is read (size or
    /// mtime differ after) is read once more; if it changes again, the second
    /// read is kept and reported.
    fn file(&self, item: &WalkItem) -> Result<(EntryKind, Stat, Vec<Xattr>), FileError> {
        let skip = |what: &str, e: std::io::Error| FileError::Skip(format!("{what}: {e}"));
        for attempt in 0..2 {
            // Through the directory's descriptor, and O_NOFOLLOW: the walk
            // saw a regular file; never follow a symlink swapped in since.
            let mut file = match item.open() {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FileError::Gone),
                Err(e) => return Err(skip("cannot open", e)),
            };
            let before = Stat::of(&file).map_err(|e| skip("cannot stat", e))?;
            let kind = if before.size <= WHOLE_READ_MAX {
                self.small_file(&mut file, before.size)
            } else {
                self.large_file(&file, previous_chunks(item))
            }?;
            let stable = Stat::of(&file)
                .is_ok_and(|after| after.size == before.size && after.mtime_ns == before.mtime_ns);
            if stable {
                return Ok((kind, before, file_xattrs(&file, &item.rel, self.report)));
            }
            if attempt == 1 {
                self.report.warning(
                    &item.rel,
                    "changed during backup: it changed while read twice; \
                     the second read is kept and may mix old and new content"
                        .to_string(),
                );
                return Ok((kind, before, file_xattrs(&file, &item.rel, self.report)));
            }
            // Read again; its bytes count once more toward the progress total.
            self.progress.add_total(before.size);
        }
        Err(FileError::Fatal(Error::Bug("file read loop ended".into())))
    }

    fn small_file(&self, file: &mut File, expected: u64) -> Result<EntryKind, FileError> {
        // One allocation of the right size (plus one byte to see EOF).
        let mut data = Vec::with_capacity(expected as usize + 1);
        file.read_to_end(&mut data)
            .map_err(|e| FileError::Skip(format!("cannot read: {e}")))?;
        let mut chunks = Vec::new();
        let mut at = 0;
        for len in crate::chunker::cut_slice(&data, &self.params) {
            chunks.push(self.chunk(&data[at..at + len])?);
            at += len;
        }
        self.account(data.len() as u64);
        Ok(EntryKind::File {
            size: data.len() as u64,
            hash: FileHash::of_chunks(chunks.iter().map(|c| &c.id)),
            chunks,
        })
    }

    /// Read ahead on a thread of its own; each window is cut in parallel
    /// segments (or, where the `previous` version's chunks are found again,
    /// not at all) and hashed while the chunks of the one before are
    /// compressed in parallel. Each byte is hashed once: the file's hash is
    /// made of its chunk ids.
    fn large_file(
        &self,
        file: &File,
        previous: Option<&[ChunkRef]>,
    ) -> Result<EntryKind, FileError> {
        let mut chunks = Vec::new();
        let mut size = 0u64;
        crate::chunker::each_batch(file, self.params, BLOCK, previous, |batch| {
            self.progress.check()?;
            let refs = batch
                .chunks()
                .par_iter()
                .zip(batch.ids)
                .map(|(piece, &id)| {
                    let chunk = self.store(piece, id);
                    // Progress moves chunk by chunk, not window by window.
                    self.account(piece.len() as u64);
                    chunk
                })
                .collect::<Result<Vec<_>>>()?;
            chunks.extend(refs);
            size += batch.data.len() as u64;
            Ok::<_, FileError>(())
        })
        .map_err(|stop| match stop {
            Stop::Read(e) => FileError::Skip(format!("cannot read: {e}")),
            Stop::By(e) => e,
        })?;
        Ok(EntryKind::File {
            size,
            hash: FileHash::of_chunks(chunks.iter().map(|c| &c.id)),
            chunks,
        })
    }

    fn account(&self, bytes: u64) {
        Counters::add(&self.counters.read_bytes, bytes);
        self.progress.add_bytes(bytes);
    }

    /// hash → dedup → (if new) compress and hand to the packer.
    fn chunk(&self, data: &[u8]) -> Result<ChunkRef> {
        self.store(data, codec::chunk_id(data))
    }

    /// dedup → (if new) compress and hand to the packer, for `data` whose
    /// id is `id`.
    fn store(&self, data: &[u8], id: ChunkId) -> Result<ChunkRef> {
        let len = data.len() as u32;
        if self.dedup.reserve(id)? {
            // Compressing is the slowest step: stop before it when cancelled.
            self.progress.check()?;
            let (stored, compression) = codec::encode(data, self.zstd_level)
                .map_err(|e| Error::Bug(format!("compressing a chunk: {e}")))?;
            Counters::add(&self.counters.new_bytes, u64::from(len));
            Counters::add(&self.counters.new_chunks, 1);
            self.blobs
                .send(NewBlob {
                    id,
                    stored,
                    raw_len: len,
                    compression,
                })
                .map_err(|_| Error::Bug("the pack writer stopped".into()))?;
        }
        Ok(ChunkRef { id, len })
    }
}
