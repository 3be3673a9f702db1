//! The repository's locks kept in the PostgreSQL catalog: an
//! [`ObjectStore`] over one table, for the `locks/` keys of one
//! repository. With a shared catalog the leases of every node live here,
//! never in put-if-absent alone: each conditional put or delete is one
//! statement on the row, atomic whatever the object store under the
//! repository honours. A version is a number from one sequence, so every
//! put, even of the same bytes, is a new one.

use bytes::Bytes;
use strata_format::RepositoryId;

use super::PgCatalog;
use crate::error::{Error, Result};
use crate::repository::objects::{
    Cond, Etag, Gathered, Key, MemoryReader, ObjectMeta, ObjectReader, ObjectStore, ObjectWriter,
    Page, Space, Unfinished, PAGE,
};

/// The locks of one repository, in the catalog's `repository_locks`.
#[derive(Clone, Debug)]
pub struct PgLocks {
    catalog: PgCatalog,
    repository: String,
    location: String,
}

impl PgCatalog {
    /// Where this catalog keeps the locks of `repository`.
    pub fn locks_of(&self, repository: &RepositoryId) -> PgLocks {
        PgLocks {
            catalog: self.clone(),
            repository: repository.to_string(),
            location: format!("{} (locks of repository {repository})", self.name()),
        }
    }
}

fn version(etag: &Etag) -> Option<i64> {
    etag.0.parse().ok()
}

impl PgLocks {
    fn refused(&self, key: &Key) -> Error {
        Error::Precondition {
            location: self.location.clone(),
            key: key.to_string(),
        }
    }

    fn put_row(&self, key: &Key, body: &[u8], cond: &Cond) -> Result<Etag> {
        let mut conn = self.catalog.conn()?;
        let (repo, k) = (&self.repository, key.as_str());
        let row = match cond {
            Cond::Any => conn.client.query_opt(
                "INSERT INTO repository_locks (repository, key, body, version)
                 VALUES ($1, $2, $3, nextval('lock_versions'))
                 ON CONFLICT (repository, key) DO UPDATE
                     SET body = excluded.body, version = excluded.version
                 RETURNING version",
                &[repo, &k, &body],
            )?,
            Cond::IfAbsent => conn.client.query_opt(
                "INSERT INTO repository_locks (repository, key, body, version)
                 VALUES ($1, $2, $3, nextval('lock_versions'))
                 ON CONFLICT (repository, key) DO NOTHING
                 RETURNING version",
                &[repo, &k, &body],
            )?,
            Cond::IfMatch(etag) => {
                let Some(v) = version(etag) else {
                    return Err(self.refused(key));
                };
                conn.client.query_opt(
                    "UPDATE repository_locks SET body = $3, version = nextval('lock_versions')
                     WHERE repository = $1 AND key = $2 AND version = $4
                     RETURNING version",
                    &[repo, &k, &body, &v],
                )?
            }
        };
        match row {
            Some(row) => Ok(Etag(row.get::<_, i64>(0).to_string())),
            None => Err(self.refused(key)),
        }
    }
}

impl ObjectStore for PgLocks {
    fn location(&self) -> &str {
        &self.location
    }

    fn writer(&self, key: &Key, cond: Cond) -> Result<Box<dyn ObjectWriter>> {
        let (store, key) = (self.clone(), key.clone());
        Ok(Box::new(Gathered::new(move |body| {
            store.put_row(&key, &body, &cond)
        })))
    }

    fn put(&self, key: &Key, body: &[u8], cond: Cond) -> Result<Etag> {
        self.put_row(key, body, &cond)
    }

    fn open(&self, key: &Key) -> Result<Box<dyn ObjectReader>> {
        let row = self.catalog.conn()?.client.query_opt(
            "SELECT body FROM repository_locks WHERE repository = $1 AND key = $2",
            &[&self.repository, &key.as_str()],
        )?;
        match row {
            Some(row) => Ok(Box::new(MemoryReader::new(
                Bytes::from(row.get::<_, Vec<u8>>(0)),
                format!("{}/{key}", self.location),
            ))),
            None => Err(crate::repository::objects::io_error(
                &self.location,
                key.as_str(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )),
        }
    }

    fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        let row = self.catalog.conn()?.client.query_opt(
            "SELECT octet_length(body)::BIGINT, version FROM repository_locks
             WHERE repository = $1 AND key = $2",
            &[&self.repository, &key.as_str()],
        )?;
        Ok(row.map(|r| ObjectMeta {
            len: r.get::<_, i64>(0).max(0) as u64,
            etag: Etag(r.get::<_, i64>(1).to_string()),
        }))
    }

    fn list(&self, prefix: &str, after: Option<&Key>) -> Result<Page> {
        let rows = self.catalog.conn()?.client.query(
            "SELECT key FROM repository_locks
             WHERE repository = $1 AND starts_with(key, $2)
               AND ($3::TEXT IS NULL OR key COLLATE \"C\" > $3)
             ORDER BY key COLLATE \"C\" LIMIT $4",
            &[
                &self.repository,
                &prefix,
                &after.map(Key::as_str),
                &(PAGE as i64 + 1),
            ],
        )?;
        let mut keys = rows
            .iter()
            .map(|r| Key::new(r.get::<_, String>(0)))
            .collect::<Result<Vec<_>>>()?;
        let more = keys.len() > PAGE;
        keys.truncate(PAGE);
        let next = match more {
            true => keys.last().cloned(),
            false => None,
        };
        Ok(Page { keys, next })
    }

    fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        let mut conn = self.catalog.conn()?;
        let (repo, k) = (&self.repository, key.as_str());
        match cond {
            Cond::Any => {
                conn.client.execute(
                    "DELETE FROM repository_locks WHERE repository = $1 AND key = $2",
                    &[repo, &k],
                )?;
                Ok(())
            }
            Cond::IfMatch(etag) => {
                let v = version(&etag).ok_or_else(|| self.refused(key))?;
                let gone = conn.client.execute(
                    "DELETE FROM repository_locks
                     WHERE repository = $1 AND key = $2 AND version = $3",
                    &[repo, &k, &v],
                )?;
                match gone {
                    1 => Ok(()),
                    _ => Err(self.refused(key)),
                }
            }
            Cond::IfAbsent => Err(Error::Bug(format!(
                "a delete of {key} on condition that it is absent"
            ))),
        }
    }

    fn space(&self) -> Result<Option<Space>> {
        Ok(None)
    }

    /// A put is one statement: none is ever left unfinished.
    fn unfinished(&self) -> Result<Vec<Unfinished>> {
        Ok(Vec::new())
    }

    fn discard(&self, _: &Unfinished) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_object_store_postgres_locks() {
        let test = "conformance_object_store_postgres_locks";
        let Some(url) = crate::pg::testing::fresh_database(test).unwrap() else {
            return;
        };
        let catalog = PgCatalog::open(&url).unwrap();
        let a = catalog.locks_of(&RepositoryId([1; 16]));
        crate::repository::objects::conformance::run(&a).unwrap();
        // Another repository's locks are apart.
        let b = catalog.locks_of(&RepositoryId([2; 16]));
        a.put(
            &Key::new("locks/exclusive").unwrap(),
            b"a\n",
            Cond::IfAbsent,
        )
        .unwrap();
        assert!(b.list_all("").unwrap().is_empty());
        b.put(
            &Key::new("locks/exclusive").unwrap(),
            b"b\n",
            Cond::IfAbsent,
        )
        .unwrap();
    }
}
