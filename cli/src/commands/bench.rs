//! `strata bench`: measures what bounds a backup of a share to the
//! configured repository, and estimates its duration.

use std::path::Path;

use anyhow::Result;
use serde_json::json;
use strata_engine::bench::{self as sizing, SizingOptions};
use strata_engine::{EngineConfig, Repository};

use crate::args::{BenchArgs, Global};
use crate::output::{self, Record};

fn round(v: f64, places: i32) -> serde_json::Value {
    let f = 10f64.powi(places);
    json!((v * f).round() / f)
}

pub fn run(config: &EngineConfig, global: &Global, args: &BenchArgs) -> Result<()> {
    let backend = strata_engine::repository::connect(&config.repository, config.repository_modes)?;
    // An existing repository's own settings win over the config's defaults
    // for new repositories.
    let repo_config = match Repository::open(backend.clone()) {
        Ok(repo) => repo.config().clone(),
        Err(strata_engine::Error::NotFound { .. }) => config.new_repository.clone(),
        Err(e) => return Err(e.into()),
    };
    let opts = SizingOptions {
        read_sample: args.read_mib << 20,
        write_bytes: args.write_mib << 20,
        object_size: repo_config.pack_target_size,
        chunker: repo_config.chunker,
        zstd_level: config
            .compression
            .unwrap_or(repo_config.compression)
            .zstd_level(),
        change_rate: args.change_rate,
        ..SizingOptions::default()
    };
    if !(0.0..=1.0).contains(&opts.change_rate) {
        anyhow::bail!(strata_engine::Error::InvalidArgument(
            "--change-rate must be between 0 and 1".into()
        ));
    }
    eprintln!(
        "measuring {} against {} …",
        args.share.display(),
        backend.location()
    );
    let r = sizing::run(Path::new(&args.share), &backend, &opts)?;
    let rec: Record = vec![
        ("share", json!(r.share)),
        ("repository", json!(r.repository)),
        ("share_files", json!(r.share_files)),
        ("share_bytes", json!(r.share_bytes)),
        ("walk_files_per_s", round(r.walk_files_per_s, 0)),
        ("share_read_mb_per_s", round(r.share_read_mb_per_s, 1)),
        ("share_read_sample_bytes", json!(r.share_read_sample_bytes)),
        ("export_write_mb_per_s", round(r.export_write_mb_per_s, 1)),
        ("export_read_mb_per_s", round(r.export_read_mb_per_s, 1)),
        ("export_object_bytes", json!(r.export_object_bytes)),
        ("export_put_ms", round(r.export_latency.put_ms, 3)),
        ("export_replace_ms", round(r.export_latency.replace_ms, 3)),
        ("export_delete_ms", round(r.export_latency.delete_ms, 3)),
        ("export_list_ms", round(r.export_latency.list_ms, 3)),
        ("cpu_mb_per_s_one_core", round(r.cpu_mb_per_s_one_core, 1)),
        ("cpu_mb_per_s_all_cores", round(r.cpu_mb_per_s_all_cores, 1)),
        ("cores", json!(r.cores)),
        ("compression_ratio", round(r.compression_ratio, 3)),
        ("bound", json!(r.bound)),
        ("full_backup_secs", round(r.full_backup_secs, 1)),
        (
            "incremental_backup_secs",
            round(r.incremental_backup_secs, 1),
        ),
        ("change_rate", json!(r.change_rate)),
    ];
    output::show(global.format, &global.columns, &rec)
}
