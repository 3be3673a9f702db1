//! `catalog rebuild`: a catalog made again from the repository alone.
//!
//! What is rebuilt from what (FORMAT.md section 6): the chunk index and the
//! pack list from pack trailers (never pack bodies); projects, shares,
//! backups (parents, data timestamps, names, descriptions, figures, reports)
//! and chunk references from layer metadata and entries. Quotas and
//! operations take their defaults. The new catalog is written beside the
//! old path and renamed over it at the end, so a rebuild killed at any
//! point leaves either the old catalog or none, and can simply run again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use strata_format::{BackupId, ShareId};

use super::recover::{ensure_share, index_layer, index_packs, LayerSummary};
use super::{Engine, EngineConfig};
use crate::catalog::Catalog;
use crate::error::{Error, IoContext, Result};
use crate::index::ChunkIndex;
use crate::progress::Progress;
use crate::repository::{LayerName, Repository};
use crate::store::{BackupReads, BackupWrites, ProjectStore, ShareStatus, ShareStore};

/// What a rebuild found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    pub packs: u64,
    pub chunks: u64,
    pub layers: u64,
    pub backups: u64,
    pub shares: u64,
    /// Packs and layers that could not be read, with why.
    pub damaged: Vec<String>,
    /// Backups recorded `error` (a damaged layer or pack in their chain).
    pub failed_backups: Vec<String>,
    /// Bytes read from the repository (trailers and layers only).
    pub bytes_read: u64,
    /// Bytes the repository's packs and layers hold.
    pub repository_bytes: u64,
}

impl RebuildReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.failed_backups.is_empty()
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a SQLite database file and its journal files.
fn remove_database(path: &Path) -> Result<()> {
    for p in [
        path.to_path_buf(),
        sibling(path, "-wal"),
        sibling(path, "-shm"),
    ] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&p, e)),
            _ => {}
        }
    }
    Ok(())
}

impl Engine {
    /// Rebuilds the catalog at `config.catalog_path` from the repository.
    /// A catalog that records anything is replaced only with `force`.
    pub fn rebuild_catalog(
        config: &EngineConfig,
        force: bool,
        progress: &Progress,
    ) -> Result<RebuildReport> {
        let target = &config.catalog_path;
        let confirmed = confirmed_paths(target);
        if target.exists() && !force && !Catalog::open(target)?.is_empty()? {
            return Err(Error::InvalidState(format!(
                "catalog {} is not empty; only a forced rebuild replaces it with one rebuilt \
                 from the repository",
                target.display()
            )));
        }
        let repo = Repository::open(crate::repository::connect(
            &config.repository,
            config.repository_modes,
        )?)?;
        let mut repos = vec![repo];
        for t in &config.backup_types {
            let Some(location) = &t.repository else {
                continue;
            };
            let repo = Repository::open(crate::repository::connect(
                location,
                config.repository_modes,
            )?)?;
            let id = repo.config().repository_id;
            if repos.iter().all(|r| r.config().repository_id != id) {
                repos.push(repo);
            }
        }
        let building = sibling(target, ".rebuild");
        remove_database(&building)?;
        let catalog = Catalog::open(&building)?.pinned()?;
        // Not live until renamed into place (and synced before that).
        catalog.bulk_load()?;
        catalog.set_meta(
            "repository_id",
            &repos[0].config().repository_id.to_string(),
        )?;
        catalog.set_meta("repository_path", &config.repository.to_string())?;
        catalog.ensure_project(&config.project)?;
        let mut report = RebuildReport::default();
        let mut listed = Vec::new();
        for repo in &repos {
            let (packs, layers) = (repo.list_pack_files()?, repo.list_layers()?);
            progress.add_files_total((packs.len() + layers.len()) as u64);
            listed.push((packs, layers));
        }
        let mut layers = Layers::new();
        // Each other repository's index is its own file, built beside its
        // place and renamed into it before the catalog (whose records name
        // its backups) is.
        let mut indexes = Vec::new();
        for (n, (repo, (packs, ids))) in repos.iter().zip(&listed).enumerate() {
            let own = match n {
                0 => None,
                _ => {
                    let path = Catalog::index_path(target, &repo.config().repository_id);
                    let building = sibling(&path, ".rebuild");
                    remove_database(&building)?;
                    let own = Catalog::open(&building)?.pinned()?;
                    own.bulk_load()?;
                    indexes.push((building, path));
                    Some(own)
                }
            };
            let index = own.as_ref().unwrap_or(&catalog);
            index_packs(repo, index, packs, &mut report, progress)?;
            layers.extend(index_layers(
                repo,
                index,
                &catalog,
                ids,
                &mut report,
                progress,
            )?);
            if let Some(own) = own {
                own.finish_bulk_load()?;
            }
        }
        fail_broken_chains(&catalog, &layers, &mut report)?;
        for share in catalog.list_shares(None)? {
            if confirmed.get(&share.id) == Some(&share.path) {
                catalog.confirm_share_path(share.id, &share.path, &ShareStatus::ALL)?;
            }
        }
        catalog.finish_bulk_load()?;
        crate::failpoint::hit("rebuild.built");
        for (building, path) in &indexes {
            durable_rename(building, path)?;
        }
        durable_rename(&building, target)?;
        crate::failpoint::hit("rebuild.renamed");
        progress.finish();
        Ok(report)
    }
}

