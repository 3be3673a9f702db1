//! The catalog: service state plus a rebuildable cache of what the repository
//! holds, in SQLite on the node's local disk (never on the export, where
//! SQLite's locking and WAL are unsafe).
//!
//! Tables: `projects`, `shares`, `backups`, `backup_problems` (the per-path backup report),
//! `packs`, `chunks` (the chunk index: chunk id → pack, offset, lengths) and
//! `layer_chunks` (which backup references which chunk, for delete),
//! `operations` (what is running, by which process, for cleanup after a
//! crash), `quotas` (per-project limits) and `backup_roots` (the device of
//! a share's root when each backup read it: an incremental refuses a root
//! that moved to another device, e.g. an unmounted share). The schema
//! version is `PRAGMA user_version`; migrations below are frozen once released.

mod backup_writes;
mod backups;
mod chunks;
mod location;
mod operations;
mod quotas;
mod recovered;
mod shares;
mod snapshots;

pub use location::{CatalogLocation, Fresh};

use crate::store::ProjectStore;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension};

use crate::error::{Error, IoContext, Result};

/// Each step takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE shares (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    size_gib INTEGER,
    protocol TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    UNIQUE (project, name)
);
CREATE TABLE backups (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    share_id TEXT NOT NULL REFERENCES shares(id),
    name TEXT,
    description TEXT,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    restore_progress INTEGER NOT NULL DEFAULT 0,
    size_gib INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    host TEXT,
    availability_zone TEXT,
    backup_type TEXT,
    topic TEXT,
    is_incremental INTEGER NOT NULL DEFAULT 0,
    parent_id TEXT,
    snapshot_id TEXT,
    data_timestamp INTEGER,
    fail_reason TEXT,
    file_count INTEGER NOT NULL DEFAULT 0,
    dir_count INTEGER NOT NULL DEFAULT 0,
    skipped_count INTEGER NOT NULL DEFAULT 0,
    logical_bytes INTEGER NOT NULL DEFAULT 0,
    new_bytes INTEGER NOT NULL DEFAULT 0,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX backups_by_share ON backups(share_id);
CREATE TABLE backup_problems (
    backup_id TEXT NOT NULL,
    path TEXT NOT NULL,
    problem TEXT NOT NULL
);
CREATE INDEX backup_problems_by_backup ON backup_problems(backup_id);
CREATE TABLE packs (
    id BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE chunks (
    id BLOB PRIMARY KEY,
    pack_id BLOB NOT NULL,
    offset INTEGER NOT NULL,
    stored_len INTEGER NOT NULL,
    raw_len INTEGER NOT NULL,
    compression INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX chunks_by_pack ON chunks(pack_id);
CREATE TABLE layer_chunks (
    backup_id TEXT NOT NULL,
    chunk_id BLOB NOT NULL,
    PRIMARY KEY (backup_id, chunk_id)
) WITHOUT ROWID;
CREATE INDEX layer_chunks_by_chunk ON layer_chunks(chunk_id);
"#,
    r#"
ALTER TABLE backups ADD COLUMN read_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE backups ADD COLUMN changed_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE backups ADD COLUMN deleted_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX backups_by_parent ON backups(parent_id);
"#,
    r#"
CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    backup_id TEXT,
    share_id TEXT,
    share_status_before TEXT,
    pid INTEGER NOT NULL,
    process_start INTEGER NOT NULL,
    host TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
CREATE TABLE quotas (
    project TEXT PRIMARY KEY,
    backups INTEGER,
    backup_gigabytes INTEGER
);
"#,
    r#"
CREATE TABLE backup_roots (
    backup_id TEXT PRIMARY KEY,
    dev INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE shares ADD COLUMN source_backup_id TEXT;
ALTER TABLE shares ADD COLUMN fail_reason TEXT;
CREATE TABLE snapshots (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    share_id TEXT NOT NULL,
    name TEXT,
    description TEXT,
    status TEXT NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    fail_reason TEXT
);
CREATE INDEX snapshots_by_share ON snapshots(share_id);
"#,
    // 6: a project's backups newest first, read a page at a time (the API).
    r#"
CREATE INDEX backups_by_project_created ON backups(project, created_at, id);
"#,
    // 7: a share recorded from a repository or an imported record, whose
    // path an operator has not confirmed yet.
    r#"
ALTER TABLE shares ADD COLUMN adopted INTEGER NOT NULL DEFAULT 0;
"#,
];

pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a connection waits for another one's write lock before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Idle connections a catalog keeps for reuse; more may be open at once.
const IDLE_CONNECTIONS: usize = 16;

/// The catalog: a pool of connections to one SQLite file. Cheap to clone
/// (clones share the pool); `Send + Sync`, every method takes `&self` and
/// runs on a connection of its own for its duration, so any number of
/// threads may use one catalog at once.
pub struct Catalog {
    pool: Arc<Pool>,
    /// Set while one connection must serve every call: a read snapshot
    /// ([`Catalog::reading`]) or a catalog being bulk-loaded.
    pinned: Option<Mutex<Connection>>,
}

struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// A connection lent for one call; it goes back to the pool when dropped.
enum Conn<'a> {
    Pooled(Option<Connection>, &'a Pool),
    Pinned(MutexGuard<'a, Connection>),
}

impl std::ops::Deref for Conn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            // Some until drop.
            Conn::Pooled(Some(c), _) => c,
            Conn::Pooled(None, _) => unreachable!("a pooled connection is taken only on drop"),
            Conn::Pinned(c) => c,
        }
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match self {
            Conn::Pooled(Some(c), _) => c,
            Conn::Pooled(None, _) => unreachable!("a pooled connection is taken only on drop"),
            Conn::Pinned(c) => c,
        }
    }
}

impl Conn<'_> {
    /// The connection itself, out of the pool for good (none if pinned).
    fn take(mut self) -> Option<Connection> {
        match &mut self {
            Conn::Pooled(conn, _) => conn.take(),
            Conn::Pinned(_) => None,
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Conn::Pooled(conn, pool) = self {
            if let Some(conn) = conn.take() {
                // A connection left inside a transaction (a panic mid-call)
                // is closed, not reused.
                if conn.is_autocommit() {
                    let mut idle = lock(&pool.idle);
                    if idle.len() < IDLE_CONNECTIONS {
                        idle.push(conn);
                    }
                }
            }
        }
    }
}

/// The page cache of a pooled connection, at most (SQLite's default is
/// 2 MiB): a backup looks its new chunks up on one connection per worker,
/// each lookup a path from the B-tree's root to a leaf, and with the
/// default each connection's cache grew with the chunk index to 2 MiB,
/// most of it leaves no later lookup reads again.
const CONNECTION_CACHE_KIB: i64 = 1024;

/// The page cache of a read snapshot, at most (SQLite's default is 2 MiB
/// a connection, which the lookups of a large chunk index fill): a restore
/// looks each chunk up once a window, so the B-tree's upper levels are what
/// pays to keep, and the memory of a restore stays flat in the file count.
const SNAPSHOT_CACHE_KIB: i64 = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data (idle connections) stays valid whatever panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new connection with the settings every catalog connection has.
fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    // Several processes and threads share the file; wait rather than fail.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Index rows must be durable before the layer that needs them is published.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -CONNECTION_CACHE_KIB)?;
    Ok(conn)
}

