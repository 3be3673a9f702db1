//! Fetching blobs from packs: neighbouring blobs are read together, so a
//! restore makes few large reads instead of one per chunk (on NFS, each read
//! is a round trip; a large one is split into concurrent READs).

use std::ops::Range;
use std::sync::Mutex;

use strata_format::pack::{check_chunk, expand_chunk, Compression, PackEntry};
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

/// Read buffers reused from read to read, so a restore does not pay for
/// fresh, zeroed memory on every read: a buffer keeps the length it grew to,
/// and only growth is zero-filled. Each restore thread has its own pool; a
/// read takes the smallest idle buffer that fits, so buffers keep to the
/// sizes their reads need. The pool only holds buffers no read is using, so
/// it never holds more than were in use at once.
pub struct Buffers {
    free: Mutex<Vec<Vec<u8>>>,
}

/// Idle buffers kept at most; more are freed.
const POOLED: usize = 8;

impl Buffers {
    pub fn new() -> Self {
        Buffers {
            free: Mutex::new(Vec::new()),
        }
    }

    /// The smallest idle buffer that holds `len` bytes, else the largest
    /// (to be grown), so buffers keep to the sizes their reads need.
    fn take(&self, len: usize) -> Vec<u8> {
        let Ok(mut free) = self.free.lock() else {
            return Vec::new();
        };
        let fits = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        let pick = fits.or_else(|| {
            free.iter()
                .enumerate()
                .max_by_key(|(_, b)| b.len())
                .map(|(i, _)| i)
        });
        pick.map(|i| free.swap_remove(i)).unwrap_or_default()
    }

    fn give(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < POOLED {
                free.push(buf);
            }
        }
    }
}

/// The stored blobs of one span, read at once; its buffer goes back to its
/// pool when the span is dropped.
pub struct Span<'p> {
    start: u64,
    len: usize,
    bytes: Vec<u8>,
    pool: &'p Buffers,
}

impl Drop for Span<'_> {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.bytes));
    }
}

impl Span<'_> {
    /// The stored blob of `entry`, one of the entries this span was read for.
    pub fn blob(&self, entry: &PackEntry) -> Result<&[u8]> {
        let at = entry
            .offset
            .checked_sub(self.start)
            .and_then(|at| usize::try_from(at).ok());
        at.and_then(|at| {
            self.bytes
                .get(..self.len)?
                .get(at..at.checked_add(entry.stored_len as usize)?)
        })
        .ok_or_else(|| Error::Bug(format!("blob at {} is not in its span", entry.offset)))
    }
}

/// Reads the stored blobs of `entries` (one span of [`spans`]) in one read,
/// into a buffer from `pool`.
pub fn read_span<'p>(
    pack: &PackFile,
    entries: &[&PackEntry],
    pool: &'p Buffers,
) -> Result<Span<'p>> {
    let (start, len) = match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => (
            first.offset,
            usize::try_from(last.offset + u64::from(last.stored_len) - first.offset)
                .map_err(|_| Error::Bug("span too large".into()))?,
        ),
        _ => (0, 0),
    };
    let mut span = Span {
        start,
        len,
        bytes: pool.take(len),
        pool,
    };
    if span.bytes.len() < len {
        // Exactly: a pooled buffer is resident up to its length.
        span.bytes.reserve_exact(len - span.bytes.len());
        span.bytes.resize(len, 0);
    }
    pack.read_into(start, &mut span.bytes[..len])?;
    Ok(span)
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

/// Where a blob lies, for errors.
fn at(pack: PackId, entry: &PackEntry) -> String {
    format!("pack {pack} at offset {}", entry.offset)
}

/// Turns a stored blob into its chunk's bytes, decompressed into `out` (at
/// least `raw_len` bytes) or lent back when stored raw, **not yet checked**
/// against its id: the caller checks them with [`check`] or through a
/// whole-file hash.
pub fn expand<'a>(
    pack: PackId,
    entry: &PackEntry,
    stored: &'a [u8],
    out: &'a mut [u8],
) -> Result<&'a [u8]> {
    expand_chunk(entry, stored, out).map_err(|err| {
        if err.is_corruption() {
            Error::Corrupt {
                location: at(pack, entry),
                detail: err.to_string(),
            }
        } else {
            Error::Bug(format!("{}: {err}", at(pack, entry)))
        }
    })
}

/// The room [`expand`] needs for a chunk: its raw length when it is
/// compressed, none when it is stored raw (it is lent back).
pub fn expanded_len(entry: &PackEntry) -> usize {
    match entry.compression {
        Compression::None => 0,
        Compression::Zstd => entry.raw_len as usize,
    }
}

/// `scratch`, grown to at least `len` bytes (only growth is zero-filled).
pub fn grown(scratch: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if scratch.len() < len {
        scratch.resize(len, 0);
    }
    scratch
}

/// Room for a chunk of `entry` to be expanded into, in `scratch`.
pub fn room<'a>(scratch: &'a mut Vec<u8>, entry: &PackEntry) -> &'a mut [u8] {
    grown(scratch, expanded_len(entry))
}

/// Checks a chunk's bytes against its id; the error names the pack and offset.
pub fn check(pack: PackId, entry: &PackEntry, raw: &[u8]) -> Result<()> {
    check_chunk(entry, raw).map_err(|err| Error::Corrupt {
        location: at(pack, entry),
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
    fn a_pool_hands_out_the_smallest_buffer_that_fits() {
        let pool = Buffers::new();
        for len in [100, 8 << 20, 4096] {
            pool.give(vec![1; len]);
        }
        assert_eq!(pool.take(3000).len(), 4096);
        assert_eq!(pool.take(4097).len(), 8 << 20);
        // None fits: the largest left, to be grown.
        assert_eq!(pool.take(1 << 20).len(), 100);
        assert!(pool.take(1).is_empty());
        for _ in 0..POOLED + 3 {
            pool.give(vec![0; 10]);
        }
        assert_eq!(pool.free.lock().unwrap().len(), POOLED);
    }

    #[test]
    fn out_of_order_blobs_start_a_new_span() {
        let (a, b) = (entry(1000, 10), entry(0, 10));
        assert_eq!(spans(&[&a, &b]), vec![0..1, 1..2]);
    }
}
