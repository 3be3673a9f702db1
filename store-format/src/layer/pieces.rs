//! A version-4 layer's body in pieces: each piece is one zstd frame, named
//! in the layer's index with its place, its BLAKE3 hash, how many entries
//! come before it and the path of its first record. A reader seeks to the
//! piece that holds a path and reads from there, each piece checked against
//! its hash as it passes; the index itself is covered by the layer's
//! checksum (FORMAT.md section 5).

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use crate::error::{FormatError, Result};
use crate::path;

/// One piece of a layer body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// Where it starts, from the start of the body.
    pub offset: u64,
    /// Its stored (compressed) length.
    pub len: u64,
    /// BLAKE3-256 of its stored bytes.
    pub hash: [u8; 32],
    /// Entries of the layer before its first record.
    pub entries_before: u64,
    /// The path of its first record (an entry's, or in the tombstone
    /// pieces a tombstone's; empty in the piece of an empty layer).
    #[serde(with = "serde_bytes")]
    pub first: Vec<u8>,
}

fn bad(detail: impl std::fmt::Display) -> FormatError {
    FormatError::corrupt("layer index", detail)
}

/// Checks an index against the body's length and the footer's counts: the
/// pieces tile the body in order, at least one; the entry pieces' first
/// paths are valid and increasing; the count before each never falls.
pub(super) fn check(pieces: &[Piece], body_len: u64, entry_count: u64) -> Result<()> {
    if pieces.is_empty() {
        return Err(bad("no pieces"));
    }
    let mut at = 0u64;
    for (i, p) in pieces.iter().enumerate() {
        if p.offset != at || p.len == 0 {
            return Err(bad(format!("piece {i} does not follow the one before")));
        }
        at = at
            .checked_add(p.len)
            .ok_or_else(|| bad("piece lengths overflow"))?;
        if p.entries_before > entry_count {
            return Err(bad(format!("piece {i} counts more entries than the layer")));
        }
        if !p.first.is_empty() {
            path::validate(&p.first)?;
        }
        if let Some(prev) = i.checked_sub(1).and_then(|j| pieces.get(j)) {
            if p.entries_before < prev.entries_before
                || (p.entries_before < entry_count
                    && path::cmp(&prev.first, &p.first) != std::cmp::Ordering::Less)
            {
                return Err(bad(format!("piece {i} is out of order")));
            }
        }
    }
    if at != body_len {
        return Err(bad("the pieces do not cover the body"));
    }
    Ok(())
}

/// The entry piece to start from for paths at or after `at`: the last whose
/// first path is not after it (the first, when none is).
pub(super) fn piece_for(pieces: &[Piece], entry_count: u64, at: &[u8]) -> usize {
    let entries = pieces
        .iter()
        .take_while(|p| p.entries_before < entry_count)
        .count();
    pieces[..entries]
        .partition_point(|p| path::cmp(&p.first, at) != std::cmp::Ordering::Greater)
        .saturating_sub(1)
}

/// The first piece of the tombstones, when the layer has tombstones.
pub(super) fn tombstone_piece(
    pieces: &[Piece],
    entry_count: u64,
    tombstones: u64,
) -> Option<usize> {
    if tombstones == 0 {
        return None;
    }
    pieces
        .iter()
        .position(|p| p.entries_before == entry_count && !p.first.is_empty())
}

/// The stored bytes of a body read from the start of one piece on, each
/// piece checked against its hash as its last byte passes: a damaged piece
/// is an error before a byte after it is read. With no pieces (a layer
/// before version 4, verified whole), the bytes pass unchecked.
pub struct Checked<R> {
    inner: R,
    /// Length and hash of the pieces still to come, the current first.
    pieces: std::vec::IntoIter<(u64, [u8; 32])>,
    current: Option<(u64, [u8; 32])>,
    hasher: blake3::Hasher,
}

impl<R: Read> Checked<R> {
    pub(super) fn new(inner: R, pieces: &[Piece]) -> Self {
        let mut pieces: std::vec::IntoIter<(u64, [u8; 32])> = pieces
            .iter()
            .map(|p| (p.len, p.hash))
            .collect::<Vec<_>>()
            .into_iter();
        let current = pieces.next();
        Checked {
            inner,
            pieces,
            current,
            hasher: blake3::Hasher::new(),
        }
    }

    /// No check: the whole body was verified some other way.
    pub(super) fn unchecked(inner: R) -> Self {
        Checked {
            inner,
            pieces: Vec::new().into_iter(),
            current: None,
            hasher: blake3::Hasher::new(),
        }
    }
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some((left, hash)) = &mut self.current else {
            return self.inner.read(buf);
        };
        let want = (*left).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "layer piece cut short",
            ));
        }
        self.hasher.update(&buf[..n]);
        *left -= n as u64;
        if *left == 0 {
            if self.hasher.finalize().as_bytes() != hash {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a layer piece does not match its hash",
                ));
            }
            self.hasher.reset();
            self.current = self.pieces.next();
        }
        Ok(n)
    }
}
