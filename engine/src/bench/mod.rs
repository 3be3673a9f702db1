//! `strata bench`: what bounds a backup of this share to this repository,
//! measured on this machine. Each stage of a backup is timed on its own:
//!
//! - the share: a walk with stat (files/s) and reads of a sample (MB/s);
//! - the export: pack-sized durable writes, their read-back, and the small
//!   operations a backup does (create, rename, remove, list);
//! - the CPU: chunk + hash + compress on a sample of the share's own data,
//!   on one core and on all of them.
//!
//! The slowest stage bounds a backup; the estimates follow from it and the
//! share's size. Only objects under a temporary prefix are written to the
//! repository, and the prefix is removed.

mod cpu;
mod export;
mod share;

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use strata_format::config::ChunkerParams;

use crate::error::Result;
use crate::repository::objects::ObjectStore;

/// What to measure and how much.
#[derive(Debug, Clone)]
pub struct SizingOptions {
    /// At most this many bytes of the share are read (and kept as the CPU
    /// sample, up to [`SizingOptions::cpu_sample`]).
    pub read_sample: u64,
    pub cpu_sample: usize,
    /// Bytes written to the export, in objects of `object_size`.
    pub write_bytes: u64,
    pub object_size: u64,
    /// Repetitions of each small operation.
    pub small_ops: usize,
    pub chunker: ChunkerParams,
    /// `None`: chunks stored uncompressed.
    pub zstd_level: Option<i32>,
    /// The share's fraction that a typical nightly incremental reads.
    pub change_rate: f64,
}

impl Default for SizingOptions {
    fn default() -> Self {
        SizingOptions {
            read_sample: 512 << 20,
            cpu_sample: 128 << 20,
            write_bytes: 512 << 20,
            object_size: 32 << 20,
            small_ops: 20,
            chunker: ChunkerParams::default(),
            zstd_level: Some(3),
            change_rate: 0.05,
        }
    }
}

/// Median latencies of the small operations, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub put_ms: f64,
    pub replace_ms: f64,
    pub delete_ms: f64,
    pub list_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizingReport {
    pub share: String,
    pub repository: String,
    pub share_files: u64,
    pub share_bytes: u64,
    pub walk_files_per_s: f64,
    pub share_read_mb_per_s: f64,
    pub share_read_sample_bytes: u64,
    pub export_write_mb_per_s: f64,
    pub export_read_mb_per_s: f64,
    pub export_object_bytes: u64,
    pub export_latency: Latencies,
    pub cpu_mb_per_s_one_core: f64,
    pub cpu_mb_per_s_all_cores: f64,
    pub cores: usize,
    /// Stored bytes per logical byte on the sample (1.0: incompressible).
    pub compression_ratio: f64,
    /// `share walk`, `share read`, `cpu` or `export write`.
    pub bound: String,
    pub full_backup_secs: f64,
    pub incremental_backup_secs: f64,
    pub change_rate: f64,
}

pub(crate) fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 / 1e6 / secs
}

/// Measures every stage, then names the one that bounds a backup.
pub fn run(
    share: &Path,
    store: &Arc<dyn ObjectStore>,
    opts: &SizingOptions,
) -> Result<SizingReport> {
    let shared = share::measure(share, opts)?;
    let export = export::measure(store, opts)?;
    let cpu = cpu::measure(&shared.sample, opts);

    // Every rate in logical bytes per second of the share.
    let export_logical = export.write_mb_per_s / cpu.ratio.max(1e-6);
    let rates = [
        ("share read", shared.read_mb_per_s),
        ("cpu", cpu.all_cores),
        ("export write", export_logical),
    ];
    let (stage, rate) = rates.iter().copied().filter(|(_, r)| *r > 0.0).fold(
        ("share read", f64::INFINITY),
        |best, x| if x.1 < best.1 { x } else { best },
    );
    let walk_secs = if shared.walk_files_per_s > 0.0 {
        shared.files as f64 / shared.walk_files_per_s
    } else {
        0.0
    };
    let data_secs = |bytes: f64| {
        if rate.is_finite() {
            bytes / 1e6 / rate
        } else {
            0.0
        }
    };
    let full = walk_secs + data_secs(shared.bytes as f64);
    let incremental = walk_secs + data_secs(shared.bytes as f64 * opts.change_rate);
    // A share of many small files is bound by its walk, not its bytes.
    let bound = if walk_secs > data_secs(shared.bytes as f64) {
        "share walk"
    } else {
        stage
    };
    Ok(SizingReport {
        share: share.display().to_string(),
        repository: store.location().to_string(),
        share_files: shared.files,
        share_bytes: shared.bytes,
        walk_files_per_s: shared.walk_files_per_s,
        share_read_mb_per_s: shared.read_mb_per_s,
        share_read_sample_bytes: shared.read_bytes,
        export_write_mb_per_s: export.write_mb_per_s,
        export_read_mb_per_s: export.read_mb_per_s,
        export_object_bytes: opts.object_size,
        export_latency: export.latencies,
        cpu_mb_per_s_one_core: cpu.one_core,
        cpu_mb_per_s_all_cores: cpu.all_cores,
        cores: rayon::current_num_threads(),
        compression_ratio: cpu.ratio,
        bound: bound.to_string(),
        full_backup_secs: full,
        incremental_backup_secs: incremental,
        change_rate: opts.change_rate,
    })
}
