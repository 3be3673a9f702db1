//! Objects on the export: written in pipelined, committed pieces; read by
//! range in pieces the server accepts.

use std::collections::VecDeque;
use std::io::Write;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use nfs_rs::Mount;
use tokio::task::JoinHandle;

use super::client::Client;
use crate::error::{Error, Result};
use crate::repository::objects::files::FileWriter;
use crate::repository::objects::ObjectReader;

/// Bytes sent as one WRITE batch and COMMIT. A writer holds up to one
/// piece filling and [`IN_FLIGHT`] sent; a backup has up to four packs
/// open or being published, so this sets most of its memory over NFS
/// (8 MiB: about 170 MiB peak RSS; 16 MiB: about 250 MiB, and only ~7%
/// faster on loopback).
const PIECE: usize = 8 << 20;
/// Pieces on the wire at once; the next waits for the oldest.
const IN_FLIGHT: usize = 2;

/// A file handle looked up once and forgotten when a call fails, so the
/// retry looks the path up again (on a new connection, if one was made).
#[derive(Clone, Default)]
struct Handle(Arc<Mutex<Option<Bytes>>>);

impl Handle {
    async fn get(&self, m: &Arc<dyn Mount>, key: &str) -> nfs_rs::Result<Bytes> {
        let cached = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match cached {
            Some(fh) => Ok(fh),
            None => {
                let fh = m.lookup_path(key).await?.fh;
                *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(fh.clone());
                Ok(fh)
            }
        }
    }

    fn forget(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs `f` with the handle; forgets it if `f` fails.
    async fn with<T, F, Fut>(&self, m: Arc<dyn Mount>, key: &str, f: F) -> nfs_rs::Result<T>
    where
        F: FnOnce(Arc<dyn Mount>, Bytes) -> Fut,
        Fut: std::future::Future<Output = nfs_rs::Result<T>>,
    {
        let fh = self.get(&m, key).await?;
        let out = f(m, fh).await;
        if out.is_err() {
            self.forget();
        }
        out
    }
}

pub struct NfsWriter {
    client: Arc<Client>,
    key: String,
    handle: Handle,
    buf: Vec<u8>,
    offset: u64,
    in_flight: VecDeque<JoinHandle<Result<()>>>,
}

impl NfsWriter {
    pub fn create(client: Arc<Client>, key: &str) -> Result<NfsWriter> {
        let mode = client.modes().file;
        let fh = client.block_call(key, |m, k| async move {
            let made = m.create_path(&k, Some(mode)).await?;
            m.setattr(
                made.fh.clone(),
                None,
                Some(mode),
                None,
                None,
                None,
                None,
                None,
            )
            .await?;
            // Writes go by handle with no open state to lose on a restart.
            m.close(made.fh.clone()).await?;
            Ok(made.fh)
        })?;
        Ok(NfsWriter {
            client,
            key: key.to_string(),
            handle: Handle(Arc::new(Mutex::new(Some(fh)))),
            buf: Vec::with_capacity(PIECE),
            offset: 0,
            in_flight: VecDeque::new(),
        })
    }

    /// Sends the buffered bytes as one piece, in the background.
    fn send(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        let at = self.offset;
        self.offset += data.len() as u64;
        let (client, key, handle) = (self.client.clone(), self.key.clone(), self.handle.clone());
        let task = self.client.runtime().spawn(async move {
            let wanted = data.len() as u64;
            let written = client
                .call(&key, |m, k| {
                    let (data, handle) = (data.clone(), handle.clone());
                    async move {
                        handle
                            .with(m, &k, |m, fh| async move {
                                nfs_rs::write_all(&*m, fh, at, data).await
                            })
                            .await
                    }
                })
                .await?;
            if written != wanted {
                return Err(Error::Bug(format!(
                    "{key}: wrote {written} of {wanted} bytes"
                )));
            }
            Ok(())
        });
        self.in_flight.push_back(task);
        while self.in_flight.len() > IN_FLIGHT {
            self.wait_oldest()?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<()> {
        let Some(task) = self.in_flight.pop_front() else {
            return Ok(());
        };
        match self.client.runtime().block_on(task) {
            Ok(done) => done,
            Err(e) => Err(Error::Bug(format!("NFS write task failed: {e}"))),
        }
    }
}

fn to_io_error(e: Error) -> std::io::Error {
    match e {
        Error::Io { source, .. } => source,
        Error::NoSpace { path } => std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("no space left on the export writing {}", path.display()),
        ),
        other => std::io::Error::other(other.to_string()),
    }
}

impl Write for NfsWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        if self.buf.len() == PIECE {
            self.send().map_err(to_io_error)?;
        }
        Ok(n)
    }

