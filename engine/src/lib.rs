//! strata-engine: backups of file shares into a content-addressed repository.
//!
//! The principal types and how they connect:
//!
//! - [`Repository`] holds packs and layers (bytes defined by `strata-format`)
//!   in a [`repository::objects::ObjectStore`]: a directory, or an NFS export reached with a
//!   userspace client. It never modifies an object in place. It is the
//!   truth: everything else can be rebuilt from it.
//! - [`repository::packs`] is how anything touches a pack: [`read`](crate::repository::packs::read) lists a pack's
//!   chunks from its trailer and reads its blobs in spans, verified against
//!   their ids; [`write`](crate::repository::packs::write) fills packs and publishes each before its
//!   chunks enter the index.
//! - Two narrow interfaces stand between the engine and its catalog, each
//!   with its durability contract on every method, and a conformance suite
//!   every implementation runs (`cargo test conformance`: the SQLite
//!   catalog, and [`index::MemoryIndex`] for the chunk index):
//!   [`index::ChunkIndex`] (which pack holds each chunk, which backup
//!   references which chunk: what backup, restore, check, rebuild and
//!   import see) and [`store::ServiceStore`] (projects, shares, backups,
//!   operations and quotas, moved by compare-and-set: what the service
//!   layer sees). [`Catalog`], SQLite on local disk, implements both: a
//!   pool of connections, `Send + Sync`, a rebuildable cache of the
//!   repository plus service state.
//! - [`backup::run`] is the backup pipeline (walk → chunk → hash → dedup →
//!   compress → pack → index → layer); [`restore::run`] the restore pipeline
//!   (tree → plan by pack → fetch and verify → write → metadata).
//! - [`Engine`] puts them together with the service rules (share admission,
//!   quotas, parent choice, statuses, busy shares, dependents) that the
//!   commands expose; the store only makes their transitions atomic. An
//!   engine is `Send + Sync` with `&self` methods: one process runs many
//!   backups, restores and queries on it at once. It also sweeps packs by
//!   the repository's rule (no layer in the repository references them,
//!   under the exclusive lock: whichever catalog sweeps, nothing another
//!   needs is removed), checks the catalog against the repository,
//!   rebuilds a lost catalog from pack trailers and layers
//!   ([`Engine::rebuild_catalog`]), and exports and imports backup records.
//! - [`beneath::Beneath`] is how both pipelines touch a share or a restore
//!   target: every path resolved beneath one open directory, no symlink
//!   followed, so nothing renamed or swapped meanwhile can steer them out.
//!
//! ```no_run
//! use strata_engine::{repository::Location, Engine, EngineConfig, Progress};
//! let engine = Engine::open(EngineConfig::new(std::path::PathBuf::from("catalog.db"), Location::Posix("repo".into())))?;
//! engine.cleanup(None)?; // after processes that died mid-operation
//! let (share, _) = engine.share_for_backup("/srv/share", false)?;
//! let done = engine.create_backup(&share, &Default::default(), &Progress::default())?;
//! println!("backup {} is {}", done.backup.id, done.backup.status.as_str());
//! # Ok::<(), strata_engine::Error>(())
//! ```

pub mod backup;
pub mod bench;
pub mod beneath;
pub mod catalog;
pub mod chunker;
pub mod chunkset;
pub mod clock;
mod direct_io;
pub mod error;
pub mod failpoint;
pub mod index;
pub mod liveness;
pub mod pg;
pub mod process;
pub mod progress;
pub mod repository;
pub mod restore;
pub mod select;
mod service;
pub mod store;
pub mod validate;
pub mod view;

pub use catalog::Catalog;
pub use error::{Error, Result};
pub use progress::{Progress, ProgressSnapshot};
pub use repository::Repository;
pub use service::export::decode_backup_record;
pub use service::shares::NewShare;
pub use service::{
    BackupResult, BackupType, BackupView, Change, CheckReport, CleanupReport, CreateBackup,
    DataReport, DataSubset, Decision, Difference, Dumped, Engine, EngineConfig, ExportedBackup,
    FindScope, NewSnapshot, OpenTree, PathMap, PruneReport, PruneRequest, RebuildReport,
    RepackReport, RestoreRequest, RestoreTarget, Retention, Rule,
};
