//! The pack writer. Blobs arrive compressed; the packer thread appends them
//! to a new pack (invisible until published); a pack that reaches the target size (or
//! `MAX_PACK_ENTRIES` chunks) is finished and handed to the publisher
//! thread, which makes it durable, publishes it, and only then enters its
//! chunks in the index (publish → index: no chunk is ever indexed before its
//! pack is durable). The packer fills the next pack meanwhile, so its
//! senders never wait for an fsync. A backup writes new chunks through it;
//! a repack writes the chunks it keeps.

use crossbeam_channel::{Receiver, Sender};
use strata_format::pack::{Compression, PackEntry, PackWriter};
use strata_format::{ChunkId, PackId};

use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::repository::{new_pack_id, NewObject, Repository};

/// A new chunk, compressed, on its way into a pack.
pub struct NewBlob {
    pub id: ChunkId,
    pub stored: Vec<u8>,
    pub raw_len: u32,
    pub compression: Compression,
}

struct OpenPack {
    id: PackId,
    /// The temporary object's name, for messages.
    name: String,
    writer: PackWriter<NewObject>,
}

/// How a written pack's chunks enter the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// New chunks: a chunk already indexed keeps its place (a backup).
    New,
    /// Moved chunks: they now live in the new pack (a repack).
    Moved,
}

/// What the writer tells its user as packs fill and land.
pub trait Sink: Sync {
    /// `bytes` of stored blobs were appended to a pack (not yet durable).
    fn appended(&self, bytes: u64);
    /// A pack is durable, published and its chunks indexed: from now on
    /// `entries` are found through the index.
    fn indexed(&self, pack: PackId, entries: &[PackEntry]);
}

struct Packer<'a> {
    repo: &'a Repository,
    sink: &'a dyn Sink,
    target: u64,
    open: Option<OpenPack>,
    finished: Sender<FinishedPack>,
}

/// A pack whose bytes are all written (not yet durable).
struct FinishedPack {
    id: PackId,
    tmp: NewObject,
    entries: Vec<PackEntry>,
    size: u64,
}

/// Packs finished but not yet published; beyond this the packer waits.
const PUBLISH_QUEUE: usize = 2;

/// Starts the pack writer; send blobs to the returned sender, drop it when
/// done, and join the handle: `Ok` means every blob is durable and indexed.
pub fn spawn<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    repo: &'scope Repository,
    index: &'scope dyn ChunkIndex,
    placement: Placement,
    sink: &'scope dyn Sink,
) -> (
    Sender<NewBlob>,
    std::thread::ScopedJoinHandle<'scope, Result<()>>,
) {
    let (tx, rx) = crossbeam_channel::bounded(16);
    let handle = scope.spawn(move || {
        std::thread::scope(|inner| {
            let (finished, to_publish) = crossbeam_channel::bounded(PUBLISH_QUEUE);
            let publisher =
                inner.spawn(move || publish_all(repo, index, placement, sink, to_publish));
            let mut packer = Packer {
                repo,
                sink,
                target: repo.config().pack_target_size,
                open: None,
                finished,
            };
            let packed = packer.run(rx);
            drop(packer);
            let published = publisher
                .join()
                .unwrap_or_else(|_| Err(Error::Bug("the pack publisher panicked".into())));
            // The publisher's error is the cause when both failed.
            published.and(packed)
        })
    });
    (tx, handle)
}

/// Pack durable → index rows committed → chunks leave the pending set.
fn publish_all(
    repo: &Repository,
    index: &dyn ChunkIndex,
    placement: Placement,
    sink: &dyn Sink,
    packs: Receiver<FinishedPack>,
) -> Result<()> {
    for pack in packs {
        repo.publish_pack(pack.tmp)?;
        match placement {
            Placement::New => index.commit_pack(pack.id, pack.size, &pack.entries)?,
            Placement::Moved => index.move_chunks(pack.id, pack.size, &pack.entries)?,
        }
        sink.indexed(pack.id, &pack.entries);
    }
    Ok(())
}

/// A pack is also finished at this many chunks, whatever its size: what a
/// backup holds for the open pack (its entries, and the chunks pending until
/// it is indexed) then stays bounded however small the files are.
const MAX_PACK_ENTRIES: usize = 16_384;

impl Packer<'_> {
    fn run(&mut self, rx: Receiver<NewBlob>) -> Result<()> {
        for blob in rx {
            let pack = match self.open.as_mut() {
                Some(pack) => pack,
                None => self.open.insert(self.start()?),
            };
            pack.writer
                .add(blob.id, &blob.stored, blob.raw_len, blob.compression)
                .map_err(|e| Error::format(pack.name.as_str(), e))?;
            self.sink.appended(blob.stored.len() as u64);
            if pack.writer.len() >= self.target || pack.writer.entries().len() >= MAX_PACK_ENTRIES {
                self.finish()?;
            }
        }
        self.finish()
    }

    fn start(&self) -> Result<OpenPack> {
        let id = new_pack_id()?;
        let tmp = self.repo.new_pack(&id)?;
        let name = tmp.name().to_string();
        let writer = PackWriter::new(tmp).map_err(|e| Error::format(name.as_str(), e))?;
        Ok(OpenPack { id, name, writer })
    }

    /// Writes the trailer and hands the pack to the publisher.
    fn finish(&mut self) -> Result<()> {
        let Some(pack) = self.open.take() else {
            return Ok(());
        };
        if pack.writer.is_empty() {
            return Ok(());
        }
        let (tmp, entries, total) = pack
            .writer
            .finish()
            .map_err(|e| Error::format(pack.name.as_str(), e))?;
        self.finished
            .send(FinishedPack {
                id: pack.id,
                tmp,
                entries,
                size: total,
            })
            .map_err(|_| Error::Bug("the pack publisher stopped".into()))
    }
}
