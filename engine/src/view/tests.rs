//! The merged view against a naive model: a map that applies each layer's
//! tombstones (path and subtree) and then its entries.
use std::collections::BTreeMap;

use proptest::prelude::*;
use strata_format::config::RepoConfig;
use strata_format::layer::{EntryKind, LayerMeta, LayerStats, LayerWriter, Tombstone};
use strata_format::{BackupId, RepositoryId, ShareId};

use crate::repository::objects::{Cond, MemoryStore, ObjectStore};

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
        exclusions: Default::default(),
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

/// A repository in memory, to hold a test's layers.
fn repository() -> Repository {
    let store: std::sync::Arc<dyn ObjectStore> = std::sync::Arc::new(MemoryStore::new("view"));
    Repository::init(store, RepoConfig::new(RepositoryId([0; 16]))).unwrap()
}

/// Writes layer `layer` (of backup `[layer; 16]`), in pieces of a record or
/// two, and opens it to stream.
fn chain_layer(
    repo: &Repository,
    entries: &[Vec<u8>],
    tombstones: &[Vec<u8>],
    layer: u8,
) -> Result<ChainLayer> {
    let name = LayerName::first(BackupId([layer; 16]));
    let format = |e| Error::format("test layer", e);
    let mut w = LayerWriter::with_pieces_of(Vec::new(), 40).map_err(format)?;
    for p in entries {
        w.add_entry(&entry(p, u32::from(layer))).map_err(format)?;
    }
    for p in tombstones {
        w.add_tombstone(&Tombstone { path: p.clone() })
            .map_err(format)?;
    }
    let (bytes, _) = w.finish(&meta()).map_err(format)?;
    repo.objects().put(&name.key(), &bytes, Cond::IfAbsent)?;
    repo.open_layer(&name)
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
        let repo = repository();
        for (i, (entries, tombstones)) in layers.iter().enumerate() {
            // The first layer of a chain is a full backup: no tombstones.
            let tombstones = if i == 0 { &Vec::new() } else { tombstones };
            model.retain(|_, e| !tombstones.iter().any(|t| path::is_within(&e.path, t)));
            for p in entries {
                model.insert(key(p), entry(p, i as u32));
            }
            encoded.push(chain_layer(&repo, entries, tombstones, i as u8).unwrap());
        }
        let expected: Vec<Entry> = model.into_values().collect();
        // Every layer streamed, every layer held, and a mix of both.
        for held in [0, 4, u64::MAX] {
            let view: Vec<Entry> = MergedView::holding(&encoded, held, None)
                .unwrap()
                .collect::<Result<_>>()
                .unwrap();
            prop_assert_eq!(&view, &expected);
        }
        // Read from about a path on: from it, the same tree.
        let mut starts: Vec<Vec<u8>> = expected.iter().map(|e| e.path.clone()).collect();
        starts.extend([b"a".to_vec(), b"b/a".to_vec(), b"c/c/c".to_vec(), b"a-/z".to_vec()]);
        for at in starts {
            let from: Vec<Entry> = MergedView::from(&encoded, &at)
                .unwrap()
                .collect::<Result<Vec<Entry>>>()
                .unwrap()
                .into_iter()
                .filter(|e| path::cmp(&e.path, &at) != Ordering::Less)
                .collect();
            let want: Vec<&Entry> = expected
                .iter()
                .filter(|e| path::cmp(&e.path, &at) != Ordering::Less)
                .collect();
            prop_assert_eq!(from.iter().collect::<Vec<_>>(), want);
        }
    }
}

#[test]
fn a_corrupt_layer_is_reported_with_its_location() {
    let repo = repository();
    let paths: Vec<Vec<u8>> = (0..50u32)
        .map(|i| format!("p{i:03}").into_bytes())
        .collect();
    let layer = chain_layer(&repo, &paths, &[], 7).unwrap();
    let (body, pieces) = (layer.tail.body.clone(), layer.tail.pieces.clone());
    assert!(pieces.len() > 5, "{} pieces", pieces.len());
    let name = LayerName::first(BackupId([7; 16]));
    let store = repo.objects();
    let clean = store.get(&name.key()).unwrap();
    // A byte of the footer: the layer does not open.
    let mut bytes = clean.clone();
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    store.put(&name.key(), &bytes, Cond::Any).unwrap();
    let err = repo.open_layer(&name).err().unwrap();
    assert!(err.to_string().contains(&name.id.to_string()), "{err}");
    // A byte of a middle piece: it opens, and reading through that piece
    // fails, naming the layer; a read from a later piece does not need it.
    let mut bytes = clean;
    let middle = &pieces[pieces.len() / 2];
    bytes[(body.start + middle.offset + middle.len / 2) as usize] ^= 1;
    store.put(&name.key(), &bytes, Cond::Any).unwrap();
    let layer = repo.open_layer(&name).unwrap();
    let failed = layer
        .records()
        .unwrap()
        .find_map(|r| r.err())
        .expect("damage found");
    let err = Error::format(layer.location.as_str(), failed);
    assert!(err.to_string().contains(&name.id.to_string()), "{err}");
    let after = layer.records_from(pieces.len() / 2 + 1).unwrap();
    assert!(after.collect::<std::result::Result<Vec<_>, _>>().is_ok());
}

/// Read from a path on, each streamed layer starts at the piece that holds
/// it: what comes before that piece is not read (the layers here hold a
/// record or two a piece; a layer small enough to be held is read whole).
#[test]
fn a_view_from_a_path_skips_the_pieces_before_it() {
    let repo = repository();
    let paths: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| format!("d/f{i:05}").into_bytes())
        .collect();
    let mut full = vec![b"d".to_vec()];
    full.extend(paths.iter().cloned());
    let base = chain_layer(&repo, &full, &[], 1).unwrap();
    let changed: Vec<Vec<u8>> = paths.iter().step_by(7).cloned().collect();
    let top = chain_layer(&repo, &changed, &[b"d/f00003".to_vec()], 2).unwrap();
    assert!(base.tail.pieces.len() > 500 && top.tail.pieces.len() > 100);
    let layers = [base, top];
    let at = b"d/f01500".to_vec();
    let before = MergedView::holding(&layers, 0, Some(&at))
        .unwrap()
        .map(|e| e.unwrap())
        .take_while(|e| path::cmp(&e.path, &at) == Ordering::Less)
        .count();
    assert!(before <= 8, "{before} entries before the path were read");
    let first = MergedView::holding(&layers, 0, Some(&at))
        .unwrap()
        .find_map(|e| {
            let e = e.unwrap();
            (path::cmp(&e.path, &at) != Ordering::Less).then_some(e)
        });
    assert_eq!(first.map(|e| (e.path, e.uid)), Some((at, 1)));
}
