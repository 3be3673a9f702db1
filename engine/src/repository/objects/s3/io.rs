//! Writing and reading one object of an [`S3Store`](super::S3Store): a
//! writer that turns into a multipart upload as it grows, and a reader
//! of byte ranges.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{MultipartUpload, ObjectStore as _, ObjectStoreExt as _, PutMultipartOptions};

use super::{Inner, PART, PARTS_IN_FLIGHT};
use crate::error::{Error, Result};
use crate::repository::objects::{Cond, Etag, Key, ObjectReader, ObjectWriter};

/// A put under way: bytes gather in `buf`; past [`PART`] they go out as
/// parts of a multipart upload, while the caller goes on writing.
pub(crate) struct S3Writer {
    inner: Arc<Inner>,
    key: Key,
    cond: Cond,
    buf: Vec<u8>,
    upload: Option<Upload>,
}

struct Upload {
    parts: Box<dyn MultipartUpload>,
    sending: VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
}

impl S3Writer {
    pub(crate) fn new(inner: Arc<Inner>, key: Key, cond: Cond) -> S3Writer {
        S3Writer {
            inner,
            key,
            cond,
            buf: Vec::new(),
            upload: None,
        }
    }

    fn io_err(&self, e: Error) -> io::Error {
        io::Error::other(e.to_string())
    }

    /// Sends `buf` as the next part, starting the upload if it is the
    /// first, and waits while [`PARTS_IN_FLIGHT`] are being sent.
    fn send_part(&mut self) -> Result<()> {
        let inner = Arc::clone(&self.inner);
        let path = inner.path(self.key.as_str());
        if self.upload.is_none() {
            let parts = inner
                .rt
                .block_on(
                    inner
                        .client
                        .put_multipart_opts(&path, PutMultipartOptions::default()),
                )
                .map_err(|e| inner.error(self.key.as_str(), e))?;
            self.upload = Some(Upload {
                parts,
                sending: VecDeque::new(),
            });
        }
        let Some(upload) = self.upload.as_mut() else {
            return Err(Error::Bug("a multipart upload was not started".into()));
        };
        let body = Bytes::from(std::mem::take(&mut self.buf));
        let part = upload.parts.put_part(body.into());
        upload.sending.push_back(inner.rt.spawn(part));
        while upload.sending.len() >= PARTS_IN_FLIGHT {
            wait_part(&inner, &self.key, upload.sending.pop_front())?;
        }
        Ok(())
    }

    /// Sends the last part, waits for every part, checks the put's
    /// condition, then completes the upload.
    fn finish_upload(&mut self) -> Result<Etag> {
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let inner = Arc::clone(&self.inner);
        let Some(mut upload) = self.upload.take() else {
            return Err(Error::Bug("a multipart upload was not started".into()));
        };
        let waited = (|| {
            while let Some(part) = upload.sending.pop_front() {
                wait_part(&inner, &self.key, Some(part))?;
            }
            // The client cannot put a condition on the completion: the
            // object is looked up just before it (see the module's notes).
            let found = inner.head(&self.key)?;
            let holds = match (&self.cond, found) {
                (Cond::Any, _) | (Cond::IfAbsent, None) => true,
                (Cond::IfMatch(want), Some(meta)) => &meta.etag == want,
                _ => false,
            };
            match holds {
                true => Ok(()),
                false => Err(Error::Precondition {
                    location: inner.location.clone(),
                    key: self.key.to_string(),
                }),
            }
        })();
        if let Err(e) = waited {
            let _ = inner.rt.block_on(upload.parts.abort());
            return Err(e);
        }
        let done = inner.rt.block_on(upload.parts.complete());
        match done {
            Ok(put) => match put.e_tag {
                Some(e_tag) => Ok(Etag(e_tag)),
                None => inner
                    .head(&self.key)?
                    .map(|meta| meta.etag)
                    .ok_or_else(|| inner.error(self.key.as_str(), not_found(&self.key))),
            },
            Err(e) => {
                let _ = inner.rt.block_on(upload.parts.abort());
                Err(inner.error(self.key.as_str(), e))
            }
        }
    }
}

