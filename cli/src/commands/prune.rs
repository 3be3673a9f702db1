//! `strata backup prune`

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use strata_engine::{Engine, Error, Progress, PruneRequest, Retention};

use super::time;
use crate::args::{Global, PruneArgs};
use crate::output::{self, human_bytes, Record};
use crate::progress::Bar;

/// The columns of the kept/removed table.
const COLUMNS: [(&str, &str); 6] = [
    ("ID", "id"),
    ("Name", "name"),
    ("Share ID", "share_id"),
    ("Data Timestamp", "data_timestamp"),
    ("Action", "action"),
    ("Reason", "reason"),
];

pub fn run(engine: &Engine, global: &Global, args: &PruneArgs) -> Result<u8> {
    let policy = Retention {
        last: args.keep_last,
        hourly: args.keep_hourly,
        daily: args.keep_daily,
        weekly: args.keep_weekly,
        monthly: args.keep_monthly,
        yearly: args.keep_yearly,
        within: args
            .keep_within
            .as_deref()
            .map(|d| {
                humantime::parse_duration(d).map_err(|e| {
                    Error::InvalidArgument(format!("--keep-within {d:?} is not a duration: {e}"))
                })
            })
            .transpose()?,
    };
    let max_unused = match &args.max_unused {
        Some(p) => Some(super::repack::percent(p)?),
        None => Some(engine.config().repack_max_unused_percent.unwrap_or(20)),
    };
    let req = PruneRequest {
        share: args.share.clone(),
        policy,
        dry_run: args.dry_run,
        wait: Duration::from_secs(args.wait),
        max_unused_percent: max_unused,
    };
    let progress = Arc::new(Progress::default());
    let bar = Bar::start(Arc::clone(&progress), "prune");
    let report = engine.prune(&req, &progress);
    drop(bar);
    let report = report.map_err(|e| match e {
        Error::InvalidArgument(m) if m.contains("no retention rule") => Error::InvalidArgument(
            format!("{m} (`--keep-last`, `--keep-daily`, … or a [retention] table)"),
        ),
        other => other,
    })?;
    let rows: Vec<Record> = report
        .decisions
        .iter()
        .map(|d| {
            let (action, reason) = match (&d.kept_because, d.kept_by.is_empty()) {
                (_, false) => (
                    "keep",
                    d.kept_by
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                (Some(why), true) => ("keep", why.clone()),
                (None, true) if args.dry_run => ("would remove", String::new()),
                (None, true) => ("remove", String::new()),
            };
            vec![
                ("id", json!(d.backup.to_string())),
                ("name", json!(d.name)),
                ("share_id", json!(d.share.to_string())),
                ("data_timestamp", time(Some(d.time_ns))),
                ("action", json!(action)),
                ("reason", json!(reason)),
            ]
        })
        .collect();
    output::list(global.format, &global.columns, &COLUMNS, &rows)?;
    if !args.dry_run {
        let freed = report
            .pack_bytes_before
            .saturating_sub(report.pack_bytes_after);
        eprintln!(
            "removed {} backup(s), rewrote {} layer(s), removed {} pack(s), repacked {}; \
             packs {} -> {} ({} freed)",
            report.removed,
            report.rewritten.len(),
            report.packs_removed,
            report.repack.packs_repacked,
            human_bytes(report.pack_bytes_before),
            human_bytes(report.pack_bytes_after),
            human_bytes(freed),
        );
    }
    Ok(0)
}
