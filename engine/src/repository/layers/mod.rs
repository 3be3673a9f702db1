//! The only reader and writer of layers (FORMAT.md sections 5 and 7d): a
//! backup's layer at generation 0 is its commit point; a rewrite (prune's
//! merge) publishes generation n+1, which supersedes every lower one.

use strata_format::layer::{Entry, Layer, LayerMeta, LayerWriter, Tombstone};
use strata_format::BackupId;

use super::layout::{self, LayerName};
use super::objects::Cond;
use super::{is_not_found, NewObject, Repository};
use crate::error::{Error, Result};

mod chain;

pub use chain::{BodyReader, ChainLayer};

/// A whole layer object, read into memory, not yet decoded.
pub struct StoredLayer {
    pub name: LayerName,
    bytes: Vec<u8>,
}

impl StoredLayer {
    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The layer, its checksum and footer verified.
    pub fn decode(&self) -> Result<Layer<'_>> {
        Layer::decode(&self.bytes).map_err(|e| Error::format(format!("layer {}", self.name.id), e))
    }

    /// The raw bytes (an export carries them).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A layer being written; published by [`NewLayer::publish`].
pub struct NewLayer {
    name: LayerName,
    location: String,
    writer: LayerWriter<NewObject>,
}

impl NewLayer {
    /// Where it is written, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Appends an entry; its path must sort after the previous entry's.
    pub fn add_entry(&mut self, entry: &Entry) -> Result<()> {
        self.writer
            .add_entry(entry)
            .map_err(|e| Error::format(self.location.as_str(), e))
    }

    /// Appends a tombstone, after every entry, in path order.
    pub fn add_tombstone(&mut self, tombstone: &Tombstone) -> Result<()> {
        self.writer
            .add_tombstone(tombstone)
            .map_err(|e| Error::format(self.location.as_str(), e))
    }

    /// Finishes the layer with `meta`, runs `check` (the last word on
    /// whether it may be published), then publishes it, refusing a name
    /// that exists. Durable when this returns.
    pub fn publish(
        self,
        meta: &LayerMeta,
        check: impl FnOnce() -> Result<()>,
    ) -> Result<LayerName> {
        let (object, _) = self
            .writer
            .finish(meta)
            .map_err(|e| Error::format(self.location.as_str(), e))?;
        check()?;
        object.commit()?;
        crate::failpoint::hit("repository.layer_published");
        Ok(self.name)
    }
}

impl Repository {
    /// Starts writing layer `name`.
    pub fn new_layer(&self, name: LayerName) -> Result<NewLayer> {
        let object = self.new_object(&name.key())?;
        let location = object.name().to_string();
        let writer = LayerWriter::new(object).map_err(|e| Error::format(location.as_str(), e))?;
        Ok(NewLayer {
            name,
            location,
            writer,
        })
    }

    /// Every layer object, in (id, generation) order; keys that are not a
    /// layer's are skipped.
    pub fn layer_objects(&self) -> Result<Vec<LayerName>> {
        let mut names: Vec<LayerName> = self
            .store
            .list_all(layout::LAYERS)?
            .iter()
            .filter_map(LayerName::of)
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    /// Each backup's current layer: its highest generation.
    pub fn list_layers(&self) -> Result<Vec<LayerName>> {
        let mut current: Vec<LayerName> = Vec::new();
        for name in self.layer_objects()? {
            match current.last_mut() {
                Some(last) if last.id == name.id => *last = name,
                _ => current.push(name),
            }
        }
        Ok(current)
    }

    /// The current generation of `id`'s layer, if it has one.
    pub fn layer_generation(&self, id: &BackupId) -> Result<Option<u32>> {
        let prefix = format!("{}{id}", layout::LAYERS);
        Ok(self
            .store
            .list_all(&prefix)?
            .iter()
            .filter_map(LayerName::of)
            .filter(|n| n.id == *id)
            .map(|n| n.generation)
            .max())
    }

    /// Reads one layer object whole.
    pub fn load_layer_object(&self, name: &LayerName) -> Result<StoredLayer> {
        let key = name.key();
        let bytes = self
            .store
            .get(&key)
            .map_err(|e| self.layer_error(name, e))?;
        Ok(StoredLayer { name: *name, bytes })
    }

    /// Opens one layer object to stream it, verified.
    pub fn open_layer(&self, name: &LayerName) -> Result<ChainLayer> {
        let object = self
            .store
            .open(&name.key())
            .map_err(|e| self.layer_error(name, e))?;
        ChainLayer::open(format!("layer {}", name.id), object)
    }

    fn layer_error(&self, name: &LayerName, e: Error) -> Error {
        match is_not_found(&e) {
            true => Error::NotFound {
                kind: "layer",
                name: format!("{}/{}", self.location(), name.key()),
            },
            false => e,
        }
    }

    /// Reads the current layer of `id`. A generation superseded between
    /// the listing and the read is followed to its successor.
    pub fn load_layer(&self, id: &BackupId) -> Result<StoredLayer> {
        let mut last = None;
        for _ in 0..3 {
            let Some(generation) = self.layer_generation(id)? else {
                break;
            };
            match self.load_layer_object(&LayerName {
                id: *id,
                generation,
            }) {
                Err(e @ Error::NotFound { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound {
            kind: "layer",
            name: format!("{}/{}", self.location(), LayerName::first(*id).key()),
        }))
    }

    /// Removes every generation of `id`'s layer, the current one last, so
    /// that a crash midway leaves the backup whole or gone.
    pub fn remove_layer(&self, id: &BackupId) -> Result<()> {
        let names: Vec<LayerName> = self
            .layer_objects()?
            .into_iter()
            .filter(|n| n.id == *id)
            .collect();
        for name in names {
            self.remove_layer_object(&name)?;
        }
        Ok(())
    }

    /// Removes one layer object; one already gone is not an error.
    pub fn remove_layer_object(&self, name: &LayerName) -> Result<()> {
        crate::failpoint::hit("repository.removing_layer");
        self.store.delete(&name.key(), Cond::Any)?;
        crate::failpoint::hit("repository.layer_removed");
        Ok(())
    }
}
