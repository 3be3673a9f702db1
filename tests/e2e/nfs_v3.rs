//! The repository over NFSv3. A v3 server needs rpcbind, which cannot be
//! bound to loopback only, so the test runs itself again inside a private
//! network and mount namespace: there it brings loopback up, starts rpcbind
//! and a server that serves v3 and v4, and checks the backend contract and
//! full and incremental backups and restores over `version=3`.
#![allow(clippy::unwrap_used)] // a test file: a failed unwrap is a failed test

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_engine::repository::objects::{conformance, Location, NfsStore};

use crate::ganesha::{self, Ganesha};
use crate::harness::*;

/// Set in the copy of the test that runs inside the namespace.
const INSIDE: &str = "STRATA_TEST_INSIDE_NETNS";
const NAME: &str = "nfs_v3::conformance_object_store_nfs3_and_backups_restore_over_it";

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|d| d.join(tool).is_file())
}

#[test]
fn conformance_object_store_nfs3_and_backups_restore_over_it() {
    if std::env::var_os(INSIDE).is_some() {
        return inside();
    }
    if !ganesha::available(NAME) {
        return;
    }
    if let Some(tool) = ["unshare", "rpcbind", "ip"]
        .into_iter()
        .find(|t| !on_path(t))
    {
        ganesha::skip(
            NAME,
            &format!("{tool} is not installed (tests/run installs it)"),
        );
        return;
    }
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the test inside the namespace failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// rpcbind for this namespace, stopped when dropped.
struct Rpcbind(Child);

impl Drop for Rpcbind {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().unwrap();
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

/// Loopback up, a private `/run` (rpcbind keeps its socket there) and
/// rpcbind, ready for registrations.
fn rpcbind() -> Rpcbind {
    run("ip", &["link", "set", "lo", "up"]);
    run("mount", &["-t", "tmpfs", "tmpfs", "/run"]);
    let child = Command::new("rpcbind")
        .args(["-f", "-w"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let bound = Rpcbind(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", 111)).is_err() {
        assert!(Instant::now() < deadline, "rpcbind did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    bound
}

fn inside() {
    let _rpcbind = rpcbind();
    let env = Env::new();
    let g = Ganesha::start_with_v3(NAME, &env.path("export")).unwrap();

    // The contract, at a path whose directories are made on connect.
    let Location::Nfs(url) = Location::parse(&g.url_v3("deep/contract")).unwrap() else {
        panic!("not an nfs location");
    };
    assert!(
        url.client_url().contains("version=3"),
        "{}",
        url.client_url()
    );
    conformance::run(&NfsStore::connect(&url).unwrap()).unwrap();
    assert!(g.export.join("deep/contract").is_dir());

    // A full and an incremental backup, each restored byte for byte.
    let env = Env {
        repository: g.url_v3("repo"),
        ..env
    };
    let share = env.path("share");
    build_tree(&share);
    std::fs::write(share.join("large.bin"), noise(9 << 20, 31)).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let full_tree = snapshot(&share);
    let full = backup(&env, &share);
    assert_eq!(full["status"], "available");
    std::fs::write(share.join("large.bin"), noise(3 << 20, 32)).unwrap();
    std::fs::write(share.join("added"), b"after the full backup").unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let incr_tree = snapshot(&share);
    let incr = incremental_backup(&env, &share);
    for (b, tree, name) in [(&full, &full_tree, "full"), (&incr, &incr_tree, "incr")] {
        let target = env.path(&format!("restored-{name}"));
        restore_to(&env, b["id"].as_str().unwrap(), &target).ok();
        assert_same(tree, &snapshot(&target));
    }
    assert!(!walk_files(&g.export.join("repo/packs")).is_empty());
    env.strata(&["check"]).ok();
}
