//! The backup pipeline.
//!
//! ```text
//! walk (+ parent view) ─▶ (rayon workers) diff → read → chunk → hash → dedup
//!     │                     → compress ─▶ packer ─▶ index
//!     │                     └──── entries (numbered) ────▶ layer
//!     └────────────── tombstones (paths gone) ────────────▶ layer
//! ```
//!
//! [`run`] reads top to bottom in that order; each stage is its own module.
//! Write order, which the whole design rests on: a pack is durable before its
//! chunks enter the index; every pack is durable and indexed before the layer
//! is published; the layer is published before the backup is `available`.

mod chunk;
mod dedup;
mod diff;
pub mod exclude;
pub(crate) mod kind;
mod layer;
mod lister;
mod listing;
mod read_ahead;
pub(crate) mod report;
mod stat;
pub(crate) mod walk;

use std::path::PathBuf;
use std::time::Instant;

use rayon::iter::{ParallelBridge, ParallelIterator};
use strata_format::layer::{Exclusions, LayerMeta, LayerStats, ServiceMeta};
use strata_format::{BackupId, ShareId};

pub use report::Counters;

use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::index::ChunkIndex;
use crate::progress::Progress;
use crate::repository::leases::Lease;
use crate::repository::Repository;
use crate::store::Problem;

/// Everything a backup needs to know before it starts.
pub struct BackupPlan {
    pub backup_id: BackupId,
    pub share_id: ShareId,
    pub share_name: String,
    pub share_path: PathBuf,
    /// What is read: the share's path, or a snapshot of the share.
    pub source_path: PathBuf,
    /// The moment the data is from when it is not the start of the run
    /// (a snapshot's creation).
    pub data_timestamp_ns: Option<i64>,
    pub project: String,
    pub name: String,
    pub description: String,
    /// When the backup's record was created (Unix ns).
    pub created_at_ns: i64,
    /// The parent backup (its chain is read from the repository); none for a
    /// full backup.
    pub parent: Option<BackupId>,
    /// Read every file, even those whose metadata matches the parent.
    pub rehash: bool,
    /// zstd level for new chunks; `None` stores them raw.
    pub zstd_level: Option<i32>,
    /// Recorded in the layer, for a catalog rebuilt from the repository
    /// (the problems and the root's device are filled in by the run).
    pub service: ServiceMeta,
    /// What to leave out of the share (recorded in the layer with how
    /// much it left out).
    pub exclusions: Exclusions,
}

pub use diff::RACY_WINDOW_NS;

/// What a finished backup reports.
#[derive(Debug)]
pub struct BackupOutcome {
    /// Totals of the backup's whole tree (inherited entries included).
    pub stats: LayerStats,
    pub read_bytes: u64,
    /// Entries and tombstones the layer records.
    pub changed: u64,
    pub deleted: u64,
    pub problems: Vec<Problem>,
    pub data_timestamp_ns: i64,
    pub duration: std::time::Duration,
    /// The device of the share's root, as opened.
    pub root_dev: u64,
}

