//! Stages: read → chunk → hash → dedup → compress, for one walk item.
//!
//! Small files are read whole and handled on the calling worker (parallelism
//! comes from many files at once). Large files are read through a sliding
//! window; the chunks of each window are hashed and compressed in parallel
//! while the whole-file hash runs beside them.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crossbeam_channel::Sender;
use rayon::prelude::*;
use strata_format::config::ChunkerParams;
use strata_format::layer::{ChunkRef, Entry, EntryKind, Xattr};
use strata_format::pack::compress_chunk;
use strata_format::{ChunkId, FileHash};

use super::dedup::Dedup;
use super::packer::Blob;
use super::report::{Counters, Report};
use super::walk::{ItemKind, WalkItem};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Files up to this size are read in one piece.
const WHOLE_READ_MAX: u64 = 8 << 20;
/// Window for larger files.
const WINDOW: usize = 16 << 20;

pub struct Chunking<'a> {
    pub params: ChunkerParams,
    pub zstd_level: Option<i32>,
    pub dedup: &'a Dedup,
    pub blobs: Sender<Blob>,
    pub counters: &'a Counters,
    pub report: &'a Report,
    pub progress: &'a Progress,
}

/// Why one file could not be backed up: a report line, or the end of the backup.
enum FileError {
    /// Skip this path, report it, go on.
    Skip(String),
    /// Stop the backup (the packer is gone, the catalog failed, ...).
    Fatal(Error),
}

impl From<Error> for FileError {
    fn from(e: Error) -> Self {
        FileError::Fatal(e)
    }
}

fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Entry fields every kind shares, from `lstat` and the xattrs.
fn base_entry(item: &WalkItem, meta: &Metadata, kind: EntryKind, report: &Report) -> Entry {
    Entry {
        path: item.rel.clone(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
        xattrs: read_xattrs(&item.abs, &item.rel, report),
        kind,
    }
}

fn read_xattrs(abs: &Path, rel: &[u8], report: &Report) -> Vec<Xattr> {
    let names = match xattr::list(abs) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(95) => return Vec::new(), // EOPNOTSUPP
        Err(e) => {
            report.warning(rel, format!("cannot list xattrs: {e}"));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(abs, &name) {
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

impl Chunking<'_> {
    /// Turns one walk item into its layer entry (`None`: nothing to record).
    pub fn process(&self, item: &WalkItem) -> Result<Option<Entry>> {
        let Some(meta) = item.meta.as_ref() else {
            return Ok(None);
        };
        let kind = match &item.kind {
            ItemKind::Nothing => return Ok(None),
            ItemKind::Dir => {
                Counters::add(&self.counters.dirs, 1);
                EntryKind::Dir
            }
            ItemKind::Symlink => match std::fs::read_link(&item.abs) {
                Ok(target) => {
                    Counters::add(&self.counters.symlinks, 1);
                    EntryKind::Symlink {
                        target: target.as_os_str().as_bytes().to_vec(),
                    }
                }
                Err(e) => {
                    self.report
                        .problem(&item.rel, format!("cannot read symlink: {e}"));
                    return Ok(None);
                }
            },
            ItemKind::Hardlink(target) => {
                Counters::add(&self.counters.hardlinks, 1);
                EntryKind::Hardlink {
                    target: target.clone(),
                }
            }
            ItemKind::File => match self.file(&item.abs, meta) {
                Ok(kind) => {
                    Counters::add(&self.counters.files, 1);
                    kind
                }
                Err(FileError::Skip(why)) => {
                    self.report.problem(&item.rel, why);
                    return Ok(None);
                }
                Err(FileError::Fatal(e)) => return Err(e),
            },
        };
        Ok(Some(base_entry(item, meta, kind, self.report)))
    }

    fn file(&self, abs: &Path, meta: &Metadata) -> Result<EntryKind, FileError> {
        let skip = |what: &str, e: std::io::Error| FileError::Skip(format!("{what}: {e}"));
        // O_NOFOLLOW: the walk saw a regular file; never follow a symlink
        // swapped in since then.
        let mut file = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(abs)
            .map_err(|e| skip("cannot open", e))?;
        let kind = if meta.len() <= WHOLE_READ_MAX {
            self.small_file(&mut file, meta.len())
        } else {
            self.large_file(&file)
        }?;
        // A file written while we read it is kept as read, and reported.
        if let Ok(after) = file.metadata() {
            if after.len() != meta.len()
                || after.mtime() != meta.mtime()
                || after.mtime_nsec() != meta.mtime_nsec()
            {
                self.report.warning(
                    abs.as_os_str().as_bytes(),
                    "changed during backup".to_string(),
                );
            }
        }
        Ok(kind)
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
        let hash = match chunks.as_slice() {
            [only] => FileHash(only.id.0),
            _ => FileHash(*blake3::hash(&data).as_bytes()),
        };
        self.account(data.len() as u64);
        Ok(EntryKind::File {
            size: data.len() as u64,
            chunks,
            hash,
        })
    }

    fn large_file(&self, file: &File) -> Result<EntryKind, FileError> {
        let mut stream = crate::chunker::ChunkStream::new(file, self.params, WINDOW);
        let mut hasher = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let mut size = 0u64;
        loop {
            let batch = match stream.next_batch() {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => return Err(FileError::Skip(format!("cannot read: {e}"))),
            };
            let pieces = batch.chunks();
            let (_, refs) = rayon::join(
                || hasher.update(batch.data),
                || {
                    pieces
                        .par_iter()
                        .map(|piece| self.chunk(piece))
                        .collect::<Result<Vec<_>>>()
                },
            );
            chunks.extend(refs?);
            size += batch.data.len() as u64;
            self.account(batch.data.len() as u64);
        }
        Ok(EntryKind::File {
            size,
            chunks,
            hash: FileHash(*hasher.finalize().as_bytes()),
        })
    }

    fn account(&self, bytes: u64) {
        Counters::add(&self.counters.logical_bytes, bytes);
        self.progress.add_bytes(bytes);
    }

    /// hash → dedup → (if new) compress and hand to the packer.
    fn chunk(&self, data: &[u8]) -> Result<ChunkRef> {
        let id = ChunkId::of(data);
        let len = data.len() as u32;
        if self.dedup.reserve(id)? {
            let (stored, compression) = compress_chunk(data, self.zstd_level)
                .map_err(|e| Error::Bug(format!("compressing a chunk: {e}")))?;
            Counters::add(&self.counters.new_bytes, u64::from(len));
            Counters::add(&self.counters.new_chunks, 1);
            self.blobs
                .send(Blob {
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
