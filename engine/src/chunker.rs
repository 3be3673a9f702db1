//! Content-defined chunking of a byte stream with FastCDC over a sliding window.
//!
//! The window holds at least two maximum-size chunks; a cut is only made when
//! a full maximum chunk (or the end of the stream) is in view, so the cut
//! points are exactly those of chunking the whole stream at once.

use std::io::{self, Read};

use fastcdc::v2020::FastCDC;
use strata_format::config::ChunkerParams;

pub struct ChunkStream<R> {
    reader: R,
    params: ChunkerParams,
    buf: Vec<u8>,
    filled: usize,
    consumed: usize,
    eof: bool,
}

/// A run of consecutive chunks: `data` split at `lengths`.
pub struct Batch<'a> {
    pub data: &'a [u8],
    pub lengths: Vec<usize>,
}

impl Batch<'_> {
    /// The chunks as slices, in stream order.
    pub fn chunks(&self) -> Vec<&[u8]> {
        let mut out = Vec::with_capacity(self.lengths.len());
        let mut at = 0;
        for &len in &self.lengths {
            out.push(&self.data[at..at + len]);
            at += len;
        }
        out
    }
}

impl<R: Read> ChunkStream<R> {
    /// `window` is the buffer size; it is raised to twice the maximum chunk.
    pub fn new(reader: R, params: ChunkerParams, window: usize) -> Self {
        let window = window.max(2 * params.max_size as usize);
        ChunkStream {
            reader,
            params,
            buf: vec![0; window],
            filled: 0,
            consumed: 0,
            eof: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        self.buf.copy_within(self.consumed..self.filled, 0);
        self.filled -= self.consumed;
        self.consumed = 0;
        while !self.eof && self.filled < self.buf.len() {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next run of chunks, or `None` at the end of the stream.
    pub fn next_batch(&mut self) -> io::Result<Option<Batch<'_>>> {
        self.fill()?;
        if self.filled == 0 {
            return Ok(None);
        }
        let p = &self.params;
        let view = &self.buf[..self.filled];
        let cdc = FastCDC::new(view, p.min_size, p.avg_size, p.max_size);
        let mut lengths = Vec::new();
        let mut pos = 0;
        loop {
            let remaining = self.filled - pos;
            if remaining == 0 || (!self.eof && remaining < p.max_size as usize) {
                break;
            }
            let (_, end) = cdc.cut(pos, remaining);
            lengths.push(end - pos);
            pos = end;
        }
        self.consumed = pos;
        Ok(Some(Batch {
            data: &self.buf[..pos],
            lengths,
        }))
    }
}

/// Cuts a slice held in memory at the same points `ChunkStream` would.
pub fn cut_slice(data: &[u8], params: &ChunkerParams) -> Vec<usize> {
    FastCDC::new(data, params.min_size, params.avg_size, params.max_size)
        .map(|c| c.length)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small() -> ChunkerParams {
        ChunkerParams {
            min_size: 64,
            avg_size: 256,
            max_size: 1024,
        }
    }

    fn noise(len: usize, seed: u8) -> Vec<u8> {
        let mut out = vec![0u8; len];
        blake3::Hasher::new()
            .update(&[seed])
            .finalize_xof()
            .fill(&mut out);
        out
    }

    proptest! {
        #[test]
        fn stream_cuts_equal_whole_cuts(len in 0usize..20_000, seed in any::<u8>(), window in 0usize..5000) {
            let data = noise(len, seed);
            let whole = cut_slice(&data, &small());
            let mut stream = ChunkStream::new(&data[..], small(), window);
            let mut lengths = Vec::new();
            let mut joined = Vec::new();
            while let Some(batch) = stream.next_batch().unwrap() {
                joined.extend_from_slice(batch.data);
                lengths.extend(batch.lengths);
            }
            prop_assert_eq!(lengths, whole);
            prop_assert_eq!(joined, data);
        }
    }

    /// Pins the cut points of the default parameters on seeded data: a change
    /// here changes every chunk id and breaks deduplication against old backups.
    #[test]
    fn golden_boundaries() {
        let data = noise(8 << 20, 42);
        let cuts = cut_slice(&data, &ChunkerParams::default());
        assert_eq!(
            cuts,
            [1900305, 453140, 1258038, 1669238, 1062245, 807414, 1238228]
        );
    }
}
