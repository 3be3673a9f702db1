//! Content-defined chunking with FastCDC, in parallel and read ahead.
//!
//! `gear::Gear` finds one cut, exactly where `fastcdc::v2020` does.
//! A FastCDC cut depends only on the bytes from the chunk's start up to one
//! maximum chunk further (and on whether the stream ends before that). So:
//! - a window of the stream can be cut like the whole stream, as long as a
//!   cut is only made when a full maximum chunk (or the end) is in view;
//! - a window can be cut in segments at once ([`cut_window`]): each segment
//!   is cut from its own start, then the segments are joined by following
//!   the sequential cuts from the previous segment until one lands on a cut
//!   of the next; from there the two chains are the same chain. The cut
//!   points are exactly those of cutting the whole stream on one thread.
//!
//! [`stream::each_batch`] reads a file on a thread of its own, a block
//! ahead, and cuts each window while the consumer works on the one before.

use rayon::prelude::*;
use strata_format::config::ChunkerParams;

mod gear;
mod guide;
mod stream;
use gear::Gear;
pub use stream::{each_batch, Batch, Stop};

/// The cut ends of the chunks that start in `[start, stop)`, following the
/// chain that begins at `start`; the last end may lie past `stop`. The
/// chain stops early where no full maximum chunk is in view (unless `eof`).
fn chain(data: &[u8], gear: &Gear, eof: bool, max: usize, start: usize, stop: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = start;
    while pos < stop {
        match next_cut(data, gear, eof, max, pos) {
            Some(end) => ends.push(end),
            None => break,
        }
        pos = *ends.last().unwrap_or(&pos);
    }
    ends
}

/// The end of the chunk that starts at `pos`, if it may be cut now.
fn next_cut(data: &[u8], gear: &Gear, eof: bool, max: usize, pos: usize) -> Option<usize> {
    let rest = data.get(pos..).unwrap_or_default();
    if rest.is_empty() || (!eof && rest.len() < max) {
        return None;
    }
    Some(pos + gear.cut(rest))
}

/// The lengths of the chunks `data` is cut into, from its start, exactly as
/// cutting on one thread would: every chunk if `eof`, else those that start
/// with a full maximum chunk in view (the rest is cut with what follows).
/// Segments of `segment` bytes are cut in parallel.
pub fn cut_window(data: &[u8], eof: bool, params: &ChunkerParams, segment: usize) -> Vec<usize> {
    let len = data.len();
    let max = params.max_size as usize;
    let gear = Gear::new(params);
    let segment = segment.max(1);
    let starts: Vec<usize> = (0..len).step_by(segment).collect();
    let chains: Vec<Vec<usize>> = starts
        .par_iter()
        .map(|&s| chain(data, &gear, eof, max, s, (s + segment).min(len)))
        .collect();
    let mut ends: Vec<usize> = Vec::new();
    let mut pos = 0;
    'segments: for (&start, own) in starts.iter().zip(&chains) {
        let stop = (start + segment).min(len);
        while pos < stop {
            // On this segment's own chain: the rest of it is ours too.
            let joined = match pos == start {
                true => Some(0),
                false => own.binary_search(&pos).ok().map(|i| i + 1),
            };
            if let Some(from) = joined {
                ends.extend_from_slice(&own[from..]);
                pos = *ends.last().unwrap_or(&pos);
                if pos < stop {
                    // The chain stopped for want of data: so does the window.
                    break 'segments;
                }
                break;
            }
            match next_cut(data, &gear, eof, max, pos) {
                Some(end) => {
                    ends.push(end);
                    pos = end;
                }
                None => break 'segments,
            }
        }
    }
    let mut lengths = Vec::with_capacity(ends.len());
    let mut at = 0;
    for end in ends {
        lengths.push(end - at);
        at = end;
    }
    lengths
}

