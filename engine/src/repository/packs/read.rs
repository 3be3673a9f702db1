//! The pack reader: a pack's trailer, and its blobs read in spans —
//! neighbouring blobs read together, so a restore or a verification makes
//! few large reads instead of one per chunk (on NFS, each read is a round
//! trip; a large one is split into concurrent READs) — expanded and
//! verified in place.

use std::ops::Range;
use std::sync::Mutex;

use bytes::Bytes;
use strata_format::pack::{
    check_chunk_parts, check_lengths, decode_tail, decode_trailer, Compression, PackEntry, TAIL_LEN,
};
use strata_format::{ChunkId, PackId};

use crate::error::{Error, Result};
use crate::repository::codec;
use crate::repository::{PackFile, Repository};

/// The largest single read. Each restore thread holds a few spans at once
/// (the one it expands, those read ahead). With 8 MiB restore windows and
/// 4 MiB write pieces, 2 MiB spans instead of 8 MiB took the peak of a
/// restore of 84,030 files from 122-126 MiB to 91 MiB, in the same time.
const SPAN: u64 = 2 << 20;
/// Blobs at most this far apart are read together, the gap read and dropped,
/// as long as a span's gaps stay within the bytes it wants (and any gap of
/// at most [`SMALL_GAP`] is read): a partial restore that wants every
/// hundredth small file reads about 1% of a pack, not all of it, while a
/// restore that wants most of a pack reads it in long spans as before.
const GAP: u64 = 256 << 10;
/// A gap this small is always read through: cheaper than another read.
const SMALL_GAP: u64 = 4 << 10;

/// What a pack's trailer says, read without its body.
#[derive(Debug)]
pub struct PackTrailer {
    pub entries: Vec<PackEntry>,
    pub pack_len: u64,
    /// Tail and trailer bytes read.
    pub bytes_read: u64,
}

/// A pack's trailer, read from its tail and trailer alone (never its
/// body); the trailer's checksum is verified.
pub fn read_trailer(repo: &Repository, id: &PackId) -> Result<PackTrailer> {
    trailer_of(&repo.open_pack(id)?)
}

/// [`read_trailer`] of a pack already open.
pub fn trailer_of(pack: &PackFile) -> Result<PackTrailer> {
    let location = format!("pack {}", pack.id);
    let tail_at = pack
        .len
        .checked_sub(TAIL_LEN)
        .ok_or_else(|| Error::Corrupt {
            location: location.clone(),
            detail: format!("pack is truncated ({} bytes)", pack.len),
        })?;
    let tail = pack.read_at(tail_at, TAIL_LEN as usize)?;
    let trailer_len = decode_tail(&tail, pack.len).map_err(|e| Error::format(&location, e))?;
    let blobs_end = tail_at - u64::from(trailer_len);
    let trailer = pack.read_at(blobs_end, trailer_len as usize)?;
    let entries = decode_trailer(&trailer, blobs_end).map_err(|e| Error::format(&location, e))?;
    Ok(PackTrailer {
        entries,
        pack_len: pack.len,
        bytes_read: TAIL_LEN + u64::from(trailer_len),
    })
}

/// Splits `entries` (in the order they are wanted) into runs that are each
/// read at once: increasing offsets, small gaps, at most `SPAN` bytes; the
/// gaps of a run add up to no more than the bytes it wants, unless each is
/// at most [`SMALL_GAP`].
pub fn spans(entries: &[&PackEntry]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let start = entries[i].offset;
        let mut end = start + u64::from(entries[i].stored_len);
        let mut wanted = u64::from(entries[i].stored_len);
        let mut j = i + 1;
        while let Some(e) = entries.get(j) {
            let e_end = e.offset + u64::from(e.stored_len);
            if e.offset < end || e_end - start > SPAN {
                break;
            }
            let gap = e.offset - end;
            let gaps = end - start - wanted;
            if gap > GAP || (gap > SMALL_GAP && gaps + gap > wanted) {
                break;
            }
            end = e_end;
            wanted += u64::from(e.stored_len);
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

impl Default for Buffers {
    fn default() -> Self {
        Buffers::new()
    }
}

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

/// The stored blobs of one span, read at once: into a buffer of its pool
/// (given back when the span is dropped), or, where the backend lends its
/// own buffers, as the pieces it received.
pub struct Span<'p> {
    start: u64,
    len: usize,
    held: SpanBytes,
    pool: &'p Buffers,
}

enum SpanBytes {
    Buffer(Vec<u8>),
    /// In order; `starts[i]` is where `pieces[i]` starts in the pack.
    Pieces {
        starts: Vec<u64>,
        pieces: Vec<Bytes>,
    },
}

impl Drop for Span<'_> {
    fn drop(&mut self) {
        if let SpanBytes::Buffer(buf) = &mut self.held {
            self.pool.give(std::mem::take(buf));
        }
    }
}

