//! What a restore of a backup would refuse, found without writing anything:
//! `check` walks each backup's merged chain through the very checks the
//! restore makes, so a backup that check calls clean restores, and one that
//! a restore refuses is reported by check.

use std::collections::HashMap;

use strata_format::layer::EntryKind;
use strata_format::{BackupId, ChunkId};

use super::plan::locate;
use super::tree::Windows;
use super::DEFAULT_WINDOW_BYTES;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::repository::Repository;
use crate::select::Selection;

/// Walks the tree of `backup` as a restore would, window by window: every
/// entry below a directory of the tree, every hardlink to a file before it
/// (and none unless the layer counts hardlinks), every chunk indexed with
/// the length the layer gives it. `lengths` caches chunks already checked
/// (by this or an earlier backup). The first refusal is the error, naming
/// the path.
pub fn refusal(
    repo: &Repository,
    index: &dyn ChunkIndex,
    backup: &BackupId,
    lengths: &mut HashMap<ChunkId, u32>,
) -> Result<()> {
    let layers = crate::view::load_chain(repo, backup)?;
    let Some(top) = layers.last() else {
        return Err(Error::Bug("a chain without layers".into()));
    };
    let hardlinks = top.meta().stats.hardlinks > 0;
    let all = Selection::all();
    let mut windows = Windows::new(&layers, hardlinks, DEFAULT_WINDOW_BYTES, &all)?;
    while let Some(window) = windows.next_window()? {
        for e in &window.tree.entries {
            let EntryKind::File { chunks, .. } = &e.kind else {
                continue;
            };
            for c in chunks {
                match lengths.get(&c.id) {
                    Some(&len) if len == c.len => {}
                    _ => {
                        locate(index, c.id, c.len, &e.path)?;
                        lengths.insert(c.id, c.len);
                    }
                }
            }
        }
        windows.recycle(window.tree);
    }
    Ok(())
}
