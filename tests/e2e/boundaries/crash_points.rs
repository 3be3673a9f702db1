//! Named crash points: every publish, record and remove step of backup,
//! delete, sweep, repack, prune, rebuild and import is a failpoint. Each
//! operation is run once to list the points it passes, then once per point
//! aborted there (as a `kill -9` would stop it); `cleanup` must settle what
//! is left, and every backup that was available must still restore
//! byte-exact (or, if the operation was removing it, be gone or whole).
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use crate::harness::*;

type Tree = BTreeMap<PathBuf, Node>;

/// A share with three backups (a full and two incrementals) and the tree
/// each holds; the third is named `third`.
struct World {
    env: Env,
    share: PathBuf,
    backups: Vec<(String, Tree)>,
}

fn id_of(run: Run) -> String {
    run.ok().json()["id"].as_str().unwrap().to_string()
}

fn world() -> World {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(share.join("d")).unwrap();
    let mut backups = Vec::new();
    for round in 0..3u64 {
        for f in 0..6 {
            let seed = round * 10 + f;
            fs::write(
                share.join(format!("d/f{f}")),
                noise(20_000 + (seed as usize * 3_001) % 90_000, seed),
            )
            .unwrap();
        }
        fs::write(share.join(format!("r{round}")), noise(300_000, 100 + round)).unwrap();
        let d = share.to_str().unwrap();
        let mut args = vec!["backup", "create", "-f", "json"];
        if round > 0 {
            args.push("--incremental");
        }
        if round == 2 {
            args.extend(["--name", "third"]);
        }
        args.push(d);
        backups.push((id_of(env.strata(&args)), snapshot(&share)));
    }
    World {
        env,
        share,
        backups,
    }
}

/// What an operation does to a world: its command, the catalog it runs
/// with, and the backups it means to remove.
struct Op {
    name: &'static str,
    catalog: &'static str,
    args: fn(&World) -> Vec<String>,
    removes: fn(&World) -> Vec<String>,
    /// Done before the operation (not aborted).
    prepare: fn(&World),
}

fn none(_: &World) -> Vec<String> {
    Vec::new()
}

fn nothing(_: &World) {}

fn export(w: &World, id: &str) -> (String, String) {
    let e = w
        .env
        .strata(&["backup", "export", "-f", "json", id])
        .ok()
        .json();
    (
        e["backup_service"].as_str().unwrap().to_string(),
        e["backup_url"].as_str().unwrap().to_string(),
    )
}

fn ops() -> Vec<Op> {
    vec![
        Op {
            name: "backup",
            catalog: "catalog.db",
            args: |w| {
                fs::write(w.share.join("new"), noise(400_000, 77)).unwrap();
                let d = w.share.display().to_string();
                vec!["backup".into(), "create".into(), "--incremental".into(), d]
            },
            removes: none,
            prepare: nothing,
        },
        Op {
            name: "delete",
            catalog: "catalog.db",
            args: |_| vec!["backup".into(), "delete".into(), "third".into()],
            removes: |w| vec![w.backups[2].0.clone()],
            prepare: nothing,
        },
        Op {
            name: "repack",
            catalog: "catalog.db",
            args: |_| vec!["repack".into(), "--max-unused".into(), "0%".into()],
            removes: none,
            prepare: |w| {
                // A pack half of whose chunks no backup needs any more: a
                // backup of `keep` and `gone`, then one of `keep` alone
                // (a full one, sharing its chunks), then the first deleted.
                let d = w.share.to_str().unwrap();
                let inc = |env: &Env| {
                    id_of(env.strata(&["backup", "create", "-f", "json", "--incremental", d]))
                };
                fs::write(w.share.join("keep"), noise(700_000, 90)).unwrap();
                fs::write(w.share.join("gone"), noise(700_000, 91)).unwrap();
                let both = inc(&w.env);
                fs::remove_file(w.share.join("gone")).unwrap();
                w.env.strata(&["backup", "create", d]).ok();
                w.env.strata(&["backup", "delete", &both]).ok();
            },
        },
        Op {
            name: "prune",
            catalog: "catalog.db",
            args: |_| {
                ["backup", "prune", "--keep-last", "1"]
                    .map(String::from)
                    .to_vec()
            },
            removes: |w| vec![w.backups[0].0.clone(), w.backups[1].0.clone()],
            prepare: nothing,
        },
        Op {
            name: "rebuild",
            catalog: "catalog.db",
            args: |_| ["catalog", "rebuild", "--force"].map(String::from).to_vec(),
            removes: none,
            prepare: nothing,
        },
        Op {
            name: "import",
            catalog: "other.db",
            args: |w| {
                let (service, url) = export(w, &w.backups[1].0);
                vec!["backup".into(), "import".into(), service, url]
            },
            removes: none,
            prepare: |w| {
                let (service, url) = export(w, &w.backups[0].0);
                w.env
                    .strata_at("other.db", &["backup", "import", &service, &url])
                    .ok();
            },
        },
    ]
}

