//! Pack files: chunk blobs followed by a trailer that lists them.
//!
//! ```text
//! PACK     = HEADER || BLOB* || TRAILER || TAIL
//! HEADER   = "STRATAPK" || version:u32le (= 1)                      12 bytes
//! BLOB     = the chunk's stored bytes (a zstd frame, or the raw bytes)
//! TRAILER  = count:u32le || ENTRY*count || checksum:[32]
//!            checksum = BLAKE3(count || ENTRY*count)
//! ENTRY    = chunk_id:[32] || offset:u64le || stored_len:u32le
//!            || raw_len:u32le || compression:u8                     49 bytes
//! TAIL     = trailer_len:u32le || "STRPKEND"                        12 bytes
//! ```
//!
//! Entries are in blob order; blobs are contiguous from the header to the
//! trailer. A reader lists a pack from its tail and trailer alone, and fetches
//! one chunk by offset; every fetched chunk is checked against its id.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::Write;

use crate::error::{FormatError, Result};
use crate::id::ChunkId;

pub const PACK_MAGIC: &[u8; 8] = b"STRATAPK";
pub const PACK_END_MAGIC: &[u8; 8] = b"STRPKEND";
pub const PACK_VERSION: u32 = 1;
pub const HEADER_LEN: u64 = 12;
pub const TAIL_LEN: u64 = 12;
pub const ENTRY_LEN: usize = 49;
/// Largest raw chunk any version-1 reader accepts (the chunker's hard maximum).
pub const MAX_CHUNK_LEN: u32 = 16 * 1024 * 1024;

/// How a blob is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// The blob is the raw chunk.
    None = 0,
    /// The blob is one zstd frame.
    Zstd = 1,
}

impl Compression {
    fn decode(code: u8) -> Result<Self> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zstd),
            other => Err(FormatError::corrupt(
                "pack trailer",
                format!("unknown compression code {other}"),
            )),
        }
    }
}

/// One chunk's place in a pack, as the trailer records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ChunkId,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub compression: Compression,
}

thread_local! {
    // zstd contexts are costly to set up (tables, window); each thread keeps one.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

fn zstd_compress(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match slot.as_mut() {
            Some((l, c)) if *l == level => c,
            _ => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        compressor.compress(raw)
    })
}

/// Decompresses one frame into `out`; returns the bytes written.
fn zstd_decompress_into(stored: &[u8], out: &mut [u8]) -> std::io::Result<usize> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        decompressor.decompress_to_buffer(stored, out)
    })
}

/// Compresses `raw` with zstd at `level`, falling back to storing it raw when
/// compression does not make it smaller.
pub fn compress_chunk(raw: &[u8], level: Option<i32>) -> Result<(Vec<u8>, Compression)> {
    if let Some(level) = level {
        let packed = zstd_compress(raw, level)?;
        if packed.len() < raw.len() {
            return Ok((packed, Compression::Zstd));
        }
    }
    Ok((raw.to_vec(), Compression::None))
}

/// Turns a stored blob back into the chunk and checks it against its id.
/// A raw blob is the chunk itself: it is checked and lent back, not copied.
///
/// The error names what is wrong; the caller adds the pack and offset.
pub fn decode_chunk<'a>(entry: &PackEntry, stored: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    let raw = match entry.compression {
        Compression::None => Cow::Borrowed(expand_chunk(entry, stored, &mut [])?),
        Compression::Zstd => {
            let mut out = vec![0; entry.raw_len as usize];
            expand_chunk(entry, stored, &mut out)?;
            Cow::Owned(out)
        }
    };
    check_chunk(entry, &raw)?;
    Ok(raw)
}

