//! Stage 1: walk the share depth-first in stored-path order.
//!
//! One thread lists directories and sorts their names; the `lstat` of each
//! directory's children runs on a small pool of its own (stat latency, not
//! CPU, bounds a walk over NFS). Items leave numbered in order, so later
//! stages may finish them out of order and the layer is still written sorted.
//! Symlinks are never followed. Hardlinks are detected here, in order, so the
//! first name of an inode is the one that carries the content.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;

use strata_format::layer::Entry;

use super::diff::ParentCursor;
use super::report::Report;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// What the walk found at one path.
pub enum ItemKind {
    File,
    Dir,
    Symlink,
    /// Another name of an inode first seen at this (stored) path.
    Hardlink(Vec<u8>),
    /// Nothing to back up (a skipped or unreadable entry); keeps the numbering.
    Nothing,
}

pub struct WalkItem {
    pub seq: u64,
    pub rel: Vec<u8>,
    pub abs: PathBuf,
    pub meta: Option<Metadata>,
    pub kind: ItemKind,
    /// The parent chain's entry at this path (incremental backups).
    pub parent: Option<Entry>,
}

struct DirCursor {
    rel: Vec<u8>,
    abs: PathBuf,
    children: std::vec::IntoIter<(OsString, std::io::Result<Metadata>)>,
}

pub struct Walker<'a> {
    tx: Sender<WalkItem>,
    parent: Option<ParentCursor<'a>>,
    report: &'a Report,
    progress: &'a Progress,
    pool: rayon::ThreadPool,
    seq: u64,
    links: HashMap<(u64, u64), Vec<u8>>,
    root_dev: u64,
}

/// The walk thread; it returns the tombstones of the paths that are gone.
pub type WalkHandle<'scope> = std::thread::ScopedJoinHandle<'scope, Result<Vec<Vec<u8>>>>;

/// Starts a walk of `root` on a thread of `scope`; items arrive on the
/// receiver. With a `parent` view, each item carries its parent entry.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    root: PathBuf,
    parent: Option<ParentCursor<'scope>>,
    report: &'scope Report,
    progress: &'scope Progress,
) -> Result<(Receiver<WalkItem>, WalkHandle<'scope>)> {
    let meta = fs::metadata(&root).at(&root)?;
    if !meta.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "share path {} is not a directory",
            root.display()
        )));
    }
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .thread_name(|i| format!("strata-stat-{i}"))
        .build()
        .map_err(|e| Error::Bug(format!("cannot start the walk pool: {e}")))?;
    let mut walker = Walker {
        tx,
        parent,
        report,
        progress,
        pool,
        seq: 0,
        links: HashMap::new(),
        root_dev: meta.dev(),
    };
    let handle = scope.spawn(move || {
        walker.run(root)?;
        match walker.parent.take() {
            Some(parent) => parent.finish(),
            None => Ok(Vec::new()),
        }
    });
    Ok((rx, handle))
}

impl Walker<'_> {
    fn list(&self, abs: &PathBuf, rel: &[u8]) -> Option<DirCursor> {
        let entries = match fs::read_dir(abs) {
            Ok(entries) => entries,
            Err(e) => {
                self.report
                    .problem(rel, format!("cannot list directory: {e}"));
                return None;
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => names.push(entry.file_name()),
                Err(e) => {
                    self.report
                        .problem(rel, format!("cannot list directory: {e}"));
                    return None;
                }
            }
        }
        names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let children: Vec<(OsString, std::io::Result<Metadata>)> = self.pool.install(|| {
            names
                .into_par_iter()
                .map(|name| {
                    let meta = fs::symlink_metadata(abs.join(&name));
                    (name, meta)
                })
                .collect()
        });
        Some(DirCursor {
            rel: rel.to_vec(),
            abs: abs.clone(),
            children: children.into_iter(),
        })
    }

    /// Sends one item; `Ok(false)` when the consumers have gone (the backup stopped).
    fn emit(
        &mut self,
        rel: Vec<u8>,
        abs: PathBuf,
        meta: Option<Metadata>,
        kind: ItemKind,
    ) -> Result<bool> {
        let parent = match &mut self.parent {
            Some(cursor) => cursor.take(&rel, matches!(kind, ItemKind::Dir))?,
            None => None,
        };
        let item = WalkItem {
            seq: self.seq,
            rel,
            abs,
            meta,
            kind,
            parent,
        };
        self.seq += 1;
        Ok(self.tx.send(item).is_ok())
    }

    fn run(&mut self, root: PathBuf) -> Result<()> {
        let mut stack: Vec<DirCursor> = Vec::new();
        match self.list(&root, b"") {
            Some(cursor) => stack.push(cursor),
            None => {
                return Err(Error::InvalidArgument(format!(
                    "cannot list share path {}",
                    root.display()
                )))
            }
        }
        while let Some(top) = stack.last_mut() {
            self.progress.check()?;
            let Some((name, meta)) = top.children.next() else {
                stack.pop();
                continue;
            };
            let rel = strata_format::path::join(&top.rel, name.as_bytes());
            let abs = top.abs.join(&name);
            if name.as_bytes().contains(&b'/') || strata_format::path::validate(&rel).is_err() {
                self.report
                    .problem(&rel, "name cannot be stored; skipped".to_string());
                continue;
            }
            let meta = match meta {
                Ok(meta) => meta,
                Err(e) => {
                    self.report.problem(&rel, format!("cannot stat: {e}"));
                    if !self.emit(rel, abs, None, ItemKind::Nothing)? {
                        return Ok(());
                    }
                    continue;
                }
            };
            let ft = meta.file_type();
            let (kind, descend) = if ft.is_dir() {
                (ItemKind::Dir, true)
            } else if ft.is_symlink() {
                (ItemKind::Symlink, false)
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    match self.links.get(&key) {
                        Some(first) => (ItemKind::Hardlink(first.clone()), false),
                        None => {
                            self.links.insert(key, rel.clone());
                            (ItemKind::File, false)
                        }
                    }
                } else {
                    (ItemKind::File, false)
                }
            } else {
                let what = if ft.is_socket() {
                    "socket"
                } else if ft.is_fifo() {
                    "fifo"
                } else if ft.is_block_device() {
                    "block device"
                } else if ft.is_char_device() {
                    "character device"
                } else {
                    "special file"
                };
                self.report.warning(&rel, format!("{what} skipped"));
                (ItemKind::Nothing, false)
            };
            if matches!(kind, ItemKind::File) {
                self.progress.add_total(meta.len());
            }
            let descend = descend && meta.dev() == self.root_dev;
            if !descend && ft.is_dir() {
                self.report
                    .warning(&rel, "mount point: contents not backed up".to_string());
            }
            if !self.emit(rel.clone(), abs.clone(), Some(meta), kind)? {
                return Ok(());
            }
            if descend {
                if let Some(cursor) = self.list(&abs, &rel) {
                    stack.push(cursor);
                }
            }
        }
        Ok(())
    }
}
