//! Golden files pin the bytes of each format version. If one of these tests
//! fails, the on-disk format changed: that needs a new format version, an
//! entry in FORMAT.md's history, and a reader for the old bytes — not a
//! re-blessed file. (`STRATA_BLESS=1` writes the files for a new version.)

#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::path::PathBuf;

use strata_format::config::RepoConfig;
use strata_format::layer::{
    ChunkRef, Entry, EntryKind, Exclusions, Layer, LayerMeta, LayerRecord, LayerStats, LayerTail,
    LayerWriter, ServiceMeta, Tombstone, Xattr,
};
use strata_format::pack::{self, Compression, PackWriter};
use strata_format::{BackupId, ChunkId, FileHash, RepositoryId, ShareId};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn check(name: &str, bytes: &[u8]) {
    let path = golden(name);
    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        expected == bytes,
        "{name} no longer matches its golden file"
    );
}

fn chunks() -> Vec<Vec<u8>> {
    vec![
        b"strata golden chunk one ".repeat(40),
        (0u8..=255).collect(),
        Vec::new(),
    ]
}

#[test]
fn pack_v1_bytes_are_stable() {
    let mut w = PackWriter::new(Vec::new()).unwrap();
    for c in chunks() {
        let (stored, comp) = pack::compress_chunk(&c, Some(3)).unwrap();
        w.add(ChunkId::of(&c), &stored, c.len() as u32, comp)
            .unwrap();
    }
    let (bytes, _, _) = w.finish().unwrap();
    check("pack-v1.bin", &bytes);

    let golden = std::fs::read(golden("pack-v1.bin")).unwrap();
    let entries = pack::decode_index(&golden).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].compression, Compression::Zstd);
    assert_eq!(entries[1].compression, Compression::None);
    for (e, c) in entries.iter().zip(chunks()) {
        let blob = &golden[e.offset as usize..][..e.stored_len as usize];
        assert_eq!(&pack::decode_chunk(e, blob).unwrap()[..], &c[..]);
    }
}

fn layer_meta() -> LayerMeta {
    LayerMeta {
        backup_id: BackupId([0x11; 16]),
        share_id: ShareId([0x22; 16]),
        parent_id: Some(BackupId([0x33; 16])),
        project: "default".into(),
        name: "golden".into(),
        description: "pinned bytes".into(),
        share_name: "projects".into(),
        share_path: "/srv/projects".into(),
        data_timestamp_ns: 1_700_000_000_123_456_789,
        created_at_ns: 1_700_000_000_123_456_789,
        finished_at_ns: 1_700_000_060_000_000_000,
        stats: LayerStats {
            files: 1,
            dirs: 1,
            symlinks: 1,
            hardlinks: 1,
            skipped: 0,
            logical_bytes: 5,
            new_bytes: 5,
            stored_bytes: 5,
            new_chunks: 1,
        },
        service: Default::default(),
        exclusions: Default::default(),
    }
}

/// The metadata version 2 adds, filled in.
fn layer_meta_v2() -> LayerMeta {
    LayerMeta {
        service: ServiceMeta {
            share_size_gib: Some(100),
            share_protocol: "NFS".into(),
            backup_type: Some("nightly".into()),
            snapshot_id: None,
            availability_zone: Some("nova".into()),
            host: Some("node-1".into()),
            share_root_dev: Some(2049),
            problems: vec![("docs/locked".into(), "cannot open: denied".into())],
        },
        ..layer_meta()
    }
}

fn layer_entries() -> Vec<Entry> {
    let base = |path: &str, kind: EntryKind| Entry {
        path: path.as_bytes().to_vec(),
        mode: 0o755,
        uid: 1000,
        gid: 100,
        mtime_ns: 1_600_000_000_987_654_321,
        ctime_ns: 1_600_000_001_000_000_000,
        inode: 42,
        xattrs: Vec::new(),
        kind,
    };
    let mut file = base(
        "docs/a.txt",
        EntryKind::File {
            size: 5,
            chunks: vec![ChunkRef {
                id: ChunkId::of(b"hello"),
                len: 5,
            }],
            hash: FileHash(ChunkId::of(b"hello").0),
        },
    );
    file.xattrs = vec![Xattr {
        name: b"user.origin".to_vec(),
        value: b"golden".to_vec(),
    }];
    vec![
        base("docs", EntryKind::Dir),
        file,
        base(
            "docs/b.txt",
            EntryKind::Hardlink {
                target: b"docs/a.txt".to_vec(),
            },
        ),
        base(
            "link",
            EntryKind::Symlink {
                target: b"docs/a.txt".to_vec(),
            },
        ),
    ]
}

