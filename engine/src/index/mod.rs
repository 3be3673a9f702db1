//! The chunk index as the pipelines see it: which pack holds each chunk,
//! which packs exist, which backup references which chunk.
//!
//! Backup, restore, check, rebuild and import use only this interface; the
//! SQLite catalog ([`crate::Catalog`]) implements it today, and a shared
//! catalog of several nodes can implement it without a change to any
//! pipeline. Everything behind it is a cache of the repository: it can be
//! rebuilt from pack trailers and layers (FORMAT.md section 6). Deciding
//! which packs are garbage is *not* its job: that is read from the layers in
//! the repository (FORMAT.md section 7b).
//!
//! Durability: a method that writes has made its change durable, in one
//! atomic step, when it returns `Ok`; on `Err` nothing of it is visible.

use strata_format::pack::PackEntry;
use strata_format::{BackupId, ChunkId, PackId};

use crate::error::Result;

/// Where a chunk is stored: its pack, and its entry in that pack's trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkLocation {
    pub pack: PackId,
    pub entry: PackEntry,
}

/// Shared by every thread of a pipeline (`Send + Sync`, `&self`): an
/// implementation serves concurrent calls, each on a connection of its own.
pub trait ChunkIndex: Send + Sync {
    /// Whether `id` is indexed (committed rows only; a backup's pending
    /// chunks are its own business, see `backup::dedup`).
    fn contains(&self, id: &ChunkId) -> Result<bool>;

    /// Where `id` is stored, if it is indexed.
    fn locate(&self, id: &ChunkId) -> Result<Option<ChunkLocation>>;

    /// Runs `f` on one consistent snapshot of the index (many lookups for
    /// the price of one lock). Writes nothing.
    fn reading(&self, f: &mut dyn FnMut(&dyn ChunkIndex) -> Result<()>) -> Result<()>;

    /// Records a pack that is already durable in the repository, and its
    /// chunks; a chunk already indexed keeps its first location. Atomic and
    /// durable on return: no chunk may be indexed before its pack is durable.
    fn commit_pack(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<()>;

    /// Records a pack that is already durable in the repository and points
    /// its chunks at it, wherever the index placed them before (a repack
    /// moved them). Atomic and durable on return.
    fn move_chunks(&self, pack: PackId, size: u64, entries: &[PackEntry]) -> Result<()>;

    /// Records that `backup`'s layer references `chunks` (idempotent).
    /// Atomic and durable on return.
    fn add_refs(&self, backup: BackupId, chunks: &[ChunkId]) -> Result<()>;

    /// Forgets which chunks `backup` references (its layer is gone).
    /// Idempotent; atomic and durable on return.
    fn drop_refs(&self, backup: BackupId) -> Result<()>;

    /// How many of the chunks `backup` references no indexed pack holds,
    /// and one of them.
    fn unplaced(&self, backup: BackupId) -> Result<(u64, Option<ChunkId>)>;

    /// Every indexed pack with its size.
    fn packs(&self) -> Result<Vec<(PackId, u64)>>;

    /// The rows that place chunks in `pack`, in offset order.
    fn pack_chunks(&self, pack: &PackId) -> Result<Vec<PackEntry>>;

    /// Forgets `packs` and their chunks (their files are gone from the
    /// repository). Atomic and durable on return.
    fn forget_packs(&self, packs: &[PackId]) -> Result<()>;
}

pub mod conformance;
mod memory;

pub use memory::MemoryIndex;