/// Puts the catalog in WAL mode, so that readers (progress, list) never block
/// the backup's writer. Several processes opening a new catalog at once all
/// try the switch; SQLite answers "busy" at once to all but one, without
/// waiting (its busy handler is not called there), so the wait is ours.
fn use_wal(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = std::time::Duration::from_millis(2);
    loop {
        let mode: rusqlite::Result<String> =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0));
        match mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(Error::Unsupported(format!(
                    "the catalog's file system does not support WAL (journal mode {mode})"
                )));
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A transaction that holds the write lock from its start. Every
/// transaction that writes must be one: a deferred transaction that reads
/// and then writes fails at once with "database is locked" (no wait) when
/// another connection committed in between.
pub(crate) fn write_tx(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>> {
    Ok(conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = write_tx(conn)?;
    let version: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Unsupported(format!(
            "catalog schema version {version} is newer than this build ({SCHEMA_VERSION})"
        )));
    }
    for step in &MIGRATIONS[version as usize..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

impl Clone for Catalog {
    /// Another handle on the same pool (never on a pinned connection).
    fn clone(&self) -> Self {
        Catalog {
            pool: self.pool.clone(),
            pinned: None,
        }
    }
}

impl Catalog {
    /// Opens (creating and migrating if needed) the catalog at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let mut conn = connect(path)?;
        use_wal(&conn)?;
        migrate(&mut conn)?;
        Ok(Catalog {
            pool: Arc::new(Pool {
                path: path.to_path_buf(),
                idle: Mutex::new(vec![conn]),
            }),
            pinned: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.pool.path
    }

    /// A connection for one call: the pinned one, else one from the pool.
    fn conn(&self) -> Result<Conn<'_>> {
        if let Some(pinned) = &self.pinned {
            return Ok(Conn::Pinned(lock(pinned)));
        }
        let idle = lock(&self.pool.idle).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => connect(&self.pool.path)?,
        };
        Ok(Conn::Pooled(Some(conn), &self.pool))
    }

    /// Runs `f` in one immediate transaction, committed when it returns
    /// `Ok` (durable then), rolled back otherwise.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// This catalog with every call on one connection of its own (taken
    /// from the pool): for a bulk load, whose settings are per connection.
    pub fn pinned(&self) -> Result<Catalog> {
        let conn = match self.conn()?.take() {
            Some(conn) => conn,
            None => connect(&self.pool.path)?,
        };
        Ok(Catalog {
            pool: self.pool.clone(),
            pinned: Some(Mutex::new(conn)),
        })
    }

    /// Runs `f` in one read transaction: its lookups share one snapshot and
    /// take the database's locks once, not once per statement (a restore
    /// plans with one lookup per chunk). Nothing is written.
    pub fn reading<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let snapshot = self.pinned()?;
        let cache: i64 = {
            let conn = snapshot.conn()?;
            let cache = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
            conn.pragma_update(None, "cache_size", -SNAPSHOT_CACHE_KIB)?;
            conn.execute_batch("BEGIN DEFERRED")?;
            cache
        };
        let out = f(&snapshot);
        // Read-only: ending it either way releases the snapshot.
        {
            let conn = snapshot.conn()?;
            conn.execute_batch("ROLLBACK")?;
            // The snapshot's pages go: the next snapshot may come on another
            // connection of the pool, and each would keep its own.
            conn.execute_batch("PRAGMA shrink_memory")?;
            conn.pragma_update(None, "cache_size", cache)?;
        }
        if let Some(conn) = snapshot.pinned {
            let conn = conn.into_inner().unwrap_or_else(|p| p.into_inner());
            drop(Conn::Pooled(Some(conn), &self.pool));
        }
        out
    }
}

