//! Catalog rebuild: time, peak RSS and bytes read against repository size,
//! for the repository of a backup of the generated dataset and for a
//! synthetic repository of one million chunks (packs and a layer written
//! straight through the format crate).
//!
//! `cargo bench -p strata-benches --bench rebuild`; under `cargo test` it
//! runs on small sizes as a smoke test.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{child, generate, num};
use strata_engine::repository::layout::{self, LayerName};
use strata_engine::repository::objects::PosixStore;
use strata_engine::repository::objects::{Cond, ObjectStore};
use strata_engine::Repository;
use strata_format::config::RepoConfig;
use strata_format::layer::{ChunkRef, Entry, EntryKind, LayerMeta, LayerWriter};
use strata_format::pack::{Compression, PackWriter};
use strata_format::{BackupId, ChunkId, FileHash, PackId, RepositoryId, ShareId};

/// Chunks per synthetic pack, and per synthetic file.
const PACK_CHUNKS: u32 = 10_000;
const FILE_CHUNKS: u32 = 1_000;

/// Writes `chunks` distinct 32-byte chunks into packs under `repo`, and one
/// layer whose files reference every one of them.
fn synthetic(repo: &Path, chunks: u32) {
    let backend = Arc::new(PosixStore::new(repo).expect("backend"));
    Repository::init(backend.clone(), RepoConfig::new(RepositoryId([0; 16]))).expect("init");
    let chunk = |i: u32| -> Vec<u8> {
        let mut c = [0u8; 32];
        c[..4].copy_from_slice(&i.to_le_bytes());
        c.to_vec()
    };
    for p in 0..chunks.div_ceil(PACK_CHUNKS) {
        let mut w = PackWriter::new(Vec::new()).expect("pack");
        for i in p * PACK_CHUNKS..((p + 1) * PACK_CHUNKS).min(chunks) {
            let c = chunk(i);
            w.add(ChunkId::of(&c), &c, 32, Compression::None)
                .expect("add");
        }
        let (bytes, _, _) = w.finish().expect("finish");
        let id = PackId(*blake3::hash(&p.to_le_bytes()).as_bytes());
        backend
            .put(&layout::pack(&id), &bytes, Cond::IfAbsent)
            .expect("write pack");
    }
    let mut w = LayerWriter::new(Vec::new()).expect("layer");
    let mut names: Vec<String> = (0..chunks.div_ceil(FILE_CHUNKS))
        .map(|f| format!("f{f:08}"))
        .collect();
    names.sort();
    for (f, name) in names.iter().enumerate() {
        let f = f as u32;
        let refs: Vec<ChunkRef> = (f * FILE_CHUNKS..((f + 1) * FILE_CHUNKS).min(chunks))
            .map(|i| ChunkRef {
                id: ChunkId::of(&chunk(i)),
                len: 32,
            })
            .collect();
        let size = refs.len() as u64 * 32;
        w.add_entry(&Entry {
            path: name.as_bytes().to_vec(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: u64::from(f) + 1,
            xattrs: Vec::new(),
            kind: EntryKind::File {
                size,
                hash: FileHash::of_chunks(refs.iter().map(|c| &c.id)),
                chunks: refs,
            },
        })
        .expect("entry");
    }
    let id = BackupId([1; 16]);
    let meta = LayerMeta {
        backup_id: id,
        share_id: ShareId([2; 16]),
        parent_id: None,
        project: "default".into(),
        name: "synthetic".into(),
        description: String::new(),
        share_name: "synthetic".into(),
        share_path: "/synthetic".into(),
        data_timestamp_ns: 1,
        created_at_ns: 1,
        finished_at_ns: 2,
        stats: Default::default(),
        service: Default::default(),
        exclusions: Default::default(),
    };
    let (bytes, _) = w.finish(&meta).expect("finish layer");
    backend
        .put(&LayerName::first(id).key(), &bytes, Cond::IfAbsent)
        .expect("write layer");
}

fn report(what: &str, r: &std::collections::HashMap<String, String>) {
    let read = num(r, "read");
    let size = num(r, "repository");
    println!(
        "{what}: {:.0} packs, {:.0} chunks in {:.2} s ({:.0} chunks/s), peak RSS {:.0} MiB, \
         read {:.2} MB of {:.1} MB ({:.3}%)",
        num(r, "packs"),
        num(r, "chunks"),
        num(r, "secs"),
        num(r, "chunks") / num(r, "secs").max(1e-6),
        num(r, "peak_rss_kib") / 1024.0,
        read / 1e6,
        size / 1e6,
        100.0 * read / size.max(1.0),
    );
}

fn main() {
    let (benching, mib) = common::dataset_mib();
    let work = tempfile::tempdir().expect("tempdir");
    let path = |p: &Path| p.to_str().expect("utf8").to_string();

    let share = work.path().join("share");
    generate(&share, mib);
    let (catalog, repo) = (work.path().join("catalog.db"), work.path().join("repo"));
    child(&["backup", &path(&catalog), &path(&repo), &path(&share)]);
    let rebuilt = child(&["rebuild", &path(&catalog), &path(&repo)]);
    assert!(num(&rebuilt, "chunks") > 0.0);
    report(&format!("dataset repository ({mib} MiB)"), &rebuilt);

    let chunks = if benching { 1_000_000 } else { 20_000 };
    let synth = work.path().join("synthetic");
    synthetic(&synth, chunks);
    let catalog = work.path().join("synthetic.db");
    let rebuilt = child(&["rebuild", &path(&catalog), &path(&synth)]);
    assert_eq!(num(&rebuilt, "chunks") as u32, chunks);
    report("synthetic repository", &rebuilt);
}
