//! The vaults one catalog indexes: a vault is one repository with its own
//! chunk index (so deduplication and pack removal stay within a
//! repository). There is the default vault, and one for each repository
//! that backup types of their own are kept in; a backup's type says which
//! vault holds it.

use std::sync::Arc;

use strata_format::config::RepoConfig;
use strata_format::RepositoryId;

use super::{BackupType, Engine, EngineConfig};
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::repository::objects::Location;
use crate::repository::Repository;
use crate::store::BackupRecord;
use crate::store::ServiceStore;

/// A vault: one repository and the chunk index of it, where the backups of
/// some backup types are kept.
#[derive(Clone)]
pub struct Vault {
    pub(crate) repo: Repository,
    pub(crate) index: Arc<dyn ChunkIndex>,
    /// The backup types (configuration names) whose backups it holds.
    pub(crate) types: Vec<String>,
    /// Bytes a sweep or a repack may spend on the set of referenced chunks.
    pub(crate) memory: usize,
}

/// Makes the chunk index of the repository of that id (a type's own).
pub type IndexFor<'a> = &'a dyn Fn(&RepositoryId) -> Result<Arc<dyn ChunkIndex>>;

/// Opens the repository at `location`, bound in `store` under `key`: the
/// first open records its id; later opens refuse another repository, and
/// never create one where the bound one should be (its index would lie).
pub(crate) fn bind(
    store: &dyn ServiceStore,
    key: &str,
    location: &Location,
    new_repository: &RepoConfig,
    catalog: &crate::catalog::CatalogLocation,
    modes: crate::repository::objects::Modes,
) -> Result<Repository> {
    let (id_key, path_key) = (format!("{key}_id"), format!("{key}_path"));
    let bound = store.meta(&id_key)?;
    let refuse = |known: &str| {
        Error::InvalidArgument(format!(
            "catalog {} indexes {} {known} at {}; there is no repository at {location}",
            catalog,
            key.replace('_', " "),
            store.meta(&path_key).ok().flatten().unwrap_or_default(),
        ))
    };
    // A bound repository is never created: connecting must not make it.
    let backend = match &bound {
        Some(known) => {
            crate::repository::connect_existing(location, modes).map_err(|e| match e {
                Error::NotFound { .. } => refuse(known),
                other => other,
            })?
        }
        None => crate::repository::connect(location, modes)?,
    };
    let repo = match &bound {
        Some(known) => Repository::open(backend).map_err(|e| match e {
            Error::NotFound { .. } => refuse(known),
            other => other,
        })?,
        None => Repository::open_or_init(backend, new_repository.clone())?,
    };
    let repo = match store.repository_locks(&repo.config().repository_id) {
        Some((keeper, locks)) => {
            repo.agree_on_locks(Some(&keeper))?;
            repo.with_locks(locks)
        }
        None => {
            repo.agree_on_locks(None)?;
            repo
        }
    };
    if repo.locks_in_store() && !repo.conditions_hold() {
        return Err(Error::Unsupported(format!(
            "the object store of {location} does not hold If-None-Match and If-Match on \
             puts (racing creates of one object both succeeded, or a put over a failing \
             condition was made): strata's repository locks need them, or a PostgreSQL \
             catalog to keep them"
        )));
    }
    let repo_id = repo.config().repository_id.to_string();
    match bound {
        None => {
            store.set_meta(&id_key, &repo_id)?;
            store.set_meta(&path_key, &location.to_string())?;
        }
        Some(known) if known == repo_id => {}
        Some(known) => {
            let path = store.meta(&path_key)?.unwrap_or_default();
            return Err(Error::InvalidArgument(format!(
                "catalog {} indexes {} {known} at {path}, not {repo_id} at {location}",
                catalog,
                key.replace('_', " "),
            )));
        }
    }
    Ok(repo)
}

/// The vaults of the backup types that have a repository of their own
/// (types sharing one repository share its vault; a type whose repository
/// is the default one joins `default`).
pub(crate) fn type_vaults(
    store: &dyn ServiceStore,
    config: &EngineConfig,
    default: &mut Vault,
    index_for: IndexFor<'_>,
) -> Result<Vec<Vault>> {
    let mut vaults: Vec<Vault> = Vec::new();
    for t in &config.backup_types {
        let Some(location) = &t.repository else {
            default.types.push(t.name.clone());
            continue;
        };
        let key = format!("backup_type_{}_repository", t.name);
        let repo = bind(
            store,
            &key,
            location,
            &t.new_repository,
            &config.catalog,
            config.repository_modes,
        )?;
        let id = repo.config().repository_id;
        if default.repo.config().repository_id == id {
            default.types.push(t.name.clone());
            continue;
        }
        match vaults
            .iter_mut()
            .find(|s| s.repo.config().repository_id == id)
        {
            Some(vault) => vault.types.push(t.name.clone()),
            None => vaults.push(Vault {
                index: index_for(&id)?,
                repo,
                types: vec![t.name.clone()],
                memory: config.gc_memory_bytes,
            }),
        }
    }
    Ok(vaults)
}

impl Engine {
    /// Every repository this engine indexes, the default one first.
    pub(crate) fn vaults(&self) -> impl Iterator<Item = &Vault> {
        std::iter::once(&self.vault).chain(&self.type_vaults)
    }

    /// Where backups of `backup_type` (`None`: the default type) live.
    pub(crate) fn site_for(&self, backup_type: Option<&BackupType>) -> &Vault {
        backup_type
            .and_then(|t| self.type_vaults.iter().find(|s| s.types.contains(&t.name)))
            .unwrap_or(&self.vault)
    }

    /// Where `backup` lives: its type's repository. A type that is no
    /// longer configured is an error, not the default repository.
    pub(crate) fn vault_of(&self, backup: &BackupRecord) -> Result<&Vault> {
        match (&backup.backup_type, self.type_of(backup)) {
            (None, _) => Ok(&self.vault),
            (Some(_), Some(t)) => Ok(self.site_for(Some(t))),
            (Some(name), None) => Err(Error::InvalidState(format!(
                "backup {} is of backup type {name}, which is not enabled in this \
                 configuration: its repository is unknown",
                backup.id
            ))),
        }
    }
}
