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

pub fn opt(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}