/// Version 3 adds a file of two chunks and an empty one, whose hashes
/// pin how a file hash is made from chunk ids.
fn layer_entries_v3() -> Vec<Entry> {
    let mut entries = layer_entries();
    let chunks = vec![
        ChunkRef {
            id: ChunkId::of(b"a"),
            len: 1,
        },
        ChunkRef {
            id: ChunkId::of(b"b"),
            len: 1,
        },
    ];
    let two = EntryKind::File {
        size: 2,
        hash: FileHash::of_chunks(chunks.iter().map(|c| &c.id)),
        chunks,
    };
    let empty = EntryKind::File {
        size: 0,
        chunks: Vec::new(),
        hash: FileHash(ChunkId::of(b"").0),
    };
    let named = |path: &str, kind: EntryKind| Entry {
        path: path.as_bytes().to_vec(),
        xattrs: Vec::new(),
        kind,
        ..entries[0].clone()
    };
    let (c, d) = (named("docs/c.bin", two), named("docs/d.empty", empty));
    // After docs/b.txt, before link: path order.
    entries.splice(3..3, [c, d]);
    entries
}

fn records_of(entries: Vec<Entry>) -> Vec<LayerRecord> {
    let mut expected: Vec<LayerRecord> = entries.into_iter().map(LayerRecord::Entry).collect();
    expected.push(LayerRecord::Tombstone(Tombstone {
        path: b"old".to_vec(),
    }));
    expected
}

/// Version 1 is no longer written, but every version-1 layer still reads:
/// its metadata with the service part left at its defaults.
#[test]
fn layer_v1_bytes_still_read() {
    reads_as("layer-v1.bin", 1, &layer_meta(), layer_entries());
}

/// The golden layer `name` is of `version` and decodes to `meta` and the
/// records of `entries`.
fn reads_as(name: &str, version: u32, meta: &LayerMeta, entries: Vec<Entry>) {
    let golden = std::fs::read(golden(name)).unwrap();
    let layer = Layer::decode(&golden).unwrap();
    assert_eq!(layer.version, version);
    assert_eq!(&layer.meta, meta);
    let records: Vec<LayerRecord> = layer.records().unwrap().map(Result::unwrap).collect();
    assert_eq!(records, records_of(entries));
}

/// The metadata version 4 adds, filled in.
fn layer_meta_v4() -> LayerMeta {
    LayerMeta {
        exclusions: Exclusions {
            patterns: vec!["*.tmp".into(), "home/*/cache".into()],
            caches: true,
            if_present: vec![".nobackup".into()],
            excluded: 7,
        },
        ..layer_meta_v2()
    }
}

/// Version 4 pinned with pieces of about 64 bytes of records, so the body
/// is several frames and the tombstones start one of their own.
#[test]
fn layer_v4_bytes_are_stable() {
    let mut w = LayerWriter::with_pieces_of(Vec::new(), 64).unwrap();
    for e in layer_entries_v3() {
        w.add_entry(&e).unwrap();
    }
    w.add_tombstone(&Tombstone {
        path: b"old".to_vec(),
    })
    .unwrap();
    let (bytes, _) = w.finish(&layer_meta_v4()).unwrap();
    check("layer-v4.bin", &bytes);
    reads_as("layer-v4.bin", 4, &layer_meta_v4(), layer_entries_v3());
    // Read from the piece of each entry on: that entry and the rest.
    let len = bytes.len() as u64;
    let tail = LayerTail::verify(len, |at, buf| {
        buf.copy_from_slice(&bytes[at as usize..at as usize + buf.len()]);
        Ok(())
    })
    .unwrap();
    assert!(tail.pieces.len() >= 3, "{} pieces", tail.pieces.len());
    // The records from the start of `piece` to the end of the body.
    let from = |piece: usize| -> Vec<LayerRecord> {
        let start = (tail.body.start + tail.piece_offset(piece)) as usize;
        let body = &bytes[start..tail.body.end as usize];
        tail.records_from(piece, body)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let entries = layer_entries_v3();
    for (i, e) in entries.iter().enumerate() {
        let read: Vec<Entry> = from(tail.piece_for(&e.path))
            .into_iter()
            .filter_map(|r| match r {
                LayerRecord::Entry(e) => Some(e),
                LayerRecord::Tombstone(_) => None,
            })
            .collect();
        assert!(read.len() >= entries.len() - i && read.ends_with(&entries[i..]));
    }
    let read = from(tail.tombstone_piece().unwrap());
    assert_eq!(
        read,
        vec![LayerRecord::Tombstone(Tombstone {
            path: b"old".to_vec()
        })]
    );
}

/// Version 4 added the exclusions; version-3 layers read as excluding
/// nothing.
#[test]
fn layer_v3_bytes_still_read() {
    reads_as("layer-v3.bin", 3, &layer_meta_v2(), layer_entries_v3());
}

/// Version 3 changed only what a file hash means; version-2 layers, whose
/// file hashes are of the content, still read.
#[test]
fn layer_v2_bytes_still_read() {
    reads_as("layer-v2.bin", 2, &layer_meta_v2(), layer_entries());
}

/// Version-2 layers written before bodies were capped at a 128 KiB window
/// still read.
#[test]
fn layer_v2_bytes_with_a_wide_window_still_read() {
    reads_as(
        "layer-v2-wide-window.bin",
        2,
        &layer_meta_v2(),
        layer_entries(),
    );
}

#[test]
fn config_v1_bytes_are_stable() {
    let config = RepoConfig::new(RepositoryId([0x44; 16]));
    check("config-v1.json", &config.encode());
    let golden = std::fs::read(golden("config-v1.json")).unwrap();
    assert_eq!(RepoConfig::decode(&golden).unwrap(), config);
}
