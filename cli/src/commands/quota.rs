//! `strata quota …`, `strata check` and `strata cleanup`.

use anyhow::Result;
use serde_json::{json, Value};
use strata_engine::catalog::Quota;
use strata_engine::Engine;

use crate::args::{Global, QuotaCommand};
use crate::output::{self, Record};

fn limit(v: Option<u64>) -> Value {
    v.map_or(json!(-1), |v| json!(v))
}

/// `-1` (or any negative) is unlimited.
fn parse_limit(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

pub fn run(engine: &Engine, global: &Global, cmd: &QuotaCommand) -> Result<()> {
    match cmd {
        QuotaCommand::Show => {
            let quota = engine.effective_quota()?;
            let used = engine.quota_usage()?;
            let rec: Record = vec![
                ("project", json!(engine.project())),
                ("backups", limit(quota.backups)),
                ("backups_in_use", json!(used.backups)),
                ("backup_gigabytes", limit(quota.backup_gigabytes)),
                ("backup_gigabytes_in_use", json!(used.backup_gigabytes)),
            ];
            output::show(global.format, &global.columns, &rec)
        }
        QuotaCommand::Set {
            backups,
            backup_gigabytes,
        } => {
            let mut quota: Quota = engine.effective_quota()?;
            if let Some(v) = backups {
                quota.backups = parse_limit(*v);
            }
            if let Some(v) = backup_gigabytes {
                quota.backup_gigabytes = parse_limit(*v);
            }
            engine.set_quota(&quota)?;
            eprintln!(
                "project {}: backups {}, backup_gigabytes {}",
                engine.project(),
                limit(quota.backups),
                limit(quota.backup_gigabytes)
            );
            Ok(())
        }
    }
}

pub fn cleanup(engine: &mut Engine, global: &Global, wait: u64) -> Result<()> {
    let report = engine.cleanup(Some(std::time::Duration::from_secs(wait)))?;
    for line in &report.operations {
        eprintln!("cleaned: {line}");
    }
    if let Some(why) = &report.packs_skipped {
        eprintln!("packs not collected: {why}");
    }
    let rec: Record = vec![
        ("operations_cleaned", json!(report.operations.len())),
        ("temp_files_removed", json!(report.temp_files)),
        ("packs_removed", json!(report.packs_removed)),
        ("packs_skipped", json!(report.packs_skipped)),
    ];
    output::show(global.format, &global.columns, &rec)
}

/// Exit status of `strata check`: 0 when clean, 7 (corruption) otherwise.
pub fn check(engine: &Engine, global: &Global) -> Result<u8> {
    let report = engine.check()?;
    let rec: Record = vec![
        ("clean", json!(report.is_clean())),
        ("bad_packs", json!(report.bad_packs)),
        ("unindexed_packs", json!(report.unindexed_packs)),
        ("missing_layers", json!(report.missing_layers)),
        ("temp_files", json!(report.temp_files)),
        ("dead_operations", json!(report.dead_operations)),
    ];
    output::show(global.format, &global.columns, &rec)?;
    Ok(if report.is_clean() { 0 } else { 7 })
}
