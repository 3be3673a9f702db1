//! A repository in an S3 bucket, against two real servers on loopback
//! (`s3s-fs` and `moto`): the object store contract, every command the
//! same as on a directory, and clear errors for a missing bucket, refused
//! keys and an endpoint that does not answer.

use std::fs;
use std::time::Duration;

use strata_engine::repository::objects::s3::S3Store;
use strata_engine::repository::objects::{conformance, Cond, Key, ObjectStore};
use strata_engine::Error;

use crate::harness::*;
use crate::s3_server::{Kind, S3Server};

/// An environment whose repository is `prefix` in the server's bucket.
fn s3_env(server: &S3Server, prefix: &str) -> Env {
    let env = Env::new();
    Env {
        repository: server.url(prefix),
        vars: server
            .env()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..env
    }
}

#[test]
fn conformance_object_store_s3() {
    let Some(server) = S3Server::start("conformance_object_store_s3", Kind::Moto) else {
        return;
    };
    let store = S3Store::connect(&server.parsed("deep/repo")).unwrap();
    assert!(store.honours_conditional_puts());
    assert!(store.honours_conditional_deletes());
    conformance::run(&store).unwrap();
    // Another prefix of the same bucket is another store.
    let other = S3Store::connect(&server.parsed("other")).unwrap();
    other
        .put(&Key::new("config").unwrap(), b"x", Cond::IfAbsent)
        .unwrap();
    assert!(store.list_all("").unwrap().is_empty());
}

/// s3s-fs refuses a put under `If-None-Match: *` over an object, but lets
/// racing ones through (it checks, then writes), and ignores `If-Match`
/// on deletes. The store finds both out when opened, and strata refuses
/// to keep its locks there.
#[test]
fn a_server_whose_conditions_do_not_hold_is_found_out_and_refused() {
    let Some(server) = S3Server::start("a_server_whose_conditions_do_not_hold", Kind::S3sFs) else {
        return;
    };
    for _ in 0..5 {
        let store = S3Store::connect(&server.parsed("repo")).unwrap();
        assert!(!store.honours_conditional_puts());
        assert!(!store.honours_conditional_deletes());
        // What it does not hold is refused, not made unconditional.
        let k = Key::new("locks/x").unwrap();
        let etag = store.put(&k, b"one", Cond::Any).unwrap();
        assert!(matches!(
            store.delete(&k, Cond::IfMatch(etag)),
            Err(Error::Unsupported(_))
        ));
        assert!(store.stat(&k).unwrap().is_some());
        store.delete(&k, Cond::Any).unwrap();
        // The probes leave nothing.
        assert!(store.list_all("").unwrap().is_empty());
    }
    let env = s3_env(&server, "repo");
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    env.strata(&["backup", "create", share.to_str().unwrap()])
        .fails(2, "does not hold If-None-Match");
}

#[test]
fn backups_restore_byte_exact_from_s3() {
    let kind = Kind::Moto;
    let Some(server) = S3Server::start("backups_restore_byte_exact_from_s3", kind) else {
        return;
    };
    let env = s3_env(&server, "site/repo");
    let share = env.path("share");
    build_tree(&share);
    fs::write(share.join("big.bin"), noise(40 << 20, 7)).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let full_tree = snapshot(&share);
    let full = backup(&env, &share);
    assert_eq!(full["status"], "available", "{kind:?}");

    fs::write(share.join("new"), b"after the full backup").unwrap();
    fs::remove_file(share.join("big.bin")).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let incr_tree = snapshot(&share);
    let incr = incremental_backup(&env, &share);
    assert_eq!(incr["status"], "available", "{kind:?}");

    for (b, tree, name) in [(&full, &full_tree, "full"), (&incr, &incr_tree, "incr")] {
        let target = env.path(&format!("restored-{name}"));
        restore_to(&env, b["id"].as_str().unwrap(), &target).ok();
        assert_same(tree, &snapshot(&target));
    }
    env.strata(&["check", "--read-data"]).ok();
    for b in [&incr, &full] {
        env.strata(&["backup", "delete", b["id"].as_str().unwrap()])
            .ok();
    }
    let store = S3Store::connect(&server.parsed("site/repo")).unwrap();
    assert!(store.list_all("packs/").unwrap().is_empty(), "{kind:?}");
    assert!(store.list_all("layers/").unwrap().is_empty(), "{kind:?}");
    assert!(store.unfinished().unwrap().is_empty(), "{kind:?}");
}

