//! The catalog's own speed, PostgreSQL against SQLite in the same run:
//! service operations per second (a backup's record through its life:
//! admitted, completed, read, listed), and the chunk index with four
//! writers at once (each a node: a catalog of its own on the same
//! database), committing packs and looking chunks up.
//!
//! `cargo bench -p strata-benches --bench catalog` with a PostgreSQL
//! server named in `STRATA_TEST_POSTGRES` (`tests/run` starts one);
//! under `cargo test` it is a smoke test of small counts.

use std::sync::Arc;
use std::time::Instant;

use strata_engine::index::ChunkIndex;
use strata_engine::pg::PgCatalog;
use strata_engine::store::{
    Admission, Admitted, BackupFilter, BackupRecord, Quota, ServiceStore, Share, ShareStatus,
};
use strata_format::pack::{Compression, PackEntry};
use strata_format::{BackupId, ChunkId, PackId, ShareId};

const NODES: usize = 4;

fn share(n: u8) -> Share {
    Share {
        id: ShareId([n; 16]),
        project: "bench".into(),
        name: format!("share{n}"),
        path: format!("/srv/share{n}"),
        size_gib: Some(1),
        protocol: "NFS".into(),
        status: ShareStatus::Available,
        created_at: 1,
        updated_at: None,
        source_backup_id: None,
        fail_reason: None,
        adopted: false,
    }
}

fn id16(seed: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(&seed.to_le_bytes()).as_bytes()[..16]);
    out
}

fn id32(seed: u64) -> [u8; 32] {
    *blake3::hash(&seed.to_le_bytes()).as_bytes()
}

/// Backups admitted, completed, read back and listed: operations per second.
fn service_ops(store: &dyn ServiceStore, backups: u64) -> f64 {
    store.ensure_project("bench").expect("project");
    store.insert_share(&share(1)).expect("share");
    let admission = Admission {
        parent: None,
        quota: Quota::default(),
        estimate_gib: 1,
        snapshot: None,
    };
    let start = Instant::now();
    let mut ops = 0u64;
    for i in 0..backups {
        let mut b = BackupRecord::new(
            BackupId(id16(i)),
            "bench".into(),
            ShareId([1; 16]),
            i as i64,
        );
        assert_eq!(
            store.insert_backup(&b, &admission).expect("insert"),
            Admitted::Yes
        );
        store
            .set_backup_progress(b.id, 50, false)
            .expect("progress");
        b.file_count = 10;
        store.complete_backup(&b, &[], Some(1)).expect("complete");
        store.backup(b.id).expect("read");
        ops += 4;
        if i % 20 == 0 {
            store
                .list_backups(&BackupFilter {
                    project: Some("bench"),
                    ..BackupFilter::default()
                })
                .expect("list");
            ops += 1;
        }
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

/// `NODES` writers at once, each committing `packs` packs of 500 chunks
/// (a fifth of them already indexed by another writer) and looking up as
/// many chunks: inserts and lookups per second over all of them.
fn index_ops(open: &(dyn Fn() -> Arc<dyn ChunkIndex> + Sync), packs: u64) -> (f64, f64) {
    const PER_PACK: u64 = 500;
    let start = Instant::now();
    let counts: Vec<(u64, f64, u64, f64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..NODES as u64)
            .map(|node| {
                scope.spawn(move || {
                    let index = open();
                    let (mut inserted, mut insert_secs) = (0u64, 0f64);
                    let (mut looked, mut lookup_secs) = (0u64, 0f64);
                    for p in 0..packs {
                        let entries: Vec<PackEntry> = (0..PER_PACK)
                            .map(|c| {
                                // Every fifth chunk is one all writers meet.
                                let seed = match c % 5 {
                                    0 => p * PER_PACK + c,
                                    _ => (node + 1) << 40 | (p * PER_PACK + c),
                                };
                                PackEntry {
                                    id: ChunkId(id32(seed)),
                                    offset: c * 4096,
                                    stored_len: 4096,
                                    raw_len: 4096,
                                    compression: Compression::None,
                                }
                            })
                            .collect();
                        let t = Instant::now();
                        let pack = PackId(id32(node << 50 | p));
                        index
                            .commit_pack(pack, PER_PACK * 4096, &entries)
                            .expect("commit");
                        insert_secs += t.elapsed().as_secs_f64();
                        inserted += PER_PACK;
                        let t = Instant::now();
                        for e in &entries {
                            assert!(index.contains(&e.id).expect("lookup"));
                        }
                        lookup_secs += t.elapsed().as_secs_f64();
                        looked += PER_PACK;
                    }
                    (inserted, insert_secs, looked, lookup_secs)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let inserted: u64 = counts.iter().map(|c| c.0).sum();
    let looked: u64 = counts.iter().map(|c| c.2).sum();
    // Each writer's share of the wall time went to inserts and lookups in
    // the proportion it measured.
    let insert_share: f64 = counts.iter().map(|c| c.1 / (c.1 + c.3)).sum::<f64>() / NODES as f64;
    (
        inserted as f64 / (wall * insert_share),
        looked as f64 / (wall * (1.0 - insert_share)),
    )
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (backups, packs) = if benching { (2000, 40) } else { (40, 2) };
    let Some(url) =
        strata_engine::pg::testing::fresh_database("the catalog benchmark").expect("database")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = strata_engine::Catalog::open(&dir.path().join("a.db")).expect("sqlite");
    let pg = PgCatalog::open(&url).expect("postgres");
    let sqlite_ops = service_ops(&sqlite, backups);
    let pg_ops = service_ops(&pg, backups);
    println!(
        "service operations ({backups} backups through their life, one thread): \
         SQLite {sqlite_ops:.0}/s, PostgreSQL {pg_ops:.0}/s ({:.2}x)",
        pg_ops / sqlite_ops
    );

    let sqlite_path = dir.path().join("index.db");
    let open_sqlite = || -> Arc<dyn ChunkIndex> {
        Arc::new(strata_engine::Catalog::open(&sqlite_path).expect("sqlite"))
    };
    let index_url = strata_engine::pg::testing::fresh_database("the catalog benchmark")
        .expect("database")
        .expect("a server");
    let open_pg =
        || -> Arc<dyn ChunkIndex> { Arc::new(PgCatalog::open(&index_url).expect("postgres")) };
    let (si, sl) = index_ops(&open_sqlite, packs);
    let (pi, pl) = index_ops(&open_pg, packs);
    println!(
        "chunk index, {NODES} writers at once ({} packs of 500 chunks each): \
         SQLite inserts {si:.0}/s, lookups {sl:.0}/s; PostgreSQL inserts {pi:.0}/s, lookups {pl:.0}/s",
        packs
    );
}
