//! Backup and restore to an S3 bucket on loopback (moto's server), against
//! the same backup and restore on a local directory, in the same run.
//!
//! `cargo bench -p strata-benches --bench s3` runs it on the foundation
//! dataset (≥ 1 GiB; `STRATA_BENCH_MIB` overrides); under `cargo test` it
//! is a smoke test on a small dataset. Needs the moto server `tests/run`
//! installs. Target: backup and restore through `s3://` ≥ 0.8× the local
//! ones. Every figure is the best of [`RUNS`] runs, local and `s3://`
//! alternating, so a slow minute of the machine does not fall on one side
//! only; the server's CPU time is reported beside strata's, since both
//! run on the same cores.

mod common;
#[path = "../tests/e2e/s3_server.rs"]
#[allow(dead_code)]
mod s3_server;

use std::collections::HashMap;
use std::path::Path;

use common::{child, generate, num};
use s3_server::{Kind, S3Server};

const RUNS: usize = 3;
const KINDS: [&str; 2] = ["local", "s3"];

type Run = HashMap<String, String>;

fn fastest(runs: Vec<Run>) -> Run {
    runs.into_iter()
        .min_by(|a, b| num(a, "secs").total_cmp(&num(b, "secs")))
        .expect("runs")
}

fn mbs(r: &Run) -> f64 {
    num(r, "bytes") / 1e6 / num(r, "secs")
}

fn main() {
    let (benching, mib) = common::dataset_mib();
    let work = common::Workspace::new(benching, mib * (2 + 2 * RUNS as u64) / 1024 + 2);
    let Some(server) = S3Server::start("the s3 benchmark", Kind::Moto) else {
        return;
    };
    // The children reach the bucket with the server's keys, as an
    // operator's processes would through the environment.
    for (k, v) in server.env() {
        std::env::set_var(k, v);
    }
    let share = work.path().join("share");
    let (bytes, files) = generate(&share, mib);
    let path = |p: &Path| p.to_str().expect("utf8").to_string();
    let server_cpu = || common::procstat::cpu_secs(server.pid());
    let repo = |kind: &str, i: usize| match kind {
        "local" => path(&work.path().join(format!("repo{i}"))),
        _ => server.url(&format!("repo{i}")),
    };
    let timed = |args: &[&str]| {
        let before = server_cpu();
        let mut r = child(args);
        r.insert(
            "server_cpu_secs".into(),
            (server_cpu() - before).to_string(),
        );
        r
    };

    let mut backups: HashMap<&str, Vec<Run>> = HashMap::new();
    for i in 0..RUNS {
        for kind in KINDS {
            let catalog = path(&work.path().join(format!("{kind}-catalog{i}.db")));
            let mut b = timed(&["backup", &catalog, &repo(kind, i), &path(&share)]);
            b.insert("catalog".into(), catalog);
            b.insert("repo".into(), repo(kind, i));
            backups.entry(kind).or_default().push(b);
        }
    }
    let mut rss = HashMap::new();
    let mut best_backup = HashMap::new();
    for (kind, runs) in backups {
        let peak = runs
            .iter()
            .map(|r| num(r, "peak_rss_kib"))
            .fold(0.0, f64::max);
        rss.insert(kind, peak);
        best_backup.insert(kind, fastest(runs));
    }
    let mut restores: HashMap<&str, Vec<Run>> = HashMap::new();
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
                "{kind} restore missed bytes"
            );
            std::fs::remove_dir_all(&target).expect("clean restore");
            restores.entry(kind).or_default().push(r);
        }
    }

    println!(
        "dataset: {files} files, {:.1} MiB; best of {RUNS} runs each",
        bytes as f64 / 1048576.0
    );
    let mut figures = HashMap::new();
    let mut cpu = HashMap::new();
    for kind in KINDS {
        let b = &best_backup[kind];
        let r = fastest(restores.remove(kind).expect("restores"));
        let per_gb = |m: &Run, k: &str| num(m, k) / (num(m, "bytes") / 1e9);
        println!(
            "{kind:>5}: backup {:.1} MB/s ({:.0} files/s), restore {:.1} MB/s, peak RSS {:.1} MiB; \
             CPU per GB: backup {:.2} s + server {:.2} s, restore {:.2} s + server {:.2} s",
            mbs(b),
            files as f64 / num(b, "secs"),
            mbs(&r),
            rss[kind] / 1024.0,
            per_gb(b, "cpu_secs"),
            per_gb(b, "server_cpu_secs"),
            per_gb(&r, "cpu_secs"),
            per_gb(&r, "server_cpu_secs"),
        );
        figures.insert(kind, (mbs(b), mbs(&r)));
        cpu.insert(
            kind,
            [
                per_gb(b, "cpu_secs") + per_gb(b, "server_cpu_secs"),
                per_gb(&r, "cpu_secs") + per_gb(&r, "server_cpu_secs"),
            ],
        );
    }
    // Both sides share these cores with the server: the CPU a GB costs in
    // all bounds the ratio reachable here, whatever the client does.
    for (i, what) in ["backup", "restore"].into_iter().enumerate() {
        println!(
            "{what}: CPU per GB local {:.2} s, s3:// {:.2} s with the server's: at most {:.2} of the local speed on these cores",
            cpu["local"][i],
            cpu["s3"][i],
            cpu["local"][i] / cpu["s3"][i]
        );
    }
    let verdict = |ratio: f64| if ratio >= 0.8 { "met" } else { "MISSED" };
    let (lb, lr) = figures["local"];
    let (sb, sr) = figures["s3"];
    println!(
        "s3 backup  / local backup  = {:.2} (target >= 0.80: {})",
        sb / lb,
        verdict(sb / lb)
    );
    println!(
        "s3 restore / local restore = {:.2} (target >= 0.80: {})",
        sr / lr,
        verdict(sr / lr)
    );
}
