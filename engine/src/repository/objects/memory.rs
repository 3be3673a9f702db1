//! [`MemoryStore`]: objects in a map, for fast tests (restic's `MemBackend`
//! idea). Every put and delete is atomic under one lock, so its conditions
//! are exact compare-and-set. Nothing survives the process: "durable" means
//! visible to every later call.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, Range};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use super::{
    io_error, Cond, Etag, Gathered, Key, ObjectMeta, ObjectReader, ObjectStore, ObjectWriter, Page,
    Space, Unfinished, PAGE,
};
use crate::error::{Error, Result};

#[derive(Default)]
struct Objects {
    map: BTreeMap<Key, (Bytes, u64)>,
    /// The last version given out: every put gets a new one.
    version: u64,
}

/// A store in memory; clones share the objects.
#[derive(Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<Objects>>,
    location: Arc<str>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("location", &self.location)
            .finish()
    }
}

/// The stores of this process by name: `Location::Memory(name)` opens the
/// same one each time.
fn registry() -> MutexGuard<'static, HashMap<String, MemoryStore>> {
    static STORES: OnceLock<Mutex<HashMap<String, MemoryStore>>> = OnceLock::new();
    STORES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

impl MemoryStore {
    /// The process's store called `name`, made empty the first time.
    pub fn named(name: &str) -> MemoryStore {
        registry()
            .entry(name.to_string())
            .or_insert_with(|| MemoryStore::new(name))
            .clone()
    }

    /// The process's store called `name`, if one was made.
    pub fn existing(name: &str) -> Option<MemoryStore> {
        registry().get(name).cloned()
    }

    /// A store of its own, in no registry.
    pub fn new(name: &str) -> MemoryStore {
        MemoryStore {
            objects: Arc::default(),
            location: Arc::from(format!("memory:{name}")),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn precondition(&self, key: &Key) -> Error {
        Error::Precondition {
            location: self.location.to_string(),
            key: key.to_string(),
        }
    }

    fn not_found(&self, key: &Key) -> Error {
        let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no such object");
        io_error(&self.location, key.as_str(), e)
    }

    fn etag(version: u64) -> Etag {
        Etag(format!("{version:x}"))
    }

    /// Whether `cond` holds for what `key` names now.
    fn holds(objects: &Objects, key: &Key, cond: &Cond) -> bool {
        let current = objects.map.get(key).map(|(_, v)| Self::etag(*v));
        match cond {
            Cond::Any => true,
            Cond::IfAbsent => current.is_none(),
            Cond::IfMatch(etag) => current.as_ref() == Some(etag),
        }
    }
}

impl MemoryStore {
    /// Publishes `body` at `key` if `cond` holds.
    fn commit(&self, key: Key, cond: &Cond, body: Vec<u8>) -> Result<Etag> {
        let mut objects = self.lock();
        if !MemoryStore::holds(&objects, &key, cond) {
            return Err(self.precondition(&key));
        }
        objects.version += 1;
        let version = objects.version;
        objects.map.insert(key, (Bytes::from(body), version));
        Ok(MemoryStore::etag(version))
    }
}

/// An object held whole in memory, read by range (also what a store that
/// fetches small objects whole lends its callers).
pub(crate) struct MemoryReader {
    body: Bytes,
    location: String,
}

impl MemoryReader {
    pub(crate) fn new(body: Bytes, location: String) -> MemoryReader {
        MemoryReader { body, location }
    }
}

impl ObjectReader for MemoryReader {
    fn len(&self) -> u64 {
        self.body.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let range = usize::try_from(offset)
            .ok()
            .and_then(|at| Some(at..at.checked_add(buf.len())?))
            .filter(|r| r.end <= self.body.len());
        let Some(range) = range else {
            let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end");
            return Err(io_error(&self.location, "", e));
        };
        buf.copy_from_slice(&self.body[range]);
        Ok(())
    }

    fn read_shared(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        ranges
            .iter()
            .map(|r| {
                let end = usize::try_from(r.end).unwrap_or(usize::MAX);
                let start = usize::try_from(r.start).unwrap_or(usize::MAX);
                if end > self.body.len() || start > end {
                    let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the end");
                    return Err(io_error(&self.location, "", e));
                }
                Ok(self.body.slice(start..end))
            })
            .collect()
    }
}

impl ObjectStore for MemoryStore {
    fn location(&self) -> &str {
        &self.location
    }

    fn writer(&self, key: &Key, cond: Cond) -> Result<Box<dyn ObjectWriter>> {
        let (store, key) = (self.clone(), key.clone());
        Ok(Box::new(Gathered::new(move |body| {
            store.commit(key, &cond, body)
        })))
    }

    fn open(&self, key: &Key) -> Result<Box<dyn ObjectReader>> {
        let body = self.lock().map.get(key).map(|(b, _)| b.clone());
        let body = body.ok_or_else(|| self.not_found(key))?;
        Ok(Box::new(MemoryReader {
            body,
            location: format!("{}/{key}", self.location),
        }))
    }

    fn stat(&self, key: &Key) -> Result<Option<ObjectMeta>> {
        Ok(self.lock().map.get(key).map(|(b, v)| ObjectMeta {
            len: b.len() as u64,
            etag: Self::etag(*v),
        }))
    }

    fn list(&self, prefix: &str, after: Option<&Key>) -> Result<Page> {
        let objects = self.lock();
        let from = match after {
            Some(a) => Bound::Excluded(a.clone()),
            None => Bound::Unbounded,
        };
        let keys: Vec<Key> = objects
            .map
            .range((from, Bound::Unbounded))
            .map(|(k, _)| k)
            .skip_while(|k| k.as_str() < prefix)
            .take_while(|k| k.as_str().starts_with(prefix))
            .take(PAGE)
            .cloned()
            .collect();
        let next = (keys.len() >= PAGE).then(|| keys.last().cloned()).flatten();
        Ok(Page { keys, next })
    }

    fn delete(&self, key: &Key, cond: Cond) -> Result<()> {
        let mut objects = self.lock();
        match cond {
            Cond::Any => {}
            Cond::IfAbsent => return Err(Error::Bug(format!("delete {key} if absent"))),
            Cond::IfMatch(_) if !Self::holds(&objects, key, &cond) => {
                return Err(self.precondition(key))
            }
            Cond::IfMatch(_) => {}
        }
        objects.map.remove(key);
        Ok(())
    }

    fn space(&self) -> Result<Option<Space>> {
        Ok(None)
    }

    fn unfinished(&self) -> Result<Vec<Unfinished>> {
        Ok(Vec::new())
    }

    fn discard(&self, _: &Unfinished) -> Result<()> {
        Ok(())
    }
}
