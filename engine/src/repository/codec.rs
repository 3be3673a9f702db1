//! How stored bytes are made: the id a chunk is named by and the form its
//! bytes take in a pack. Compression today (zstd, or raw when that is not
//! smaller); the one place where keyed chunk ids and sealing (encryption)
//! will go, so that nothing else changes when they do.

use strata_format::pack::{compress_chunk, expand_chunk, Compression, PackEntry};
use strata_format::{ChunkId, FormatError};

/// The id of a chunk's raw bytes (FORMAT.md section 3: BLAKE3-256).
pub fn chunk_id(raw: &[u8]) -> ChunkId {
    ChunkId::of(raw)
}

/// The id of the bytes of `parts`, one after the other, without joining
/// them.
pub fn chunk_id_of_parts(parts: &[&[u8]]) -> ChunkId {
    ChunkId::of_parts(parts)
}

/// A chunk's stored form and how it was made: compressed at `level`, or
/// raw when compression would not make it smaller (or `level` is `None`).
pub fn encode(raw: &[u8], level: Option<i32>) -> Result<(Vec<u8>, Compression), FormatError> {
    compress_chunk(raw, level)
}

/// A chunk's raw bytes from its stored form `stored`, into `out` (of at
/// least [`decoded_room`] bytes) when it must be expanded.
pub fn decode<'a>(
    entry: &PackEntry,
    stored: &'a [u8],
    out: &'a mut [u8],
) -> Result<&'a [u8], FormatError> {
    expand_chunk(entry, stored, out)
}

/// The room [`decode`] needs: the raw length of a compressed chunk, none
/// for one stored raw (it is lent back).
pub fn decoded_room(entry: &PackEntry) -> usize {
    match entry.compression {
        Compression::None => 0,
        Compression::Zstd => entry.raw_len as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_gives_back_what_encode_took(raw in proptest::collection::vec(any::<u8>(), 0..4096), repeat in 1usize..8, level in proptest::option::of(1i32..5)) {
            let raw = raw.repeat(repeat);
            let (stored, compression) = encode(&raw, level).unwrap();
            let entry = PackEntry {
                id: chunk_id(&raw),
                offset: 0,
                stored_len: stored.len() as u32,
                raw_len: raw.len() as u32,
                compression,
            };
            let mut room = vec![0u8; decoded_room(&entry)];
            prop_assert_eq!(decode(&entry, &stored, &mut room).unwrap(), &raw[..]);
            prop_assert_eq!(chunk_id_of_parts(&[&raw[..raw.len() / 2], &raw[raw.len() / 2..]]), entry.id);
        }
    }
}
