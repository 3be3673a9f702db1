//! One connection to the export, replaced when it fails, and the retry
//! loop every call goes through.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use nfs_rs::{Mount, Nfs4ErrorCode, NfsError};

use super::errors::{is_transient, to_io};
use crate::error::Result;
use crate::repository::objects::files::FileMeta;
use crate::repository::objects::location::NfsUrl;
use crate::repository::objects::{io_error, Modes, Space};

/// The file type of a directory, in NFSv3's `ftype3` and NFSv4's `nfs_ftype4`.
const NF_DIRECTORY: u32 = 2;

/// How long a call keeps retrying transient failures: long enough for a
/// server to restart or fail over. A location's `retry=SECONDS` overrides it.
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Conn = (u64, Arc<dyn Mount>);

pub struct Client {
    url: NfsUrl,
    location: String,
    rt: tokio::runtime::Runtime,
    conn: RwLock<Conn>,
    reconnecting: tokio::sync::Mutex<()>,
    budget: Duration,
    modes: Modes,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("location", &self.location)
            .finish()
    }
}

/// Whether a transient failure is the connection's (so a new one may help)
/// rather than the server asking us to wait.
fn wants_new_connection(e: &NfsError) -> bool {
    !(e.is_server_busy() || matches!(e, NfsError::Nfs4(Nfs4ErrorCode::NFS4ERR_GRACE)))
}

async fn mount_url(url: &NfsUrl) -> nfs_rs::Result<Arc<dyn Mount>> {
    nfs_rs::parse_url_and_mount(&url.client_url())
        .await
        .map(Arc::from)
}

/// Mounts `url`, retrying transient failures for `budget`; when the path
/// does not exist yet and `create` allows, mounts its parent and creates it
/// first.
async fn mount_creating(
    url: &NfsUrl,
    budget: Duration,
    create: Option<u32>,
) -> nfs_rs::Result<Arc<dyn Mount>> {
    let start = Instant::now();
    let mut delay = FIRST_BACKOFF;
    loop {
        match mount_url(url).await {
            Ok(m) => return Ok(m),
            Err(e) if is_transient(&e) && start.elapsed() < budget => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
            Err(e) if create.is_none() => return Err(e),
            Err(e) => {
                let dir_mode = create.unwrap_or(Modes::default().dir);
                let Some((parent, name)) = url.parent() else {
                    return Err(e);
                };
                let Ok(up) = Box::pin(mount_creating(&parent, budget, create)).await else {
                    return Err(e);
                };
                let made = up.mkdir_path(&name, dir_mode).await;
                let _ = up.umount().await;
                match made {
                    Ok(_) => {}
                    Err(m) if m.is_exist() => {}
                    Err(_) => return Err(e),
                }
                return mount_url(url).await;
            }
        }
    }
}

impl Client {
    /// Mounts the export path of `url`, creating it when `create` allows
    /// and it is missing.
    pub fn connect(url: &NfsUrl, create: bool, modes: Modes) -> Result<Client> {
        let location = url.without_options();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-nfs")
            .enable_all()
            .build()
            .map_err(|e| io_error(&location, "", e))?;
        let budget = url.retry.unwrap_or(DEFAULT_RETRY_BUDGET);
        let mount = rt
            .block_on(mount_creating(
                url,
                budget.min(Duration::from_secs(15)),
                create.then_some(modes.dir),
            ))
            .map_err(|e| io_error(&location, "", to_io(&e)))?;
        Ok(Client {
            url: url.clone(),
            location,
            rt,
            conn: RwLock::new((0, mount)),
            reconnecting: tokio::sync::Mutex::new(()),
            budget,
            modes,
        })
    }

    /// The permission bits of what this client creates.
    pub fn modes(&self) -> Modes {
        self.modes
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The largest READ the server accepts on the current connection.
    pub fn max_read(&self) -> usize {
        (self.current().1.get_max_read_size() as usize).max(4096)
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    fn current(&self) -> Conn {
        let conn = self.conn.read().unwrap_or_else(|p| p.into_inner());
        (conn.0, conn.1.clone())
    }

    /// Replaces connection `seen` with a new one, unless another call did
    /// already. A failed attempt leaves the old one for the next retry.
    async fn reconnect(&self, seen: u64) {
        let _one_at_a_time = self.reconnecting.lock().await;
        if self.current().0 != seen {
            return;
        }
        if let Ok(mount) = mount_url(&self.url).await {
            let mut conn = self.conn.write().unwrap_or_else(|p| p.into_inner());
            *conn = (seen + 1, mount);
        }
    }

    /// Runs `op` on the current connection, retrying transient failures
    /// with backoff (and a new connection where that may help) until the
    /// retry budget is spent. The error names `key`.
    pub async fn call<T, F, Fut>(&self, key: &str, op: F) -> Result<T>
    where
        F: Fn(Arc<dyn Mount>, String) -> Fut,
        Fut: Future<Output = nfs_rs::Result<T>>,
    {
        let start = Instant::now();
        let mut delay = FIRST_BACKOFF;
        loop {
            let (generation, mount) = self.current();
            match op(mount, key.to_string()).await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && start.elapsed() < self.budget => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                    if wants_new_connection(&e) {
                        self.reconnect(generation).await;
                    }
                }
                Err(e) => return Err(io_error(&self.location, key, to_io(&e))),
            }
        }
    }