/// Turns a stored blob back into the chunk's bytes **without** checking
/// them against the chunk id: a zstd blob is decompressed into the first
/// `raw_len` bytes of `out` (which must hold that many), a raw blob is lent
/// back (`out` is not used). Lengths are checked.
///
/// The caller MUST check the bytes before trusting them: with
/// [`check_chunk`] (FORMAT.md section 4).
pub fn expand_chunk<'a>(
    entry: &PackEntry,
    stored: &'a [u8],
    out: &'a mut [u8],
) -> Result<&'a [u8]> {
    check_lengths(entry, stored.len())?;
    let raw_len = entry.raw_len as usize;
    match entry.compression {
        Compression::None => Ok(stored),
        Compression::Zstd => {
            let room = out.len();
            let out = out.get_mut(..raw_len).ok_or_else(|| FormatError::Invalid {
                what: "chunk buffer",
                detail: format!("{room} bytes for a chunk of {raw_len}"),
            })?;
            let written = zstd_decompress_into(stored, out)
                .map_err(|e| FormatError::corrupt("chunk", format!("zstd: {e}")))?;
            if written != raw_len {
                return Err(FormatError::corrupt(
                    "chunk",
                    format!("{written} bytes where {raw_len} were expected"),
                ));
            }
            Ok(out)
        }
    }
}

/// Checks what [`expand_chunk`] checks before it expands: that a blob of
/// `stored_len` bytes is the one `entry` describes, and that a raw blob is
/// as long as its chunk. A reader that holds a raw blob in several parts
/// (as it was received) checks this instead of expanding it.
pub fn check_lengths(entry: &PackEntry, stored_len: usize) -> Result<()> {
    if stored_len != entry.stored_len as usize {
        return Err(FormatError::corrupt(
            "chunk",
            format!(
                "stored length {stored_len} where the trailer says {}",
                entry.stored_len
            ),
        ));
    }
    if entry.compression == Compression::None && entry.raw_len != entry.stored_len {
        return Err(FormatError::corrupt(
            "chunk",
            format!(
                "raw blob of {} bytes where the trailer says {} raw",
                entry.stored_len, entry.raw_len
            ),
        ));
    }
    Ok(())
}

/// Checks a chunk's bytes against its id.
pub fn check_chunk(entry: &PackEntry, raw: &[u8]) -> Result<()> {
    check_chunk_parts(entry, &[raw])
}

/// Checks a chunk's bytes, given as consecutive parts, against its id.
pub fn check_chunk_parts(entry: &PackEntry, parts: &[&[u8]]) -> Result<()> {
    let actual = ChunkId::of_parts(parts);
    if actual != entry.id {
        return Err(FormatError::corrupt(
            "chunk",
            format!("content hashes to {actual}, expected {}", entry.id),
        ));
    }
    Ok(())
}

/// Writes a pack to any `Write`, blob by blob.
///
/// The writer owns nothing about where the pack goes: the engine hands it a
/// temporary file and publishes the file once `finish` returns.
pub struct PackWriter<W: Write> {
    out: W,
    offset: u64,
    entries: Vec<PackEntry>,
}

impl<W: Write> PackWriter<W> {
    pub fn new(mut out: W) -> Result<Self> {
        out.write_all(PACK_MAGIC)?;
        out.write_all(&PACK_VERSION.to_le_bytes())?;
        Ok(PackWriter {
            out,
            offset: HEADER_LEN,
            entries: Vec::new(),
        })
    }

    /// Appends one stored blob; returns where it went.
    pub fn add(
        &mut self,
        id: ChunkId,
        stored: &[u8],
        raw_len: u32,
        compression: Compression,
    ) -> Result<PackEntry> {
        let stored_len = u32::try_from(stored.len()).map_err(|_| FormatError::Invalid {
            what: "chunk",
            detail: format!("stored length {} exceeds u32", stored.len()),
        })?;
        if raw_len > MAX_CHUNK_LEN {
            return Err(FormatError::Invalid {
                what: "chunk",
                detail: format!("raw length {raw_len} exceeds {MAX_CHUNK_LEN}"),
            });
        }
        self.out.write_all(stored)?;
        let entry = PackEntry {
            id,
            offset: self.offset,
            stored_len,
            raw_len,
            compression,
        };
        self.offset += u64::from(stored_len);
        self.entries.push(entry);
        Ok(entry)
    }

