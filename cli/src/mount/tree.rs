//! One backup's tree as the mount serves it: its entries in path order
//! (held while the backup is open in the mount), each directory's children,
//! and which entry holds each hardlink's content.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use strata_engine::{Engine, OpenTree, Result};
use strata_format::layer::{Entry, EntryKind};
use strata_format::{path, ChunkId};

/// The root directory's slot in [`Tree::kids_of`].
pub const ROOT: u32 = u32::MAX;

pub struct Tree {
    pub open: OpenTree<Arc<Engine>>,
    pub entries: Vec<Entry>,
    /// Children of each directory, grouped: those of entry `i` are
    /// `kids[starts[i]..starts[i + 1]]`; the root's are last.
    kids: Vec<u32>,
    starts: Vec<u32>,
    /// The entry that holds each entry's content (itself but for hardlinks).
    pub content: Vec<u32>,
    /// Names of each content-holding entry.
    pub nlink: Vec<u32>,
}

impl Tree {
    pub fn load(open: OpenTree<Arc<Engine>>) -> Result<Tree> {
        let entries = open.subtree(None)?.collect::<Result<Vec<Entry>>>()?;
        let n = entries.len();
        let find = |p: &[u8]| {
            entries
                .binary_search_by(|e| path::cmp(&e.path, p))
                .ok()
                .map(|i| i as u32)
        };
        let parents: Vec<u32> = entries
            .iter()
            .map(|e| match e.path.iter().rposition(|&b| b == b'/') {
                Some(at) => find(&e.path[..at]).unwrap_or(ROOT),
                None => ROOT,
            })
            .collect();
        let slot = |p: u32| if p == ROOT { n } else { p as usize };
        let mut starts = vec![0u32; n + 2];
        for &p in &parents {
            starts[slot(p) + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut fill = starts.clone();
        let mut kids = vec![0u32; n];
        for (i, &p) in parents.iter().enumerate() {
            let at = &mut fill[slot(p)];
            kids[*at as usize] = i as u32;
            *at += 1;
        }
        let mut content: Vec<u32> = (0..n as u32).collect();
        let mut nlink = vec![1u32; n];
        for (i, e) in entries.iter().enumerate() {
            if let EntryKind::Hardlink { target } = &e.kind {
                if let Some(t) = find(target) {
                    content[i] = t;
                    nlink[t as usize] += 1;
                }
            }
        }
        Ok(Tree {
            open,
            entries,
            kids,
            starts,
            content,
            nlink,
        })
    }

    /// The children of entry `dir` ([`ROOT`]: the tree's root).
    pub fn kids_of(&self, dir: u32) -> &[u32] {
        let slot = if dir == ROOT {
            self.entries.len()
        } else {
            dir as usize
        };
        let (from, to) = (self.starts[slot] as usize, self.starts[slot + 1] as usize);
        &self.kids[from..to]
    }

    /// The child `name` of entry `dir`.
    pub fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let mut wanted = match dir {
            ROOT => Vec::new(),
            d => self.entries.get(d as usize)?.path.clone(),
        };
        if !wanted.is_empty() {
            wanted.push(b'/');
        }
        wanted.extend_from_slice(name);
        let kids = self.kids_of(dir);
        kids.binary_search_by(|&k| {
            self.entries
                .get(k as usize)
                .map_or(Ordering::Less, |e| path::cmp(&e.path, &wanted))
        })
        .ok()
        .and_then(|at| kids.get(at).copied())
    }

    /// The last component of entry `i`'s path.
    pub fn name(&self, i: u32) -> &[u8] {
        let p = &self.entries[i as usize].path;
        match p.iter().rposition(|&b| b == b'/') {
            Some(at) => &p[at + 1..],
            None => p,
        }
    }
}

/// Decoded chunks, most recently used kept, up to a number of bytes.
pub struct ChunkCache {
    held: HashMap<ChunkId, Arc<Vec<u8>>>,
    order: VecDeque<ChunkId>,
    bytes: usize,
    limit: usize,
}

impl ChunkCache {
    pub fn new(limit: usize) -> Self {
        ChunkCache {
            held: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Bytes `offset..offset + len` of the file entry `e` of `tree`
    /// (fewer at its end), each chunk read (verified) once while cached.
    pub fn read<E: Borrow<Engine>>(
        &mut self,
        tree: &OpenTree<E>,
        e: &Entry,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let EntryKind::File { chunks, .. } = &e.kind else {
            return Ok(Vec::new());
        };
        let end = offset.saturating_add(len as u64);
        let mut out = Vec::with_capacity(len);
        let mut at = 0u64;
        for c in chunks {
            let next = at + u64::from(c.len);
            if next > offset && at < end {
                let bytes = self.chunk(tree, c, &e.path)?;
                let from = offset.saturating_sub(at) as usize;
                let to = (end.min(next) - at) as usize;
                out.extend_from_slice(bytes.get(from..to).unwrap_or_default());
            }
            if next >= end {
                break;
            }
            at = next;
        }
        Ok(out)
    }

    fn chunk<E: Borrow<Engine>>(
        &mut self,
        tree: &OpenTree<E>,
        c: &strata_format::layer::ChunkRef,
        path: &[u8],
    ) -> Result<Arc<Vec<u8>>> {
        if let Some(hit) = self.held.get(&c.id) {
            let hit = Arc::clone(hit);
            self.order.retain(|id| *id != c.id);
            self.order.push_back(c.id);
            return Ok(hit);
        }
        let bytes = Arc::new(tree.chunk(c, path)?);
        self.bytes += bytes.len();
        self.held.insert(c.id, Arc::clone(&bytes));
        self.order.push_back(c.id);
        while self.bytes > self.limit && self.order.len() > 1 {
            if let Some(old) = self.order.pop_front() {
                if let Some(gone) = self.held.remove(&old) {
                    self.bytes -= gone.len();
                }
            }
        }
        Ok(bytes)
    }
}