    /// [`Client::call`], waited for on this thread.
    pub fn block_call<T, F, Fut>(&self, key: &str, op: F) -> Result<T>
    where
        F: Fn(Arc<dyn Mount>, String) -> Fut,
        Fut: Future<Output = nfs_rs::Result<T>>,
    {
        self.rt.block_on(self.call(key, op))
    }

    pub fn create_dir(&self, dir: &str) -> Result<()> {
        let dir_mode = self.modes.dir;
        let mut prefix = String::new();
        for part in dir.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.block_call(&prefix, |m, k| async move {
                match m.mkdir_path(&k, dir_mode).await {
                    Err(e) if e.is_exist() => Ok(()),
                    // Exactly the mode asked, whatever the server's umask.
                    Ok(_) => m
                        .setattr_path(&k, false, Some(dir_mode), None, None, None, None, None)
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                }
            })?;
        }
        Ok(())
    }

    /// The attributes of `key`, or `None` when there is no such object.
    fn attributes(&self, key: &str) -> Result<Option<nfs_rs::Attr>> {
        self.block_call(key, |m, k| async move {
            match m.getattr_path(&k).await {
                Ok(a) => Ok(Some(a)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    pub fn stat(&self, key: &str) -> Result<Option<FileMeta>> {
        Ok(self.attributes(key)?.map(|a| FileMeta {
            len: a.filesize,
            id: a.fileid,
            mtime_ns: i128::from(a.mtime.seconds) * 1_000_000_000 + i128::from(a.mtime.nseconds),
            is_dir: a.type_ == NF_DIRECTORY,
        }))
    }

    /// The server's id of the object at `key`, if there is one.
    fn file_id(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.attributes(key)?.map(|a| a.fileid))
    }

    fn parent_missing(&self, key: &str) -> Result<Option<String>> {
        match key.rsplit_once('/') {
            Some((dir, _)) if self.stat(dir)?.is_none() => Ok(Some(dir.to_string())),
            _ => Ok(None),
        }
    }

    pub fn publish(&self, from: &str, to: &str, exclusive: bool) -> Result<()> {
        if !exclusive {
            return self.rename_creating(from, to, true);
        }
        loop {
            let linked = self.block_call(to, |m, k| {
                let from = from.to_string();
                async move { m.link_path(&from, &k).await.map(|_| ()) }
            });
            match linked {
                Ok(()) => break,
                Err(e) => match crate::repository::objects::io_kind(&e) {
                    // A LINK whose reply was lost and that was sent again
                    // finds its own work done: the same file on both names.
                    Some(std::io::ErrorKind::AlreadyExists) => {
                        let ours = self.file_id(from)?;
                        if ours.is_none() || ours != self.file_id(to)? {
                            return Err(e);
                        }
                        break;
                    }
                    Some(std::io::ErrorKind::NotFound) => match self.parent_missing(to)? {
                        Some(dir) => self.create_dir(&dir)?,
                        None => return Err(e),
                    },
                    _ => return Err(e),
                },
            }
        }
        self.remove(from)
    }

    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.rename_creating(from, to, false)
    }

    fn rename_creating(&self, from: &str, to: &str, create_parent: bool) -> Result<()> {
        loop {
            let renamed = self.block_call(from, |m, k| {
                let to = to.to_string();
                async move { m.rename_path(&k, &to).await }
            });
            match renamed {
                Ok(()) => return Ok(()),
                Err(e)
                    if crate::repository::objects::io_kind(&e)
                        == Some(std::io::ErrorKind::NotFound) =>
                {
                    if create_parent {
                        if let Some(dir) = self.parent_missing(to)? {
                            self.create_dir(&dir)?;
                            continue;
                        }
                    }
                    // A RENAME sent again after a lost reply: already done.
                    if self.stat(from)?.is_none() && self.stat(to)?.is_some() {
                        return Ok(());
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The entries of `dir`, each with whether it is a directory.
    pub fn list(&self, dir: &str) -> Result<Vec<(String, bool)>> {
        self.block_call(dir, |m, k| async move {
            let mut names = Vec::new();
            let mut entries = m.readdirplus_path(&k).await?;
            while let Some(entry) = entries.next().await {
                let entry = entry?;
                if entry.file_name != "." && entry.file_name != ".." {
                    let is_dir = entry.attr.is_some_and(|a| a.type_ == NF_DIRECTORY);
                    names.push((entry.file_name, is_dir));
                }
            }
            Ok(names)
        })
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        self.block_call(key, |m, k| async move {
            match m.remove_path(&k).await {
                Err(e) if e.is_not_found() => Ok(()),
                other => other,
            }
        })
    }

    /// Sets the mtime of `key` (and its atime) to `mtime_ns`.
    pub fn touch(&self, key: &str, mtime_ns: i128) -> Result<()> {
        let seconds = u32::try_from(mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0);
        let nseconds = mtime_ns.rem_euclid(1_000_000_000) as u32;
        let at = nfs_rs::Time { seconds, nseconds };
        self.block_call(key, |m, k| async move {
            m.setattr_path(&k, false, None, None, None, None, Some(at), Some(at))
                .await
        })
    }

    pub fn space(&self) -> Result<Space> {
        self.block_call("", |m, _| async move { m.fsstat().await })
            .map(|s| Space {
                available: s.abytes,
                total: s.tbytes,
            })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let (_, mount) = self.current();
        // Releases the client's state on the server; best effort, bounded.
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(2), mount.umount()).await });
    }
}