    /// Bytes written so far (header and blobs).
    pub fn len(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> &[PackEntry] {
        &self.entries
    }

    /// Writes trailer and tail; returns the writer, the entries and the total length.
    pub fn finish(mut self) -> Result<(W, Vec<PackEntry>, u64)> {
        let trailer = encode_trailer(&self.entries);
        self.out.write_all(&trailer)?;
        let trailer_len = u32::try_from(trailer.len()).map_err(|_| FormatError::Invalid {
            what: "pack",
            detail: "too many chunks for one pack".into(),
        })?;
        self.out.write_all(&trailer_len.to_le_bytes())?;
        self.out.write_all(PACK_END_MAGIC)?;
        self.out.flush()?;
        let total = self.offset + trailer.len() as u64 + TAIL_LEN;
        Ok((self.out, self.entries, total))
    }
}

fn encode_trailer(entries: &[PackEntry]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(4 + entries.len() * ENTRY_LEN + 32);
    buf.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        buf.extend_from_slice(e.id.as_bytes());
        buf.extend_from_slice(&e.offset.to_le_bytes());
        buf.extend_from_slice(&e.stored_len.to_le_bytes());
        buf.extend_from_slice(&e.raw_len.to_le_bytes());
        buf.push(e.compression as u8);
    }
    let checksum = blake3::hash(&buf);
    buf.extend_from_slice(checksum.as_bytes());
    buf
}

/// Reads the tail (the last `TAIL_LEN` bytes of a pack of `pack_len` bytes) and
/// returns the trailer's length; the trailer sits just before the tail.
pub fn decode_tail(tail: &[u8], pack_len: u64) -> Result<u32> {
    if tail.len() != TAIL_LEN as usize || pack_len < HEADER_LEN + TAIL_LEN {
        return Err(FormatError::corrupt("pack", "shorter than header and tail"));
    }
    if &tail[4..12] != PACK_END_MAGIC {
        return Err(FormatError::corrupt(
            "pack",
            "missing end magic (truncated?)",
        ));
    }
    let trailer_len = le_u32(&tail[0..4]);
    if u64::from(trailer_len) + HEADER_LEN + TAIL_LEN > pack_len {
        return Err(FormatError::corrupt(
            "pack",
            format!("trailer length {trailer_len} exceeds the pack"),
        ));
    }
    Ok(trailer_len)
}

/// Checks a pack header (its first `HEADER_LEN` bytes).
pub fn decode_header(header: &[u8]) -> Result<()> {
    if header.len() < HEADER_LEN as usize || &header[0..8] != PACK_MAGIC {
        return Err(FormatError::corrupt("pack", "bad magic"));
    }
    let version = le_u32(&header[8..12]);
    if version != PACK_VERSION {
        return Err(FormatError::Unsupported {
            what: "pack",
            version,
            supported: PACK_VERSION,
        });
    }
    Ok(())
}

/// Decodes a trailer. `blobs_end` is the offset where the trailer starts
/// (`pack_len - TAIL_LEN - trailer_len`): every blob must fit before it.
pub fn decode_trailer(trailer: &[u8], blobs_end: u64) -> Result<Vec<PackEntry>> {
    let bad = |detail: String| FormatError::corrupt("pack trailer", detail);
    if trailer.len() < 4 + 32 {
        return Err(bad("too short".into()));
    }
    let (body, checksum) = trailer.split_at(trailer.len() - 32);
    if blake3::hash(body).as_bytes() != checksum {
        return Err(bad("checksum mismatch".into()));
    }
    let count = le_u32(&body[0..4]) as usize;
    if body.len() != 4 + count.saturating_mul(ENTRY_LEN) {
        return Err(bad(format!(
            "{count} entries do not fit {} bytes",
            body.len()
        )));
    }
    let mut entries = Vec::with_capacity(count);
    let mut expected_offset = HEADER_LEN;
    for raw in body[4..].chunks_exact(ENTRY_LEN) {
        let entry = PackEntry {
            id: ChunkId::from_slice(&raw[0..32]).ok_or_else(|| bad("short id".into()))?,
            offset: le_u64(&raw[32..40]),
            stored_len: le_u32(&raw[40..44]),
            raw_len: le_u32(&raw[44..48]),
            compression: Compression::decode(raw[48])?,
        };
        if entry.offset != expected_offset {
            return Err(bad(format!(
                "blob at {} where {} was expected",
                entry.offset, expected_offset
            )));
        }
        if entry.raw_len > MAX_CHUNK_LEN {
            return Err(bad(format!("raw length {} too large", entry.raw_len)));
        }
        if entry.compression == Compression::None && entry.stored_len != entry.raw_len {
            return Err(bad("raw blob with stored length != raw length".into()));
        }
        expected_offset = entry.offset + u64::from(entry.stored_len);
        entries.push(entry);
    }
    if expected_offset != blobs_end {
        return Err(bad(format!(
            "blobs end at {expected_offset}, trailer starts at {blobs_end}"
        )));
    }
    Ok(entries)
}

