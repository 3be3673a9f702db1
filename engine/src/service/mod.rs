//! The service layer: what the commands do, with the statuses of the seeds.
//!
//! An [`Engine`] pairs one catalog with the one repository it indexes. Each
//! operation moves statuses in the catalog before and after the work, so
//! other processes reading the catalog see what is running.

mod backups;
mod browse;
mod check;
mod cleanup;
mod create;
mod delete;
mod dump;
pub(crate) mod export;
mod gc;
mod import;
mod operations;
mod paths;
mod prune;
mod reading;
mod rebuild;
mod recover;
mod repack;
pub mod shares;
mod snapshots;
mod vaults;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use strata_format::config::{CompressionSetting, RepoConfig};
use strata_format::RepositoryId;

pub use backups::{BackupResult, BackupView, CreateBackup, RestoreRequest, RestoreTarget};
pub use browse::{Change, Difference, FindScope};
pub use check::CheckReport;
pub use cleanup::CleanupReport;
pub use dump::Dumped;
pub use export::ExportedBackup;
pub use paths::PathMap;
pub use prune::{Decision, PruneReport, PruneRequest, Retention, Rule};
pub use reading::OpenTree;
pub use rebuild::RebuildReport;
pub use repack::RepackReport;
pub use snapshots::NewSnapshot;
pub use vaults::{IndexFor, Vault};
pub use verify::{DataReport, DataSubset};

use crate::catalog::CatalogLocation;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::repository::objects::Location;
use crate::repository::Repository;
use crate::store::ServiceStore;
use crate::store::{BackupRecord, Quota, QuotaUsage};

/// Where things live and the defaults for new objects.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub catalog: CatalogLocation,
    /// A directory or an `nfs://` export.
    pub repository: Location,
    pub project: String,
    /// Overrides the repository's default compression for new chunks.
    pub compression: Option<CompressionSetting>,
    /// Used only when the repository is created.
    pub new_repository: RepoConfig,
    pub availability_zone: Option<String>,
    /// Quota of projects that have none of their own.
    pub default_quota: Quota,
    /// Whether restores may write large files past the page cache where
    /// the target's file system allows it.
    pub direct_io: bool,
    /// The backup types enabled (none: only the default type).
    pub backup_types: Vec<BackupType>,
    /// `cleanup` also repacks packs whose unused share is above this
    /// percentage (`None`: it does not repack).
    pub repack_max_unused_percent: Option<u32>,
    /// `prune`'s rules for backups of the default type when a request
    /// gives none.
    pub retention: Retention,
    /// Bytes a sweep, a repack or a prune may spend on the set of chunks the
    /// layers reference; past it the set becomes a Bloom filter of this
    /// size, which may keep some dead chunks but never loses a live one.
    pub gc_memory_bytes: usize,
    /// Bytes a restore may spend on the entries of the tree it holds at
    /// once (with their plan): it restores the tree in windows of this
    /// size, so its memory does not grow with the tree.
    pub restore_window_bytes: usize,
    /// Directories under which a storage's snapshots may be registered
    /// besides each share's own snapshot locations (`<share>/.snapshot/`,
    /// `<share>/.zfs/snapshot/`, strata's `.strata-snapshots/<share>/`).
    pub snapshot_roots: Vec<PathBuf>,
    /// The permission bits of repository objects and directories.
    pub repository_modes: crate::repository::objects::Modes,
    /// What every backup of a share leaves out, by share name (`*`: every
    /// share); a backup's own exclusions add to these.
    pub share_exclusions: std::collections::BTreeMap<String, strata_format::layer::Exclusions>,
    /// Where this node has the shares recorded under other paths (another
    /// node's mounts of the same exports).
    pub path_map: PathMap,
}

/// Default [`EngineConfig::gc_memory_bytes`]: exact up to about five
/// million referenced chunks.
pub const DEFAULT_GC_MEMORY_BYTES: usize = 256 << 20;

