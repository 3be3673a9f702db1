//! Restore step 1: the tree to restore, streamed from the layers of a
//! backup chain in windows of bounded size.
//!
//! The chain's merged view ([`MergedView`]) yields entries in path order;
//! they are taken a window at a time, so what a restore holds follows the
//! window, not the tree. Every entry is checked before its window is
//! restored, because a restore must never be steered out of its target:
//! - every entry's parent must be a directory of the tree, so no entry can
//!   sit below a symlink (the open directories are a stack: path order
//!   visits a directory's whole subtree before anything after it);
//! - every hardlink must name a regular file of the tree that comes before
//!   it in path order (the walk gives an inode's content to its first name),
//!   so its target is already restored when the link is made. The targets
//!   are gathered by a first pass over the view, only when the backup has
//!   hardlinks; what is held is one path per hardlink.
//!
//! A partial restore takes the view through a [`Selection`]: the selected
//! entries, each with the directories above it. A selected hardlink whose
//! target is left out becomes the file itself under its first selected
//! name (a second pass finds those targets' entries), and the inode's
//! further selected names link to that one.

use std::collections::HashMap;

use strata_format::layer::{Entry, EntryKind};
use strata_format::path;

use crate::error::{Error, Result};
use crate::select::{Selected, Selection, Selector, Verdict};
use crate::view::{ChainLayer, MergedView};

/// The tree's entries, in path order, as a restore takes them.
type Stream<'a> = Box<dyn Iterator<Item = Result<Entry>> + 'a>;

/// Opens the chain's merged view through `selection`.
fn stream<'a>(layers: &'a [ChainLayer], selection: &'a Selection) -> Result<Stream<'a>> {
    let view = MergedView::new(layers)?;
    Ok(match selection.is_all() {
        true => Box::new(view),
        false => Box::new(Selected::new(view, selection)),
    })
}

/// One window of the tree: entries in path order.
pub struct Tree {
    pub entries: Vec<Entry>,
}

/// Hands out the checked tree a window at a time, and the directories each
/// window completes (whose metadata may then be given).
pub struct Windows<'a> {
    view: Stream<'a>,
    /// The directories the coming entries may lie in, outermost first.
    open: Vec<Entry>,
    /// Hardlink targets, and whether each has been seen as a regular file.
    targets: HashMap<Vec<u8>, bool>,
    /// Selected hardlinks' targets the selection left out.
    orphans: Orphans,
    /// Memory (estimated) a window's entries may take.
    budget: usize,
    /// An entry read past the end of the last window.
    pending: Option<Entry>,
    /// A restored window's emptied entry list, for the next window: the
    /// lists keep their capacity, so the heap is not grown and freed anew
    /// each window.
    spare: Vec<Vec<Entry>>,
}

/// A window and the directories none of whose entries are still to come,
/// deepest first.
pub struct Window {
    pub tree: Tree,
    pub closed: Vec<Entry>,
}

impl<'a> Windows<'a> {
    /// `layers`: the chain, full backup first. `hardlinks`: whether the
    /// backup has any (from its layer's totals); `budget`: the estimated
    /// bytes of entries a window holds (at least one entry); `selection`:
    /// what of the tree is restored.
    pub fn new(
        layers: &'a [ChainLayer],
        hardlinks: bool,
        budget: usize,
        selection: &'a Selection,
    ) -> Result<Self> {
        let mut targets = HashMap::new();
        let mut orphans = Orphans::default();
        if hardlinks {
            for e in stream(layers, selection)? {
                let e = e?;
                if let EntryKind::Hardlink { target } = e.kind {
                    orphans.first.entry(target.clone()).or_insert(e.path);
                    targets.insert(target, false);
                }
            }
            if !selection.is_all() {
                orphans.find(layers, selection)?;
                for first in orphans.first.values() {
                    targets.insert(first.clone(), false);
                }
            }
        }
        Ok(Windows {
            view: stream(layers, selection)?,
            open: Vec::new(),
            targets,
            orphans,
            budget,
            pending: None,
            spare: Vec::new(),
        })
    }