/// Bytes that lie in one buffer, or in consecutive parts of several (a
/// blob that straddles two pieces of a span; a raw chunk lent back as
/// such a blob).
pub enum Blob<'a> {
    Whole(&'a [u8]),
    Parts(Vec<&'a [u8]>),
}

impl<'a> Blob<'a> {
    pub fn parts(&self) -> &[&'a [u8]] {
        match self {
            Blob::Whole(whole) => std::slice::from_ref(whole),
            Blob::Parts(parts) => parts,
        }
    }

    pub fn len(&self) -> usize {
        self.parts().iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the bytes into `into`, which must be exactly as long.
    pub fn copy_to(&self, into: &mut [u8]) -> Result<()> {
        if into.len() != self.len() {
            return Err(Error::Bug(format!(
                "{} bytes copied into room for {}",
                self.len(),
                into.len()
            )));
        }
        let mut rest = into;
        for part in self.parts() {
            let (mine, after) = std::mem::take(&mut rest).split_at_mut(part.len());
            mine.copy_from_slice(part);
            rest = after;
        }
        Ok(())
    }
}

impl Span<'_> {
    /// The stored bytes the span holds (what was read).
    pub fn stored_len(&self) -> usize {
        self.len
    }

    /// The raw bytes of `entry`'s blob, opened and verified (see
    /// [`open_blob`]), expanded into `scratch` when compressed.
    pub fn open<'a>(
        &'a self,
        pack: PackId,
        entry: &PackEntry,
        scratch: &'a mut Vec<u8>,
    ) -> Result<Blob<'a>> {
        open_blob(pack, entry, self.blob(entry)?, room(scratch, entry))
    }

    /// The stored blob of `entry`, one of the entries this span was read for.
    pub fn blob(&self, entry: &PackEntry) -> Result<Blob<'_>> {
        let missing = || Error::Bug(format!("blob at {} is not in its span", entry.offset));
        let at = entry
            .offset
            .checked_sub(self.start)
            .and_then(|at| usize::try_from(at).ok())
            .ok_or_else(missing)?;
        let end = at
            .checked_add(entry.stored_len as usize)
            .filter(|&end| end <= self.len)
            .ok_or_else(missing)?;
        match &self.held {
            SpanBytes::Buffer(buf) => buf.get(at..end).map(Blob::Whole).ok_or_else(missing),
            SpanBytes::Pieces { starts, pieces } => {
                let (from, to) = (entry.offset, entry.offset + u64::from(entry.stored_len));
                // The blob's bytes in a piece that starts at `s`.
                let within = |s: u64, len: usize| {
                    from.saturating_sub(s) as usize..((to - s) as usize).min(len)
                };
                // The last piece that starts at or before the blob.
                let first = starts.partition_point(|&s| s <= from).saturating_sub(1);
                let Some((&s, piece)) = starts.get(first).zip(pieces.get(first)) else {
                    // An empty span holds only empty blobs.
                    return Ok(Blob::Whole(&[]));
                };
                if s + piece.len() as u64 >= to {
                    let whole = piece.get(within(s, piece.len()));
                    return whole.map(Blob::Whole).ok_or_else(missing);
                }
                starts[first..]
                    .iter()
                    .zip(&pieces[first..])
                    .take_while(|(&s, _)| s < to)
                    .map(|(&s, piece)| piece.get(within(s, piece.len())).ok_or_else(missing))
                    .collect::<Result<_>>()
                    .map(Blob::Parts)
            }
        }
    }
}

