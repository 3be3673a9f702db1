//! Reading a backup's tree without restoring it: `ls` (the entries at and
//! below a path) and `diff` (what changed between two backups), both from
//! the layers alone, never a pack.
//!
//! Cost: a chain's merged view is streamed in path order, so `ls PATH`
//! reads each layer from the piece that holds `PATH` to the end of its
//! subtree, and stops;
//! `diff` reads both chains once. Memory stays what a restore's view holds:
//! one decoded entry per layer of each chain.

use std::cmp::Ordering;

use strata_format::layer::{Entry, EntryKind, Exclusions};
use strata_format::path;

use super::Engine;
use crate::error::{Error, Result};
use crate::repository::LayerName;
use crate::select::Patterns;
use crate::store::{BackupFilter, BackupRecord, BackupStatus};
use crate::view::{load_chain, subtree, MergedView};

/// How a path differs between two backups (restic's letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Only in the second backup (`+`).
    Added,
    /// Only in the first (`-`).
    Removed,
    /// Its content differs: a file's bytes, a link's target (`M`).
    Modified,
    /// It is another kind of thing: a file became a directory... (`T`).
    TypeChanged,
    /// Same content, other metadata: mode, owner, mtime, xattrs (`U`).
    Metadata,
}

impl Change {
    pub fn letter(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::TypeChanged => 'T',
            Change::Metadata => 'U',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
            Change::TypeChanged => "type_changed",
            Change::Metadata => "metadata",
        }
    }
}

/// Which backups `find` searches: the project's available ones, of one
/// share when given, created within `[since, until]` (nanoseconds).
#[derive(Clone, Debug, Default)]
pub struct FindScope {
    pub share: Option<strata_format::ShareId>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

/// One path that differs, with its entry in each backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub change: Change,
    pub path: Vec<u8>,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
}

/// How two entries at one path differ, if they do. ctime and inode are
/// not compared: they change when nothing a restore writes does.
fn compare(a: &Entry, b: &Entry) -> Option<Change> {
    use EntryKind::*;
    let content = match (&a.kind, &b.kind) {
        (Dir, Dir) => true,
        (
            File {
                size: s1, hash: h1, ..
            },
            File {
                size: s2, hash: h2, ..
            },
        ) => s1 == s2 && h1 == h2,
        (Symlink { target: t1 }, Symlink { target: t2 }) => t1 == t2,
        (Hardlink { target: t1 }, Hardlink { target: t2 }) => t1 == t2,
        _ => return Some(Change::TypeChanged),
    };
    if !content {
        return Some(Change::Modified);
    }
    let same_meta = a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime_ns == b.mtime_ns
        && a.xattrs == b.xattrs;
    (!same_meta).then_some(Change::Metadata)
}

/// Whether `entry` is what `ls` of `at` shows: `at` itself when it is not
/// a directory, its children (all its descendants when `recursive`).
fn listed(entry: &[u8], at: Option<&[u8]>, recursive: bool) -> bool {
    let below = match at {
        None => entry,
        Some(at) if entry.len() > at.len() && path::is_within(entry, at) => &entry[at.len() + 1..],
        Some(_) => return false,
    };
    recursive || !below.contains(&b'/')
}

impl Engine {
    /// A backup whose tree may be read: its layer is in the repository.
    pub(crate) fn readable(&self, backup: &BackupRecord) -> Result<()> {
        match backup.status {
            BackupStatus::Available | BackupStatus::Restoring => Ok(()),
            other => Err(Error::InvalidState(format!(
                "backup {} is {}: only an available backup's tree can be read",
                backup.id,
                other.as_str()
            ))),
        }
    }

    /// Hands `visit` the entries of `backup`'s tree at `at` (a stored
    /// path; `None`: the root): the children of a directory (every
    /// descendant when `recursive`), or the entry itself when it is not a
    /// directory. A path the tree does not hold is `NotFound`.
    pub fn list_tree(
        &self,
        backup: &BackupRecord,
        at: Option<&[u8]>,
        recursive: bool,
        visit: &mut dyn FnMut(&Entry) -> Result<()>,
    ) -> Result<()> {
        self.readable(backup)?;
        let vault = self.vault_of(backup)?;
        let layers = load_chain(&vault.repo, &backup.id)?;
        let mut found = at.is_none();
        for entry in subtree(&layers, at)? {
            let entry = entry?;
            if at == Some(entry.path.as_slice()) {
                found = true;
                if !matches!(entry.kind, EntryKind::Dir) {
                    visit(&entry)?;
                    break;
                }
                continue;
            }
            if listed(&entry.path, at, recursive) {
                visit(&entry)?;
            }
        }
        match found {
            true => Ok(()),
            false => Err(Error::NotFound {
                kind: "path",
                name: format!(
                    "{} in backup {}",
                    String::from_utf8_lossy(at.unwrap_or_default()),
                    backup.id
                ),
            }),
        }
    }

