//! Repository leases (FORMAT.md section 7a): the locks that keep sweeps
//! and backups apart, on any object store, built on conditional puts and
//! deletes. No `fcntl` locks, which NFS implements unreliably.
//!
//! - A **shared** lease (`locks/shared-<op>`) is held by every backup for
//!   its whole run: a running backup deduplicates against packs that no
//!   layer references yet.
//! - The **exclusive** lease (`locks/exclusive`) is held to remove or
//!   rewrite packs (sweep, repack, prune). It is granted only when no live
//!   shared lease exists; while it is held or wanted, new shared leases
//!   wait.
//!
//! A lease is created with [`Cond::IfAbsent`] and its holder renews it
//! every second: a put under [`Cond::IfMatch`] of its holder line and a
//! renewal count that grows, so every renewal is new bytes and a new
//! version on any store (an S3 etag is the bytes' MD5). Both sides create
//! their own lease first and look for the other's after, so at least one of
//! two racing processes sees the other and backs off. A lease whose version
//! has not changed for [`STALE_AFTER`] *of the observer's own clock*
//! belongs to a dead holder ([`crate::liveness`]): it is fenced, overwritten
//! under [`Cond::IfMatch`] of that version with a line that names no
//! holder (so a holder that renewed meanwhile keeps it, and one that was
//! only stalled finds it gone), then deleted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::layout;
use super::objects::{Cond, Etag, Key, ObjectStore};
use super::Repository;
use crate::error::{Error, Result};
use crate::liveness::Watch;
use crate::process::Tag;

/// A holder renews its lease every second; one unchanged this long is dead.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// Why a process holds the exclusive lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Removing packs no layer references.
    Sweep,
    /// Rewriting packs to drop dead chunks.
    Repack,
    /// Removing backups and merging their layers.
    Prune,
}

impl Purpose {
    fn word(self) -> &'static str {
        match self {
            Purpose::Sweep => "gc",
            Purpose::Repack => "repack",
            Purpose::Prune => "prune",
        }
    }
}

/// Who holds a lease, as its content says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holder {
    /// A backup's operation (a shared lease).
    Backup(String),
    /// A process with the exclusive lease.
    Exclusive { purpose: Purpose, process: Tag },
}

/// What a fenced lease holds: no holder's line.
const FENCED: &[u8] = b"fenced\n";

impl Holder {
    /// The holder's line, which begins the lease's content.
    fn encode(&self) -> Vec<u8> {
        match self {
            Holder::Backup(op) => format!("{op}\n"),
            Holder::Exclusive { purpose, process } => format!("{}-{process}~\n", purpose.word()),
        }
        .into_bytes()
    }

    /// The holder of an exclusive lease, from its content.
    fn decode_exclusive(bytes: &[u8]) -> Option<Holder> {
        let text = std::str::from_utf8(holder_line(bytes)).ok()?.trim();
        let (word, process) = text.split_once('-')?;
        let purpose = [Purpose::Sweep, Purpose::Repack, Purpose::Prune]
            .into_iter()
            .find(|p| p.word() == word)?;
        Some(Holder::Exclusive {
            purpose,
            process: Tag::parse(process)?,
        })
    }
}

/// The first line of a lease's content, with its newline.
fn holder_line(content: &[u8]) -> &[u8] {
    match content.iter().position(|b| *b == b'\n') {
        Some(end) => &content[..=end],
        None => content,
    }
}

/// A lease's content: the holder's line, then how many times it was
/// renewed.
fn content(holder: &[u8], renewals: u64) -> Vec<u8> {
    let mut out = holder.to_vec();
    out.extend_from_slice(format!("renewal {renewals}\n").as_bytes());
    out
}

/// A lease this process holds; released (deleted) on drop.
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    key: Key,
    /// The holder's line.
    holder: Vec<u8>,
    /// The version this process last wrote, and its renewal count.
    last: Mutex<(Etag, u64)>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("key", &self.key).finish()
    }
}

