//! `strata share …`

use anyhow::Result;
use serde_json::{json, Value};
use strata_engine::catalog::{Share, ShareStatus};
use strata_engine::{Engine, NewShare};

use super::time;
use crate::args::{Global, ShareCommand};
use crate::output::{self, Record};

pub fn record(s: &Share) -> Record {
    vec![
        ("created_at", time(Some(s.created_at))),
        ("id", json!(s.id.to_string())),
        ("name", json!(s.name)),
        ("path", json!(s.path)),
        ("project_id", json!(s.project)),
        ("share_proto", json!(s.protocol)),
        ("size", s.size_gib.map_or(Value::Null, |v| json!(v))),
        ("status", json!(s.status.as_str())),
        ("updated_at", time(s.updated_at)),
    ]
}

const LIST: &[(&str, &str)] = &[
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
        } => {
            let share = engine.create_share(&NewShare {
                name,
                path,
                size_gib: *size,
                protocol,
            })?;
            output::show(global.format, &global.columns, &record(&share))
        }
        ShareCommand::List { all_projects } => {
            let shares = engine.list_shares(*all_projects)?;
            let records: Vec<Record> = shares.iter().map(record).collect();
            output::list(global.format, &global.columns, LIST, &records)
        }
        ShareCommand::Show { share } => {
            let share = engine.find_share(share)?;
            output::show(global.format, &global.columns, &record(&share))
        }
        ShareCommand::Set { share, status } => {
            let share = engine.find_share(share)?;
            let to = ShareStatus::parse(status)?;
            let before = engine.set_share_status(&share, to)?;
            eprintln!(
                "share {}: status {} -> {}",
                share.name,
                before.as_str(),
                to.as_str()
            );
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
