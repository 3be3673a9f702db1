//! One measured operation in a process of its own, so its peak RSS is its own:
//! `strata-bench-child backup CATALOG REPO SHARE [incremental]` (REPO a
//! directory or an `nfs://` URL),
//! `strata-bench-child restore CATALOG REPO BACKUP-ID TARGET`, or
//! `strata-bench-child idle CATALOG REPO` (opens the engine, does nothing:
//! the baseline RSS), or `strata-bench-child rebuild CATALOG REPO` (the
//! catalog rebuilt from the repository; prints read and repository bytes), or
//! `strata-bench-child verify CATALOG REPO` (`check --read-data`; bytes are
//! the verified chunks' decompressed bytes), `strata-bench-child repack
//! CATALOG REPO` (threshold 20%; bytes are the live bytes copied), or
//! `strata-bench-child delete CATALOG REPO BACKUP-ID`, or `strata-bench-child
//! prune CATALOG REPO` (daily 7, weekly 4, monthly 12, yearly 3), or
//! `strata-bench-child restore-partial CATALOG REPO BACKUP-ID TARGET GLOB`
//! (restores what GLOB includes), `strata-bench-child ls CATALOG REPO
//! BACKUP-ID PATH` (lists one directory), `strata-bench-child find CATALOG
//! REPO GLOB` (searches every backup). Prints `key=value` lines: secs, bytes, files,
//! peak_rss_kib, mapped_rss_kib (pages of files and shared memory at the
//! end), cpu_secs, id, and for backups read, new, changed, deleted.

mod procstat;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use strata_engine::repository::objects::Location;
use strata_engine::{CreateBackup, Engine, EngineConfig, Progress, RestoreRequest};

