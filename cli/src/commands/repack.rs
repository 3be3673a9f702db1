//! `strata repack`

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use strata_engine::{Engine, Error, Progress, RepackReport};

use crate::args::Global;
use crate::output::{self, Record};
use crate::progress::Bar;

/// The fields `strata repack` prints.
pub const FIELDS: [&str; 9] = [
    "dry_run",
    "packs_repacked",
    "bytes_before",
    "bytes_copied",
    "bytes_freed",
    "packs_written",
    "damaged",
    "skipped",
    "approximate",
];

/// `10%` or `10` as a percentage.
pub fn percent(s: &str) -> Result<u32, Error> {
    s.trim_end_matches('%')
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("--max-unused is a percentage (0-100%), not {s:?}"))
        })
}

/// Runs a repack with a progress bar; the caller prints or folds the report.
pub fn run_repack(
    engine: &Engine,
    max_unused: u32,
    dry_run: bool,
    wait: u64,
) -> Result<RepackReport> {
    let progress = Arc::new(Progress::default());
    let bar = Bar::start(Arc::clone(&progress), "repack");
    let report = engine.repack(max_unused, dry_run, Duration::from_secs(wait), &progress);
    drop(bar);
    let report = report?;
    if let Some(why) = &report.skipped {
        eprintln!("nothing repacked: {why}");
    }
    Ok(report)
}

pub fn run(
    engine: &Engine,
    global: &Global,
    max_unused: &str,
    dry_run: bool,
    wait: u64,
) -> Result<u8> {
    let report = run_repack(engine, percent(max_unused)?, dry_run, wait)?;
    let values = [
        json!(dry_run),
        json!(report.packs_repacked),
        json!(report.bytes_before),
        json!(report.bytes_copied),
        json!(report.bytes_before.saturating_sub(report.bytes_copied)),
        json!(report.packs_written),
        json!(report.damaged),
        json!(report.skipped),
        json!(report.approximate),
    ];
    let rec: Record = FIELDS.into_iter().zip(values).collect();
    output::show(global.format, &global.columns, &rec)?;
    Ok(match (&report.skipped, report.damaged.is_empty()) {
        (Some(_), _) => 5,
        (None, false) => 7,
        (None, true) => 0,
    })
}