    /// Buffered bytes are sent by [`FileWriter::finish`], not here.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl FileWriter for NfsWriter {
    fn finish(mut self: Box<Self>) -> Result<()> {
        self.send()?;
        let mut first = Ok(());
        while !self.in_flight.is_empty() {
            let done = self.wait_oldest();
            if first.is_ok() {
                first = done;
            }
        }
        first
    }
}

impl Drop for NfsWriter {
    fn drop(&mut self) {
        // An abandoned object's pieces must not keep retrying.
        for task in &self.in_flight {
            task.abort();
        }
    }
}

pub struct NfsReader {
    client: Arc<Client>,
    key: String,
    handle: Handle,
    len: u64,
}

impl NfsReader {
    pub fn open(client: Arc<Client>, key: &str) -> Result<NfsReader> {
        let (fh, len) = client.block_call(key, |m, k| async move {
            let found = m.lookup_path(&k).await?;
            let len = match found.attr {
                Some(a) => a.filesize,
                None => m.getattr(found.fh.clone()).await?.filesize,
            };
            Ok((found.fh, len))
        })?;
        Ok(NfsReader {
            client,
            key: key.to_string(),
            handle: Handle(Arc::new(Mutex::new(Some(fh)))),
            len,
        })
    }

    /// The replies to READs of `ranges`, in order; an object that ends
    /// before the last range does is `UnexpectedEof`.
    fn replies(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let handle = &self.handle;
        let (pieces, whole) = self.client.block_call(&self.key, |m, k| {
            let ranges = ranges.to_vec();
            async move { handle.with(m, &k, |m, fh| read_ranges(m, fh, ranges)).await }
        })?;
        if !whole {
            let end = ranges.last().map_or(0, |r| r.end);
            return Err(crate::repository::objects::io_error(
                self.client.location(),
                &self.key,
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("object ends before byte {end}"),
                ),
            ));
        }
        Ok(pieces)
    }
}

impl ObjectReader for NfsReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset + buf.len() as u64;
        let pieces = self.replies(std::slice::from_ref(&(offset..end)))?;
        // The one copy of the bytes: from the server's replies into `buf`.
        let mut at = 0;
        for piece in pieces {
            let slot = buf
                .get_mut(at..at + piece.len())
                .ok_or_else(|| Error::Bug(format!("{}: replies longer than asked", self.key)))?;
            slot.copy_from_slice(&piece);
            at += piece.len();
        }
        Ok(())
    }

    fn piece_len(&self) -> Option<usize> {
        Some(self.client.max_read())
    }

    fn read_shared(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.replies(ranges)
    }
}

/// READs on the wire at once for one read.
const READS_IN_FLIGHT: usize = 8;

/// Reads `ranges` as the server's replies, in order: up to
/// [`READS_IN_FLIGHT`] READs at once, each no larger than the server
/// accepts (a longer range is cut). A short reply is continued; an empty
/// one is the end of the file, and the replies before it come back with
/// `false`.
async fn read_ranges(
    m: Arc<dyn Mount>,
    fh: Bytes,
    ranges: Vec<Range<u64>>,
) -> nfs_rs::Result<(Vec<Bytes>, bool)> {
    use futures::StreamExt;
    let size = u64::from(m.get_max_read_size()).max(4096);
    let reads = ranges.into_iter().flat_map(move |r| {
        (r.start..r.end)
            .step_by(size as usize)
            .map(move |at| at..(at + size).min(r.end))
    });
    let mut replies = futures::stream::iter(reads)
        .map(|read| {
            let (m, fh) = (m.clone(), fh.clone());
            async move {
                let mut got = Vec::new();
                let mut at = read.start;
                while at < read.end {
                    let want = (read.end - at) as u32;
                    let data = m.read(fh.clone(), at, want).await?;
                    if data.is_empty() {
                        break;
                    }
                    if data.len() > want as usize {
                        return Err(nfs_rs::NfsError::Rpc(
                            "the server returned more than was asked".into(),
                        ));
                    }
                    at += data.len() as u64;
                    got.push(data);
                }
                Ok((at == read.end, got))
            }
        })
        .buffered(READS_IN_FLIGHT);
    let mut out = Vec::new();
    while let Some(reply) = replies.next().await {
        let (whole, got) = reply?;
        out.extend(got);
        if !whole {
            return Ok((out, false));
        }
    }
    Ok((out, true))
}