fn run(args: &[String]) -> Result<(), String> {
    let [op, catalog, repo, rest @ ..] = args else {
        return Err("usage: backup|restore CATALOG REPO ...".into());
    };
    let mut config = EngineConfig::new(
        PathBuf::from(catalog),
        Location::parse(repo).map_err(|e| e.to_string())?,
    );
    // The restore window, for measuring its effect on memory.
    if let Some(kib) = std::env::var("STRATA_BENCH_WINDOW_KIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        config.restore_window_bytes = kib << 10;
    }
    let progress = Progress::default();
    let started = Instant::now();
    if op == "rebuild" {
        let done = Engine::rebuild_catalog(&config, true, &progress).map_err(|e| e.to_string())?;
        println!("secs={}", started.elapsed().as_secs_f64());
        println!("chunks={}", done.chunks);
        println!("packs={}", done.packs);
        println!("read={}", done.bytes_read);
        println!("repository={}", done.repository_bytes);
        println!("peak_rss_kib={}", procstat::peak_rss_kib());
        return Ok(());
    }
    let engine = Engine::open(config).map_err(|e| e.to_string())?;
    match (op.as_str(), rest) {
        ("repack", []) => {
            let done = engine
                .repack(20, false, std::time::Duration::from_secs(60), &progress)
                .map_err(|e| e.to_string())?;
            println!("secs={}", started.elapsed().as_secs_f64());
            println!("bytes={}", done.bytes_copied);
            println!("packs={}", done.packs_repacked);
            println!("before={}", done.bytes_before);
        }
        ("prune", []) => {
            let req = strata_engine::PruneRequest {
                policy: strata_engine::Retention {
                    daily: Some(7),
                    weekly: Some(4),
                    monthly: Some(12),
                    yearly: Some(3),
                    ..Default::default()
                },
                wait: std::time::Duration::from_secs(60),
                ..Default::default()
            };
            let done = engine.prune(&req, &progress).map_err(|e| e.to_string())?;
            println!("secs={}", started.elapsed().as_secs_f64());
            println!("removed={}", done.removed);
            println!("rewritten={}", done.rewritten.len());
            let kept = done.decisions.iter().filter(|d| !d.removed()).count();
            println!("kept={kept}");
            println!("judged={}", done.decisions.len());
        }
        ("delete", [id]) => {
            let backup = engine.find_backup(id).map_err(|e| e.to_string())?;
            engine
                .delete_backup(&backup, false)
                .map_err(|e| e.to_string())?;
            println!("secs={}", started.elapsed().as_secs_f64());
        }
        ("verify", []) => {
            let done = engine
                .check_data(strata_engine::DataSubset::All, &progress)
                .map_err(|e| e.to_string())?;
            if !done.is_clean() {
                return Err(format!("the repository is damaged: {done:?}"));
            }
            println!("secs={}", started.elapsed().as_secs_f64());
            println!("bytes={}", done.chunk_bytes_verified);
            println!("read={}", done.bytes_read);
            println!("chunks={}", done.chunks_verified);
        }
        ("backup", [share, mode @ ..]) => {
            let incremental = mode.iter().any(|m| m == "incremental");
            let (share, _) = engine
                .share_for_backup(share, incremental)
                .map_err(|e| e.to_string())?;
            let req = CreateBackup {
                incremental,
                ..CreateBackup::default()
            };
            let done = engine
                .create_backup(&share, &req, &progress)
                .map_err(|e| e.to_string())?;
            let secs = started.elapsed().as_secs_f64();
            println!("secs={secs}");
            println!("bytes={}", done.backup.logical_bytes);
            println!("files={}", done.backup.file_count);
            println!("stored={}", done.backup.stored_bytes);
            println!("id={}", done.backup.id);
            println!("read={}", done.backup.read_bytes);
            println!("new={}", done.backup.new_bytes);
            println!("changed={}", done.backup.changed_count);
            println!("deleted={}", done.backup.deleted_count);
        }
        ("idle", []) => println!("secs=0"),
        ("restore", [id, target]) => {
            let backup = engine.find_backup(id).map_err(|e| e.to_string())?;
            let req =
                RestoreRequest::whole(strata_engine::RestoreTarget::Dir(PathBuf::from(target)));
            let done = engine
                .restore_backup(&backup, &req, &progress)
                .map_err(|e| e.to_string())?;
            let secs = started.elapsed().as_secs_f64();
            println!("secs={secs}");
            println!("bytes={}", done.bytes);
            println!("files={}", done.files);
            println!("read={}", done.read_bytes);
        }
        ("restore-partial", [id, target, glob]) => {
            let backup = engine.find_backup(id).map_err(|e| e.to_string())?;
            let mut req =
                RestoreRequest::whole(strata_engine::RestoreTarget::Dir(PathBuf::from(target)));
            req.selection = strata_engine::select::Selection::new(std::slice::from_ref(glob), &[])
                .map_err(|e| e.to_string())?;
            let done = engine
                .restore_backup(&backup, &req, &progress)
                .map_err(|e| e.to_string())?;
            println!("secs={}", started.elapsed().as_secs_f64());
            println!("bytes={}", done.bytes);
            println!("files={}", done.files);
            println!("read={}", done.read_bytes);
        }
        ("ls", [id, at]) => {
            let backup = engine.find_backup(id).map_err(|e| e.to_string())?;
            let mut entries = 0u64;
            engine
                .list_tree(&backup, Some(at.as_bytes()), false, &mut |_| {
                    entries += 1;
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
            println!("secs={}", started.elapsed().as_secs_f64());
            println!("files={entries}");
        }
        ("find", [glob]) => {
            let pattern = strata_engine::select::Patterns::new(std::slice::from_ref(glob))
                .map_err(|e| e.to_string())?;
            let mut found = 0u64;
            let backups = engine
                .find_paths(&pattern, &Default::default(), &mut |_, _| {
                    found += 1;
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
            println!("secs={}", started.elapsed().as_secs_f64());
            println!("files={found}");
            println!("backups={backups}");
        }
        _ => return Err(format!("unknown operation {op:?}")),
    }
    println!("peak_rss_kib={}", procstat::peak_rss_kib());
    println!("mapped_rss_kib={}", procstat::mapped_rss_kib());
    println!("cpu_secs={}", procstat::cpu_secs(std::process::id()));
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
