//! A layer verified and read by byte ranges, without holding it in memory:
//! [`LayerTail::verify`] checks its checksum and parses its footer and index
//! (a layer before version 4 is hashed front to back, its checksum being of
//! every byte); [`LayerTail::records`] then streams its body from any
//! reader, and [`LayerTail::records_from`] from the piece that holds a path,
//! each piece checked against the index as it passes.

use std::io;
use std::ops::Range;

use super::pieces::{self, Checked, Piece};
use super::{
    LayerMeta, LayerMetaV1, ServiceMeta, FOOTER_FIXED, HEADER_LEN, LAYER_MAGIC, LAYER_VERSION,
};
use super::{Records, LAYER_VERSION_MIN, LAYER_VERSION_PIECES};
use crate::error::{FormatError, Result};

/// Bytes hashed per read while a layer is verified.
const PIECE: usize = 1 << 20;

/// What a layer's footer says, once its checksum has been verified.
#[derive(Debug, Clone)]
pub struct LayerTail {
    /// The header's version: what the records' file hashes mean.
    pub version: u32,
    pub meta: LayerMeta,
    pub entry_count: u64,
    pub tombstone_count: u64,
    /// Where the body lies in the layer.
    pub body: Range<u64>,
    /// The body's pieces (version 4; before, none: the body is one frame,
    /// verified with the rest by the checksum).
    pub pieces: Vec<Piece>,
}

/// A layer's records as a reader streams them.
pub type Stream<R> = Records<io::BufReader<Checked<R>>>;

/// Stored bytes buffered while a body is streamed.
const STORED_PIECE: usize = 64 << 10;

fn bad(detail: &str) -> FormatError {
    FormatError::corrupt("layer", detail)
}

/// The version a header names, if this build reads it.
pub(super) fn check_header(header: &[u8]) -> Result<u32> {
    if header.len() < HEADER_LEN || &header[..8] != LAYER_MAGIC {
        return Err(bad("bad magic"));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&header[8..12]);
    let version = u32::from_le_bytes(v);
    if !(LAYER_VERSION_MIN..=LAYER_VERSION).contains(&version) {
        return Err(FormatError::Unsupported {
            what: "layer",
            version,
            supported: LAYER_VERSION,
        });
    }
    Ok(version)
}

/// The footer's fixed part (the `FOOTER_FIXED - 32` bytes before the
/// checksum) of a layer whose bytes before the checksum number
/// `signed_len`: where the body and the metadata lie, and the counts.
pub(super) struct Footer {
    pub body: Range<u64>,
    pub meta: Range<u64>,
    pub entry_count: u64,
    pub tombstone_count: u64,
}

