//! Stage: deduplication against the chunk index and against this run.
//!
//! A chunk is stored by the first worker to reserve it: it is then pending
//! from that moment until its pack is durable and its index row committed;
//! then the index answers for it and it leaves the pending set, which keeps
//! the set as small as one pack's worth of chunks. Workers ask the index
//! without holding the lock, so they ask it at once; see [`Dedup::reserve`]
//! for why that never stores a chunk twice.

use std::collections::HashSet;
use std::sync::Mutex;

use strata_format::ChunkId;

use crate::error::{Error, Result};
use crate::index::ChunkIndex;

pub struct Dedup<'a> {
    inner: Mutex<Inner>,
    index: &'a dyn ChunkIndex,
}

struct Inner {
    pending: HashSet<ChunkId>,
    /// How many times chunks have left `pending` for the index.
    released: u64,
}

impl<'a> Dedup<'a> {
    pub fn new(index: &'a dyn ChunkIndex) -> Self {
        Dedup {
            inner: Mutex::new(Inner {
                pending: HashSet::new(),
                released: 0,
            }),
            index,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| Error::Bug("dedup lock poisoned".into()))
    }

    /// True when the caller is the first to see `id` and must store it.
    ///
    /// The index is asked without the lock held (workers ask it at once);
    /// if chunks left the pending set for the index meanwhile, it is asked
    /// again under the lock, so a chunk is never reserved twice.
    pub fn reserve(&self, id: ChunkId) -> Result<bool> {
        let seen = {
            let inner = self.lock()?;
            if inner.pending.contains(&id) {
                return Ok(false);
            }
            inner.released
        };
        if self.index.contains(&id)? {
            return Ok(false);
        }
        let mut inner = self.lock()?;
        if inner.pending.contains(&id) {
            return Ok(false);
        }
        if inner.released != seen && self.index.contains(&id)? {
            return Ok(false);
        }
        inner.pending.insert(id);
        Ok(true)
    }

    /// Called once the index answers for `ids`.
    pub fn release(&self, ids: impl Iterator<Item = ChunkId>) {
        if let Ok(mut inner) = self.inner.lock() {
            for id in ids {
                inner.pending.remove(&id);
            }
            inner.released += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::ChunkLocation;
    use strata_format::pack::PackEntry;
    use strata_format::{BackupId, PackId};

    /// An index that only knows which chunks it holds.
    #[derive(Default)]
    struct Known(Mutex<HashSet<ChunkId>>);

    impl ChunkIndex for Known {
        fn contains(&self, id: &ChunkId) -> Result<bool> {
            Ok(self
                .0
                .lock()
                .map_err(|_| Error::Bug("poisoned".into()))?
                .contains(id))
        }
        fn locate(&self, _: &ChunkId) -> Result<Option<ChunkLocation>> {
            Err(Error::Bug("not in this test".into()))
        }
        fn reading(&self, f: &mut dyn FnMut(&dyn ChunkIndex) -> Result<()>) -> Result<()> {
            f(self)
        }
        fn commit_pack(&self, _: PackId, _: u64, _: &[PackEntry]) -> Result<()> {
            Err(Error::Bug("not in this test".into()))
        }
        fn move_chunks(&self, _: PackId, _: u64, _: &[PackEntry]) -> Result<()> {
            Err(Error::Bug("not in this test".into()))
        }
        fn add_refs(&self, _: BackupId, _: &[ChunkId]) -> Result<()> {
            Err(Error::Bug("not in this test".into()))
        }
        fn drop_refs(&self, _: BackupId) -> Result<()> {
            Err(Error::Bug("not in this test".into()))
        }
        fn unplaced(&self, _: BackupId) -> Result<(u64, Option<ChunkId>)> {
            Err(Error::Bug("not in this test".into()))
        }
        fn packs(&self) -> Result<Vec<(PackId, u64)>> {
            Err(Error::Bug("not in this test".into()))
        }
        fn pack_chunks(&self, _: &PackId) -> Result<Vec<PackEntry>> {
            Err(Error::Bug("not in this test".into()))
        }
        fn forget_packs(&self, _: &[PackId]) -> Result<()> {
            Err(Error::Bug("not in this test".into()))
        }
    }

    /// Four workers reserve the same chunks in different orders while a
    /// packer moves reserved chunks into the index in small batches and
    /// releases them: every chunk is reserved exactly once.
    #[test]
    fn a_chunk_is_reserved_once_while_packs_land_meanwhile() {
        // The race it guards against is narrow: many rounds.
        for _ in 0..30 {
            reserve_race();
        }
    }

    fn reserve_race() {
        const CHUNKS: u32 = 3001; // prime: every stride visits every chunk
        let index = Known::default();
        let dedup = Dedup::new(&index);
        let (send, landed) = crossbeam_channel::unbounded::<ChunkId>();
        let reserved: Vec<Vec<ChunkId>> = std::thread::scope(|s| {
            let packer = s.spawn(|| {
                let mut batch = Vec::new();
                for id in landed.iter() {
                    batch.push(id);
                    if batch.len() == 7 {
                        index.0.lock().unwrap().extend(batch.iter().copied());
                        dedup.release(batch.drain(..));
                    }
                }
            });
            let workers: Vec<_> = (0..4u32)
                .map(|w| {
                    let send = send.clone();
                    let dedup = &dedup;
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0..CHUNKS {
                            let n = (i * (2 * w + 1) + w * 977) % CHUNKS;
                            let id = ChunkId::of(&n.to_le_bytes());
                            if dedup.reserve(id).unwrap() {
                                mine.push(id);
                                send.send(id).unwrap();
                            }
                        }
                        mine
                    })
                })
                .collect();
            drop(send);
            let out = workers.into_iter().map(|w| w.join().unwrap()).collect();
            packer.join().unwrap();
            out
        });
        let mut all: Vec<ChunkId> = reserved.into_iter().flatten().collect();
        let total = all.len();
        all.sort_by_key(|id| id.0);
        all.dedup();
        assert_eq!(total, CHUNKS as usize, "a chunk was reserved twice");
        assert_eq!(all.len(), CHUNKS as usize);
    }
}
