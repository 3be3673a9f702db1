//! End-to-end throughput: full backup and restore of a generated mixed
//! dataset, against the single-thread speed of chunk+hash+compress on the
//! same bytes.
//!
//! `cargo bench -p strata-benches` runs it on ≥ 1 GiB (`STRATA_BENCH_MIB`
//! overrides); under `cargo test` it runs on a small dataset as a smoke test.
//! `STRATA_BENCH_KEEP=1` keeps the dataset and repository for profiling.
//! Reported: MB/s, files/s, peak RSS, repository size, and the ratios the
//! targets are stated in. Each measure is the fastest of `RUNS` runs; peak
//! RSS is the highest of all runs.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use strata_format::config::ChunkerParams;
use strata_format::pack::compress_chunk;
use strata_format::ChunkId;

fn noise(out: &mut [u8], seed: u64) {
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(out);
}

/// Text-like data that compresses about 3-4x with zstd -3.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "backup ",
        "share ",
        "restore ",
        "chunk ",
        "pack ",
        "layer ",
        "index ",
        "the ",
        "of ",
        "export ",
        "nightly ",
        "quota ",
        "status\n",
        "available ",
        "error ",
        "data ",
    ];
    let mut picks = vec![0u8; len / 4 + 16];
    noise(&mut picks, seed);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(WORDS[(picks[i % picks.len()] % 16) as usize].as_bytes());
        if picks[(i * 7) % picks.len()] < 8 {
            out.extend_from_slice(format!("{i} ").as_bytes());
        }
        i += 1;
    }
    out.truncate(len);
    out
}

/// Writes the dataset; returns (bytes, files).
fn generate(root: &Path, total_mib: u64) -> (u64, u64) {
    let total = total_mib << 20;
    let small_budget = total / 4;
    let mut bytes = 0u64;
    let mut files = 0u64;
    let mut seed = 0u64;
    // Many small files (1-64 KiB), half text, half random, in 100 directories.
    while bytes < small_budget {
        seed += 1;
        let len = 1024 + (seed * 2_654_435_761 % (63 * 1024)) as usize;
        let data = if seed.is_multiple_of(2) {
            text(len, seed)
        } else {
            let mut d = vec![0u8; len];
            noise(&mut d, seed);
            d
        };
        let dir = root.join(format!("small/d{:03}", seed % 100));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(format!("f{seed}.dat")), &data).expect("write");
        bytes += len as u64;
        files += 1;
    }
    // Large files: random and compressible, in 8 MiB pieces.
    fs::create_dir_all(root.join("large")).expect("mkdir");
    let large = total - bytes;
    let per_file = (large / 4).max(1 << 20);
    for (i, compressible) in [false, true, false, true].into_iter().enumerate() {
        let mut out = fs::File::create(root.join(format!("large/file{i}.bin"))).expect("create");
        let mut written = 0u64;
        while written < per_file {
            let len = (8u64 << 20).min(per_file - written) as usize;
            seed += 1;
            let piece = if compressible {
                text(len, seed)
            } else {
                let mut d = vec![0u8; len];
                noise(&mut d, seed);
                d
            };
            std::io::Write::write_all(&mut out, &piece).expect("write");
            written += len as u64;
        }
        bytes += written;
        files += 1;
    }
    (bytes, files)
}

/// Chunk + hash + compress on one thread over every file: the work a backup
/// cannot avoid, without I/O, dedup, packing or parallelism.
fn single_thread(root: &Path) -> (u64, f64) {
    let params = ChunkerParams::default();
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("ls").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                paths.push(p);
            }
        }
    }
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut sink = 0u64;
    for p in paths {
        let data = fs::read(&p).expect("read");
        let cdc =
            fastcdc::v2020::FastCDC::new(&data, params.min_size, params.avg_size, params.max_size);
        for c in cdc {
            let piece = &data[c.offset..c.offset + c.length];
            let id = ChunkId::of(piece);
            let (stored, _) = compress_chunk(piece, Some(3)).expect("compress");
            sink = sink.wrapping_add(u64::from(id.0[0]) + stored.len() as u64);
        }
        bytes += data.len() as u64;
    }
    std::hint::black_box(sink);
    (bytes, started.elapsed().as_secs_f64())
}

/// Flushes dirty pages so one measured run does not pay for the writeback
/// of the one before it.
fn settle() {
    let _ = Command::new("sync").status();
}

