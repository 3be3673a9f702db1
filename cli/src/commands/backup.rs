//! `strata backup …`

use std::sync::Arc;

use anyhow::Result;
use serde_json::json;
use strata_engine::backup::exclude::Excluder;
use strata_engine::select::Selection;
use strata_engine::store::{BackupFilter, BackupRecord, BackupStatus, ShareStatus};
use strata_engine::{
    BackupView, CreateBackup, Engine, Error, Progress, RestoreRequest, RestoreTarget,
};
use strata_format::config::CompressionSetting;
use strata_format::layer::Exclusions;

use super::{opt, time, with_flag};
use crate::args::{BackupCommand, ExcludeArgs, Global, TypeCommand};
use crate::output::{self, human_bytes, Record};
use crate::progress::Bar;

/// Exit status of a backup that finished but skipped paths.
pub const EXIT_PARTIAL: u8 = 3;

/// The fields of a backup, as `backup show` prints them.
pub const FIELDS: [&str; 30] = [
    "availability_zone",
    "backup_type",
    "created_at",
    "data_timestamp",
    "description",
    "fail_reason",
    "has_dependent_backups",
    "host",
    "id",
    "is_incremental",
    "name",
    "parent_id",
    "progress",
    "restore_progress",
    "share_id",
    "size",
    "snapshot_id",
    "status",
    "topic",
    "updated_at",
    "file_count",
    "dir_count",
    "skipped_count",
    "logical_bytes",
    "new_bytes",
    "stored_bytes",
    "duration_ms",
    "read_bytes",
    "changed_count",
    "deleted_count",
];

pub fn record(view: &BackupView) -> Record {
    let b = &view.record;
    let values = [
        opt(&b.availability_zone),
        opt(&b.backup_type),
        time(Some(b.created_at)),
        time(b.data_timestamp),
        opt(&b.description),
        opt(&b.fail_reason),
        json!(view.has_dependent_backups),
        opt(&b.host),
        json!(b.id.to_string()),
        json!(b.is_incremental),
        opt(&b.name),
        b.parent_id
            .map_or(serde_json::Value::Null, |p| json!(p.to_string())),
        json!(b.progress),
        json!(b.restore_progress),
        json!(b.share_id.to_string()),
        json!(b.size_gib),
        opt(&view.snapshot_id),
        json!(b.status.as_str()),
        opt(&b.topic),
        time(b.updated_at),
        json!(b.file_count),
        json!(b.dir_count),
        json!(b.skipped_count),
        json!(b.logical_bytes),
        json!(b.new_bytes),
        json!(b.stored_bytes),
        json!(b.duration_ms),
        json!(b.read_bytes),
        json!(b.changed_count),
        json!(b.deleted_count),
    ];
    FIELDS.into_iter().zip(values).collect()
}

/// The fields of `backup export`, as Cinder's `backup-export` prints them.
pub const EXPORT_FIELDS: [&str; 2] = ["backup_service", "backup_url"];

pub const PROBLEMS: &[(&str, &str)] = &[("Path", "path"), ("Problem", "problem")];

pub const LIST: &[(&str, &str)] = &[
    ("ID", "id"),
    ("Name", "name"),
    ("Share ID", "share_id"),
    ("Status", "status"),
    ("Progress", "progress"),
    ("Restore Progress", "restore_progress"),
    ("Size", "size"),
    ("Created At", "created_at"),
    ("Is Incremental", "is_incremental"),
    ("Backup Type", "backup_type"),
];

/// The columns of `backup type list`.
pub const TYPE_LIST: &[(&str, &str)] = &[
    ("Name", "name"),
    ("Backup Type Name", "backup_type_name"),
    ("Support Restore To Target", "support_restore_to_target"),
    ("Compression", "compression"),
];

/// `--backup-options KEY=VALUE` as the engine reads them.
fn parse_backup_options(options: &[String]) -> Result<strata_engine::validate::BackupOptions> {
    let mut pairs = Vec::with_capacity(options.len());
    for option in options {
        let Some(pair) = option.split_once('=') else {
            return Err(Error::InvalidArgument(format!(
                "backup option {option:?} is not KEY=VALUE (backup_type=NAME, incremental=true)"
            ))
            .into());
        };
        pairs.push(pair);
    }
    Ok(strata_engine::validate::backup_options(pairs)?)
}

