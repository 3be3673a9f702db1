//! The [`Fs`] of an NFS export reached with a userspace client (no
//! kernel NFS client, no mount, no root), for [`super::NfsStore`].
//!
//! Every call runs on a small private async runtime and is retried, with
//! backoff and a fresh connection, on transient failures (dropped or
//! refused connections, timeouts, NFS delay/jukebox/grace, stale handles
//! or sessions after a server restart) until [`NfsFs::retry_budget`]
//! runs out: reconnecting is the client's own business, so this retry
//! lives here, not in [`super::Retrying`]. Objects are addressed by path on
//! every call, so a new connection looks them up again.
//!
//! Durability: object data is written UNSTABLE, in pieces of up to 16 MiB
//! sent concurrently, and each piece is COMMITted (the server's write
//! verifier checked) before it counts as written; [`FileWriter::finish`]
//! returns once the last piece is committed. A server restart can lose
//! only uncommitted pieces, which are sent again. Namespace operations
//! (CREATE, LINK, RENAME, REMOVE) are synchronous in the NFS protocol: the
//! server makes them stable before it replies.

mod client;
mod errors;
mod object;

use std::sync::Arc;

use super::files::{FileMeta, FileWriter, Files, Fs};
use super::location::NfsUrl;
use super::{check_key, Modes, ObjectReader, Space};
use crate::error::Result;
use client::Client;
pub use client::DEFAULT_RETRY_BUDGET;

/// An NFS export's files. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct NfsFs {
    client: Arc<Client>,
}

impl Files<NfsFs> {
    /// Connects to the export path of `url`, creating it if missing.
    pub fn connect(url: &NfsUrl) -> Result<Files<NfsFs>> {
        Self::connect_with(url, Modes::default())
    }

    /// [`Files::connect`], creating objects and directories with `modes`.
    pub fn connect_with(url: &NfsUrl, modes: Modes) -> Result<Files<NfsFs>> {
        Ok(Files::on(NfsFs {
            client: Arc::new(Client::connect(url, true, modes)?),
        }))
    }

    /// Connects to the export path of `url`, which must exist.
    pub fn connect_existing(url: &NfsUrl, modes: Modes) -> Result<Files<NfsFs>> {
        Ok(Files::on(NfsFs {
            client: Arc::new(Client::connect(url, false, modes)?),
        }))
    }
}

impl NfsFs {
    /// How long a failing call keeps retrying before it reports the error.
    pub fn retry_budget(&self) -> std::time::Duration {
        self.client.budget()
    }
}

impl Fs for NfsFs {
    fn location(&self) -> &str {
        self.client.location()
    }

    fn create_dir(&self, dir: &str) -> Result<()> {
        check_key(dir)?;
        self.client.create_dir(dir)
    }

    fn create(&self, key: &str) -> Result<Box<dyn FileWriter>> {
        check_key(key)?;
        Ok(Box::new(object::NfsWriter::create(
            self.client.clone(),
            key,
        )?))
    }

    fn publish(&self, from: &str, to: &str, exclusive: bool) -> Result<()> {
        check_key(from)?;
        check_key(to)?;
        self.client.publish(from, to, exclusive)
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        check_key(from)?;
        check_key(to)?;
        self.client.rename(from, to)
    }

    fn open(&self, key: &str) -> Result<Box<dyn ObjectReader>> {
        check_key(key)?;
        Ok(Box::new(object::NfsReader::open(self.client.clone(), key)?))
    }

    fn stat(&self, key: &str) -> Result<Option<FileMeta>> {
        check_key(key)?;
        self.client.stat(key)
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, bool)>> {
        if !dir.is_empty() {
            check_key(dir)?;
        }
        self.client.list(dir)
    }

    fn remove(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.client.remove(key)
    }

    fn touch(&self, key: &str, mtime_ns: i128) -> Result<()> {
        check_key(key)?;
        self.client.touch(key, mtime_ns)
    }

    fn space(&self) -> Result<Space> {
        self.client.space()
    }
}
