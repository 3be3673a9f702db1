//! The unmodified `openstack share backup …` command (python-openstackclient
//! and python-manilaclient from PyPI, installed by `tests/run` into
//! `target/openstack-venv`) against `strata serve`: every command an
//! operator uses, and trees restored through it compared byte for byte.
//!
//! Skipped, loudly, when the client is not installed, unless
//! `STRATA_REQUIRE_OPENSTACK=1` (as in CI), which makes that a failure.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

fn client() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/openstack-venv");
    let path = match std::env::var_os("STRATA_OPENSTACK") {
        Some(p) => PathBuf::from(p),
        // Only a complete install: `tests/run` marks it so.
        None if venv.join(".complete").exists() => venv.join("bin/openstack"),
        None => venv.join("bin/openstack (not installed)"),
    };
    if path.exists() {
        return Some(path);
    }
    let required = std::env::var("STRATA_REQUIRE_OPENSTACK").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "STRATA_REQUIRE_OPENSTACK=1 but {} is missing (tests/run installs it)",
        path.display()
    );
    eprintln!("SKIPPED: no openstack client at {}", path.display());
    None
}

struct Os {
    bin: PathBuf,
    endpoint: String,
}

impl Os {
    /// `openstack ARGS` as `token`; returns stdout, asserting success.
    fn ok(&self, token: &str, args: &[&str]) -> String {
        let (code, out, err) = self.run(token, args);
        assert_eq!(code, 0, "openstack {args:?}: {out}\n{err}");
        out
    }

    fn run(&self, token: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("OS_AUTH_TYPE", "admin_token")
            .env("OS_ENDPOINT", &self.endpoint)
            .env("OS_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn value(&self, token: &str, args: &[&str], column: &str) -> String {
        let mut all = args.to_vec();
        all.extend(["-f", "value", "-c", column]);
        self.ok(token, &all).trim().to_string()
    }

    fn wait_backup(&self, token: &str, backup: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = self.value(token, &["share", "backup", "show", backup], "status");
            if status == want {
                return;
            }
            assert!(Instant::now() < deadline, "backup {backup} is {status}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

const A: &str = "alice:proj-a";

#[test]
fn the_openstack_client_drives_backups_end_to_end() {
    let Some(bin) = client() else { return };
    let env = Env::new();
    let config = env.path("types.toml");
    std::fs::write(
        &config,
        "enabled_backup_types = [\"eng\"]\n[eng]\nbackup_type_name = \"eng_data\"\n",
    )
    .unwrap();
    let s = Server::start(&env, &["--config", config.to_str().unwrap()], &[]);
    let os = Os {
        bin,
        endpoint: format!("http://{}/v2", s.addr),
    };
    let (data_id, data) = share_with_tree(&env, "proj-a", "data");
    let (_, typed) = share_with_tree(&env, "proj-a", "typed");
    let (_, other) = share_with_tree(&env, "proj-a", "other");
    std::fs::remove_dir_all(&other).unwrap();
    std::fs::create_dir(&other).unwrap();

    let shares = os.ok(A, &["share", "list", "-f", "value", "-c", "Name"]);
    assert_eq!(shares.lines().count(), 3, "each share once: {shares}");
    assert_eq!(os.value(A, &["share", "show", "data"], "id"), data_id);

    // Create by share name, and by id with a backup type.
    os.ok(A, &["share", "backup", "create", "--name", "b1", "data"]);
    os.wait_backup(A, "b1", "available");
    let typed_id = os.value(A, &["share", "show", "typed"], "id");
    os.ok(
        A,
        &[
            "share",
            "backup",
            "create",
            "--name",
            "t1",
            "--backup-options",
            "backup_type=eng",
            &typed_id,
        ],
    );
    os.wait_backup(A, "t1", "available");
    assert_eq!(
        os.value(A, &["share", "backup", "show", "t1"], "backup_type"),
        "eng_data"
    );
    let _ = typed;

    // List, with filters and in detail.
    let listed = os.ok(A, &["share", "backup", "list", "-f", "value", "-c", "Name"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let mine = os.ok(
        A,
        &[
            "share", "backup", "list", "--share", "data", "-f", "value", "-c", "Name",
        ],
    );
    assert_eq!(mine.trim(), "b1");
    let detail = os.ok(
        A,
        &[
            "share",
            "backup",
            "list",
            "--detail",
            "--status",
            "available",
        ],
    );
    assert!(
        detail.contains("Restore Progress") || detail.contains("restore_progress"),
        "{detail}"
    );

    // set, unset, and an administrator's set --status.
    os.ok(
        A,
        &[
            "share",
            "backup",
            "set",
            "b1",
            "--name",
            "b1x",
            "--description",
            "nightly",
        ],
    );
    assert_eq!(
        os.value(A, &["share", "backup", "show", "b1x"], "description"),
        "nightly"
    );
    os.ok(A, &["share", "backup", "unset", "b1x", "--description"]);
    assert_eq!(
        os.value(A, &["share", "backup", "show", "b1x"], "description"),
        "None"
    );
    let (code, _, _) = os.run(A, &["share", "backup", "set", "b1x", "--status", "error"]);
    assert_ne!(code, 0, "only an administrator resets a status");
    os.ok(
        "admin:proj-a",
        &["share", "backup", "set", "b1x", "--status", "error"],
    );
    assert_eq!(
        os.value(A, &["share", "backup", "show", "b1x"], "status"),
        "error"
    );
    os.ok(
        "admin:proj-a",
        &["share", "backup", "set", "b1x", "--status", "available"],
    );

    // Restore to the source (over a changed tree) and into another share.
    let pristine = env.path("pristine");
    std::fs::rename(&data, &pristine).unwrap();
    std::fs::create_dir(&data).unwrap();
    os.ok(A, &["share", "backup", "restore", "b1x", "--wait"]);
    same_tree(&pristine, &data);
    os.ok(
        A,
        &[
            "share",
            "backup",
            "restore",
            "b1x",
            "--target-share",
            "other",
            "--wait",
        ],
    );
    same_tree(&pristine, &other);

    // Without any token handling: the client sends "notused", its own
    // project, which has nothing.
    let none = Command::new(&os.bin)
        .args(["share", "backup", "list", "-f", "value"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .env("OS_AUTH_TYPE", "none")
        .env("OS_SHARED_FILE_SYSTEM_ENDPOINT_OVERRIDE", &os.endpoint)
        .output()
        .unwrap();
    assert!(
        none.status.success(),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    assert!(none.stdout.is_empty());

    // Delete, waiting for it.
    os.ok(A, &["share", "backup", "delete", "b1x", "--wait"]);
    let left = os.ok(A, &["share", "backup", "list", "-f", "value", "-c", "Name"]);
    assert_eq!(left.trim(), "t1");
    // And the CLI agrees.
    let cli = env.strata(&["--project", "proj-a", "backup", "list", "-f", "json"]);
    assert!(!cli.ok().stdout.contains("b1x"));
}
