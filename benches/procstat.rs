//! What the kernel counts for a process: its peak RSS and its CPU time.
// Each benchmark compiles this module and uses part of it.
#![allow(dead_code)]

/// This process's peak resident set, in KiB (`VmHWM`).
pub fn peak_rss_kib() -> u64 {
    status_kib(std::process::id(), "VmHWM:").unwrap_or(0)
}

/// How much of this process's resident set is pages of files and shared
/// memory (its code and libraries, SQLite's shared index), in KiB, now:
/// what its peak holds besides its heap and stacks.
pub fn mapped_rss_kib() -> u64 {
    let own = |field| status_kib(std::process::id(), field).unwrap_or(0);
    own("RssFile:") + own("RssShmem:")
}

/// A field of `/proc/PID/status`, in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time process `pid` has used (user + system, every thread), in
/// seconds: fields 14 and 15 of `/proc/PID/stat`, in ticks of 1/100 s.
pub fn cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The command name (field 2) may hold spaces: count past its end.
            let rest = &s[s.rfind(')')? + 1..];
            let mut fields = rest.split_whitespace().skip(11);
            let user: f64 = fields.next()?.parse().ok()?;
            let system: f64 = fields.next()?.parse().ok()?;
            Some((user + system) / 100.0)
        })
        .unwrap_or(0.0)
}