fn not_found(key: &Key) -> object_store::Error {
    object_store::Error::NotFound {
        path: key.to_string(),
        source: "the completed upload is not there".into(),
    }
}

fn wait_part(
    inner: &Inner,
    key: &Key,
    part: Option<tokio::task::JoinHandle<object_store::Result<()>>>,
) -> Result<()> {
    let Some(part) = part else {
        return Ok(());
    };
    match inner.rt.block_on(part) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(inner.error(key.as_str(), e)),
        Err(e) => Err(Error::Bug(format!("a part upload of {key} failed: {e}"))),
    }
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PART - self.buf.len();
        let take = data.len().min(room);
        if self.buf.capacity() == 0 {
            self.buf.reserve(take.max(64 << 10));
        }
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() == PART {
            self.send_part().map_err(|e| self.io_err(e))?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<Etag> {
        if self.upload.is_some() {
            return self.finish_upload();
        }
        let body = Bytes::from(std::mem::take(&mut self.buf));
        let inner = Arc::clone(&self.inner);
        inner
            .rt
            .block_on(inner.put_async(&self.key, body, self.cond.clone()))
    }
}

impl Drop for S3Writer {
    /// An upload never completed is aborted, so its parts go.
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            for part in upload.sending.drain(..) {
                part.abort();
            }
            let _ = self.inner.rt.block_on(upload.parts.abort());
        }
    }
}

/// An object open for ranged reads.
pub(crate) struct S3Reader {
    inner: Arc<Inner>,
    key: Key,
    len: u64,
    piece: usize,
}

impl S3Reader {
    pub(crate) fn new(inner: Arc<Inner>, key: Key, len: u64, piece: usize) -> S3Reader {
        S3Reader {
            inner,
            key,
            len,
            piece,
        }
    }

    fn past_end(&self, end: u64) -> Result<()> {
        if end > self.len {
            return Err(crate::repository::objects::io_error(
                &self.inner.location,
                self.key.as_str(),
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("a read to {end} of an object of {} bytes", self.len),
                ),
            ));
        }
        Ok(())
    }

    /// Checks that a ranged read returned what it asked for: an object
    /// replaced by a shorter one under the reader is a short read.
    fn exact(&self, range: &Range<u64>, got: Bytes) -> Result<Bytes> {
        if got.len() as u64 != range.end - range.start {
            return Err(crate::repository::objects::io_error(
                &self.inner.location,
                self.key.as_str(),
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("asked for {range:?}, got {} bytes", got.len()),
                ),
            ));
        }
        Ok(got)
    }
}

impl ObjectReader for S3Reader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let range = offset..offset + buf.len() as u64;
        self.past_end(range.end)?;
        if buf.is_empty() {
            return Ok(());
        }
        let path = self.inner.path(self.key.as_str());
        let got = self
            .inner
            .rt
            .block_on(self.inner.client.get_range(&path, range.clone()))
            .map_err(|e| self.inner.error(self.key.as_str(), e))?;
        buf.copy_from_slice(&self.exact(&range, got)?);
        Ok(())
    }

    fn piece_len(&self) -> Option<usize> {
        Some(self.piece)
    }

    /// Every range is its own ranged GET, all of them sent at once.
    fn read_shared(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        if let Some(end) = ranges.iter().map(|r| r.end).max() {
            self.past_end(end)?;
        }
        let path = self.inner.path(self.key.as_str());
        let client = &self.inner.client;
        let gets = ranges.iter().map(|r| async {
            match r.is_empty() {
                true => Ok(Bytes::new()),
                false => client.get_range(&path, r.clone()).await,
            }
        });
        let got = self
            .inner
            .rt
            .block_on(futures::future::try_join_all(gets))
            .map_err(|e| self.inner.error(self.key.as_str(), e))?;
        ranges
            .iter()
            .zip(got)
            .map(|(r, bytes)| self.exact(r, bytes))
            .collect()
    }
}
