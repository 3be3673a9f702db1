//! Export and import of backup records (Cinder's `backup-export` /
//! `backup-import`): a backup survives the loss of its catalog, or moves to
//! another node's, as a record an operator keeps.
//!
//! The record (`backup_url`) is base64 of JSON: every field of the backup,
//! its chain's ids (full backup first), the share it belongs to, and the
//! repository's id and location. The bytes of the backup are not in it: an
//! import indexes from the repository what the backup's chain needs.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use strata_format::ShareId;

use super::Engine;
use crate::error::{Error, Result};
use crate::store::{BackupRecord, BackupStatus};

/// The `backup_service` of strata's records.
pub const BACKUP_SERVICE: &str = "strata";
const RECORD_VERSION: u32 = 1;

/// A backup record as handed out by [`Engine::export_backup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedBackup {
    pub backup_service: String,
    pub backup_url: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    version: u32,
    pub repository_id: String,
    pub repository: String,
    /// Full backup first, this backup last.
    pub chain: Vec<String>,
    pub backup: Fields,
    share: ShareFields,
}

/// The backup's fields, as `backup show` has them.
#[derive(Serialize, Deserialize)]
pub(super) struct Fields {
    pub id: String,
    project: String,
    share_id: String,
    name: Option<String>,
    description: Option<String>,
    size_gib: u64,
    created_at: i64,
    updated_at: Option<i64>,
    host: Option<String>,
    availability_zone: Option<String>,
    backup_type: Option<String>,
    topic: Option<String>,
    is_incremental: bool,
    parent_id: Option<String>,
    /// Absent from records exported before snapshots existed.
    #[serde(default)]
    snapshot_id: Option<String>,
    data_timestamp: Option<i64>,
    fail_reason: Option<String>,
    file_count: u64,
    dir_count: u64,
    skipped_count: u64,
    logical_bytes: u64,
    new_bytes: u64,
    stored_bytes: u64,
    duration_ms: u64,
    read_bytes: u64,
    changed_count: u64,
    deleted_count: u64,
}

#[derive(Serialize, Deserialize)]
struct ShareFields {
    id: String,
    name: String,
    path: String,
    size_gib: Option<u64>,
    protocol: String,
}

fn bad_record(why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("the backup record does not decode: {why}"))
}

fn id<T: std::str::FromStr>(what: &str, s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| bad_record(format!("{what} {s:?} is not an id")))
}

impl Fields {
    fn of(b: &BackupRecord) -> Self {
        Fields {
            id: b.id.to_string(),
            project: b.project.clone(),
            share_id: b.share_id.to_string(),
            name: b.name.clone(),
            description: b.description.clone(),
            size_gib: b.size_gib,
            created_at: b.created_at,
            updated_at: b.updated_at,
            host: b.host.clone(),
            availability_zone: b.availability_zone.clone(),
            backup_type: b.backup_type.clone(),
            topic: b.topic.clone(),
            is_incremental: b.is_incremental,
            parent_id: b.parent_id.map(|p| p.to_string()),
            snapshot_id: b.snapshot_id.map(|s| s.to_string()),
            data_timestamp: b.data_timestamp,
            fail_reason: b.fail_reason.clone(),
            file_count: b.file_count,
            dir_count: b.dir_count,
            skipped_count: b.skipped_count,
            logical_bytes: b.logical_bytes,
            new_bytes: b.new_bytes,
            stored_bytes: b.stored_bytes,
            duration_ms: b.duration_ms,
            read_bytes: b.read_bytes,
            changed_count: b.changed_count,
            deleted_count: b.deleted_count,
        }
    }

    pub(super) fn record(&self) -> Result<BackupRecord> {
        Ok(BackupRecord {
            id: id("backup id", &self.id)?,
            project: self.project.clone(),
            share_id: id::<ShareId>("share id", &self.share_id)?,
            name: self.name.clone(),
            description: self.description.clone(),
            status: BackupStatus::Available,
            progress: 100,
            restore_progress: 0,
            size_gib: self.size_gib,
            created_at: self.created_at,
            updated_at: self.updated_at,
            host: self.host.clone(),
            availability_zone: self.availability_zone.clone(),
            backup_type: self.backup_type.clone(),
            topic: self.topic.clone(),
            is_incremental: self.is_incremental,
            parent_id: self
                .parent_id
                .as_deref()
                .map(|p| id("parent id", p))
                .transpose()?,
            snapshot_id: self
                .snapshot_id
                .as_deref()
                .map(|s| id("snapshot id", s))
                .transpose()?,
            data_timestamp: self.data_timestamp,
            fail_reason: self.fail_reason.clone(),
            file_count: self.file_count,
            dir_count: self.dir_count,
            skipped_count: self.skipped_count,
            logical_bytes: self.logical_bytes,
            new_bytes: self.new_bytes,
            stored_bytes: self.stored_bytes,
            duration_ms: self.duration_ms,
            read_bytes: self.read_bytes,
            changed_count: self.changed_count,
            deleted_count: self.deleted_count,
        })
    }
}

