//! Restore step 3: fill every file with its data, unit by unit, in
//! parallel; check every byte written; give each file its metadata.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;
use strata_format::layer::EntryKind;
use strata_format::pack::{Compression, PackEntry};
use strata_format::PackId;

use super::meta;
use super::plan::{FileUnit, PackUnit, Unit};
use super::tree::Tree;
use super::write::{check_hash, Target, WRITE_PIECE};
use crate::beneath::Beneath;
use crate::direct_io::{self, BlockWriter, Buffer};
use crate::error::{Error, IoContext, Result};
use crate::index::ChunkLocation;
use crate::progress::Progress;
use crate::repository::packs::read::{
    expanded_len, grown, open_blob, read_ahead, read_span, spans, Blob, Buffers, Span,
};
use crate::repository::{PackFile, Repository};

/// Runs every unit (in parallel), so every file gets its data and every
/// byte written is checked: each chunk against its id, a single-chunk
/// file's before it is written, a many-chunk file's as its window is
/// expanded, before the file is done.
pub fn fill(
    workers: &Workers,
    repo: &Repository,
    root: &Beneath,
    tree: &Tree,
    units: &[Unit],
    allow_direct: bool,
    progress: &Progress,
) -> Result<()> {
    let target = Target {
        root,
        direct: allow_direct && direct_io::supported_at(root.path()),
        as_root: meta::as_root(),
    };
    let run = |unit: &Unit, kept: &mut Kept| match unit {
        Unit::Pack(unit) => fill_pack(repo, target, tree, unit, kept, progress),
        Unit::File(unit) => fill_file(repo, target, tree, unit, kept, progress),
    };
    // Units are taken strictly in the plan's order (heaviest first), so the
    // largest files start first and the restore does not end on one of them
    // running alone.
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let stopped = || failed.lock().map_or(true, |f| f.is_some());
    workers.pool.scope(|scope| {
        for _ in 0..workers.count {
            scope.spawn(|_| {
                let mut kept = workers.take();
                while let Some(unit) = units.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if stopped() {
                        break;
                    }
                    if let Err(e) = run(unit, &mut kept) {
                        if let Ok(mut first) = failed.lock() {
                            first.get_or_insert(e);
                        }
                        break;
                    }
                }
                workers.give_back(kept);
            });
        }
    });
    match failed.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(e),
        Err(_) => Err(Error::Bug("a restore thread panicked".into())),
    }
}

/// The threads that fill files, and their buffers, made once per restore:
/// every window runs on the same threads with the same buffers. (Threads
/// made per window would each get an allocator arena of their own, and
/// buffers freed after each window would come back from the heap, zeroed
/// and resident: the restore's memory would grow with its windows.)
pub struct Workers {
    pool: rayon::ThreadPool,
    count: usize,
    kept: Mutex<Vec<Kept>>,
}

impl Workers {
    pub fn new() -> Result<Workers> {
        // One unit per core, and one more to use a core while another unit
        // waits on a read or a write (measured: 8-10% faster than one per
        // core, about 35 MiB more memory; two more gained nothing).
        let count = rayon::current_num_threads() + 1;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(count)
            .thread_name(|i| format!("strata-restore-{i}"))
            .build()
            .map_err(|e| Error::Bug(format!("restore threads: {e}")))?;
        Ok(Workers {
            pool,
            count,
            kept: Mutex::new(Vec::new()),
        })
    }

    fn take(&self) -> Kept {
        self.kept
            .lock()
            .ok()
            .and_then(|mut k| k.pop())
            .unwrap_or_else(Kept::new)
    }

    fn give_back(&self, kept: Kept) {
        if let Ok(mut k) = self.kept.lock() {
            k.push(kept);
        }
    }
}

/// What a restore thread keeps from one unit to the next, so the memory of
/// its buffers is allocated and first touched once, not once per unit.
struct Kept {
    /// Buffers that pack spans are read into.
    reads: Buffers,
    /// Room that zstd chunks are expanded into.
    scratch: Vec<u8>,
    /// The aligned buffer that file data is written through.
    block: Option<Buffer>,
}

