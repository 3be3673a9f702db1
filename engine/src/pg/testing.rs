//! A fresh database for each test, on the server the test run started
//! (`tests/run` starts a private cluster and names it in
//! `STRATA_TEST_POSTGRES`). Without one the PostgreSQL tests skip with a
//! loud message, unless `STRATA_REQUIRE_POSTGRES=1` (set by CI), which
//! makes them fail instead.

use crate::error::{Error, Result};

/// The URL of a new, empty database for `test`, or `None` when the
/// PostgreSQL tests skip here.
pub fn fresh_database(test: &str) -> Result<Option<String>> {
    let Ok(admin) = std::env::var("STRATA_TEST_POSTGRES") else {
        if std::env::var("STRATA_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("{test}: PostgreSQL tests are required here, but STRATA_TEST_POSTGRES is unset (run them through tests/run)");
        }
        eprintln!("\n!!!!!!!! SKIPPED {test}: no PostgreSQL server (run the tests through tests/run) !!!!!!!!\n");
        return Ok(None);
    };
    let name = format!(
        "t_{}",
        uuid::Uuid::from_bytes(crate::repository::new_uuid()?).simple()
    );
    let mut client = postgres::Client::connect(&admin, postgres::NoTls)?;
    client.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let (base, query) = admin.split_once('?').unwrap_or((&admin, ""));
    let (server, _) = base.rsplit_once('/').ok_or_else(|| {
        Error::InvalidArgument(format!("STRATA_TEST_POSTGRES {admin:?} names no database"))
    })?;
    Ok(Some(match query.is_empty() {
        true => format!("{server}/{name}"),
        false => format!("{server}/{name}?{query}"),
    }))
}
