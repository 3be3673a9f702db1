//! The PostgreSQL catalog's schema: the SQLite catalog's tables (see
//! `crate::catalog`), in PostgreSQL's types, with migrations of its own.
//! Each step takes the schema from version `i` to `i + 1`; released steps
//! are frozen.

use crate::error::{Error, Result};

/// Each step takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE shares (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    size_gib BIGINT,
    protocol TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT,
    source_backup_id TEXT,
    fail_reason TEXT,
    adopted BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (project, name)
);
CREATE TABLE backups (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    share_id TEXT NOT NULL REFERENCES shares(id),
    name TEXT,
    description TEXT,
    status TEXT NOT NULL,
    progress BIGINT NOT NULL DEFAULT 0,
    restore_progress BIGINT NOT NULL DEFAULT 0,
    size_gib BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT,
    host TEXT,
    availability_zone TEXT,
    backup_type TEXT,
    topic TEXT,
    is_incremental BOOLEAN NOT NULL DEFAULT FALSE,
    parent_id TEXT,
    snapshot_id TEXT,
    data_timestamp BIGINT,
    fail_reason TEXT,
    file_count BIGINT NOT NULL DEFAULT 0,
    dir_count BIGINT NOT NULL DEFAULT 0,
    skipped_count BIGINT NOT NULL DEFAULT 0,
    logical_bytes BIGINT NOT NULL DEFAULT 0,
    new_bytes BIGINT NOT NULL DEFAULT 0,
    stored_bytes BIGINT NOT NULL DEFAULT 0,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    read_bytes BIGINT NOT NULL DEFAULT 0,
    changed_count BIGINT NOT NULL DEFAULT 0,
    deleted_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX backups_by_share ON backups(share_id);
CREATE INDEX backups_by_parent ON backups(parent_id);
CREATE INDEX backups_by_project_created ON backups(project, created_at, id);
CREATE TABLE backup_problems (
    seq BIGSERIAL PRIMARY KEY,
    backup_id TEXT NOT NULL,
    path TEXT NOT NULL,
    problem TEXT NOT NULL
);
CREATE INDEX backup_problems_by_backup ON backup_problems(backup_id);
CREATE TABLE backup_roots (
    backup_id TEXT PRIMARY KEY,
    dev BIGINT NOT NULL
);
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    share_id TEXT NOT NULL,
    name TEXT,
    description TEXT,
    status TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT,
    fail_reason TEXT
);
CREATE INDEX snapshots_by_share ON snapshots(share_id);
CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    backup_id TEXT,
    share_id TEXT,
    share_status_before TEXT,
    pid BIGINT NOT NULL,
    process_start BIGINT NOT NULL,
    host TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
CREATE TABLE quotas (
    project TEXT PRIMARY KEY,
    backups BIGINT,
    backup_gigabytes BIGINT
);
CREATE TABLE packs (
    id BYTEA PRIMARY KEY,
    size BIGINT NOT NULL,
    chunk_count BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE chunks (
    id BYTEA PRIMARY KEY,
    pack_id BYTEA NOT NULL,
    "offset" BIGINT NOT NULL,
    stored_len BIGINT NOT NULL,
    raw_len BIGINT NOT NULL,
    compression SMALLINT NOT NULL
);
CREATE INDEX chunks_by_pack ON chunks(pack_id);
CREATE TABLE layer_chunks (
    backup_id TEXT NOT NULL,
    chunk_id BYTEA NOT NULL,
    PRIMARY KEY (backup_id, chunk_id)
);
CREATE INDEX layer_chunks_by_chunk ON layer_chunks(chunk_id);
"#,
    // 2: the repositories' locks, kept here rather than in put-if-absent.
    r#"
CREATE SEQUENCE lock_versions;
CREATE TABLE repository_locks (
    repository TEXT NOT NULL,
    key TEXT NOT NULL,
    body BYTEA NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (repository, key)
);
"#,
];

pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Any number picked once: the advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x7374_7261_7461_0001;

/// Brings the schema up to [`SCHEMA_VERSION`], in one transaction under
/// an advisory lock (nodes that open a new database at once wait for each
/// other, and each step runs once), and gives the catalog its id the
/// first time. A newer schema is refused. The catalog's id.
pub(super) fn migrate(conn: &mut super::Conn) -> Result<String> {
    let mut tx = conn.client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let version: i64 = match tx.query_opt("SELECT version FROM schema_version", &[])? {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])?;
            0
        }
    };
    let version = usize::try_from(version).map_err(|_| Error::Corrupt {
        location: "the PostgreSQL catalog".into(),
        detail: format!("schema version {version}"),
    })?;
    if version > MIGRATIONS.len() {
        return Err(Error::Unsupported(format!(
            "catalog schema version {version} is newer than this build ({SCHEMA_VERSION})"
        )));
    }
    for step in &MIGRATIONS[version..] {
        tx.batch_execute(step)?;
    }
    tx.execute(
        "UPDATE schema_version SET version = $1",
        &[&i64::from(SCHEMA_VERSION)],
    )?;
    let made = uuid::Uuid::from_bytes(crate::repository::new_uuid()?).to_string();
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('catalog_id', $1) ON CONFLICT (key) DO NOTHING",
        &[&made],
    )?;
    let id: String = tx
        .query_one("SELECT value FROM meta WHERE key = 'catalog_id'", &[])?
        .get(0);
    tx.commit()?;
    Ok(id)
}
