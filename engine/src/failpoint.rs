//! Named crash points, compiled in only with the `failpoints` feature (the
//! end-to-end tests build the binary with it; a release build has none).
//!
//! `STRATA_FAILPOINTS="name=abort;other=sleep(2000)"` makes the process
//! abort (as a `kill -9` would: no destructor runs, nothing is flushed) or
//! sleep when it reaches a point; `STRATA_FAILPOINT_LOG=FILE` appends the
//! name of every point reached, so a test can list the points an operation
//! passes and then abort at each in turn.

/// Marks the point `name`: a publish, record or remove step after which a
/// crash must lose nothing.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::io::Write;
    use std::sync::OnceLock;
    static ACTIONS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    let actions = ACTIONS.get_or_init(|| {
        std::env::var("STRATA_FAILPOINTS")
            .unwrap_or_default()
            .split(';')
            .filter_map(|pair| pair.split_once('='))
            .map(|(n, a)| (n.trim().to_string(), a.trim().to_string()))
            .collect()
    });
    if let Some(log) = std::env::var_os("STRATA_FAILPOINT_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "{name}");
        }
    }
    for (point, action) in actions {
        if point != name {
            continue;
        }
        if action == "abort" {
            std::process::abort();
        }
        let ms = action
            .strip_prefix("sleep(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|ms| ms.parse::<u64>().ok());
        if let Some(ms) = ms {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
}

/// Marks the point `name` (a no-op: this build has no failpoints).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
