//! Whether another process's heartbeat is still beating, judged on this
//! process's own clock alone.
//!
//! A lock's mtime and an operation's `heartbeat_at` are written from the
//! holder's clock; comparing them with ours would make a node whose clock
//! runs ahead see every live holder as dead. So a heartbeat is never
//! compared with our time: it is *dead* once its value has stayed the same
//! for [`crate::repository::leases::STALE_AFTER`] of our monotonic clock, and alive
//! until then — including the first time we see it. A process that has
//! just started therefore waits that long before it takes over anything.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Heartbeats watched at once past which long-unchanged ones are forgotten.
const WATCHED: usize = 4096;

/// What this process has seen of each heartbeat: its value, and when (on
/// our monotonic clock) it was first seen with that value.
#[derive(Default)]
pub struct Watch {
    seen: Mutex<HashMap<String, (i128, Instant)>>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Watch {
    /// The process-wide watch.
    pub fn global() -> &'static Watch {
        static WATCH: OnceLock<Watch> = OnceLock::new();
        WATCH.get_or_init(Watch::default)
    }

    /// Whether the heartbeat `key`, now reading `beat`, has changed within
    /// the last `after` of our clock (or is seen for the first time).
    pub fn alive(&self, key: &str, beat: i128, after: Duration) -> bool {
        self.alive_at(key, beat, after, Instant::now())
    }

    fn alive_at(&self, key: &str, beat: i128, after: Duration, now: Instant) -> bool {
        let since = self.observe(key, beat, now);
        now.saturating_duration_since(since) < after
    }

    /// Records `beat` for `key`; returns since when it has read so.
    fn observe(&self, key: &str, beat: i128, now: Instant) -> Instant {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((old, since)) = seen.get(key) {
            if *old == beat {
                return *since;
            }
        }
        if seen.len() >= WATCHED {
            seen.retain(|_, (_, since)| {
                now.saturating_duration_since(*since) < Duration::from_secs(600)
            });
        }
        seen.insert(key.to_string(), (beat, now));
        now
    }

    /// Records that `key` has read `beat` since `since` (tests stand in
    /// for a wait this way).
    #[cfg(test)]
    pub(crate) fn seen_since(&self, key: &str, beat: i128, since: Instant) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(key.to_string(), (beat, since));
    }

    /// Forgets `key` (its lock was removed).
    pub fn forget(&self, key: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_dead_only_after_it_stood_still_on_our_clock() {
        let w = Watch::default();
        let t0 = Instant::now();
        let after = Duration::from_secs(30);
        // Whatever its value says about the writer's clock (far past, far
        // future), a heartbeat seen for the first time is alive.
        assert!(w.alive_at("a", -1_000_000_000_000, after, t0));
        assert!(w.alive_at("b", i128::MAX, after, t0));
        assert!(w.alive_at("a", -1_000_000_000_000, after, t0 + Duration::from_secs(29)));
        assert!(!w.alive_at("a", -1_000_000_000_000, after, t0 + Duration::from_secs(31)));
        // It beats again: alive, and the wait starts over.
        assert!(w.alive_at("a", 5, after, t0 + Duration::from_secs(32)));
        assert!(w.alive_at("a", 5, after, t0 + Duration::from_secs(61)));
        assert!(!w.alive_at("a", 5, after, t0 + Duration::from_secs(63)));
        w.forget("a");
        assert!(w.alive_at("a", 5, after, t0 + Duration::from_secs(64)));
    }
}
