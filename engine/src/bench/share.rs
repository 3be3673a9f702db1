//! The share's side: the walk a backup does (with its stat of every
//! entry), and reads of a sample of its files.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

use super::{mb_per_s, SizingOptions};
use crate::backup::kind::ItemKind;
use crate::backup::report::Report;
use crate::backup::walk;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Files kept as candidates for the read sample.
const CANDIDATES: usize = 4096;

pub struct ShareFigures {
    pub files: u64,
    pub bytes: u64,
    pub walk_files_per_s: f64,
    pub read_mb_per_s: f64,
    pub read_bytes: u64,
    /// The first bytes read, for the CPU stage.
    pub sample: Vec<u8>,
}

/// A cheap, deterministic "random" number for reservoir sampling.
fn mix(n: u64) -> u64 {
    let h = blake3::hash(&n.to_le_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

pub fn measure(share: &Path, opts: &SizingOptions) -> Result<ShareFigures> {
    let report = Report::default();
    let progress = Progress::default();
    let counters = crate::backup::Counters::default();
    let started = Instant::now();
    let (mut files, mut bytes, mut entries) = (0u64, 0u64, 0u64);
    let mut candidates: Vec<(PathBuf, u64)> = Vec::new();
    std::thread::scope(|scope| -> Result<()> {
        let (rx, handle, _) = walk::spawn(
            scope,
            share.to_path_buf(),
            None,
            None,
            walk::Watch {
                counters: &counters,
                report: &report,
                progress: &progress,
                exclude: None,
            },
        )?;
        let abs = |rel: &[u8]| share.join(OsStr::from_bytes(rel));
        for item in rx.into_iter().flatten() {
            entries += 1;
            let (ItemKind::File, Some(meta)) = (&item.kind, &item.meta) else {
                continue;
            };
            files += 1;
            bytes += meta.size;
            if meta.size == 0 {
                continue;
            }
            // Reservoir sampling: every file equally likely to be read.
            if candidates.len() < CANDIDATES {
                candidates.push((abs(&item.rel), meta.size));
            } else {
                let slot = (mix(files) % files) as usize;
                if slot < CANDIDATES {
                    candidates[slot] = (abs(&item.rel), meta.size);
                }
            }
        }
        handle
            .join()
            .map_err(|_| Error::Bug("the walk panicked".into()))??;
        Ok(())
    })?;
    let walk_secs = started.elapsed().as_secs_f64();

    let budget = AtomicU64::new(opts.read_sample);
    let sample = Mutex::new(Vec::with_capacity(
        opts.cpu_sample.min(opts.read_sample as usize),
    ));
    let started = Instant::now();
    let read: u64 = candidates
        .par_iter()
        .map(|(path, len)| -> Result<u64> {
            let left = budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    Some(left.saturating_sub(*len))
                })
                .unwrap_or(0);
            let want = left.min(*len);
            if want == 0 {
                return Ok(0);
            }
            let mut buf = Vec::with_capacity(want as usize);
            match std::fs::File::open(path).and_then(|f| f.take(want).read_to_end(&mut buf)) {
                Ok(_) => {}
                // Gone since the walk: the share is live.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(Error::io(path, e)),
            }
            let mut kept = sample.lock().unwrap_or_else(|p| p.into_inner());
            let room = opts.cpu_sample.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..room.min(buf.len())]);
            Ok(buf.len() as u64)
        })
        .sum::<Result<u64>>()?;
    let read_secs = started.elapsed().as_secs_f64();
    Ok(ShareFigures {
        files,
        bytes,
        walk_files_per_s: if walk_secs > 0.0 {
            entries as f64 / walk_secs
        } else {
            0.0
        },
        read_mb_per_s: mb_per_s(read, read_secs),
        read_bytes: read,
        sample: sample.into_inner().unwrap_or_else(|p| p.into_inner()),
    })
}