/// `backup type list`.
fn list_types(engine: &Engine, global: &Global) -> Result<u8> {
    let records: Vec<Record> = engine
        .backup_types()
        .iter()
        .map(|t| {
            let compression = match t.compression {
                None => "(default)".to_string(),
                Some(CompressionSetting::None) => "none".to_string(),
                Some(CompressionSetting::Zstd { level }) => format!("zstd {level}"),
            };
            [
                ("name", json!(t.name)),
                ("backup_type_name", json!(t.display_name)),
                (
                    "support_restore_to_target",
                    json!(t.support_restore_to_target),
                ),
                ("compression", json!(compression)),
            ]
            .into_iter()
            .collect()
        })
        .collect();
    output::list(global.format, &global.columns, TYPE_LIST, &records)?;
    Ok(0)
}

fn summary(b: &BackupRecord) {
    let secs = (b.duration_ms as f64 / 1000.0).max(1e-3);
    // Nothing new: every byte was stored already (no ratio to print).
    let dedup = match b.new_bytes {
        0 => "all already stored".to_string(),
        new => format!("{:.2}x", b.logical_bytes as f64 / new as f64),
    };
    let compression = if b.stored_bytes > 0 {
        b.new_bytes as f64 / b.stored_bytes as f64
    } else {
        1.0
    };
    eprintln!(
        "backup {}: {} files, {} dirs, {} logical, {} new, {} stored; dedup {dedup}, \
         compression {compression:.2}x; {secs:.2} s, {:.1} MB/s",
        b.id,
        b.file_count,
        b.dir_count,
        human_bytes(b.logical_bytes),
        human_bytes(b.new_bytes),
        human_bytes(b.stored_bytes),
        b.logical_bytes as f64 / 1e6 / secs
    );
    if let Some(parent) = b.parent_id {
        eprintln!(
            "incremental on {parent}: {} changed, {} deleted, {} read",
            b.changed_count,
            b.deleted_count,
            human_bytes(b.read_bytes)
        );
    }
}

/// Prints a backup as `backup show` does.
/// The fields `backup show` adds to [`FIELDS`]: what the backup left out,
/// and how that differs from its parent's rules.
pub const SHOW_EXTRA: [&str; 2] = ["exclusions", "exclusions_changed"];

fn show(engine: &Engine, global: &Global, b: BackupRecord) -> Result<u8> {
    let mut fields = record(&engine.backup_view(b.clone())?);
    let (own, parent) = match engine.backup_exclusions(&b) {
        Ok((own, parent)) => (Some(own), parent),
        // A backup without a layer yet (creating, error) left nothing out.
        Err(Error::InvalidState(_)) => (None, None),
        Err(e) => return Err(e.into()),
    };
    let changed = match (&own, &parent) {
        (Some(own), Some(parent)) => json!(exclusion_change(parent, own)),
        _ => serde_json::Value::Null,
    };
    fields.push((
        SHOW_EXTRA[0],
        own.map_or(serde_json::Value::Null, |e| json!(describe(&e))),
    ));
    fields.push((SHOW_EXTRA[1], changed));
    output::show(global.format, &global.columns, &fields)?;
    Ok(0)
}

/// A backup's exclusion rules and count, in one line.
fn describe(e: &Exclusions) -> String {
    let mut parts: Vec<String> = e
        .patterns
        .iter()
        .map(|p| format!("--exclude {p}"))
        .collect();
    if e.caches {
        parts.push("--exclude-caches".into());
    }
    parts.extend(
        e.if_present
            .iter()
            .map(|n| format!("--exclude-if-present {n}")),
    );
    match parts.is_empty() {
        true => "none".into(),
        false => format!("{} ({} paths left out)", parts.join(" "), e.excluded),
    }
}