    /// The next window; `None` once the tree is done (then [`Windows::rest`]
    /// gives the directories still open).
    pub fn next_window(&mut self) -> Result<Option<Window>> {
        let mut entries = self.spare.pop().unwrap_or_default();
        let mut closed = Vec::new();
        let mut used = 0;
        while used < self.budget {
            let next = match self.pending.take() {
                Some(e) => Some(e),
                None => self.view.next().transpose()?,
            };
            let Some(mut e) = next else { break };
            self.orphans.adopt(&mut e);
            self.check(&e, &mut closed)?;
            used += weight(&e);
            if matches!(e.kind, EntryKind::Dir) {
                self.open.push(e.clone());
            }
            entries.push(e);
        }
        if entries.is_empty() {
            self.spare.push(entries);
            return Ok(None);
        }
        Ok(Some(Window {
            tree: Tree { entries },
            closed,
        }))
    }

    /// Takes back a restored window's entry list.
    pub fn recycle(&mut self, mut tree: Tree) {
        tree.entries.clear();
        self.spare.push(tree.entries);
    }

    /// The directories still open at the end, deepest first.
    pub fn rest(self) -> Vec<Entry> {
        let mut open = self.open;
        open.reverse();
        open
    }

    /// Checks `e` against what came before it; moves the directories it
    /// leaves to `closed`.
    fn check(&mut self, e: &Entry, closed: &mut Vec<Entry>) -> Result<()> {
        let bad = |why: &str| Error::Corrupt {
            location: "backup tree".into(),
            detail: format!("{}: {why}", String::from_utf8_lossy(&e.path)),
        };
        while let Some(top) = self.open.last() {
            if path::is_within(&e.path, &top.path) && e.path.len() > top.path.len() {
                break;
            }
            closed.extend(self.open.pop());
        }
        let parent = e
            .path
            .iter()
            .rposition(|&b| b == b'/')
            .map(|at| &e.path[..at]);
        match (parent, self.open.last()) {
            (None, _) => {}
            (Some(p), Some(top)) if p == top.path.as_slice() => {}
            _ => return Err(bad("parent is not a directory of the backup")),
        }
        match &e.kind {
            EntryKind::File { .. } => {
                if let Some(seen) = self.targets.get_mut(&e.path) {
                    *seen = true;
                }
            }
            EntryKind::Hardlink { target } => {
                if self.targets.get(target) != Some(&true) {
                    return Err(bad("hardlink to a path that is not a file before it"));
                }
            }
            EntryKind::Dir | EntryKind::Symlink { .. } => {}
        }
        Ok(())
    }
}

/// The selected hardlinks whose target a selection left out.
#[derive(Default)]
struct Orphans {
    /// Each hardlink target's first selected name (after [`Orphans::find`]:
    /// only the targets left out).
    first: HashMap<Vec<u8>, Vec<u8>>,
    /// The entries of those targets.
    content: HashMap<Vec<u8>, Entry>,
}

impl Orphans {
    /// Keeps, of the targets in `first`, those `selection` leaves out, and
    /// their entries.
    fn find(&mut self, layers: &[ChainLayer], selection: &Selection) -> Result<()> {
        let mut selector = Selector::new(selection);
        let mut taken = Vec::new();
        for e in MergedView::new(layers)? {
            let e = e?;
            let verdict = selector.decide(&e.path, matches!(e.kind, EntryKind::Dir));
            if !self.first.contains_key(&e.path) {
                continue;
            }
            match verdict {
                Verdict::Take => taken.push(e.path),
                Verdict::Skip | Verdict::Ancestor => {
                    self.content.insert(e.path.clone(), e);
                }
            }
        }
        for t in taken {
            self.first.remove(&t);
        }
        Ok(())
    }

    /// Rewrites a hardlink to a left-out target: its first selected name
    /// becomes the file, the others link to that name.
    fn adopt(&self, e: &mut Entry) {
        let EntryKind::Hardlink { target } = &e.kind else {
            return;
        };
        let (Some(first), Some(file)) = (self.first.get(target), self.content.get(target)) else {
            return;
        };
        if *first == e.path {
            let path = std::mem::take(&mut e.path);
            *e = Entry {
                path,
                ..file.clone()
            };
        } else {
            e.kind = EntryKind::Hardlink {
                target: first.clone(),
            };
        }
    }
}

/// Roughly the bytes an entry takes in memory, with what its window's plan
/// and fill keep for it (measured: about 900 bytes for a small file).
fn weight(e: &Entry) -> usize {
    let chunks = match &e.kind {
        EntryKind::File { chunks, .. } => chunks.len(),
        _ => 0,
    };
    let xattrs: usize = e
        .xattrs
        .iter()
        .map(|x| x.name.len() + x.value.len() + 48)
        .sum();
    640 + e.path.len() + chunks * 128 + xattrs
}