impl Kept {
    fn new() -> Kept {
        Kept {
            reads: Buffers::new(),
            scratch: Vec::new(),
            block: None,
        }
    }
}

/// The kept write buffer, or a new one.
fn block_from(kept: &mut Option<Buffer>) -> Buffer {
    kept.take().unwrap_or_else(|| Buffer::new(WRITE_PIECE))
}

fn fill_pack(
    repo: &Repository,
    target: Target,
    tree: &Tree,
    unit: &PackUnit,
    kept: &mut Kept,
    progress: &Progress,
) -> Result<()> {
    let pack = repo.open_pack(&unit.pack)?;
    let entries: Vec<&PackEntry> = unit.placements.iter().map(|p| &p.entry).collect();
    let Kept {
        reads,
        scratch,
        block,
    } = kept;
    read_ahead(
        spans(&entries),
        |span| {
            let read = read_span(&pack, &entries[span.clone()], reads)?;
            progress.add_stored_read(read.stored_len() as u64);
            Ok((span, read))
        },
        |(span, stored)| {
            progress.check()?;
            for placement in &unit.placements[span] {
                let entry = &placement.entry;
                let raw = stored.open(pack.id, entry, scratch)?;
                for i in placement.files() {
                    let e = &tree.entries[i];
                    let EntryKind::File { size, hash, .. } = &e.kind else {
                        return Err(Error::Bug("pack unit names a non-file".into()));
                    };
                    // A one-chunk file's content hash is its chunk id, just checked.
                    check_hash(&e.path, entry.id.0, hash.0)?;
                    let spare = block_from(block);
                    let (path, out) = target.writer(&e.path, *size, spare)?;
                    let (file, spare) = out.write_whole(raw.parts()).at(&path)?;
                    target.done(&file, &path, e, raw.len() as u64, *size)?;
                    *block = Some(spare);
                    progress.add_bytes(raw.len() as u64);
                }
            }
            Ok(())
        },
    )
}

/// A many-chunk file is fetched and expanded a window of chunks at a time
/// (in parallel within the window): at most this many raw bytes, and at
/// least one chunk. With the read-ahead, a file unit holds at most four
/// windows of stored bytes and one of expanded bytes, whatever its chunks.
const WINDOW_BYTES: u64 = 4 << 20;

/// Splits `chunks` into windows of at most [`WINDOW_BYTES`] raw bytes.
fn windows(chunks: &[ChunkLocation]) -> impl Iterator<Item = &[ChunkLocation]> {
    let mut rest = chunks;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let end = rest
            .iter()
            .position(|c| {
                bytes += u64::from(c.entry.raw_len);
                bytes > WINDOW_BYTES
            })
            .unwrap_or(rest.len())
            .max(1);
        let (window, after) = rest.split_at(end);
        rest = after;
        Some(window)
    })
}

/// Carves `scratch` into room for each chunk of `window` to be expanded
/// into ([`expanded_len`]: none for a raw chunk).
fn carve<'a>(scratch: &'a mut Vec<u8>, window: &[ChunkLocation]) -> Vec<&'a mut [u8]> {
    let lens = window.iter().map(|c| expanded_len(&c.entry));
    let total = lens.clone().sum();
    split(grown(scratch, total), lens)
}

/// Splits the front of `room` into consecutive slices of `lens` bytes.
/// Callers size `room` to hold them all ([`leading`], [`grown`]).
fn split(room: &mut [u8], lens: impl Iterator<Item = usize>) -> Vec<&mut [u8]> {
    let mut rest = room;
    lens.map(|len| {
        let (mine, after) = std::mem::take(&mut rest).split_at_mut(len);
        rest = after;
        mine
    })
    .collect()
}