    /// What `backup` left out of its share, and what its parent did (`None`
    /// for a full backup), from their layers: a change of rules between
    /// the two is why an incremental may remove paths its share still has.
    pub fn backup_exclusions(
        &self,
        backup: &BackupRecord,
    ) -> Result<(Exclusions, Option<Exclusions>)> {
        self.readable(backup)?;
        let vault = self.vault_of(backup)?;
        let of = |id: strata_format::BackupId| -> Result<Exclusions> {
            let generation = vault
                .repo
                .layer_generation(&id)?
                .ok_or_else(|| Error::NotFound {
                    kind: "layer",
                    name: id.to_string(),
                })?;
            let layer = vault.repo.open_layer(&LayerName { id, generation })?;
            Ok(layer.meta().exclusions.clone())
        };
        let own = of(backup.id)?;
        let parent = backup.parent_id.map(of).transpose()?;
        Ok((own, parent))
    }

    /// Hands `visit` each path `pattern` matches in each backup of `scope`,
    /// newest backup first, paths in order within one. Returns how many
    /// backups were searched. Reads layers only: whole, or from the
    /// pattern's literal leading directory to its end.
    pub fn find_paths(
        &self,
        pattern: &Patterns,
        scope: &FindScope,
        visit: &mut dyn FnMut(&BackupRecord, &Entry) -> Result<()>,
    ) -> Result<u64> {
        let mut backups = self.store.list_backups(&BackupFilter {
            project: Some(&self.config.project),
            share_id: scope.share,
            status: Some(BackupStatus::Available),
            ..Default::default()
        })?;
        backups.retain(|b| {
            scope.since.is_none_or(|t| b.created_at >= t)
                && scope.until.is_none_or(|t| b.created_at <= t)
        });
        backups.sort_by_key(|b| std::cmp::Reverse((b.created_at, b.id)));
        // Every match lies below the patterns' literal leading directory,
        // if they have one: each chain is read from there, until past it.
        let below = pattern.literal_prefix();
        for b in &backups {
            let vault = self.vault_of(b)?;
            let layers = load_chain(&vault.repo, &b.id)?;
            for e in subtree(&layers, below.as_deref())? {
                let e = e?;
                if pattern.matches(&e.path) {
                    visit(b, &e)?;
                }
            }
        }
        Ok(backups.len() as u64)
    }

    /// Hands `visit` every path that differs between backups `a` and `b`
    /// (at or below `at`, when given), in path order.
    pub fn diff_backups(
        &self,
        a: &BackupRecord,
        b: &BackupRecord,
        at: Option<&[u8]>,
        visit: &mut dyn FnMut(Difference) -> Result<()>,
    ) -> Result<()> {
        self.readable(a)?;
        self.readable(b)?;
        let (va, vb) = (self.vault_of(a)?, self.vault_of(b)?);
        let (la, lb) = (load_chain(&va.repo, &a.id)?, load_chain(&vb.repo, &b.id)?);
        let wanted = |p: &[u8]| at.is_none_or(|at| path::is_within(p, at));
        let mut before = MergedView::new(&la)?.filter(|e| !matches!(e, Ok(e) if !wanted(&e.path)));
        let mut after = MergedView::new(&lb)?.filter(|e| !matches!(e, Ok(e) if !wanted(&e.path)));
        let (mut x, mut y) = (before.next().transpose()?, after.next().transpose()?);
        loop {
            let order = match (&x, &y) {
                (None, None) => return Ok(()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(p), Some(q)) => path::cmp(&p.path, &q.path),
            };
            let difference = match order {
                Ordering::Less => {
                    let gone = x.take();
                    x = before.next().transpose()?;
                    gone.map(|e| Difference {
                        change: Change::Removed,
                        path: e.path.clone(),
                        before: Some(e),
                        after: None,
                    })
                }
                Ordering::Greater => {
                    let new = y.take();
                    y = after.next().transpose()?;
                    new.map(|e| Difference {
                        change: Change::Added,
                        path: e.path.clone(),
                        before: None,
                        after: Some(e),
                    })
                }
                Ordering::Equal => {
                    let (p, q) = (x.take(), y.take());
                    x = before.next().transpose()?;
                    y = after.next().transpose()?;
                    match (p, q) {
                        (Some(p), Some(q)) => compare(&p, &q).map(|change| Difference {
                            change,
                            path: p.path.clone(),
                            before: Some(p),
                            after: Some(q),
                        }),
                        _ => None,
                    }
                }
            };
            if let Some(d) = difference {
                visit(d)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_ls_shows() {
        assert!(listed(b"a", None, false));
        assert!(!listed(b"a/b", None, false));
        assert!(listed(b"a/b", None, true));
        assert!(listed(b"a/b", Some(b"a"), false));
        assert!(!listed(b"a/b/c", Some(b"a"), false));
        assert!(listed(b"a/b/c", Some(b"a"), true));
        assert!(!listed(b"a", Some(b"a"), true));
        assert!(!listed(b"ab/c", Some(b"a"), true));
    }
}
