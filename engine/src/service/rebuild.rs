//! `catalog rebuild`: a catalog made again from the repository alone.
//!
//! What is rebuilt from what (FORMAT.md section 6): the chunk index and the
//! pack list from pack trailers (never pack bodies); projects, shares,
//! backups (parents, data timestamps, names, descriptions, figures, reports)
//! and chunk references from layer metadata and entries. Quotas and
//! operations take their defaults. A fresh store is built beside the
//! catalog's location and swapped in whole at the end
//! ([`CatalogLocation::build_fresh`]), so a rebuild killed at any point
//! leaves the old catalog or the new one, and can simply run again.

use std::collections::{HashMap, HashSet};

use strata_format::{BackupId, ShareId};

use super::recover::{ensure_share, index_layer, index_packs, LayerSummary};
use super::{Engine, EngineConfig};
use crate::catalog::{Catalog, CatalogLocation, Fresh};
use crate::error::{Error, Result};
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

impl Engine {
    /// Rebuilds the catalog at `config.catalog` from the repository.
    /// A catalog that records anything is replaced only with `force`.
    pub fn rebuild_catalog(
        config: &EngineConfig,
        force: bool,
        progress: &Progress,
    ) -> Result<RebuildReport> {
        let target = &config.catalog;
        let confirmed = confirmed_paths(target);
        if target.exists() && !force && !target.open()?.is_empty()? {
            return Err(Error::InvalidState(format!(
                "catalog {target} is not empty; only a forced rebuild replaces it with one \
                 rebuilt from the repository"
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
        // Not live until swapped into place.
        let fresh = target.build_fresh()?;
        let catalog = fresh.catalog();
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
        // Each other repository's index is a store of its own, built beside
        // its place and swapped in before the catalog (whose records name
        // its backups) is.
        let mut indexes: Vec<Fresh> = Vec::new();
        for (n, (repo, (packs, ids))) in repos.iter().zip(&listed).enumerate() {
            if n > 0 {
                indexes.push(
                    target
                        .index_for(&repo.config().repository_id)
                        .build_fresh()?,
                );
            }
            let index = match n {
                0 => catalog,
                _ => indexes.last().map_or(catalog, Fresh::catalog),
            };
            index_packs(repo, index, packs, &mut report, progress)?;
            layers.extend(index_layers(
                repo,
                index,
                catalog,
                ids,
                &mut report,
                progress,
            )?);
        }
        fail_broken_chains(catalog, &layers, &mut report)?;
        for share in catalog.list_shares(None)? {
            if confirmed.get(&share.id) == Some(&share.path) {
                catalog.confirm_share_path(share.id, &share.path, &ShareStatus::ALL)?;
            }
        }
        crate::failpoint::hit("rebuild.built");
        for index in indexes {
            index.swap()?;
        }
        fresh.swap()?;
        crate::failpoint::hit("rebuild.renamed");
        progress.finish();
        Ok(report)
    }
}

/// The shares whose paths an operator confirmed in the catalog a forced
/// rebuild replaces (none if it is missing or unreadable): a rebuilt share
/// at the same path stays confirmed; any other is adopted.
fn confirmed_paths(catalog: &CatalogLocation) -> HashMap<ShareId, String> {
    if !catalog.exists() {
        return HashMap::new();
    }
    let shares = catalog.open().and_then(|c| c.list_shares(None));
    shares
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !s.adopted)
        .map(|s| (s.id, s.path))
        .collect()
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
