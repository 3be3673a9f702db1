//! A backup's tree opened for reading file contents in place (`dump`,
//! `mount`): its chain's layers, the chunk index brought up to date, and a
//! shared lease on the repository, renewed while the tree is open, so no
//! sweep or repack removes or moves a pack it reads. Every chunk is
//! verified against its id, as a restore verifies it.

use std::borrow::Borrow;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use strata_format::layer::{ChunkRef, Entry, EntryKind};
use strata_format::{BackupId, PackId};

use super::{Engine, Vault};
use crate::error::{Error, Result};
use crate::repository::leases::{self, Lease, STALE_AFTER};
use crate::repository::packs::read::{read_span, Buffers};
use crate::repository::{new_uuid, PackFile};
use crate::restore::plan_locate;
use crate::store::BackupRecord;
use crate::view::{load_chain, subtree, ChainLayer};

/// How often an open tree renews its lease: well inside [`STALE_AFTER`].
const RENEW_EVERY: Duration = Duration::from_secs(STALE_AFTER.as_secs() / 6);

/// An available backup's tree, open for reading, on an engine it borrows
/// (`&Engine`) or shares (`Arc<Engine>`, for a mount that outlives a call).
pub struct OpenTree<E: Borrow<Engine>> {
    engine: E,
    backup: BackupRecord,
    layers: Vec<ChainLayer>,
    _lease: Renewed,
    pool: Buffers,
    /// The pack the last chunk came from: the next one is often there too.
    last: Mutex<Option<PackFile>>,
    /// Stored bytes read from packs.
    read: AtomicU64,
}

impl Engine {
    /// Opens `backup`'s tree for reading (it must be available).
    pub fn open_tree(&self, backup: &BackupRecord) -> Result<OpenTree<&Engine>> {
        OpenTree::open(self, backup)
    }
}

impl<E: Borrow<Engine>> OpenTree<E> {
    /// Opens `backup`'s tree on `engine` (it must be available).
    pub fn open(engine: E, backup: &BackupRecord) -> Result<Self> {
        let e = engine.borrow();
        e.readable(backup)?;
        let vault = e.vault_of(backup)?;
        let op = format!("read-{}", BackupId(new_uuid()?));
        let lease = leases::shared(&vault.repo, &op, super::operations::SHARED_LOCK_WAIT)?;
        vault.sync_index()?;
        let layers = load_chain(&vault.repo, &backup.id)?;
        Ok(OpenTree {
            engine,
            backup: backup.clone(),
            layers,
            _lease: Renewed::start(lease)?,
            pool: Buffers::new(),
            last: Mutex::new(None),
            read: AtomicU64::new(0),
        })
    }

    fn vault(&self) -> Result<&Vault> {
        self.engine.borrow().vault_of(&self.backup)
    }

    pub fn backup(&self) -> &BackupRecord {
        &self.backup
    }

    /// The entries at and below `at` (`None`: all of them), in path order,
    /// each layer read from the piece that holds `at`.
    pub fn subtree<'a>(
        &'a self,
        at: Option<&'a [u8]>,
    ) -> Result<impl Iterator<Item = Result<Entry>> + 'a> {
        subtree(&self.layers, at)
    }

    /// The entry at `at`; `NotFound` when the tree has none.
    pub fn entry(&self, at: &[u8]) -> Result<Entry> {
        match self.subtree(Some(at))?.next().transpose()? {
            Some(e) if e.path == at => Ok(e),
            _ => Err(Error::NotFound {
                kind: "path",
                name: format!(
                    "{} in backup {}",
                    String::from_utf8_lossy(at),
                    self.backup.id
                ),
            }),
        }
    }

    /// Stored bytes read from packs so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(AtomicOrdering::Relaxed)
    }

    /// The bytes of chunk `c` of the file at `path`, verified.
    pub fn chunk(&self, c: &ChunkRef, path: &[u8]) -> Result<Vec<u8>> {
        let vault = self.vault()?;
        let loc = plan_locate(&*vault.index, c.id, c.len, path)?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let pack = match last.take() {
            Some(pack) if pack.id == loc.pack => pack,
            _ => vault.repo.open_pack(&loc.pack)?,
        };
        let bytes = self.expand(&pack, loc.pack, &loc.entry);
        *last = Some(pack);
        bytes
    }

    fn expand(
        &self,
        pack: &PackFile,
        id: PackId,
        entry: &strata_format::pack::PackEntry,
    ) -> Result<Vec<u8>> {
        let span = read_span(pack, &[entry], &self.pool)?;
        self.read
            .fetch_add(u64::from(entry.stored_len), AtomicOrdering::Relaxed);
        let mut scratch = Vec::new();
        let blob = span.open(id, entry, &mut scratch)?;
        let mut out = vec![0; blob.len()];
        blob.copy_to(&mut out)?;
        Ok(out)
    }

    /// The file entry that holds `e`'s content: `e` itself, or the file a
    /// hardlink names.
    pub fn content_of(&self, e: &Entry) -> Result<Entry> {
        match &e.kind {
            EntryKind::Hardlink { target } => self.entry(target),
            _ => Ok(e.clone()),
        }
    }

    /// Writes the content of file entry `e` to `out`, chunk by chunk, each
    /// verified. Returns the bytes written.
    pub fn write_file(&self, e: &Entry, out: &mut dyn Write) -> Result<u64> {
        let EntryKind::File { chunks, size, .. } = &e.kind else {
            return Err(Error::InvalidArgument(format!(
                "{} is not a regular file",
                String::from_utf8_lossy(&e.path)
            )));
        };
        for c in chunks {
            let bytes = self.chunk(c, &e.path)?;
            out.write_all(&bytes)
                .map_err(|err| Error::io("output", err))?;
        }
        Ok(*size)
    }
}

/// A lease renewed by a thread of its own until dropped (then released).
struct Renewed {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Renewed {
    fn start(lease: Lease) -> Result<Renewed> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("strata-lease".into())
            .spawn(move || {
                // A failed renewal is tried again at the next; nothing is
                // ever sent, so the wait ends at a timeout or a drop.
                while stopped.recv_timeout(RENEW_EVERY)
                    == Err(crossbeam_channel::RecvTimeoutError::Timeout)
                {
                    let _ = lease.renew();
                }
            })
            .map_err(|e| Error::io("lease renewal thread", e))?;
        Ok(Renewed {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Renewed {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
