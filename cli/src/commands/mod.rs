//! One module per command group; each turns parsed arguments into engine
//! calls and engine results into output records.

pub mod backup;
pub mod bench;
pub mod quota;
pub mod share;
pub mod snapshot;

use serde_json::Value;
use strata_engine::clock::iso8601;

pub fn time(ns: Option<i64>) -> Value {
    ns.map_or(Value::Null, |ns| Value::String(iso8601(ns)))
}

pub fn opt(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()))
}
