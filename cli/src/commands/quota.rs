//! `strata quota …`: a project's limits and what counts against them.

use anyhow::Result;
use serde_json::{json, Value};
use strata_engine::store::Quota;
use strata_engine::Engine;

use crate::args::{Global, QuotaCommand};
use crate::output::{self, Record};

pub const QUOTA_FIELDS: [&str; 5] = [
    "project",
    "backups",
    "backups_in_use",
    "backup_gigabytes",
    "backup_gigabytes_in_use",
];
fn limit(v: Option<u64>) -> Value {
    v.map_or(json!(-1), |v| json!(v))
}

/// `-1` is unlimited (anything else negative was refused up front).
fn parse_limit(v: i64) -> Option<u64> {
    u64::try_from(v).ok()
}

pub fn run(engine: &Engine, global: &Global, cmd: &QuotaCommand) -> Result<()> {
    match cmd {
        QuotaCommand::Show => {
            let quota = engine.effective_quota()?;
            let used = engine.quota_usage()?;
            let values = [
                json!(engine.project()),
                limit(quota.backups),
                json!(used.backups),
                limit(quota.backup_gigabytes),
                json!(used.backup_gigabytes),
            ];
            let rec: Record = QUOTA_FIELDS.into_iter().zip(values).collect();
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
