//! Backup and restore through a real NFS server (nfs-ganesha on loopback,
//! NFSv4.1, reached with strata's userspace client), against the raw
//! throughput of the export as `strata bench` measures it and against the
//! same backup and restore on a local directory.
//!
//! `cargo bench -p strata-benches --bench nfs` runs it on the foundation
//! dataset (≥ 1 GiB; `STRATA_BENCH_MIB` overrides); under `cargo test` it
//! is a smoke test on a small dataset. Needs `ganesha.nfsd` and root, like
//! the NFS tests. Targets: backup to `nfs://` ≥ 80% of the lower of (raw
//! NFS write, local backup); restore from `nfs://` ≥ 80% of the lower of
//! (raw NFS read, local restore). Every figure is the best of its runs
//! (the raw ones of two, at the start and at the end; the others of
//! [`RUNS`], local and `nfs://` alternating), so a slow minute of the
//! machine does not fall on one side only.

mod common;
#[path = "../tests/e2e/ganesha.rs"]
#[allow(dead_code)]
mod ganesha;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::{child, generate, num};
use strata_engine::bench::{self as sizing, SizingOptions};
use strata_engine::repository::objects::{Location, ObjectStore};

const RUNS: usize = 3;
const KINDS: [&str; 2] = ["local", "nfs"];

fn fastest(runs: Vec<HashMap<String, String>>) -> HashMap<String, String> {
    runs.into_iter()
        .min_by(|a, b| num(a, "secs").total_cmp(&num(b, "secs")))
        .expect("runs")
}

fn mbs(r: &HashMap<String, String>) -> f64 {
    num(r, "bytes") / 1e6 / num(r, "secs")
}

/// The export's raw figures, as an operator would measure them.
fn raw_figures(server: &ganesha::Ganesha, share: &Path, benching: bool) -> sizing::SizingReport {
    let Location::Nfs(url) = Location::parse(&server.url("raw")).expect("url") else {
        panic!("not an nfs url");
    };
    let backend: Arc<dyn ObjectStore> =
        Arc::new(strata_engine::repository::objects::NfsStore::connect(&url).expect("connect"));
    let opts = SizingOptions {
        read_sample: 64 << 20,
        cpu_sample: 32 << 20,
        write_bytes: if benching { 1024 << 20 } else { 64 << 20 },
        ..SizingOptions::default()
    };
    sizing::run(share, &backend, &opts).expect("strata bench")
}

