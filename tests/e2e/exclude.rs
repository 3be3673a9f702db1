//! Backups that leave things out: `--exclude`, `--exclude-file`,
//! `--exclude-caches`, `--exclude-if-present`, per-share defaults in the
//! config, and how a change of rules shows in an incremental.

use std::collections::BTreeSet;
use std::fs;

use crate::harness::*;

const SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n";

fn tree(env: &Env, backup: &str, config: Option<&str>) -> BTreeSet<String> {
    let mut args = vec![];
    if let Some(c) = config {
        args.extend(["--config", c]);
    }
    args.extend(["backup", "ls", "-r", "-f", "json", backup]);
    env.strata(&args)
        .ok()
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["Path"].as_str().expect("path").to_string())
        .collect()
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[test]
fn backups_leave_out_what_their_rules_say_and_show_a_change_of_rules() {
    let env = Env::new();
    let share = env.path("share");
    for d in [
        "app/cache",
        "fake/cache",
        "home/u/scratch",
        "home/u/docs",
        "build",
    ] {
        fs::create_dir_all(share.join(d)).expect("mkdir");
    }
    fs::write(share.join("app/cache/CACHEDIR.TAG"), SIGNATURE).expect("write");
    fs::write(share.join("app/cache/blob"), noise(5000, 1)).expect("write");
    // A tag without the signature tags nothing.
    fs::write(share.join("fake/cache/CACHEDIR.TAG"), b"not a cache").expect("write");
    fs::write(share.join("home/u/docs/a.txt"), b"kept").expect("write");
    fs::write(share.join("home/u/docs/b.tmp"), b"scratch").expect("write");
    fs::write(share.join("home/u/scratch/x"), b"x").expect("write");
    fs::write(share.join("build/.nobackup"), b"").expect("write");
    fs::write(share.join("build/out.o"), noise(3000, 2)).expect("write");
    let s = share.to_str().expect("utf8");

    let full = backup(&env, &share)["id"].as_str().expect("id").to_string();
    assert!(tree(&env, &full, None).contains("/build/out.o"));
    let show = env
        .strata(&["backup", "show", "-f", "json", &full])
        .ok()
        .json();
    assert_eq!(show["exclusions"], "none", "{show}");
    assert_eq!(
        show["exclusions_changed"],
        serde_json::Value::Null,
        "{show}"
    );

    let list = env.path("excludes.txt");
    fs::write(&list, "# scratch space\n\n*.tmp\nhome/*/scratch\n").expect("write");
    let list = list.to_str().expect("utf8");
    let args = [
        "backup",
        "create",
        "--incremental",
        "-f",
        "json",
        "--exclude-file",
        list,
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        s,
    ];
    let second = env.strata(&args).ok().json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    let expected = set(&[
        "/app",
        "/app/cache",
        "/build",
        "/fake",
        "/fake/cache",
        "/fake/cache/CACHEDIR.TAG",
        "/home",
        "/home/u",
        "/home/u/docs",
        "/home/u/docs/a.txt",
    ]);
    assert_eq!(tree(&env, &second, None), expected);
    // What was left out shows as removed, and the show says why.
    let diff = env
        .strata(&["backup", "diff", "-f", "json", &full, &second])
        .ok()
        .json();
    let removed: BTreeSet<String> = diff
        .as_array()
        .expect("a list")
        .iter()
        .filter(|r| r["Change"] == "removed")
        .map(|r| r["Path"].as_str().expect("path").to_string())
        .collect();
    assert!(
        removed.contains("/home/u/scratch") && removed.contains("/build/out.o"),
        "{removed:?}"
    );
    let show = env
        .strata(&["backup", "show", "-f", "json", &second])
        .ok()
        .json();
    let rules = show["exclusions"].as_str().expect("a string");
    assert!(
        rules.contains("--exclude *.tmp") && rules.contains("--exclude-caches"),
        "{rules}"
    );
    assert!(rules.contains("(6 paths left out)"), "{rules}");
    let changed = show["exclusions_changed"].as_str().expect("a string");
    assert!(changed.contains("+--exclude home/*/scratch"), "{changed}");
    assert!(
        changed.contains("+--exclude-if-present .nobackup"),
        "{changed}"
    );

    // The same rules again: no change; nothing left out comes back.
    let third = env.strata(&args).ok().json()["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(tree(&env, &third, None), expected);
    let show = env
        .strata(&["backup", "show", "-f", "json", &third])
        .ok()
        .json();
    assert_eq!(show["exclusions_changed"], "none", "{show}");

    // Rules dropped: what they left out is backed up again.
    let fourth = incremental_backup(&env, &share)["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(tree(&env, &fourth, None), tree(&env, &full, None));
    let show = env
        .strata(&["backup", "show", "-f", "json", &fourth])
        .ok()
        .json();
    assert!(
        show["exclusions_changed"]
            .as_str()
            .expect("s")
            .contains("-"),
        "{show}"
    );

    // A partial restore of the backup that left things out is byte-exact.
    let target = env.path("restored");
    restore_to(&env, &second, &target).ok();
    assert_eq!(
        fs::read(target.join("home/u/docs/a.txt")).expect("read"),
        b"kept"
    );
    assert!(!target.join("build/out.o").exists());
}

#[test]
fn the_config_gives_each_share_its_exclusions_and_bad_rules_are_refused_first() {
    let env = Env::new();
    let share = env.path("share");
    fs::create_dir_all(share.join("logs")).expect("mkdir");
    fs::write(share.join("logs/a.log"), b"log").expect("write");
    fs::write(share.join("data.bin"), b"data").expect("write");
    fs::write(share.join("core"), b"dump").expect("write");
    let s = share.to_str().expect("utf8");
    let config = env.path("strata.toml");
    fs::write(
        &config,
        "[share_exclusions.\"*\"]\nexclude = [\"core\"]\n\n[share_exclusions.share]\nexclude = [\"logs\"]\n",
    )
    .expect("write");
    let c = config.to_str().expect("utf8");
    let b = env
        .strata(&["--config", c, "backup", "create", "-f", "json", s])
        .ok()
        .json();
    let id = b["id"].as_str().expect("id");
    assert_eq!(tree(&env, id, Some(c)), set(&["/data.bin"]));

    // Refused before anything is recorded: a bad glob, an unreadable list,
    // a marker name with a slash, a bad config table.
    let before = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    env.strata(&["backup", "create", "--exclude", "a[", s])
        .fails(2, "pattern");
    let missing = env.path("missing.txt");
    let m = missing.to_str().expect("utf8");
    env.strata(&["backup", "create", "--exclude-file", m, s])
        .fails(2, "--exclude-file");
    env.strata(&["backup", "create", "--exclude-if-present", "a/b", s])
        .fails(2, "slash");
    fs::write(&config, "[share_exclusions.share]\nexclude = [\"[\"]\n").expect("write");
    let run = env.strata(&["--config", c, "backup", "create", s]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("share_exclusions"), "{}", run.stderr);
    let after = env.strata(&["backup", "list", "-f", "json"]).ok().json();
    assert_eq!(before, after);
}
