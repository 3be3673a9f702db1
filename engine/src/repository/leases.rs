//! Repository locks that work on NFS: plain files under `locks/`, created
//! with `O_EXCL` (atomic on the server), kept alive by touching their mtime,
//! and taken over once their holder stops touching them. No `fcntl` locks,
//! which NFS implements unreliably.
//!
//! - A **shared** lock (`locks/shared-<owner>`) is held by every backup for
//!   its whole run: a running backup deduplicates against packs that no
//!   layer references yet.
//! - The **exclusive** lock (`locks/exclusive`) is held to remove packs
//!   (delete, cleanup). It is granted only when no live shared lock exists;
//!   while it is held or wanted, new shared locks wait.
//!
//! Both sides create their own file first and look for the other's after,
//! so at least one of two racing processes sees the other and backs off.
//! A lock whose mtime has not changed for [`STALE_AFTER`] *of the
//! observer's own clock* belongs to a dead holder ([`crate::liveness`]):
//! the mtime is written from the holder's clock and is never compared with
//! ours, so nodes whose clocks disagree never take a live lock.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};
use crate::liveness::Watch;
use crate::repository::objects::{io_kind, Backend};

/// A holder touches its lock every second; one untouched this long is dead.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
const EXCLUSIVE: &str = "locks/exclusive";

/// A lock this process holds; released (removed) on drop.
pub struct Held {
    backend: Arc<dyn Backend>,
    key: String,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("key", &self.key).finish()
    }
}

impl Held {
    /// Proves the holder alive. Called by the operation's heartbeat.
    pub fn touch(&self) -> Result<()> {
        self.backend.touch(&self.key)
    }

    /// Fails unless the lock is still there: a holder that stalled past
    /// [`STALE_AFTER`] may have had it taken over, and then a sweep may have
    /// removed packs it relies on. Checked before a backup publishes its layer.
    pub fn verify(&self) -> Result<()> {
        match self.backend.stat(&self.key)? {
            Some(_) => Ok(()),
            None => Err(Error::InvalidState(format!(
                "the repository lock {}/{} was taken over while this operation stalled; \
                 packs it relies on may have been removed",
                self.backend.location(),
                self.key
            ))),
        }
    }

    /// The lock's key in the repository (`locks/...`).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.backend.remove(&self.key);
    }
}