/// How an incremental's rules differ from its parent's: `+RULE` added,
/// `-RULE` dropped; `none` when they are the same.
fn exclusion_change(parent: &Exclusions, own: &Exclusions) -> String {
    let rules = |e: &Exclusions| -> Vec<String> {
        let mut r: Vec<String> = e
            .patterns
            .iter()
            .map(|p| format!("--exclude {p}"))
            .collect();
        r.extend(e.caches.then(|| "--exclude-caches".to_string()));
        r.extend(
            e.if_present
                .iter()
                .map(|n| format!("--exclude-if-present {n}")),
        );
        r
    };
    let (before, after) = (rules(parent), rules(own));
    let mut change: Vec<String> = after
        .iter()
        .filter(|r| !before.contains(r))
        .map(|r| format!("+{r}"))
        .collect();
    change.extend(
        before
            .iter()
            .filter(|r| !after.contains(r))
            .map(|r| format!("-{r}")),
    );
    match change.is_empty() {
        true => "none".into(),
        false => change.join(", "),
    }
}

/// The exclusions of `backup create`'s flags (files read), checked.
fn exclusion_rules(args: &ExcludeArgs) -> Result<Exclusions> {
    let mut patterns = args.exclude.clone();
    for file in &args.exclude_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Error::InvalidArgument(format!("--exclude-file {}: {e}", file.display()))
        })?;
        patterns.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    let rules = Exclusions {
        patterns,
        caches: args.exclude_caches,
        if_present: args.exclude_if_present.clone(),
        excluded: 0,
    };
    Excluder::new(&rules)?;
    Ok(rules)
}

