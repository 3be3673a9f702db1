//! A merged view decoded ahead on a thread of its own, so whoever consumes
//! it (the backup's walk) does not also pay for decompressing and decoding
//! the parent chain.

use crossbeam_channel::Receiver;
use strata_format::layer::Entry;

use super::MergedView;
use crate::error::Result;

/// Entries handed over at a time.
const BATCH: usize = 256;
/// Batches decoded ahead of the consumer: the memory this holds is bounded
/// by `BATCH * AHEAD` entries.
const AHEAD: usize = 8;

/// The entries of a [`MergedView`], in its order, decoded on a thread of
/// `scope`. The first error ends the stream. Dropping it stops the thread
/// at its next hand-off.
pub struct Prefetched {
    rx: Receiver<Result<Vec<Entry>>>,
    batch: std::vec::IntoIter<Entry>,
    ended: bool,
}

impl Prefetched {
    pub fn spawn<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        mut view: MergedView<'scope>,
    ) -> Prefetched {
        let (tx, rx) = crossbeam_channel::bounded(AHEAD);
        scope.spawn(move || loop {
            let mut batch = Vec::with_capacity(BATCH);
            let mut failed = None;
            for next in view.by_ref().take(BATCH) {
                match next {
                    Ok(entry) => batch.push(entry),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let last = batch.len() < BATCH || failed.is_some();
            if !batch.is_empty() && tx.send(Ok(batch)).is_err() {
                return;
            }
            if let Some(e) = failed {
                let _ = tx.send(Err(e));
            }
            if last {
                return;
            }
        });
        Prefetched {
            rx,
            batch: Vec::new().into_iter(),
            ended: false,
        }
    }
}

impl Iterator for Prefetched {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            if let Some(entry) = self.batch.next() {
                return Some(Ok(entry));
            }
            if self.ended {
                return None;
            }
            match self.rx.recv() {
                Ok(Ok(batch)) => self.batch = batch.into_iter(),
                Ok(Err(e)) => {
                    self.ended = true;
                    return Some(Err(e));
                }
                // The thread ends after the view's last entry.
                Err(_) => self.ended = true,
            }
        }
    }
}
