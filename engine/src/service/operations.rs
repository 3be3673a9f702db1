//! Running an operation under supervision: it is recorded in the catalog's
//! `operations` table for its whole life, and a heartbeat thread, every half
//! second, stamps it alive, writes its progress to the backup row (so other
//! processes' `show` and `list` see it move), touches the repository locks
//! it holds, and cancels it when another process moved its backup out of the
//! status it runs in (`backup delete --force`, `backup set --state`).

use std::time::{Duration, Instant};

use strata_format::{BackupId, ShareId};

use super::Engine;
use crate::clock::now_ns;
use crate::error::{Error, Result};
use crate::process;
use crate::progress::Progress;
use crate::repository::leases::Lease;
use crate::repository::new_uuid;
use crate::store::ServiceStore;
use crate::store::{BackupStatus, OpKind, Operation, Share, ShareStatus};

/// How long a backup or restore waits for a pack removal (delete,
/// cleanup, repack) to finish before it takes its shared lock.
pub(super) const SHARED_LOCK_WAIT: Duration = Duration::from_secs(120);

/// How often the heartbeat writes (the issue asks for at least every second).
const BEAT: Duration = Duration::from_millis(500);

/// What an operation is about, for its catalog row.
pub(crate) struct OpTarget {
    pub kind: OpKind,
    pub backup: BackupId,
    pub share: Option<ShareId>,
    pub share_status_before: Option<String>,
}

impl Engine {
    /// Records an operation; the returned id is passed to [`Engine::supervise`]
    /// and removed with [`Engine::end_operation`].
    pub(crate) fn begin_operation(&self, target: &OpTarget) -> Result<String> {
        let now = now_ns();
        let op = Operation {
            id: BackupId(new_uuid()?).to_string(),
            kind: target.kind,
            backup_id: Some(target.backup),
            share_id: target.share,
            share_status_before: target.share_status_before.clone(),
            pid: process::this_pid(),
            process_start: process::this_start(),
            host: self.host.clone(),
            boot_id: process::boot_id(),
            started_at: now,
            heartbeat_at: now,
        };
        self.store.insert_operation(&op)?;
        Ok(op.id)
    }

    pub(crate) fn end_operation(&self, id: &str) -> Result<()> {
        self.store.remove_operation(id)
    }

    /// Runs `work` with a heartbeat beside it. `work` is cancelled (through
    /// `progress`) when `backup` leaves `expect`, or disappears.
    pub(crate) fn supervise<T>(
        &self,
        op: &str,
        backup: BackupId,
        expect: BackupStatus,
        locks: &[&Lease],
        progress: &Progress,
        work: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let store = &*self.store;
        // Dropping the sender stops the heartbeat at once, not at its next beat.
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        std::thread::scope(|s| {
            let beat =
                s.spawn(move || heartbeat(store, op, backup, expect, locks, progress, &stopped));
            let result = work();
            drop(stop);
            let _ = beat.join();
            result
        })
    }
}

fn heartbeat(
    catalog: &dyn ServiceStore,
    op: &str,
    backup: BackupId,
    expect: BackupStatus,
    locks: &[&Lease],
    progress: &Progress,
    stop: &crossbeam_channel::Receiver<()>,
) {
    let restore = expect == BackupStatus::Restoring;
    loop {
        let beat = Instant::now();
        // A failed beat is retried at the next one; the work goes on.
        let _ = catalog.heartbeat(op);
        for lock in locks {
            let _ = lock.renew();
        }
        if expect == BackupStatus::Creating || restore {
            let _ = catalog.set_backup_progress(backup, progress.percent(), restore);
        }
        match catalog.backup(backup) {
            Ok(b) if b.status == expect => {}
            Ok(_) | Err(Error::NotFound { .. }) => progress.cancel(),
            Err(_) => {}
        }
        // Nothing is ever sent: the wait ends at the next beat, or at once
        // when the work is done and the sender is dropped.
        let next = beat + BEAT;
        if stop.recv_deadline(next) != Err(crossbeam_channel::RecvTimeoutError::Timeout) {
            return;
        }
    }
}

/// `e`, a refusal by a busy share, told as what runs on the share.
pub(super) fn busy_share(e: Error, share: &Share) -> Error {
    match e {
        Error::Busy(_) => {
            let running = match share.status {
                ShareStatus::BackupCreating => "a backup of it is running",
                ShareStatus::BackupRestoring => "a restore into it is running",
                ShareStatus::InUse => "it is in use (a forced backup reads it anyway)",
                _ => "it is busy",
            };
            Error::Busy(format!(
                "share {} is {}: {running}",
                share.name,
                share.status.as_str()
            ))
        }
        other => other,
    }
}