/// Runs one backup of `plan.source_path` into `repo`. On `Ok` the layer is
/// published; on `Err` nothing references what was written (packs already
/// published stay as unreferenced data, their chunks usable by later backups).
/// `lock` is the repository's shared lock, held for the whole run.
pub fn run(
    repo: &Repository,
    index: &dyn ChunkIndex,
    lock: &Lease,
    plan: &BackupPlan,
    progress: &Progress,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    let data_timestamp_ns = plan.data_timestamp_ns.unwrap_or_else(now_ns);
    let report = report::Report::default();
    let counters = Counters::default();
    let dedup = dedup::Dedup::new(index);
    let config = repo.config();
    let excluder = exclude::Excluder::new(&plan.exclusions)?;
    let parent_layers = match &plan.parent {
        Some(parent) => crate::view::load_chain(repo, parent)?,
        None => Vec::new(),
    };
    let parent_view = match parent_layers.is_empty() {
        true => None,
        false => Some(crate::view::MergedView::new(&parent_layers)?),
    };
    let racy_from = parent_view
        .as_ref()
        .and_then(|v| v.newest())
        .map_or(i64::MIN, |m| {
            m.data_timestamp_ns.saturating_sub(RACY_WINDOW_NS)
        });

    let sink = Landed {
        dedup: &dedup,
        counters: &counters,
    };
    let (draft, gone, root_dev) = std::thread::scope(|s| -> Result<_> {
        let parent = parent_view
            .map(|view| diff::ParentCursor::new(crate::view::Prefetched::spawn(s, view)))
            .transpose()?;
        let reads = read_ahead::Reads {
            racy_from,
            rehash: plan.rehash,
        };
        let (items, walker, root_dev) = walk::spawn(
            s,
            plan.source_path.clone(),
            parent,
            Some(reads),
            walk::Watch {
                counters: &counters,
                report: &report,
                progress,
                exclude: Some(&excluder),
            },
        )?;
        let (blobs, packer) = crate::repository::packs::write::spawn(
            s,
            repo,
            index,
            crate::repository::packs::write::Placement::New,
            &sink,
        );
        let (entries, assembler) = layer::spawn(s, repo, index, plan.backup_id, &report)?;
        let chunking = chunk::Chunking {
            params: config.chunker,
            zstd_level: plan.zstd_level,
            rehash: plan.rehash,
            dedup: &dedup,
            blobs,
            counters: &counters,
            report: &report,
            progress,
        };
        let worked = items.into_iter().par_bridge().try_for_each(|batch| {
            let mut done = Vec::with_capacity(batch.len());
            for item in &batch {
                done.push(layer::Numbered {
                    seq: item.seq,
                    slot: chunking.process(item)?,
                    in_parent: item.parent.is_some(),
                });
            }
            progress.add_files(batch.len() as u64);
            entries
                .send(done)
                .map_err(|_| Error::Bug("the layer assembler stopped".into()))
        });
        drop(chunking);
        drop(entries);
        // The first error of a stage that stopped explains the others.
        let walked = join(walker);
        let packed = join(packer);
        let assembled = join(assembler);
        let (walked, walk_error) = match walked {
            Ok(gone) => (gone, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        first_cause([walk_error, packed.err(), worked.err()])?;
        Ok((assembled?, walked, root_dev))
    })?;

    let problems = report.take();
    let stats = LayerStats {
        files: get(&counters.files),
        dirs: get(&counters.dirs),
        symlinks: get(&counters.symlinks),
        hardlinks: get(&counters.hardlinks),
        skipped: get(&report.skipped),
        logical_bytes: get(&counters.logical_bytes),
        new_bytes: get(&counters.new_bytes),
        stored_bytes: get(&counters.stored_bytes),
        new_chunks: get(&counters.new_chunks),
    };
    let meta = LayerMeta {
        backup_id: plan.backup_id,
        share_id: plan.share_id,
        parent_id: plan.parent,
        project: plan.project.clone(),
        name: plan.name.clone(),
        description: plan.description.clone(),
        share_name: plan.share_name.clone(),
        share_path: plan.share_path.display().to_string(),
        data_timestamp_ns,
        created_at_ns: plan.created_at_ns,
        finished_at_ns: now_ns(),
        stats: stats.clone(),
        service: ServiceMeta {
            share_root_dev: Some(root_dev),
            problems: problems
                .iter()
                .map(|p| (p.path.clone(), p.problem.clone()))
                .collect(),
            ..plan.service.clone()
        },
        exclusions: excluder.outcome(),
    };
    let changed = draft.entries;
    let deleted = draft.commit(lock, &meta, gone)?;
    progress.finish();
    Ok(BackupOutcome {
        stats,
        read_bytes: get(&counters.read_bytes),
        changed,
        deleted,
        problems,
        data_timestamp_ns,
        duration: started.elapsed(),
        root_dev,
    })
}

/// The first error that is not a knock-on "stage stopped" error, if any.
fn first_cause<const N: usize>(errors: [Option<Error>; N]) -> Result<()> {
    let mut errors: Vec<Error> = errors.into_iter().flatten().collect();
    match errors.iter().position(|e| !matches!(e, Error::Bug(_))) {
        Some(i) => Err(errors.swap_remove(i)),
        None => errors.into_iter().next().map_or(Ok(()), Err),
    }
}

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(Error::Bug("a backup stage panicked".into())))
}

/// Where the pack writer reports to: stored bytes and packs counted, and a
/// pack's chunks leave the pending set once the index has them.
struct Landed<'a> {
    dedup: &'a dedup::Dedup<'a>,
    counters: &'a Counters,
}

impl crate::repository::packs::write::Sink for Landed<'_> {
    fn appended(&self, bytes: u64) {
        Counters::add(&self.counters.stored_bytes, bytes);
    }

    fn indexed(&self, _pack: strata_format::PackId, entries: &[strata_format::pack::PackEntry]) {
        self.dedup.release(entries.iter().map(|e| e.id));
        Counters::add(&self.counters.packs, 1);
    }
}