pub(super) fn parse_footer(fixed: &[u8], signed_len: u64) -> Result<Footer> {
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&fixed[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let mut m = [0u8; 4];
    m.copy_from_slice(&fixed[..4]);
    let meta_len = u64::from(u32::from_le_bytes(m));
    let body_len = word(4);
    let f = signed_len - (FOOTER_FIXED as u64 - 32);
    let body_end = body_len
        .checked_add(HEADER_LEN as u64)
        .filter(|end| end.checked_add(meta_len) == Some(f))
        .ok_or_else(|| bad("lengths do not add up"))?;
    Ok(Footer {
        body: HEADER_LEN as u64..body_end,
        meta: body_end..f,
        entry_count: word(12),
        tombstone_count: word(20),
    })
}

/// The metadata and (version 4) the index that follows it in META.
fn parse_meta_and_index(version: u32, bytes: &[u8]) -> Result<(LayerMeta, Vec<Piece>)> {
    if version < LAYER_VERSION_PIECES {
        return Ok((parse_meta(version, bytes)?, Vec::new()));
    }
    let (meta, rest) = postcard::take_from_bytes::<LayerMeta>(bytes)
        .map_err(|e| FormatError::corrupt("layer meta", e))?;
    let (index, rest) = postcard::take_from_bytes::<Vec<Piece>>(rest)
        .map_err(|e| FormatError::corrupt("layer index", e))?;
    if !rest.is_empty() {
        return Err(bad("bytes after the index"));
    }
    Ok((meta, index))
}

pub(super) fn parse_meta(version: u32, bytes: &[u8]) -> Result<LayerMeta> {
    match version {
        1 => postcard::from_bytes::<LayerMetaV1>(bytes).map(LayerMeta::from),
        // Version 1's fields, then `service`: version 4 without `exclusions`.
        2 | 3 => postcard::from_bytes::<(LayerMetaV1, ServiceMeta)>(bytes).map(|(v1, service)| {
            LayerMeta {
                service,
                ..LayerMeta::from(v1)
            }
        }),
        _ => postcard::from_bytes(bytes),
    }
    .map_err(|e| FormatError::corrupt("layer meta", e))
}

impl LayerTail {
    /// Verifies a layer of `len` bytes read through `read_at` (which fills
    /// its buffer from an offset): the header, the checksum over every byte
    /// before it (read once, front to back, a piece at a time), then the
    /// footer and metadata. Nothing is trusted before the checksum matches.
    pub fn verify(
        len: u64,
        mut read_at: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> Result<LayerTail> {
        if len < (HEADER_LEN + FOOTER_FIXED) as u64 {
            return Err(bad("too short"));
        }
        let signed_len = len - 32;
        let mut header = [0u8; HEADER_LEN];
        read_at(0, &mut header)?;
        let version = check_header(&header)?;
        let fixed_len = FOOTER_FIXED - 32;
        let mut fixed = [0u8; FOOTER_FIXED - 32];
        read_at(signed_len - fixed_len as u64, &mut fixed)?;
        let mut checksum = [0u8; 32];
        read_at(signed_len, &mut checksum)?;
        let mut hasher = blake3::Hasher::new();
        let (footer, meta) = if version >= LAYER_VERSION_PIECES {
            // The checksum covers the header and the footer: the index in
            // it hashes each piece of the body.
            let footer = parse_footer(&fixed, signed_len)?;
            let mut meta = vec![0u8; (footer.meta.end - footer.meta.start) as usize];
            read_at(footer.meta.start, &mut meta)?;
            hasher.update(&header);
            hasher.update(&meta);
            hasher.update(&fixed);
            (footer, meta)
        } else {
            let mut buf = vec![0u8; PIECE.min(signed_len as usize)];
            let mut at = 0u64;
            while at < signed_len {
                let n = (signed_len - at).min(buf.len() as u64) as usize;
                read_at(at, &mut buf[..n])?;
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            let footer = parse_footer(&fixed, signed_len)?;
            let mut meta = vec![0u8; (footer.meta.end - footer.meta.start) as usize];
            read_at(footer.meta.start, &mut meta)?;
            (footer, meta)
        };
        if hasher.finalize().as_bytes() != &checksum {
            return Err(bad("checksum mismatch"));
        }
        let (meta, pieces) = parse_meta_and_index(version, &meta)?;
        if version >= LAYER_VERSION_PIECES {
            pieces::check(
                &pieces,
                footer.body.end - footer.body.start,
                footer.entry_count,
            )?;
        }
        Ok(LayerTail {
            version,
            meta,
            entry_count: footer.entry_count,
            tombstone_count: footer.tombstone_count,
            body: footer.body,
            pieces,
        })
    }

    /// The piece to read from for the entries at and after `at` (0 before
    /// version 4: the body is one piece).
    pub fn piece_for(&self, at: &[u8]) -> usize {
        match self.pieces.is_empty() {
            true => 0,
            false => pieces::piece_for(&self.pieces, self.entry_count, at),
        }
    }

    /// The piece the tombstones start in, where the index says (version 4
    /// and tombstones); else the tombstones are found by reading the body.
    pub fn tombstone_piece(&self) -> Option<usize> {
        pieces::tombstone_piece(&self.pieces, self.entry_count, self.tombstone_count)
    }

    /// Where piece `piece` starts, from the start of the body.
    pub fn piece_offset(&self, piece: usize) -> u64 {
        self.pieces.get(piece).map_or(0, |p| p.offset)
    }

    /// Streams the records from the start of piece `piece`, read from `body`
    /// (which yields the body's bytes from [`LayerTail::piece_offset`] on),
    /// each piece checked against its hash as it passes.
    pub fn records_from<R: io::Read>(&self, piece: usize, body: R) -> Result<Stream<R>> {
        self.stream(piece, body, true)
    }

    /// Streams the records of a body whose pieces were all checked already.
    pub(super) fn records_checked<R: io::Read>(&self, body: R) -> Result<Stream<R>> {
        self.stream(0, body, false)
    }

    fn stream<R: io::Read>(&self, piece: usize, body: R, check: bool) -> Result<Stream<R>> {
        let (checked, entries_before, first) = match self.pieces.get(piece) {
            Some(p) => (
                match check {
                    true => Checked::new(body, &self.pieces[piece..]),
                    false => Checked::unchecked(body),
                },
                p.entries_before,
                (!p.first.is_empty()).then(|| p.first.clone()),
            ),
            None if piece == 0 && self.pieces.is_empty() => (Checked::unchecked(body), 0, None),
            None => return Err(bad("no such piece")),
        };
        Records::new(
            io::BufReader::with_capacity(STORED_PIECE, checked),
            self.version,
            (self.entry_count - entries_before, self.tombstone_count),
            first,
        )
    }

    /// Streams the records of the body read from `body` (which yields
    /// exactly the bytes of [`LayerTail::body`]).
    pub fn records<R: io::Read>(&self, body: R) -> Result<Stream<R>> {
        self.records_from(0, body)
    }
}
