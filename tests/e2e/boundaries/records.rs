//! Values from an imported record or from the repository are input like a
//! user's: a forged record or layer never points a restore at another
//! project's share or at a path the repository chose.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::fs;
use std::path::Path;

use base64::Engine as _;
use serde_json::Value;
use strata_format::layer::LayerMeta;

use crate::harness::*;

fn id_of(run: Run) -> String {
    run.ok().json()["id"].as_str().unwrap().to_string()
}

/// A project's share with one file, backed up with `catalog`.
fn project_backup(env: &Env, catalog: &str, project: &str, dir: &Path) -> (String, String) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(format!("{project}.txt")), noise(20_000, 3)).unwrap();
    let d = dir.to_str().unwrap();
    let share = id_of(env.strata_at(
        catalog,
        &[
            "--project",
            project,
            "share",
            "create",
            "--name",
            project,
            "--path",
            d,
            "-f",
            "json",
        ],
    ));
    let backup = id_of(env.strata_at(
        catalog,
        &[
            "--project",
            project,
            "backup",
            "create",
            "-f",
            "json",
            &share,
        ],
    ));
    (share, backup)
}

fn export(env: &Env, catalog: &str, project: &str, backup: &str) -> (String, Value) {
    let e = env
        .strata_at(
            catalog,
            &[
                "--project",
                project,
                "backup",
                "export",
                "-f",
                "json",
                backup,
            ],
        )
        .ok()
        .json();
    let url = e["backup_url"].as_str().unwrap();
    let json = base64::engine::general_purpose::STANDARD
        .decode(url)
        .unwrap();
    (
        e["backup_service"].as_str().unwrap().to_string(),
        serde_json::from_slice(&json).unwrap(),
    )
}

fn encode(record: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(record).unwrap())
}

#[test]
fn an_import_believes_the_layer_not_the_record() {
    let env = Env::new();
    let victim_dir = env.path("victim");
    let (victim_share, victim_backup) = project_backup(&env, "catalog.db", "victim", &victim_dir);
    // Mallory's backup, taken on another node over the same repository.
    let (_, mallory_backup) = project_backup(&env, "other.db", "mallory", &env.path("mallory"));
    let (service, record) = export(&env, "other.db", "mallory", &mallory_backup);
    let import = |record: &Value, project: &str| {
        env.strata_at(
            "catalog.db",
            &[
                "--project",
                project,
                "backup",
                "import",
                "-f",
                "json",
                &service,
                &encode(record),
            ],
        )
    };
    let forged = |field: &str, value: Value| {
        let mut r = record.clone();
        r["backup"][field] = value;
        r
    };
    let before = fs::read(victim_dir.join("victim.txt")).unwrap();
    for (field, value) in [
        ("share_id", Value::from(victim_share.clone())),
        ("size_gib", Value::from(0)),
        ("parent_id", Value::from(victim_backup.clone())),
        ("is_incremental", Value::from(true)),
        ("project", Value::from("victim")),
        ("data_timestamp", Value::from(1)),
        ("backup_type", Value::from("gold")),
    ] {
        let run = import(&forged(field, value), "mallory");
        run.fails(2, &format!("another {field} "));
        assert!(!run.stderr.contains(&victim_backup), "{}", run.stderr);
    }
    // A whole record honest about itself, imported by the wrong project.
    import(&record, "victim").fails(10, "imported by that project");
    // Nothing went in; the victim deletes its own backup freely.
    let listed = env
        .strata(&["--project", "mallory", "backup", "list", "-f", "json"])
        .ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    // The honest import: the share comes from the layer, adopted, so a
    // restore in place waits for an operator to confirm its path.
    let imported = import(&record, "mallory").ok().json();
    assert_eq!(imported["status"], "available");
    assert_ne!(imported["size"], 0);
    env.strata(&["--project", "mallory", "backup", "restore", &mallory_backup])
        .fails(10, "not confirmed");
    let mallory_dir = env.path("mallory").display().to_string();
    env.strata(&[
        "--project",
        "mallory",
        "share",
        "set",
        "mallory",
        "--path",
        &mallory_dir,
    ])
    .ok();
    env.strata(&["--project", "mallory", "backup", "restore", &mallory_backup])
        .ok();
    assert_eq!(fs::read(victim_dir.join("victim.txt")).unwrap(), before);
    assert!(!victim_dir.join("mallory.txt").exists());
    env.strata(&["--project", "victim", "backup", "delete", &victim_backup])
        .ok();
}

fn forge_layer(env: &Env, backup: &str, forge: impl Fn(&mut LayerMeta)) {
    super::rewrite_layer(env, backup, |meta, _| forge(meta));
}

#[test]
fn a_hostile_repository_cannot_choose_where_an_in_place_restore_writes() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("payload"), noise(10_000, 1)).unwrap();
    let d = share.to_str().unwrap();
    let mut ids = Vec::new();
    for name in ["abs", "rel", "esc", "dots", "fine"] {
        let sub = share.join(name);
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join("payload"), noise(1_000, 2)).unwrap();
        ids.push(id_of(env.strata(&[
            "backup",
            "create",
            "-f",
            "json",
            sub.to_str().unwrap(),
        ])));
    }
    let victim = env.path("victim");
    fs::create_dir_all(&victim).unwrap();
    forge_layer(&env, &ids[0], |m| {
        m.share_path = victim.display().to_string()
    });
    forge_layer(&env, &ids[1], |m| m.share_path = "../../victim".into());
    forge_layer(&env, &ids[2], |m| {
        m.share_name = "esc\u{1b}]0;owned\u{7}".into()
    });
    forge_layer(&env, &ids[3], |m| m.share_name = "../..".into());
    // The catalog is lost; the one rebuilt from the repository confirms
    // no path itself.
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(env.path(&format!("catalog.db{suffix}")));
    }
    let rebuilt = env.strata(&["catalog", "rebuild", "-f", "json"]).json();
    let damaged = rebuilt["damaged"].to_string();
    for (id, why) in [
        (&ids[1], "not absolute"),
        (&ids[2], "control"),
        (&ids[3], "path"),
    ] {
        assert!(damaged.contains(id.as_str()), "{id}: {rebuilt}");
        assert!(damaged.contains(why), "{why}: {rebuilt}");
        env.strata(&["backup", "show", id]).fails(4, "not found");
    }
    // The forged absolute path is taken, but adopted: nothing is written
    // there until an operator confirms it, nor read from it by a backup.
    env.strata(&["backup", "restore", &ids[0]])
        .fails(10, "not confirmed");
    env.strata(&["backup", "create", "--incremental", "abs"])
        .fails(10, "not confirmed");
    assert!(fs::read_dir(&victim).unwrap().next().is_none());
    let shown = env
        .strata(&["share", "show", "fine", "-f", "json"])
        .ok()
        .json();
    assert_eq!(shown["adopted"], true);
    env.strata(&["share", "set", "fine", "--path", "relative/dir"])
        .fails(4, "not found");
    env.strata(&["share", "set", "fine", "--path", &format!("{d}/fine")])
        .ok();
    let shown = env
        .strata(&["share", "show", "fine", "-f", "json"])
        .ok()
        .json();
    assert_eq!(shown["adopted"], false);
    fs::remove_file(share.join("fine/payload")).unwrap();
    env.strata(&["backup", "restore", &ids[4]]).ok();
    assert!(share.join("fine/payload").exists());
    env.strata(&["backup", "create", "--incremental", "fine"])
        .ok();
}
