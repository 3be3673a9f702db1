//! Upkeep of the catalog and the repository: `strata check`, `strata
//! cleanup` and `strata catalog rebuild`.

use anyhow::Result;
use serde_json::json;
use strata_engine::Engine;

use crate::args::Global;
use crate::output::{self, Record};

pub const CLEANUP_FIELDS: [&str; 7] = [
    "operations_cleaned",
    "temp_files_removed",
    "packs_removed",
    "packs_skipped",
    "packs_repacked",
    "layers_settled",
    "shares_released",
];
pub const REBUILD_FIELDS: [&str; 10] = [
    "clean",
    "packs",
    "chunks",
    "layers",
    "backups",
    "shares",
    "damaged",
    "failed_backups",
    "bytes_read",
    "repository_bytes",
];
pub const CHECK_FIELDS: [&str; 13] = [
    "clean",
    "bad_packs",
    "damaged_packs",
    "damaged_layers",
    "index_mismatches",
    "unindexed_chunks",
    "garbage_packs",
    "foreign_packs",
    "missing_layers",
    "foreign_layers",
    "temp_files",
    "dead_operations",
    "unrestorable",
];

/// The fields `check --read-data` adds.
pub const DATA_FIELDS: [&str; 8] = [
    "data_packs_read",
    "data_bytes_read",
    "data_chunks_verified",
    "data_layers_verified",
    "data_damaged_packs",
    "data_damaged_chunks",
    "data_damaged_layers",
    "affected_backups",
];

pub fn cleanup(engine: &Engine, global: &Global, wait: u64) -> Result<()> {
    let report = engine.cleanup(Some(std::time::Duration::from_secs(wait)))?;
    let repacked = match engine.config().repack_max_unused_percent {
        Some(pct) => super::repack::run_repack(engine, pct, false, wait)?.packs_repacked,
        None => 0,
    };
    for line in &report.operations {
        eprintln!("cleaned: {line}");
    }
    if let Some(why) = &report.packs_skipped {
        eprintln!("packs not collected: {why}");
    }
    let values = [
        json!(report.operations.len()),
        json!(report.temp_files),
        json!(report.packs_removed),
        json!(report.packs_skipped),
        json!(repacked),
        json!(report.layers_settled),
        json!(report.shares_released),
    ];
    let rec: Record = CLEANUP_FIELDS.into_iter().zip(values).collect();
    output::show(global.format, &global.columns, &rec)
}

/// Exit status of `strata check`: 0 when clean, 7 (corruption) otherwise.
pub fn check(
    engine: &Engine,
    global: &Global,
    read_data: bool,
    subset: Option<&str>,
) -> Result<u8> {
    let subset = subset
        .map(strata_engine::DataSubset::parse)
        .transpose()?
        .unwrap_or(strata_engine::DataSubset::All);
    let report = engine.check()?;
    let data = match read_data {
        false => None,
        true => {
            let progress = std::sync::Arc::new(strata_engine::Progress::default());
            let bar = crate::progress::Bar::start(std::sync::Arc::clone(&progress), "read");
            let started = std::time::Instant::now();
            let data = engine.check_data(subset, &progress);
            drop(bar);
            let data = data?;
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "read {} packs, {} ({:.1} MB/s), verified {} chunks and {} layers",
                data.packs_read,
                crate::output::human_bytes(data.bytes_read),
                data.bytes_read as f64 / 1e6 / secs,
                data.chunks_verified,
                data.layers_verified
            );
            Some(data)
        }
    };
    let values = [
        json!(report.is_clean()),
        json!(report.bad_packs),
        json!(report.damaged_packs),
        json!(report.damaged_layers),
        json!(report.index_mismatches),
        json!(report.unindexed_chunks),
        json!(report.garbage_packs),
        json!(report.foreign_packs),
        json!(report.missing_layers),
        json!(report.foreign_layers),
        json!(report.temp_files),
        json!(report.dead_operations),
        json!(report.unrestorable),
    ];
    let mut rec: Record = CHECK_FIELDS.into_iter().zip(values).collect();
    let clean = report.is_clean() && data.as_ref().is_none_or(|d| d.is_clean());
    if let Some(d) = &data {
        let values = [
            json!(d.packs_read),
            json!(d.bytes_read),
            json!(d.chunks_verified),
            json!(d.layers_verified),
            json!(d.damaged_packs),
            json!(d.damaged_chunks),
            json!(d.damaged_layers),
            json!(d.affected_backups),
        ];
        rec.extend(DATA_FIELDS.into_iter().zip(values));
        if let Some(ok) = rec.iter_mut().find(|(k, _)| *k == "clean") {
            ok.1 = json!(clean);
        }
    }
    output::show(global.format, &global.columns, &rec)?;
    Ok(if clean { 0 } else { 7 })
}

/// `strata catalog rebuild`; exit 7 when anything was damaged.
pub fn rebuild(config: &strata_engine::EngineConfig, global: &Global, force: bool) -> Result<u8> {
    let progress = std::sync::Arc::new(strata_engine::Progress::default());
    let bar = crate::progress::Bar::start(std::sync::Arc::clone(&progress), "rebuild");
    let report = Engine::rebuild_catalog(config, force, &progress).map_err(|e| match force {
        false => super::with_flag(e, "catalog rebuild --force"),
        true => e,
    });
    drop(bar);
    let report = report?;
    let values = [
        json!(report.is_clean()),
        json!(report.packs),
        json!(report.chunks),
        json!(report.layers),
        json!(report.backups),
        json!(report.shares),
        json!(report.damaged),
        json!(report.failed_backups),
        json!(report.bytes_read),
        json!(report.repository_bytes),
    ];
    let rec: Record = REBUILD_FIELDS.into_iter().zip(values).collect();
    output::show(global.format, &global.columns, &rec)?;
    Ok(if report.is_clean() { 0 } else { 7 })
}
