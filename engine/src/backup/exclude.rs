//! What a backup leaves out of its share: paths matching its globs, and the
//! contents of directories tagged as caches (`CACHEDIR.TAG`, by the cache
//! directory tagging specification, as restic and borg honour it) or
//! holding a file of a given name. A tagged directory itself is kept,
//! empty, as the specification asks.
//!
//! The rules apply where a directory's listing is taken (by the walk's
//! lister), so an excluded subtree is never opened or read, and the walk
//! and its lister agree on it. A path left out of an incremental that its
//! parent had is recorded as removed; the layer's [`Exclusions`] say why.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{Mode, OFlags};
use strata_format::layer::Exclusions;
use strata_format::path;

use super::listing::Child;
use crate::error::Result;
use crate::select::Patterns;

/// The tag file of a cache directory, and how its content must start.
const CACHE_TAG: &str = "CACHEDIR.TAG";
const CACHE_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// A backup's exclusion rules, compiled, and what they left out.
#[derive(Debug)]
pub struct Excluder {
    patterns: Patterns,
    caches: bool,
    if_present: Vec<Vec<u8>>,
    excluded: AtomicU64,
    rules: Exclusions,
}

impl Excluder {
    /// Compiles `rules` (their count is ignored); a bad glob or marker name
    /// is `InvalidArgument`.
    pub fn new(rules: &Exclusions) -> Result<Excluder> {
        for name in &rules.if_present {
            if name.contains('/') || path::validate(name.as_bytes()).is_err() {
                return Err(crate::Error::InvalidArgument(format!(
                    "--exclude-if-present {name:?}: a file name, without a slash"
                )));
            }
        }
        Ok(Excluder {
            patterns: Patterns::new(&rules.patterns)?,
            caches: rules.caches,
            if_present: rules
                .if_present
                .iter()
                .map(|n| n.as_bytes().to_vec())
                .collect(),
            excluded: AtomicU64::new(0),
            rules: Exclusions {
                excluded: 0,
                ..rules.clone()
            },
        })
    }

    /// Whether any rule is set.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && !self.caches && self.if_present.is_empty()
    }

    /// The rules, with what they left out so far.
    pub fn outcome(&self) -> Exclusions {
        Exclusions {
            excluded: self.excluded.load(Ordering::Relaxed),
            ..self.rules.clone()
        }
    }

    /// Leaves out of the listing `children` of the directory `rel` (open as
    /// `dir`) what the rules exclude: everything, when it is tagged.
    pub fn filter(&self, dir: &OwnedFd, rel: &[u8], children: &mut Vec<Child>) {
        if self.is_empty() {
            return;
        }
        let before = children.len();
        if self.tagged(dir, children) {
            children.clear();
        } else if !self.patterns.is_empty() {
            let mut at = Vec::with_capacity(rel.len() + 64);
            children.retain(|c| {
                at.clear();
                if !rel.is_empty() {
                    at.extend_from_slice(rel);
                    at.push(b'/');
                }
                at.extend_from_slice(&c.name);
                !self.patterns.matches(&at)
            });
        }
        let left_out = (before - children.len()) as u64;
        self.excluded.fetch_add(left_out, Ordering::Relaxed);
    }

    /// Whether the directory's contents are left out: it holds a marker
    /// file, or a cache tag that starts with the signature.
    fn tagged(&self, dir: &OwnedFd, children: &[Child]) -> bool {
        let has = |name: &[u8]| children.iter().any(|c| &c.name[..] == name);
        if self.if_present.iter().any(|m| has(m)) {
            return true;
        }
        self.caches && has(CACHE_TAG.as_bytes()) && signed(dir)
    }
}

/// Whether the `CACHEDIR.TAG` in `dir` (not followed if a symlink) starts
/// with the cache directory signature.
fn signed(dir: &OwnedFd) -> bool {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let Ok(fd) = rustix::fs::openat(dir, CACHE_TAG, flags, Mode::empty()) else {
        return false;
    };
    let mut head = [0u8; CACHE_SIGNATURE.len()];
    std::fs::File::from(fd).read_exact(&mut head).is_ok() && head == CACHE_SIGNATURE
}
