//! Which paths of a tree an operation takes: the `--include` and
//! `--exclude` globs of a partial restore, `find`'s pattern, a backup's
//! exclusions.
//!
//! A pattern is a glob over stored paths (relative to the share's root):
//! `*`, `?` and `[…]` never cross a `/`, `**` crosses any number of them.
//! A pattern with a `/` in it (a leading `/` is dropped) matches from the
//! root: `home/*/cache`; one without matches a name at any depth: `*.tmp`
//! is `**/*.tmp`. A pattern that matches a directory takes its whole
//! subtree with it. Exclusion wins over inclusion.

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use strata_format::layer::{Entry, EntryKind};
use strata_format::path;

use crate::error::{Error, Result};

/// A set of patterns, compiled.
#[derive(Clone, Debug)]
pub struct Patterns {
    set: GlobSet,
    /// As given, for messages and records.
    source: Vec<String>,
}

impl Patterns {
    /// Compiles `patterns`; an empty or malformed one is `InvalidArgument`.
    pub fn new(patterns: &[String]) -> Result<Patterns> {
        let mut set = GlobSetBuilder::new();
        for p in patterns {
            set.add(compile(p)?);
        }
        let set = set
            .build()
            .map_err(|e| Error::InvalidArgument(format!("patterns: {e}")))?;
        Ok(Patterns {
            set,
            source: patterns.to_vec(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    pub fn source(&self) -> &[String] {
        &self.source
    }

    /// The directory every path the patterns can match lies in, when they
    /// all start with the same literal components (`etc/app/*.conf`:
    /// `etc/app`); `None` when one can match anywhere.
    pub fn literal_prefix(&self) -> Option<Vec<u8>> {
        let mut common: Option<Vec<&str>> = None;
        for p in &self.source {
            let trimmed = p.trim_end_matches('/');
            if !trimmed.contains('/') {
                return None;
            }
            let parts: Vec<&str> = trimmed.trim_start_matches('/').split('/').collect();
            // The last component names what matches, not where it lies.
            let dirs = &parts[..parts.len() - 1];
            let literal: Vec<&str> = dirs
                .iter()
                .take_while(|c| !c.contains(['*', '?', '[', ']', '{', '}', '\\']))
                .copied()
                .collect();
            common = Some(match common {
                None => literal,
                Some(c) => c
                    .iter()
                    .zip(&literal)
                    .take_while(|(a, b)| a == b)
                    .map(|(a, _)| *a)
                    .collect(),
            });
        }
        let prefix = common?.join("/").into_bytes();
        (!prefix.is_empty() && path::validate(&prefix).is_ok()).then_some(prefix)
    }

    /// Whether one of the patterns matches the stored path `p` itself.
    pub fn matches(&self, p: &[u8]) -> bool {
        !self.is_empty()
            && self
                .set
                .is_match_candidate(&Candidate::new(OsStr::from_bytes(p)))
    }
}

fn compile(pattern: &str) -> Result<globset::Glob> {
    let bad = |why: &str| Error::InvalidArgument(format!("pattern {pattern:?}: {why}"));
    if pattern.contains('\0') {
        return Err(bad("holds a NUL byte"));
    }
    let trimmed = pattern.trim_end_matches('/');
    let anchored = trimmed.contains('/');
    let body = trimmed.trim_start_matches('/');
    if body.is_empty() {
        return Err(bad(
            "matches nothing (use no pattern to take the whole tree)",
        ));
    }
    let glob = match anchored {
        true => body.to_string(),
        false => format!("**/{body}"),
    };
    GlobBuilder::new(&glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| bad(&e.kind().to_string()))
}

/// The part of a tree a partial operation takes.
#[derive(Clone, Debug)]
pub struct Selection {
    include: Patterns,
    exclude: Patterns,
}

impl Selection {
    /// Everything (`include` empty) or what `include` matches, less what
    /// `exclude` matches.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selection> {
        Ok(Selection {
            include: Patterns::new(include)?,
            exclude: Patterns::new(exclude)?,
        })
    }

    /// The whole tree.
    pub fn all() -> Selection {
        Selection {
            include: Patterns::empty(),
            exclude: Patterns::empty(),
        }
    }

    /// Only the subtree at `at`.
    pub fn subtree(at: &[u8]) -> Result<Selection> {
        let escaped = glob_literal(at)?;
        Selection::new(&[format!("/{escaped}")], &[])
    }

    pub fn is_all(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    pub fn include(&self) -> &[String] {
        self.include.source()
    }

    pub fn exclude(&self) -> &[String] {
        self.exclude.source()
    }
}

impl Patterns {
    fn empty() -> Patterns {
        Patterns {
            set: GlobSet::empty(),
            source: Vec::new(),
        }
    }
}

impl Default for Selection {
    fn default() -> Self {
        Selection::all()
    }
}

/// `p` as a pattern that matches it alone.
fn glob_literal(p: &[u8]) -> Result<String> {
    let text = std::str::from_utf8(p).map_err(|_| {
        Error::InvalidArgument(format!(
            "path {} is not UTF-8: it cannot be selected by pattern",
            String::from_utf8_lossy(p)
        ))
    })?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(out)
}

/// What a [`Selector`] decides for one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Selected.
    Take,
    /// Left out, with its subtree when it is a directory.
    Skip,
    /// A directory not selected itself, below which something may be: it
    /// is taken only as the ancestor of something taken.
    Ancestor,
}

/// Decides a tree's entries, given in path order, by a [`Selection`]: a
/// directory's verdict is carried to its subtree without matching again.
#[derive(Debug)]
pub struct Selector<'s> {
    selection: &'s Selection,
    /// The directories the coming entries may lie in, and their verdicts.
    open: Vec<(Vec<u8>, Verdict)>,
}

impl<'s> Selector<'s> {
    pub fn new(selection: &'s Selection) -> Self {
        Selector {
            selection,
            open: Vec::new(),
        }
    }

    /// The verdict on the entry at `p` (a directory when `dir`).
    pub fn decide(&mut self, p: &[u8], dir: bool) -> Verdict {
        if self.selection.is_all() {
            return Verdict::Take;
        }
        while let Some((top, _)) = self.open.last() {
            if path::is_within(p, top) && p.len() > top.len() {
                break;
            }
            self.open.pop();
        }
        let inherited = self.open.last().map(|(_, v)| *v);
        let verdict = if inherited == Some(Verdict::Skip) || self.selection.exclude.matches(p) {
            Verdict::Skip
        } else if self.selection.include.is_empty()
            || inherited == Some(Verdict::Take)
            || self.selection.include.matches(p)
        {
            Verdict::Take
        } else if dir {
            Verdict::Ancestor
        } else {
            Verdict::Skip
        };
        if dir {
            self.open.push((p.to_vec(), verdict));
        }
        verdict
    }
}

/// The entries of a path-ordered stream that a [`Selection`] takes, each
/// preceded by the directories above it that were not taken themselves
/// (so every entry yielded has its parent before it).
pub struct Selected<'s, I> {
    entries: I,
    selector: Selector<'s>,
    /// Directories judged `Ancestor`, not yet yielded, outermost first.
    pending: Vec<Entry>,
    /// Entries to yield before reading on (ancestors, then the entry).
    ready: std::collections::VecDeque<Entry>,
}

impl<'s, I: Iterator<Item = Result<Entry>>> Selected<'s, I> {
    pub fn new(entries: I, selection: &'s Selection) -> Self {
        Selected {
            entries,
            selector: Selector::new(selection),
            pending: Vec::new(),
            ready: Default::default(),
        }
    }
}

impl<I: Iterator<Item = Result<Entry>>> Iterator for Selected<'_, I> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Some(Ok(e));
            }
            let e = match self.entries.next()? {
                Ok(e) => e,
                Err(err) => return Some(Err(err)),
            };
            let dir = matches!(e.kind, EntryKind::Dir);
            while let Some(top) = self.pending.last() {
                if path::is_within(&e.path, &top.path) && e.path.len() > top.path.len() {
                    break;
                }
                self.pending.pop();
            }
            match self.selector.decide(&e.path, dir) {
                Verdict::Skip => {}
                Verdict::Ancestor => self.pending.push(e),
                Verdict::Take => {
                    self.ready.extend(self.pending.drain(..));
                    self.ready.push_back(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
