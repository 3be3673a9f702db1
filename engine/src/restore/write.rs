//! Restore step 3: lay out the tree under the target and write file data.
//!
//! The target is only ever entered through directories this restore made
//! sure are real directories, and files are opened with `O_NOFOLLOW`, so an
//! existing symlink in the target is replaced, never followed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use strata_format::layer::EntryKind;
use strata_format::pack::PackEntry;
use strata_format::{ChunkId, PackId};

use super::fetch::{decode, read_ahead, read_span, spans, Span};

use super::plan::{FileUnit, PackUnit, Unit};
use super::tree::Tree;
use crate::catalog::ChunkLocation;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::repository::{PackFile, Repository};

/// Holes are kept at this granularity: an all-zero aligned block is skipped.
const HOLE_BLOCK: usize = 4096;

pub fn target_path(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(std::ffi::OsStr::from_bytes(rel))
}

fn nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// Clears whatever occupies `path` unless it is already a real directory and
/// `keep_dir` is set. Symlinks are removed, not followed.
fn clear_slot(path: &Path, keep_dir: bool) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
        Ok(meta) if meta.is_dir() => {
            if keep_dir {
                return Ok(true);
            }
            fs::remove_dir_all(path).at(path)?;
            Ok(false)
        }
        Ok(_) => {
            fs::remove_file(path).at(path)?;
            Ok(false)
        }
    }
}

/// Creates directories (in order), clears the way for every file and
/// creates the empty ones; other files are created by the unit that fills them.
pub fn layout(root: &Path, tree: &Tree) -> Result<()> {
    for e in &tree.entries {
        if matches!(e.kind, EntryKind::Dir) {
            let path = target_path(root, &e.path);
            if clear_slot(&path, true)? {
                // An existing directory may be read-only; its own mode is
                // restored with the rest of the metadata at the end.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).at(&path)?;
            } else {
                fs::create_dir(&path).at(&path)?;
            }
        }
    }
    tree.entries.par_iter().try_for_each(|e| -> Result<()> {
        let EntryKind::File { chunks, hash, .. } = &e.kind else {
            return Ok(());
        };
        let path = target_path(root, &e.path);
        clear_slot(&path, false)?;
        if chunks.is_empty() {
            check_hash(&e.path, ChunkId::of(b"").0, hash.0)?;
            create(&path)?;
        }
        Ok(())
    })
}

fn create(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nofollow())
        .open(path)
        .at(path)
}

fn check_hash(rel: &[u8], actual: [u8; 32], expected: [u8; 32]) -> Result<()> {
    if actual == expected {
        return Ok(());
    }
    Err(Error::Corrupt {
        location: format!("restored file {}", String::from_utf8_lossy(rel)),
        detail: "whole-file hash differs from the backup's".into(),
    })
}

/// Writes `data` at `offset`, skipping aligned all-zero blocks (left as holes).
fn write_sparse(file: &File, path: &Path, data: &[u8], offset: u64) -> Result<()> {
    let mut at = 0usize;
    while at < data.len() {
        // Run up to the next block boundary of the file.
        let file_pos = offset + at as u64;
        let to_boundary = HOLE_BLOCK - (file_pos % HOLE_BLOCK as u64) as usize;
        let end = (at + to_boundary).min(data.len());
        if data[at..end].iter().any(|&b| b != 0) {
            // Extend the run over following non-zero blocks to write in one call.
            let mut run_end = end;
            while run_end < data.len() {
                let next = (run_end + HOLE_BLOCK).min(data.len());
                if data[run_end..next].iter().all(|&b| b == 0) {
                    break;
                }
                run_end = next;
            }
            file.write_all_at(&data[at..run_end], file_pos).at(path)?;
            at = run_end;
        } else {
            at = end;
        }
    }
    Ok(())
}

/// Runs every unit (in parallel), so every file gets its data, every chunk
/// is checked against its id and every file against its whole-file hash.
pub fn fill(
    repo: &Repository,
    root: &Path,
    tree: &Tree,
    units: &[Unit],
    progress: &Progress,
) -> Result<()> {
    units.par_iter().try_for_each(|unit| match unit {
        Unit::Pack(unit) => fill_pack(repo, root, tree, unit, progress),
        Unit::File(unit) => fill_file(repo, root, tree, unit, progress),
    })
}

