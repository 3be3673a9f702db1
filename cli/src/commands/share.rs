//! `strata share …`

use anyhow::Result;
use serde_json::{json, Value};
use std::sync::Arc;
use strata_engine::store::{Share, ShareStatus};

use strata_engine::{Engine, NewShare, Progress};

use super::time;
use crate::args::{Global, ShareCommand};
use crate::output::{self, Record};
use crate::progress::Bar;

/// The fields of a share, as `share show` prints them.
pub const FIELDS: [&str; 12] = [
    "adopted",
    "created_at",
    "fail_reason",
    "id",
    "name",
    "path",
    "project_id",
    "share_proto",
    "size",
    "source_backup_id",
    "status",
    "updated_at",
];

pub fn record(s: &Share) -> Record {
    let values = [
        json!(s.adopted),
        time(Some(s.created_at)),
        json!(s.fail_reason),
        json!(s.id.to_string()),
        json!(s.name),
        json!(s.path),
        json!(s.project),
        json!(s.protocol),
        s.size_gib.map_or(Value::Null, |v| json!(v)),
        json!(s.source_backup_id.map(|b| b.to_string())),
        json!(s.status.as_str()),
        time(s.updated_at),
    ];
    FIELDS.into_iter().zip(values).collect()
}

pub const LIST: &[(&str, &str)] = &[
    ("ID", "id"),
    ("Name", "name"),
    ("Size", "size"),
    ("Share Proto", "share_proto"),
    ("Status", "status"),
    ("Path", "path"),
];

pub fn run(engine: &Engine, global: &Global, cmd: &ShareCommand) -> Result<()> {
    match cmd {
        ShareCommand::Create {
            name,
            path,
            size,
            protocol,
            backup_id,
        } => {
            let new = NewShare {
                id: None,
                name,
                path,
                size_gib: *size,
                protocol,
            };
            let share = match backup_id {
                None => engine.create_share(&new)?,
                Some(backup) => {
                    let backup = engine.find_backup(backup)?;
                    let progress = Arc::new(Progress::default());
                    let bar = Bar::start(Arc::clone(&progress), "restore");
                    let made = engine.create_share_from_backup(&new, &backup, &progress);
                    drop(bar);
                    made?
                }
            };
            output::show(global.format, &global.columns, &record(&share))
        }
        ShareCommand::Snapshot(cmd) => super::snapshot::run(engine, global, cmd),
        ShareCommand::List { all_projects } => {
            let shares = engine.list_shares(*all_projects)?;
            let records: Vec<Record> = shares.iter().map(record).collect();
            output::list(global.format, &global.columns, LIST, &records)
        }
        ShareCommand::Show { share } => {
            let share = engine.find_share(share)?;
            output::show(global.format, &global.columns, &record(&share))
        }
        ShareCommand::Set {
            share,
            status,
            path,
        } => {
            let mut share = engine.find_share(share)?;
            if let Some(path) = path {
                share = engine.confirm_share_path(&share, path)?;
                eprintln!("share {}: path {} (confirmed)", share.name, share.path);
            }
            if let Some(status) = status {
                let to = ShareStatus::parse(status)?;
                let before = engine.set_share_status(&share, to)?;
                eprintln!(
                    "share {}: status {} -> {}",
                    share.name,
                    before.as_str(),
                    to.as_str()
                );
            }
            Ok(())
        }
        ShareCommand::Delete { shares } => {
            for name in shares {
                let share = engine.find_share(name)?;
                engine.delete_share(&share)?;
            }
            Ok(())
        }
    }
}