/// Cuts the bytes of a span (`entries`, as [`spans`] groups them) into
/// reads of at most `max` bytes. A read ends where a blob starts when that
/// keeps the blob in one read (if it fits in one), so most blobs come back
/// whole rather than cut across two replies.
fn reads(entries: &[&PackEntry], max: u64) -> Vec<Range<u64>> {
    let max = max.max(1);
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Vec::new();
    };
    let end = last.offset + u64::from(last.stored_len);
    let mut out = Vec::new();
    let mut from = first.offset;
    // Reads up to `to` (all of them `max` long but the last).
    let mut cut_to = |from: &mut u64, to: u64| {
        while *from < to {
            let next = to.min(*from + max);
            out.push(*from..next);
            *from = next;
        }
    };
    for e in entries {
        let (start, stop) = (e.offset, e.offset + u64::from(e.stored_len));
        if stop - from <= max {
            continue;
        }
        if start > from && stop - start <= max {
            cut_to(&mut from, start);
        } else {
            // The blob does not fit in one read: reads of `max` until the
            // rest of it does.
            let to = from + (stop - from - 1) / max * max;
            cut_to(&mut from, to);
        }
    }
    cut_to(&mut from, end);
    out
}

/// Reads the stored blobs of `entries` (one span of [`spans`]) at once:
/// into a buffer from `pool`, or as the backend's own pieces where it
/// lends them.
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
    if let Some(max) = pack.piece_len() {
        let pieces = pack.read_shared(&reads(entries, max as u64))?;
        let mut starts = Vec::with_capacity(pieces.len());
        let mut at = start;
        for piece in &pieces {
            starts.push(at);
            at += piece.len() as u64;
        }
        if at != start + len as u64 {
            return Err(Error::Bug(format!(
                "pack {}: read {} bytes of a span of {len}",
                pack.id,
                at - start
            )));
        }
        return Ok(Span {
            start,
            len,
            held: SpanBytes::Pieces { starts, pieces },
            pool,
        });
    }
    let mut buf = pool.take(len);
    if buf.len() < len {
        // Exactly: a pooled buffer is resident up to its length.
        buf.reserve_exact(len - buf.len());
        buf.resize(len, 0);
    }
    // Given back to the pool even when the read fails.
    let mut span = Span {
        start,
        len,
        held: SpanBytes::Buffer(buf),
        pool,
    };
    if let SpanBytes::Buffer(buf) = &mut span.held {
        pack.read_into(start, &mut buf[..len])?;
    }
    Ok(span)
}

/// Reads this many results ahead of the work that uses them.
const AHEAD: usize = 2;

/// Runs `read` on each job on a thread of its own, up to `AHEAD` results
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
/// against its id: the caller checks them with [`check`].
fn expand<'a>(
    pack: PackId,
    entry: &PackEntry,
    stored: Blob<'a>,
    out: &'a mut [u8],
) -> Result<Blob<'a>> {
    let named = |err: strata_format::FormatError| {
        if err.is_corruption() {
            Error::Corrupt {
                location: at(pack, entry),
                detail: err.to_string(),
            }
        } else {
            Error::Bug(format!("{}: {err}", at(pack, entry)))
        }
    };
    let len = stored.len();
    match stored {
        Blob::Whole(stored) => codec::decode(entry, stored, out)
            .map(Blob::Whole)
            .map_err(named),
        Blob::Parts(parts) => match entry.compression {
            Compression::None => {
                check_lengths(entry, len).map_err(named)?;
                Ok(Blob::Parts(parts))
            }
            // Rare: reads are cut so that most blobs come back whole.
            Compression::Zstd => {
                let joined = parts.concat();
                let len = codec::decode(entry, &joined, out).map_err(named)?.len();
                Ok(Blob::Whole(&out[..len]))
            }
        },
    }
}