impl ProjectStore for Catalog {
    /// Records a project (idempotent).
    fn ensure_project(&self, name: &str) -> Result<()> {
        self.conn()?.execute(
            "INSERT OR IGNORE INTO projects (name, created_at) VALUES (?1, ?2)",
            rusqlite::params![name, crate::clock::now_ns()],
        )?;
        Ok(())
    }

    fn projects(&self) -> Result<Vec<String>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT name FROM projects ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn()?
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }
}

/// SQLite's errors as the engine's: a damaged database is corruption, a
/// full disk is no space, anything else a catalog failure.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseCorrupt, DiskFull, NotADatabase};
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, NotADatabase | DatabaseCorrupt) =>
            {
                Error::Corrupt {
                    location: "the catalog database".into(),
                    detail: e.to_string(),
                }
            }
            rusqlite::Error::SqliteFailure(f, _) if f.code == DiskFull => Error::NoSpace {
                path: "the catalog database".into(),
            },
            _ => Error::Catalog(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_kib(catalog: &Catalog) -> i64 {
        let conn = catalog.conn().unwrap();
        let pages: i64 = conn
            .pragma_query_value(None, "cache_size", |r| r.get(0))
            .unwrap();
        -pages
    }

    /// Every connection's page cache is bounded, a read snapshot's more so,
    /// and a connection goes back to the pool with its own bound.
    #[test]
    fn page_caches_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        assert_eq!(cache_kib(&catalog), CONNECTION_CACHE_KIB);
        let inside = catalog.reading(|snapshot| Ok(cache_kib(snapshot))).unwrap();
        assert_eq!(inside, SNAPSHOT_CACHE_KIB);
        assert_eq!(cache_kib(&catalog), CONNECTION_CACHE_KIB);
        let pinned = catalog.pinned().unwrap();
        assert_eq!(cache_kib(&pinned), CONNECTION_CACHE_KIB);
    }
}
