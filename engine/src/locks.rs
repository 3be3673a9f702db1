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
//! A lock whose mtime is older than [`STALE_AFTER`] belongs to a dead holder.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, IoContext, Result};

/// A holder touches its lock every second; one untouched this long is dead.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// A lock this process holds; released (removed) on drop.
#[derive(Debug)]
pub struct Held {
    path: PathBuf,
}

impl Held {
    /// Proves the holder alive. Called by the operation's heartbeat.
    pub fn touch(&self) -> Result<()> {
        let now = fs::File::options()
            .write(true)
            .open(&self.path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        now.at(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn is_live(path: &Path) -> bool {
    match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(mtime) => match SystemTime::now().duration_since(mtime) {
            Ok(age) => age < STALE_AFTER,
            Err(_) => true, // touched "in the future": clocks differ; assume alive
        },
        Err(_) => false,
    }
}

/// Creates the lock file with its content in one step: the content is
/// written to a file under the repository's `tmp/` (named after this
/// process, so cleanup finds it if we die), then hard-linked into place,
/// which fails if the lock exists (atomic on NFS, like `O_EXCL`).
fn create(path: &Path, owner: &str) -> std::io::Result<Held> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir
        .parent()
        .unwrap_or(dir)
        .join("tmp")
        .join(format!("{}~lock-{owner}", crate::process::owner_tag()));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        writeln!(f, "{owner}")?;
        f.sync_all()?;
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    written.map(|()| Held {
        path: path.to_path_buf(),
    })
}

/// Live shared locks other than `mine`; stale ones are removed on the way.
fn live_shared(dir: &Path, mine: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut live = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        let is_shared = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("shared-"));
        if !is_shared || Some(path.as_path()) == mine {
            continue;
        }
        if is_live(&path) {
            live.push(path);
        } else {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(live)
}

/// Removes a stale exclusive lock. Renaming it away first means two takers
/// cannot both remove it; if the one renamed turns out live (its holder
/// re-created it meanwhile), it is put back.
fn take_over(exclusive: &Path, dir: &Path) {
    let aside = dir.join(format!("stale-{}", crate::process::owner_tag()));
    if fs::rename(exclusive, &aside).is_ok() {
        if is_live(&aside) {
            let _ = fs::hard_link(&aside, exclusive);
        }
        let _ = fs::remove_file(&aside);
    }
}

/// Takes a shared lock in `dir`, waiting up to `wait` while the exclusive
/// lock is held.
pub fn shared(dir: &Path, owner: &str, wait: Duration) -> Result<Held> {
    let deadline = Instant::now() + wait;
    let exclusive = dir.join("exclusive");
    let path = dir.join(format!("shared-{owner}"));
    loop {
        let held = create(&path, owner).at(&path)?;
        if !is_live(&exclusive) {
            return Ok(held);
        }
        drop(held);
        if Instant::now() >= deadline {
            return Err(Error::Busy(format!(
                "the repository is locked exclusively ({}): a delete or cleanup is removing packs",
                exclusive.display()
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Takes the exclusive lock in `dir`, waiting up to `wait` for it and for
/// every live shared lock to go.
pub fn exclusive(dir: &Path, owner: &str, wait: Duration) -> Result<Held> {
    let deadline = Instant::now() + wait;
    let path = dir.join("exclusive");
    let held = loop {
        match create(&path, owner) {
            Ok(held) => break held,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !is_live(&path) {
                    take_over(&path, dir);
                    continue;
                }
                if Instant::now() >= deadline {
                    return Err(Error::Busy(format!(
                        "the repository is locked exclusively by another process ({})",
                        path.display()
                    )));
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(Error::io(&path, e)),
        }
    };
    loop {
        let others = live_shared(dir, None)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository-like root with `tmp/` and `locks/`; returns `locks/`.
    fn lock_dir() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("tmp")).unwrap();
        let dir = root.path().join("locks");
        fs::create_dir(&dir).unwrap();
        (root, dir)
    }

    #[test]
    fn shared_and_exclusive_exclude_each_other() {
        let (_root, dir) = lock_dir();
        let a = shared(&dir, "a", Duration::ZERO).unwrap();
        let b = shared(&dir, "b", Duration::ZERO).unwrap();
        let e = exclusive(&dir, "x", Duration::from_millis(200));
        assert!(matches!(e, Err(Error::Busy(_))), "{e:?}");
        // A refused exclusive lock leaves nothing behind.
        assert!(!dir.join("exclusive").exists());
        drop((a, b));
        let e = exclusive(&dir, "x", Duration::ZERO).unwrap();
        assert_eq!(fs::read_to_string(e.path()).unwrap(), "x\n");
        assert!(matches!(
            shared(&dir, "c", Duration::from_millis(200)),
            Err(Error::Busy(_))
        ));
        drop(e);
        shared(&dir, "c", Duration::ZERO).unwrap();
        assert_eq!(
            fs::read_dir(dir.parent().unwrap().join("tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_stale_lock_is_taken_over() {
        let (_root, dir) = lock_dir();
        let old = SystemTime::now() - STALE_AFTER - Duration::from_secs(5);
        for name in ["exclusive", "shared-dead"] {
            let f = fs::File::create(dir.join(name)).unwrap();
            f.set_modified(old).unwrap();
        }
        let e = exclusive(&dir, "x", Duration::ZERO).unwrap();
        assert!(!dir.join("shared-dead").exists());
        drop(e);
        assert!(!dir.join("exclusive").exists());
    }
}
