//! The catalog in PostgreSQL, shared by every node that points at it
//! (`catalog = "postgresql://…"`): one database, so one `backup list`,
//! one chunk index and quotas counted over every node's backups.
//!
//! [`PgCatalog`] holds a pool of connections ([`r2d2`]); each connection
//! keeps the statements of the hot paths (the chunk index's lookups and
//! batched inserts) prepared for its life. Every method runs on a
//! connection of its own, so any number of threads may share one catalog.
//! Its schema has migrations of its own ([`MIGRATIONS`]), applied under a
//! transaction-scoped advisory lock, so nodes that open a new database at
//! once migrate it once.
//!
//! Durability: a method that writes returns when its transaction has
//! committed (PostgreSQL's `synchronous_commit`, on by default, makes that
//! durable on the server).

mod backup_writes;
mod backups;
mod chunks;
mod locks;
mod operations;
mod schema;
mod shares;
mod snapshots;
pub mod testing;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::{NoTls, Statement};

use crate::error::{Error, Result};
use crate::store::{ProjectStore, Quota, QuotaStore, QuotaUsage};

pub use locks::PgLocks;
pub use schema::{MIGRATIONS, SCHEMA_VERSION};

/// Connections a catalog opens at most.
const MAX_CONNECTIONS: u32 = 16;
/// How long connecting to the server may take, unless the URL says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call waits for a free connection (or the server) before
/// failing.
const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// One connection with its prepared statements.
pub struct Conn {
    client: postgres::Client,
    prepared: HashMap<&'static str, Statement>,
}

impl Conn {
    /// The statement for `sql`, prepared on this connection once.
    fn prepared(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }
}

struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Conn, postgres::Error> {
        Ok(Conn {
            client: self.config.connect(NoTls)?,
            prepared: HashMap::new(),
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> std::result::Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.client.is_closed()
    }
}

type Pooled = r2d2::PooledConnection<Manager>;

/// The catalog in a PostgreSQL database. Cheap to clone (clones share the
/// pool).
#[derive(Clone)]
pub struct PgCatalog {
    pool: r2d2::Pool<Manager>,
    /// What the catalog is called in messages (its URL without a password).
    name: String,
    /// The catalog's own id, made when its schema was (`meta.catalog_id`).
    id: String,
}

impl std::fmt::Debug for PgCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgCatalog({})", self.name)
    }
}

impl PgCatalog {
    /// Connects to the database at `url` (a `postgresql://` URL, or
    /// libpq's `key=value` form) and brings its schema up to date.
    pub fn open(url: &str) -> Result<PgCatalog> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("invalid catalog URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let name = describe(&config);
        // One connection first, so a server that is not there is said at
        // once, not after the pool's wait.
        let manager = Manager { config };
        let first = r2d2::ManageConnection::connect(&manager)
            .map_err(|e| Error::Catalog(format!("cannot reach {name}: {e}")))?;
        drop(first);
        let pool = r2d2::Pool::builder()
            .max_size(MAX_CONNECTIONS)
            .min_idle(Some(0))
            .connection_timeout(CONNECT_WAIT)
            .build(manager)
            .map_err(|e| Error::Catalog(format!("{name}: {e}")))?;
        let mut catalog = PgCatalog {
            pool,
            name,
            id: String::new(),
        };
        catalog.id = schema::migrate(&mut *catalog.conn()?)?;
        Ok(catalog)
    }