fn main() {
    let (benching, mib) = common::dataset_mib();
    // The share, the export, the repositories and the restores.
    let work = common::Workspace::new(benching, mib * (4 + 4 * RUNS as u64) / 1024 + 2);
    let Some(server) = ganesha::Ganesha::start("the nfs benchmark", &work.path().join("export"))
    else {
        return;
    };
    let share = work.path().join("share");
    let (bytes, files) = generate(&share, mib);
    let path = |p: &Path| p.to_str().expect("utf8").to_string();

    // The machine's speed drifts from minute to minute, so each figure is
    // the best of its runs, and the runs of the two sides alternate: the
    // raw figures are measured at the start and at the end, and each local
    // backup or restore is followed by the same over `nfs://`.
    let first = raw_figures(&server, &share, benching);
    // CPU time ganesha has used so far (it runs on the same cores).
    let server_cpu = || server.pid().map_or(0.0, common::procstat::cpu_secs);
    let repo = |kind: &str, i: usize| match kind {
        "local" => path(&work.path().join(format!("repo{i}"))),
        _ => server.url(&format!("repo{i}")),
    };
    let timed = |args: &[&str]| {
        let server_before = server_cpu();
        let mut r = child(args);
        r.insert(
            "server_cpu_secs".into(),
            (server_cpu() - server_before).to_string(),
        );
        r
    };
    let mut backups: HashMap<&str, Vec<_>> = HashMap::new();
    for i in 0..RUNS {
        for kind in KINDS {
            let catalog = work.path().join(format!("{kind}-catalog{i}.db"));
            let mut b = timed(&["backup", &path(&catalog), &repo(kind, i), &path(&share)]);
            b.insert("catalog".into(), path(&catalog));
            b.insert("repo".into(), repo(kind, i));
            backups.entry(kind).or_default().push(b);
        }
    }
    let mut best_backup = HashMap::new();
    let mut rss = HashMap::new();
    for (kind, runs) in backups {
        let peak = runs
            .iter()
            .map(|r| num(r, "peak_rss_kib"))
            .fold(0.0, f64::max);
        rss.insert(kind, peak);
        best_backup.insert(kind, fastest(runs));
    }
    let mut restores: HashMap<&str, Vec<_>> = HashMap::new();
    for i in 0..RUNS {
        for kind in KINDS {
            let b = &best_backup[kind];
            let target = work.path().join(format!("{kind}-restored{i}"));
            let r = timed(&[
                "restore",
                &b["catalog"],
                &b["repo"],
                &b["id"],
                &path(&target),
            ]);
            assert_eq!(
                num(&r, "bytes") as u64,
                bytes,
                "{kind} restore did not restore every byte"
            );
            restores.entry(kind).or_default().push(r);
        }
    }
    let last = raw_figures(&server, &share, benching);
    let raw_write = first.export_write_mb_per_s.max(last.export_write_mb_per_s);
    let raw_read = first.export_read_mb_per_s.max(last.export_read_mb_per_s);

    let mut results = HashMap::new();
    let mut cpu = HashMap::new();
    for kind in KINDS {
        let b = &best_backup[kind];
        let r = fastest(restores.remove(kind).expect("restores"));
        // CPU seconds per GB: strata's own, and the server's.
        let per_gb = |m: &HashMap<String, String>, k: &str| num(m, k) / (num(m, "bytes") / 1e9);
        cpu.insert(
            kind,
            [
                (per_gb(b, "cpu_secs"), per_gb(b, "server_cpu_secs")),
                (per_gb(&r, "cpu_secs"), per_gb(&r, "server_cpu_secs")),
            ],
        );
        results.insert(kind, (mbs(b), mbs(&r)));
    }
    let (local_b, local_r) = results["local"];
    let (nfs_b, nfs_r) = results["nfs"];
    println!(
        "dataset: {files} files, {:.1} MiB; best of {RUNS} runs each",
        bytes as f64 / 1048576.0
    );
    println!(
        "raw export (strata bench, best of start and end): write {raw_write:.1} MB/s, read {raw_read:.1} MB/s; \
         create {:.2} ms, rename {:.2} ms, remove {:.2} ms, list {:.2} ms",
        first.export_latency.put_ms,
        first.export_latency.replace_ms,
        first.export_latency.delete_ms,
        first.export_latency.list_ms
    );
    println!(
        "  start: write {:.1}, read {:.1}; end: write {:.1}, read {:.1} MB/s",
        first.export_write_mb_per_s,
        first.export_read_mb_per_s,
        last.export_write_mb_per_s,
        last.export_read_mb_per_s
    );
    println!("local:  backup {local_b:.1} MB/s, restore {local_r:.1} MB/s");
    println!(
        "nfs://: backup {nfs_b:.1} MB/s, restore {nfs_r:.1} MB/s, peak RSS {:.1} MiB",
        rss["nfs"] / 1024.0
    );
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let b_floor = raw_write.min(local_b);
    let r_floor = raw_read.min(local_r);
    println!(
        "nfs backup  / min(raw write {raw_write:.1}, local backup {local_b:.1}) = {:.2} (target >= 0.80: {})",
        nfs_b / b_floor,
        verdict(nfs_b >= 0.8 * b_floor)
    );
    println!(
        "nfs restore / min(raw read {raw_read:.1}, local restore {local_r:.1}) = {:.2} (target >= 0.80: {})",
        nfs_r / r_floor,
        verdict(nfs_r >= 0.8 * r_floor)
    );
    // Both sides are CPU-bound on the same 2 cores; over `nfs://`, the
    // server and the protocol add their CPU to strata's. This bounds the
    // ratio reachable here, whatever the client does.
    for (i, what) in ["backup", "restore"].into_iter().enumerate() {
        let (local, _) = cpu["local"][i];
        let (client, server) = cpu["nfs"][i];
        println!(
            "{what} CPU per GB: local {local:.2} s; nfs:// {client:.2} s (strata) + {server:.2} s (server) \
             = at most {:.2} of the local {what}'s speed with both on these cores",
            local / (client + server)
        );
    }
    if std::env::var_os("STRATA_BENCH_KEEP").is_some() {
        println!("kept: {}", work.keep().display());
    }
}