impl Lease {
    fn etag(&self) -> Etag {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// Renews the lease: proves the holder alive. Called by the
    /// operation's heartbeat. A lease taken over is not brought back.
    pub fn renew(&self) -> Result<()> {
        let (etag, renewals) = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let renewals = renewals + 1;
        let renewed = self.store.put(
            &self.key,
            &content(&self.holder, renewals),
            Cond::IfMatch(etag),
        );
        let etag = match renewed {
            Ok(etag) => etag,
            // A renewal whose answer was lost moved the version: the lease
            // is still ours while it holds our content.
            Err(Error::Precondition { .. }) if self.still_ours()? => {
                match self.store.stat(&self.key)? {
                    Some(meta) => meta.etag,
                    None => return Err(self.taken_over()),
                }
            }
            Err(e) => return Err(e),
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = (etag, renewals);
        Ok(())
    }

    fn still_ours(&self) -> Result<bool> {
        match self.store.get(&self.key) {
            Ok(bytes) => Ok(holder_line(&bytes) == self.holder),
            Err(e) if super::is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn taken_over(&self) -> Error {
        Error::InvalidState(format!(
            "the repository lock {}/{} was taken over while this operation stalled; \
             packs it relies on may have been removed",
            self.store.location(),
            self.key
        ))
    }

    /// Fails unless the lease is still this holder's: one that stalled
    /// past [`STALE_AFTER`] may have had it taken over, and then a sweep
    /// may have removed packs it relies on. Checked before a backup
    /// publishes its layer. Only the holder ever writes its content, and a
    /// renewal never re-creates a lease that was deleted.
    pub fn verify(&self) -> Result<()> {
        match self.still_ours()? {
            true => Ok(()),
            false => Err(self.taken_over()),
        }
    }

    /// The lease's key in the repository.
    pub fn key(&self) -> &Key {
        &self.key
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A shared lease's key is its operation's alone: nobody else ever
        // creates it, so it goes whatever its version (one durable unlink,
        // where a conditional delete costs a rename and two more syncs at
        // the end of every backup and restore).
        if layout::shared_lease_of(&self.key).is_some() {
            let _ = self.store.delete(&self.key, Cond::Any);
            return;
        }
        let released = self.store.delete(&self.key, Cond::IfMatch(self.etag()));
        // A version this process lost track of, still holding its line; or
        // a store that cannot delete on condition (the lease is this
        // holder's while it holds its line, and renewed: nobody takes it).
        if matches!(
            released,
            Err(Error::Precondition { .. } | Error::Unsupported(_))
        ) && self.still_ours().unwrap_or(false)
        {
            let _ = self.store.delete(&self.key, Cond::Any);
        }
    }
}

/// The name a lease's versions are watched under (leases of every
/// repository this process uses share one watch).
fn watched(store: &dyn ObjectStore, key: &Key) -> String {
    format!("{}/{key}", store.location())
}

/// A version as the watch counts heartbeats.
fn beat(etag: &Etag) -> i128 {
    let hash = blake3::hash(etag.0.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash.as_bytes()[..16]);
    i128::from_le_bytes(first)
}

/// The lease's current version and whether its holder lives; `Err` when
/// the store cannot say.
fn look(store: &dyn ObjectStore, key: &Key) -> Result<Option<(Etag, bool)>> {
    Ok(store.stat(key)?.map(|meta| {
        let live = Watch::global().alive(&watched(store, key), beat(&meta.etag), STALE_AFTER);
        (meta.etag, live)
    }))
}

fn is_live(store: &dyn ObjectStore, key: &Key) -> bool {
    match look(store, key) {
        Ok(Some((_, live))) => live,
        Ok(None) => false,
        // Unknown (the store is unreachable): assume the holder is alive.
        Err(_) => true,
    }
}

fn create(store: &Arc<dyn ObjectStore>, key: Key, holder: &Holder) -> Result<Lease> {
    let holder = holder.encode();
    let etag = store.put(&key, &content(&holder, 0), Cond::IfAbsent)?;
    Ok(Lease {
        store: store.clone(),
        key,
        holder,
        last: Mutex::new((etag, 0)),
    })
}

/// Removes the lease at `key` if its holder is dead. It is fenced first,
/// on the version judged stale only (a holder that renewed meanwhile keeps
/// it; one that stalled finds its line gone and stops), then deleted: on
/// the fenced version, or, where the store cannot delete on condition,
/// whatever it is (nobody renews a fenced lease, and a new one is only
/// created over none).
fn remove_if_dead(store: &dyn ObjectStore, key: &Key) -> Result<bool> {
    match look(store, key)? {
        Some((etag, false)) => {
            if let Ok(fenced) = store.put(key, FENCED, Cond::IfMatch(etag)) {
                if let Err(Error::Unsupported(_)) = store.delete(key, Cond::IfMatch(fenced)) {
                    let _ = store.delete(key, Cond::Any);
                }
            }
            Watch::global().forget(&watched(store, key));
            Ok(true)
        }
        Some((_, true)) => Ok(false),
        None => Ok(true),
    }
}

/// Live shared leases other than `mine`; dead ones are removed on the way.
fn live_shared(store: &dyn ObjectStore) -> Result<Vec<Key>> {
    let mut live = Vec::new();
    for key in store.list_all(layout::SHARED_LEASES)? {
        if !remove_if_dead(store, &key)? {
            live.push(key);
        }
    }
    Ok(live)
}

/// Takes the shared lease of backup operation `op`, waiting up to `wait`
/// while the exclusive lease is held.
pub fn shared(repo: &Repository, op: &str, wait: Duration) -> Result<Lease> {
    let store = &repo.locks;
    let deadline = Instant::now() + wait;
    let key = layout::shared_lease(op)?;
    let exclusive = layout::exclusive_lease();
    loop {
        let held = create(store, key.clone(), &Holder::Backup(op.to_string()))?;
        if !is_live(store.as_ref(), &exclusive) {
            return Ok(held);
        }
        drop(held);
        if Instant::now() >= deadline {
            return Err(Error::Busy(format!(
                "the repository is locked exclusively ({}/{exclusive}): a delete or cleanup is removing packs",
                store.location()
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Takes the exclusive lease for `purpose`, waiting up to `wait` for it
/// and for every live shared lease to go.
pub fn exclusive(repo: &Repository, purpose: Purpose, wait: Duration) -> Result<Lease> {
    let store = &repo.locks;
    let deadline = Instant::now() + wait;
    let key = layout::exclusive_lease();
    let holder = Holder::Exclusive {
        purpose,
        process: Tag::this(),
    };
    let held = loop {
        match create(store, key.clone(), &holder) {
            Ok(held) => break held,
            Err(Error::Precondition { .. }) => {
                if remove_if_dead(store.as_ref(), &key)? {
                    continue;
                }
                if Instant::now() >= deadline {
                    return Err(Error::Busy(format!(
                        "the repository is locked exclusively by another process ({}/{key})",
                        store.location()
                    )));
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(e),
        }
    };
    loop {
        let others = live_shared(store.as_ref())?;
        if others.is_empty() {
            return Ok(held);
        }
        if Instant::now() >= deadline {
            return Err(Error::Busy(format!(
                "{} backup(s) are running on this repository",
                others.len()
            )));
        }
        held.renew()?;
        std::thread::sleep(POLL);
    }
}

/// How many live shared leases (running backups, on any node) there are.
/// Changes nothing: dead leases are not removed.
pub fn live_shared_count(repo: &Repository) -> Result<usize> {
    let store = repo.locks.as_ref();
    Ok(store
        .list_all(layout::SHARED_LEASES)?
        .iter()
        .filter(|key| is_live(store, key))
        .count())
}

/// Who holds the exclusive lease, if it is held by a holder it names.
pub fn exclusive_holder(repo: &Repository) -> Option<Holder> {
    let bytes = repo.locks.get(&layout::exclusive_lease()).ok()?;
    Holder::decode_exclusive(&bytes)
}

/// Removes the exclusive lease whatever its state (its holder is known dead).
pub fn break_exclusive(repo: &Repository) {
    let _ = repo.locks.delete(&layout::exclusive_lease(), Cond::Any);
}

/// Removes the shared lease of operation `op` (its process is gone).
pub fn break_shared(repo: &Repository, op: &str) {
    if let Ok(key) = layout::shared_lease(op) {
        let _ = repo.locks.delete(&key, Cond::Any);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::objects::{MemoryStore, PosixStore};
    use strata_format::config::RepoConfig;
    use strata_format::RepositoryId;

    fn repos() -> Vec<(Option<tempfile::TempDir>, Repository)> {
        let dir = tempfile::tempdir().unwrap();
        let posix: Arc<dyn ObjectStore> = Arc::new(PosixStore::new(dir.path()).unwrap());
        let memory: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new("leases"));
        vec![
            (
                Some(dir),
                Repository::init(posix, RepoConfig::new(RepositoryId([0; 16]))).unwrap(),
            ),
            (
                None,
                Repository::init(memory, RepoConfig::new(RepositoryId([0; 16]))).unwrap(),
            ),
        ]
    }

    #[test]
    fn holders_encode_and_decode() {
        let holder = Holder::Exclusive {
            purpose: Purpose::Repack,
            process: Tag::this(),
        };
        assert_eq!(Holder::decode_exclusive(&holder.encode()), Some(holder));
        assert_eq!(Holder::decode_exclusive(b"nobody\n"), None);
    }

    #[test]
    fn shared_and_exclusive_exclude_each_other() {
        for (_dir, r) in repos() {
            let a = shared(&r, "a", Duration::ZERO).unwrap();
            let b = shared(&r, "b", Duration::ZERO).unwrap();
            let e = exclusive(&r, Purpose::Sweep, Duration::from_millis(200));
            assert!(matches!(e, Err(Error::Busy(_))), "{e:?}");
            // A refused exclusive lease leaves nothing behind.
            assert!(exclusive_holder(&r).is_none());
            a.renew().unwrap();
            a.renew().unwrap();
            a.verify().unwrap();
            drop((a, b));
            let e = exclusive(&r, Purpose::Sweep, Duration::ZERO).unwrap();
            assert!(matches!(
                exclusive_holder(&r),
                Some(Holder::Exclusive {
                    purpose: Purpose::Sweep,
                    ..
                })
            ));
            assert!(matches!(
                shared(&r, "c", Duration::from_millis(200)),
                Err(Error::Busy(_))
            ));
            e.renew().unwrap();
            drop(e);
            shared(&r, "c", Duration::ZERO).unwrap();
            assert!(r.unfinished().unwrap().is_empty());
        }
    }

    /// Each renewal is new bytes, so its version moves on a store whose
    /// etag is the bytes' hash (S3's MD5) as on any other.
    #[test]
    fn every_renewal_writes_new_bytes() {
        for (_dir, r) in repos() {
            let held = shared(&r, "op", Duration::ZERO).unwrap();
            let mut seen = vec![r.locks.get(held.key()).unwrap()];
            for _ in 0..3 {
                held.renew().unwrap();
                let now = r.locks.get(held.key()).unwrap();
                assert!(!seen.contains(&now), "{now:?}");
                assert_eq!(holder_line(&now), b"op\n");
                seen.push(now);
            }
            held.verify().unwrap();
            // Another holder's line is not ours, whatever its renewals.
            r.locks
                .put(held.key(), &content(b"other\n", 9), Cond::Any)
                .unwrap();
            assert!(held.verify().is_err());
            assert!(held.renew().is_err());
        }
    }

    #[test]
    fn a_stale_lease_is_taken_over_and_its_holder_knows() {
        for (_dir, r) in repos() {
            let dead = shared(&r, "dead", Duration::ZERO).unwrap();
            assert!(matches!(
                exclusive(&r, Purpose::Prune, Duration::ZERO),
                Err(Error::Busy(_))
            ));
            assert_eq!(live_shared_count(&r).unwrap(), 1);
            // Unchanged for STALE_AFTER of our clock: dead.
            let long_ago = Instant::now() - STALE_AFTER - Duration::from_secs(1);
            let meta = r.locks.stat(dead.key()).unwrap().unwrap();
            let name = watched(r.locks.as_ref(), dead.key());
            Watch::global().seen_since(&name, beat(&meta.etag), long_ago);
            let e = exclusive(&r, Purpose::Prune, Duration::ZERO).unwrap();
            assert!(r.locks.stat(dead.key()).unwrap().is_none());
            // The stalled holder finds out, and does not bring it back.
            assert!(dead.renew().is_err());
            assert!(dead.verify().is_err());
            assert!(r.locks.stat(dead.key()).unwrap().is_none());
            drop(e);
            assert!(exclusive_holder(&r).is_none());
        }
    }
}
