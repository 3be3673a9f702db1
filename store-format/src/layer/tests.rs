//! Layer codec tests: round trips, and hostile layers the writer would refuse.
use super::pieces::Piece;
use super::*;
use proptest::prelude::*;

pub(crate) fn meta() -> LayerMeta {
    LayerMeta {
        backup_id: BackupId([7; 16]),
        share_id: ShareId([9; 16]),
        parent_id: None,
        project: "default".into(),
        name: "nightly".into(),
        description: String::new(),
        share_name: "projects".into(),
        share_path: "/srv/projects".into(),
        data_timestamp_ns: 1_700_000_000_000_000_000,
        created_at_ns: 1_700_000_000_000_000_000,
        finished_at_ns: 1_700_000_001_000_000_000,
        stats: LayerStats::default(),
        service: Default::default(),
        exclusions: Default::default(),
    }
}

fn entry(path: &[u8], kind: EntryKind) -> Entry {
    Entry {
        path: path.to_vec(),
        mode: 0o644,
        uid: 1,
        gid: 2,
        mtime_ns: 3,
        ctime_ns: 4,
        inode: 5,
        xattrs: Vec::new(),
        kind,
    }
}

/// Encodes records without any of the writer's checks, as an attacker would.
fn encode_unchecked(records: &[Record], entries: u64, tombstones: u64) -> Vec<u8> {
    encode_unchecked_as(LAYER_VERSION, records, entries, tombstones)
}

/// [`encode_unchecked`] under the header's `version`.
fn encode_unchecked_as(version: u32, records: &[Record], entries: u64, tombstones: u64) -> Vec<u8> {
    let mut body = Vec::new();
    for r in records {
        let bytes = postcard::to_stdvec(r).unwrap();
        body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        body.extend_from_slice(&bytes);
    }
    let body = zstd::bulk::compress(&body, 3).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(LAYER_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&body);
    let mut meta = postcard::to_stdvec(&meta()).unwrap();
    if version >= LAYER_VERSION_PIECES {
        // One piece, which names no first path: the records are unchecked.
        let index = vec![Piece {
            offset: 0,
            len: body.len() as u64,
            hash: *blake3::hash(&body).as_bytes(),
            entries_before: 0,
            first: Vec::new(),
        }];
        meta.extend_from_slice(&postcard::to_stdvec(&index).unwrap());
    }
    let footer_at = out.len();
    out.extend_from_slice(&meta);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&entries.to_le_bytes());
    out.extend_from_slice(&tombstones.to_le_bytes());
    let sum = match version >= LAYER_VERSION_PIECES {
        true => {
            let mut signed = blake3::Hasher::new();
            signed.update(&out[..12]);
            signed.update(&out[footer_at..]);
            signed.finalize()
        }
        false => blake3::hash(&out),
    };
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Reads `buf.len()` bytes of `bytes` from `at`, as a repository object would.
fn read_at(bytes: &[u8], at: u64, buf: &mut [u8]) -> io::Result<()> {
    let at = at as usize;
    let piece = bytes
        .get(at..at + buf.len())
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(piece);
    Ok(())
}

