//! `repack`: packs whose unused share (bytes of chunks no layer in the
//! repository references) is above a threshold are rewritten: their live
//! chunks are copied, stored bytes as they are (checked against their ids,
//! never recompressed), into new packs; the new packs are published and
//! the chunks' index rows moved to them; only then are the old packs
//! removed (FORMAT.md section 7c). All under the exclusive lock, so no
//! backup deduplicates against a pack meanwhile and no restore reads one.

use std::time::Duration;

use strata_format::pack::PackEntry;
use strata_format::PackId;

use super::gc::{scan_layers, Collect};
use super::{Engine, Vault};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::leases::{self, Lease, Purpose};
use crate::repository::packs::read::{read_spans, read_trailer, Buffers};
use crate::repository::packs::write::{self, NewBlob, Placement, Sink};

/// What a repack found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepackReport {
    /// Packs above the threshold (rewritten, unless a dry run).
    pub packs_repacked: u64,
    /// Their size before.
    pub bytes_before: u64,
    /// Live bytes copied into new packs.
    pub bytes_copied: u64,
    pub packs_written: u64,
    /// Packs whose trailer cannot be read: left alone, named.
    pub damaged: Vec<String>,
    /// Why nothing was done, if so (the lock is held, a layer is damaged).
    pub skipped: Option<String>,
    /// The referenced chunks outgrew the memory budget and were judged by
    /// a Bloom filter: some dead chunks may have been kept as live.
    pub approximate: bool,
}

/// Counts the new packs as they land.
struct Written(std::sync::atomic::AtomicU64);

impl Sink for Written {
    fn appended(&self, _bytes: u64) {}

    fn indexed(&self, _pack: PackId, _entries: &[PackEntry]) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A pack chosen for rewriting, and its live entries.
struct Chosen {
    pack: PackId,
    live: Vec<PackEntry>,
}

impl Engine {
    /// Repacks every repository's packs whose unused share is above
    /// `max_unused_percent`, waiting up to `wait` for the exclusive lock.
    /// A dry run reports what it would do and changes nothing.
    pub fn repack(
        &self,
        max_unused_percent: u32,
        dry_run: bool,
        wait: Duration,
        progress: &Progress,
    ) -> Result<RepackReport> {
        if max_unused_percent > 100 {
            return Err(Error::InvalidArgument(format!(
                "the unused share of a pack is a percentage (0-100), not {max_unused_percent}"
            )));
        }
        let mut report = RepackReport::default();
        for vault in self.vaults() {
            repack_site(
                vault,
                max_unused_percent,
                dry_run,
                wait,
                progress,
                &mut report,
            )?;
        }
        progress.finish();
        Ok(report)
    }
}

fn repack_site(
    vault: &Vault,
    max_unused_percent: u32,
    dry_run: bool,
    wait: Duration,
    progress: &Progress,
    report: &mut RepackReport,
) -> Result<()> {
    // The trailing `~` makes it parse as a tag, like a sweep's.
    let lock = match leases::exclusive(&vault.repo, Purpose::Repack, wait) {
        Ok(lock) => lock,
        Err(Error::Busy(why)) => {
            report.skipped = Some(why);
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    // What a sweep or a repack by another node did is learnt first.
    vault.sync_index()?;
    repack_locked(vault, &lock, max_unused_percent, dry_run, progress, report)
}

/// Repacks `vault`'s packs above the threshold under an exclusive lock the
/// caller holds, with the index already in line with `packs/`.
pub(crate) fn repack_locked(
    vault: &Vault,
    lock: &Lease,
    max_unused_percent: u32,
    dry_run: bool,
    progress: &Progress,
    report: &mut RepackReport,
) -> Result<()> {
    let scan = scan_layers(&vault.repo, Collect::Referenced(vault.memory))?;
    report.approximate |= !scan.referenced.is_exact();
    if let Some((_, e)) = scan.damaged.first() {
        report.skipped = Some(format!(
            "nothing repacked while a layer cannot be read ({e}); `strata check` lists them"
        ));
        return Ok(());
    }
    let mut chosen = Vec::new();
    for pack in vault.repo.list_pack_files()? {
        let trailer = match read_trailer(&vault.repo, &pack) {
            Ok(t) => t,
            Err(e @ (Error::Corrupt { .. } | Error::Unsupported(_))) => {
                report.damaged.push(e.to_string());
                continue;
            }
            Err(e) => return Err(e),
        };
        let stored: u64 = trailer
            .entries
            .iter()
            .map(|e| u64::from(e.stored_len))
            .sum();
        // Live here: a layer references it, and the index places it in
        // this pack (a chunk it places in another, durable pack — one a
        // repack killed midway already wrote — is a spare copy here).
        let mut live = Vec::new();
        for e in trailer.entries {
            if !scan.referenced.contains(&e.id) {
                continue;
            }
            let elsewhere = vault.index.locate(&e.id)?.is_some_and(|at| at.pack != pack);
            if !elsewhere {
                live.push(e);
            }
        }
        let live_bytes: u64 = live.iter().map(|e| u64::from(e.stored_len)).sum();
        let unused = stored - live_bytes;
        if stored > 0 && unused * 100 > stored * u64::from(max_unused_percent) {
            report.packs_repacked += 1;
            report.bytes_before += trailer.pack_len;
            report.bytes_copied += live_bytes;
            progress.add_total(live_bytes);
            chosen.push(Chosen { pack, live });
        }
    }
    if dry_run || chosen.is_empty() {
        return Ok(());
    }
    let written = Written(std::sync::atomic::AtomicU64::new(0));
    copy_live(vault, &chosen, lock, &written, progress)?;
    report.packs_written += written.0.into_inner();
    crate::failpoint::hit("repack.copied");
    // Every live chunk is now durable in a new pack and indexed there.
    let old: Vec<PackId> = chosen.iter().map(|c| c.pack).collect();
    vault.remove_packs(lock, &old)?;
    Ok(())
}

/// Copies the live blobs of `chosen` into new packs, each checked against
/// its chunk id first; returns when they are durable and indexed.
fn copy_live(
    vault: &Vault,
    chosen: &[Chosen],
    lock: &Lease,
    sink: &Written,
    progress: &Progress,
) -> Result<()> {
    let pool = Buffers::new();
    std::thread::scope(|s| -> Result<()> {
        let (blobs, writer) = write::spawn(s, &vault.repo, &*vault.index, Placement::Moved, sink);
        let sent = (|| -> Result<()> {
            let mut scratch = Vec::new();
            for c in chosen {
                lock.renew()?;
                let pack = vault.repo.open_pack(&c.pack)?;
                let entries: Vec<&PackEntry> = c.live.iter().collect();
                for (run, span) in read_spans(&pack, &entries, &pool) {
                    let span = span?;
                    for entry in &entries[run] {
                        let bytes = span.blob(entry)?.parts().concat();
                        span.open(c.pack, entry, &mut scratch)?;
                        progress.add_bytes(u64::from(entry.stored_len));
                        blobs
                            .send(NewBlob {
                                id: entry.id,
                                stored: bytes,
                                raw_len: entry.raw_len,
                                compression: entry.compression,
                            })
                            .map_err(|_| Error::Bug("the pack writer stopped".into()))?;
                    }
                }
            }
            Ok(())
        })();
        drop(blobs);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::Bug("the pack writer panicked".into())));
        // The writer's error is the cause when both failed.
        written.and(sent)
    })
}
