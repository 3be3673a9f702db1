//! Damaged and hostile repositories: restore refuses with an error naming
//! the damaged object, and never writes outside its target.

use std::fs;
use std::path::{Path, PathBuf};

use strata_format::layer::{ChunkRef, Entry, EntryKind, LayerMeta, LayerStats, LayerWriter};
use strata_format::pack::Compression;
use strata_format::{BackupId, ChunkId, FileHash, ShareId};

use crate::harness::*;

fn only_file(dir: &Path) -> PathBuf {
    let mut found = walk_files(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// Compressible bytes that do not repeat chunk for chunk.
fn text_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("line {i} of a nightly backup, {}\n", i * 7919 % 1000).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

/// The repository's one pack: its path and its id.
fn only_pack(env: &Env) -> (PathBuf, String) {
    let pack = only_file(&env.repo().join("packs"));
    let id = pack
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    (pack, id)
}

fn backed_up(env: &Env) -> String {
    let share = env.path("share");
    fs::create_dir_all(&share).expect("share");
    fs::write(share.join("data.bin"), noise(2 << 20, 5)).expect("write");
    fs::write(share.join("note.txt"), b"a small file").expect("write");
    backup(env, &share)["id"].as_str().expect("id").to_string()
}

#[test]
fn a_flipped_pack_byte_fails_restore_naming_the_pack() {
    let env = Env::new();
    let id = backed_up(&env);
    let (pack, pack_id) = only_pack(&env);
    let mut bytes = fs::read(&pack).expect("read");
    bytes[1 << 20] ^= 0x40;
    overwrite(&pack, &bytes);

    let target = env.path("out");
    let run = restore_to(&env, &id, &target);
    run.fails(7, &format!("pack {pack_id}"));
    assert!(run.stderr.contains("corruption"), "{}", run.stderr);
    // The backup itself is still there to be repaired or deleted.
    let shown = env
        .strata(&["backup", "show", &id, "-f", "json"])
        .ok()
        .json();
    assert_eq!(shown["status"], "available");
}

/// Each chunk of a many-chunk file is checked against its id: the restore
/// names the damaged chunk's pack and offset, and does not leave the
/// damaged file in the target.
#[test]
fn a_flipped_byte_in_a_many_chunk_file_names_the_chunk_and_leaves_no_file() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).expect("share");
    // Compressible chunks first, then random ones: the damage is in a raw
    // chunk, so finding it means expanding zstd chunks before it.
    let mut content = text_bytes(6 << 20);
    content.extend(noise(8 << 20, 9));
    fs::write(share.join("big.bin"), &content).expect("write");
    let id = backup(&env, &share)["id"].as_str().expect("id").to_string();
    let (pack, pack_id) = only_pack(&env);
    let mut bytes = fs::read(&pack).expect("read");
    let entries = strata_format::pack::decode_index(&bytes).expect("index");
    // The file's chunks in file order, from the layer.
    let layer = fs::read(env.repo().join("layers").join(&id)).expect("layer");
    let (files, _) = strata_format::layer::Layer::decode(&layer)
        .expect("layer")
        .decode_all()
        .expect("entries");
    let EntryKind::File { chunks, .. } = &files[0].kind else {
        panic!("not a file: {:?}", files[0]);
    };
    let in_pack = |c: &ChunkRef| entries.iter().find(|e| e.id == c.id).expect("in pack");
    let first_raw = chunks
        .iter()
        .position(|c| in_pack(c).compression == Compression::None)
        .expect("a raw chunk");
    assert!(first_raw >= 2, "{chunks:?}");
    assert!(chunks[..first_raw]
        .iter()
        .all(|c| in_pack(c).compression == Compression::Zstd));
    // A byte in the middle of the first raw chunk after the zstd ones.
    let damaged = in_pack(&chunks[first_raw]);
    bytes[(damaged.offset + u64::from(damaged.stored_len) / 2) as usize] ^= 0x01;
    overwrite(&pack, &bytes);

    let target = env.path("out");
    let run = restore_to(&env, &id, &target);
    run.fails(7, &format!("pack {pack_id} at offset {}", damaged.offset));
    assert!(
        !target.join("big.bin").exists(),
        "the damaged file was left"
    );
}

#[test]
fn a_truncated_layer_is_reported_as_corrupt() {
    let env = Env::new();
    let id = backed_up(&env);
    let layer = env.repo().join("layers").join(&id);
    let bytes = fs::read(&layer).expect("read");
    overwrite(&layer, &bytes[..bytes.len() - 10]);
    let run = restore_to(&env, &id, &env.path("out"));
    run.fails(7, &format!("layer {id}"));
}

