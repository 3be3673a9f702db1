//! Restore step 1: the tree to restore, from the layers of a backup chain.
//!
//! Layers are applied in order: a later entry replaces an earlier one at the
//! same path; a tombstone removes a path and everything below it. The result
//! is then checked as a whole, because a restore must never be steered out of
//! its target: every entry's parent must be a directory of the tree (so no
//! entry can sit below a symlink), and every hardlink must name a regular file
//! of the tree.

use std::cmp::Ordering;
use std::collections::HashMap;

use strata_format::layer::{Entry, EntryKind, Layer, LayerRecord};
use strata_format::path;

use crate::error::{Error, Result};

/// The final tree: entries in path order, and the index of each regular file.
pub struct Tree {
    pub entries: Vec<Entry>,
    pub files: HashMap<Vec<u8>, usize>,
}

/// Applies `layer` on top of `base` (both in path order).
fn apply(base: Vec<Entry>, layer: &Layer<'_>, location: &str) -> Result<Vec<Entry>> {
    let mut upper = Vec::new();
    let mut tombstones = Vec::new();
    for record in layer.records().map_err(|e| Error::format(location, e))? {
        match record.map_err(|e| Error::format(location, e))? {
            LayerRecord::Entry(e) => upper.push(e),
            LayerRecord::Tombstone(t) => tombstones.push(t.path),
        }
    }
    let mut out = Vec::with_capacity(base.len() + upper.len());
    let mut t = 0;
    let mut lower = base.into_iter().peekable();
    let mut upper = upper.into_iter().peekable();
    loop {
        let take_upper = match (lower.peek(), upper.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(l), Some(u)) => match path::cmp(&l.path, &u.path) {
                Ordering::Less => false,
                Ordering::Greater => true,
                Ordering::Equal => {
                    lower.next();
                    true
                }
            },
        };
        if take_upper {
            if let Some(u) = upper.next() {
                out.push(u);
            }
            continue;
        }
        let Some(l) = lower.next() else { break };
        while t < tombstones.len()
            && path::cmp(&tombstones[t], &l.path) == Ordering::Less
            && !path::is_within(&l.path, &tombstones[t])
        {
            t += 1;
        }
        if t < tombstones.len() && path::is_within(&l.path, &tombstones[t]) {
            continue;
        }
        out.push(l);
    }
    Ok(out)
}

/// Resolves a chain of layers (full first) into a checked tree.
pub fn resolve(layers: &[(String, Vec<u8>)]) -> Result<Tree> {
    let mut entries = Vec::new();
    for (location, bytes) in layers {
        let layer = Layer::decode(bytes).map_err(|e| Error::format(location.as_str(), e))?;
        entries = apply(entries, &layer, location)?;
    }
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
