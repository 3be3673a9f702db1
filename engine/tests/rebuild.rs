//! Property: a catalog rebuilt from the repository equals the original in
//! everything the repository records, whatever sequence of backups,
//! incrementals, renames and deletes made it.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use strata_engine::repository::objects::Location;
use strata_engine::store::{BackupFilter, BackupRecord, BackupStatus};
use strata_engine::{CreateBackup, Engine, EngineConfig, Progress};

#[derive(Clone, Debug)]
enum Op {
    /// Change a file of a share, then back the share up.
    Backup {
        share: u8,
        file: u8,
        incremental: bool,
        name: Option<u8>,
    },
    /// Delete the newest backup of a share that has no dependents.
    Delete { share: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..2, 0u8..4, any::<bool>(), proptest::option::of(0u8..3))
            .prop_map(|(share, file, incremental, name)| Op::Backup { share, file, incremental, name }),
        1 => (0u8..2).prop_map(|share| Op::Delete { share }),
    ]
}

fn config(dir: &Path, catalog: &str) -> EngineConfig {
    EngineConfig::new(dir.join(catalog), Location::Posix(dir.join("repo")))
}

/// What the repository records of a backup, in a comparable form.
fn recorded(b: &BackupRecord) -> String {
    format!(
        "{} {:?} {:?} {} {:?} {:?} {} {} {} {} {} {} {} {} {} {}",
        b.id,
        b.name,
        b.description,
        b.share_id,
        b.parent_id,
        b.data_timestamp,
        b.created_at,
        b.status.as_str(),
        b.is_incremental,
        b.file_count,
        b.dir_count,
        b.logical_bytes,
        b.new_bytes,
        b.stored_bytes,
        b.changed_count,
        b.deleted_count,
    )
}

fn all(engine: &Engine) -> Vec<String> {
    let mut out: Vec<String> = engine
        .store()
        .list_backups(&BackupFilter::default())
        .unwrap()
        .iter()
        .map(recorded)
        .collect();
    out.sort();
    out
}

fn apply(engine: &Engine, dir: &Path, op: &Op, step: usize) {
    match op {
        Op::Backup {
            share,
            file,
            incremental,
            name,
        } => {
            let path = dir.join(format!("share{share}"));
            fs::create_dir_all(path.join("sub")).unwrap();
            let content = format!("step {step} of file {file}").repeat(100 + step);
            fs::write(path.join(format!("sub/f{file}")), content).unwrap();
            let (s, _) = engine
                .share_for_backup(path.to_str().unwrap(), false)
                .unwrap();
            let has_parent = !engine
                .store()
                .list_backups(&BackupFilter {
                    share_id: Some(s.id),
                    status: Some(BackupStatus::Available),
                    ..Default::default()
                })
                .unwrap()
                .is_empty();
            let req = CreateBackup {
                name: name.map(|n| format!("name-{n}")),
                description: Some(format!("step {step}")),
                incremental: *incremental && has_parent,
                ..Default::default()
            };
            engine
                .create_backup(&s, &req, &Progress::default())
                .unwrap();
        }
        Op::Delete { share } => {
            let Ok(s) = engine.find_share(&format!("share{share}")) else {
                return;
            };
            let backups = engine
                .store()
                .list_backups(&BackupFilter {
                    share_id: Some(s.id),
                    ..Default::default()
                })
                .unwrap();
            let leaf = backups
                .iter()
                .rev()
                .find(|b| engine.store().dependents(b.id).unwrap().is_empty());
            if let Some(b) = leaf {
                engine.delete_backup(&b.clone(), false).unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn a_rebuilt_catalog_equals_the_original(ops in proptest::collection::vec(op(), 1..7)) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let engine = Engine::open(config(dir, "catalog.db")).unwrap();
        for (step, op) in ops.iter().enumerate() {
            apply(&engine, dir, op, step);
        }
        let original = all(&engine);
        let report =
            Engine::rebuild_catalog(&config(dir, "rebuilt.db"), false, &Progress::default())
                .unwrap();
        prop_assert!(report.is_clean(), "{report:?}");
        let rebuilt = Engine::open(config(dir, "rebuilt.db")).unwrap();
        prop_assert_eq!(all(&rebuilt), original);
        prop_assert!(rebuilt.check().unwrap().is_clean());
    }
}
