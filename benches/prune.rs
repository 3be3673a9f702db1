//! `backup prune` of 1,000 nightly backups, from metadata alone: a chain of
//! one full backup of 2,000 files and 999 incrementals (20 files changed, 2
//! added and 2 deleted each night), written straight through the format
//! crate, the catalog rebuilt from it, then pruned to daily 7, weekly 4,
//! monthly 12 and yearly 3. Prints time and peak RSS of the prune, then
//! checks the repository and restores the newest and the oldest kept
//! backup, comparing every file with the model of its night.
//!
//! `cargo bench -p strata-benches --bench prune`; under `cargo test` it
//! runs on 60 backups as a smoke test.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use common::{child, num};
use strata_engine::repository::layout::{self, LayerName};
use strata_engine::repository::objects::PosixStore;
use strata_engine::repository::objects::{Cond, ObjectStore};
use strata_engine::Repository;
use strata_format::config::RepoConfig;
use strata_format::layer::{
    ChunkRef, Entry, EntryKind, LayerMeta, LayerStats, LayerWriter, Tombstone,
};
use strata_format::pack::{Compression, PackWriter};
use strata_format::{BackupId, ChunkId, FileHash, PackId, RepositoryId, ShareId};

const FILES: u32 = 2_000;
const CHANGED: u32 = 20;
const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// The content of chunk `i`: 32 distinct bytes.
fn chunk(i: u32) -> Vec<u8> {
    let mut c = [0u8; 32];
    c[..4].copy_from_slice(&i.to_le_bytes());
    c[4..8].copy_from_slice(b"prun");
    c.to_vec()
}

fn entry(path: &str, i: u32, inode: u64) -> Entry {
    let c = chunk(i);
    Entry {
        path: path.as_bytes().to_vec(),
        mode: 0o100644,
        uid: 0,
        gid: 0,
        mtime_ns: i64::from(i),
        ctime_ns: i64::from(i),
        inode,
        xattrs: Vec::new(),
        kind: EntryKind::File {
            size: 32,
            chunks: vec![ChunkRef {
                id: ChunkId::of(&c),
                len: 32,
            }],
            hash: FileHash(*blake3::hash(&c).as_bytes()),
        },
    }
}

/// Writes the chain into `repo`; returns each night's tree (path → chunk)
/// and the backups' ids, oldest first.
fn synthetic(repo: &Path, nights: u32) -> (Vec<BTreeMap<String, u32>>, Vec<BackupId>) {
    let backend = Arc::new(PosixStore::new(repo).expect("backend"));
    Repository::init(backend.clone(), RepoConfig::new(RepositoryId([7; 16]))).expect("init");
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let first_ns = (now_ns / DAY_NS - i64::from(nights) - 1) * DAY_NS + 2 * 3_600_000_000_000;
    let mut next_chunk = 0u32;
    let mut tree: BTreeMap<String, u32> = BTreeMap::new();
    let mut trees = Vec::new();
    let mut ids = Vec::new();
    let mut parent = None;
    let mut fresh = FILES;
    for night in 0..nights {
        let mut changed: BTreeMap<String, u32> = BTreeMap::new();
        let mut gone = Vec::new();
        if night == 0 {
            for f in 0..FILES {
                changed.insert(format!("f{f:06}"), next_chunk);
                next_chunk += 1;
            }
        } else {
            let names: Vec<String> = tree.keys().cloned().collect();
            for k in 0..CHANGED {
                let at = (night as usize * 37 + k as usize * 101) % names.len();
                changed.insert(names[at].clone(), next_chunk);
                next_chunk += 1;
            }
            for k in 0..2 {
                let at = (night as usize * 53 + k * 17 + 1) % names.len();
                if !changed.contains_key(&names[at]) {
                    gone.push(names[at].clone());
                }
                changed.insert(format!("f{fresh:06}"), next_chunk);
                fresh += 1;
                next_chunk += 1;
            }
        }
        gone.sort();
        gone.dedup();
        let mut w = LayerWriter::new(Vec::new()).expect("layer");
        for (path, i) in &changed {
            w.add_entry(&entry(path, *i, u64::from(*i) + 1))
                .expect("entry");
        }
        for path in &gone {
            w.add_tombstone(&Tombstone {
                path: path.as_bytes().to_vec(),
            })
            .expect("tombstone");
            tree.remove(path);
        }
        tree.extend(changed);
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&night.to_be_bytes());
        id[4] = 0x50;
        let id = BackupId(id);
        let time = first_ns + i64::from(night) * DAY_NS;
        let meta = LayerMeta {
            backup_id: id,
            share_id: ShareId([2; 16]),
            parent_id: parent,
            project: "default".into(),
            name: format!("night-{night}"),
            description: String::new(),
            share_name: "nightly".into(),
            share_path: "/nightly".into(),
            data_timestamp_ns: time,
            created_at_ns: time,
            finished_at_ns: time + 1,
            stats: LayerStats {
                files: tree.len() as u64,
                logical_bytes: tree.len() as u64 * 32,
                ..LayerStats::default()
            },
            service: Default::default(),
            exclusions: Default::default(),
        };
        let (bytes, _) = w.finish(&meta).expect("finish layer");
        backend
            .put(&LayerName::first(id).key(), &bytes, Cond::IfAbsent)
            .expect("write layer");
        trees.push(tree.clone());
        ids.push(id);
        parent = Some(id);
    }
    for (p, start) in (0..next_chunk).step_by(10_000).enumerate() {
        let mut w = PackWriter::new(Vec::new()).expect("pack");
        for i in start..(start + 10_000).min(next_chunk) {
            let c = chunk(i);
            w.add(ChunkId::of(&c), &c, 32, Compression::None)
                .expect("add");
        }
        let (bytes, _, _) = w.finish().expect("finish");
        let id = PackId(*blake3::hash(&(p as u64).to_le_bytes()).as_bytes());
        backend
            .put(&layout::pack(&id), &bytes, Cond::IfAbsent)
            .expect("write pack");
    }
    (trees, ids)
}

