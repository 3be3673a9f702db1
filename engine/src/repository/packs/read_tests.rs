//! Tests of fetching: spans, reads, blobs in pieces, the buffer pool.
use super::*;
use proptest::prelude::*;
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
            let mut gaps = 0;
            let mut large = false;
            for w in refs[s.clone()].windows(2) {
                let gap = w[1].offset - (w[0].offset + u64::from(w[0].stored_len));
                prop_assert!(gap <= GAP);
                gaps += gap;
                large |= gap > SMALL_GAP;
            }
            // What a span reads and drops is at most what it wants.
            let wanted: u64 = refs[s.clone()].iter().map(|e| u64::from(e.stored_len)).sum();
            prop_assert!(!large || gaps <= wanted, "{} gap bytes for {} wanted", gaps, wanted);
        }
        prop_assert_eq!(next, refs.len());
    }
}

/// Entries laid out one after the other with the given gaps and lengths.
fn laid_out(gaps_and_lens: &[(u64, u32)]) -> Vec<PackEntry> {
    let mut at = 0;
    gaps_and_lens
        .iter()
        .map(|&(gap, len)| {
            at += gap;
            let e = entry(at, len);
            at += u64::from(len);
            e
        })
        .collect()
}

/// A span of `entries` held as `bytes` (the pack) cut at `cuts`, as a
/// backend that lends its buffers returns it.
fn pieces_span<'p>(
    pack: &[u8],
    entries: &[&PackEntry],
    cuts: &[u64],
    pool: &'p Buffers,
) -> Span<'p> {
    let start = entries[0].offset;
    let last = entries[entries.len() - 1];
    let end = last.offset + u64::from(last.stored_len);
    let mut at: Vec<u64> = cuts.iter().map(|c| start + c % (end - start + 1)).collect();
    at.extend([start, end]);
    at.sort_unstable();
    at.dedup();
    let pieces = at
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&pack[w[0] as usize..w[1] as usize]))
        .collect();
    Span {
        start,
        len: (end - start) as usize,
        held: SpanBytes::Pieces {
            starts: at[..at.len() - 1].to_vec(),
            pieces,
        },
        pool,
    }
}

proptest! {
    /// Reads tile the span, each at most `max` bytes, and every blob
    /// that fits in one read lies in one read.
    #[test]
    fn reads_tile_the_span_and_keep_blobs_whole(
        lens in proptest::collection::vec((0u64..300_000, 0u32..1_500_000), 1..30),
        max in 4096u64..1_200_000,
    ) {
        let entries = laid_out(&lens);
        let refs: Vec<&PackEntry> = entries.iter().collect();
        let reads = reads(&refs, max);
        let (first, last) = (refs[0], refs[refs.len() - 1]);
        let mut at = first.offset;
        for r in &reads {
            prop_assert_eq!(r.start, at);
            prop_assert!(r.end > r.start && r.end - r.start <= max, "{:?}", r);
            at = r.end;
        }
        prop_assert_eq!(at, last.offset + u64::from(last.stored_len));
        for e in &refs {
            let (s, t) = (e.offset, e.offset + u64::from(e.stored_len));
            if t - s <= max && t > s {
                prop_assert!(
                    reads.iter().any(|r| r.start <= s && t <= r.end),
                    "blob {}..{} cut across reads {:?}", s, t, reads
                );
            }
        }
    }

    /// Whatever pieces a span came in, each blob is its bytes of the
    /// pack: whole when it lies in one piece, in parts otherwise.
    #[test]
    fn blobs_come_out_of_pieces_intact(
        lens in proptest::collection::vec((0u64..50, 0u32..400), 1..12),
        cuts in proptest::collection::vec(any::<u64>(), 0..10),
    ) {
        let entries = laid_out(&lens);
        let refs: Vec<&PackEntry> = entries.iter().collect();
        let last = refs[refs.len() - 1];
        let pack: Vec<u8> = (0..last.offset + u64::from(last.stored_len))
            .map(|i| (i % 251) as u8)
            .collect();
        let pool = Buffers::new();
        let span = pieces_span(&pack, &refs, &cuts, &pool);
        for e in &refs {
            let blob = span.blob(e).unwrap();
            let want = &pack[e.offset as usize..][..e.stored_len as usize];
            prop_assert_eq!(blob.parts().concat(), want.to_vec());
            prop_assert_eq!(blob.len(), want.len());
            prop_assert!(blob.parts().len() == 1 || matches!(blob, Blob::Parts(_)));
            let mut copy = vec![0xEE; want.len()];
            blob.copy_to(&mut copy).unwrap();
            prop_assert_eq!(&copy[..], want);
        }
    }
}

#[test]
fn a_blob_in_parts_expands_like_a_whole_one() {
    use strata_format::pack::{compress_chunk, PackWriter};
    let mut noise = vec![0u8; 3000];
    blake3::Hasher::new().finalize_xof().fill(&mut noise);
    let chunks = [noise, b"zstd ".repeat(800)];
    let mut w = PackWriter::new(Vec::new()).unwrap();
    for c in &chunks {
        let (stored, how) = compress_chunk(c, Some(3)).unwrap();
        w.add(ChunkId::of(c), &stored, c.len() as u32, how).unwrap();
    }
    let (pack, entries, _) = w.finish().unwrap();
    assert_eq!(entries[0].compression, Compression::None);
    assert_eq!(entries[1].compression, Compression::Zstd);
    let refs: Vec<&PackEntry> = entries.iter().collect();
    let pool = Buffers::new();
    // Cut inside each blob.
    let cuts = [entries[0].offset + 1000, entries[1].offset + 7];
    let span = pieces_span(&pack, &refs, &cuts, &pool);
    let id = PackId([1; 32]);
    for (e, chunk) in entries.iter().zip(&chunks) {
        let stored = span.blob(e).unwrap();
        assert!(matches!(stored, Blob::Parts(_)));
        let mut out = vec![0; e.raw_len as usize];
        let raw = expand(id, e, stored, &mut out).unwrap();
        assert_eq!(raw.parts().concat(), *chunk);
        check(id, e, &raw).unwrap();
    }
    // A raw blob whose trailer lies about its raw length is corrupt, in
    // parts as whole.
    let lying = PackEntry {
        raw_len: entries[0].raw_len + 1,
        ..entries[0]
    };
    let err = expand(id, &lying, span.blob(&entries[0]).unwrap(), &mut []);
    assert!(matches!(err, Err(Error::Corrupt { .. })));
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
fn a_sparse_choice_of_small_blobs_is_read_blob_by_blob() {
    // Every hundredth of 1,000 blobs of 200 bytes: 19,800-byte gaps.
    let all = laid_out(&vec![(0, 200); 1000]);
    let chosen: Vec<&PackEntry> = all.iter().step_by(100).collect();
    assert_eq!(spans(&chosen).len(), chosen.len());
    // Every blob: one span.
    let every: Vec<&PackEntry> = all.iter().collect();
    assert_eq!(spans(&every), vec![0..1000]);
    // Every other one: gaps as large as what is wanted, read through.
    let half: Vec<&PackEntry> = all.iter().step_by(2).collect();
    assert_eq!(spans(&half), vec![0..500]);
}

#[test]
fn out_of_order_blobs_start_a_new_span() {
    let (a, b) = (entry(1000, 10), entry(0, 10));
    assert_eq!(spans(&[&a, &b]), vec![0..1, 1..2]);
}