/// A backup type: a named profile of how backups are made and what they
/// allow (Manila's `enabled_backup_types`).
#[derive(Clone, Debug)]
pub struct BackupType {
    /// The configuration's name for it (`eng_data_backup`), which
    /// `backup_type=` names.
    pub name: String,
    /// The name backups of this type show as their `backup_type`
    /// (`backup_type_name`, default `name`).
    pub display_name: String,
    /// Whether its backups may be restored into a share other than their
    /// source (Manila's `support_restore_to_target`).
    pub support_restore_to_target: bool,
    /// Compression of its new chunks (`None`: the engine's setting).
    pub compression: Option<CompressionSetting>,
    /// Its own repository (`None`: the default one), with its own chunk
    /// index; deduplication stays within a repository.
    pub repository: Option<Location>,
    /// The settings of its repository if it is created.
    pub new_repository: RepoConfig,
    /// `prune`'s rules for its backups when a request gives none.
    pub retention: Retention,
}

impl EngineConfig {
    pub fn new(catalog: impl Into<CatalogLocation>, repository: Location) -> Self {
        EngineConfig {
            catalog: catalog.into(),
            repository,
            project: "default".into(),
            compression: None,
            new_repository: RepoConfig::new(RepositoryId([0; 16])),
            availability_zone: None,
            default_quota: Quota::default(),
            direct_io: true,
            backup_types: Vec::new(),
            repack_max_unused_percent: None,
            retention: Retention::default(),
            gc_memory_bytes: DEFAULT_GC_MEMORY_BYTES,
            restore_window_bytes: crate::restore::DEFAULT_WINDOW_BYTES,
            snapshot_roots: Vec::new(),
            repository_modes: crate::repository::objects::Modes::default(),
            share_exclusions: Default::default(),
            path_map: PathMap::default(),
        }
    }
}

/// One repository with the catalog that indexes it, and the service
/// semantics on top. `Send + Sync`, every method `&self`: one process may
/// run many backups, restores and queries on one engine at once.
pub struct Engine {
    pub(crate) store: Arc<dyn ServiceStore>,
    /// The default repository, and its chunk index.
    pub(crate) vault: Vault,
    /// The repositories of backup types that have their own.
    pub(crate) type_vaults: Vec<Vault>,
    pub(crate) config: EngineConfig,
    pub(crate) host: String,
}

impl Engine {
    /// This engine acting in `project`: the same catalog, repositories and
    /// indexes (shared, not reopened), another project's shares and
    /// backups. What a server uses to act for each caller. Writes nothing:
    /// the project is recorded by its first share or quota.
    pub fn for_project(&self, project: &str) -> Result<Engine> {
        crate::validate::text("project", Some(project), false)?;
        let mut config = self.config.clone();
        config.project = project.to_string();
        Ok(Engine {
            store: Arc::clone(&self.store),
            vault: self.vault.clone(),
            type_vaults: self.type_vaults.clone(),
            config,
            host: self.host.clone(),
        })
    }

    /// Opens the catalog at `config.catalog` (a SQLite file, or a
    /// PostgreSQL database several nodes share) and the repositories,
    /// creating any that is missing (see [`Engine::with_catalog`]). A
    /// backup type's own repository gets its own chunk index, a SQLite
    /// file beside the catalog.
    pub fn open(config: EngineConfig) -> Result<Self> {
        if config.project.is_empty() {
            return Err(Error::InvalidArgument("the project name is empty".into()));
        }
        if let CatalogLocation::Postgres(url) = &config.catalog {
            let shared = crate::pg::PgCatalog::open(url)?;
            let refuse = |_: &RepositoryId| -> Result<Arc<dyn ChunkIndex>> {
                Err(Error::Unsupported(
                    "a backup type with a repository of its own needs a SQLite catalog for now"
                        .into(),
                ))
            };
            return Engine::with_catalog(
                Arc::new(shared.clone()),
                Arc::new(shared),
                &refuse,
                config,
            );
        }
        let catalog = config.catalog.open()?;
        let location = config.catalog.clone();
        let index_for = move |id: &RepositoryId| -> Result<Arc<dyn ChunkIndex>> {
            Ok(Arc::new(location.index_for(id).open()?))
        };
        Engine::with_catalog(
            Arc::new(catalog.clone()),
            Arc::new(catalog),
            &index_for,
            config,
        )
    }