fn child(args: &[&str]) -> HashMap<String, String> {
    settle();
    let out = Command::new(env!("CARGO_BIN_EXE_strata-bench-child"))
        .args(args)
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(m: &HashMap<String, String>, k: &str) -> f64 {
    m.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Each measure is taken this many times; the fastest run counts.
const RUNS: usize = 2;

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let mib: u64 = std::env::var("STRATA_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1100 } else { 24 });
    let base = std::env::var_os("STRATA_BENCH_DIR").map(PathBuf::from);
    let work = match &base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let share = work.path().join("share");
    let (bytes, files) = generate(&share, mib);
    // Best of two runs of each measure: this machine's neighbours and ext4's
    // inode allocator (after an earlier run's clean-up) make single runs noisy.
    let (st_bytes, st_secs) = (0..RUNS)
        .map(|_| {
            settle();
            single_thread(&share)
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("runs");
    let st_mbs = st_bytes as f64 / 1e6 / st_secs;

    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    let fastest = |runs: Vec<HashMap<String, String>>| {
        runs.into_iter()
            .min_by(|a, b| num(a, "secs").total_cmp(&num(b, "secs")))
            .expect("runs")
    };
    let backups: Vec<_> = (0..RUNS)
        .map(|i| {
            let catalog = work.path().join(format!("catalog{i}.db"));
            let repo = work.path().join(format!("repo{i}"));
            let mut b = child(&["backup", &path(&catalog), &path(&repo), &path(&share)]);
            b.insert("catalog".into(), path(&catalog));
            b.insert("repo".into(), path(&repo));
            b
        })
        .collect();
    let worst_rss = |runs: &[HashMap<String, String>]| {
        runs.iter()
            .map(|r| num(r, "peak_rss_kib"))
            .fold(0.0, f64::max)
    };
    let backup_rss = worst_rss(&backups);
    let b = fastest(backups);
    let (catalog, repo) = (PathBuf::from(&b["catalog"]), PathBuf::from(&b["repo"]));
    let id = b.get("id").cloned().unwrap_or_default();
    let restores: Vec<_> = (0..RUNS)
        .map(|i| {
            let target = work.path().join(format!("restored{i}"));
            child(&[
                "restore",
                &path(&catalog),
                &path(&repo),
                &id,
                &path(&target),
            ])
        })
        .collect();
    let restore_rss = worst_rss(&restores);
    let r = fastest(restores);

    let b_mbs = num(&b, "bytes") / 1e6 / num(&b, "secs");
    let r_mbs = num(&r, "bytes") / 1e6 / num(&r, "secs");
    let repo_size = du(&repo);
    println!(
        "dataset: {} files, {:.1} MiB ({})",
        files,
        bytes as f64 / 1048576.0,
        share.display()
    );
    println!("single-thread chunk+hash+compress: {st_mbs:.1} MB/s");
    println!(
        "full backup: {b_mbs:.1} MB/s, {:.0} files/s, peak RSS {:.1} MiB, {:.2} s",
        num(&b, "files") / num(&b, "secs"),
        backup_rss / 1024.0,
        num(&b, "secs")
    );
    println!(
        "restore:     {r_mbs:.1} MB/s, {:.0} files/s, peak RSS {:.1} MiB, {:.2} s",
        num(&r, "files") / num(&r, "secs"),
        restore_rss / 1024.0,
        num(&r, "secs")
    );
    println!(
        "repository: {:.1} MiB ({:.2}x smaller than the data)",
        repo_size as f64 / 1048576.0,
        bytes as f64 / repo_size.max(1) as f64
    );
    let ratio_backup = b_mbs / st_mbs;
    let ratio_restore = r_mbs / b_mbs;
    let peak = backup_rss.max(restore_rss) / 1024.0;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "backup / single-thread = {ratio_backup:.2} (target >= 1.5: {})",
        verdict(ratio_backup >= 1.5)
    );
    println!(
        "restore / backup       = {ratio_restore:.2} (target >= 2.0: {})",
        verdict(ratio_restore >= 2.0)
    );
    println!(
        "peak RSS               = {peak:.1} MiB (target <= 256: {})",
        verdict(peak <= 256.0)
    );
    // Even the smoke run must restore what it backed up.
    assert_eq!(
        num(&r, "bytes") as u64,
        bytes,
        "restore did not restore every byte"
    );
    if std::env::var_os("STRATA_BENCH_KEEP").is_some() {
        println!("kept: {}", work.keep().display());
    }
}
