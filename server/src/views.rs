//! Records as Manila's API shows them (`api/views/share_backups.py`,
//! `api/views/shares.py`), field for field, by microversion.

use serde::Serialize;
use serde_json::{json, Map, Value};
use strata_engine::clock::iso8601;
use strata_engine::store::{BackupRecord, Share};

use crate::api::{Requested, Version, BACKUP_TYPE};
use crate::auth::Identity;

fn time(ns: Option<i64>) -> Value {
    ns.map_or(Value::Null, |ns| Value::String(iso8601(ns)))
}

/// A backup in a summary list.
pub fn backup_summary(b: &BackupRecord) -> Value {
    json!({
        "id": b.id.to_string(),
        "name": b.name,
        "share_id": b.share_id.to_string(),
        "status": b.status.as_str(),
    })
}

/// A backup in full, serialized straight from the record (a page of a
/// thousand builds no intermediate maps). `progress` and `restore_progress`
/// are strings, and `size` is in GiB, as Manila has them.
#[derive(Serialize)]
pub struct BackupDetail<'a> {
    id: String,
    name: &'a Option<String>,
    share_id: String,
    status: &'static str,
    description: &'a Option<String>,
    size: u64,
    created_at: String,
    updated_at: Option<String>,
    availability_zone: &'a Option<String>,
    progress: String,
    restore_progress: String,
    /// From 2.85.
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_type: Option<&'a Option<String>>,
    /// Administrators only.
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a Option<String>>,
}

pub fn backup_detail<'a>(b: &'a BackupRecord, req: &Requested, who: &Identity) -> BackupDetail<'a> {
    BackupDetail {
        id: b.id.to_string(),
        name: &b.name,
        share_id: b.share_id.to_string(),
        status: b.status.as_str(),
        description: &b.description,
        size: b.size_gib,
        created_at: iso8601(b.created_at),
        updated_at: b.updated_at.map(iso8601),
        availability_zone: &b.availability_zone,
        progress: b.progress.to_string(),
        restore_progress: b.restore_progress.to_string(),
        backup_type: (req.version >= BACKUP_TYPE).then_some(&b.backup_type),
        host: who.admin.then_some(&b.host),
        topic: who.admin.then_some(&b.topic),
    }
}

/// The export location of a share: its path as the node mounts it.
pub fn export_location(share: &Share) -> Value {
    json!({
        "id": share.id.to_string(),
        "path": share.path,
        "preferred": true,
        "share_instance_id": share.id.to_string(),
        "is_admin_only": false,
    })
}

/// A share in full, with the fields each microversion up to 2.91 adds.
pub fn share_detail(share: &Share, req: &Requested, who: &Identity, base: &str) -> Value {
    let id = share.id.to_string();
    let at = |v: u32| req.version >= Version(2, v);
    let mut d = Map::new();
    let mut put = |k: &str, v: Value| {
        d.insert(k.to_string(), v);
    };
    put("id", json!(id));
    put("size", json!(share.size_gib));
    put("availability_zone", Value::Null);
    put("created_at", time(Some(share.created_at)));
    put("updated_at", time(share.updated_at));
    put("status", json!(share.status.as_str()));
    put("name", json!(share.name));
    put("description", Value::Null);
    put("project_id", json!(share.project));
    put("snapshot_id", Value::Null);
    put("share_network_id", Value::Null);
    put("share_proto", json!(share.protocol));
    put("export_location", json!(share.path));
    put("export_locations", json!([share.path]));
    put("metadata", json!({}));
    put("share_type", json!("default"));
    put("volume_type", json!("default"));
    put("is_public", json!(false));
    put(
        "links",
        json!([{"rel": "self", "href": format!("{base}/v2/shares/{id}")}]),
    );
    if at(2) {
        put("snapshot_support", json!(false));
    }
    if at(5) {
        put("task_state", Value::Null);
    }
    if at(6) {
        put("share_type_name", json!("default"));
    }
    if at(10) {
        put("access_rules_status", json!("active"));
    }
    if at(11) {
        put("replication_type", Value::Null);
        put("has_replicas", json!(false));
    }
    if at(16) {
        put("user_id", Value::Null);
    }
    if at(24) {
        put("create_share_from_snapshot_support", json!(false));
    }
    if at(27) {
        put("revert_to_snapshot_support", json!(false));
    }
    if at(31) {
        put("share_group_id", Value::Null);
        put("source_share_group_snapshot_member_id", Value::Null);
    }
    if at(32) {
        put("mount_snapshot_support", json!(false));
    }
    if at(54) {
        put("progress", json!(progress_of(share)));
    }
    if at(69) {
        put("is_soft_deleted", json!(false));
        put("scheduled_to_be_deleted_at", Value::Null);
    }
    if at(80) {
        put(
            "source_backup_id",
            json!(share.source_backup_id.map(|b| b.to_string())),
        );
    }
    if at(90) {
        put("encryption_key_ref", Value::Null);
    }
    if who.admin {
        put("share_server_id", Value::Null);
        put("host", Value::Null);
    }
    Value::Object(d)
}

/// A share's `progress`, as Manila shows it from 2.54.
fn progress_of(share: &Share) -> &'static str {
    match share.status.as_str() {
        "creating" => "0%",
        _ => "100%",
    }
}

/// A share in a summary list.
pub fn share_summary(share: &Share, base: &str) -> Value {
    let id = share.id.to_string();
    json!({
        "id": id,
        "name": share.name,
        "links": [{"rel": "self", "href": format!("{base}/v2/shares/{id}")}],
    })
}