    /// An engine on a service store and a chunk index of any kind, and the
    /// repository they index (created if missing and if the store is bound
    /// to none), plus the repository of each backup type that has its own,
    /// indexed by what `index_for` makes. A store only ever indexes one
    /// repository in each role: opening it with another is refused,
    /// because its chunk index would lie about that repository. Nothing
    /// else happens on open: cleaning up after dead processes is
    /// [`Engine::cleanup`], which callers run when they are ready to change
    /// things (`check` never does).
    pub fn with_catalog(
        store: Arc<dyn ServiceStore>,
        index: Arc<dyn ChunkIndex>,
        index_for: IndexFor<'_>,
        config: EngineConfig,
    ) -> Result<Self> {
        if config.project.is_empty() {
            return Err(Error::InvalidArgument("the project name is empty".into()));
        }
        let repo = vaults::bind(
            &*store,
            "repository",
            &config.repository,
            &config.new_repository,
            &config.catalog,
            config.repository_modes,
        )?;
        let mut vault = Vault {
            repo,
            index,
            types: Vec::new(),
            memory: config.gc_memory_bytes,
        };
        let type_vaults = vaults::type_vaults(&*store, &config, &mut vault, index_for)?;
        store.ensure_project(&config.project)?;
        let host = crate::process::host_name();
        Ok(Engine {
            store,
            vault,
            type_vaults,
            config,
            host,
        })
    }

    /// When this catalog knows no backup at all but the repository holds
    /// layers: the catalog was lost, or belongs to another node. Says so.
    pub fn unknown_layers(&self) -> Result<u64> {
        let filter = crate::store::BackupFilter::default();
        if !self.store.list_backups(&filter)?.is_empty() {
            return Ok(0);
        }
        let mut layers = 0;
        for vault in self.vaults() {
            layers += vault.repo.list_layers()?.len() as u64;
        }
        Ok(layers)
    }

    /// The records of shares, backups, operations and quotas.
    pub fn store(&self) -> &dyn ServiceStore {
        &*self.store
    }

    /// The chunk index of the default repository.
    pub fn index(&self) -> &dyn ChunkIndex {
        &*self.vault.index
    }

    /// The default repository.
    pub fn repository(&self) -> &Repository {
        &self.vault.repo
    }

    pub fn project(&self) -> &str {
        &self.config.project
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The project's quota: its own limits, else the configured default.
    pub fn effective_quota(&self) -> Result<Quota> {
        Ok(self
            .store
            .quota(&self.config.project)?
            .unwrap_or(self.config.default_quota))
    }

    pub fn quota_usage(&self) -> Result<QuotaUsage> {
        self.store.quota_usage(&self.config.project)
    }

    pub fn set_quota(&self, quota: &Quota) -> Result<()> {
        self.store.ensure_project(&self.config.project)?;
        self.store.set_quota(&self.config.project, quota)
    }

    /// The zstd level of new chunks of a backup of `backup_type` (its own
    /// setting, else the engine's, else the repository's).
    fn zstd_level(&self, backup_type: Option<&BackupType>) -> Option<i32> {
        let vault = self.site_for(backup_type);
        backup_type
            .and_then(|t| t.compression)
            .or(self.config.compression)
            .unwrap_or(vault.repo.config().compression)
            .zstd_level()
    }

    /// The enabled type a backup record names (by its `backup_type`).
    pub(crate) fn type_of(&self, backup: &BackupRecord) -> Option<&BackupType> {
        let name = backup.backup_type.as_ref()?;
        self.config
            .backup_types
            .iter()
            .find(|t| &t.display_name == name)
    }

    /// Where this node has `share`'s tree.
    pub(crate) fn local_path(&self, share: &crate::store::Share) -> PathBuf {
        self.config.path_map.local(&share.path)
    }

    /// The enabled backup types.
    pub fn backup_types(&self) -> &[BackupType] {
        &self.config.backup_types
    }

    /// The enabled backup type of that (configuration) name.
    pub fn backup_type(&self, name: &str) -> Result<&BackupType> {
        self.config
            .backup_types
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .config
                    .backup_types
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect();
                Error::InvalidArgument(format!(
                    "backup type {name:?} is not enabled (enabled: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }
}

/// One engine serves many threads at once.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Engine>();
};
