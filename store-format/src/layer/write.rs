//! Writing a layer: records into zstd frames of about [`PIECE_RAW`]
//! decompressed bytes each (a new one also where the tombstones start),
//! each frame a piece of the index; then META, the index and the footer,
//! and the checksum over everything but the body (whose pieces the index
//! hashes).

use std::io::{self, Write};

use zstd::stream::raw::{self, CParameter, InBuffer, Operation, OutBuffer};

use super::pieces::Piece;
use super::{
    check_entry, check_order, invalid_from_corrupt, Entry, LayerMeta, Record, Tombstone,
    HEADER_LEN, LAYER_MAGIC, LAYER_VERSION,
};
use crate::error::{FormatError, Result};
use crate::path;

/// Decompressed record bytes a piece holds before the next one starts:
/// about a thousand entries, so a seek reads little past what it wants.
pub const PIECE_RAW: usize = 128 << 10;

/// The zstd window a layer body is written with: 128 KiB (FORMAT.md section 5).
const WINDOW_LOG: u32 = 17;

/// Counts the bytes that pass through, and hashes those of the current piece.
struct Counting<W> {
    inner: W,
    written: u64,
    piece: blake3::Hasher,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.piece.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The body being written: one zstd context for every frame (a context
/// made per frame costs the allocator a fresh one each time), and the frame
/// open, if any, with the decompressed bytes it holds.
struct Frames<W> {
    out: Counting<W>,
    encoder: raw::Encoder<'static>,
    buf: Vec<u8>,
    open: Option<usize>,
}

impl<W: Write> Frames<W> {
    /// Compresses `data` into the open frame.
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let mut input = InBuffer::around(data);
        while input.pos() < data.len() {
            let mut output = OutBuffer::around(&mut self.buf[..]);
            self.encoder.run(&mut input, &mut output)?;
            let n = output.pos();
            self.out.write_all(&self.buf[..n])?;
        }
        if let Some(raw) = &mut self.open {
            *raw += data.len();
        }
        Ok(())
    }

    /// Ends the open frame; the context is ready for the next.
    fn end(&mut self) -> io::Result<()> {
        loop {
            let mut output = OutBuffer::around(&mut self.buf[..]);
            let left = self.encoder.finish(&mut output, true)?;
            let n = output.pos();
            self.out.write_all(&self.buf[..n])?;
            if left == 0 {
                break;
            }
        }
        self.open = None;
        self.encoder.reinit()
    }
}

/// Streams a layer to any `Write`: entries in order, then tombstones, then
/// `finish` with the metadata. Ordering and paths are checked as they come, so
/// a writer bug cannot produce a layer the reader would reject.
pub struct LayerWriter<W: Write> {
    body: Frames<W>,
    pieces: Vec<Piece>,
    piece_raw: usize,
    last_entry: Option<Vec<u8>>,
    last_tombstone: Option<Vec<u8>>,
    entries: u64,
    tombstones: u64,
    scratch: Vec<u8>,
}

impl<W: Write> LayerWriter<W> {
    pub fn new(out: W) -> Result<Self> {
        Self::with_pieces_of(out, PIECE_RAW)
    }

    /// A writer that starts a piece every `piece_raw` decompressed bytes
    /// (tests make many small pieces).
    pub fn with_pieces_of(mut out: W, piece_raw: usize) -> Result<Self> {
        out.write_all(LAYER_MAGIC)?;
        out.write_all(&LAYER_VERSION.to_le_bytes())?;
        let mut encoder = raw::Encoder::new(3)?;
        // A reader holds one window per layer of a chain while it merges them.
        encoder.set_parameter(CParameter::WindowLog(WINDOW_LOG))?;
        Ok(LayerWriter {
            body: Frames {
                out: Counting {
                    inner: out,
                    written: 0,
                    piece: blake3::Hasher::new(),
                },
                encoder,
                buf: vec![0; 64 << 10],
                open: None,
            },
            pieces: Vec::new(),
            piece_raw: piece_raw.max(1),
            last_entry: None,
            last_tombstone: None,
            entries: 0,
            tombstones: 0,
            scratch: Vec::new(),
        })
    }

