//! A layer verified and read by byte ranges, without holding it in memory:
//! [`LayerTail::verify`] hashes it front to back and parses its footer;
//! [`LayerTail::records`] then streams its body from any reader.

use std::io;
use std::ops::Range;

use super::{
    LayerMeta, LayerMetaV1, ServiceMeta, FOOTER_FIXED, HEADER_LEN, LAYER_MAGIC, LAYER_VERSION,
};
use super::{Records, LAYER_VERSION_MIN};
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
    /// Where the body (one zstd frame) lies in the layer.
    pub body: Range<u64>,
}

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
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; PIECE.min(signed_len as usize)];
        let mut at = 0u64;
        while at < signed_len {
            let n = (signed_len - at).min(buf.len() as u64) as usize;
            read_at(at, &mut buf[..n])?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        let mut checksum = [0u8; 32];
        read_at(signed_len, &mut checksum)?;
        if hasher.finalize().as_bytes() != &checksum {
            return Err(bad("checksum mismatch"));
        }
        let fixed_len = FOOTER_FIXED - 32;
        let mut fixed = [0u8; FOOTER_FIXED - 32];
        read_at(signed_len - fixed_len as u64, &mut fixed)?;
        let footer = parse_footer(&fixed, signed_len)?;
        let mut meta = vec![0u8; (footer.meta.end - footer.meta.start) as usize];
        read_at(footer.meta.start, &mut meta)?;
        Ok(LayerTail {
            version,
            meta: parse_meta(version, &meta)?,
            entry_count: footer.entry_count,
            tombstone_count: footer.tombstone_count,
            body: footer.body,
        })
    }

    /// Streams the records of the body read from `body` (which yields
    /// exactly the bytes of [`LayerTail::body`]).
    pub fn records<R: io::BufRead>(&self, body: R) -> Result<Records<R>> {
        Records::new(body, self.version, self.entry_count, self.tombstone_count)
    }
}