/// A lock's heartbeat: its mtime, as a number (whatever clock wrote it).
fn beat(mtime: SystemTime) -> i128 {
    match mtime.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// The name a lock's heartbeat is watched under (locks of every repository
/// this process uses share one watch).
fn watched(backend: &dyn Backend, key: &str) -> String {
    format!("{}/{key}", backend.location())
}

/// The lock's heartbeat if it exists; `Err` when the export cannot say.
fn read_beat(backend: &dyn Backend, key: &str) -> Result<Option<i128>> {
    Ok(backend.stat(key)?.map(|meta| beat(meta.mtime)))
}

fn is_live(backend: &dyn Backend, key: &str) -> bool {
    match read_beat(backend, key) {
        Ok(Some(b)) => Watch::global().alive(&watched(backend, key), b, STALE_AFTER),
        Ok(None) => false,
        // Unknown (the export is unreachable): assume the holder is alive.
        Err(_) => true,
    }
}

/// Creates the lock object with its content in one step: the content is
/// written under the repository's `tmp/` (named after this process, so
/// cleanup finds it if we die), then published exclusively, which fails
/// if the lock exists (a hard link: atomic on NFS, like `O_EXCL`).
fn create(backend: &Arc<dyn Backend>, key: &str, owner: &str) -> Result<Held> {
    let tmp = format!("tmp/{}~lock-{owner}", crate::process::owner_tag());
    let written = (|| {
        let mut w = backend.create(&tmp)?;
        writeln!(w, "{owner}").map_err(|e| Error::io(&tmp, e))?;
        w.finish()?;
        backend.publish(&tmp, key, true)
    })();
    if written.is_err() {
        let _ = backend.remove(&tmp);
    }
    written.map(|()| Held {
        backend: backend.clone(),
        key: key.to_string(),
    })
}

fn already_exists(e: &Error) -> bool {
    io_kind(e) == Some(std::io::ErrorKind::AlreadyExists)
}

/// Live shared locks other than `mine`; stale ones are removed on the way.
fn live_shared(backend: &dyn Backend, mine: Option<&str>) -> Result<Vec<String>> {
    let mut live = Vec::new();
    for name in backend.list("locks")? {
        let key = format!("locks/{name}");
        if !name.starts_with("shared-") || Some(key.as_str()) == mine {
            continue;
        }
        if is_live(backend, &key) {
            live.push(key);
        } else {
            let _ = backend.remove(&key);
            Watch::global().forget(&watched(backend, &key));
        }
    }
    Ok(live)
}

/// Removes a stale exclusive lock. Renaming it away first means two takers
/// cannot both remove it; if the one renamed turns out live (its holder
/// re-created it meanwhile), it is put back.
fn take_over(backend: &dyn Backend) {
    let Ok(Some(stale)) = read_beat(backend, EXCLUSIVE) else {
        return;
    };
    let aside = format!("locks/stale-{}", crate::process::owner_tag());
    if backend.rename(EXCLUSIVE, &aside).is_ok() {
        // Not the lock judged stale (its holder beat, or re-created it).
        if !matches!(read_beat(backend, &aside), Ok(Some(b)) if b == stale) {
            let _ = backend.publish(&aside, EXCLUSIVE, true);
        }
        let _ = backend.remove(&aside);
        Watch::global().forget(&watched(backend, EXCLUSIVE));
    }
}

/// Takes a shared lock, waiting up to `wait` while the exclusive lock is
/// held.
pub fn shared(backend: &Arc<dyn Backend>, owner: &str, wait: Duration) -> Result<Held> {
    let deadline = Instant::now() + wait;
    let key = format!("locks/shared-{owner}");
    loop {
        let held = create(backend, &key, owner)?;
        if !is_live(backend.as_ref(), EXCLUSIVE) {
            return Ok(held);
        }
        drop(held);
        if Instant::now() >= deadline {
            return Err(Error::Busy(format!(
                "the repository is locked exclusively ({}/{EXCLUSIVE}): a delete or cleanup is removing packs",
                backend.location()
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Takes the exclusive lock, waiting up to `wait` for it and for every
/// live shared lock to go.
pub fn exclusive(backend: &Arc<dyn Backend>, owner: &str, wait: Duration) -> Result<Held> {
    let deadline = Instant::now() + wait;
    let held = loop {
        match create(backend, EXCLUSIVE, owner) {
            Ok(held) => break held,
            Err(e) if already_exists(&e) => {
                if !is_live(backend.as_ref(), EXCLUSIVE) {
                    take_over(backend.as_ref());
                    continue;
                }
                if Instant::now() >= deadline {
                    return Err(Error::Busy(format!(
                        "the repository is locked exclusively by another process ({}/{EXCLUSIVE})",
                        backend.location()
                    )));
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(e),
        }
    };
    loop {
        let others = live_shared(backend.as_ref(), None)?;
        if others.is_empty() {
            return Ok(held);
        }
        if Instant::now() >= deadline {
            return Err(Error::Busy(format!(
                "{} backup(s) are running on this repository",
                others.len()
            )));
        }
        held.touch()?;
        std::thread::sleep(POLL);
    }
}

/// How many live shared locks (running backups, on any node) there are.
/// Changes nothing: stale locks are not removed.
pub fn live_shared_count(backend: &dyn Backend) -> Result<usize> {
    Ok(backend
        .list("locks")?
        .iter()
        .filter(|name| name.starts_with("shared-") && is_live(backend, &format!("locks/{name}")))
        .count())
}

/// The owner written in the exclusive lock, if it is held.
pub fn exclusive_owner(backend: &dyn Backend) -> Option<String> {
    let bytes = backend.read(EXCLUSIVE).ok()?;
    Some(String::from_utf8_lossy(&bytes).trim().to_string())
}

/// Removes the exclusive lock whatever its state (its holder is known dead).
pub fn break_exclusive(backend: &dyn Backend) {
    let _ = backend.remove(EXCLUSIVE);
}

/// Removes the shared lock of operation `owner` (its process is gone).
pub fn break_shared(backend: &dyn Backend, owner: &str) {
    let _ = backend.remove(&format!("locks/shared-{owner}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::objects::PosixBackend;
    use std::fs;

    /// A repository-like root with `tmp/` and `locks/`.
    fn lock_dir() -> (tempfile::TempDir, Arc<dyn Backend>) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("tmp")).unwrap();
        fs::create_dir(root.path().join("locks")).unwrap();
        let backend: Arc<dyn Backend> = Arc::new(PosixBackend::new(root.path()).unwrap());
        (root, backend)
    }

    #[test]
    fn shared_and_exclusive_exclude_each_other() {
        let (root, b) = lock_dir();
        let a = shared(&b, "a", Duration::ZERO).unwrap();
        let bb = shared(&b, "b", Duration::ZERO).unwrap();
        let e = exclusive(&b, "x", Duration::from_millis(200));
        assert!(matches!(e, Err(Error::Busy(_))), "{e:?}");
        // A refused exclusive lock leaves nothing behind.
        assert!(!root.path().join(EXCLUSIVE).exists());
        drop((a, bb));
        let e = exclusive(&b, "x", Duration::ZERO).unwrap();
        assert_eq!(
            fs::read_to_string(root.path().join(e.key())).unwrap(),
            "x\n"
        );
        assert_eq!(exclusive_owner(b.as_ref()).as_deref(), Some("x"));
        assert!(matches!(
            shared(&b, "c", Duration::from_millis(200)),
            Err(Error::Busy(_))
        ));
        drop(e);
        shared(&b, "c", Duration::ZERO).unwrap();
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_stale_lock_is_taken_over() {
        let (root, b) = lock_dir();
        // Written by a clock far ahead of ours, and far behind: neither
        // says anything about whether the holder lives.
        let ahead = SystemTime::now() + Duration::from_secs(600);
        let behind = SystemTime::now() - Duration::from_secs(600);
        for (name, t) in [("exclusive", behind), ("shared-dead", ahead)] {
            let f = fs::File::create(root.path().join("locks").join(name)).unwrap();
            f.set_modified(t).unwrap();
        }
        assert!(matches!(
            exclusive(&b, "x", Duration::ZERO),
            Err(Error::Busy(_))
        ));
        assert_eq!(live_shared_count(b.as_ref()).unwrap(), 1);
        // Unchanged for STALE_AFTER of our clock: dead.
        let long_ago = Instant::now() - STALE_AFTER - Duration::from_secs(1);
        for (name, t) in [("exclusive", behind), ("shared-dead", ahead)] {
            let key = watched(b.as_ref(), &format!("locks/{name}"));
            Watch::global().seen_since(&key, beat(t), long_ago);
        }
        let e = exclusive(&b, "x", Duration::ZERO).unwrap();
        assert!(!root.path().join("locks/shared-dead").exists());
        drop(e);
        assert!(!root.path().join(EXCLUSIVE).exists());
    }
}
