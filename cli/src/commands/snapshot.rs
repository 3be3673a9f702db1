//! `strata share snapshot …`

use anyhow::Result;
use serde_json::json;
use strata_engine::store::Snapshot;
use strata_engine::{Engine, NewSnapshot};

use super::{opt, time};
use crate::args::{Global, SnapshotCommand};
use crate::output::{self, Record};

/// The fields of a snapshot, as `share snapshot show` prints them.
pub const FIELDS: [&str; 11] = [
    "created_at",
    "description",
    "fail_reason",
    "id",
    "kind",
    "name",
    "path",
    "project_id",
    "share_id",
    "status",
    "updated_at",
];

pub fn record(s: &Snapshot) -> Record {
    let values = [
        time(Some(s.created_at)),
        opt(&s.description),
        opt(&s.fail_reason),
        json!(s.id.to_string()),
        json!(s.kind.as_str()),
        opt(&s.name),
        json!(s.path),
        json!(s.project),
        json!(s.share_id.to_string()),
        json!(s.status.as_str()),
        time(s.updated_at),
    ];
    FIELDS.into_iter().zip(values).collect()
}

pub const LIST: &[(&str, &str)] = &[
    ("ID", "id"),
    ("Name", "name"),
    ("Share ID", "share_id"),
    ("Status", "status"),
    ("Created At", "created_at"),
];

pub fn run(engine: &Engine, global: &Global, cmd: &SnapshotCommand) -> Result<()> {
    match cmd {
        SnapshotCommand::Create {
            share,
            name,
            description,
            path,
            created_at,
        } => {
            let share = engine.find_share(share)?;
            let new = NewSnapshot {
                name: name.as_deref(),
                description: description.as_deref(),
                path: path.as_deref(),
                created_at: created_at
                    .as_deref()
                    .map(|t| super::parse_time("--created-at", t))
                    .transpose()?,
            };
            let snapshot = engine.create_snapshot(&share, &new)?;
            output::show(global.format, &global.columns, &record(&snapshot))
        }
        SnapshotCommand::List { share } => {
            let share = share.as_deref().map(|s| engine.find_share(s)).transpose()?;
            let snapshots = engine.list_snapshots(share.as_ref())?;
            let records: Vec<Record> = snapshots.iter().map(record).collect();
            output::list(global.format, &global.columns, LIST, &records)
        }
        SnapshotCommand::Show { snapshot } => {
            let snapshot = engine.find_snapshot(snapshot)?;
            output::show(global.format, &global.columns, &record(&snapshot))
        }
        SnapshotCommand::Delete { snapshots } => {
            for name in snapshots {
                let snapshot = engine.find_snapshot(name)?;
                engine.delete_snapshot(&snapshot)?;
            }
            Ok(())
        }
    }
}
