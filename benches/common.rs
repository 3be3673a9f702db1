//! Shared by the benchmarks: dataset generators and measured child runs.
// Each benchmark compiles this module and uses part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

#[path = "procstat.rs"]
pub mod procstat;

pub fn noise(out: &mut [u8], seed: u64) {
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(out);
}

/// Text-like data that compresses about 3-4x with zstd -3.
pub fn text(len: usize, seed: u64) -> Vec<u8> {
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
pub fn generate(root: &Path, total_mib: u64) -> (u64, u64) {
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

/// Whether this is a real benchmark run (`cargo bench`), and the dataset
/// size in MiB: `STRATA_BENCH_MIB`, else 1100 when benching and 24 as a
/// smoke test under `cargo test`.
pub fn dataset_mib() -> (bool, u64) {
    let benching = std::env::args().any(|a| a == "--bench");
    let mib = std::env::var("STRATA_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1100 } else { 24 });
    (benching, mib)
}

/// A number from the environment variable `key`, else `default`.
pub fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Flushes dirty pages so one measured run does not pay for the writeback
/// of the one before it.
pub fn settle() {
    let _ = Command::new("sync").status();
}

pub fn child(args: &[&str]) -> HashMap<String, String> {
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

pub fn num(m: &HashMap<String, String>, k: &str) -> f64 {
    m.get(k).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

pub fn du(dir: &Path) -> u64 {
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

/// Every regular file below `root`, sorted.
pub fn files_below(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("ls").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Where a benchmark puts its dataset, repositories and restores.
///
/// A real run (`cargo bench`) as root, with `mkfs.ext4` at hand, gets a
/// fresh ext4 file system of its own on a loop device, like a new share
/// (without a journal, like the development machines' root file system).
/// Otherwise (or with `STRATA_BENCH_FRESH_FS=0`) a temporary directory,
/// under `STRATA_BENCH_DIR` if set. Why: on a file system where thousands
/// of files were deleted in the last minutes (by tests, by other benches),
/// ext4 without a journal skips each recently freed inode when it creates
/// a file, and a restore (which creates every file) then spends half its
/// CPU in the kernel's inode search; how much varies from run to run.
pub struct Workspace {
    // Declared first: dropped (unmounted) before `dir` is removed.
    fresh: Option<FreshFs>,
    dir: tempfile::TempDir,
}

impl Workspace {
    /// `gib`: the space the benchmark needs (the image is sparse).
    pub fn new(benching: bool, gib: u64) -> Workspace {
        let dir = match std::env::var_os("STRATA_BENCH_DIR") {
            Some(b) => tempfile::tempdir_in(b),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        let wanted = benching
            && std::env::var("STRATA_BENCH_FRESH_FS").map_or(true, |v| v != "0")
            && rustix::process::geteuid().is_root();
        let fresh = if wanted {
            fresh_fs(dir.path(), gib)
        } else {
            None
        };
        match &fresh {
            Some(f) => println!(
                "workspace: a fresh ext4 file system at {}",
                f.mount.display()
            ),
            None => println!("workspace: {}", dir.path().display()),
        }
        Workspace { fresh, dir }
    }

    pub fn path(&self) -> &Path {
        self.fresh.as_ref().map_or(self.dir.path(), |f| &f.mount)
    }

    /// Keeps the files (and the mount) for profiling; returns where they are.
    pub fn keep(self) -> std::path::PathBuf {
        let kept = self.path().to_path_buf();
        let Workspace { fresh, dir } = self;
        // Left mounted: the caller profiles it, then unmounts it.
        std::mem::forget(fresh);
        let _ = dir.keep();
        kept
    }
}

/// Makes and mounts an ext4 image of `gib` GiB under `dir`; `None` (with a
/// note) if any step fails. The loop device does direct I/O to the image:
/// its writes are not copied once more through the page cache, so an fsync
/// costs about what it costs on the machine's own disk.
fn fresh_fs(dir: &Path, gib: u64) -> Option<FreshFs> {
    let image = dir.join("fs.img");
    let mount = dir.join("fs");
    let run = |cmd: &mut Command| {
        cmd.stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let made = fs::File::create(&image)
        .and_then(|f| f.set_len(gib << 30))
        .is_ok()
        && fs::create_dir(&mount).is_ok()
        // No journal, like the root file system of the machines this runs on.
        && run(Command::new("mkfs.ext4").args(["-q", "-F", "-O", "^has_journal"]).arg(&image));
    let device = made
        .then(|| {
            Command::new("losetup")
                .args(["--find", "--show", "--direct-io=on"])
                .arg(&image)
                .output()
                .ok()
                .filter(|o| o.status.success())
        })
        .flatten()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(device) = device else {
        println!("workspace: could not make a fresh ext4 file system; using a directory");
        return None;
    };
    if !run(Command::new("mount").arg(&device).arg(&mount)) {
        let _ = Command::new("losetup").arg("-d").arg(&device).status();
        println!("workspace: could not mount a fresh ext4 file system; using a directory");
        return None;
    }
    Some(FreshFs { device, mount })
}

/// A mounted fresh file system and its loop device.
struct FreshFs {
    device: String,
    mount: std::path::PathBuf,
}

impl Drop for FreshFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
    }
}

/// Chunk + hash + compress `data` on the calling thread, as a backup does
/// for new bytes (zstd level 3), with the engine's own cutter (the fastest
/// there is of these cut points); returns the stored bytes.
pub fn chunk_hash_compress(data: &[u8]) -> u64 {
    let params = strata_format::config::ChunkerParams::default();
    let mut stored = 0u64;
    let mut at = 0;
    for len in strata_engine::chunker::cut_slice(data, &params) {
        let piece = &data[at..at + len];
        at += len;
        std::hint::black_box(strata_format::ChunkId::of(piece));
        let (bytes, _) = strata_format::pack::compress_chunk(piece, Some(3)).expect("compress");
        stored += bytes.len() as u64;
    }
    stored
}

/// Empties the page cache (root only, and only when benching: a smoke run
/// shares the machine with tests); whether it did.
pub fn drop_caches() -> bool {
    settle();
    std::env::args().any(|a| a == "--bench") && fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// One finished command: wall time and peak RSS of its process, and its
/// output.
pub struct Measured {
    pub secs: f64,
    pub peak_rss_kib: u64,
    pub stdout: String,
}

/// Runs `cmd` to completion and measures it; panics with its stderr if it
/// fails. The peak RSS is the kernel's high-water mark, read every few
/// milliseconds while the process lives (it only grows, so a read misses
/// at most the last few milliseconds); the wall time ends when the process
/// is reaped.
pub fn measure(cmd: &mut Command) -> Measured {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut pipe| {
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = pipe.read_to_string(&mut out);
            out
        })
    })
    .collect();
    // The end is taken when the process is reaped, by a thread that waits
    // for nothing else: a poll every few milliseconds would add up to one
    // period to every command's time (and not to the primitives measured
    // in-process beside them).
    let (ended, end) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let secs = started.elapsed().as_secs_f64();
        let _ = ended.send(());
        (status, secs)
    });
    let mut peak = 0;
    loop {
        peak = procstat::status_kib(pid, "VmHWM:").unwrap_or(0).max(peak);
        match end.recv_timeout(std::time::Duration::from_millis(5)) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    let (status, secs) = waiter.join().expect("waiter");
    let status = status.expect("wait");
    let mut outputs = readers.into_iter().map(|r| r.join().unwrap_or_default());
    let stdout = outputs.next().unwrap_or_default();
    let stderr = outputs.next().unwrap_or_default();
    assert!(status.success(), "{cmd:?} failed ({status}): {stderr}");
    Measured {
        secs,
        peak_rss_kib: peak,
        stdout,
    }
}
