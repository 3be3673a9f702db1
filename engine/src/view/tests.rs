//! The merged view against a naive model: a map that applies each layer's
//! tombstones (path and subtree) and then its entries.
use crate::repository::objects::ObjectReader;
use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_format::layer::{EntryKind, LayerMeta, LayerStats, LayerWriter, Tombstone};
use strata_format::{BackupId, ShareId};

use super::*;

fn meta() -> LayerMeta {
    LayerMeta {
        backup_id: BackupId([1; 16]),
        share_id: ShareId([2; 16]),
        parent_id: None,
        project: "p".into(),
        name: String::new(),
        description: String::new(),
        share_name: "s".into(),
        share_path: "/s".into(),
        data_timestamp_ns: 0,
        created_at_ns: 0,
        finished_at_ns: 0,
        stats: LayerStats::default(),
        service: Default::default(),
    }
}

/// An entry whose uid says which layer wrote it.
fn entry(path: &[u8], layer: u32) -> Entry {
    Entry {
        path: path.to_vec(),
        mode: 0o755,
        uid: layer,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        xattrs: Vec::new(),
        kind: EntryKind::Dir,
    }
}

fn sorted(mut paths: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    paths.sort_by(|a, b| path::cmp(a, b));
    paths.dedup();
    paths
}

fn layer_bytes(entries: &[Vec<u8>], tombstones: &[Vec<u8>], layer: u32) -> Vec<u8> {
    let mut w = LayerWriter::new(Vec::new()).unwrap();
    for p in entries {
        w.add_entry(&entry(p, layer)).unwrap();
    }
    for p in tombstones {
        w.add_tombstone(&Tombstone { path: p.clone() }).unwrap();
    }
    w.finish(&meta()).unwrap().0
}

/// A layer object held in memory.
struct Memory(Vec<u8>);

impl ObjectReader for Memory {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = offset as usize;
        match self.0.get(at..at + buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(Error::Bug("read past the end".into())),
        }
    }
}

fn chain_layer(location: &str, bytes: Vec<u8>) -> Result<ChainLayer> {
    ChainLayer::open(location.to_string(), Box::new(Memory(bytes)))
}

fn key(p: &[u8]) -> Vec<u8> {
    p.iter().map(|&c| if c == b'/' { 0 } else { c }).collect()
}

fn paths() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let component = prop::sample::select(vec!["a", "b", "a-", "c"]);
    let one = prop::collection::vec(component, 1..4).prop_map(|c| c.join("/").into_bytes());
    prop::collection::vec(one, 0..12).prop_map(sorted)
}

proptest! {
    #[test]
    fn merged_view_matches_the_naive_model(
        layers in prop::collection::vec((paths(), paths()), 1..6)
    ) {
        let mut model: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
        let mut encoded = Vec::new();
        for (i, (entries, tombstones)) in layers.iter().enumerate() {
            // The first layer of a chain is a full backup: no tombstones.
            let tombstones = if i == 0 { &Vec::new() } else { tombstones };
            model.retain(|_, e| !tombstones.iter().any(|t| path::is_within(&e.path, t)));
            for p in entries {
                model.insert(key(p), entry(p, i as u32));
            }
            let bytes = layer_bytes(entries, tombstones, i as u32);
            encoded.push(chain_layer(&format!("layer {i}"), bytes).unwrap());
        }
        let expected: Vec<Entry> = model.into_values().collect();
        // Every layer streamed, every layer held, and a mix of both.
        for held in [0, 4, u64::MAX] {
            let view: Vec<Entry> = MergedView::holding(&encoded, held)
                .unwrap()
                .collect::<Result<_>>()
                .unwrap();
            prop_assert_eq!(&view, &expected);
        }
    }
}

#[test]
fn a_corrupt_layer_is_reported_with_its_location() {
    let mut bytes = layer_bytes(&[b"a".to_vec()], &[], 0);
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let err = chain_layer("layer x", bytes).err().unwrap();
    assert!(err.to_string().contains("layer x"), "{err}");
}
