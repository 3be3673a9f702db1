//! Stage: deduplication against the chunk index and against this run.
//!
//! "Known or pending" is one check under one lock, so two workers never store
//! the same chunk twice in one run. A chunk stays pending from the moment a
//! worker reserves it until its pack is durable and its index row committed;
//! then the index answers for it and it leaves the pending set, which keeps
//! the set as small as one pack's worth of chunks.

use std::collections::HashSet;
use std::sync::Mutex;

use strata_format::ChunkId;

use crate::error::{Error, Result};
use crate::index::ChunkIndex;

pub struct Dedup<'a> {
    inner: Mutex<Inner<'a>>,
}

struct Inner<'a> {
    pending: HashSet<ChunkId>,
    index: &'a dyn ChunkIndex,
}

impl<'a> Dedup<'a> {
    pub fn new(index: &'a dyn ChunkIndex) -> Self {
        Dedup {
            inner: Mutex::new(Inner {
                pending: HashSet::new(),
                index,
            }),
        }
    }

    /// True when the caller is the first to see `id` and must store it.
    pub fn reserve(&self, id: ChunkId) -> Result<bool> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::Bug("dedup lock poisoned".into()))?;
        if inner.pending.contains(&id) || inner.index.contains(&id)? {
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
        }
    }
}