    /// Ends the open frame, if any, as a piece of the index.
    fn end_frame(&mut self) -> Result<()> {
        if self.body.open.is_none() {
            return Ok(());
        }
        self.body.end()?;
        let out = &mut self.body.out;
        if let Some(piece) = self.pieces.last_mut() {
            piece.len = out.written - piece.offset;
            piece.hash = *out.piece.finalize().as_bytes();
        }
        out.piece.reset();
        Ok(())
    }

    /// Starts a frame whose first record is at `first`.
    fn start_frame(&mut self, first: &[u8]) {
        self.pieces.push(Piece {
            offset: self.body.out.written,
            len: 0,
            hash: [0; 32],
            entries_before: self.entries,
            first: first.to_vec(),
        });
        self.body.open = Some(0);
    }

    /// Writes `record`, whose path is `at`, starting a new piece when the
    /// current one is full or `fresh` asks for one.
    fn write_record(&mut self, record: &Record, at: &[u8], fresh: bool) -> Result<()> {
        let full = self
            .body
            .open
            .is_none_or(|raw| fresh || raw >= self.piece_raw);
        if full {
            self.end_frame()?;
            self.start_frame(at);
        }
        self.scratch.clear();
        let encoded = postcard::to_extend(record, std::mem::take(&mut self.scratch))
            .map_err(|e| FormatError::corrupt("layer record", e))?;
        self.body.write(&(encoded.len() as u32).to_le_bytes())?;
        self.body.write(&encoded)?;
        self.scratch = encoded;
        Ok(())
    }

    /// Appends an entry; its path must sort after the previous entry's.
    pub fn add_entry(&mut self, entry: &Entry) -> Result<()> {
        if self.tombstones > 0 {
            return Err(FormatError::Invalid {
                what: "layer",
                detail: "entry after tombstones".into(),
            });
        }
        check_entry(entry, LAYER_VERSION).map_err(invalid_from_corrupt)?;
        check_order(self.last_entry.as_deref(), &entry.path, "entries")
            .map_err(invalid_from_corrupt)?;
        self.write_record(&Record::Entry(entry.clone()), &entry.path, false)?;
        self.last_entry = Some(entry.path.clone());
        self.entries += 1;
        Ok(())
    }

    /// Appends a tombstone; tombstones come after every entry, in path order.
    pub fn add_tombstone(&mut self, tombstone: &Tombstone) -> Result<()> {
        path::validate(&tombstone.path)?;
        check_order(
            self.last_tombstone.as_deref(),
            &tombstone.path,
            "tombstones",
        )
        .map_err(invalid_from_corrupt)?;
        // The tombstones start a piece of their own: a reader finds them
        // without reading the entries.
        let first = self.tombstones == 0;
        self.write_record(
            &Record::Tombstone(tombstone.clone()),
            &tombstone.path,
            first,
        )?;
        self.last_tombstone = Some(tombstone.path.clone());
        self.tombstones += 1;
        Ok(())
    }

    /// Writes the footer; returns the underlying writer and the layer's length.
    pub fn finish(mut self, meta: &LayerMeta) -> Result<(W, u64)> {
        if self.pieces.is_empty() {
            // An empty layer still has one (empty) frame.
            self.start_frame(&[]);
        }
        self.end_frame()?;
        let out = self.body.out;
        let body_len = out.written;
        // META is the metadata, then the index.
        let mut tail =
            postcard::to_stdvec(meta).map_err(|e| FormatError::corrupt("layer meta", e))?;
        tail = postcard::to_extend(&self.pieces, tail)
            .map_err(|e| FormatError::corrupt("layer index", e))?;
        let meta_len = u32::try_from(tail.len()).map_err(|_| FormatError::Invalid {
            what: "layer",
            detail: format!("metadata and index of {} bytes", tail.len()),
        })?;
        tail.extend_from_slice(&meta_len.to_le_bytes());
        tail.extend_from_slice(&body_len.to_le_bytes());
        tail.extend_from_slice(&self.entries.to_le_bytes());
        tail.extend_from_slice(&self.tombstones.to_le_bytes());
        let mut signed = blake3::Hasher::new();
        signed.update(LAYER_MAGIC);
        signed.update(&LAYER_VERSION.to_le_bytes());
        signed.update(&tail);
        let mut inner = out.inner;
        inner.write_all(&tail)?;
        inner.write_all(signed.finalize().as_bytes())?;
        inner.flush()?;
        Ok((inner, HEADER_LEN as u64 + body_len + tail.len() as u64 + 32))
    }
}
