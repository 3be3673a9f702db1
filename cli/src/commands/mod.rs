//! One module per command group; each turns parsed arguments into engine
//! calls and engine results into output records.

pub mod backup;
pub mod bench;
pub mod browse;
pub mod prune;
pub mod quota;
pub mod repack;
pub mod serve;
pub mod share;
pub mod snapshot;
pub mod upkeep;

use serde_json::Value;
use strata_engine::clock::iso8601;

/// Tells the operator which flag does what an error says is refused
/// without it (the engine names no flags).
pub fn with_flag(e: strata_engine::Error, flag: &str) -> strata_engine::Error {
    use strata_engine::Error;
    match e {
        Error::Busy(m) => Error::Busy(format!("{m} (`{flag}`)")),
        Error::InvalidState(m) => Error::InvalidState(format!("{m} (`{flag}`)")),
        other => other,
    }
}

pub fn time(ns: Option<i64>) -> Value {
    ns.map_or(Value::Null, |ns| Value::String(iso8601(ns)))
}

/// A time given to `flag`: RFC 3339 (`2026-12-02T08:00:00Z`), or a
/// duration (`36h`, `7days`) meaning that long ago; nanoseconds since the
/// epoch.
pub fn parse_time(flag: &str, s: &str) -> anyhow::Result<i64> {
    let bad = |why: String| strata_engine::Error::InvalidArgument(format!("{flag} {s:?}: {why}"));
    let t = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(e) => match humantime::parse_duration(s) {
            Ok(ago) => std::time::SystemTime::now()
                .checked_sub(ago)
                .ok_or_else(|| bad("too long ago".into()))?,
            Err(_) => {
                return Err(bad(format!(
                "neither an RFC 3339 time (2026-12-02T08:00:00Z) nor a duration ago (7days): {e}"
            ))
                .into())
            }
        },
    };
    let since = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad("before 1970".into()))?;
    Ok(i64::try_from(since.as_nanos()).map_err(|_| bad("too far ahead".into()))?)
}

pub fn opt(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}
