//! A layer read by range from the repository: its footer and index verified
//! once, then streamed from any piece, each piece verified as it is read
//! (what a chain's merged view holds per layer).

use std::io::Read;

use strata_format::layer::{LayerMeta, LayerTail, Stream};

use crate::error::{Error, Result};
use crate::repository::objects::ObjectReader;

/// One verified layer of a chain, open for streaming from the repository:
/// what is held is its metadata and a reader, not its bytes.
pub struct ChainLayer {
    /// Where it is, for error messages.
    pub location: String,
    pub tail: LayerTail,
    object: Box<dyn ObjectReader>,
}

impl ChainLayer {
    /// Verifies (checksum, footer) the layer `object`.
    pub fn open(location: String, object: Box<dyn ObjectReader>) -> Result<ChainLayer> {
        let tail = LayerTail::verify(object.len(), |at, buf| {
            object.read_at(at, buf).map_err(std::io::Error::other)
        })
        .map_err(|e| Error::format(location.as_str(), e))?;
        Ok(ChainLayer {
            location,
            tail,
            object,
        })
    }

    pub fn meta(&self) -> &LayerMeta {
        &self.tail.meta
    }

    /// Streams its records, read from the repository a piece at a time.
    pub fn records(&self) -> Result<Stream<BodyReader<'_>>> {
        self.records_from(0)
    }

    /// Streams its records from the start of piece `piece` (see
    /// [`LayerTail::piece_for`]), each piece verified as it is read.
    pub fn records_from(&self, piece: usize) -> Result<Stream<BodyReader<'_>>> {
        let body = BodyReader {
            object: &*self.object,
            at: self.tail.body.start + self.tail.piece_offset(piece),
            end: self.tail.body.end,
        };
        self.tail
            .records_from(piece, body)
            .map_err(|e| Error::format(self.location.as_str(), e))
    }
}

/// The body of a layer object, as a byte stream.
pub struct BodyReader<'a> {
    object: &'a dyn ObjectReader,
    at: u64,
    end: u64,
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.end - self.at).min(buf.len() as u64) as usize;
        if n > 0 {
            self.object
                .read_at(self.at, &mut buf[..n])
                .map_err(std::io::Error::other)?;
            self.at += n as u64;
        }
        Ok(n)
    }
}