fn fill_pack(
    repo: &Repository,
    root: &Path,
    tree: &Tree,
    unit: &PackUnit,
    progress: &Progress,
) -> Result<()> {
    let pack = repo.open_pack(&unit.pack)?;
    let entries: Vec<&PackEntry> = unit.placements.iter().map(|p| &p.entry).collect();
    read_ahead(
        spans(&entries),
        |span| Ok((span.clone(), read_span(&pack, &entries[span])?)),
        |(span, stored)| {
            progress.check()?;
            for placement in &unit.placements[span] {
                let raw = decode(pack.id, &placement.entry, stored.blob(&placement.entry)?)?;
                for &i in &placement.files {
                    let e = &tree.entries[i];
                    let EntryKind::File { size, hash, .. } = &e.kind else {
                        return Err(Error::Bug("pack unit names a non-file".into()));
                    };
                    // A one-chunk file's content hash is its chunk id, just verified.
                    check_hash(&e.path, placement.entry.id.0, hash.0)?;
                    let path = target_path(root, &e.path);
                    let out = create(&path)?;
                    write_sparse(&out, &path, &raw, 0)?;
                    out.set_len(*size).at(&path)?;
                    progress.add_bytes(raw.len() as u64);
                }
            }
            Ok(())
        },
    )
}

/// Chunks decoded in parallel at a time within one file.
const FILE_WINDOW: usize = 8;

fn fill_file(
    repo: &Repository,
    root: &Path,
    tree: &Tree,
    unit: &FileUnit,
    progress: &Progress,
) -> Result<()> {
    let e = &tree.entries[unit.file];
    let EntryKind::File { size, hash, .. } = &e.kind else {
        return Err(Error::Bug("file unit names a non-file".into()));
    };
    let path = target_path(root, &e.path);
    let out = create(&path)?;
    let mut packs: HashMap<PackId, PackFile> = HashMap::new();
    let mut hasher = blake3::Hasher::new();
    let mut offset = 0u64;
    // A window's chunks, read as spans: (the spans, each chunk's span).
    let mut read_window = |window: &[ChunkLocation]| -> Result<(Vec<Span>, Vec<usize>)> {
        let mut read = Vec::new();
        let mut of_chunk = Vec::with_capacity(window.len());
        // Neighbouring chunks in the same pack are read at once.
        for run in window.chunk_by(|a, b| a.pack == b.pack) {
            let pack = match packs.get(&run[0].pack) {
                Some(pack) => pack,
                None => packs
                    .entry(run[0].pack)
                    .or_insert(repo.open_pack(&run[0].pack)?),
            };
            let entries: Vec<&PackEntry> = run.iter().map(|loc| &loc.entry).collect();
            for span in spans(&entries) {
                of_chunk.extend(std::iter::repeat_n(read.len(), span.len()));
                read.push(read_span(pack, &entries[span])?);
            }
        }
        Ok((read, of_chunk))
    };
    read_ahead(
        unit.chunks.chunks(FILE_WINDOW),
        |window| Ok((window, read_window(window)?)),
        |(window, (read, of_chunk))| {
            progress.check()?;
            let raw: Vec<Cow<[u8]>> = window
                .par_iter()
                .zip(of_chunk)
                .map(|(loc, span)| {
                    let stored = read
                        .get(span)
                        .ok_or_else(|| Error::Bug("chunk outside its window".into()))?
                        .blob(&loc.entry)?;
                    decode(loc.pack, &loc.entry, stored)
                })
                .collect::<Result<_>>()?;
            let (_, written) = rayon::join(
                || {
                    for r in &raw {
                        hasher.update(r);
                    }
                },
                || -> Result<u64> {
                    let mut at = offset;
                    for r in &raw {
                        write_sparse(&out, &path, r, at)?;
                        at += r.len() as u64;
                    }
                    Ok(at)
                },
            );
            let next = written?;
            progress.add_bytes(next - offset);
            offset = next;
            Ok(())
        },
    )?;
    check_hash(&e.path, *hasher.finalize().as_bytes(), hash.0)?;
    out.set_len(*size).at(&path)
}

/// Creates symlinks and hardlinks (after file data, so link targets exist).
pub fn links(root: &Path, tree: &Tree) -> Result<()> {
    for e in &tree.entries {
        let path = target_path(root, &e.path);
        match &e.kind {
            EntryKind::Symlink { target } => {
                clear_slot(&path, false)?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path).at(&path)?;
            }
            EntryKind::Hardlink { target } => {
                clear_slot(&path, false)?;
                fs::hard_link(target_path(root, target), &path).at(&path)?;
            }
            _ => {}
        }
    }
    Ok(())
}