#[test]
fn three_catalogs_on_one_bucket_never_harm_each_other() {
    let Some(server) = S3Server::start("three_catalogs_on_one_bucket", Kind::Moto) else {
        return;
    };
    crate::shared_repo::three_catalogs(&s3_env(&server, "repo"), false);
}

#[test]
fn a_lost_catalog_is_rebuilt_from_a_bucket() {
    let Some(server) = S3Server::start("a_lost_catalog_is_rebuilt_from_a_bucket", Kind::Moto)
    else {
        return;
    };
    crate::rebuild::lost_catalog_is_rebuilt(&s3_env(&server, "repo"));
}

#[test]
fn s3_failures_are_clear_errors() {
    let Some(server) = S3Server::start("s3_failures_are_clear_errors", Kind::Moto) else {
        return;
    };
    let env = s3_env(&server, "repo");
    let share = env.path("share");
    fs::create_dir_all(&share).unwrap();
    fs::write(share.join("f"), b"data").unwrap();
    let share = share.to_str().unwrap();

    // A bucket that is not there: not found, and nothing is made.
    let missing = Env {
        repository: env
            .repository
            .replace("s3://strata-test/", "s3://no-such-bucket/"),
        ..s3_env(&server, "repo")
    };
    missing
        .strata(&["backup", "create", share])
        .fails(4, "bucket not found: no-such-bucket");

    // Keys the server refuses. moto takes any; s3s-fs checks them.
    if let Some(strict) = S3Server::start("s3_failures_are_clear_errors", Kind::S3sFs) {
        let mut wrong = s3_env(&strict, "repo");
        wrong.vars = vec![
            ("AWS_ACCESS_KEY_ID".into(), "strata-test".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "not-the-secret".into()),
        ];
        let run = wrong.strata(&["backup", "create", share]);
        assert_eq!(run.code, 10, "{}", run.stderr);
        assert!(run.stderr.contains("refused"), "{}", run.stderr);
    }

    // An endpoint where nothing answers: an I/O error once the (short)
    // retry budget is spent.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let nowhere = Env {
        repository: format!(
            "s3://strata-test/repo?endpoint=http://127.0.0.1:{port}&region=us-east-1&retry=0.5"
        ),
        ..s3_env(&server, "repo")
    };
    let run = nowhere.strata(&["backup", "create", share]);
    assert_eq!(run.code, 8, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("127.0.0.1:{port}")),
        "{}",
        run.stderr
    );

    // A location that is not one.
    let bad = Env {
        repository: "s3://Bad_Bucket/x".into(),
        ..s3_env(&server, "repo")
    };
    bad.strata(&["backup", "list"])
        .fails(2, "not a valid bucket name");
}