/// A layer whose entries are each well-formed but which, together, would
/// write through a symlink to outside the target.
#[test]
fn a_hostile_layer_cannot_write_outside_the_target() {
    let env = Env::new();
    let id = backed_up(&env);
    let outside = env.path("outside");
    fs::create_dir_all(&outside).expect("outside");
    let content = b"a small file";
    let file = |path: &[u8]| Entry {
        path: path.to_vec(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        xattrs: Vec::new(),
        kind: EntryKind::File {
            size: content.len() as u64,
            chunks: vec![ChunkRef {
                id: ChunkId::of(content),
                len: content.len() as u32,
            }],
            hash: FileHash(ChunkId::of(content).0),
        },
    };
    let mut escape = file(b"escape");
    escape.kind = EntryKind::Symlink {
        target: outside.to_str().expect("utf8").as_bytes().to_vec(),
    };
    let mut writer = LayerWriter::new(Vec::new()).expect("writer");
    writer.add_entry(&escape).expect("entry");
    writer
        .add_entry(&file(b"escape/planted.txt"))
        .expect("entry");
    let meta = LayerMeta {
        backup_id: id.parse::<BackupId>().expect("id"),
        share_id: ShareId([0; 16]),
        parent_id: None,
        project: "default".into(),
        name: String::new(),
        description: String::new(),
        share_name: String::new(),
        share_path: String::new(),
        data_timestamp_ns: 0,
        created_at_ns: 0,
        finished_at_ns: 0,
        stats: LayerStats::default(),
        service: Default::default(),
        exclusions: Default::default(),
    };
    let (bytes, _) = writer.finish(&meta).expect("finish");
    let layer = env.repo().join("layers").join(&id);
    overwrite(&layer, &bytes);

    let target = env.path("out");
    let run = restore_to(&env, &id, &target);
    run.fails(7, "parent is not a directory");
    assert_eq!(fs::read_dir(&outside).expect("ls").count(), 0);
}

/// The chunks are intact but the layer's file hash disagrees with them,
/// under a valid checksum (as a buggy or hostile writer would leave it): the
/// layer is corrupt, and the restore says so before it writes any file.
#[test]
fn a_file_hash_that_disagrees_with_its_chunks_fails_the_restore() {
    let env = Env::new();
    let id = backed_up(&env);
    let path = env.repo().join("layers").join(&id);
    let bytes = fs::read(&path).expect("read");
    let (entries, _) = strata_format::layer::Layer::decode(&bytes)
        .expect("layer")
        .decode_all()
        .expect("entries");
    let hash = entries
        .iter()
        .find_map(|e| match &e.kind {
            EntryKind::File { chunks, hash, .. } if chunks.len() > 1 => Some(*hash),
            _ => None,
        })
        .expect("a many-chunk file");
    let resealed = reseal(&bytes, |body| {
        let at = body
            .windows(32)
            .position(|w| w == hash.0)
            .expect("the hash in the body");
        body[at] ^= 1;
    });
    overwrite(&path, &resealed);

    let target = env.path("out");
    let run = restore_to(&env, &id, &target);
    run.fails(7, &format!("layer {id}"));
    assert!(run.stderr.contains("file hash differs"), "{}", run.stderr);
    assert!(
        !target.join("data.bin").exists() && !target.join("note.txt").exists(),
        "a file was restored from a corrupt layer"
    );
}

/// A layer's bytes with its decompressed body changed by `change`, then
/// compressed and sealed again: lengths and checksum made right.
fn reseal(layer: &[u8], change: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let read_at = |at: u64, buf: &mut [u8]| {
        let at = at as usize;
        buf.copy_from_slice(&layer[at..at + buf.len()]);
        Ok(())
    };
    let tail = strata_format::layer::LayerTail::verify(layer.len() as u64, read_at).expect("tail");
    let (start, end) = (tail.body.start as usize, tail.body.end as usize);
    let mut body = zstd::decode_all(&layer[start..end]).expect("body");
    change(&mut body);
    // One piece now, which names no first path; its hash is honest.
    let body = zstd::encode_all(body.as_slice(), 3).expect("compress");
    let index = vec![strata_format::layer::Piece {
        offset: 0,
        len: body.len() as u64,
        hash: *blake3::hash(&body).as_bytes(),
        entries_before: 0,
        first: Vec::new(),
    }];
    let mut meta = postcard::to_stdvec(&tail.meta).expect("meta");
    meta.extend_from_slice(&postcard::to_stdvec(&index).expect("index"));
    // FOOTER = META (with the index) || meta_len:u32 || body_len:u64 ||
    // counts:2×u64 || checksum over the header and the footer before it.
    let mut footer = meta.clone();
    footer.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    footer.extend_from_slice(&(body.len() as u64).to_le_bytes());
    footer.extend_from_slice(&tail.entry_count.to_le_bytes());
    footer.extend_from_slice(&tail.tombstone_count.to_le_bytes());
    let mut signed = blake3::Hasher::new();
    signed.update(&layer[..start]);
    signed.update(&footer);
    let mut out = layer[..start].to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&footer);
    out.extend_from_slice(signed.finalize().as_bytes());
    out
}
