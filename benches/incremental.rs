//! Incremental backups: what a nightly run of a mostly unchanged share costs.
//!
//! On the mixed dataset of the throughput benchmark and on a tree of many
//! small files: a no-change incremental, five chained incrementals each
//! after rewriting 1% of the files, a restore of the fifth, and a restore of
//! an equivalent full backup (the same tree, backed up into a fresh
//! repository). Separately: one large file with 4 KiB inserted at 8 places,
//! and the new bytes its incremental stores.
//!
//! `cargo bench -p strata-benches --bench incremental` runs the stated sizes
//! (1100 MiB mixed, 100,000 small files, a 1 GiB file); under `cargo test` it
//! runs small ones as a smoke test that still checks every restore.
//! `STRATA_BENCH_MIB`, `STRATA_BENCH_SMALL_FILES`, `STRATA_BENCH_DIR` override.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{child, files_below, generate, noise, num, text};

/// Files changed within this long before a backup started are re-read by
/// the next incremental (the engine's racy window, plus a margin).
const RACY_WAIT: Duration = Duration::from_millis(2100);
const RUNS: usize = 2;
const ROUNDS: usize = 5;

type Run = HashMap<String, String>;

struct Repo {
    catalog: String,
    repo: String,
}

impl Repo {
    fn new(work: &Path, name: &str) -> Repo {
        let p = |s: &str| work.join(format!("{name}-{s}")).display().to_string();
        Repo {
            catalog: p("catalog.db"),
            repo: p("repo"),
        }
    }

    fn backup(&self, share: &Path, incremental: bool) -> Run {
        let share = share.display().to_string();
        let mut args = vec!["backup", &self.catalog, &self.repo, &share];
        if incremental {
            args.push("incremental");
        }
        child(&args)
    }

    fn restore(&self, id: &str, target: &Path) -> Run {
        let target = target.display().to_string();
        let r = child(&["restore", &self.catalog, &self.repo, id, &target]);
        fs::remove_dir_all(&target).expect("clean restore");
        r
    }

    fn idle(&self) -> Run {
        child(&["idle", &self.catalog, &self.repo])
    }
}

fn fastest(runs: Vec<Run>) -> (Run, f64) {
    let rss = runs
        .iter()
        .map(|r| num(r, "peak_rss_kib"))
        .fold(0.0, f64::max);
    let best = runs
        .into_iter()
        .min_by(|a, b| num(a, "secs").total_cmp(&num(b, "secs")))
        .expect("runs");
    (best, rss)
}

/// `count` small text files of 0.5–8 KiB, 100 to a directory.
fn small_files(root: &Path, count: u64) -> u64 {
    let mut bytes = 0;
    for i in 0..count {
        let dir = root.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&dir).expect("mkdir");
        }
        let len = 512 + (i * 2_654_435_761 % 7680) as usize;
        fs::write(dir.join(format!("f{i}.txt")), text(len, i)).expect("write");
        bytes += len as u64;
    }
    bytes
}

/// Rewrites 1% of `files` (same size, new content); returns the bytes changed.
fn change_one_percent(files: &[PathBuf], round: usize) -> u64 {
    let mut changed = 0;
    for (i, p) in files.iter().enumerate() {
        if !(i + round * 37).is_multiple_of(100) {
            continue;
        }
        let len = fs::metadata(p).expect("stat").len() as usize;
        let data = text(len, (round * 1_000_003 + i) as u64);
        fs::write(p, data).expect("rewrite");
        changed += len as u64;
    }
    changed
}

/// The chain scenario on `share`; prints its lines and returns the key figures.
fn chain(work: &Path, name: &str, share: &Path, benching: bool) -> (f64, f64, f64, f64) {
    let files = files_below(share);
    let repo = Repo::new(work, name);
    let full = repo.backup(share, false);
    let (nochange, nochange_rss) = fastest((0..RUNS).map(|_| repo.backup(share, true)).collect());
    assert_eq!(
        num(&nochange, "read"),
        0.0,
        "{name}: no-change incremental read data"
    );
    assert_eq!(
        num(&nochange, "changed"),
        0.0,
        "{name}: no-change incremental recorded entries"
    );
    let idle_rss = num(&repo.idle(), "peak_rss_kib");
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let changed = change_one_percent(&files, round);
        if benching {
            // Nightly backups run long after the last change; do not let the
            // racy window re-read this round's files in the next one.
            std::thread::sleep(RACY_WAIT);
        }
        let r = repo.backup(share, true);
        assert!(
            num(&r, "read") >= changed as f64,
            "{name}: changed files not read"
        );
        rounds.push(r);
    }
    let last = rounds
        .last()
        .and_then(|r| r.get("id"))
        .cloned()
        .expect("id");
    let target = work.join(format!("{name}-restored"));
    let (inc_restore, inc_rss) = fastest((0..RUNS).map(|_| repo.restore(&last, &target)).collect());
    let fresh = Repo::new(work, &format!("{name}-equivalent"));
    let equivalent = fresh.backup(share, false);
    let eq_id = equivalent.get("id").cloned().expect("id");
    let (full_restore, _) = fastest((0..RUNS).map(|_| fresh.restore(&eq_id, &target)).collect());
    assert_eq!(
        num(&inc_restore, "bytes"),
        num(&full_restore, "bytes"),
        "{name}: the incremental chain restores other bytes than the full backup"
    );

    let secs = |r: &Run| num(r, "secs");
    println!(
        "[{name}] {} files, {:.1} MiB; full backup {:.2} s",
        files.len(),
        num(&full, "bytes") / 1048576.0,
        secs(&full)
    );
    println!(
        "[{name}] no-change incremental: {:.3} s ({:.0} files/s), peak RSS {:.1} MiB \
         ({:.1} MiB above the idle process's {:.1} MiB)",
        secs(&nochange),
        files.len() as f64 / secs(&nochange),
        nochange_rss / 1024.0,
        (nochange_rss - idle_rss) / 1024.0,
        idle_rss / 1024.0
    );
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "[{name}] incremental {} after changing 1% of the files: {:.3} s, read {:.1} MiB, \
             new {:.1} MiB, {} entries, {} tombstones",
            i + 1,
            secs(r),
            num(r, "read") / 1048576.0,
            num(r, "new") / 1048576.0,
            num(r, "changed"),
            num(r, "deleted")
        );
    }
    println!(
        "[{name}] restore of incremental {ROUNDS}: {:.2} s ({:.1} MB/s, peak RSS {:.1} MiB); \
         of an equivalent full backup: {:.2} s ({:.1} MB/s)",
        secs(&inc_restore),
        num(&inc_restore, "bytes") / 1e6 / secs(&inc_restore),
        inc_rss / 1024.0,
        secs(&full_restore),
        num(&full_restore, "bytes") / 1e6 / secs(&full_restore)
    );
    (
        secs(&nochange),
        (nochange_rss - idle_rss) / 1024.0,
        secs(&inc_restore),
        secs(&full_restore),
    )
}