/// The shares whose paths an operator confirmed in the catalog a forced
/// rebuild replaces (none if it is missing or unreadable): a rebuilt share
/// at the same path stays confirmed; any other is adopted.
fn confirmed_paths(catalog: &Path) -> HashMap<ShareId, String> {
    if !catalog.exists() {
        return HashMap::new();
    }
    let shares = Catalog::open(catalog).and_then(|c| c.list_shares(None));
    shares
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.adopted)
        .map(|s| (s.id, s.path))
        .collect()
}

/// Syncs the database at `from`, then renames it over `to` (whose journal
/// must not be replayed into it) and syncs the directory.
fn durable_rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::File::open(from)
        .and_then(|f| f.sync_all())
        .at(from)?;
    remove_database(to)?;
    std::fs::rename(from, to).at(to)?;
    let dir = match to.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Why each backup a layer names cannot stand, if it cannot.
type Layers = HashMap<BackupId, Option<String>>;

/// Shares, backups and references from every layer.
fn index_layers(
    repo: &Repository,
    index: &dyn ChunkIndex,
    catalog: &Catalog,
    names: &[LayerName],
    report: &mut RebuildReport,
    progress: &Progress,
) -> Result<Layers> {
    let mut layers = Layers::new();
    let mut shares = HashSet::new();
    // Each backup's current generation: it names the parent that holds.
    for name in names {
        let id = name.id;
        let bytes = repo.load_layer_object(name)?;
        report.bytes_read += bytes.len();
        report.repository_bytes += bytes.len();
        progress.add_bytes(bytes.len());
        progress.add_files(1);
        let summary = match index_layer(index, id, &bytes) {
            Ok(summary) => summary,
            Err(
                e @ (Error::Corrupt { .. } | Error::Unsupported(_) | Error::InvalidArgument(_)),
            ) => {
                catalog.remove_backup(id)?;
                report.damaged.push(e.to_string());
                layers.insert(id, Some(format!("its layer is damaged ({e})")));
                continue;
            }
            Err(e) => return Err(e),
        };
        report.layers += 1;
        if let Err(e) = record(catalog, &summary) {
            let Error::Corrupt { .. } = e else {
                return Err(e);
            };
            catalog.remove_backup(id)?;
            report.damaged.push(e.to_string());
            layers.insert(id, Some(format!("its layer is refused ({e})")));
            continue;
        }
        report.backups += 1;
        shares.insert(summary.meta.share_id);
        let why = summary.unplaced.1.map(|c| {
            format!(
                "{} chunk(s) it needs are in no readable pack (the first: {c})",
                summary.unplaced.0
            )
        });
        layers.insert(id, why);
    }
    report.shares = shares.len() as u64;
    Ok(layers)
}

fn record(catalog: &Catalog, summary: &LayerSummary) -> Result<()> {
    ensure_share(catalog, summary)?;
    let backup = summary.backup();
    catalog.import_backup(
        &backup,
        &summary.problems(),
        summary.meta.service.share_root_dev,
    )
}

/// Ends `error` every backup whose own layer, or one in its chain, cannot
/// be restored from, naming the cause.
fn fail_broken_chains(
    catalog: &Catalog,
    layers: &Layers,
    report: &mut RebuildReport,
) -> Result<()> {
    let parents: HashMap<BackupId, Option<BackupId>> = layers
        .keys()
        .filter_map(|id| catalog.backup(*id).ok().map(|b| (*id, b.parent_id)))
        .collect();
    for (&id, &parent) in &parents {
        let mut cause = layers.get(&id).cloned().flatten();
        let mut at = parent;
        let mut steps = 0;
        while cause.is_none() {
            let Some(p) = at else { break };
            steps += 1;
            cause = match layers.get(&p) {
                None => Some(format!(
                    "its parent backup {p} has no layer in the repository"
                )),
                Some(Some(why)) => Some(format!("its parent backup {p}: {why}")),
                Some(None) if steps > layers.len() => Some("its chain of parents loops".into()),
                Some(None) => None,
            };
            at = parents.get(&p).copied().flatten();
        }
        if let Some(why) = cause {
            catalog.fail_backup(id, &[crate::store::BackupStatus::Available], &why)?;
            report.failed_backups.push(format!("{id}: {why}"));
        }
    }
    report.failed_backups.sort();
    Ok(())
}