/// The backup an exported record claims, decoded and checked as far as the
/// record alone allows (an import then checks it against its layer).
pub fn decode_backup_record(service: &str, url: &str) -> Result<BackupRecord> {
    decode(service, url)?.backup.record()
}

pub(super) fn decode(service: &str, url: &str) -> Result<Record> {
    if service != BACKUP_SERVICE {
        return Err(Error::InvalidArgument(format!(
            "backup service {service:?} is not strata's ({BACKUP_SERVICE:?})"
        )));
    }
    let json = base64::engine::general_purpose::STANDARD
        .decode(url.trim())
        .map_err(bad_record)?;
    let record: Record = serde_json::from_slice(&json).map_err(bad_record)?;
    if record.version != RECORD_VERSION {
        return Err(Error::Unsupported(format!(
            "backup record version {} (this build reads {RECORD_VERSION})",
            record.version
        )));
    }
    Ok(record)
}

impl Engine {
    /// The record of an `available` backup, to keep or to import elsewhere.
    pub fn export_backup(&self, backup: &BackupRecord) -> Result<ExportedBackup> {
        if backup.status != BackupStatus::Available {
            return Err(Error::InvalidState(format!(
                "backup {} is {}; only an available backup is exported",
                backup.id,
                backup.status.as_str()
            )));
        }
        let share = self.store.share(backup.share_id)?;
        let vault = self.vault_of(backup)?;
        let record = Record {
            version: RECORD_VERSION,
            repository_id: vault.repo.config().repository_id.to_string(),
            repository: vault.repo.location().to_string(),
            chain: self.chain(backup)?.iter().map(|b| b.to_string()).collect(),
            backup: Fields::of(backup),
            share: ShareFields {
                id: share.id.to_string(),
                name: share.name,
                path: share.path,
                size_gib: share.size_gib,
                protocol: share.protocol,
            },
        };
        let json = serde_json::to_vec(&record)
            .map_err(|e| Error::Bug(format!("encoding a backup record: {e}")))?;
        Ok(ExportedBackup {
            backup_service: BACKUP_SERVICE.into(),
            backup_url: base64::engine::general_purpose::STANDARD.encode(json),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_format::BackupId;

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for url in ["", "!!!", "bm90IGpzb24=", "eyJ2ZXJzaW9uIjo5fQ=="] {
            assert!(decode(BACKUP_SERVICE, url).is_err(), "{url}");
        }
        assert!(decode("cinder.backup.drivers.nfs", "e30=").is_err());
    }

    #[test]
    fn fields_round_trip() {
        let b = BackupRecord {
            id: BackupId([7; 16]),
            project: "p".into(),
            share_id: ShareId([8; 16]),
            name: Some("n".into()),
            description: None,
            status: BackupStatus::Available,
            progress: 100,
            restore_progress: 0,
            size_gib: 3,
            created_at: 5,
            updated_at: Some(6),
            host: Some("h".into()),
            availability_zone: None,
            backup_type: None,
            topic: Some("t".into()),
            is_incremental: true,
            parent_id: Some(BackupId([9; 16])),
            snapshot_id: Some(strata_format::SnapshotId([9; 16])),
            data_timestamp: Some(4),
            fail_reason: None,
            file_count: 1,
            dir_count: 2,
            skipped_count: 0,
            logical_bytes: 10,
            new_bytes: 11,
            stored_bytes: 12,
            duration_ms: 13,
            read_bytes: 14,
            changed_count: 15,
            deleted_count: 16,
        };
        let back = Fields::of(&b).record().unwrap();
        assert_eq!(format!("{back:?}"), format!("{b:?}"));
    }
}
