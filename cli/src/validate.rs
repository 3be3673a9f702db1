//! Every argument is checked before anything happens: a command that will
//! fail on a bad column, name or value must fail before it commits a backup
//! (a script that retries would otherwise make duplicates).

use strata_engine::store::{BackupStatus, ShareStatus};
use strata_engine::validate::{share_name, share_size, text};
use strata_engine::Error;

use crate::args::{BackupCommand, Cli, Command, QuotaCommand, ShareCommand, SnapshotCommand};
use crate::commands::{backup, browse, quota, repack, share, snapshot, upkeep};

fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace([' ', '-'], "_")
}

/// The columns `-c` may name for `command`; `None` when it prints none.
fn columns_of(command: &Command) -> Option<Vec<&'static str>> {
    let headers = |spec: &[(&'static str, &'static str)]| spec.iter().map(|(h, _)| *h).collect();
    Some(match command {
        Command::Backup(BackupCommand::Show { problems: true, .. }) => headers(backup::PROBLEMS),
        Command::Backup(BackupCommand::Show { .. }) => {
            let mut fields = backup::FIELDS.to_vec();
            fields.extend(backup::SHOW_EXTRA);
            fields
        }
        Command::Backup(BackupCommand::Create { .. }) => backup::FIELDS.to_vec(),
        Command::Backup(BackupCommand::List { .. }) => headers(backup::LIST),
        Command::Backup(BackupCommand::Ls { long: true, .. }) => headers(browse::LS_LONG),
        Command::Backup(BackupCommand::Ls { .. }) => headers(browse::LS),
        Command::Backup(BackupCommand::Diff { .. }) => headers(browse::DIFF),
        Command::Backup(BackupCommand::Find { .. }) => headers(browse::FIND),
        Command::Share(ShareCommand::Create { .. } | ShareCommand::Show { .. }) => {
            share::FIELDS.to_vec()
        }
        Command::Share(ShareCommand::List { .. }) => headers(share::LIST),
        Command::Quota(QuotaCommand::Show) => quota::QUOTA_FIELDS.to_vec(),
        Command::Check {
            read_data,
            read_data_subset,
        } => {
            let mut fields = upkeep::CHECK_FIELDS.to_vec();
            if *read_data || read_data_subset.is_some() {
                fields.extend(upkeep::DATA_FIELDS);
            }
            fields
        }
        Command::Share(ShareCommand::Snapshot(
            SnapshotCommand::Create { .. } | SnapshotCommand::Show { .. },
        )) => snapshot::FIELDS.to_vec(),
        Command::Share(ShareCommand::Snapshot(SnapshotCommand::List { .. })) => {
            headers(snapshot::LIST)
        }
        Command::Backup(BackupCommand::Type(_)) => headers(backup::TYPE_LIST),
        Command::Catalog(_) => upkeep::REBUILD_FIELDS.to_vec(),
        Command::Backup(BackupCommand::Export { .. }) => backup::EXPORT_FIELDS.to_vec(),
        Command::Backup(BackupCommand::Import { .. }) => backup::FIELDS.to_vec(),
        Command::Cleanup { .. } => upkeep::CLEANUP_FIELDS.to_vec(),
        Command::Repack { .. } => repack::FIELDS.to_vec(),
        _ => return None,
    })
}

fn columns(cli: &Cli) -> Result<(), Error> {
    let asked = &cli.global.columns;
    if asked.is_empty() {
        return Ok(());
    }
    let Some(known) = columns_of(&cli.command) else {
        return Err(invalid(
            "this command prints no columns; -c/--column does not apply".into(),
        ));
    };
    for c in asked {
        if !known.iter().any(|k| normalise(k) == normalise(c)) {
            return Err(invalid(format!(
                "unknown column {c:?} (choose from: {})",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

fn limit(what: &str, v: Option<i64>) -> Result<(), Error> {
    match v {
        Some(v) if v < -1 => Err(invalid(format!(
            "--{what} {v}: a limit is a count of at least 0, or -1 for unlimited"
        ))),
        _ => Ok(()),
    }
}

/// Checks every argument of `cli`; a bad one is `InvalidArgument` (exit 2).
pub fn arguments(cli: &Cli) -> Result<(), Error> {
    columns(cli)?;
    text("project", cli.global.project.as_deref(), false)?;
    match &cli.command {
        Command::Backup(BackupCommand::Create {
            name, description, ..
        }) => {
            text("backup name", name.as_deref(), false)?;
            text("description", description.as_deref(), true)?;
        }
        Command::Backup(BackupCommand::Set {
            name,
            description,
            state,
            ..
        }) => {
            text("backup name", name.as_deref(), false)?;
            text("description", description.as_deref(), true)?;
            state.as_deref().map(BackupStatus::parse).transpose()?;
        }
        Command::Backup(BackupCommand::List { status, .. }) => {
            status.as_deref().map(BackupStatus::parse).transpose()?;
        }
        Command::Share(ShareCommand::Create {
            name,
            protocol,
            size,
            ..
        }) => {
            share_name(name)?;
            share_size(*size)?;
            text("protocol", Some(protocol), false)?;
        }
        Command::Share(ShareCommand::Set {
            status: Some(status),
            ..
        }) => {
            ShareStatus::parse(status)?;
        }
        Command::Share(ShareCommand::Snapshot(SnapshotCommand::Create {
            name,
            description,
            ..
        })) => {
            text("snapshot name", name.as_deref(), false)?;
            text("description", description.as_deref(), true)?;
        }
        Command::Repack { max_unused, .. } => {
            repack::percent(max_unused)?;
        }
        Command::Check {
            read_data_subset: Some(subset),
            ..
        } => {
            strata_engine::DataSubset::parse(subset)?;
        }
        Command::Quota(QuotaCommand::Set {
            backups,
            backup_gigabytes,
        }) => {
            limit("backups", *backups)?;
            limit("backup-gigabytes", *backup_gigabytes)?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(limit("backups", Some(-1)).is_ok());
        assert!(limit("backups", Some(0)).is_ok());
        assert!(limit("backups", Some(-5)).is_err());
        assert!(limit("backups", None).is_ok());
    }
}
