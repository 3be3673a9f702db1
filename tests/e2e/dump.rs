//! `backup dump` (a file's bytes, a directory as tar) and `backup find`
//! (which backups hold a path).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::partial::{dump_into, subset};
use crate::harness::*;

#[test]
fn dump_writes_a_file_or_a_tree_that_tar_unpacks_exactly() {
    let env = Env::new();
    let share = env.path("share");
    build_tree(&share);
    let b = backup(&env, &share)["id"].as_str().expect("id").to_string();
    let full = env.path("full");
    restore_to(&env, &b, &full).ok();
    let full = snapshot(&full);

    // A file, and a hardlink's name: their bytes.
    for (name, expected) in [
        (
            "hello.txt",
            fs::read(share.join("hello.txt")).expect("read"),
        ),
        ("hard/two.txt", b"one inode, three names".to_vec()),
        (
            "sparse.img",
            fs::read(share.join("sparse.img")).expect("read"),
        ),
        ("data/random.bin", noise(9 << 20, 1)),
    ] {
        let out = env
            .command(&["backup", "dump", &b, name])
            .output()
            .expect("dump");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == expected, "{name}: dumped bytes differ");
    }

    // The whole tree, and one directory whose hardlinks point outside it.
    let all = env.path("all");
    dump_into(&env, &b, "/", &all);
    assert_same(&full, &snapshot(&all));
    let hard = env.path("hard");
    dump_into(&env, &b, "hard", &hard);
    let mut expected = subset(&full, |p| p.starts_with("hard"));
    for node in expected.values_mut().filter(|n| n.kind == "file") {
        node.links = ["hard/one.txt", "hard/two.txt"].map(Into::into).to_vec();
    }
    assert_same(&expected, &snapshot(&hard));

    env.strata(&["backup", "dump", &b, "no/such/path"])
        .fails(4, "not found");
    env.strata(&["backup", "dump", &b, "../etc"])
        .fails(2, "invalid path");
}

#[test]
fn dump_refuses_a_damaged_chunk() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(&share).expect("mkdir");
    fs::write(share.join("f"), noise(200_000, 7)).expect("write");
    let b = backup(&env, &share)["id"].as_str().expect("id").to_string();
    // Flip a byte in the middle of every pack's data.
    for pack in walk_files(&env.repo().join("packs")) {
        let mut bytes = fs::read(&pack).expect("read");
        let mid = bytes.len() / 3;
        bytes[mid] ^= 0x40;
        overwrite(&pack, &bytes);
    }
    let run = env.strata(&["backup", "dump", &b, "f"]);
    assert_eq!(run.code, 7, "{}", run.stderr);
    let run = env.strata(&["backup", "dump", &b, "/"]);
    assert_eq!(run.code, 7, "{}", run.stderr);
}

#[test]
fn find_tells_which_backups_hold_a_path() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(share.join("etc")).expect("mkdir");
    fs::write(share.join("etc/app.conf"), b"v1").expect("write");
    let first = backup(&env, &share)["id"].as_str().expect("id").to_string();
    fs::write(share.join("etc/app.conf"), b"version two").expect("write");
    fs::write(share.join("etc/other.conf"), b"x").expect("write");
    let second = incremental_backup(&env, &share)["id"]
        .as_str()
        .expect("id")
        .to_string();
    fs::remove_file(share.join("etc/app.conf")).expect("rm");
    let third = incremental_backup(&env, &share)["id"]
        .as_str()
        .expect("id")
        .to_string();

    let found = |args: &[&str]| -> Vec<(String, String, u64)> {
        let mut all = vec!["backup", "find", "-f", "json"];
        all.extend_from_slice(args);
        env.strata(&all)
            .ok()
            .json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().expect(k).to_string();
                (s("Backup ID"), s("Path"), r["Size"].as_u64().expect("size"))
            })
            .collect()
    };
    // Newest first, with each version's size; gone from the third.
    assert_eq!(
        found(&["app.conf"]),
        [
            (second.clone(), "/etc/app.conf".to_string(), 11),
            (first.clone(), "/etc/app.conf".to_string(), 2),
        ]
    );
    let confs: BTreeSet<_> = found(&["etc/*.conf"])
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    assert_eq!(confs.len(), 4, "{confs:?}");
    assert!(confs.contains(&(third.clone(), "/etc/other.conf".to_string())));
    assert!(found(&[
        "--share",
        "share",
        "*.conf",
        "--until",
        "1970-01-02T00:00:00Z"
    ])
    .is_empty());
    assert_eq!(found(&["*.conf", "--since", "1day"]).len(), 4);
    env.strata(&["backup", "find", "x", "--since", "yesterday"])
        .fails(2, "--since");
    env.strata(&["backup", "find", "a[", "--share", "share"])
        .fails(2, "pattern");
    env.strata(&["backup", "find", "x", "--share", "nope"])
        .fails(4, "not found");
    assert!(Path::new(&share).exists());
}
