//! What a layer says about its backup and share, turned back into catalog
//! records: shared by a catalog rebuild, an imported backup record and the
//! completion of a backup whose process died after publishing its layer.

use rayon::prelude::*;
use strata_format::layer::{EntryKind, Layer, LayerMeta, LayerRecord};
use strata_format::{BackupId, ChunkId, PackId};

use super::RebuildReport;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::progress::Progress;
use crate::repository::layers::StoredLayer;
use crate::repository::packs::read::{read_trailer, PackTrailer};
use crate::repository::Repository;
use crate::store::ServiceStore;
use crate::store::{BackupRecord, BackupStatus, Problem, Share, ShareStatus};
use crate::validate;

/// References are written to the catalog this many at a time.
const REF_BATCH: usize = 8192;
/// Pack trailers read at once (their entries are held until indexed).
const PACK_BATCH: usize = 64;

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// A layer's metadata with its record counts.
#[derive(Clone, Debug)]
pub(crate) struct LayerSummary {
    pub meta: LayerMeta,
    pub entries: u64,
    pub tombstones: u64,
    /// How many chunks the layer references that the index cannot place,
    /// and the first of them.
    pub unplaced: (u64, Option<ChunkId>),
}

impl LayerSummary {
    /// The backup as the layer records it: `available`, with its figures.
    pub fn backup(&self) -> BackupRecord {
        let m = &self.meta;
        let s = &m.service;
        let mut b = BackupRecord {
            name: non_empty(&m.name),
            description: non_empty(&m.description),
            status: BackupStatus::Available,
            progress: 100,
            updated_at: Some(m.finished_at_ns),
            host: s.host.clone(),
            availability_zone: s.availability_zone.clone(),
            backup_type: s.backup_type.clone(),
            is_incremental: m.parent_id.is_some(),
            parent_id: m.parent_id,
            snapshot_id: s.snapshot_id.as_deref().and_then(|s| s.parse().ok()),
            data_timestamp: Some(m.data_timestamp_ns),
            duration_ms: ((m.finished_at_ns - m.created_at_ns).max(0) / 1_000_000) as u64,
            changed_count: self.entries,
            deleted_count: self.tombstones,
            ..BackupRecord::new(m.backup_id, m.project.clone(), m.share_id, m.created_at_ns)
        };
        b.set_layer_stats(&m.stats);
        b
    }

    /// The share as the layer records it (a version-1 layer knows no
    /// protocol or size: NFS, unsized).
    pub fn share(&self) -> Share {
        let m = &self.meta;
        let protocol = match m.service.share_protocol.as_str() {
            "" => "NFS".to_string(),
            p => p.to_string(),
        };
        Share {
            id: m.share_id,
            project: m.project.clone(),
            name: m.share_name.clone(),
            path: m.share_path.clone(),
            size_gib: m.service.share_size_gib,
            protocol,
            status: ShareStatus::Available,
            created_at: m.created_at_ns,
            updated_at: None,
            source_backup_id: None,
            fail_reason: None,
            adopted: true,
        }
    }

    /// The backup's report.
    pub fn problems(&self) -> Vec<Problem> {
        self.meta
            .service
            .problems
            .iter()
            .map(|(path, problem)| Problem {
                path: path.clone(),
                problem: problem.clone(),
            })
            .collect()
    }
}

/// What a layer says about its backup and share passes the rules a user's
/// values pass: a repository is input like any other.
pub(crate) fn checked_meta(meta: &LayerMeta) -> Result<()> {
    let s = &meta.service;
    validate::text("project", Some(&meta.project), false)?;
    validate::share_name(&meta.share_name)?;
    validate::share_path(&meta.share_path)?;
    validate::share_size(s.share_size_gib)?;
    validate::text("backup name", Some(&meta.name), true)?;
    validate::text("description", Some(&meta.description), true)?;
    validate::text("share protocol", Some(&s.share_protocol), true)?;
    for (what, value) in [
        ("backup type", &s.backup_type),
        ("snapshot id", &s.snapshot_id),
        ("availability zone", &s.availability_zone),
        ("host", &s.host),
    ] {
        validate::text(what, value.as_deref(), false)?;
    }
    Ok(())
}

