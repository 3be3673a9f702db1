//! The SQLite catalog as a chunk index: where a chunk is placed when packs
//! are committed (the first place stands) and when a repack moves it (the
//! new place stands), and that one pooled catalog serves many threads.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use proptest::prelude::*;
use strata_engine::index::ChunkIndex;
use strata_engine::Catalog;
use strata_format::pack::{Compression, PackEntry};
use strata_format::{ChunkId, PackId};

fn entry(chunk: u8, offset: u64) -> PackEntry {
    PackEntry {
        id: ChunkId([chunk; 32]),
        offset,
        stored_len: 10,
        raw_len: 10,
        compression: Compression::None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Committing keeps a chunk's first place; moving takes the last.
    #[test]
    fn committed_chunks_keep_their_first_place_and_moved_ones_their_last(
        steps in prop::collection::vec((0u8..4, prop::collection::vec(0u8..8, 1..6), any::<bool>()), 1..12)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
        let mut expected: std::collections::HashMap<u8, (PackId, u64)> = Default::default();
        for (n, (pack, chunks, moved)) in steps.iter().enumerate() {
            let pack = PackId([*pack + 16 * (n as u8 % 4); 32]);
            let mut seen = std::collections::HashSet::new();
            let entries: Vec<PackEntry> = chunks
                .iter()
                .filter(|c| seen.insert(**c))
                .enumerate()
                .map(|(i, c)| entry(*c, 12 + 10 * i as u64))
                .collect();
            if *moved {
                catalog.move_chunks(pack, 1000, &entries).unwrap();
                for e in &entries {
                    expected.insert(e.id.0[0], (pack, e.offset));
                }
            } else {
                catalog.commit_pack(pack, 1000, &entries).unwrap();
                for e in &entries {
                    expected.entry(e.id.0[0]).or_insert((pack, e.offset));
                }
            }
        }
        for (chunk, (pack, offset)) in expected {
            let at = ChunkIndex::locate(&catalog, &ChunkId([chunk; 32])).unwrap().unwrap();
            prop_assert_eq!(at.pack, pack);
            prop_assert_eq!(at.entry.offset, offset);
        }
    }
}

#[test]
fn one_catalog_serves_many_threads_and_a_snapshot_sees_one_state() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(&dir.path().join("c.db")).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let catalog = &catalog;
            s.spawn(move || {
                for i in 0..25u8 {
                    let pack = PackId([t * 32 + i; 32]);
                    catalog
                        .commit_pack(pack, 10, &[entry(t * 32 + i, 12)])
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(ChunkIndex::packs(&catalog).unwrap().len(), 200);
    // Inside a read snapshot, a commit made meanwhile is not seen.
    catalog
        .reading(|snapshot| {
            let before = ChunkIndex::packs(snapshot).unwrap().len();
            catalog
                .commit_pack(PackId([255; 32]), 10, &[entry(255, 12)])
                .unwrap();
            assert_eq!(ChunkIndex::packs(snapshot).unwrap().len(), before);
            Ok(())
        })
        .unwrap();
    assert_eq!(ChunkIndex::packs(&catalog).unwrap().len(), 201);
}
