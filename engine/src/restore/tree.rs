//! Restore step 1: the tree to restore, from the layers of a backup chain.
//!
//! The chain's merged view ([`MergedView`]) is collected, then checked as a
//! whole, because a restore must never be steered out of its target: every
//! entry's parent must be a directory of the tree (so no entry can sit below
//! a symlink), and every hardlink must name a regular file of the tree.

use std::collections::HashMap;

use strata_format::layer::{Entry, EntryKind};
use strata_format::path;

use crate::error::{Error, Result};
use crate::view::MergedView;

/// The final tree: entries in path order, and the index of each regular file.
pub struct Tree {
    pub entries: Vec<Entry>,
    pub files: HashMap<Vec<u8>, usize>,
}

/// Resolves a chain of layers (full first) into a checked tree.
pub fn resolve(layers: &[(String, Vec<u8>)]) -> Result<Tree> {
    let entries = MergedView::new(layers)?.collect::<Result<Vec<Entry>>>()?;
    let files = check(&entries)?;
    Ok(Tree { entries, files })
}

fn check(entries: &[Entry]) -> Result<HashMap<Vec<u8>, usize>> {
    let bad = |p: &[u8], why: &str| Error::Corrupt {
        location: "backup tree".into(),
        detail: format!("{}: {why}", String::from_utf8_lossy(p)),
    };
    let mut files = HashMap::new();
    let mut dirs: Vec<&[u8]> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        while let Some(top) = dirs.last() {
            if path::is_within(&e.path, top) && e.path.len() > top.len() {
                break;
            }
            dirs.pop();
        }
        let parent = e
            .path
            .iter()
            .rposition(|&b| b == b'/')
            .map(|at| &e.path[..at]);
        match (parent, dirs.last()) {
            (None, _) => {}
            (Some(p), Some(top)) if p == *top => {}
            _ => return Err(bad(&e.path, "parent is not a directory of the backup")),
        }
        match &e.kind {
            EntryKind::Dir => dirs.push(&e.path),
            EntryKind::File { .. } => {
                files.insert(e.path.clone(), i);
            }
            EntryKind::Hardlink { target } => {
                let ok = files
                    .get(target)
                    .is_some_and(|&t| matches!(entries[t].kind, EntryKind::File { .. }));
                if !ok {
                    return Err(bad(&e.path, "hardlink to a path that is not a file"));
                }
            }
            EntryKind::Symlink { .. } => {}
        }
    }
    Ok(files)
}
