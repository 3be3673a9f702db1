//! A hostile record, repository or client gets nothing: each test here is
//! an attack (or a careless operator's mistake) that once crossed a
//! boundary, lost data or left something stuck, and what must happen now.

mod admission;
mod clocks;
mod crash_points;
mod nodes;
mod records;
mod repository;
mod snapshots;
mod trees;

use std::fs;

use strata_format::layer::{Entry, Layer, LayerMeta, LayerWriter, Tombstone};

use crate::harness::Env;

/// Rewrites the (first generation) layer of `backup` with `forge` applied
/// to its metadata and records, with valid checksums: what the operator of
/// the export, or a hostile repository, could hand strata. Entries are put
/// back in path order.
/// Every object below `root` has permission bits `file`, every directory
/// (`root` included) `dir`.
pub fn assert_modes(root: &std::path::Path, file: u32, dir: u32) {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(root), dir, "{}", root.display());
    for entry in fs::read_dir(root).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            assert_modes(&path, file, dir);
        } else {
            assert_eq!(mode(&path), file, "{}", path.display());
        }
    }
}

pub fn rewrite_layer(
    env: &Env,
    backup: &str,
    forge: impl FnOnce(&mut LayerMeta, &mut Vec<Entry>),
) -> Vec<Tombstone> {
    let path = env.repo().join("layers").join(backup);
    let bytes = fs::read(&path).expect("layer");
    let layer = Layer::decode(&bytes).expect("decode");
    let (mut entries, tombstones) = layer.decode_all().expect("records");
    let mut meta = layer.meta.clone();
    forge(&mut meta, &mut entries);
    entries.sort_by(|a, b| strata_format::path::cmp(&a.path, &b.path));
    let mut w = LayerWriter::new(Vec::new()).expect("writer");
    for e in &entries {
        w.add_entry(e).expect("entry");
    }
    for t in &tombstones {
        w.add_tombstone(t).expect("tombstone");
    }
    let (out, _) = w.finish(&meta).expect("finish");
    fs::write(&path, out).expect("write");
    tombstones
}