/// Verifies the layer of `id` (checksum, every record) and records which
/// chunks it references in `catalog`; returns its summary. On an error the
/// references already written are the caller's to drop.
pub(crate) fn index_layer(
    index: &dyn ChunkIndex,
    id: BackupId,
    stored: &StoredLayer,
) -> Result<LayerSummary> {
    index_opened(index, checked_layer(id, stored)?)
}

/// The layer of `id` in `bytes`, decoded (its checksum verified), naming
/// that backup, with metadata that passes [`checked_meta`].
pub(crate) fn checked_layer(id: BackupId, stored: &StoredLayer) -> Result<Layer<'_>> {
    let location = format!("layer {id}");
    let layer = stored.decode()?;
    if layer.meta.backup_id != id {
        return Err(Error::Corrupt {
            location,
            detail: format!("it records backup {}", layer.meta.backup_id),
        });
    }
    checked_meta(&layer.meta).map_err(|e| Error::Corrupt {
        location,
        detail: format!("its metadata is refused: {e}"),
    })?;
    Ok(layer)
}

/// [`index_layer`] of a layer already opened.
pub(crate) fn index_opened(index: &dyn ChunkIndex, layer: Layer<'_>) -> Result<LayerSummary> {
    let id = layer.meta.backup_id;
    let location = format!("layer {id}");
    let mut batch = Vec::with_capacity(REF_BATCH);
    for record in layer.records().map_err(|e| Error::format(&location, e))? {
        let LayerRecord::Entry(entry) = record.map_err(|e| Error::format(&location, e))? else {
            continue;
        };
        let EntryKind::File { chunks, .. } = entry.kind else {
            continue;
        };
        for c in chunks {
            batch.push(c.id);
            if batch.len() >= REF_BATCH {
                index.add_refs(id, &batch)?;
                batch.clear();
            }
        }
    }
    index.add_refs(id, &batch)?;
    // One query for the layer, not one lookup per chunk.
    let unplaced = index.unplaced(id)?;
    Ok(LayerSummary {
        meta: layer.meta,
        entries: layer.entry_count,
        tombstones: layer.tombstone_count,
        unplaced,
    })
}

/// Records the share of `summary` unless the catalog has it, *adopted*
/// (its path unconfirmed); a name taken by another share gets the share
/// id's first characters appended. A share of that id in another project
/// is refused as a forged layer, without naming that project.
pub(crate) fn ensure_share(catalog: &dyn ServiceStore, summary: &LayerSummary) -> Result<()> {
    match catalog.share(summary.meta.share_id) {
        Ok(share) if share.project == summary.meta.project => return Ok(()),
        Ok(_) => {
            return Err(Error::Corrupt {
                location: format!("layer {}", summary.meta.backup_id),
                detail: format!(
                    "it names share {} of project {:?}, which is no share of that project",
                    summary.meta.share_id, summary.meta.project
                ),
            })
        }
        Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    catalog.ensure_project(&summary.meta.project)?;
    let mut share = summary.share();
    match catalog.insert_share(&share) {
        Err(Error::InvalidArgument(_)) => {
            let id = share.id.to_string();
            share.name = format!("{}-{}", share.name, &id[..8.min(id.len())]);
            catalog.insert_share(&share)
        }
        other => other,
    }
}

/// Indexes `packs` from their trailers, a batch of packs at a time; a pack
/// whose trailer cannot be read is named in `report.damaged`.
pub(crate) fn index_packs(
    repo: &Repository,
    index: &dyn ChunkIndex,
    packs: &[PackId],
    report: &mut RebuildReport,
    progress: &Progress,
) -> Result<()> {
    for batch in packs.chunks(PACK_BATCH) {
        let read: Vec<(PackId, Result<PackTrailer>)> = batch
            .par_iter()
            .map(|p| (*p, read_trailer(repo, p)))
            .collect();
        for (pack, trailer) in read {
            match trailer {
                Ok(t) => {
                    index.commit_pack(pack, t.pack_len, &t.entries)?;
                    report.packs += 1;
                    report.chunks += t.entries.len() as u64;
                    report.bytes_read += t.bytes_read;
                    report.repository_bytes += t.pack_len;
                    progress.add_bytes(t.bytes_read);
                }
                Err(e @ (Error::Corrupt { .. } | Error::Unsupported(_))) => {
                    report.damaged.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
            progress.add_files(1);
        }
    }
    Ok(())
}
