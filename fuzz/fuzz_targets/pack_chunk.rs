//! Decoding a blob with arbitrary trailer fields must fail cleanly or return
//! exactly the chunk whose id was claimed; expanding it without the id check
//! (into a reused buffer) must fail cleanly or return `raw_len` bytes, and
//! agree with the checked decode. A raw blob held in two parts (as a reader
//! that received it in two pieces holds it) gets the same verdict.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_format::pack::{
    check_chunk, check_chunk_parts, check_lengths, decode_chunk, expand_chunk, Compression,
    PackEntry,
};
use strata_format::ChunkId;

fuzz_target!(|input: (u8, u32, [u8; 32], Vec<u8>, u16)| {
    let (comp, raw_len, id, stored, cut) = input;
    let entry = PackEntry {
        id: ChunkId(id),
        offset: 12,
        stored_len: stored.len() as u32,
        raw_len: raw_len % (1 << 20),
        compression: if comp % 2 == 0 {
            Compression::None
        } else {
            Compression::Zstd
        },
    };
    let decoded = decode_chunk(&entry, &stored);
    if let Ok(raw) = &decoded {
        assert_eq!(ChunkId::of(raw), entry.id);
    }
    let mut out = vec![0xAA; entry.raw_len as usize];
    let expanded = expand_chunk(&entry, &stored, &mut out);
    if let Ok(raw) = &expanded {
        assert_eq!(raw.len(), entry.raw_len as usize);
    }
    let checked = expanded.and_then(|raw| check_chunk(&entry, raw).map(|()| raw.to_vec()));
    if entry.compression == Compression::None {
        let (a, b) = stored.split_at(usize::from(cut).min(stored.len()));
        let in_parts = check_lengths(&entry, a.len() + b.len())
            .and_then(|()| check_chunk_parts(&entry, &[a, b]));
        assert_eq!(in_parts.is_ok(), checked.is_ok());
    }
    assert_eq!(checked.ok(), decoded.ok().map(|raw| raw.into_owned()));
});
