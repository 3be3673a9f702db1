//! strata beside restic on the same data in one run: a tree of real text
//! files (at least 60,000 files and 1 GiB when benching) and the same tree
//! as one tar. Phases: full backup (cold and warm page cache), no-change
//! backup, incremental after a seeded mutation (1% of files edited, 0.2%
//! deleted and added; 8 short inserts into the tar), and restore into the
//! benchmark's fresh file system (cold cache). Each figure is the best of
//! `RUNS`, the tools alternating (each run starting with the next one); a
//! ratio is strata's time over restic's.
//!
//! Beside them, the same run's primitive limits: chunk + hash + compress
//! on two threads (in memory), a cold sequential read, and a bare parallel
//! `lstat` walk. restic is Debian's package, installed when this runs as
//! root and it is missing; without it, strata's figures stand alone.
//! `STRATA_PEER_FILES` and `STRATA_PEER_MIB` set the tree's minimum size.

mod common;
mod peer_data;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{drop_caches, measure, Measured};
use rayon::prelude::*;

#[derive(Clone, Copy, PartialEq)]
enum Tool {
    Strata,
    /// strata built from an earlier commit (`STRATA_PEER_BASELINE`: its
    /// `strata-bench-child`), for before/after figures from one run.
    Baseline,
    Restic,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Strata => "strata",
            Tool::Baseline => "strata-before",
            Tool::Restic => "restic",
        }
    }

    fn strata_exe(self) -> Option<PathBuf> {
        match self {
            Tool::Strata => Some(PathBuf::from(env!("CARGO_BIN_EXE_strata-bench-child"))),
            Tool::Baseline => std::env::var_os("STRATA_PEER_BASELINE").map(PathBuf::from),
            Tool::Restic => None,
        }
    }
}

/// One tool's repository (and, for strata, its catalog) in a directory.
struct Repo {
    tool: Tool,
    dir: PathBuf,
    last_id: String,
}

