//! Stage: the pack writer thread. Blobs arrive compressed; they are appended
//! to a pack under `tmp/`; a pack that reaches the target size is finished,
//! made durable, published, and only then are its chunks entered in the index.

use std::fs::File;
use std::io::BufWriter;

use crossbeam_channel::{Receiver, Sender};
use strata_format::pack::{Compression, PackWriter};
use strata_format::{ChunkId, PackId};

use super::dedup::Dedup;
use super::report::Counters;
use crate::catalog::Catalog;
use crate::error::{Error, IoContext, Result};
use crate::repository::{new_pack_id, Repository, TempObject};

/// A new chunk, compressed, on its way into a pack.
pub struct Blob {
    pub id: ChunkId,
    pub stored: Vec<u8>,
    pub raw_len: u32,
    pub compression: Compression,
}

struct OpenPack {
    id: PackId,
    tmp: TempObject,
    writer: PackWriter<BufWriter<File>>,
}

struct Packer<'a> {
    repo: &'a Repository,
    catalog: Catalog,
    dedup: &'a Dedup,
    counters: &'a Counters,
    target: u64,
    open: Option<OpenPack>,
}

/// Starts the pack writer; send blobs to the returned sender, drop it when
/// done, and join the handle: `Ok` means every blob is durable and indexed.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    repo: &'scope Repository,
    catalog: Catalog,
    dedup: &'scope Dedup,
    counters: &'scope Counters,
) -> (
    Sender<Blob>,
    std::thread::ScopedJoinHandle<'scope, Result<()>>,
) {
    let (tx, rx) = crossbeam_channel::bounded(16);
    let mut packer = Packer {
        repo,
        catalog,
        dedup,
        counters,
        target: repo.config().pack_target_size,
        open: None,
    };
    let handle = scope.spawn(move || packer.run(rx));
    (tx, handle)
}

impl Packer<'_> {
    fn run(&mut self, rx: Receiver<Blob>) -> Result<()> {
        for blob in rx {
            let pack = match self.open.as_mut() {
                Some(pack) => pack,
                None => self.open.insert(self.start()?),
            };
            pack.writer
                .add(blob.id, &blob.stored, blob.raw_len, blob.compression)
                .map_err(|e| Error::format(pack.tmp.path().display().to_string(), e))
                .map_err(|e| with_path(e, pack.tmp.path()))?;
            Counters::add(&self.counters.stored_bytes, blob.stored.len() as u64);
            if pack.writer.len() >= self.target {
                self.finish()?;
            }
        }
        self.finish()
    }

    fn start(&self) -> Result<OpenPack> {
        let mut tmp = self.repo.temp_object("pack")?;
        let path = tmp.path().to_path_buf();
        let file = tmp.file()?.try_clone().at(&path)?;
        let writer = PackWriter::new(BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| with_path(Error::format(path.display().to_string(), e), &path))?;
        Ok(OpenPack {
            id: new_pack_id()?,
            tmp,
            writer,
        })
    }

    /// Pack durable → index rows committed → chunks leave the pending set.
    fn finish(&mut self) -> Result<()> {
        let Some(pack) = self.open.take() else {
            return Ok(());
        };
        if pack.writer.is_empty() {
            return Ok(());
        }
        let path = pack.tmp.path().to_path_buf();
        let (out, entries, total) = pack
            .writer
            .finish()
            .map_err(|e| with_path(Error::format(path.display().to_string(), e), &path))?;
        out.into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        self.repo.publish_pack(pack.tmp, &pack.id)?;
        self.catalog.commit_pack(pack.id, total, &entries)?;
        self.dedup.release(entries.iter().map(|e| e.id));
        Counters::add(&self.counters.packs, 1);
        Ok(())
    }
}

/// Format-level I/O errors carry no path; give them the pack's.
fn with_path(e: Error, path: &std::path::Path) -> Error {
    match e {
        Error::Io { source, .. } => Error::io(path, source),
        other => other,
    }
}
