//! Decoding a blob with arbitrary trailer fields must fail cleanly or return
//! exactly the chunk whose id was claimed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strata_format::pack::{decode_chunk, Compression, PackEntry};
use strata_format::ChunkId;

fuzz_target!(|input: (u8, u32, [u8; 32], Vec<u8>)| {
    let (comp, raw_len, id, stored) = input;
    let entry = PackEntry {
        id: ChunkId(id),
        offset: 12,
        stored_len: stored.len() as u32,
        raw_len: raw_len % (1 << 20),
        compression: if comp % 2 == 0 { Compression::None } else { Compression::Zstd },
    };
    if let Ok(raw) = decode_chunk(&entry, &stored) {
        assert_eq!(ChunkId::of(&raw), entry.id);
    }
});