/// Cuts a slice held in memory at the same points as [`each_batch`] cuts
/// a stream.
pub fn cut_slice(data: &[u8], params: &ChunkerParams) -> Vec<usize> {
    if data.len() <= params.min_size as usize {
        return if data.is_empty() {
            Vec::new()
        } else {
            vec![data.len()]
        };
    }
    let gear = Gear::new(params);
    let mut lengths = Vec::new();
    let mut at = 0;
    while let Some(rest) = data.get(at..).filter(|rest| !rest.is_empty()) {
        let len = gear.cut(rest);
        lengths.push(len);
        at += len;
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::{self, Read};

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

    /// Noise with runs of one byte value in it (cut only at the maximum).
    fn patchy(len: usize, seed: u8, runs: &[(usize, usize)]) -> Vec<u8> {
        let mut data = noise(len, seed);
        for &(at, run) in runs {
            let at = at.min(len);
            let end = (at + run).min(len);
            data[at..end].fill(seed);
        }
        data
    }

    /// The cuts of one thread, from the start, by the reference crate: what
    /// every other cut must equal. Without `eof`, only the chunks that start
    /// with a full maximum chunk in view.
    fn sequential(data: &[u8], eof: bool, p: &ChunkerParams) -> Vec<usize> {
        fastcdc::v2020::FastCDC::new(data, p.min_size, p.avg_size, p.max_size)
            .take_while(|c| eof || data.len() - c.offset >= p.max_size as usize)
            .map(|c| c.length)
            .collect()
    }

    proptest! {
        #[test]
        fn parallel_cuts_equal_sequential_cuts(
            len in 0usize..40_000,
            seed in any::<u8>(),
            segment in 1usize..6000,
            eof in any::<bool>(),
            runs in proptest::collection::vec((0usize..40_000, 0usize..5000), 0..4),
        ) {
            let data = patchy(len, seed, &runs);
            let p = small();
            prop_assert_eq!(cut_window(&data, eof, &p, segment), sequential(&data, eof, &p));
        }

        #[test]
        fn stream_cuts_equal_whole_cuts(
            len in 0usize..40_000,
            seed in any::<u8>(),
            block in 0usize..5000,
            runs in proptest::collection::vec((0usize..40_000, 0usize..5000), 0..3),
        ) {
            let data = patchy(len, seed, &runs);
            let whole = cut_slice(&data, &small());
            let mut lengths = Vec::new();
            let mut joined = Vec::new();
            let streamed = each_batch(&data[..], small(), block, None, |batch| -> Result<(), ()> {
                joined.extend_from_slice(batch.data);
                lengths.extend_from_slice(batch.lengths);
                Ok(())
            });
            prop_assert!(streamed.is_ok());
            prop_assert_eq!(lengths, whole);
            prop_assert_eq!(joined, data);
        }
    }

    /// `data` with `edits` applied in turn: (where, how many bytes removed,
    /// how many inserted).
    fn edited(data: &[u8], edits: &[(usize, usize, usize)], seed: u8) -> Vec<u8> {
        let mut out = data.to_vec();
        for (n, &(at, cut, put)) in edits.iter().enumerate() {
            let at = at.min(out.len());
            let end = (at + cut).min(out.len());
            let inserted = noise(put, seed.wrapping_add(n as u8));
            out.splice(at..end, inserted);
        }
        out
    }

    /// The chunk list of `data` as a backup records it.
    fn chunk_refs(data: &[u8], p: &ChunkerParams) -> Vec<strata_format::layer::ChunkRef> {
        let mut at = 0;
        cut_slice(data, p)
            .into_iter()
            .map(|len| {
                let id = crate::repository::codec::chunk_id(&data[at..at + len]);
                at += len;
                strata_format::layer::ChunkRef {
                    id,
                    len: len as u32,
                }
            })
            .collect()
    }

    proptest! {
        /// A stream guided by a previous version's chunks (the same data,
        /// or edited in places, or unrelated) is cut exactly as without a
        /// guide, and every id is the hash of its chunk.
        #[test]
        fn guided_cuts_equal_whole_cuts(
            len in 0usize..60_000,
            seed in any::<u8>(),
            block in 0usize..9000,
            runs in proptest::collection::vec((0usize..60_000, 0usize..5000), 0..3),
            edits in proptest::collection::vec((0usize..60_000, 0usize..3000, 0usize..3000), 0..4),
            unrelated in any::<bool>(),
        ) {
            let p = small();
            let before = patchy(len, seed, &runs);
            let previous = match unrelated {
                true => chunk_refs(&noise(len, seed ^ 0x55), &p),
                false => chunk_refs(&before, &p),
            };
            let data = edited(&before, &edits, seed);
            let mut lengths = Vec::new();
            let mut ids = Vec::new();
            let streamed = each_batch(&data[..], p, block, Some(&previous), |batch| -> Result<(), ()> {
                lengths.extend_from_slice(batch.lengths);
                ids.extend_from_slice(batch.ids);
                Ok(())
            });
            prop_assert!(streamed.is_ok());
            prop_assert_eq!(lengths, cut_slice(&data, &p));
            let expected: Vec<_> = chunk_refs(&data, &p).into_iter().map(|c| c.id).collect();
            prop_assert_eq!(ids, expected);
        }
    }

    /// The cuts of `data` streamed with the guide of `previous`.
    fn guided(data: &[u8], previous: &[strata_format::layer::ChunkRef]) -> Vec<usize> {
        let mut lengths = Vec::new();
        let streamed = each_batch(
            data,
            small(),
            4096,
            Some(previous),
            |batch| -> Result<(), ()> {
                lengths.extend_from_slice(batch.lengths);
                Ok(())
            },
        );
        assert!(streamed.is_ok());
        lengths
    }

    /// A previous chunk whose bytes are all the same, but whose cut fell
    /// where it did because of the byte after it, which changed: it is not
    /// taken, since the cut no longer falls there.
    #[test]
    fn a_previous_chunk_is_not_taken_when_the_byte_after_it_changed() {
        let p = small();
        let gear = Gear::new(&p);
        let max = p.max_size as usize;
        for seed in 0..=255u8 {
            let before = noise(20_000, seed);
            let previous = chunk_refs(&before, &p);
            let mut start = 0;
            for chunk in &previous {
                let len = chunk.len as usize;
                let end = start + len;
                if len < max && start + max <= before.len() {
                    for value in 0..=255u8 {
                        let mut data = before.clone();
                        data[end] = value;
                        if gear.ends_at(&data[start..], len) == Some(false) {
                            let whole = cut_slice(&data, &p);
                            assert_ne!(whole, cut_slice(&before, &p));
                            assert_eq!(guided(&data, &previous), whole);
                            return;
                        }
                    }
                }
                start = end;
            }
        }
        panic!("no chunk found whose cut moves with the byte after it");
    }

    /// A window of one byte value is cut every maximum chunk, from any start:
    /// segments of whole maximum chunks still join at once.
    #[test]
    fn runs_of_one_byte_join_at_segment_starts() {
        let p = small();
        let data = vec![7u8; 50 * 1024];
        assert_eq!(
            cut_window(&data, true, &p, 8 * 1024),
            sequential(&data, true, &p)
        );
    }

    #[test]
    fn a_read_error_ends_the_stream_with_it() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk gone"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let mut seen = 0;
        let failed = each_batch(
            Failing(5000),
            small(),
            1024,
            None,
            |batch| -> Result<(), ()> {
                seen += batch.data.len();
                Ok(())
            },
        );
        assert!(matches!(failed, Err(Stop::Read(e)) if e.to_string() == "disk gone"));
        assert!(seen <= 5000);
    }

    /// The consumer's error stops the stream, and the reader with it.
    #[test]
    fn the_consumers_error_stops_the_stream() {
        let data = noise(200_000, 3);
        let mut calls = 0;
        let stopped = each_batch(&data[..], small(), 1024, None, |_| {
            calls += 1;
            Err("enough")
        });
        assert!(matches!(stopped, Err(Stop::By("enough"))));
        assert_eq!(calls, 1);
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
        assert_eq!(
            cut_window(&data, true, &ChunkerParams::default(), 4 << 20),
            cuts
        );
    }
}
