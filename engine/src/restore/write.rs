//! Restore step 3: lay out the tree under the target and write file data.
//!
//! The target is only ever entered through directories this restore made
//! sure are real directories, and files are opened with `O_NOFOLLOW`, so an
//! existing symlink in the target is replaced, never followed.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use strata_format::layer::EntryKind;
use strata_format::pack::decode_chunk;
use strata_format::ChunkId;

use super::plan::PackPlan;
use super::tree::Tree;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;
use crate::repository::Repository;

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

/// Creates directories (in order) and empty files of the right size.
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
        let EntryKind::File { size, .. } = &e.kind else {
            return Ok(());
        };
        let path = target_path(root, &e.path);
        clear_slot(&path, false)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nofollow())
            .open(&path)
            .at(&path)?;
        file.set_len(*size).at(&path)
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
        let block = &data[at..end];
        if block.iter().any(|&b| b != 0) {
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

/// Fetches every chunk of every pack (packs in parallel), checks each against
/// its id, and writes it wherever the tree needs it.
pub fn fill(
    repo: &Repository,
    root: &Path,
    tree: &Tree,
    plans: &[PackPlan],
    progress: &Progress,
) -> Result<()> {
    plans.par_iter().try_for_each(|plan| -> Result<()> {
        let pack = repo.open_pack(&plan.pack)?;
        for placement in &plan.placements {
            let e = &placement.entry;
            let stored = pack.read_at(e.offset, e.stored_len as usize)?;
            let raw = decode_chunk(e, &stored).map_err(|err| Error::Corrupt {
                location: format!("pack {} at offset {}", plan.pack, e.offset),
                detail: err.to_string(),
            })?;
            for &(file, offset) in &placement.targets {
                let path = target_path(root, &tree.entries[file].path);
                let out = OpenOptions::new()
                    .write(true)
                    .custom_flags(nofollow())
                    .open(&path)
                    .at(&path)?;
                write_sparse(&out, &path, &raw, offset)?;
                progress.add_bytes(raw.len() as u64);
            }
        }
        Ok(())
    })
}

/// Checks every restored file's whole-file hash. A file of one chunk hashes
/// to that chunk's id, which `fill` verified; longer files are read back.
pub fn verify(root: &Path, tree: &Tree) -> Result<()> {
    tree.entries.par_iter().try_for_each(|e| -> Result<()> {
        let EntryKind::File { chunks, hash, .. } = &e.kind else {
            return Ok(());
        };
        let actual = match chunks.as_slice() {
            [] => ChunkId::of(b"").0,
            [only] => only.id.0,
            _ => {
                let path = target_path(root, &e.path);
                let mut file = File::open(&path).at(&path)?;
                let mut hasher = blake3::Hasher::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = file.read(&mut buf).at(&path)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                *hasher.finalize().as_bytes()
            }
        };
        if actual != hash.0 {
            return Err(Error::Corrupt {
                location: format!("restored file {}", String::from_utf8_lossy(&e.path)),
                detail: "whole-file hash differs from the backup's".into(),
            });
        }
        Ok(())
    })
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