impl Repo {
    fn new(tool: Tool, dir: PathBuf) -> Repo {
        fs::create_dir_all(&dir).expect("mkdir");
        if tool == Tool::Restic {
            let init = restic(&dir)
                .args(["init", "--repository-version", "2"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(init, "restic init failed");
        }
        Repo {
            tool,
            dir,
            last_id: String::new(),
        }
    }

    fn backup(&mut self, source: &Path, incremental: bool) -> Measured {
        let run = match self.tool.strata_exe() {
            Some(exe) => {
                let mut cmd = strata(&exe, &self.dir, "backup");
                cmd.arg(source);
                if incremental {
                    cmd.arg("incremental");
                }
                measure(&mut cmd)
            }
            None => measure(
                restic(&self.dir)
                    .args(["backup", "--host", "bench"])
                    .arg(source),
            ),
        };
        if let Some(id) = run.stdout.lines().find_map(|l| l.strip_prefix("id=")) {
            self.last_id = id.to_string();
        }
        run
    }

    fn restore(&self, target: &Path) -> Measured {
        fs::create_dir_all(target).expect("mkdir");
        match self.tool.strata_exe() {
            Some(exe) => {
                let mut cmd = strata(&exe, &self.dir, "restore");
                measure(cmd.arg(&self.last_id).arg(target))
            }
            None => measure(
                restic(&self.dir)
                    .args(["restore", "latest", "--target"])
                    .arg(target),
            ),
        }
    }
}

fn strata(exe: &Path, dir: &Path, op: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg(op)
        .arg(dir.join("catalog.db"))
        .arg(dir.join("repo"));
    cmd
}

fn restic(dir: &Path) -> Command {
    let mut cmd = Command::new("restic");
    cmd.arg("-r")
        .arg(dir.join("repo"))
        .arg("--quiet")
        .env("RESTIC_PASSWORD", "bench")
        .env("RESTIC_CACHE_DIR", dir.join("cache"));
    cmd
}

/// restic if it is on the path, or once installed from Debian's packages
/// (as root); `None`, with the reason, otherwise.
fn find_restic() -> Result<String, String> {
    let version = || {
        Command::new("restic")
            .arg("version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let Some(v) = version() {
        return Ok(v);
    }
    if !rustix::process::geteuid().is_root() {
        return Err("restic is not installed and this is not root".into());
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "restic"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match (installed, version()) {
        (true, Some(v)) => Ok(v),
        _ => Err("restic could not be installed from Debian's packages".into()),
    }
}

/// The best (shortest) of several runs, and the highest peak RSS among them.
#[derive(Clone, Copy, Default)]
struct Best {
    secs: f64,
    rss_kib: u64,
}

impl Best {
    fn add(&mut self, run: &Measured) {
        if self.secs == 0.0 || run.secs < self.secs {
            self.secs = run.secs;
        }
        self.rss_kib = self.rss_kib.max(run.peak_rss_kib);
    }
}

/// Every figure of the run: (dataset, phase, tool) → best.
type Figures = BTreeMap<(String, String, &'static str), Best>;

struct Dataset {
    name: &'static str,
    /// What is backed up: a directory.
    source: PathBuf,
    /// A tree of many files: its restores are kept to the end, because on
    /// ext4 without a journal a file system where many files were just
    /// deleted creates files more slowly (see `common::Workspace`).
    many_files: bool,
}

fn run_dataset(
    work: &Path,
    data: &Dataset,
    tools: &[Tool],
    runs: usize,
    mutate: &dyn Fn(),
    figures: &mut Figures,
) {
    let mut record = |phase: &str, tool: Tool, run: &Measured| {
        println!(
            "{} / {phase} / {}: {:.3} s, peak {:.0} MiB",
            data.name,
            tool.name(),
            run.secs,
            run.peak_rss_kib as f64 / 1024.0
        );
        figures
            .entry((data.name.to_string(), phase.to_string(), tool.name()))
            .or_default()
            .add(run);
    };
    let mut kept: Vec<Repo> = Vec::new();
    for r in 0..runs {
        // Each run starts with the next tool, so no tool always follows
        // the same one (the order of the kept repositories, and so of the
        // later phases, rotates with it).
        let order = (0..tools.len()).map(|k| tools[(k + r) % tools.len()]);
        for tool in order {
            for cold in [true, false] {
                let cache = if cold { "cold" } else { "warm" };
                let dir = work.join(format!("repos/{}-{}-{r}-{cache}", data.name, tool.name()));
                let mut repo = Repo::new(tool, dir);
                if cold {
                    drop_caches();
                }
                record(
                    &format!("full, {cache}"),
                    tool,
                    &repo.backup(&data.source, false),
                );
                match cold {
                    // Only the warm runs' repositories go on; the space
                    // of the others is needed.
                    true => fs::remove_dir_all(&repo.dir).expect("remove repository"),
                    false => kept.push(repo),
                }
            }
        }
    }
    for repo in &mut kept {
        let run = repo.backup(&data.source, true);
        record("no change", repo.tool, &run);
    }
    mutate();
    for repo in &mut kept {
        let run = repo.backup(&data.source, true);
        record("incremental", repo.tool, &run);
    }
    for (i, repo) in kept.iter().enumerate() {
        let target = work.join(format!("restores/{}-{}-{i}", data.name, repo.tool.name()));
        drop_caches();
        let run = repo.restore(&target);
        let restored = common::du(&target);
        assert_eq!(
            restored,
            common::du(&data.source),
            "{} restored {restored} bytes of {}",
            repo.tool.name(),
            data.name
        );
        record("restore, cold", repo.tool, &run);
        if !data.many_files {
            // One large file: deleting it costs the next restore nothing.
            fs::remove_dir_all(&target).expect("remove restore");
        }
    }
}

/// Bare parallel `lstat` walk on two threads: the least a backup that
/// looks at every path must do.
fn lstat_walk(root: &Path) -> (u64, f64) {
    let count = std::sync::atomic::AtomicU64::new(0);
    fn walk<'s>(s: &rayon::Scope<'s>, dir: PathBuf, count: &'s std::sync::atomic::AtomicU64) {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if meta.is_dir() {
                s.spawn(move |s| walk(s, path, count));
            }
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let started = Instant::now();
    pool.scope(|s| walk(s, root.to_path_buf(), &count));
    (count.into_inner(), started.elapsed().as_secs_f64())
}

/// Chunk + hash + compress on two threads over `data` held in memory.
fn two_thread_chc(data: &[u8]) -> f64 {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    let started = Instant::now();
    let half = data.len().div_ceil(2).max(1);
    let stored: u64 = pool.install(|| data.par_chunks(half).map(common::chunk_hash_compress).sum());
    std::hint::black_box(stored);
    data.len() as f64 / 1e6 / started.elapsed().as_secs_f64()
}

/// Sequential read of `file` in 4 MiB pieces after the cache is dropped.
fn cold_read(file: &Path) -> (f64, bool) {
    use std::io::Read;
    let cold = drop_caches();
    let started = Instant::now();
    let mut f = fs::File::open(file).expect("open");
    let mut buf = vec![0u8; 4 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    (total as f64 / 1e6 / started.elapsed().as_secs_f64(), cold)
}

fn main() {
    let (benching, _) = common::dataset_mib();
    let env_u64 = common::env_u64;
    let (min_files, min_mib) = match benching {
        true => (
            env_u64("STRATA_PEER_FILES", 60_000),
            env_u64("STRATA_PEER_MIB", 1024),
        ),
        false => (
            env_u64("STRATA_PEER_FILES", 400),
            env_u64("STRATA_PEER_MIB", 4),
        ),
    };
    let runs = if benching { 3 } else { 1 };
    // The tree and its restores, the tar, and the warm runs' repositories.
    let work = common::Workspace::new(benching, 40 * (min_mib >> 10) + 8);
    let root = work.path();
    let mut tools = vec![Tool::Strata];
    if let Some(exe) = Tool::Baseline.strata_exe() {
        println!("baseline: {}", exe.display());
        tools.push(Tool::Baseline);
    }
    match find_restic() {
        Ok(version) => {
            println!("peer: {version}");
            tools.push(Tool::Restic);
        }
        Err(why) => println!("peer: none ({why}); strata's figures only"),
    }
    let tree = root.join("tree/share");
    let size = peer_data::source_tree(&tree, min_files, min_mib << 20, benching);
    let tar_dir = root.join("tar/share");
    let tar_file = tar_dir.join("tree.tar");
    peer_data::tar(&tree, &tar_file);
    let tar_bytes = fs::metadata(&tar_file).expect("tar").len();
    println!(
        "datasets: a tree of {} files, {:.1} MiB; the same tree as one tar of {:.1} MiB",
        size.files,
        size.bytes as f64 / 1048576.0,
        tar_bytes as f64 / 1048576.0
    );

    // Primitive limits, in the same run.
    let (read_mbs, was_cold) = cold_read(&tar_file);
    let in_memory = fs::read(&tar_file).expect("read tar");
    let chc_mbs = (0..runs)
        .map(|_| two_thread_chc(&in_memory))
        .fold(0.0, f64::max);
    drop(in_memory);
    let (walked, walk_secs) = (0..runs)
        .map(|_| lstat_walk(&tree))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .expect("runs");

    let mut figures = Figures::new();
    let tree_set = Dataset {
        name: "many files",
        source: tree.clone(),
        many_files: true,
    };
    let mutate_tree = || {
        let m = peer_data::mutate_tree(&tree, 19);
        println!("tree mutation: {m:?}");
    };
    run_dataset(root, &tree_set, &tools, runs, &mutate_tree, &mut figures);
    let tar_set = Dataset {
        name: "one large file",
        source: tar_dir.clone(),
        many_files: false,
    };
    let mutate_tar = || peer_data::insert_into(&tar_file, 8, 19);
    run_dataset(root, &tar_set, &tools, runs, &mutate_tar, &mut figures);

    report(&figures, &tools);
    println!(
        "primitives: chunk+hash+compress on 2 threads {chc_mbs:.0} MB/s; {} sequential read {read_mbs:.0} MB/s; \
         parallel lstat walk {walked} paths in {walk_secs:.3} s ({:.0} paths/s)",
        if was_cold { "cold" } else { "warm (not root)" },
        walked as f64 / walk_secs
    );
    let get = |set: &str, phase: &str| {
        figures
            .get(&(set.to_string(), phase.to_string(), "strata"))
            .copied()
            .unwrap_or_default()
    };
    let large_full = tar_bytes as f64 / 1e6 / get("one large file", "full, warm").secs;
    let no_change = get("many files", "no change").secs;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "one large file, full (warm): {large_full:.0} MB/s = {:.2} of the 2-thread primitive (target >= 0.75: {})",
        large_full / chc_mbs,
        verdict(large_full / chc_mbs >= 0.75)
    );
    println!(
        "many files, no change: {no_change:.3} s = {:.2}x the lstat walk (target <= 2: {})",
        no_change / walk_secs,
        verdict(no_change / walk_secs <= 2.0)
    );
}

/// Prints the ratio table: each phase's best times, strata ÷ restic, and
/// the target where the issue set one.
fn report(figures: &Figures, tools: &[Tool]) {
    let targets: &[(&str, &str, f64)] = &[
        ("many files", "full, cold", 0.5),
        ("many files", "full, warm", 0.5),
        ("one large file", "full, cold", 0.5),
        ("one large file", "full, warm", 0.5),
        ("one large file", "incremental", 0.4),
        ("one large file", "restore, cold", 0.5),
    ];
    let before = tools.contains(&Tool::Baseline);
    let extra = if before {
        " strata-before s | peak MiB |"
    } else {
        ""
    };
    println!(
        "| dataset | phase | strata s | peak MiB |{extra} restic s | peak MiB | ratio | target |"
    );
    println!(
        "|---|---|---|---|{}---|---|---|---|",
        if before { "---|---|" } else { "" }
    );
    let mut keys: Vec<(String, String)> = figures
        .keys()
        .map(|(d, p, _)| (d.clone(), p.clone()))
        .collect();
    keys.dedup();
    for (set, phase) in keys {
        let of = |tool: &'static str| figures.get(&(set.clone(), phase.clone(), tool)).copied();
        let s = of("strata").unwrap_or_default();
        let r = of("restic");
        let cell = |b: Option<Best>| {
            b.map_or("—".to_string(), |b| {
                format!("{:.2} | {:.0}", b.secs, b.rss_kib as f64 / 1024.0)
            })
        };
        let ratio = r.map(|r| s.secs / r.secs);
        let target = targets
            .iter()
            .find(|(d, p, _)| *d == set && *p == phase)
            .map(|t| t.2);
        let target_cell = match (target, ratio) {
            (Some(t), Some(x)) => format!("≤ {t} ({})", if x <= t { "met" } else { "MISSED" }),
            (Some(t), None) => format!("≤ {t}"),
            (None, _) => String::new(),
        };
        let baseline = match before {
            true => format!(" {} |", cell(of("strata-before"))),
            false => String::new(),
        };
        println!(
            "| {set} | {phase} | {} |{baseline} {} | {} | {target_cell} |",
            cell(Some(s)),
            cell(r),
            ratio.map_or("—".to_string(), |x| format!("{x:.2}")),
        );
    }
    if !tools.contains(&Tool::Restic) {
        println!("(no peer in this run)");
    }
    let rss = figures
        .get(&(
            "many files".to_string(),
            "restore, cold".to_string(),
            "strata",
        ))
        .map_or(0.0, |b| b.rss_kib as f64 / 1024.0);
    println!(
        "many files, restore peak RSS: {rss:.0} MiB (target <= 96: {})",
        if rss <= 96.0 { "met" } else { "MISSED" }
    );
}
