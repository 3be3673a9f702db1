//! The layer codec: entries encoded and decoded per second, beside the
//! zstd decompression of the same body alone (the floor a decoder of
//! compressed records cannot go under).
//!
//! An incremental backup decodes its parent chain's every entry, and a
//! restore its backup's, so the decoder's entries/s bounds both where little
//! else is to do (a no-change incremental of many small files).
//!
//! `cargo bench -p strata-benches --bench layer` runs it on 400,000 entries
//! shaped like a tree of source files (paths of about 80 bytes under a few
//! shared prefixes, a directory entry every 20 files, one chunk a file);
//! under `cargo test` it runs on a few thousand as a smoke test.
//! Each measure is the fastest of `RUNS` runs.

use std::io::Read;
use std::time::Instant;

use strata_format::id::{BackupId, ChunkId, FileHash, ShareId};
use strata_format::layer::{
    ChunkRef, Entry, EntryKind, Layer, LayerMeta, LayerRecord, LayerStats, LayerWriter,
};

const RUNS: usize = 3;

fn entries(count: usize) -> Vec<Entry> {
    let mut out = Vec::with_capacity(count);
    let base = |path: String, mode: u32, kind: EntryKind| Entry {
        inode: 4_000_000 + path.len() as u64,
        path: path.into_bytes(),
        mode,
        uid: 1000,
        gid: 1000,
        mtime_ns: 1_700_000_000_123_456_789,
        ctime_ns: 1_700_000_000_987_654_321,
        xattrs: Vec::new(),
        kind,
    };
    let mut i = 0;
    while out.len() < count {
        let dir = format!(
            "copy{:02}/index.crates.io-1949cf8c6b5b557f/crate-{:05}-0.{}.{}/src",
            i / 40_000,
            i / 200,
            i % 7,
            i % 13
        );
        if i % 20 == 0 {
            out.push(base(dir.clone(), 0o40755, EntryKind::Dir));
        }
        let id = ChunkId::of(&(i as u64).to_le_bytes());
        let len = 1_000 + (i as u32 * 7919) % 30_000;
        out.push(base(
            format!("{dir}/module_{:06}.rs", i),
            0o100644,
            EntryKind::File {
                size: u64::from(len),
                chunks: vec![ChunkRef { id, len }],
                hash: FileHash::of_chunks([&id]),
            },
        ));
        i += 1;
    }
    // The writer takes entries in path order; every path above is unique.
    out.sort_by(|a, b| strata_format::path::cmp(&a.path, &b.path));
    out
}

fn meta() -> LayerMeta {
    LayerMeta {
        backup_id: BackupId([7; 16]),
        share_id: ShareId([9; 16]),
        parent_id: None,
        project: "default".into(),
        name: "bench".into(),
        description: String::new(),
        share_name: "share".into(),
        share_path: "/srv/share".into(),
        data_timestamp_ns: 1_700_000_000_000_000_000,
        created_at_ns: 1_700_000_000_000_000_000,
        finished_at_ns: 1_700_000_001_000_000_000,
        stats: LayerStats::default(),
        service: Default::default(),
        exclusions: Default::default(),
    }
}

fn best<T>(mut f: impl FnMut() -> T) -> (T, f64) {
    let mut fastest = f64::INFINITY;
    let mut out = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        let got = f();
        fastest = fastest.min(started.elapsed().as_secs_f64());
        out = Some(got);
    }
    (out.expect("runs"), fastest)
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let count = if benching { 400_000 } else { 4_000 };
    let tree = entries(count);
    let count = tree.len();

    let (layer, encode_secs) = best(|| {
        let mut w = LayerWriter::new(Vec::new()).expect("writer");
        for e in &tree {
            w.add_entry(e).expect("add");
        }
        w.finish(&meta()).expect("finish").0
    });
    let parsed = Layer::decode(&layer).expect("layer");
    let (decoded, decode_secs) = best(|| {
        let mut n = 0usize;
        for r in parsed.records().expect("records") {
            match r.expect("record") {
                LayerRecord::Entry(e) => n += std::hint::black_box(e).path.len().min(1),
                LayerRecord::Tombstone(_) => {}
            }
        }
        n
    });
    assert_eq!(decoded, count, "every entry decoded");
    // The body alone: its zstd frames (the pieces), decompressed and thrown
    // away.
    let tail = strata_format::layer::LayerTail::verify(layer.len() as u64, |at, buf| {
        buf.copy_from_slice(&layer[at as usize..at as usize + buf.len()]);
        Ok(())
    })
    .expect("layer");
    let body = &layer[tail.body.start as usize..tail.body.end as usize];
    let ((), zstd_secs) = best(|| {
        let mut d = zstd::Decoder::new(body).expect("zstd");
        let mut buf = vec![0u8; 64 << 10];
        while d.read(&mut buf).expect("read") > 0 {}
    });

    let per_s = |secs: f64| count as f64 / secs;
    println!(
        "layer codec: {count} entries, layer {:.1} MB ({:.1} bytes/entry)",
        layer.len() as f64 / 1e6,
        layer.len() as f64 / count as f64
    );
    println!(
        "encode: {:.0} entries/s ({encode_secs:.3} s)",
        per_s(encode_secs)
    );
    println!(
        "decode: {:.0} entries/s ({decode_secs:.3} s)",
        per_s(decode_secs)
    );
    println!(
        "zstd alone: {:.0} entries/s ({zstd_secs:.3} s); decode / zstd alone = {:.2}",
        per_s(zstd_secs),
        decode_secs / zstd_secs
    );
}
