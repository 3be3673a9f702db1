//! Cutting a changed file along the chunks of its previous version.
//!
//! Where the file is unchanged, each previous chunk is found again by its
//! id: hashing its bytes (which the backup must do anyway) shows they are
//! the same, and [`Gear::ends_at`] shows the cut still falls at its end. No
//! byte of it is rolled through the cutter, so an incremental of a large
//! file that changed in a few places costs little more than reading and
//! hashing it.
//!
//! The cuts are exactly those of cutting the whole file: a chunk is taken
//! from the previous version only when its bytes are the same (its id), it
//! was cut with a maximum chunk in view (so under the same rules), and its
//! end is a cut here too. The bytes before its end being the same as then,
//! no earlier position matches now either. Elsewhere the window is cut as
//! usual, and each new chunk whose id the previous version has puts the
//! guide back on track after it.

use std::collections::HashMap;

use rayon::prelude::*;
use strata_format::config::ChunkerParams;
use strata_format::layer::ChunkRef;
use strata_format::ChunkId;

use super::cut_window;
use super::gear::Gear;

/// The previous version's chunks, and where the walk along them stands.
pub struct Guide<'a> {
    old: &'a [ChunkRef],
    /// The previous chunks before this one were cut with a maximum chunk in
    /// view, so by the rules of any window; the rest, near the end of the
    /// previous version, are never taken.
    full_view: usize,
    by_id: HashMap<ChunkId, usize>,
    /// The previous chunk expected next, and where it would start now.
    next: Option<(usize, u64)>,
}

impl<'a> Guide<'a> {
    /// A guide along `old`, the previous version's chunks, for `params`.
    pub fn new(old: &'a [ChunkRef], params: &ChunkerParams) -> Guide<'a> {
        let max = u64::from(params.max_size);
        let mut after: u64 = old.iter().map(|c| u64::from(c.len)).sum();
        let mut full_view = 0;
        for c in old {
            if after < max {
                break;
            }
            full_view += 1;
            after -= u64::from(c.len);
        }
        let mut by_id = HashMap::with_capacity(old.len());
        for (i, c) in old.iter().enumerate() {
            by_id.entry(c.id).or_insert(i);
        }
        Guide {
            old,
            full_view,
            by_id,
            next: Some((0, 0)),
        }
    }

    /// Cuts `window`, which starts at `at` in the file, exactly as
    /// [`cut_window`] would; returns the chunks' lengths and ids.
    pub fn cut(
        &mut self,
        window: &[u8],
        at: u64,
        eof: bool,
        params: &ChunkerParams,
        segment: usize,
    ) -> (Vec<usize>, Vec<ChunkId>) {
        let gear = Gear::new(params);
        let (mut lengths, mut ids) = self.follow(window, at, &gear, params.max_size as usize);
        let done: usize = lengths.iter().sum();
        let rest = &window[done..];
        let cut = cut_window(rest, eof, params, segment);
        let cut_ids = hash_all(rest, &cut);
        let mut start = at + done as u64;
        for (&len, &id) in cut.iter().zip(&cut_ids) {
            self.passed(start, len, id);
            start += len as u64;
        }
        lengths.extend(cut);
        ids.extend(cut_ids);
        (lengths, ids)
    }

    /// The leading chunks of `window` that are previous chunks found again.
    fn follow(
        &mut self,
        window: &[u8],
        at: u64,
        gear: &Gear,
        max: usize,
    ) -> (Vec<usize>, Vec<ChunkId>) {
        let Some((first, start)) = self.next.filter(|&(_, start)| start == at) else {
            return (Vec::new(), Vec::new());
        };
        // The previous chunks this window would hold if nothing changed.
        let mut spans = Vec::new();
        let mut pos = 0;
        for old in self.old.get(first..self.full_view).unwrap_or_default() {
            let len = old.len as usize;
            if pos + max > window.len() {
                break;
            }
            spans.push((pos, len));
            pos += len;
        }
        let found = hash_spans(window, &spans);
        let mut lengths = Vec::new();
        let mut ids = Vec::new();
        for (k, (&(pos, len), id)) in spans.iter().zip(found).enumerate() {
            let old = &self.old[first + k];
            if id != old.id || gear.ends_at(&window[pos..], len) != Some(true) {
                self.next = None;
                return (lengths, ids);
            }
            lengths.push(len);
            ids.push(id);
        }
        let taken: usize = lengths.iter().sum();
        self.next = Some((first + lengths.len(), start + taken as u64));
        (lengths, ids)
    }

    /// Follows a chunk cut the usual way: the next previous chunk when it
    /// is that one, else the one after any previous chunk it equals.
    fn passed(&mut self, start: u64, len: usize, id: ChunkId) {
        let end = start + len as u64;
        let expected = self.next.filter(|&(j, at)| {
            at == start
                && self
                    .old
                    .get(j)
                    .is_some_and(|o| o.id == id && o.len as usize == len)
        });
        self.next = match expected {
            Some((j, _)) => Some((j + 1, end)),
            None => self
                .by_id
                .get(&id)
                .filter(|&&m| self.old.get(m).is_some_and(|o| o.len as usize == len))
                .map(|&m| (m + 1, end)),
        };
    }
}

/// The ids of `data` cut at `lengths`, hashed in parallel.
fn hash_all(data: &[u8], lengths: &[usize]) -> Vec<ChunkId> {
    let mut spans = Vec::with_capacity(lengths.len());
    let mut at = 0;
    for &len in lengths {
        spans.push((at, len));
        at += len;
    }
    hash_spans(data, &spans)
}

fn hash_spans(data: &[u8], spans: &[(usize, usize)]) -> Vec<ChunkId> {
    spans
        .par_iter()
        .map(|&(at, len)| crate::repository::codec::chunk_id(&data[at..at + len]))
        .collect()
}
