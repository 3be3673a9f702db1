//! strata-engine: backups of file shares into a content-addressed repository.
//!
//! The principal types and how they connect:
//!
//! - [`Repository`] holds packs and layers (bytes defined by `strata-format`)
//!   in a [`backend::Backend`]: a directory, or an NFS export reached with a
//!   userspace client. It never modifies an object in place.
//! - [`Catalog`] is SQLite on local disk: shares, backups and their statuses,
//!   and the chunk index that says which pack holds each chunk. It is a cache
//!   of the repository plus service state.
//! - [`backup::run`] is the backup pipeline (walk → chunk → hash → dedup →
//!   compress → pack → index → layer); [`restore::run`] the restore pipeline
//!   (tree → plan by pack → fetch and verify → write → metadata).
//! - [`Engine`] puts them together with the service semantics (statuses,
//!   busy shares, dependents) that the commands expose. It also sweeps
//!   packs by the repository's rule (no layer in the repository references
//!   them, under the exclusive lock: whichever catalog sweeps, nothing
//!   another needs is removed), checks the catalog against the repository,
//!   rebuilds a lost catalog from pack trailers and layers
//!   ([`Engine::rebuild_catalog`]), and exports and imports backup records.
//! - [`beneath::Beneath`] is how both pipelines touch a share or a restore
//!   target: every path resolved beneath one open directory, no symlink
//!   followed, so nothing renamed or swapped meanwhile can steer them out.
//!
//! ```no_run
//! use strata_engine::{backend::Location, Engine, EngineConfig, Progress};
//! let mut engine = Engine::open(EngineConfig::new("catalog.db".into(), Location::Posix("repo".into())))?;
//! engine.cleanup(None)?; // after processes that died mid-operation
//! let (share, _) = engine.share_for_backup("/srv/share", false)?;
//! let done = engine.create_backup(&share, &Default::default(), &Progress::default())?;
//! println!("backup {} is {}", done.backup.id, done.backup.status.as_str());
//! # Ok::<(), strata_engine::Error>(())
//! ```

pub mod backend;
pub mod backup;
pub mod beneath;
pub mod catalog;
pub mod chunker;
pub mod clock;
mod direct_io;
pub mod error;
pub mod index;
pub mod locks;
pub mod process;
pub mod progress;
pub mod repository;
pub mod restore;
mod service;
pub mod sizing;
pub mod store;
pub mod view;

pub use catalog::Catalog;
pub use error::{Error, Result};
pub use progress::{Progress, ProgressSnapshot};
pub use repository::Repository;
pub use service::shares::NewShare;
pub use service::{
    BackupResult, BackupView, CheckReport, CleanupReport, CreateBackup, Engine, EngineConfig,
    ExportedBackup, RebuildReport, RestoreRequest,
};