/// Lists a whole pack held in memory: header, tail and trailer checked.
pub fn decode_index(pack: &[u8]) -> Result<Vec<PackEntry>> {
    let len = pack.len() as u64;
    if len < HEADER_LEN + TAIL_LEN {
        return Err(FormatError::corrupt("pack", "shorter than header and tail"));
    }
    decode_header(&pack[..HEADER_LEN as usize])?;
    let trailer_len = decode_tail(&pack[(len - TAIL_LEN) as usize..], len)?;
    let blobs_end = len - TAIL_LEN - u64::from(trailer_len);
    decode_trailer(
        &pack[blobs_end as usize..(len - TAIL_LEN) as usize],
        blobs_end,
    )
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(chunks: &[Vec<u8>], level: Option<i32>) -> (Vec<u8>, Vec<PackEntry>) {
        let mut w = PackWriter::new(Vec::new()).unwrap();
        for c in chunks {
            let (stored, comp) = compress_chunk(c, level).unwrap();
            w.add(ChunkId::of(c), &stored, c.len() as u32, comp)
                .unwrap();
        }
        let (bytes, entries, total) = w.finish().unwrap();
        assert_eq!(total, bytes.len() as u64);
        (bytes, entries)
    }

    proptest! {
        #[test]
        fn pack_round_trips(
            chunks in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3000), 0..8),
            zstd in any::<bool>(),
        ) {
            let (bytes, written) = build(&chunks, zstd.then_some(3));
            let listed = decode_index(&bytes).unwrap();
            prop_assert_eq!(&listed, &written);
            // One buffer for every expansion, starting with stale bytes in it.
            let mut reused = vec![7u8; 3000];
            for (entry, chunk) in listed.iter().zip(&chunks) {
                let start = entry.offset as usize;
                let stored = &bytes[start..start + entry.stored_len as usize];
                prop_assert_eq!(&decode_chunk(entry, stored).unwrap()[..], &chunk[..]);
                let expanded = expand_chunk(entry, stored, &mut reused).unwrap();
                prop_assert_eq!(expanded, &chunk[..]);
                prop_assert!(check_chunk(entry, expanded).is_ok());
            }
        }

        #[test]
        fn any_flipped_byte_is_detected(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..500), 1..4),
            pos in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (mut bytes, _) = build(&chunks, Some(3));
            let at = pos.index(bytes.len());
            bytes[at] ^= 1 << bit;
            let detected = match decode_index(&bytes) {
                Err(_) => true,
                Ok(entries) => entries.iter().zip(&chunks).any(|(e, c)| {
                    let s = e.offset as usize;
                    decode_chunk(e, &bytes[s..s + e.stored_len as usize]).map_or(true, |d| d[..] != c[..])
                }),
            };
            prop_assert!(detected, "flip at {} went unnoticed", at);
            // Expanding without the id check, then checking, finds the same.
            let mut out = Vec::new();
            let found_later = match decode_index(&bytes) {
                Err(_) => true,
                Ok(entries) => entries.iter().zip(&chunks).any(|(e, c)| {
                    let s = e.offset as usize;
                    out.resize(e.raw_len as usize, 0);
                    expand_chunk(e, &bytes[s..s + e.stored_len as usize], &mut out)
                        .and_then(|raw| check_chunk(e, raw).map(|()| raw[..] != c[..]))
                        .unwrap_or(true)
                }),
            };
            prop_assert!(found_later, "flip at {} went unnoticed by check_chunk", at);
        }

        /// A chunk checked in parts (cut anywhere) gets the verdict it gets
        /// in one piece, with or without a flipped byte.
        #[test]
        fn checking_in_parts_agrees_with_checking_whole(
            chunk in proptest::collection::vec(any::<u8>(), 0..5000),
            cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
            flip in proptest::option::of((any::<proptest::sample::Index>(), 0u8..8)),
        ) {
            let (_, entries) = build(std::slice::from_ref(&chunk), None);
            let entry = &entries[0];
            let mut raw = chunk.clone();
            if let (Some((pos, bit)), false) = (flip, raw.is_empty()) {
                let at = pos.index(raw.len());
                raw[at] ^= 1 << bit;
            }
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(raw.len() + 1)).collect();
            at.push(0);
            at.push(raw.len());
            at.sort_unstable();
            let parts: Vec<&[u8]> = at.windows(2).map(|w| &raw[w[0]..w[1]]).collect();
            prop_assert_eq!(ChunkId::of_parts(&parts), ChunkId::of(&raw));
            prop_assert_eq!(
                check_chunk_parts(entry, &parts).is_ok(),
                check_chunk(entry, &raw).is_ok()
            );
            prop_assert_eq!(check_chunk(entry, &raw).is_ok(), raw == chunk);
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_index(&bytes);
        }
    }

    #[test]
    fn a_buffer_too_small_for_the_chunk_is_an_error_not_corruption() {
        let chunk = vec![b'a'; 4000];
        let (bytes, entries) = build(&[chunk], Some(3));
        let e = &entries[0];
        assert_eq!(e.compression, Compression::Zstd);
        let stored = &bytes[e.offset as usize..][..e.stored_len as usize];
        let err = expand_chunk(e, stored, &mut [0; 3999]).unwrap_err();
        assert!(!err.is_corruption(), "{err}");
        assert_eq!(
            expand_chunk(e, stored, &mut [0; 5000]).unwrap(),
            &[b'a'; 4000][..]
        );
    }

    #[test]
    fn lengths_are_checked_before_expanding() {
        let mut noise = vec![0u8; 100];
        blake3::Hasher::new().finalize_xof().fill(&mut noise);
        let (_, entries) = build(&[noise, vec![b'z'; 4000]], Some(3));
        let (raw, zstd) = (&entries[0], &entries[1]);
        assert_eq!(raw.compression, Compression::None);
        assert_eq!(zstd.compression, Compression::Zstd);
        assert!(check_lengths(raw, 100).is_ok());
        assert!(check_lengths(zstd, zstd.stored_len as usize).is_ok());
        assert!(check_lengths(raw, 99).unwrap_err().is_corruption());
        assert!(check_lengths(zstd, 4000).unwrap_err().is_corruption());
        // A raw blob whose trailer claims another raw length.
        let lying = PackEntry {
            raw_len: 101,
            ..*raw
        };
        assert!(check_lengths(&lying, 100).unwrap_err().is_corruption());
    }

    #[test]
    fn incompressible_chunk_is_stored_raw() {
        let mut noise = vec![0u8; 4096];
        blake3::Hasher::new().finalize_xof().fill(&mut noise);
        let (_, comp) = compress_chunk(&noise, Some(3)).unwrap();
        assert_eq!(comp, Compression::None);
        let (_, comp) = compress_chunk(&[7u8; 4096], Some(3)).unwrap();
        assert_eq!(comp, Compression::Zstd);
    }
}