/// The `[s3]` table of the config file gives the endpoint, region and
/// keys an `s3://` location leaves out; the environment's keys win over it.
#[test]
fn the_config_file_reaches_a_bucket() {
    let Some(server) = S3Server::start("the_config_file_reaches_a_bucket", Kind::Moto) else {
        return;
    };
    let env = Env {
        repository: "s3://strata-test/from-config".into(),
        ..Env::new()
    };
    let config = env.path("strata.toml");
    fs::write(
        &config,
        format!(
            "[s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"{}\"\n\
             secret_access_key = \"{}\"\n",
            server.endpoint(),
            crate::s3_server::ACCESS_KEY,
            crate::s3_server::SECRET_KEY
        ),
    )
    .unwrap();
    let share = env.path("share");
    build_tree(&share);
    let config = config.to_str().unwrap();
    let made = env
        .strata(&[
            "--config",
            config,
            "backup",
            "create",
            share.to_str().unwrap(),
            "-f",
            "json",
        ])
        .ok()
        .json();
    let target = env.path("restored");
    env.strata(&[
        "--config",
        config,
        "backup",
        "restore",
        made["id"].as_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
    ])
    .ok();
    assert_same(&snapshot(&share), &snapshot(&target));
    let store = S3Store::connect(&server.parsed("from-config")).unwrap();
    assert!(!store.list_all("layers/").unwrap().is_empty());
    // Half a key pair is refused before anything is reached.
    fs::write(env.path("half.toml"), "[s3]\naccess_key_id = \"x\"\n").unwrap();
    let half = env.path("half.toml");
    env.strata(&["--config", half.to_str().unwrap(), "backup", "list"])
        .fails(2, "both access_key_id and secret_access_key");
}

/// The commands beyond backup and restore, on a bucket: ls, find, diff,
/// dump, a partial restore, export and import into another catalog,
/// prune (which merges layers), repack and cleanup.
#[test]
fn every_command_works_on_a_bucket() {
    let Some(server) = S3Server::start("every_command_works_on_a_bucket", Kind::Moto) else {
        return;
    };
    let env = s3_env(&server, "repo");
    let share = env.path("share");
    build_tree(&share);
    fs::write(share.join("notes.txt"), b"first\n").unwrap();
    fs::write(share.join("big.bin"), noise(6 << 20, 3)).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let first = backup(&env, &share);
    let first_id = first["id"].as_str().unwrap().to_string();
    fs::write(share.join("notes.txt"), b"second\n").unwrap();
    fs::write(share.join("big.bin"), noise(6 << 20, 4)).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let tree = snapshot(&share);
    let second = incremental_backup(&env, &share);
    let second_id = second["id"].as_str().unwrap().to_string();

    let ls = env.strata(&["backup", "ls", &second_id]).ok();
    assert!(ls.stdout.contains("notes.txt"), "{}", ls.stdout);
    let found = env.strata(&["backup", "find", "notes.txt"]).ok();
    assert_eq!(
        found.stdout.matches("notes.txt").count(),
        2,
        "{}",
        found.stdout
    );
    let diff = env.strata(&["backup", "diff", &first_id, &second_id]).ok();
    assert!(diff.stdout.contains("big.bin"), "{}", diff.stdout);
    let dumped = env.strata(&["backup", "dump", &first_id, "notes.txt"]).ok();
    assert_eq!(dumped.stdout, "first\n");
    let part = env.path("part");
    env.strata(&[
        "backup",
        "restore",
        &second_id,
        "--target-dir",
        part.to_str().unwrap(),
        "--include",
        "notes.txt",
    ])
    .ok();
    assert_eq!(fs::read(part.join("notes.txt")).unwrap(), b"second\n");
    assert!(!part.join("big.bin").exists());

    // The records, exported, come into another catalog on the same bucket.
    let export = |id: &str| {
        let e = env
            .strata(&["backup", "export", "-f", "json", id])
            .ok()
            .json();
        (
            e["backup_service"].as_str().unwrap().to_string(),
            e["backup_url"].as_str().unwrap().to_string(),
        )
    };
    for id in [&first_id, &second_id] {
        let (service, url) = export(id);
        env.strata_at("other.db", &["backup", "import", &service, &url])
            .ok();
    }
    let listed = env
        .strata_at("other.db", &["backup", "list", "-f", "json"])
        .ok()
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // A prune merges the first into the second; a repack and a cleanup
    // then leave a repository whose every byte is sound.
    env.strata(&["backup", "prune", "--keep-last", "1"]).ok();
    env.strata(&["repack", "--max-unused", "0%"]).ok();
    env.strata(&["cleanup"]).ok();
    env.strata(&["check", "--read-data"]).ok();
    let target = env.path("restored");
    restore_to(&env, &second_id, &target).ok();
    assert_same(&tree, &snapshot(&target));
}