/// A file of `mib` MiB of noise; returns its path.
fn big_file(root: &Path, mib: u64) -> PathBuf {
    fs::create_dir_all(root).expect("mkdir");
    let path = root.join("disk.img");
    let mut out = fs::File::create(&path).expect("create");
    let mut piece = vec![0u8; 8 << 20];
    for i in 0..mib.div_ceil(8) {
        noise(&mut piece, 1_000_000 + i);
        out.write_all(&piece).expect("write");
    }
    path
}

/// Rewrites `path` with 4 KiB of new bytes inserted at 8 places.
fn insert_eight(path: &Path) {
    let len = fs::metadata(path).expect("stat").len();
    let tmp = path.with_extension("new");
    let mut input = fs::File::open(path).expect("open");
    let mut out = fs::File::create(&tmp).expect("create");
    let mut at = 0u64;
    let mut insert = vec![0u8; 4096];
    for k in 1..=8u64 {
        let next = len * k / 9;
        std::io::copy(&mut (&mut input).take(next - at), &mut out).expect("copy");
        noise(&mut insert, 77 + k);
        out.write_all(&insert).expect("insert");
        at = next;
    }
    std::io::copy(&mut input, &mut out).expect("copy rest");
    fs::rename(&tmp, path).expect("rename");
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let env_num = |k: &str, bench: u64, smoke: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if benching { bench } else { smoke })
    };
    let mib = env_num("STRATA_BENCH_MIB", 1100, 24);
    let small = env_num("STRATA_BENCH_SMALL_FILES", 100_000, 2_000);
    let big_mib = if benching { 1024 } else { 64 };
    // Each dataset, its repositories and restores.
    let work = common::Workspace::new(benching, (mib + big_mib) * 6 / 1024 + 4);
    let w = work.path();
    generate(&w.join("mixed"), mib);
    small_files(&w.join("small"), small);
    let big = big_file(&w.join("big"), big_mib);
    // Let every file age past the racy window, as a share does between nights.
    std::thread::sleep(RACY_WAIT);

    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let (_, _, mixed_inc, mixed_full) = chain(w, "mixed", &w.join("mixed"), benching);
    let (small_secs, small_rss, small_inc, small_full) =
        chain(w, "small", &w.join("small"), benching);

    let repo = Repo::new(w, "big");
    repo.backup(&w.join("big"), false);
    insert_eight(&big);
    let edited = repo.backup(&w.join("big"), true);
    let new_mib = num(&edited, "new") / 1048576.0;
    println!(
        "[big] {big_mib} MiB file, 4 KiB inserted at 8 places: incremental {:.2} s, \
         {new_mib:.1} MiB new (stored {:.1} MiB)",
        num(&edited, "secs"),
        num(&edited, "stored") / 1048576.0
    );

    println!(
        "no-change incremental of {small} small files = {small_secs:.3} s (target < 1 s: {})",
        verdict(small_secs < 1.0)
    );
    println!(
        "its peak RSS above idle = {small_rss:.1} MiB (target <= 64: {})",
        verdict(small_rss <= 64.0)
    );
    println!(
        "new bytes after 8 inserts = {new_mib:.1} MiB (target < 64: {})",
        verdict(new_mib < 64.0)
    );
    for (name, inc, full) in [
        ("mixed", mixed_inc, mixed_full),
        ("small", small_inc, small_full),
    ] {
        println!(
            "[{name}] restore of incremental {ROUNDS} / restore of the equivalent full = {:.2} \
             (target <= 1: {})",
            inc / full,
            verdict(inc <= full)
        );
    }
    // Whatever the size, FastCDC must realign after an insert.
    assert!(new_mib < 64.0, "an 8-place insert stored {new_mib:.1} MiB");
}