/// The room [`expand`] needs for a chunk: its raw length when it is
/// compressed, none when it is stored raw (it is lent back).
pub fn expanded_len(entry: &PackEntry) -> usize {
    codec::decoded_room(entry)
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

/// A blob's raw bytes, opened (expanded into `room` when compressed, lent
/// as stored when raw) and verified against its id: the one way a stored
/// chunk becomes data, for restore, repack and check alike.
pub fn open_blob<'a>(
    pack: PackId,
    entry: &PackEntry,
    stored: Blob<'a>,
    room: &'a mut [u8],
) -> Result<Blob<'a>> {
    let raw = expand(pack, entry, stored, room)?;
    check(pack, entry, &raw)?;
    Ok(raw)
}

/// The spans of `entries` (in pack order), each read as the iterator
/// reaches it: what every pass over a pack's blobs starts from. Each item
/// is the entries' range and the span read for them.
pub fn read_spans<'p>(
    pack: &'p PackFile,
    entries: &'p [&'p PackEntry],
    pool: &'p Buffers,
) -> impl Iterator<Item = (Range<usize>, Result<Span<'p>>)> + 'p {
    spans(entries).into_iter().map(move |run| {
        let span = read_span(pack, &entries[run.clone()], pool);
        (run, span)
    })
}

/// Checks a chunk's bytes against its id; the error names the pack and offset.
fn check(pack: PackId, entry: &PackEntry, raw: &Blob) -> Result<()> {
    check_chunk_parts(entry, raw.parts()).map_err(|err| Error::Corrupt {
        location: at(pack, entry),
        detail: err.to_string(),
    })
}

/// What reading a whole pack found.
#[derive(Debug, Default)]
pub struct PackVerdict {
    /// Bytes read (every blob, the trailer and its tail).
    pub bytes: u64,
    /// Chunks read and found intact.
    pub intact: u64,
    /// Their bytes, decompressed.
    pub intact_bytes: u64,
    /// What is damaged: a chunk (and why), or the whole pack when its
    /// trailer cannot be read (no chunk: which it held is unknown).
    pub damaged: Vec<(Option<ChunkId>, String)>,
}

/// Reads every blob of pack `id`, in spans, and checks each against its
/// chunk id (after decompression), and the trailer against its checksum.
/// Damage is the verdict's; `Err` is for I/O (the pack could not be read).
pub fn verify_pack(repo: &Repository, id: &PackId, pool: &Buffers) -> Result<PackVerdict> {
    let mut verdict = PackVerdict::default();
    let pack = match repo.open_pack(id) {
        Ok(pack) => pack,
        Err(e @ Error::Corrupt { .. }) => {
            verdict.damaged.push((None, e.to_string()));
            return Ok(verdict);
        }
        Err(e) => return Err(e),
    };
    let trailer = match trailer_of(&pack) {
        Ok(t) => t,
        Err(e @ (Error::Corrupt { .. } | Error::Unsupported(_) | Error::InvalidArgument(_))) => {
            verdict.damaged.push((None, e.to_string()));
            return Ok(verdict);
        }
        Err(e) => return Err(e),
    };
    verdict.bytes = trailer.bytes_read;
    let entries: Vec<&PackEntry> = trailer.entries.iter().collect();
    let mut scratch = Vec::new();
    for (run, span) in read_spans(&pack, &entries, pool) {
        let wanted = &entries[run];
        let span = match span {
            Ok(span) => span,
            Err(e @ Error::Corrupt { .. }) => {
                for entry in wanted {
                    verdict.damaged.push((Some(entry.id), e.to_string()));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in wanted {
            verdict.bytes += u64::from(entry.stored_len);
            match span.open(pack.id, entry, &mut scratch).map(|_| ()) {
                Ok(()) => {
                    verdict.intact += 1;
                    verdict.intact_bytes += u64::from(entry.raw_len);
                }
                Err(e @ Error::Corrupt { .. }) => {
                    verdict.damaged.push((Some(entry.id), e.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(verdict)
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