    /// The catalog's name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn conn(&self) -> Result<Pooled> {
        self.pool
            .get()
            .map_err(|e| Error::Catalog(format!("{}: {e}", self.name)))
    }

    /// Runs `f` in one transaction, committed when it returns `Ok`
    /// (durable then), rolled back otherwise.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction()?;
        let out = f(&mut tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// A catalog's name for messages: user, host and database, never the
/// password.
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    format!(
        "postgresql://{}@{host}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// One connection, in one read-only snapshot, for a run of lookups.
pub(crate) struct Snapshot<'a> {
    conn: Mutex<&'a mut Conn>,
}

impl<'a> Snapshot<'a> {
    fn conn(&self) -> MutexGuard<'_, &'a mut Conn> {
        // The connection stays valid whatever panicked.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ProjectStore for PgCatalog {
    fn meta(&self, key: &str) -> Result<Option<String>> {
        let row = self
            .conn()?
            .client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn()?.client.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn ensure_project(&self, name: &str) -> Result<()> {
        self.conn()?.client.execute(
            "INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&name, &crate::clock::now_ns()],
        )?;
        Ok(())
    }

    fn repository_locks(
        &self,
        repository: &strata_format::RepositoryId,
    ) -> Option<(
        String,
        std::sync::Arc<dyn crate::repository::objects::ObjectStore>,
    )> {
        Some((
            self.id.clone(),
            std::sync::Arc::new(self.locks_of(repository)),
        ))
    }

    fn projects(&self) -> Result<Vec<String>> {
        let rows = self
            .conn()?
            .client
            .query("SELECT name FROM projects ORDER BY name", &[])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// An id the catalog holds, parsed; a malformed one is corruption.
pub(crate) fn id_of<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse().map_err(|_| Error::Corrupt {
        location: "the PostgreSQL catalog".into(),
        detail: format!("a malformed id {s:?}"),
    })
}

fn count(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

/// What `project`'s backup records count for, as `client` sees them
/// (inside a transaction: as it sees them).
pub(crate) fn usage(
    client: &mut impl postgres::GenericClient,
    project: &str,
) -> Result<QuotaUsage> {
    let row = client.query_one(
        "SELECT COUNT(*), COALESCE(SUM(size_gib), 0)::BIGINT FROM backups WHERE project = $1",
        &[&project],
    )?;
    Ok(QuotaUsage {
        backups: row.get::<_, i64>(0).max(0) as u64,
        backup_gigabytes: row.get::<_, i64>(1).max(0) as u64,
    })
}

impl QuotaStore for PgCatalog {
    fn quota(&self, project: &str) -> Result<Option<Quota>> {
        let row = self.conn()?.client.query_opt(
            "SELECT backups, backup_gigabytes FROM quotas WHERE project = $1",
            &[&project],
        )?;
        Ok(row.map(|r| Quota {
            backups: count(r.get(0)),
            backup_gigabytes: count(r.get(1)),
        }))
    }

    fn set_quota(&self, project: &str, quota: &Quota) -> Result<()> {
        let limit = |v: Option<u64>| v.map(|v| v.min(i64::MAX as u64) as i64);
        self.conn()?.client.execute(
            "INSERT INTO quotas (project, backups, backup_gigabytes) VALUES ($1, $2, $3)
             ON CONFLICT (project) DO UPDATE SET backups = excluded.backups,
                backup_gigabytes = excluded.backup_gigabytes",
            &[
                &project,
                &limit(quota.backups),
                &limit(quota.backup_gigabytes),
            ],
        )?;
        Ok(())
    }

    fn quota_usage(&self, project: &str) -> Result<QuotaUsage> {
        usage(&mut self.conn()?.client, project)
    }
}

/// PostgreSQL's errors as the engine's: a full disk is no space, data
/// corruption is corruption, anything else (the server unreachable
/// included) a catalog failure.
impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        use postgres::error::SqlState;
        match e.code() {
            Some(code) if *code == SqlState::DISK_FULL => Error::NoSpace {
                path: "the PostgreSQL catalog".into(),
            },
            Some(code)
                if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED =>
            {
                Error::Corrupt {
                    location: "the PostgreSQL catalog".into(),
                    detail: e.to_string(),
                }
            }
            _ => Error::Catalog(match e.as_db_error() {
                Some(db) => db.to_string(),
                None => e.to_string(),
            }),
        }
    }
}
