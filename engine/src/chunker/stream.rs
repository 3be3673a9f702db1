//! A stream cut in windows: read ahead on a thread of its own, and each
//! window cut while the consumer works on the chunks of the one before.

use std::io::{self, Read};

use crossbeam_channel::{Receiver, Sender};
use strata_format::config::ChunkerParams;
use strata_format::layer::ChunkRef;
use strata_format::ChunkId;

use super::guide::Guide;

/// A run of consecutive chunks: `data` split at `lengths`, with their ids.
pub struct Batch<'a> {
    pub data: &'a [u8],
    pub lengths: &'a [usize],
    pub ids: &'a [ChunkId],
}

impl Batch<'_> {
    /// The chunks as slices, in stream order.
    pub fn chunks(&self) -> Vec<&[u8]> {
        let mut out = Vec::with_capacity(self.lengths.len());
        let mut at = 0;
        for &len in self.lengths {
            out.push(&self.data[at..at + len]);
            at += len;
        }
        out
    }
}

/// Why [`each_batch`] stopped early.
#[derive(Debug)]
pub enum Stop<E> {
    /// Reading the stream failed.
    Read(io::Error),
    /// The consumer returned this error.
    By(E),
}

/// Cuts `reader` in windows of about `block` bytes (at least one maximum
/// chunk) plus the uncut tail of the window before, hashes the chunks, and
/// hands each window's chunks to `each`, in stream order. A thread of its
/// own reads one block ahead; the next window is cut (in parallel segments)
/// and hashed while `each` works on the one before. At most three blocks
/// are held: the one `each` has, the one being cut and the one being read.
/// With the `previous` version's chunks, unchanged stretches are found
/// again by their ids instead of being cut (see the `guide` module); the cuts
/// are the same.
pub fn each_batch<R, E>(
    reader: R,
    params: ChunkerParams,
    block: usize,
    previous: Option<&[ChunkRef]>,
    mut each: impl FnMut(Batch<'_>) -> Result<(), E> + Send,
) -> Result<(), Stop<E>>
where
    R: Read + Send,
    E: Send,
{
    let head = params.max_size as usize;
    let block = block.max(head);
    std::thread::scope(|scope| {
        let (send, blocks) = crossbeam_channel::bounded(0);
        let (recycle, spare) = crossbeam_channel::unbounded::<Vec<u8>>();
        scope.spawn(move || read_blocks(reader, head, block, &send, &spare));
        let mut windows = Windows {
            blocks,
            params,
            head,
            cut: 0,
            guide: Guide::new(previous.unwrap_or_default(), &params),
        };
        let mut current = windows.next(&[]).map_err(Stop::Read)?;
        while let Some(window) = current {
            let (done, next) = rayon::join(
                || match window.lengths.is_empty() {
                    true => Ok(()),
                    false => each(window.batch()),
                },
                || match window.eof {
                    true => Ok(None),
                    false => windows.next(window.tail()),
                },
            );
            done.map_err(Stop::By)?;
            current = next.map_err(Stop::Read)?;
            let _ = recycle.send(window.buf);
        }
        Ok(())
    })
}

/// Reads `reader` into buffers of `block` bytes after `head` bytes of room
/// (for the tail of the window before) and sends them, until the end or an
/// error (sent too), or until nobody takes them.
fn read_blocks(
    mut reader: impl Read,
    head: usize,
    block: usize,
    send: &Sender<io::Result<Vec<u8>>>,
    spare: &Receiver<Vec<u8>>,
) {
    loop {
        let mut buf = spare.try_recv().unwrap_or_default();
        buf.resize(head + block, 0);
        let filled = match fill(&mut reader, &mut buf[head..]) {
            Ok(n) => n,
            Err(e) => {
                let _ = send.send(Err(e));
                return;
            }
        };
        buf.truncate(head + filled);
        if filled == 0 || send.send(Ok(buf)).is_err() || filled < block {
            return;
        }
    }
}

/// Makes each window from the blocks read and the tail of the one before.
struct Windows<'a> {
    blocks: Receiver<io::Result<Vec<u8>>>,
    params: ChunkerParams,
    head: usize,
    /// Bytes of the stream cut so far: where the next window starts.
    cut: u64,
    guide: Guide<'a>,
}

/// One window: `buf[start..]` holds its bytes, cut at `lengths` (the rest
/// is its tail, cut with the next window).
struct Window {
    buf: Vec<u8>,
    start: usize,
    lengths: Vec<usize>,
    ids: Vec<ChunkId>,
    /// The stream ends with this window: every byte of it is cut.
    eof: bool,
}

impl Window {
    fn cut_end(&self) -> usize {
        self.start + self.lengths.iter().sum::<usize>()
    }

    fn batch(&self) -> Batch<'_> {
        Batch {
            data: &self.buf[self.start..self.cut_end()],
            lengths: &self.lengths,
            ids: &self.ids,
        }
    }

    fn tail(&self) -> &[u8] {
        &self.buf[self.cut_end()..]
    }
}

impl Windows<'_> {
    /// The window after the one whose uncut tail is `tail`; `None` at the
    /// end of the stream.
    fn next(&mut self, tail: &[u8]) -> io::Result<Option<Window>> {
        let (buf, start, eof) = match self.blocks.recv() {
            Ok(block) => {
                let mut block = block?;
                let start = self.head - tail.len();
                block[start..self.head].copy_from_slice(tail);
                (block, start, false)
            }
            // The reader is done: what is left is the end of the stream.
            Err(_) if tail.is_empty() => return Ok(None),
            Err(_) => (tail.to_vec(), 0, true),
        };
        let window = &buf[start..];
        let max = self.params.max_size as usize;
        let threads = rayon::current_num_threads().max(1);
        // Whole maximum chunks: runs of equal bytes (cut every maximum chunk)
        // then resynchronise at once.
        let segment = window.len().div_ceil(threads).div_ceil(max).max(2) * max;
        let (lengths, ids) = self.guide.cut(window, self.cut, eof, &self.params, segment);
        self.cut += lengths.iter().sum::<usize>() as u64;
        Ok(Some(Window {
            buf,
            start,
            lengths,
            ids,
            eof,
        }))
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
