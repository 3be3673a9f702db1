//! Where a catalog lives, and how a new one replaces it: a
//! [`CatalogLocation`] opens the store there, names where a backup type's
//! own chunk index goes beside it, and builds a fresh store that is swapped
//! in whole ([`Fresh::swap`]) — a rebuild never edits a live catalog.
//!
//! A SQLite file (the embedded default), or a PostgreSQL database
//! (`postgresql://…`, [`crate::pg::PgCatalog`]) that several nodes share.

use std::fmt;
use std::path::{Path, PathBuf};

use super::Catalog;
use crate::error::{Error, IoContext, Result};

/// Where a catalog is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogLocation {
    /// A SQLite database file (with its `-wal` and `-shm` beside it).
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its URL (`postgresql://USER@HOST/DB`, or
    /// `?host=/socket/dir` for a Unix socket).
    Postgres(String),
}

impl From<PathBuf> for CatalogLocation {
    fn from(path: PathBuf) -> Self {
        CatalogLocation::Sqlite(path)
    }
}

impl fmt::Display for CatalogLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogLocation::Sqlite(path) => write!(f, "{}", path.display()),
            CatalogLocation::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

/// A catalog built beside its location, not live until swapped in.
pub struct Fresh {
    catalog: Catalog,
    building: PathBuf,
    target: PathBuf,
}

impl Fresh {
    /// The store being built: empty when made, in bulk-load mode.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Ends the bulk load, then puts the fresh store in the location's
    /// place, replacing what was there whole: after a crash at any point
    /// the location holds the old store or the new one, never a mix.
    /// Durable on return.
    pub fn swap(self) -> Result<()> {
        self.catalog.finish_bulk_load()?;
        durable_rename(&self.building, &self.target)
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes a SQLite database file and its journal files.
fn remove_database(path: &Path) -> Result<()> {
    for p in [
        path.to_path_buf(),
        sibling(path, "-wal"),
        sibling(path, "-shm"),
    ] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&p, e)),
            _ => {}
        }
    }
    Ok(())
}

fn postgres_cannot(what: &str) -> Error {
    Error::Unsupported(format!("a PostgreSQL catalog cannot {what}"))
}

/// A URL as it may be printed: `user:password@` becomes `user@`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}@{host}")
        }
        None => url.to_string(),
    }
}

/// Syncs the database at `from`, then renames it over `to` (whose journal
/// must not be replayed into it) and syncs the directory.
fn durable_rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::File::open(from)
        .and_then(|f| f.sync_all())
        .at(from)?;
    remove_database(to)?;
    std::fs::rename(from, to).at(to)?;
    let dir = match to.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

impl CatalogLocation {
    /// A location as an operator writes it: a path (or `sqlite:PATH`).
    pub fn parse(text: &str) -> Result<CatalogLocation> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<postgres::Config>()
                .map_err(|e| Error::InvalidArgument(format!("invalid catalog URL: {e}")))?;
            return Ok(CatalogLocation::Postgres(text.to_string()));
        }
        let path = text.strip_prefix("sqlite:").unwrap_or(text);
        if path.is_empty() || path.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "invalid catalog location {text:?}"
            )));
        }
        Ok(CatalogLocation::Sqlite(PathBuf::from(path)))
    }

    /// Opens (creating if missing) the SQLite store there; a PostgreSQL
    /// catalog is opened by [`crate::Engine::open`].
    pub fn open(&self) -> Result<Catalog> {
        match self {
            CatalogLocation::Sqlite(path) => Catalog::open(path),
            CatalogLocation::Postgres(_) => Err(postgres_cannot("be opened as a SQLite file")),
        }
    }

    /// Whether a store is there already (a database server always is).
    pub fn exists(&self) -> bool {
        match self {
            CatalogLocation::Sqlite(path) => path.exists(),
            CatalogLocation::Postgres(_) => true,
        }
    }

    /// Where this catalog keeps the chunk index of another repository it
    /// indexes (a backup type's own): a SQLite file beside it, named after
    /// that repository's id.
    pub fn index_for(&self, repository: &strata_format::RepositoryId) -> CatalogLocation {
        match self {
            CatalogLocation::Sqlite(path) => {
                CatalogLocation::Sqlite(sibling(path, &format!(".repository-{repository}.db")))
            }
            CatalogLocation::Postgres(url) => CatalogLocation::Postgres(url.clone()),
        }
    }

    /// A fresh, empty store for this location, built beside it in
    /// bulk-load mode; what was left by a build that died is discarded.
    pub fn build_fresh(&self) -> Result<Fresh> {
        match self {
            CatalogLocation::Sqlite(path) => {
                let building = sibling(path, ".rebuild");
                remove_database(&building)?;
                let catalog = Catalog::open(&building)?.pinned()?;
                catalog.bulk_load()?;
                Ok(Fresh {
                    catalog,
                    building,
                    target: path.clone(),
                })
            }
            CatalogLocation::Postgres(_) => Err(postgres_cannot("be rebuilt yet")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ProjectStore;

    fn has_project(at: &CatalogLocation, name: &str) -> bool {
        at.open()
            .unwrap()
            .projects()
            .unwrap()
            .iter()
            .any(|p| p == name)
    }

    #[test]
    fn locations_parse() {
        assert_eq!(
            CatalogLocation::parse("sqlite:/var/lib/strata/c.db").unwrap(),
            CatalogLocation::Sqlite("/var/lib/strata/c.db".into())
        );
        assert_eq!(
            CatalogLocation::parse("c.db").unwrap(),
            CatalogLocation::Sqlite("c.db".into())
        );
        let pg = CatalogLocation::parse("postgresql://strata:secret@db/strata").unwrap();
        assert_eq!(
            pg,
            CatalogLocation::Postgres("postgresql://strata:secret@db/strata".into())
        );
        assert_eq!(pg.to_string(), "postgresql://strata@db/strata");
        assert!(CatalogLocation::parse("postgresql://db/strata?sslmode=bogus").is_err());
        assert!(CatalogLocation::parse("").is_err());
    }

    #[test]
    fn a_fresh_store_replaces_the_old_one_whole() {
        let dir = tempfile::tempdir().unwrap();
        let at = CatalogLocation::Sqlite(dir.path().join("c.db"));
        let old = at.open().unwrap();
        old.ensure_project("old").unwrap();
        drop(old);
        let fresh = at.build_fresh().unwrap();
        assert!(fresh.catalog().is_empty().unwrap());
        // Until swapped, the location still holds the old store.
        assert!(has_project(&at, "old"));
        fresh.swap().unwrap();
        assert!(!has_project(&at, "old"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("rebuild"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}