fn decode_error(records: Vec<Record>) -> String {
    let n = records.len() as u64;
    let bytes = encode_unchecked(&records, n, 0);
    let layer = Layer::decode(&bytes).unwrap();
    match layer.decode_all() {
        Ok(_) => panic!("hostile layer accepted"),
        Err(e) => {
            assert!(e.is_corruption(), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn decoder_rejects_hostile_paths_and_order() {
    let dir = |p: &[u8]| Record::Entry(entry(p, EntryKind::Dir));
    assert!(decode_error(vec![dir(b"/etc")]).contains("absolute"));
    assert!(decode_error(vec![dir(b"a/../../b")]).contains("'..'"));
    assert!(decode_error(vec![dir(b"a\0b")]).contains("NUL"));
    assert!(decode_error(vec![dir(b"b"), dir(b"a")]).contains("out of order"));
    assert!(decode_error(vec![dir(b"a"), dir(b"a")]).contains("out of order"));
    let link = Record::Entry(entry(
        b"a",
        EntryKind::Hardlink {
            target: b"b".to_vec(),
        },
    ));
    assert!(decode_error(vec![link]).contains("does not precede"));
    let lying = Record::Entry(entry(
        b"f",
        EntryKind::File {
            size: 10,
            chunks: vec![ChunkRef {
                id: ChunkId([0; 32]),
                len: 3,
            }],
            hash: FileHash([0; 32]),
        },
    ));
    assert!(decode_error(vec![lying]).contains("size is 10"));
}

/// A file of two chunks whose hash is `hash`.
fn two_chunk_file(hash: FileHash) -> Entry {
    let chunks = vec![
        ChunkRef {
            id: ChunkId::of(b"one"),
            len: 3,
        },
        ChunkRef {
            id: ChunkId::of(b"two"),
            len: 3,
        },
    ];
    entry(
        b"f",
        EntryKind::File {
            size: 6,
            chunks,
            hash,
        },
    )
}

/// From version 3 a file's hash is computed from its chunk ids, so a layer
/// that disagrees with itself is corrupt; a version-2 layer's hash was of
/// the content, which only the restore can check, so it reads.
#[test]
fn decoder_checks_file_hashes_from_version_3() {
    let content_hash = FileHash(*blake3::hash(b"onetwo").as_bytes());
    let record = Record::Entry(two_chunk_file(content_hash));
    assert!(decode_error(vec![record]).contains("file hash differs"));

    let v2 = encode_unchecked_as(2, &[Record::Entry(two_chunk_file(content_hash))], 1, 0);
    let layer = Layer::decode(&v2).unwrap();
    assert_eq!(layer.version, 2);
    let (entries, _) = layer.decode_all().unwrap();
    assert_eq!(entries, vec![two_chunk_file(content_hash)]);

    let ids = [ChunkId::of(b"one"), ChunkId::of(b"two")];
    let sound = two_chunk_file(FileHash::of_chunks(&ids));
    let v3 = encode_unchecked(&[Record::Entry(sound.clone())], 1, 0);
    let layer = Layer::decode(&v3).unwrap();
    assert_eq!(layer.version, LAYER_VERSION);
    assert_eq!(layer.decode_all().unwrap().0, vec![sound]);
}

#[test]
fn decoder_checks_counts_and_checksum() {
    let records = vec![Record::Entry(entry(b"a", EntryKind::Dir))];
    let bytes = encode_unchecked(&records, 2, 0);
    let layer = Layer::decode(&bytes).unwrap();
    assert!(layer.decode_all().is_err(), "missing record went unnoticed");
    let mut bytes = encode_unchecked(&records, 1, 0);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    assert!(Layer::decode(&bytes).is_err());
}

#[test]
fn writer_refuses_what_the_reader_would_reject() {
    let mut w = LayerWriter::new(Vec::new()).unwrap();
    w.add_entry(&entry(b"b", EntryKind::Dir)).unwrap();
    assert!(w.add_entry(&entry(b"a", EntryKind::Dir)).is_err());
    assert!(w.add_entry(&entry(b"../x", EntryKind::Dir)).is_err());
    let content_hash = FileHash(*blake3::hash(b"onetwo").as_bytes());
    assert!(w.add_entry(&two_chunk_file(content_hash)).is_err());
}

fn arb_kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        Just(EntryKind::Dir),
        proptest::collection::vec(1u8..=255, 1..20)
            .prop_map(|target| EntryKind::Symlink { target }),
        proptest::collection::vec((any::<[u8; 32]>(), 1u32..1 << 22), 0..5).prop_map(|chunks| {
            let chunks: Vec<ChunkRef> = chunks
                .into_iter()
                .map(|(id, len)| ChunkRef {
                    id: ChunkId(id),
                    len,
                })
                .collect();
            EntryKind::File {
                size: chunks.iter().map(|c| u64::from(c.len)).sum(),
                hash: FileHash::of_chunks(chunks.iter().map(|c| &c.id)),
                chunks,
            }
        }),
    ]
}

fn arb_path() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec("[a-z0-9.é _-]{1,6}", 1..4).prop_filter_map("valid", |parts| {
        let p = parts.join("/").into_bytes();
        path::validate(&p).is_ok().then_some(p)
    })
}

proptest! {
    #[test]
    fn layer_round_trips(
        raw in proptest::collection::vec((arb_path(), arb_kind(), any::<u32>(), any::<i64>(),
            proptest::collection::vec((proptest::collection::vec(1u8..=255, 1..8), proptest::collection::vec(any::<u8>(), 0..8)), 0..3)), 0..40),
        tombs in proptest::collection::vec(arb_path(), 0..10),
    ) {
        let mut entries: Vec<Entry> = raw.into_iter().map(|(p, kind, mode, mtime, xattrs)| {
            let mut e = entry(&p, kind);
            e.mode = mode;
            e.mtime_ns = mtime;
            e.xattrs = xattrs.into_iter().map(|(name, value)| Xattr { name, value }).collect();
            e.xattrs.sort_by(|a, b| a.name.cmp(&b.name));
            e.xattrs.dedup_by(|a, b| a.name == b.name);
            e
        }).collect();
        entries.sort_by(|a, b| path::cmp(&a.path, &b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        let mut tombstones: Vec<Tombstone> = tombs.into_iter().map(|path| Tombstone { path }).collect();
        tombstones.sort_by(|a, b| path::cmp(&a.path, &b.path));
        tombstones.dedup();

        let mut w = LayerWriter::new(Vec::new()).unwrap();
        for e in &entries { w.add_entry(e).unwrap(); }
        for t in &tombstones { w.add_tombstone(t).unwrap(); }
        let (bytes, len) = w.finish(&meta()).unwrap();
        prop_assert_eq!(len, bytes.len() as u64);
        let layer = Layer::decode(&bytes).unwrap();
        prop_assert_eq!(layer.version, LAYER_VERSION);
        prop_assert_eq!(&layer.meta, &meta());
        let (got_entries, got_tombs) = layer.decode_all().unwrap();
        prop_assert_eq!(&got_entries, &entries);
        prop_assert_eq!(&got_tombs, &tombstones);

        // Verified and streamed by range, as the engine reads a layer from a
        // repository: the same metadata and records.
        let tail = LayerTail::verify(len, |at, buf| read_at(&bytes, at, buf)).unwrap();
        prop_assert_eq!(&tail.meta, &meta());
        let body = &bytes[tail.body.start as usize..tail.body.end as usize];
        let mut streamed = (Vec::new(), Vec::new());
        for record in tail.records(io::BufReader::with_capacity(7, body)).unwrap() {
            match record.unwrap() {
                LayerRecord::Entry(e) => streamed.0.push(e),
                LayerRecord::Tombstone(t) => streamed.1.push(t),
            }
        }
        prop_assert_eq!(streamed, (entries, tombstones));
    }

    /// A flipped byte anywhere is found before what it touches is used:
    /// in the header or footer by the verification, in a piece of the body
    /// when that piece is read (and so by a whole read).
    #[test]
    fn a_flipped_byte_fails_verification_by_range(flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut w = LayerWriter::with_pieces_of(Vec::new(), 30).unwrap();
        for p in [&b"a"[..], b"b", b"c", b"d"] {
            w.add_entry(&entry(p, EntryKind::Dir)).unwrap();
        }
        w.add_tombstone(&Tombstone { path: b"z".to_vec() }).unwrap();
        let (mut bytes, len) = w.finish(&meta()).unwrap();
        let at = flip.index(bytes.len());
        bytes[at] ^= 1 << bit;
        let found = match LayerTail::verify(len, |at, buf| read_at(&bytes, at, buf)) {
            Err(_) => true,
            Ok(tail) => {
                prop_assert!(tail.pieces.len() >= 3, "{} pieces", tail.pieces.len());
                let body = &bytes[tail.body.start as usize..tail.body.end as usize];
                tail.records(body).map_or(true, |r| r.into_iter().any(|r| r.is_err()))
            }
        };
        prop_assert!(found, "flipped byte {} went unnoticed", at);
        prop_assert!(Layer::decode(&bytes).is_err());
    }

    #[test]
    fn decoder_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(layer) = Layer::decode(&bytes) {
            let _ = layer.decode_all();
        }
        if let Ok(tail) = LayerTail::verify(bytes.len() as u64, |at, buf| read_at(&bytes, at, buf)) {
            let body = bytes.get(tail.body.start as usize..tail.body.end as usize).unwrap_or(&[]);
            if let Ok(records) = tail.records(body) {
                records.for_each(drop);
            }
        }
    }
}

/// Records as serde writes a `Vec<u8>` it is not told is a byte string: a
/// length and then each byte, one element at a time. Layers were written
/// that way before their byte strings were declared as such; postcard puts
/// the same bytes on the wire either way, which this mirror proves.
mod as_sequences {
    use serde::Serialize;

    #[derive(Serialize)]
    pub enum Record {
        Entry(Entry),
        Tombstone { path: Vec<u8> },
    }

    #[derive(Serialize)]
    pub struct Entry {
        pub path: Vec<u8>,
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        pub mtime_ns: i64,
        pub ctime_ns: i64,
        pub inode: u64,
        pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
        pub kind: Kind,
    }

    #[derive(Serialize)]
    pub enum Kind {
        File {
            size: u64,
            chunks: Vec<super::ChunkRef>,
            hash: super::FileHash,
        },
        Dir,
        Symlink {
            target: Vec<u8>,
        },
        Hardlink {
            target: Vec<u8>,
        },
    }

    pub fn of(e: &super::Entry) -> Record {
        Record::Entry(Entry {
            path: e.path.clone(),
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime_ns: e.mtime_ns,
            ctime_ns: e.ctime_ns,
            inode: e.inode,
            xattrs: e
                .xattrs
                .iter()
                .map(|x| (x.name.clone(), x.value.clone()))
                .collect(),
            kind: match &e.kind {
                super::EntryKind::File { size, chunks, hash } => Kind::File {
                    size: *size,
                    chunks: chunks.clone(),
                    hash: *hash,
                },
                super::EntryKind::Dir => Kind::Dir,
                super::EntryKind::Symlink { target } => Kind::Symlink {
                    target: target.clone(),
                },
                super::EntryKind::Hardlink { target } => Kind::Hardlink {
                    target: target.clone(),
                },
            },
        })
    }
}

proptest! {
    #[test]
    fn records_are_the_bytes_element_wise_encoding_wrote(
        path in proptest::collection::vec(any::<u8>(), 0..300),
        kind in arb_kind(),
        link in proptest::collection::vec(any::<u8>(), 0..300),
        hardlink in any::<bool>(),
        xattrs in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..20), proptest::collection::vec(any::<u8>(), 0..300)),
            0..3),
        inode in any::<u64>(),
    ) {
        let mut e = entry(&path, kind);
        e.inode = inode;
        e.xattrs = xattrs.into_iter().map(|(name, value)| Xattr { name, value }).collect();
        if !link.is_empty() {
            e.kind = match hardlink {
                true => EntryKind::Hardlink { target: link },
                false => EntryKind::Symlink { target: link },
            };
        }
        let old = postcard::to_allocvec(&as_sequences::of(&e)).unwrap();
        let new = postcard::to_allocvec(&Record::Entry(e.clone())).unwrap();
        prop_assert_eq!(&new, &old);
        match postcard::from_bytes::<Record>(&old).unwrap() {
            Record::Entry(got) => prop_assert_eq!(got, e),
            Record::Tombstone(_) => prop_assert!(false, "an entry decoded as a tombstone"),
        }
        let old = postcard::to_allocvec(&as_sequences::Record::Tombstone { path: path.clone() }).unwrap();
        let new = postcard::to_allocvec(&Record::Tombstone(Tombstone { path: path.clone() })).unwrap();
        prop_assert_eq!(&new, &old);
    }
}
