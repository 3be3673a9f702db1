//! Fetching blobs from packs: neighbouring blobs are read together, so a
//! restore makes few large reads instead of one per chunk (on NFS, each read
//! is a round trip; a large one is split into concurrent READs).

use std::borrow::Cow;
use std::ops::Range;

use strata_format::pack::{decode_chunk, PackEntry};
use strata_format::PackId;

use crate::error::{Error, Result};
use crate::repository::PackFile;

/// The largest single read.
const SPAN: u64 = 8 << 20;
/// Blobs at most this far apart are read together, the gap read and dropped.
const GAP: u64 = 256 << 10;

/// Splits `entries` (in the order they are wanted) into runs that are each
/// read at once: increasing offsets, small gaps, at most [`SPAN`] bytes.
pub fn spans(entries: &[&PackEntry]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let start = entries[i].offset;
        let mut end = start + u64::from(entries[i].stored_len);
        let mut j = i + 1;
        while let Some(e) = entries.get(j) {
            let e_end = e.offset + u64::from(e.stored_len);
            if e.offset < end || e.offset - end > GAP || e_end - start > SPAN {
                break;
            }
            end = e_end;
            j += 1;
        }
        out.push(i..j);
        i = j;
    }
    out
}

/// The stored blobs of one span, read at once.
pub struct Span {
    start: u64,
    bytes: Vec<u8>,
}

impl Span {
    /// The stored blob of `entry`, one of the entries this span was read for.
    pub fn blob(&self, entry: &PackEntry) -> Result<&[u8]> {
        let at = entry
            .offset
            .checked_sub(self.start)
            .and_then(|at| usize::try_from(at).ok());
        at.and_then(|at| {
            self.bytes
                .get(at..at.checked_add(entry.stored_len as usize)?)
        })
        .ok_or_else(|| Error::Bug(format!("blob at {} is not in its span", entry.offset)))
    }
}

/// Reads the stored blobs of `entries` (one span of [`spans`]) in one read.
pub fn read_span(pack: &PackFile, entries: &[&PackEntry]) -> Result<Span> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(Span {
            start: 0,
            bytes: Vec::new(),
        });
    };
    let start = first.offset;
    let len = usize::try_from(last.offset + u64::from(last.stored_len) - start)
        .map_err(|_| Error::Bug("span too large".into()))?;
    Ok(Span {
        start,
        bytes: pack.read_at(start, len)?,
    })
}

/// Reads this many results ahead of the work that uses them.
const AHEAD: usize = 2;

/// Runs `read` on each job on a thread of its own, up to [`AHEAD`] results
/// ahead of `consume`, so the next read (on NFS, a round trip) overlaps the
/// work on the current one. The first error stops both sides.
pub fn read_ahead<J, T>(
    jobs: impl IntoIterator<Item = J> + Send,
    mut read: impl FnMut(J) -> Result<T> + Send,
    mut consume: impl FnMut(T) -> Result<()>,
) -> Result<()>
where
    T: Send,
{
    std::thread::scope(|scope| {
        let (tx, rx) = crossbeam_channel::bounded(AHEAD);
        scope.spawn(move || {
            for job in jobs {
                let result = read(job);
                let failed = result.is_err();
                // A closed channel: the consumer stopped.
                if tx.send(result).is_err() || failed {
                    break;
                }
            }
        });
        for result in rx {
            consume(result?)?;
        }
        Ok(())
    })
}

/// Turns a stored blob into its chunk, checked against its id (a raw blob
/// is lent back, not copied); the error names the pack and offset.
pub fn decode<'a>(pack: PackId, entry: &PackEntry, stored: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    decode_chunk(entry, stored).map_err(|err| Error::Corrupt {
        location: format!("pack {pack} at offset {}", entry.offset),
        detail: err.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use strata_format::pack::Compression;
    use strata_format::ChunkId;

    fn entry(offset: u64, len: u32) -> PackEntry {
        PackEntry {
            id: ChunkId([0; 32]),
            offset,
            stored_len: len,
            raw_len: len,
            compression: Compression::None,
        }
    }

    proptest! {
        /// Spans cover every entry once, in order, and stay within bounds.
        #[test]
        fn spans_cover_in_order(lens in proptest::collection::vec((0u64..600_000, 1u32..3_000_000), 0..40)) {
            let mut at = 0;
            let entries: Vec<PackEntry> = lens.iter().map(|(gap, len)| {
                at += gap;
                let e = entry(at, *len);
                at += u64::from(*len);
                e
            }).collect();
            let refs: Vec<&PackEntry> = entries.iter().collect();
            let spans = spans(&refs);
            let mut next = 0;
            for s in &spans {
                prop_assert_eq!(s.start, next);
                prop_assert!(s.end > s.start);
                next = s.end;
                let first = refs[s.start];
                let last = refs[s.end - 1];
                let bytes = last.offset + u64::from(last.stored_len) - first.offset;
                prop_assert!(s.len() == 1 || bytes <= SPAN);
                for w in refs[s.clone()].windows(2) {
                    prop_assert!(w[1].offset - (w[0].offset + u64::from(w[0].stored_len)) <= GAP);
                }
            }
            prop_assert_eq!(next, refs.len());
        }
    }

    #[test]
    fn out_of_order_blobs_start_a_new_span() {
        let (a, b) = (entry(1000, 10), entry(0, 10));
        assert_eq!(spans(&[&a, &b]), vec![0..1, 1..2]);
    }
}