/// Runs a backup command; returns the process exit status.
pub fn run(engine: &Engine, global: &Global, cmd: &BackupCommand) -> Result<u8> {
    match cmd {
        BackupCommand::Create {
            name,
            description,
            incremental,
            parent,
            rehash,
            force,
            allow_root_change,
            snapshot,
            backup_options,
            exclusions,
            share,
        } => {
            let options = parse_backup_options(backup_options)?;
            let exclusions = exclusion_rules(exclusions)?;
            let incremental = *incremental || options.incremental == Some(true);
            let backup_type = options.backup_type;
            let (share, registered) =
                engine.share_for_backup(share, incremental || parent.is_some())?;
            if registered {
                eprintln!(
                    "registered {} as share {} ({})",
                    share.path, share.name, share.id
                );
            }
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(Arc::clone(&progress), "backup");
            let req = CreateBackup {
                name: name.clone(),
                description: description.clone(),
                incremental,
                incremental_if_possible: false,
                parent: parent.clone(),
                rehash: *rehash,
                force: *force,
                allow_root_change: *allow_root_change,
                snapshot: snapshot.clone(),
                backup_type,
                id: None,
                exclusions,
            };
            let done =
                engine
                    .create_backup(&share, &req, &progress)
                    .map_err(|e| match share.status {
                        ShareStatus::InUse if !*force => with_flag(e, "backup create --force"),
                        _ => e,
                    });
            drop(bar);
            let done = done?;
            for p in &done.problems {
                eprintln!("warning: {}: {}", p.path, p.problem);
            }
            summary(&done.backup);
            let view = engine.backup_view(done.backup.clone())?;
            output::show(global.format, &global.columns, &record(&view))?;
            Ok(if done.backup.skipped_count > 0 {
                EXIT_PARTIAL
            } else {
                0
            })
        }
        BackupCommand::Type(TypeCommand::List) => list_types(engine, global),
        BackupCommand::List {
            share,
            name,
            status,
            all_projects,
        } => {
            let share_id = match share {
                Some(s) => Some(engine.find_share(s)?.id),
                None => None,
            };
            let status = status.as_deref().map(BackupStatus::parse).transpose()?;
            let filter = BackupFilter {
                project: (!all_projects).then_some(engine.project()),
                share_id,
                name: name.as_deref(),
                status,
            };
            let backups = engine.store().list_backups(&filter)?;
            let unknown = engine.unknown_layers()?;
            if unknown > 0 {
                eprintln!(
                    "warning: this catalog knows no backup, but the repository {} holds {unknown} \
                     backup layer(s): the catalog was lost or belongs to another node. Use that \
                     node's catalog, or put back a copy of this one; `strata cleanup` never \
                     removes what those layers reference.",
                    engine.repository().location()
                );
            }
            let records: Vec<Record> = backups
                .into_iter()
                .map(|b| engine.backup_view(b).map(|v| record(&v)))
                .collect::<Result<_, _>>()?;
            output::list(global.format, &global.columns, LIST, &records)?;
            Ok(0)
        }
        BackupCommand::Ls {
            backup,
            path,
            recursive,
            long,
        } => super::browse::ls(engine, global, backup, path.as_deref(), *recursive, *long),
        BackupCommand::Diff {
            first,
            second,
            path,
        } => super::browse::diff(engine, global, first, second, path.as_deref()),
        BackupCommand::Find {
            pattern,
            share,
            since,
            until,
        } => super::browse::find(engine, global, pattern, share.as_deref(), since, until),
        BackupCommand::Dump { backup, path } => super::browse::dump(engine, backup, path),
        BackupCommand::Show {
            backup,
            problems: true,
        } => {
            let b = engine.find_backup(backup)?;
            let rows: Vec<Record> = engine
                .store()
                .backup_problems(b.id)?
                .into_iter()
                .map(|p| vec![("path", json!(p.path)), ("problem", json!(p.problem))])
                .collect();
            output::list(global.format, &global.columns, PROBLEMS, &rows)?;
            Ok(0)
        }
        BackupCommand::Show { backup, .. } => {
            let b = engine.find_backup(backup)?;
            show(engine, global, b)
        }
        BackupCommand::Set {
            backup,
            name,
            description,
            state,
        } => {
            let b = engine.find_backup(backup)?;
            let state = state.as_deref().map(BackupStatus::parse).transpose()?;
            if name.is_some() || description.is_some() {
                engine.rename_backup(&b, name.as_deref(), description.as_deref())?;
            }
            if let Some(to) = state {
                let before = engine.reset_backup_state(&b, to)?;
                eprintln!(
                    "backup {}: status {} -> {}",
                    b.id,
                    before.as_str(),
                    to.as_str()
                );
            }
            Ok(0)
        }
        BackupCommand::Restore {
            backup,
            target_share,
            target_dir,
            include,
            exclude,
        } => {
            let selection = Selection::new(include, exclude)?;
            let b = engine.find_backup(backup)?;
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(Arc::clone(&progress), "restore");
            let target = match (target_share, target_dir) {
                (Some(share), _) => RestoreTarget::Share(share.clone()),
                (None, Some(dir)) => RestoreTarget::Dir(dir.clone()),
                (None, None) => RestoreTarget::Source,
            };
            let req = RestoreRequest { target, selection };
            let started = std::time::Instant::now();
            let done = engine.restore_backup(&b, &req, &progress);
            drop(bar);
            let done = done?;
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            eprintln!(
                "restored backup {}: {} files, {} in {secs:.2} s ({:.1} MB/s), every chunk and file verified",
                b.id,
                done.files,
                human_bytes(done.bytes),
                done.bytes as f64 / 1e6 / secs
            );
            Ok(0)
        }
        BackupCommand::Export { backup } => {
            let b = engine.find_backup(backup)?;
            let exported = engine.export_backup(&b)?;
            let values = [json!(exported.backup_service), json!(exported.backup_url)];
            let rec: Record = EXPORT_FIELDS.into_iter().zip(values).collect();
            output::show(global.format, &global.columns, &rec)?;
            Ok(0)
        }
        BackupCommand::Import {
            backup_service,
            backup_url,
        } => {
            let progress = Arc::new(Progress::default());
            let bar = Bar::start(Arc::clone(&progress), "import");
            let b = engine.import_backup(backup_service, backup_url, &progress);
            drop(bar);
            show(engine, global, b?)
        }
        BackupCommand::Prune(args) => super::prune::run(engine, global, args),
        BackupCommand::Delete { backups, force } => {
            let found: Vec<BackupRecord> = backups
                .iter()
                .map(|b| engine.find_backup(b))
                .collect::<Result<_, _>>()?;
            for b in &found {
                engine.delete_backup(b, *force).map_err(|e| {
                    match b.status == BackupStatus::Creating && !*force {
                        true => with_flag(e, "backup delete --force"),
                        false => e,
                    }
                })?;
            }
            Ok(0)
        }
    }
}