/// Restores `id` and compares every file with `tree`.
fn restores(catalog: &str, repo: &str, target: &Path, id: &BackupId, tree: &BTreeMap<String, u32>) {
    let target_s = target.to_str().expect("utf8");
    child(&["restore", catalog, repo, &id.to_string(), target_s]);
    let mut found = 0;
    for e in fs::read_dir(target).expect("restored") {
        let e = e.expect("entry");
        let name = e.file_name().into_string().expect("utf8");
        let want = tree
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is not in {id}"));
        assert_eq!(
            fs::read(e.path()).expect("read"),
            chunk(*want),
            "{name} of {id}"
        );
        found += 1;
    }
    assert_eq!(found, tree.len(), "every file of {id}");
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let nights = if benching { 1_000 } else { 60 };
    let work = tempfile::tempdir().expect("tempdir");
    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    let repo = work.path().join("repo");
    let (trees, ids) = synthetic(&repo, nights);
    let catalog = path(&work.path().join("catalog.db"));
    let repo = path(&repo);
    let rebuilt = child(&["rebuild", &catalog, &repo]);
    assert!(num(&rebuilt, "chunks") > f64::from(FILES), "{rebuilt:?}");
    if let Some(dir) = std::env::var_os("STRATA_BENCH_KEEP") {
        // The state before the prune, for profiling it again and again.
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(work.path())
            .arg(&dir)
            .status()
            .expect("cp");
        assert!(status.success());
        println!(
            "kept the state before the prune in {}",
            dir.to_string_lossy()
        );
    }
    let idle = child(&["idle", &catalog, &repo]);
    let pruned = child(&["prune", &catalog, &repo]);
    let secs = num(&pruned, "secs");
    println!(
        "prune of {nights} backups ({} files each, {} layers): {:.0} kept, {:.0} removed, \
         {:.0} layers rewritten in {secs:.2} s ({:.0} backups/s, {:.2} s of CPU), peak RSS \
         {:.0} MiB (an idle engine: {:.0} MiB)",
        FILES,
        nights,
        num(&pruned, "kept"),
        num(&pruned, "removed"),
        num(&pruned, "rewritten"),
        f64::from(nights) / secs.max(1e-6),
        num(&pruned, "cpu_secs"),
        num(&pruned, "peak_rss_kib") / 1024.0,
        num(&idle, "peak_rss_kib") / 1024.0,
    );
    assert_eq!(num(&pruned, "judged") as u32, nights);
    assert!(num(&pruned, "removed") > 0.0 && num(&pruned, "rewritten") > 0.0);
    child(&["verify", &catalog, &repo]);
    // The newest night, and the oldest one kept (its layer now a full one).
    let kept: Vec<usize> = (0..ids.len())
        .filter(|i| repo_has_layer(&repo, &ids[*i]))
        .collect();
    assert_eq!(kept.len() as f64, num(&pruned, "kept"));
    for i in [kept[kept.len() - 1], kept[0]] {
        let target = work.path().join(format!("restore-{i}"));
        restores(&catalog, &repo, &target, &ids[i], &trees[i]);
    }
    println!("the newest and the oldest kept backup restore their nights exactly");
}

fn repo_has_layer(repo: &str, id: &BackupId) -> bool {
    fs::read_dir(Path::new(repo).join("layers"))
        .expect("layers")
        .any(|e| {
            let name = e.expect("entry").file_name().into_string().expect("utf8");
            name.split('.').next() == Some(id.to_string().as_str())
        })
}