fn run_op(w: &World, op: &Op, vars: &[(&str, &str)]) -> Run {
    let args = (op.args)(w);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--catalog")
        .arg(w.env.path(op.catalog))
        .arg("--repository")
        .arg(&w.env.repository)
        .args(&args)
        .envs(vars.iter().copied());
    run(cmd)
}

/// The points `op` passes, in the order first reached.
fn points_of(op: &Op) -> Vec<String> {
    let w = world();
    (op.prepare)(&w);
    let log = w.env.path("points.log");
    let log_str = log.display().to_string();
    run_op(&w, op, &[("STRATA_FAILPOINT_LOG", &log_str)]).ok();
    let mut seen = BTreeSet::new();
    fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter(|p| seen.insert(p.to_string()))
        .map(String::from)
        .collect()
}

/// After an abort at `point` and a cleanup: each backup that was available
/// restores byte-exact; one the operation was removing may be gone.
fn verify(w: &World, op: &Op, point: &str) {
    let tag = format!("{} at {point}", op.name);
    let cleaned = w.env.strata_at(op.catalog, &["cleanup"]);
    assert_eq!(cleaned.code, 0, "{tag}: {}", cleaned.stderr);
    let removing = (op.removes)(w);
    let imported = op.catalog != "catalog.db";
    for (n, (id, tree)) in w.backups.iter().enumerate() {
        let shown = w
            .env
            .strata_at(op.catalog, &["backup", "show", id, "-f", "json"]);
        if shown.code == 4 && (removing.contains(id) || imported) {
            continue;
        }
        assert_eq!(shown.code, 0, "{tag}: backup {n}: {}", shown.stderr);
        assert_eq!(shown.json()["status"], "available", "{tag}: backup {n}");
        let target = w.env.path(&format!("restore-{n}"));
        let _ = fs::remove_dir_all(&target);
        let restored = w.env.restore_at(op.catalog, id, &target);
        assert_eq!(restored.code, 0, "{tag}: backup {n}: {}", restored.stderr);
        assert_same(tree, &snapshot(&target));
    }
    let check = w.env.strata_at(op.catalog, &["check", "-f", "json"]);
    assert_eq!(check.code, 0, "{tag}: {}{}", check.stdout, check.stderr);
    // The share backs up again (where an import recorded it, once an
    // operator confirms its path).
    let d = w.share.display().to_string();
    if imported {
        w.env
            .strata_at(op.catalog, &["share", "set", "share", "--path", &d])
            .ok();
    }
    w.env.strata_at(op.catalog, &["backup", "create", &d]).ok();
}

#[test]
fn an_abort_at_every_named_point_loses_nothing() {
    let mut total = 0;
    for op in ops() {
        let points = points_of(&op);
        assert!(!points.is_empty(), "{} passes no named point", op.name);
        for point in &points {
            let w = world();
            (op.prepare)(&w);
            let action = format!("{point}=abort");
            let run = run_op(&w, &op, &[("STRATA_FAILPOINTS", &action)]);
            assert_ne!(run.code, 0, "{} did not stop at {point}", op.name);
            verify(&w, &op, point);
            total += 1;
        }
        eprintln!(
            "{}: {} named points: {}",
            op.name,
            points.len(),
            points.join(", ")
        );
    }
    eprintln!("{total} aborts, each settled by cleanup");
    assert!(total >= 20, "only {total} crash points");
}