/// Where a chunk of a window is expanded: in place in the writer's buffer,
/// or into scratch, to be written after.
enum Dest<'p, 's> {
    Place(&'p mut [u8]),
    Later(&'s mut [u8]),
}

/// How many leading chunks of `window` fit in `room` bytes, and their bytes.
fn leading(window: &[ChunkLocation], room: usize) -> (usize, usize) {
    let mut bytes = 0;
    let mut n = 0;
    for c in window {
        let len = c.entry.raw_len as usize;
        if bytes + len > room {
            break;
        }
        bytes += len;
        n += 1;
    }
    (n, bytes)
}

/// Puts a chunk's bytes into `into` (exactly its raw length), expanded
/// there or copied there when stored raw, and checks them against its id.
fn place(pack: PackId, entry: &PackEntry, stored: Blob, into: &mut [u8]) -> Result<()> {
    match entry.compression {
        Compression::Zstd => open_blob(pack, entry, stored, into).map(|_| ()),
        Compression::None => open_blob(pack, entry, stored, &mut [])?.copy_to(into),
    }
}

/// Writes a many-chunk file. Each chunk is checked against its id as its
/// window is expanded, in parallel, so an error names the damaged pack and
/// offset. A file that fails is removed: bytes that are not the backup's
/// are never left in the target.
fn fill_file(
    repo: &Repository,
    target: Target,
    tree: &Tree,
    unit: &FileUnit,
    kept: &mut Kept,
    progress: &Progress,
) -> Result<()> {
    let e = &tree.entries[unit.file];
    let EntryKind::File { size, .. } = &e.kind else {
        return Err(Error::Bug("file unit names a non-file".into()));
    };
    let (path, out) = target.writer(&e.path, *size, block_from(&mut kept.block))?;
    match write_chunks(repo, unit, out, &path, kept, progress) {
        Ok((file, len)) => target.done(&file, &path, e, len, *size),
        Err(err) => {
            // The error that matters is `err`; the target is partial anyway.
            let _ = super::write::remove(target.root, &e.path);
            Err(err)
        }
    }
}

/// Writes `unit`'s chunks through `out` in file order, each checked against
/// its id; returns the file and the bytes written.
fn write_chunks(
    repo: &Repository,
    unit: &FileUnit,
    mut out: BlockWriter,
    path: &Path,
    kept: &mut Kept,
    progress: &Progress,
) -> Result<(File, u64)> {
    let Kept {
        reads,
        scratch,
        block,
    } = kept;
    let mut packs: HashMap<PackId, PackFile> = HashMap::new();
    let mut offset = 0u64;
    // A window's chunks, read as spans: (the spans, each chunk's span).
    let mut read_window = |window: &[ChunkLocation]| -> Result<(Vec<Span>, Vec<usize>)> {
        let mut read = Vec::new();
        let mut of_chunk = Vec::with_capacity(window.len());
        // Neighbouring chunks in the same pack are read at once.
        for run in window.chunk_by(|a, b| a.pack == b.pack) {
            let pack = match packs.get(&run[0].pack) {
                Some(pack) => pack,
                None => packs
                    .entry(run[0].pack)
                    .or_insert(repo.open_pack(&run[0].pack)?),
            };
            let entries: Vec<&PackEntry> = run.iter().map(|loc| &loc.entry).collect();
            for span in spans(&entries) {
                of_chunk.extend(std::iter::repeat_n(read.len(), span.len()));
                let stored = read_span(pack, &entries[span], reads)?;
                progress.add_stored_read(stored.stored_len() as u64);
                read.push(stored);
            }
        }
        Ok((read, of_chunk))
    };
    read_ahead(
        windows(&unit.chunks),
        |window| Ok((window, read_window(window)?)),
        |(window, (read, of_chunk))| {
            progress.check()?;
            // As many leading chunks as fit go straight into the writer's
            // spare room (expanded there, or copied there from the read);
            // the rest are expanded into scratch and written after.
            let spare = out.spare();
            let (fits, placed) = leading(window, spare.len());
            let raw_lens = window[..fits].iter().map(|c| c.entry.raw_len as usize);
            let mut dests: Vec<Dest> = split(spare, raw_lens)
                .into_iter()
                .map(Dest::Place)
                .collect();
            dests.extend(carve(scratch, &window[fits..]).into_iter().map(Dest::Later));
            let later: Vec<Option<Blob>> = window
                .par_iter()
                .zip(of_chunk)
                .zip(dests)
                .map(|((loc, span), dest)| {
                    let stored = read
                        .get(span)
                        .ok_or_else(|| Error::Bug("chunk outside its window".into()))?
                        .blob(&loc.entry)?;
                    match dest {
                        Dest::Place(into) => {
                            place(loc.pack, &loc.entry, stored, into).map(|()| None)
                        }
                        Dest::Later(into) => {
                            open_blob(loc.pack, &loc.entry, stored, into).map(Some)
                        }
                    }
                })
                .collect::<Result<_>>()?;
            out.filled(placed).at(path)?;
            for part in later.iter().flatten().flat_map(Blob::parts) {
                out.write(part).at(path)?;
            }
            let next = out.written();
            progress.add_bytes(next - offset);
            offset = next;
            Ok(())
        },
    )?;
    let written = out.written();
    let (file, spare) = out.finish().at(path)?;
    *block = Some(spare);
    Ok((file, written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use strata_format::ChunkId;

    fn chunk(raw_len: u32, zstd: bool) -> ChunkLocation {
        ChunkLocation {
            pack: PackId([0; 32]),
            entry: PackEntry {
                id: ChunkId([0; 32]),
                offset: 0,
                stored_len: if zstd { raw_len / 3 } else { raw_len },
                raw_len,
                compression: if zstd {
                    Compression::Zstd
                } else {
                    Compression::None
                },
            },
        }
    }

    proptest! {
        /// Windows cover every chunk once, in order; each holds at most
        /// `WINDOW_BYTES` raw bytes, or is one chunk; each zstd chunk gets
        /// room of its raw length.
        #[test]
        fn windows_cover_in_order_within_bounds(
            lens in proptest::collection::vec((1u32..(5 << 20), any::<bool>()), 0..40),
        ) {
            let chunks: Vec<ChunkLocation> = lens.iter().map(|&(l, z)| chunk(l, z)).collect();
            let mut seen = 0;
            let mut scratch = Vec::new();
            for w in windows(&chunks) {
                prop_assert!(!w.is_empty());
                prop_assert!(std::ptr::eq(&w[0], &chunks[seen]));
                seen += w.len();
                let bytes: u64 = w.iter().map(|c| u64::from(c.entry.raw_len)).sum();
                prop_assert!(w.len() == 1 || bytes <= WINDOW_BYTES);
                let rooms = carve(&mut scratch, w);
                prop_assert_eq!(rooms.len(), w.len());
                for (room, c) in rooms.iter().zip(w) {
                    let want = match c.entry.compression {
                        Compression::Zstd => c.entry.raw_len as usize,
                        Compression::None => 0,
                    };
                    prop_assert_eq!(room.len(), want);
                }
            }
            prop_assert_eq!(seen, chunks.len());
        }

        /// The chunks placed in the writer's room are the longest prefix
        /// that fits, each given exactly its raw length.
        #[test]
        fn leading_chunks_fill_the_room_without_overflowing(
            lens in proptest::collection::vec((1u32..(2 << 20), any::<bool>()), 0..12),
            room in 0usize..(12 << 20),
        ) {
            let chunks: Vec<ChunkLocation> = lens.iter().map(|&(l, z)| chunk(l, z)).collect();
            let (fits, bytes) = leading(&chunks, room);
            let lens: Vec<usize> = chunks.iter().map(|c| c.entry.raw_len as usize).collect();
            prop_assert_eq!(bytes, lens[..fits].iter().sum::<usize>());
            prop_assert!(bytes <= room);
            prop_assert!(fits == chunks.len() || bytes + lens[fits] > room);
            let mut buf = vec![0u8; room];
            let parts = split(&mut buf, lens[..fits].iter().copied());
            let got: Vec<usize> = parts.iter().map(|p| p.len()).collect();
            prop_assert_eq!(got, lens[..fits].to_vec());
        }
    }
}
